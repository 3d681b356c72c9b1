"""Faceted meshing route (non-star-shaped surfaces): element quality and time on a dumbbell.

    python benchmarks/mesh_faceted.py                 # 40 grains at h = 0.6 µm, 100 at 0.5 µm
    python benchmarks/mesh_faceted.py --cases 12:1.0  # grains:h pairs

The particle is two 4 µm balls joined by a 1.5 µm neck (not star-shaped about its centroid),
written as an STL surface and meshed through ``polycrack``'s surface source, which sends it down
the faceted route. Per case: tets, min SICN, tets below SICN 0.1, regularisation defects left,
wall time. Writes ``benchmarks/results/mesh_faceted.json`` (machine, commit, load average).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

from polycrack.config import GeometryConfig  # noqa: E402
from polycrack.meshing.build import build_bundle  # noqa: E402
from polycrack.verification.meshes import dumbbell_stl  # noqa: E402
from polycrack.workflow.exports import git_commit  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--cases", nargs="+", default=["40:0.6", "100:0.5"], help="grains:h_um")
    a = ap.parse_args()
    load0 = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        stl = dumbbell_stl(Path(tmp) / "dumbbell.stl")
        for spec in a.cases:
            n, h = int(spec.split(":")[0]), float(spec.split(":")[1])
            geo = GeometryConfig.model_validate(
                {
                    "particle": {"source": "surface", "file": str(stl)},
                    "grains": {"count": n, "seed": 1},
                    "binder_outer_diameter_um": 26.0,
                    "mesh": {"particle_size_um": h, "binder_size_um": 3.0},
                }
            )
            t0 = time.perf_counter()
            out = build_bundle(geo, Path(tmp) / f"b{n}_{h}", verbose=False)
            wall = time.perf_counter() - t0
            info = json.loads((out / "mesh.json").read_text())
            row = {
                "grains": n,
                "h_um": h,
                "tets": info["tets"],
                "min_sicn": info["min_sicn"],
                "tets_below_0.1": info["tets_below_0.1"],
                "regularisation_defects_left": info["regularisation_defects_left"],
                "wall_s": wall,
            }
            rows.append(row)
            print(
                f"{n:4d} grains  h {h:.2f} µm  {row['tets']:7d} tets  min SICN {row['min_sicn']:.3f}"
                f"  < 0.1: {row['tets_below_0.1']:3d}  defects left {row['regularisation_defects_left']}"
                f"  {wall:.0f} s",
                flush=True,
            )
    res = {
        "benchmark": "mesh_faceted",
        "particle": "dumbbell: balls r = 4 µm at x = ±6 µm, neck r = 1.5 µm; binder to 26 µm",
        "machine": {"node": platform.node(), "cpus": os.cpu_count()},
        "git_commit": git_commit(),
        "loadavg_start": load0,
        "loadavg_end": os.getloadavg(),
        "rows": rows,
    }
    path = REPO / "benchmarks" / "results" / "mesh_faceted.json"
    path.write_text(json.dumps(res, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
