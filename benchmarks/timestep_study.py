"""Time-step study of the demo: solver.dt_max_s halved twice, damaged-fraction curves compared.

    python benchmarks/timestep_study.py [--dt 1800 900 450] [--set KEY=VALUE ...] [--name NAME]
    python benchmarks/timestep_study.py --key physics.phase_field_relaxation_s --dt 60 10 1 0 \
        --name relaxation_study

Runs the demo case (examples/demo.yaml; mesh built once) with each value of ``--key`` (default
solver.dt_max_s), interpolates the damaged fraction onto a common voltage grid (CC part) and
reports the largest difference to the run with the smallest value (the finest step, or the
rate-independent limit of the viscous phase field), relative to that run's final damaged
fraction. Also compares the voltage
curve with an electrochemistry-only run on the same mesh (mechanics barely changes V at C/50).
The damage at the end of the run (after the CV hold) is compared the same way.
Writes benchmarks/results/<NAME>.json (default timestep_study).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import dolfinx_solver  # noqa: F401
import numpy as np
from mpi4py import MPI

REPO = Path(__file__).resolve().parent.parent

from polycrack.config import load_case  # noqa: E402
from polycrack.physics.domain import ensure_bundle, load_bundle  # noqa: E402
from polycrack.physics.mechanics import ParticleDomain  # noqa: E402
from polycrack.post.plots import read_table  # noqa: E402
from polycrack.workflow.exports import git_commit  # noqa: E402
from polycrack.workflow.run import CoupledRun, ElectrochemRun  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--dt", type=float, nargs="+", default=[1800.0, 900.0, 450.0])
    ap.add_argument("--key", default="solver.dt_max_s", help="case key that --dt values set")
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--name", default="timestep_study", help="results/<name>.json")
    args = ap.parse_args()
    comm = MPI.COMM_WORLD
    load0 = os.getloadavg()
    work = Path(comm.bcast(tempfile.mkdtemp(prefix="polycrack-dt-") if comm.rank == 0 else None))
    rc0 = load_case(REPO / "examples" / "demo.yaml", args.set)
    bundle = ensure_bundle(rc0.case.geometry, work / "mesh", comm)
    dom = ParticleDomain.from_domain(load_bundle(bundle, comm))
    runs = {}
    for dt in args.dt:
        rc = load_case(REPO / "examples" / "demo.yaml", [*args.set, f"{args.key}={dt}"])
        t0 = time.perf_counter()
        rec = CoupledRun(rc, work / f"dt{dt:g}", comm, dom=dom, verbose=False).run()
        runs[dt] = {
            "wall_s": time.perf_counter() - t0,
            "steps": rec["steps"],
            "dir": work / f"dt{dt:g}",
        }
        if comm.rank == 0:
            print(
                f"{args.key} {dt:7g}: {rec['steps']['accepted']} steps, {runs[dt]['wall_s']:.0f} s",
                flush=True,
            )
    rc = load_case(
        REPO / "examples" / "demo.yaml",
        [
            *args.set,
            "physics.mechanics=false",
            "physics.fracture=false",
            f"geometry.bundle={bundle}",
        ],
    )
    ElectrochemRun(rc, work / "ec", comm, progress=False).run()
    if comm.rank != 0:
        return
    grid = np.linspace(3.7, 4.49, 80)

    def cc(ts):
        m = ts["protocol_step"] == 0
        return {k: v[m] for k, v in ts.items()}

    curves, end = {}, {}
    for dt, r in runs.items():
        end[dt] = float(read_table(r["dir"] / "timeseries.csv")["damage_fraction"][-1])
        ts = cc(read_table(r["dir"] / "timeseries.csv"))
        curves[dt] = (np.interp(grid, ts["voltage_V"], ts["damage_fraction"]), ts)
    fine = min(args.dt)
    ref = curves[fine][0]
    scale = max(float(ref[-1]), 1e-12)
    rows = []
    for dt, (c, _ts) in curves.items():
        rows.append(
            {
                args.key.split(".")[-1]: dt,
                "accepted_steps": runs[dt]["steps"]["accepted"],
                "wall_s": runs[dt]["wall_s"],
                "final_damage_fraction": float(c[-1]),
                "max_abs_diff_to_finest": float(np.max(np.abs(c - ref))),
                "max_diff_rel_to_final_damage": float(np.max(np.abs(c - ref)) / scale),
                "end_of_run_damage_fraction": end[dt],
                "end_of_run_diff_rel": abs(end[dt] - end[fine]) / max(end[fine], 1e-12),
            }
        )
        print(rows[-1])
    ec = cc(read_table(work / "ec" / "timeseries.csv"))
    ts = curves[fine][1]
    dv = np.abs(ts["voltage_V"] - np.interp(ts["time_s"], ec["time_s"], ec["voltage_V"]))
    res = {
        "benchmark": "timestep_study",
        "machine": {"node": platform.node(), "cpus": os.cpu_count()},
        "git_commit": git_commit(),
        "mpi_ranks": comm.size,
        "loadavg_start": load0,
        "loadavg_end": os.getloadavg(),
        "key": args.key,
        "overrides": args.set,
        "rows": rows,
        "voltage_vs_electrochem_only_max_mV": float(1e3 * dv.max()),
    }
    out = REPO / "benchmarks" / "results" / f"{args.name}.json"
    out.write_text(json.dumps(res, indent=1))
    print(f"voltage vs electrochemistry-only: max {1e3 * dv.max():.3f} mV; wrote {out}")


if __name__ == "__main__":
    main()
