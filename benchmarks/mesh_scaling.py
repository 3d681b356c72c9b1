"""Meshing cost vs grain count: sphere and synthetic CT-like particle at h = 0.4 µm.

    python benchmarks/mesh_scaling.py                      # N = 50 100 200 400, both sources
    python benchmarks/mesh_scaling.py --grains 50 --h 0.8  # quick

Per case: wall time (shape, tessellation, B-rep, meshing), tets, min SICN, tets below 0.1, peak
RSS of the process. Prints a table and writes benchmarks/results/mesh_scaling.json with the
machine, commit and load average.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from meshing import build_bundle  # noqa: E402
from solver.config import GeometryConfig  # noqa: E402
from solver.exports import git_commit  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--grains", type=int, nargs="+", default=[50, 100, 200, 400])
    ap.add_argument("--sources", nargs="+", default=["sphere", "synthetic"])
    ap.add_argument("--h", type=float, default=0.4)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "mesh_scaling.json"))
    args = ap.parse_args()
    rows = []
    load0 = os.getloadavg()
    for source in args.sources:
        for n in args.grains:
            geo = GeometryConfig.model_validate(
                {
                    "particle": {"source": source, "diameter_um": 14.0, "shape_seed": 3},
                    "grains": {"count": n, "seed": 1},
                    "mesh": {"particle_size_um": args.h, "binder_size_um": 2.0},
                }
            )
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                build_bundle(geo, Path(tmp) / "b", verbose=False)
                wall = time.perf_counter() - t0
                info = json.loads((Path(tmp) / "b" / "mesh.json").read_text())
            row = {
                "source": source,
                "grains": n,
                "h_um": args.h,
                "wall_s": wall,
                "tets": info["tets"],
                "min_sicn": info["min_sicn"],
                "tets_below_0.1": info["tets_below_0.1"],
                "particle_volume_um3": info["particle_volume_um3"],
                "gb_area_um2": info["gb_area_um2"],
                "timings_s": info["timings_s"],
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "loadavg": os.getloadavg(),
            }
            rows.append(row)
            print(
                f"{source:9s} N={n:4d} h={args.h}: {wall:7.1f} s  {row['tets']:8d} tets  "
                f"min SICN {row['min_sicn']:.3f}  <0.1: {row['tets_below_0.1']:4d}  "
                f"peak RSS {row['peak_rss_mb']:.0f} MB",
                flush=True,
            )
    res = {
        "benchmark": "mesh_scaling",
        "note": "peak_rss_mb is the process maximum so far (cumulative over rows)",
        "machine": {
            "node": platform.node(),
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
        },
        "git_commit": git_commit(),
        "loadavg_start": load0,
        "loadavg_end": os.getloadavg(),
        "rows": rows,
    }
    Path(args.out).write_text(json.dumps(res, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
