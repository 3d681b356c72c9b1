"""The demo on 1 and on N MPI ranks: voltage and damaged fraction at every accepted step.

    python benchmarks/demo_ranks.py                     # runs `polycrack demo` on 1 and 2 ranks
    python benchmarks/demo_ranks.py --runs DIR1 DIR2    # compare two finished run directories

Targets (issue 5): voltage within 1e-6 relative and damaged fraction within 1e-3 absolute at
every output step. Both runs take the same adaptive steps when they agree, so rows are compared
one to one (a different step count is reported as a failure). Prints a table and writes
``benchmarks/results/demo_ranks.json`` with machine, commit, load average and wall times.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent

from polycrack.post.plots import read_table  # noqa: E402
from polycrack.workflow.exports import git_commit  # noqa: E402

VOLTAGE_RTOL = 1e-6
DAMAGE_ATOL = 1e-3


def run_demo(ranks: int, out: Path) -> float:
    """``polycrack demo -o out`` on ``ranks`` ranks; returns the wall time (s)."""
    venv = REPO / ".venv" / "bin"
    cmd = [str(venv / "polycrack"), "demo", "-o", str(out)]
    if ranks > 1:
        cmd = [str(venv / "mpirun"), "-n", str(ranks), *cmd]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def compare(a_dir: Path, b_dir: Path) -> dict:
    """Step-by-step differences of two run directories' ``timeseries.csv``."""
    a, b = read_table(a_dir / "timeseries.csv"), read_table(b_dir / "timeseries.csv")
    n = min(len(a["step"]), len(b["step"]))
    v_rel = np.abs(a["voltage_V"][:n] - b["voltage_V"][:n]) / np.abs(b["voltage_V"][:n])
    d_abs = np.abs(a["damage_fraction"][:n] - b["damage_fraction"][:n])
    t_rel = np.abs(a["time_s"][:n] - b["time_s"][:n]) / np.maximum(np.abs(b["time_s"][:n]), 1.0)
    same_steps = len(a["step"]) == len(b["step"])
    return {
        "steps": [len(a["step"]), len(b["step"])],
        "same_step_count": same_steps,
        "max_voltage_rel": float(v_rel.max()),
        "max_damage_abs": float(d_abs.max()),
        "max_time_rel": float(t_rel.max()),
        "final_damage_fraction": [float(a["damage_fraction"][-1]), float(b["damage_fraction"][-1])],
        "passes": bool(same_steps and v_rel.max() <= VOLTAGE_RTOL and d_abs.max() <= DAMAGE_ATOL),
    }


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--runs", nargs=2, type=Path, metavar=("DIR_1RANK", "DIR_NRANKS"))
    ap.add_argument("--ranks", type=int, default=2, help="N of the parallel run")
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "demo_ranks")
    a = ap.parse_args()
    load0 = os.getloadavg()
    walls = {}
    if a.runs:
        d1, dn = a.runs
    else:
        d1, dn = a.out / "np1", a.out / f"np{a.ranks}"
        walls["np1_s"] = run_demo(1, d1)
        walls[f"np{a.ranks}_s"] = run_demo(a.ranks, dn)
        d1, dn = d1 / "run", dn / "run"
    res = compare(d1, dn)
    info = json.loads((dn / "run.json").read_text())
    rec = {
        "benchmark": "demo_ranks",
        "machine": {"node": platform.node(), "cpus": os.cpu_count()},
        "git_commit": git_commit(),
        "loadavg_start": load0,
        "loadavg_end": os.getloadavg(),
        "runs": [str(d1), str(dn)],
        "solver": info.get("solver", {}).get("linear"),
        "wall_s": walls or None,
        "targets": {"voltage_rel": VOLTAGE_RTOL, "damage_abs": DAMAGE_ATOL},
        **res,
    }
    print(f"steps {res['steps'][0]} vs {res['steps'][1]}")
    print(f"max |dV|/V       {res['max_voltage_rel']:.3e}  (target {VOLTAGE_RTOL:g})")
    print(f"max |d damage|   {res['max_damage_abs']:.3e}  (target {DAMAGE_ATOL:g})")
    print("PASS" if res["passes"] else "FAIL")
    path = REPO / "benchmarks" / "results" / "demo_ranks.json"
    path.write_text(json.dumps(rec, indent=1))
    print(f"wrote {path}")
    return 0 if res["passes"] else 1


if __name__ == "__main__":
    sys.exit(main())
