"""The `polycrack` command: help texts, exit codes and messages (subprocesses, serial only)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.serial


def polycrack(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "polycrack", *args],
        capture_output=True,
        text=True,
        cwd=cwd or REPO,
        timeout=300,
    )


def test_help_lists_every_subcommand():
    r = polycrack("--help")
    assert r.returncode == 0
    for sub in ("mesh", "run", "check", "verify", "plot", "sweep", "collect", "demo"):
        assert sub in r.stdout
    for sub in ("mesh", "run", "check", "verify", "plot", "sweep", "collect", "demo"):
        r = polycrack(sub, "--help")
        assert r.returncode == 0 and "usage: polycrack " + sub in r.stdout, sub


def test_no_command_prints_help_and_exits_2():
    r = polycrack()
    assert r.returncode == 2 and "usage: polycrack" in r.stdout


def test_misspelt_key_exits_2_with_suggestion(tmp_path):
    case = yaml.safe_load((REPO / "examples" / "sphere_electrochem.yaml").read_text())
    case["material"]["overrides"] = {"electrochemistry": {"c_max_mol_m": 5.0e4}}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(case))
    r = polycrack("run", str(bad))
    assert r.returncode == 2
    assert "bad.yaml" in r.stderr
    assert "electrochemistry.c_max_mol_m: unknown key; did you mean 'c_max_mol_m3'?" in r.stderr
    assert "Traceback" not in r.stderr


def test_bad_set_exits_2(tmp_path):
    r = polycrack("run", "examples/sphere_electrochem.yaml", "--set", "mechanics.nu_particle=0.6")
    assert r.returncode == 2 and "nu_particle" in r.stderr and "less than 0.5" in r.stderr
    assert "Traceback" not in r.stderr


def test_check_prints_summary():
    r = polycrack("check", "examples/sphere_electrochem.yaml")
    assert r.returncode == 0, r.stderr
    assert "valid" in r.stdout and "AT2 strength" in r.stdout


def test_demo_runs(tmp_path):
    """A shortened demo (fewer grains, coarse mesh, CC to 3.9 V at 1C) end to end."""
    r = polycrack(
        "demo",
        "-o",
        str(tmp_path / "demo"),
        "--set",
        "geometry.grains.count=8",
        "--set",
        "geometry.mesh.particle_size_um=1.6",
        "--set",
        "geometry.mesh.binder_size_um=3.5",
        "--set",
        "protocol=[{type: cc, c_rate: 1.0, until_voltage_V: 3.9}]",
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "figures:" in r.stdout and (tmp_path / "demo" / "run" / "timeseries.csv").is_file()
    assert (tmp_path / "demo" / "run" / "figures" / "voltage.png").is_file()


def test_verify_table_format():
    from polycrack.workflow.verify import format_table

    rows = [
        {"case": "Crank sphere, L2 at t1", "error": 3.2e-3, "tolerance": 1e-2, "passed": True},
        {"case": "Lame sphere stress", "error": 2e-2, "tolerance": 1e-2, "passed": False},
    ]
    table = format_table(rows)
    assert "Crank sphere, L2 at t1" in table and "3.200e-03" in table and "FAIL" in table


def test_verify_with_no_selected_cases():
    """A -k that selects nothing is a user error (exit 2 naming the selection), not a pass."""
    r = polycrack("verify", "-k", "no_such_case_anywhere")
    assert r.returncode == 2 and "no_such_case_anywhere" in r.stderr, r.stderr


def test_strain_path_prints_v_star_without_dolfinx(tmp_path):
    """`polycrack strain-path`: exit 0, V* of the Märker table on Chen 2020 (4.18 V), JSON and
    plot written, and DOLFINx never imported (it must run in seconds anywhere)."""
    out = tmp_path / "sp.json"
    png = tmp_path / "sp.png"
    code = (
        "import sys; from polycrack.cli import main; "
        f"rc = main(['strain-path', 'examples/demo.yaml', '--json', r'{out}', '--plot', r'{png}']); "
        "assert 'dolfinx' not in sys.modules and 'petsc4py' not in sys.modules, 'imported'; "
        "sys.exit(rc)"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert r.returncode == 0, r.stderr
    assert "V* = 4.18" in r.stdout and "maerker2019" in r.stdout
    data = yaml.safe_load(out.read_text())  # JSON is YAML
    assert abs(data["v_star"]["V"] - 4.18) <= 0.02
    assert png.stat().st_size > 1000


def test_strain_path_bad_table_exits_2_naming_the_key():
    r = polycrack("strain-path", "examples/demo.yaml", "--set", "mechanics.lattice_data=kondrakov")
    assert r.returncode == 2
    assert "mechanics.lattice_data" in r.stderr and "did you mean 'kondrakov2017'" in r.stderr
    assert "Traceback" not in r.stderr


def test_check_prints_strain_path_landmarks():
    r = polycrack("check", "examples/demo.yaml", "--set", "mechanics.lattice_data=kondrakov2017")
    assert r.returncode == 0, r.stderr
    assert "strain path (kondrakov2017, direct, OCP chen2020)" in r.stdout
    assert "V* = 4.337 V" in r.stdout
