"""The coupled demo-length run on the 400-grain CT particle (issue 25): examples/ct_electrode.yaml
(the largest interior particle of the NREL crop, rescaled to 14 µm, 400 grains, h = 0.4 µm,
l = 0.8 µm), coupled electrochemistry + mechanics + fracture, C/50 CC to 4.5 V and CV to C/100,
``fieldsplit`` with the phase-field viscosity of the 400-grain runs (tau = 10 s), 2 ranks.

    mpirun -n 2 python benchmarks/ct_coupled_run.py [--work DIR] [--summarise-only]

The run directory (default runs/ct400) is continued from its checkpoint when one is there, so a
run longer than a session is done in pieces (SIGTERM writes a checkpoint). Writes
benchmarks/results/ct_particle_400_coupled.json: status, the voltage and step reached, the wall
time over all segments, steps / Newton / Krylov, the damage onset, damaged volume and crack area
at 4.0 / 4.2 / 4.5 V and at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import dolfinx_solver  # noqa: F401
from mpi4py import MPI
from polycrack.config import load_case
from polycrack.post.plots import read_table
from polycrack.post.timeseries import damage_onset, value_at_voltage
from polycrack.workflow.exports import git_commit
from polycrack.workflow.run import CoupledRun

REPO = Path(__file__).resolve().parent.parent
CASE = REPO / "examples" / "ct_electrode.yaml"
SETS = ["solver.linear=fieldsplit", "physics.phase_field_relaxation_s=10"]


def summarise(run_dir: Path) -> dict:
    rec = json.loads((run_dir / "run.json").read_text())
    ts = read_table(run_dir / "timeseries.csv")
    cc = ts["protocol_step"] == 0
    out = {
        "status": rec["status"],
        "steps": int(ts["step"][-1]),
        "time_h": float(ts["time_s"][-1] / 3600.0),
        "voltage_reached_V": float(ts["voltage_V"][-1]),
        "mesh": rec.get("mesh"),
        "restarts": rec.get("restarts", []),
        "wall_time_s": rec.get("wall_time_s"),
        "solver": rec.get("solver"),
        "step_counts": rec.get("steps"),
        "onset": damage_onset(ts),
        "damage_end": float(ts["damage_fraction"][-1]),
        "crack_area_um2_end": float(ts["crack_area_um2"][-1]),
    }
    for v in (4.0, 4.2, 4.5):
        out[f"damage_{v:.1f}V"] = value_at_voltage(ts, "damage_fraction", v, cc)
        out[f"crack_area_um2_{v:.1f}V"] = value_at_voltage(ts, "crack_area_um2", v, cc)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--work", type=Path, default=REPO / "runs" / "ct400")
    ap.add_argument("--summarise-only", action="store_true")
    args = ap.parse_args()
    comm = MPI.COMM_WORLD
    if not args.summarise_only:
        resume = (args.work / "checkpoint.npz").is_file()
        rc = load_case(CASE, SETS)
        CoupledRun(rc, args.work, comm, restart=resume, allow_changes=("solver.linear",)).run()
    if comm.rank != 0:
        return
    res = {
        "benchmark": "ct_coupled_run",
        "case": "examples/ct_electrode.yaml",
        "overrides": SETS,
        "machine": {"node": platform.node(), "cpus": os.cpu_count()},
        "git_commit": git_commit(),
        "loadavg_end": os.getloadavg(),
        **summarise(args.work),
    }
    out = REPO / "benchmarks" / "results" / "ct_particle_400_coupled.json"
    out.write_text(json.dumps(res, indent=1))
    print(f"wrote {out}: {res['status']} at {res['voltage_reached_V']:.3f} V")


if __name__ == "__main__":
    main()
