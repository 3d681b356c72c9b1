"""``polycrack verify``: run the closed-form verification tests and print case, error, tolerance.

The verification cases live in the test suite (marker ``verification``); each records its
error through the ``verification`` fixture. This command runs them (serially, or under
``mpirun -n N``) and prints the table, so users check an installation with one command.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from .errors import InputError

TESTS = Path(__file__).resolve().parent.parent / "tests"


def run_verification(ranks: int = 1, select: str | None = None) -> tuple[int, list[dict]]:
    """Run the verification tests; return (pytest exit code, recorded rows)."""
    if not TESTS.is_dir():
        raise InputError(f"{TESTS}: the test suite is not installed; run from a source checkout")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rows.jsonl"
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            str(TESTS),
            "-m",
            "verification",
            "-q",
            "-p",
            "no:cacheprovider",
        ]
        if select:
            cmd += ["-k", select]
        if ranks > 1:
            cmd = [str(Path(sys.executable).with_name("mpirun")), "-n", str(ranks), *cmd]
        env = {**os.environ, "POLYCRACK_VERIFY_OUT": str(out)}
        proc = subprocess.run(cmd, env=env, cwd=TESTS.parent, capture_output=True, text=True)
        rows = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    if proc.returncode not in (0, 5):
        sys.stderr.write(proc.stdout[-4000:])
    return proc.returncode, rows


def format_table(rows: list[dict]) -> str:
    """A fixed-width table: case, error, tolerance, pass/fail."""
    if not rows:
        return "no verification results recorded"
    w = max(len(r["case"]) for r in rows)
    lines = [f"{'case':<{w}}  {'error':>10}  {'tolerance':>10}  result", "-" * (w + 32)]
    for r in rows:
        ok = "pass" if r["passed"] else "FAIL"
        lines.append(f"{r['case']:<{w}}  {r['error']:>10.3e}  {r['tolerance']:>10.3e}  {ok}")
    return "\n".join(lines)


def main(ranks: int = 1, select: str | None = None) -> int:
    """Print the table; exit code 0 if every case passed."""
    code, rows = run_verification(ranks, select)
    print(format_table(rows))
    if code == 5:
        print("no verification tests selected")
        return 0
    return 0 if code == 0 and all(r["passed"] for r in rows) else 1
