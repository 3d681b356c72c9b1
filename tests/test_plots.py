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


def _add_crack_area(d):
    """Add crack_area_um2, crack_area_gb_share beside damage_fraction and Γ_l per shell, as a run
    writes them now."""
    lines = (d / "timeseries.csv").read_text().splitlines()
    out = []
    for i, ln in enumerate(lines):
        c = ln.split(",")
        c[13:13] = (
            ["crack_area_um2", "crack_area_gb_share"] if i == 0 else [f"{2.0 * (i - 1)}", "0.7"]
        )
        out.append(",".join(c))
    (d / "timeseries.csv").write_text("\n".join(out) + "\n")
    lines = (d / "radial_damage.csv").read_text().splitlines()
    shells = [s.removeprefix("shell_") for s in lines[0].split(",")[3:]]
    lines[0] += "," + ",".join(f"crack_area_{s}_um2" for s in shells)
    lines[1:] = [ln + ",1.0,2.0,3.0,4.0" for ln in lines[1:]]
    (d / "radial_damage.csv").write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("crack_area", [False, True])
def test_plot_writes_all_figures(tmp_path, crack_area):
    """Tables with and without the crack-area columns (older runs): the same four figures; with
    them damage.png and radial_damage.png get a second panel (wider image)."""
    d = _run_dir(tmp_path)
    if crack_area:
        _add_crack_area(d)
    paths = plot_run(d)
    names = sorted(p.name for p in paths)
    assert names == ["damage.png", "radial_damage.png", "strains.png", "voltage.png"]
    assert all(p.stat().st_size > 10_000 for p in paths)
    ts = read_table(d / "timeseries.csv")
    assert np.isnan(ts["damage_gb_share"][0])
    import matplotlib.image as mpimg

    for name in ("damage.png", "radial_damage.png"):
        width = mpimg.imread(d / "figures" / name).shape[1]
        assert (width > 1000) == crack_area, (name, width)
    if crack_area:
        assert ts["crack_area_um2"][3] == 6.0 and ts["phi_max"][10] == 1.0


def test_adaptive_run_gets_a_mesh_figure(tmp_path):
    """A run whose ``cells`` column changes (adaptive refinement) gets mesh.png; a run on one
    mesh does not."""
    d = _run_dir(tmp_path)
    lines = (d / "timeseries.csv").read_text().splitlines()
    lines[0] += ",cells,unknowns"
    lines[1:] = [
        f"{ln},{1000 if i < 12 else 3000},{700 if i < 12 else 2100}"
        for i, ln in enumerate(lines[1:])
    ]
    (d / "timeseries.csv").write_text("\n".join(lines) + "\n")
    assert "mesh.png" in [p.name for p in plot_run(d)]
    lines[1:] = [",".join(ln.split(",")[:-2] + ["1000", "700"]) for ln in lines[1:]]
    (d / "timeseries.csv").write_text("\n".join(lines) + "\n")
    (d / "figures" / "mesh.png").unlink()
    assert "mesh.png" not in [p.name for p in plot_run(d)]


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
    _add_crack_area(d)
    lm = landmarks(d)
    assert lm["onset"]["step"] == 10 and lm["onset"]["phi_max"] >= 0.95
    assert lm["onset"]["crack_area_um2"] == 20.0 and lm["onset"]["crack_area_gb_share"] == 0.7
    assert set(lm["onset"]["radial_damage_fraction"]) == {
        "0.00_0.25",
        "0.25_0.50",
        "0.50_0.75",
        "0.75_1.00",
    }
    assert lm["end"]["step"] == 19 and lm["at_voltage"]["4.00"]["voltage_V"] >= 4.0 - 1e-3
    paths = fig5_panels(d, tmp_path / "f5")
    assert sorted(paths) == ["a", "b", "c", "d"]


def test_demo_caption_numbers(tmp_path):
    """The README caption's sentence: tets from mesh.json, steps, onset, final damage."""
    import json

    from polycrack.workflow.demo import demo_caption

    (tmp_path / "mesh").mkdir()
    (tmp_path / "mesh" / "mesh.json").write_text(json.dumps({"tets": 123}))
    (tmp_path / "timeseries.csv").write_text(
        "step,voltage_V,phi_max,damage_fraction\n1,3.7,0.2,0\n2,3.9,0.96,0.001\n3,4.5,1.0,0.0062\n"
    )
    text = demo_caption(tmp_path)
    assert text.startswith("123 tets, 3 steps, damage onset (first φ ≥ 0.95) at 3.900 V")
    assert text.endswith("0.62 %")
