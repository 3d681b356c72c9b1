"""Calibration of the size guard (meshing/estimate.py): real meshes against the estimate.

    python benchmarks/mesh_estimate.py            # build the bundles below, one child each
    python benchmarks/mesh_estimate.py --fit      # also print a least-squares fit of the
                                                  # estimator's coefficients to these rows

Each row builds one mesh bundle in its own child process (``build_bundle``) and records the
tets of the particle and of the binder (counted per physical group of ``mesh.msh``), the peak
resident set of the child, the estimate of ``meshing.estimate.estimate_mesh`` for the same
settings and the ratio. Writes benchmarks/results/mesh_estimate.json (machine, commit).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

#: (source, diameter µm, binder outer diameter µm, particle h µm, binder h µm, grains)
ROWS = [
    ("synthetic", 14.0, 20.0, 0.8, 2.5, 50),  # the demo's mesh (shape_seed 3)
    ("sphere", 14.0, 20.0, 0.8, 2.5, 50),
    ("sphere", 14.0, 20.0, 1.2, 2.5, 50),
    ("sphere", 14.0, 20.0, 0.6, 2.0, 50),
    ("sphere", 14.0, 20.0, 0.8, 2.0, 8),
    ("sphere", 14.0, 20.0, 0.8, 4.0, 0),
    ("sphere", 14.0, 20.0, 1.0, 1.0, 20),
    ("sphere", 10.0, 14.0, 1.6, 3.0, 8),
    ("sphere", 14.0, 20.0, 0.6, 3.0, 200),
    ("sphere", 14.0, 24.0, 0.7, 2.0, 100),
    ("sphere", 6.0, 12.0, 0.4, 1.5, 20),
]


def _geometry(source, d, db, h, hb, n):
    from polycrack.config import GeometryConfig

    return GeometryConfig.model_validate(
        {
            "particle": {"source": source, "diameter_um": d, "shape_seed": 3},
            "grains": {"count": n, "seed": 1},
            "binder_outer_diameter_um": db,
            "mesh": {"particle_size_um": h, "binder_size_um": hb},
        }
    )


def one(row: list) -> dict:
    """Build one bundle in this process; tets per region, peak RSS and the estimate."""
    import gmsh
    from polycrack.meshing import build_bundle
    from polycrack.meshing.estimate import estimate_mesh
    from polycrack.meshing.tags import BINDER

    geo = _geometry(*row)
    with tempfile.TemporaryDirectory(prefix="mesh_est_") as tmp:
        out = Path(tmp) / "b"
        build_bundle(geo, out, verbose=False)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        info = json.loads((out / "mesh.json").read_text())
        gmsh.initialize(["-noenv"])
        gmsh.option.setNumber("General.Terminal", 0)
        gmsh.merge(str(out / "mesh.msh"))
        binder = 0
        for ent in gmsh.model.getEntitiesForPhysicalGroup(3, BINDER):
            _, tags, _ = gmsh.model.mesh.getElements(3, ent)
            binder += sum(len(t) for t in tags)
        nodes = len(gmsh.model.mesh.getNodes()[0])
        gmsh.finalize()
    est = estimate_mesh(geo)
    return {
        "source": row[0],
        "diameter_um": row[1],
        "binder_outer_diameter_um": row[2],
        "particle_size_um": row[3],
        "binder_size_um": row[4],
        "grains": row[5],
        "tets": info["tets"],
        "particle_tets": info["tets"] - binder,
        "binder_tets": binder,
        "vertices": nodes,
        "gb_area_um2": info["gb_area_um2"],
        "particle_volume_um3": info["particle_volume_um3"],
        "binder_volume_um3": info["binder_volume_um3"],
        "interface_area_um2": info["interface_area_um2"],
        "peak_rss_mb": rss,
        "mesh_s": info["timings_s"]["total"],
        "estimate": est.to_dict(),
        "ratio_tets_estimate_over_real": est.cells_gmsh / info["tets"],
    }


def fit(rows: list[dict]) -> None:
    """Least-squares fit of the tet model's coefficients (printed, not written)."""
    import numpy as np
    from polycrack.meshing.estimate import gb_area_um2

    A, b = [], []
    for r in rows:
        h, hb = r["particle_size_um"], r["binder_size_um"]
        vp = np.pi / 6 * r["diameter_um"] ** 3
        vb = np.pi / 6 * r["binder_outer_diameter_um"] ** 3 - vp
        aif = np.pi * r["diameter_um"] ** 2
        agb = gb_area_um2(vp, aif, r["grains"])
        A.append([vp / h**3, agb / h**2, vb / hb**3, aif / h**2])
        b.append(r["tets"])
    A, b = np.array(A), np.array(b, dtype=float)
    w = 1.0 / b  # relative errors
    c, *_ = np.linalg.lstsq(A * w[:, None], b * w, rcond=None)
    print("coefficients (Vp/h^3, A_gb/h^2, Vb/hb^3, A_if/h^2):", c.round(3).tolist())
    print("relative errors:", ((A @ c) / b - 1).round(3).tolist())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--fit", action="store_true")
    ap.add_argument("--from-json", action="store_true", help="fit the stored rows only")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(one(json.loads(args.child))))
        return
    out = REPO / "benchmarks" / "results" / "mesh_estimate.json"
    if args.from_json:
        fit(json.loads(out.read_text())["rows"])
        return
    from polycrack.workflow.exports import git_commit

    rows = []
    for row in ROWS:
        p = subprocess.run(
            [sys.executable, __file__, "--child", json.dumps(row)],
            capture_output=True,
            text=True,
            check=True,
        )
        rows.append(json.loads(p.stdout.strip().splitlines()[-1]))
        r = rows[-1]
        print(
            f"{row}: {r['tets']} tets ({r['particle_tets']} particle), estimate "
            f"{r['estimate']['cells_gmsh']} (x{r['ratio_tets_estimate_over_real']:.2f}), "
            f"RSS {r['peak_rss_mb']:.0f} MB",
            flush=True,
        )
    res = {
        "benchmark": "mesh_estimate",
        "note": "2 cores shared with other jobs; tets and counts are what matters here.",
        "machine": {"node": platform.node(), "python": platform.python_version()},
        "git_commit": git_commit(),
        "rows": rows,
    }
    out.write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {out}")
    if args.fit:
        fit(rows)


if __name__ == "__main__":
    main()
