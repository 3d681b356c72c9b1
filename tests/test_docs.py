"""The documentation stays in step with the code: generated key tables, README size and links."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.serial


def test_key_tables_match_the_configuration_models():
    """docs/user-guide.md section 11 is what tools/case_reference.py generates from the models."""
    r = subprocess.run(
        [
            sys.executable,
            str(REPO / "tools" / "case_reference.py"),
            "--check",
            "docs/user-guide.md",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_readme_is_short_and_keeps_the_ci_test_command():
    """README.md stays under 150 lines, and `make test` is the command .ci/run runs."""
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 150
    assert "make test" in text and "make test" in (REPO / ".ci" / "run").read_text()


@pytest.mark.parametrize(
    "page", ["README.md", "docs/user-guide.md", "docs/model.md", "benchmarks/README.md"]
)
def test_relative_links_point_at_files(page):
    """Every relative Markdown link of the documentation names a file of the repository."""
    path = REPO / page
    missing = []
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text()):
        if "://" in target:
            continue
        if not (path.parent / target).exists():
            missing.append(target)
    assert not missing, f"{page}: links to missing files {missing}"
