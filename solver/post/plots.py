"""Figures of a run directory (``polycrack plot DIR``), from its CSV tables only.

Reads ``timeseries.csv`` and ``radial_damage.csv`` (docs/user-guide.md section 5) and writes PNGs
into ``DIR/figures``: voltage vs capacity and vs time, damaged fraction, crack area Γ_l and their
grain-boundary shares vs voltage, lattice strains along the run, radial damage distribution
(damaged fraction and Γ_l per shell).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ..errors import InputError


def read_table(path: Path) -> dict[str, np.ndarray]:
    """A CSV file with a header -> column name -> float array (empty cells become NaN)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        raise InputError(f"{path}: empty table")
    head, body = rows[0], rows[1:]
    cols: dict[str, np.ndarray] = {}
    for j, name in enumerate(head):
        vals = []
        for r in body:
            try:
                vals.append(float(r[j]) if j < len(r) and r[j] != "" else np.nan)
            except ValueError:
                vals.append(np.nan)
        cols[name] = np.asarray(vals)
    return cols


def _mpl():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_run(run_dir: Path, out: Path | None = None) -> list[Path]:
    """Write every figure the tables of ``run_dir`` support; return their paths."""
    run_dir = Path(run_dir)
    ts = read_table(run_dir / "timeseries.csv")
    for need in ("time_s", "voltage_V", "capacity_mAh_g"):
        if need not in ts:
            raise InputError(f"{run_dir / 'timeseries.csv'}: missing column {need!r}")
    out = Path(out) if out else run_dir / "figures"
    out.mkdir(parents=True, exist_ok=True)
    plt = _mpl()
    paths = []

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    a1.plot(ts["capacity_mAh_g"], ts["voltage_V"], "k-")
    a1.set(xlabel="capacity (mA h/g)", ylabel="voltage (V vs Li/Li+)", title="voltage")
    a2.plot(ts["time_s"] / 3600.0, ts["voltage_V"], "k-")
    if "current_A" in ts and np.any(np.isfinite(ts["current_A"])):
        a3 = a2.twinx()
        a3.plot(ts["time_s"] / 3600.0, ts["current_A"], "C0--")
        a3.set_ylabel("current (A)", color="C0")
    a2.set(xlabel="time (h)", ylabel="voltage (V)")
    p = out / "voltage.png"
    fig.savefig(p, dpi=120)
    plt.close(fig)
    paths.append(p)

    if "damage_fraction" in ts and np.any(np.isfinite(ts["damage_fraction"])):
        crack = "crack_area_um2" in ts and np.any(np.isfinite(ts["crack_area_um2"]))
        fig, axs = plt.subplots(
            1, 2 if crack else 1, figsize=(11 if crack else 5.5, 4), constrained_layout=True
        )
        a = axs[0] if crack else axs
        a.plot(ts["voltage_V"], ts["damage_fraction"], "C3-", label="damaged fraction (φ ≥ 0.95)")
        if "damage_gb_share" in ts:
            b = a.twinx()
            b.plot(ts["voltage_V"], ts["damage_gb_share"], "C0:", label="GB share")
            b.set(ylabel="grain-boundary share", ylim=(0, 1.05))
        a.set(xlabel="voltage (V)", ylabel="damaged volume fraction", title="damage")
        if crack:
            a = axs[1]
            a.plot(ts["voltage_V"], ts["crack_area_um2"], "C3-")
            a.set(xlabel="voltage (V)", ylabel="crack area Γ_l (µm²)", title="crack area (AT2 Γ_l)")
            if "crack_area_gb_share" in ts:
                b = a.twinx()
                b.plot(ts["voltage_V"], ts["crack_area_gb_share"], "C0:")
                b.set(ylabel="grain-boundary share of Γ_l", ylim=(0, 1.05))
        p = out / "damage.png"
        fig.savefig(p, dpi=120)
        plt.close(fig)
        paths.append(p)

    if "eps_c" in ts and "x_avg" in ts and np.any(np.isfinite(ts["eps_c"])):
        fig, a = plt.subplots(figsize=(5.5, 4), constrained_layout=True)
        a.plot(ts["x_avg"], ts["eps_a"], label="ε_a")
        a.plot(ts["x_avg"], ts["eps_c"], label="ε_c")
        if "damage_fraction" in ts:
            hit = np.flatnonzero(ts["damage_fraction"] > 0)
            if hit.size:
                k = hit[0]
                a.axvline(ts["x_avg"][k], color="C3", ls="--", label="first φ ≥ 0.95")
        a.set(xlabel="x_avg", ylabel="lattice strain", title="strains along the run")
        a.invert_xaxis()
        a.legend()
        p = out / "strains.png"
        fig.savefig(p, dpi=120)
        plt.close(fig)
        paths.append(p)

    cells = ts.get("cells")
    if cells is not None and np.nanmax(cells) > np.nanmin(cells):  # an adaptive run
        fig, a = plt.subplots(figsize=(5.5, 4), constrained_layout=True)
        a.step(ts["voltage_V"], cells, "k-", where="post", label="cells")
        if "unknowns" in ts:
            a.step(ts["voltage_V"], ts["unknowns"], "C0--", where="post", label="unknowns")
        a.set(xlabel="voltage (V)", ylabel="count", title="adaptive mesh (the step's mesh)")
        a.legend()
        a.grid(alpha=0.3)
        p = out / "mesh.png"
        fig.savefig(p, dpi=120)
        plt.close(fig)
        paths.append(p)

    rad = run_dir / "radial_damage.csv"
    if rad.is_file():
        rd = read_table(rad)
        shells = [k for k in rd if k.startswith("shell_")]
        areas = [k for k in rd if k.startswith("crack_area_") and k.endswith("_um2")]
        if shells and "voltage_V" in rd:
            fig, axs = plt.subplots(
                1, 2 if areas else 1, figsize=(11 if areas else 5.5, 4), constrained_layout=True
            )
            a = axs[0] if areas else axs
            for k in shells:
                a.plot(rd["voltage_V"], rd[k], label=k.removeprefix("shell_").replace("_", "–"))
            a.set(xlabel="voltage (V)", ylabel="damaged fraction of shell", title="radial damage")
            a.legend(title="r/R_p")
            if areas:
                for k in areas:
                    lab = k.removeprefix("crack_area_").removesuffix("_um2").replace("_", "–")
                    axs[1].plot(rd["voltage_V"], rd[k], label=lab)
                axs[1].set(
                    xlabel="voltage (V)",
                    ylabel="crack area Γ_l (µm²)",
                    title="crack area per shell",
                )
                axs[1].legend(title="r/R_p")
            p = out / "radial_damage.png"
            fig.savefig(p, dpi=120)
            plt.close(fig)
            paths.append(p)
    return paths


def summary_figure(run_dir: Path, out: Path, render: Path | None = None) -> Path:
    """One PNG: voltage vs capacity, damaged fraction vs voltage and (if given) a φ render."""
    run_dir = Path(run_dir)
    ts = read_table(run_dir / "timeseries.csv")
    plt = _mpl()
    ncol = 3 if render is not None and Path(render).is_file() else 2
    fig, axs = plt.subplots(1, ncol, figsize=(5 * ncol, 4), constrained_layout=True)
    axs[0].plot(ts["capacity_mAh_g"], ts["voltage_V"], "k-")
    axs[0].set(xlabel="capacity (mA h/g)", ylabel="voltage (V vs Li/Li+)", title="C/50 CCCV charge")
    axs[1].plot(ts["voltage_V"], 100 * ts["damage_fraction"], "C3-")
    axs[1].set(xlabel="voltage (V)", ylabel="damaged volume (%), φ ≥ 0.95", title="damage")
    if ncol == 3:
        import matplotlib.image as mpimg

        axs[2].imshow(mpimg.imread(render))
        axs[2].set_axis_off()
        axs[2].set_title("φ on the mid-plane at 4.5 V")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
