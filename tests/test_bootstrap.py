"""The bootstrap finds a Python >= 3.12 by itself, or says what to install."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "tools" / "find_python.sh"
pytestmark = pytest.mark.serial


def _run(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60
    )


def test_finds_a_python_312_or_newer():
    r = _run(dict(os.environ))
    assert r.returncode == 0, r.stderr
    found = r.stdout.strip()
    v = subprocess.run(
        [found, "-c", "import sys; print(sys.version_info[:2] >= (3, 12))"],
        capture_output=True,
        text=True,
    )
    assert v.stdout.strip() == "True"


def test_explicit_interpreter_wins():
    r = _run({**os.environ, "POLYCRACK_PYTHON": sys.executable})
    assert r.returncode == 0 and r.stdout.strip() == sys.executable


def test_missing_python_explains_what_to_install(tmp_path):
    env = {"PATH": str(tmp_path), "HOME": str(tmp_path), "PYENV_ROOT": str(tmp_path / "none")}
    (tmp_path / "bash").symlink_to("/bin/bash")
    r = _run(env)
    assert r.returncode == 1
    assert "needs Python >= 3.12" in r.stderr and "POLYCRACK_PYTHON" in r.stderr
