"""``polycrack verify``: run the closed-form verification tests and print case, error, tolerance.

The verification cases ship in the package (:mod:`polycrack.verification`, marker
``verification``); each records its error through the ``verification`` fixture. This command
writes a throw-away pytest directory whose modules import those cases, runs it (serially, or under
``mpirun -n N``) and prints the table, so users check an installation with one command, from a
source checkout or from an installed wheel alike.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from ..errors import InputError
from ..verification import CASE_MODULES

_PYTEST_INI = """[pytest]
markers =
    serial: run only in the serial pass
    mpi: also run under mpirun
    slow: takes more than ~30 s
    verification: compares with a closed-form answer
"""


def write_test_dir(folder: Path) -> Path:
    """Write ``test_<case>.py`` modules and a ``conftest.py`` that load the shipped cases.

    Args:
        folder: an existing, empty directory.

    Returns:
        ``folder``.
    """
    (folder / "conftest.py").write_text(
        "import dolfinx_solver  # noqa: F401\n"
        "from polycrack.verification.fixtures import mpi_tmp_path, verification  # noqa: F401\n"
    )
    for name in CASE_MODULES:
        (folder / f"test_{name}.py").write_text(f"from polycrack.verification.{name} import *\n")
    (folder / "pytest.ini").write_text(_PYTEST_INI)
    return folder


def run_verification(ranks: int = 1, select: str | None = None) -> tuple[int, list[dict]]:
    """Run the verification tests; return (pytest exit code, recorded rows)."""
    with tempfile.TemporaryDirectory() as tmp:
        tests = Path(tmp) / "cases"
        tests.mkdir()
        write_test_dir(tests)
        out = Path(tmp) / "rows.jsonl"
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            str(tests),
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
        proc = subprocess.run(cmd, env=env, cwd=tmp, capture_output=True, text=True)
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
    """Print the table; exit code 0 if every case passed, 2 (InputError) if ``-k`` selects none."""
    code, rows = run_verification(ranks, select)
    if code == 5:
        raise InputError(
            f"-k {select!r}: no verification case matches"
            if select
            else "no verification cases found in the installed package"
        )
    return 0 if code == 0 and all(r["passed"] for r in rows) else 1
