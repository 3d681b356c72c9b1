"""Newton's initial guess: the BDF predictor (extrapolation of the last accepted states) vs the
last accepted state, on a case run (default: the demo).

    python benchmarks/perf/initial_guess.py                       # demo, both guesses
    python benchmarks/perf/initial_guess.py --steps 40 --guess last

:class:`polycrack.numerics.stepping.AdaptiveBDF` starts every Newton solve from its predictor
(linear after one accepted step, quadratic from the second on; the same polynomial gives the
error estimate). ``--guess last`` starts from the last accepted state instead (a monkeypatch of
the stepper in this process; the error estimate is unchanged). Every guess runs the case in its
own subprocess (``--steps``: stop after that many accepted steps); the JSON has Newton, Krylov,
accepted and rejected steps, wall time, the final voltage and damage:
``benchmarks/results/initial_guess_<tag>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_one(case: str, guess: str, steps: int | None, out: Path) -> dict:
    """The case with initial guess ``guess`` in this process; the summary."""
    import dolfinx_solver  # noqa: F401
    import polycrack.numerics.stepping as stepping
    from polycrack.config import load_case
    from polycrack.post.plots import read_table
    from polycrack.workflow.run import Run

    if guess == "last":
        original = stepping.AdaptiveBDF._restore

        def restore(self, state):  # the predictor goes to the error estimate only
            if state is not self._states[-1]:
                state = self._states[-1]
            original(self, state)

        stepping.AdaptiveBDF._restore = restore
    rc = load_case(case, [])
    t0 = time.perf_counter()
    rec = Run(rc, out, verbose=False, stop_after_steps=steps).run()
    wall = time.perf_counter() - t0
    ts = read_table(out / "timeseries.csv")
    s = rec["solver"]
    return {
        "guess": guess,
        "status": rec["status"],
        "accepted": rec["steps"]["accepted"],
        "rejected": {k: v for k, v in rec["steps"].items() if k.startswith("rejected")},
        "newton_iterations": s["newton_iterations"],
        "newton_per_accepted_step": s["newton_iterations"] / max(rec["steps"]["accepted"], 1),
        "krylov_iterations": s["linear_iterations"],
        "wall_s": wall,
        "final_voltage_V": float(ts["voltage_V"][-1]),
        "final_damage_fraction": float(ts["damage_fraction"][-1])
        if "damage_fraction" in ts
        else None,
        "time_s": float(ts["time_s"][-1]),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--case", default=str(REPO / "solver" / "cases" / "demo.yaml"))
    ap.add_argument("--guess", choices=("predictor", "last"), default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--tag", default="demo")
    ap.add_argument("--json-out", default=None)
    a = ap.parse_args(argv)
    if a.guess is not None:  # one guess, in this process
        with tempfile.TemporaryDirectory() as tmp:
            row = run_one(a.case, a.guess, a.steps, Path(tmp) / "run")
        Path(a.json_out).write_text(json.dumps(row, indent=1))
        return
    from polycrack.workflow.exports import git_commit

    rows = []
    load0 = os.getloadavg()
    for guess in ("predictor", "last"):
        with tempfile.TemporaryDirectory() as tmp:
            js = Path(tmp) / "row.json"
            cmd = [
                sys.executable,
                __file__,
                "--case",
                a.case,
                "--guess",
                guess,
                "--json-out",
                str(js),
            ]
            if a.steps:
                cmd += ["--steps", str(a.steps)]
            subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
            rows.append(json.loads(js.read_text()))
        r = rows[-1]
        print(
            f"{guess:9s}: {r['accepted']} steps, rejected {r['rejected']}, {r['newton_iterations']} "
            f"Newton ({r['newton_per_accepted_step']:.2f} per step), {r['krylov_iterations']} "
            f"Krylov, {r['wall_s']:.0f} s; final {r['final_voltage_V']:.4f} V, damage "
            f"{r['final_damage_fraction']}",
            flush=True,
        )
    doc = {
        "benchmark": "initial_guess",
        "description": __doc__.split("\n\n")[0],
        "case": a.case,
        "steps": a.steps,
        "rows": rows,
        "git_commit": git_commit(),
        "loadavg_start": load0,
        "loadavg_end": os.getloadavg(),
        "cpus": os.cpu_count(),
    }
    out = REPO / "benchmarks" / "results" / f"initial_guess_{a.tag}.json"
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
