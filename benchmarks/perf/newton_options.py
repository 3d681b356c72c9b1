"""Whole runs of one case with different solver settings: cost, and how far the answer moves.

    python benchmarks/perf/newton_options.py --work DIR                    # the demo, 3 variants
    python benchmarks/perf/newton_options.py --work DIR --variants base ksp_rtol_1e-6
    python benchmarks/perf/newton_options.py --work DIR --summary-only     # re-read DIR

Every variant is ``mpirun -n NP polycrack run CASE -o DIR/<variant> --set ...`` (the command line
a user runs), one after the other; a finished run directory is reused. Per variant, from its
``run.json`` and ``timeseries.csv``: the time loop's wall time, accepted and rejected steps,
Newton and Krylov iterations, the preconditioner set-ups, and against the first variant (the
reference) the largest voltage difference at the reference's step times (mV, linear
interpolation in time) and the largest damaged-fraction and crack-area differences at those
times over the reference's largest value (issue 26: within 1 mV and 2 %). Writes
``benchmarks/results/newton_options_<tag>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VARIANTS = {
    "base": [],
    # a looser linear solve in every Newton iteration (polycrack's fieldsplit default: 1e-9)
    "ksp_rtol_1e-6": ["solver.petsc_options.ksp_rtol=1e-6"],
    # modified Newton: the Jacobian (and with it the preconditioner) every second iteration
    "lag_jacobian_2": ["solver.petsc_options.snes_lag_jacobian=2"],
}


def run_variant(case: str, out: Path, sets: list[str], np_: int) -> None:
    if (out / "run.json").is_file() and json.loads((out / "run.json").read_text()).get(
        "status"
    ) == "finished":
        return
    cmd = [str(REPO / ".venv" / "bin" / "mpirun"), "-n", str(np_)]
    cmd += [str(REPO / ".venv" / "bin" / "polycrack"), "run", case, "-o", str(out), "--overwrite"]
    for s in sets:
        cmd += ["--set", s]
    log = out.with_suffix(".log")
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as fh:
        subprocess.run(cmd, check=False, stdout=fh, stderr=subprocess.STDOUT)


def _table(path: Path) -> dict:
    import numpy as np

    sys.path.insert(0, str(REPO))
    from polycrack.post.plots import read_table

    return {k: np.asarray(v, dtype=float) for k, v in read_table(path).items()}


def summary(out: Path) -> dict:
    rec = json.loads((out / "run.json").read_text())
    s, st = rec.get("solver", {}), rec.get("steps", {})
    ts = _table(out / "timeseries.csv")
    return {
        "status": rec["status"],
        "git_commit": rec.get("git_commit"),
        "mpi_size": rec.get("mpi_size"),
        "wall_s": rec.get("wall_time_s", {}).get("solve_s_all_segments"),
        "accepted": st.get("accepted"),
        "rejected": {k: v for k, v in st.items() if k.startswith("rejected")},
        "newton_iterations": s.get("newton_iterations"),
        "krylov_iterations": s.get("linear_iterations"),
        "preconditioner": s.get("preconditioner"),
        "final_voltage_V": float(ts["voltage_V"][-1]),
        "final_time_h": float(ts["time_s"][-1]) / 3600.0,
        "final_damage_fraction": float(ts["damage_fraction"][-1]),
        "final_crack_area_um2": float(ts["crack_area_um2"][-1]),
    }


def differences(ref: Path, other: Path) -> dict:
    """Largest differences of ``other``'s curves from ``ref``'s at ``ref``'s step times."""
    import numpy as np

    a, b = _table(ref / "timeseries.csv"), _table(other / "timeseries.csv")
    t = a["time_s"][a["time_s"] <= b["time_s"][-1]]
    out = {"compared_up_to_h": float(t[-1]) / 3600.0 if t.size else 0.0}
    for col, key, scale in (
        ("voltage_V", "voltage_max_diff_mV", 1e3),
        ("damage_fraction", "damage_max_diff_rel", None),
        ("crack_area_um2", "crack_area_max_diff_rel", None),
    ):
        va = np.interp(t, a["time_s"], a[col])
        vb = np.interp(t, b["time_s"], b[col])
        d = float(np.abs(vb - va).max()) if t.size else 0.0
        out[key] = d * scale if scale else d / max(float(np.abs(a[col]).max()), 1e-300)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--case", default=str(REPO / "examples" / "demo.yaml"))
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--np", type=int, default=2)
    ap.add_argument("--tag", default="demo_np2")
    ap.add_argument("--summary-only", action="store_true")
    a = ap.parse_args(argv)
    load0 = os.getloadavg()
    rows = []
    for v in a.variants:
        out = a.work / v
        if not a.summary_only:
            run_variant(a.case, out, VARIANTS[v], a.np)
        if not (out / "run.json").is_file():
            continue
        row = {"variant": v, "sets": VARIANTS[v], **summary(out)}
        if rows:
            row["against_" + rows[0]["variant"]] = differences(a.work / rows[0]["variant"], out)
        rows.append(row)
        print(json.dumps({k: row[k] for k in row if k not in ("sets", "preconditioner")}))
    sys.path.insert(0, str(REPO))
    from polycrack.workflow.exports import git_commit

    doc = {
        "benchmark": "newton_options",
        "description": __doc__.split("\n\n")[0],
        "case": a.case,
        "ranks": a.np,
        "rows": rows,
        "git_commit": git_commit(),
        "machine": {"node": platform.node(), "cpus": os.cpu_count()},
        "loadavg_start": load0,
        "loadavg_end": os.getloadavg(),
        "work_dir": str(a.work),
    }
    out = REPO / "benchmarks" / "results" / f"newton_options_{a.tag}.json"
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
