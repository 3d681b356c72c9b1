"""`polycrack plot`: figures from the run-directory tables."""

from __future__ import annotations

import numpy as np
import pytest
from polycrack.cli import main
from polycrack.errors import InputError
from polycrack.post.plots import plot_run, read_table

pytestmark = pytest.mark.serial

COLS = (
    "step,time_s,dt_s,voltage_V,current_A,capacity_mAh_g,x_avg,x_surf_min,x_surf_max,eps_a,eps_c,"
    "damage_fraction,damage_gb_share,phi_max,sigma1_max_Pa,newton_iterations"
)


def _run_dir(tmp_path, n=20):
    d = tmp_path / "run"
    d.mkdir()
    t = np.linspace(0, 36 * 3600, n)
    x = 0.9 - 0.7 * t / t[-1]
    rows = [COLS]
    for i in range(n):
        dam = max(0.0, (i - 10) / 100)
        rows.append(
            f"{i},{t[i]},{t[1]},{3.6 + 0.9 * i / n},1e-11,{275 * (0.9 - x[i])},{x[i]},{x[i]},"
            f"{x[i]},{-0.02 * (1 - x[i])},{0.02 * (1 - x[i])},{dam},{0.9 if dam else ''},"
            f"{min(1, i / 10)},1e9,3"
        )
    (d / "timeseries.csv").write_text("\n".join(rows) + "\n")
    rad = ["step,time_s,voltage_V,shell_0.00_0.25,shell_0.25_0.50,shell_0.50_0.75,shell_0.75_1.00"]
    rad += [f"{i},{t[i]},{3.6 + 0.9 * i / n},{0.1 * i},{0.05 * i},0,0" for i in range(0, n, 5)]
    (d / "radial_damage.csv").write_text("\n".join(rad) + "\n")
    return d


def test_plot_writes_all_figures(tmp_path):
    d = _run_dir(tmp_path)
    paths = plot_run(d)
    names = sorted(p.name for p in paths)
    assert names == ["damage.png", "radial_damage.png", "strains.png", "voltage.png"]
    assert all(p.stat().st_size > 10_000 for p in paths)
    assert np.isnan(read_table(d / "timeseries.csv")["damage_gb_share"][0])


def test_plot_cli_and_errors(tmp_path, capsys):
    d = _run_dir(tmp_path)
    assert main(["plot", str(d), "-o", str(tmp_path / "figs")]) == 0
    assert (tmp_path / "figs" / "voltage.png").is_file()
    assert main(["plot", str(tmp_path / "nothing")]) == 2
    assert "timeseries.csv: no such file" in capsys.readouterr().err
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "timeseries.csv").write_text("step,foo\n1,2\n")
    with pytest.raises(InputError, match="missing column 'time_s'"):
        plot_run(tmp_path / "bad")


def test_fig5_panels_and_landmarks(tmp_path):
    """benchmarks/parks2023/fig5.py: onset = first row with phi_max >= 0.95; panels a-d written."""
    import importlib.util

    from tests.conftest import REPO

    spec = importlib.util.spec_from_file_location("fig5", REPO / "benchmarks/parks2023/fig5.py")
    fig5 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fig5)
    fig5_panels, landmarks = fig5.fig5_panels, fig5.landmarks

    d = _run_dir(tmp_path)
    lm = landmarks(d)
    assert lm["onset"]["step"] == 10 and lm["onset"]["phi_max"] >= 0.95
    assert lm["end"]["step"] == 19 and lm["at_voltage"]["4.00"]["voltage_V"] >= 4.0 - 1e-3
    paths = fig5_panels(d, tmp_path / "f5")
    assert sorted(paths) == ["a", "b", "c", "d"]
