"""A real SIGTERM to `polycrack run`: checkpoint, exit 143, and `--restart` reproduces the
uninterrupted run's timeseries.csv to 1e-8 relative (issue 5). Subprocesses: serial only."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from polycrack.post.plots import read_table

pytestmark = [pytest.mark.serial, pytest.mark.slow]
REPO = Path(__file__).resolve().parent.parent

CASE = {
    "name": "sigterm",
    "geometry": {
        "particle": {"source": "sphere", "diameter_um": 14.0},
        "grains": {"count": 8, "seed": 1},
        "binder_outer_diameter_um": 20.0,
        "mesh": {"particle_size_um": 2.0, "binder_size_um": 4.0},
    },
    "material": {
        "set": "nmc811_parks2023",
        "overrides": {
            "fracture.l_m": 2.0e-6,
            "fracture.l_gamma_m": 2.0e-6,
            "fracture.Gc_GB_J_m2": 0.2,  # cracks near the end of the CV hold
        },
    },
    "protocol": [
        {"type": "cc", "c_rate": 1.0, "until_voltage_V": 3.95},
        {"type": "cv", "voltage_V": 3.95, "max_time_s": 120},
    ],
    "physics": {"mechanics": True, "fracture": True},
    "solver": {"linear": "mumps", "dt_max_s": 600.0, "dt_initial_s": 5.0},
    "output": {"fields_at_voltages_V": [], "checkpoint_every_steps": 0},
}
COLUMNS = ("time_s", "dt_s", "voltage_V", "current_A", "x_avg", "damage_fraction", "phi_max")


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "polycrack", *args]


def _rows(path: Path) -> int:
    try:
        return max(len(path.read_text().splitlines()) - 1, 0)
    except FileNotFoundError:
        return 0


def test_sigterm_then_restart_reproduces_the_uninterrupted_run(tmp_path):
    case = tmp_path / "case.yaml"
    case.write_text(yaml.safe_dump(CASE))
    full = tmp_path / "full"
    r = subprocess.run(_cmd("run", str(case), "-o", str(full)), cwd=REPO, timeout=600)
    assert r.returncode == 0
    n_full = _rows(full / "timeseries.csv")
    assert n_full > 6

    part = tmp_path / "part"
    args = ("run", str(case), "-o", str(part), "--set", f"geometry.bundle={full / 'mesh'}")
    proc = subprocess.Popen(_cmd(*args), cwd=REPO, stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while _rows(part / "timeseries.csv") < 3 and proc.poll() is None:
        assert time.monotonic() < deadline, "the run wrote no steps"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM, out
    assert (part / "checkpoint.npz").is_file()
    n_killed = _rows(part / "timeseries.csv")
    assert 3 <= n_killed < n_full, "SIGTERM should stop the run before its end"

    # the restart names the same case as the interrupted run (with its --set)
    restart = ("run", str(case), "--restart", str(part), *args[4:])
    r = subprocess.run(_cmd(*restart), cwd=REPO, timeout=600)
    assert r.returncode == 0
    a, b = read_table(full / "timeseries.csv"), read_table(part / "timeseries.csv")
    np.testing.assert_array_equal(a["step"], b["step"])
    for col in COLUMNS:
        rel = np.abs(a[col] - b[col]) / np.maximum(np.abs(a[col]), 1e-300)
        assert float(np.nanmax(rel)) <= 1e-8, col
    assert np.nanmax(a["damage_fraction"]) > 0  # the case does crack
