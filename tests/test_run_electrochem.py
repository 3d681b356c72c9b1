"""``polycrack run`` of an electrochemistry-only case: run directory, columns, run.json, errors."""

from __future__ import annotations

import json

import dolfinx_solver  # noqa: F401
import numpy as np
import pytest
import yaml
from mpi4py import MPI
from polycrack.cli import main
from polycrack.post.plots import read_table
from polycrack.workflow.exports import TIMESERIES_COLUMNS, TimeSeriesWriter

REQUIRED = (
    "step, time_s, dt_s, voltage_V, current_A, capacity_mAh_g, x_avg, x_surf_min, x_surf_max, "
    "eps_a, eps_c, damage_fraction, damage_gb_share, crack_area_um2, crack_area_gb_share, phi_max, "
    "sigma1_max_Pa, newton_iterations"
).split(", ")


def _case(path, mechanics=False):
    case = {
        "name": "tiny",
        "geometry": {"particle": {"source": "sphere", "diameter_um": 14.0}, "grains": {"count": 0},
                     "mesh": {"particle_size_um": 1.6}},
        "protocol": [{"type": "cc", "c_rate": 0.2, "until_voltage_V": 3.8},
                     {"type": "cv", "voltage_V": 3.8, "until_c_rate": 0.1, "max_time_s": 3600.0},
                     {"type": "rest", "duration_s": 600.0}],
        "physics": {"mechanics": mechanics, "fracture": False},
    }  # fmt: skip
    if MPI.COMM_WORLD.rank == 0:
        path.write_text(yaml.safe_dump(case))
    MPI.COMM_WORLD.barrier()
    return path


@pytest.mark.mpi
def test_polycrack_run_writes_run_directory(mpi_tmp_path):
    """CC 0.2C to 3.8 V, CV to 0.1C, rest 10 min on a coarse sphere: exit 0, every required
    column, one row per accepted step with increasing time, x_avg = x0 - c t during CC,
    mechanical columns empty, run.json with resolved case, versions, MPI size and timings."""
    case = _case(mpi_tmp_path / "case.yaml")
    out = mpi_tmp_path / "run"
    assert main(["run", str(case), "-o", str(out)]) == 0
    MPI.COMM_WORLD.barrier()
    ts = read_table(out / "timeseries.csv")
    header = (out / "timeseries.csv").read_text().splitlines()[0].split(",")
    assert header[: len(REQUIRED)] == REQUIRED
    assert np.all(np.diff(ts["time_s"]) > 0) and np.all(np.diff(ts["step"]) == 1)
    cc = ts["protocol_step"] == 0
    x0 = 0.9084
    assert np.allclose(ts["x_avg"][cc], x0 - 0.2 * ts["time_s"][cc] / 3600, atol=1e-9)
    assert abs(ts["voltage_V"][cc][-1] - 3.8) <= 1e-4
    assert np.all(np.isnan(ts["damage_fraction"])) and np.all(np.isnan(ts["sigma1_max_Pa"]))
    assert np.all(np.isnan(ts["crack_area_um2"])) and np.all(np.isnan(ts["crack_area_gb_share"]))
    rest = ts["protocol_step"] == 2
    assert np.allclose(ts["current_A"][rest], 0.0, atol=1e-17)  # 1e-8 of the 1C current
    assert np.all(np.isfinite(ts["eps_a"])) and np.all(ts["capacity_mAh_g"] >= 0)
    rec = json.loads((out / "run.json").read_text())
    assert rec["status"] == "finished" and rec["mpi_size"] == MPI.COMM_WORLD.size
    assert rec["resolved"]["case"]["name"] == "tiny"
    assert {"dolfinx", "petsc", "polycrack"} <= set(rec["versions"])
    assert {"mesh_s", "setup_s", "solve_s", "total_s"} <= set(rec["wall_time_s"])
    assert rec["steps"]["accepted"] == len(ts["step"])
    assert rec["solver"]["newton_iterations"] >= rec["steps"]["accepted"]
    assert rec["peak_memory"]["max_rank_MB"] > 0
    assert [p["end_reason"] for p in rec["protocol"]] in (
        ["voltage", "current", "time"],
        ["voltage", "time", "time"],
    )


@pytest.mark.serial
def test_polycrack_run_dry_run_and_restart_needs_checkpoint(tmp_path, capsys):
    """--dry-run only validates (no run directory); --restart of a directory without a
    checkpoint is refused with exit 2."""
    case = _case(tmp_path / "case.yaml")
    assert main(["run", str(case), "--dry-run", "-o", str(tmp_path / "r")]) == 0
    assert not (tmp_path / "r").exists()
    assert main(["run", str(case), "--restart", str(tmp_path / "r")]) == 2
    assert "restart" in capsys.readouterr().err


@pytest.mark.serial
def test_timeseries_rows_are_durable(tmp_path):
    """Each appended row is on disk before append() returns (a killed run keeps its steps);
    unknown columns are refused; missing ones are empty."""
    w = TimeSeriesWriter(tmp_path / "ts.csv")
    w.append({"step": 1, "time_s": 1.5, "voltage_V": 3.7})
    lines = (tmp_path / "ts.csv").read_text().splitlines()  # writer still open
    assert lines[0] == ",".join(TIMESERIES_COLUMNS) and lines[1].startswith("1,1.5,,3.7,")
    with pytest.raises(KeyError):
        w.append({"stepp": 2})
    w.close()


@pytest.mark.serial
def test_timeseries_resume_moves_an_older_header_by_name(tmp_path):
    """Restarting into a timeseries.csv written with other columns (before crack_area_um2 was
    added beside damage_fraction): the file is rewritten under the current header with every
    cell under its own column name and the new columns empty, so appended rows line up."""
    old = [c for c in TIMESERIES_COLUMNS if not c.startswith("crack_area")]
    path = tmp_path / "ts.csv"
    row = {c: str(i) for i, c in enumerate(old)}
    path.write_text(",".join(old) + "\n" + ",".join(row[c] for c in old) + "\n")
    w = TimeSeriesWriter(path, resume=True)
    w.append({"step": 99, "crack_area_um2": 1.5, "phi_max": 0.5})
    w.close()
    t = read_table(path)
    assert list(t) == list(TIMESERIES_COLUMNS)
    for c in old:
        assert t[c][0] == float(row[c]), c
    assert np.isnan(t["crack_area_um2"][0]) and t["crack_area_um2"][1] == 1.5
    assert t["phi_max"][1] == 0.5 and t["step"][1] == 99
    w = TimeSeriesWriter(path, resume=True)  # same header: left alone
    w.close()
    assert len(read_table(path)["step"]) == 2
