"""Figures and landmarks in the layout of Parks et al. 2023, Fig. 5, from a coupled run directory.

Reads only the run directory's tables (``timeseries.csv``, ``radial_damage.csv``), ``run.json``
and the mid-plane renders in ``figures/`` (written by the run at ``output.fields_at_voltages_V``):

* :func:`landmarks` - first phi >= 0.95 (voltage, x, strains, radial shells), the c-peak, the ends
  of CC and CV, damage / GB share / radial damage at chosen voltages.
* :func:`fig5_panels` - (a) voltage vs capacity with the CV tail, (b) eps_a, eps_c vs x with marks,
  (c) damaged volume fraction and GB share vs voltage, (d) radial damage at chosen voltages, (e) a
  montage of the phi and sigma1 mid-plane renders.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from polycrack.post.plots import _mpl, read_table

PHI_ONSET = 0.95


def _row(table: dict[str, np.ndarray], i: int, keys) -> dict:
    return {k: float(table[k][i]) for k in keys if k in table}


def _first_at_voltage(ts: dict, v: float, tol: float = 1e-3) -> int | None:
    """Index of the first row with voltage >= v - tol (None if never)."""
    hit = np.flatnonzero(ts["voltage_V"] >= v - tol)
    return int(hit[0]) if hit.size else None


def landmarks(run_dir: Path, voltages=(4.0, 4.2, 4.5)) -> dict:
    """The numbers of Fig. 5 from a run directory (see the module docstring)."""
    run_dir = Path(run_dir)
    ts = read_table(run_dir / "timeseries.csv")
    rd = (
        read_table(run_dir / "radial_damage.csv")
        if (run_dir / "radial_damage.csv").is_file()
        else {}
    )
    shells = [k for k in rd if k.startswith("shell_")]
    keys = (
        "step", "time_s", "voltage_V", "current_A", "capacity_mAh_g", "x_avg", "x_surf_min",
        "x_surf_max", "eps_a", "eps_c", "damage_fraction", "damage_gb_share", "crack_area_um2",
        "crack_area_gb_share", "phi_max", "sigma1_max_Pa",
    )  # fmt: skip

    def radial_at(step: float) -> dict | None:
        if not shells:
            return None
        j = np.flatnonzero(rd["step"] <= step)  # the row of that step, or the last before it
        if not j.size:
            return None
        return {k.removeprefix("shell_"): float(rd[k][j[-1]]) for k in shells}

    out: dict = {"n_steps": int(len(ts["step"]))}
    pm = ts.get("phi_max", np.zeros_like(ts["voltage_V"]))
    hit = np.flatnonzero(pm >= PHI_ONSET)
    if hit.size:
        i = int(hit[0])
        on = _row(ts, i, keys)
        on["time_h"] = on["time_s"] / 3600
        on["radial_damage_fraction"] = radial_at(ts["step"][i])
        # the shells that hold damage at the first row where the damaged volume is > 0
        dmg = np.flatnonzero(ts["damage_fraction"] > 0)
        if dmg.size:
            on["first_damaged_row_radial"] = radial_at(ts["step"][dmg[0]])
            on["first_damaged_row_voltage_V"] = float(ts["voltage_V"][dmg[0]])
        out["onset"] = on
    else:
        out["onset"] = None
    ic = int(np.nanargmax(ts["eps_c"]))
    out["c_peak"] = _row(ts, ic, keys)
    ps = ts.get("protocol_step")
    if ps is not None and np.any(ps == 0):
        icc = int(np.flatnonzero(ps == 0)[-1])
    else:
        icc = len(ts["step"]) - 1
    end_cc = _row(ts, icc, keys)
    end_cc["time_h"] = end_cc["time_s"] / 3600
    end_cc["radial_damage_fraction"] = radial_at(ts["step"][icc])
    out["end_cc"] = end_cc
    last = len(ts["step"]) - 1
    end = _row(ts, last, keys)
    end["time_h"] = end["time_s"] / 3600
    end["radial_damage_fraction"] = radial_at(ts["step"][last])
    end["is_cv"] = bool(ps is not None and ps[last] > 0)
    out["end"] = end
    at = {}
    for v in voltages:
        i = _first_at_voltage(ts, v)
        if i is None:
            continue
        r = _row(ts, i, keys)
        r["radial_damage_fraction"] = radial_at(ts["step"][i])
        at[f"{v:.2f}"] = r
    out["at_voltage"] = at
    # damage growth per 0.1 V on the CC branch (steep increase or stall?)
    cc = slice(0, icc + 1)
    vv, dd = ts["voltage_V"][cc], ts["damage_fraction"][cc]
    growth = {}
    for a, b in [(3.9, 4.0), (4.0, 4.1), (4.1, 4.2), (4.2, 4.3), (4.3, 4.4), (4.4, 4.5)]:
        if vv.size and vv.max() >= b - 1e-3:
            growth[f"{a:.1f}-{b:.1f}"] = float(np.interp(b, vv, dd) - np.interp(a, vv, dd))
    out["damage_increase_per_0.1V"] = growth
    out["damage_increase_during_cv"] = float(
        ts["damage_fraction"][last] - ts["damage_fraction"][icc]
    )
    rj = run_dir / "run.json"
    if rj.is_file():
        rec = json.loads(rj.read_text())
        out["run"] = {
            k: rec.get(k)
            for k in ("status", "mpi_size", "wall_time_s", "steps", "mesh", "fracture_summary")
        }
    return out


def _mark(ax, x, y, label, color, marker):
    ax.plot([x], [y], marker=marker, color=color, ms=9, ls="none", label=label)


def fig5_panels(
    run_dir: Path, out: Path, voltages=(4.0, 4.2, 4.5), lattice=None, title: str = ""
) -> dict[str, Path]:
    """Write the Fig. 5 panels (a)-(e) of a run directory into ``out``; return their paths.

    ``lattice`` (a :class:`solver.materials.LatticeStrains`) adds the strain laws over the whole
    x range to panel (b); without it panel (b) shows the run's own eps_a(x_avg), eps_c(x_avg).
    """
    run_dir, out = Path(run_dir), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ts = read_table(run_dir / "timeseries.csv")
    lm = landmarks(run_dir, voltages)
    plt = _mpl()
    paths: dict[str, Path] = {}
    ps = ts.get("protocol_step", np.zeros_like(ts["voltage_V"]))
    cc, cv = ps == 0, ps > 0

    # (a) voltage vs capacity, CC and CV tail
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    cap = ts["capacity_mAh_g"]
    a1.plot(cap[cc], ts["voltage_V"][cc], "k-", label="CC, C/50")
    if cv.any():
        j = np.flatnonzero(cv)
        j = np.concatenate([[j[0] - 1], j]) if j[0] > 0 else j
        a1.plot(cap[j], ts["voltage_V"][j], "C1-", lw=2.5, label="CV at 4.5 V")
    if lm["onset"]:
        _mark(
            a1, lm["onset"]["capacity_mAh_g"], lm["onset"]["voltage_V"], "first φ ≥ 0.95", "C3", "o"
        )
    a1.set(xlabel="capacity (mA h/g)", ylabel="voltage (V vs Li/Li⁺)", title=f"(a) voltage {title}")
    a1.legend(loc="lower right")
    th = ts["time_s"] / 3600
    a2.plot(th, ts["voltage_V"], "k-")
    a2.set(xlabel="time (h)", ylabel="voltage (V)", title="voltage and current vs time")
    if "current_A" in ts:
        a3 = a2.twinx()
        a3.plot(th, ts["current_A"] / ts["current_A"][0], "C0--")
        a3.set_ylabel("current / I(C/50)", color="C0")
    p = out / "a_voltage_capacity.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    paths["a"] = p

    # (b) strains vs x with marks
    fig, ax = plt.subplots(figsize=(6, 4.3), constrained_layout=True)
    if lattice is not None:
        xs = np.linspace(min(0.1, float(np.nanmin(ts["x_avg"]))), float(ts["x_avg"][0]), 400)
        ax.plot(xs, lattice.eps_a(xs), "C0-", lw=1, alpha=0.5)
        ax.plot(xs, lattice.eps_c(xs), "C1-", lw=1, alpha=0.5)
    ax.plot(ts["x_avg"], ts["eps_a"], "C0-", lw=2, label="ε_a (run, x_avg)")
    ax.plot(ts["x_avg"], ts["eps_c"], "C1-", lw=2, label="ε_c (run, x_avg)")
    marks = [
        ("onset", "first φ ≥ 0.95", "C3", "o"),
        ("c_peak", "c-peak", "k", "^"),
        ("end_cc", "end of CC (4.5 V)", "C2", "s"),
        ("end", "end of CV", "C4", "D"),
    ]
    for key, lab, col, mk in marks:
        r = lm.get(key)
        if not r or (key == "end" and not r.get("is_cv")):
            continue
        ax.axvline(r["x_avg"], color=col, ls=":", lw=1)
        _mark(ax, r["x_avg"], r["eps_c"], f"{lab}: x = {r['x_avg']:.3f}", col, mk)
        _mark(ax, r["x_avg"], r["eps_a"], None, col, mk)
    ax.axhline(0.015, color="grey", lw=0.6, ls="--")
    ax.invert_xaxis()
    ax.set(xlabel="x (Li fraction, particle average)", ylabel="lattice strain", title="(b) strains")
    ax.legend(fontsize=8, loc="lower left")
    p = out / "b_strains.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    paths["b"] = p

    # (c) damaged volume fraction and GB share vs voltage
    fig, ax = plt.subplots(figsize=(6, 4.3), constrained_layout=True)
    ax.plot(
        ts["voltage_V"][cc], 100 * ts["damage_fraction"][cc], "C3-", label="damaged volume (CC)"
    )
    if cv.any():
        ax.plot(
            np.full(cv.sum(), 4.5) + np.linspace(0, 0.02, cv.sum()),
            100 * ts["damage_fraction"][cv],
            "C1-",
            lw=3,
            label="during CV (spread 4.50-4.52 for display)",
        )
    ax.set(xlabel="voltage (V)", ylabel="damaged volume, φ ≥ 0.95 (% of particle)")
    ax.set_title("(c) damage and grain-boundary share")
    b = ax.twinx()
    b.plot(ts["voltage_V"], ts["damage_gb_share"], "C0:", lw=2, label="GB share (h ≥ 0.5)")
    b.set(ylabel="GB share of damaged volume", ylim=(0, 1.05))
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = b.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="upper left")
    p = out / "c_damage.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    paths["c"] = p

    # (d) radial damage at chosen voltages (+ end of CV)
    groups = [(f"{v:.2f} V", lm["at_voltage"].get(f"{v:.2f}")) for v in voltages]
    if lm["end"].get("is_cv"):
        groups.append(("end of CV", lm["end"]))
    groups = [
        (n, g["radial_damage_fraction"]) for n, g in groups if g and g.get("radial_damage_fraction")
    ]
    if groups:
        fig, ax = plt.subplots(figsize=(6, 4.3), constrained_layout=True)
        names = list(groups[0][1])
        w = 0.8 / len(groups)
        for k, (lab, rad) in enumerate(groups):
            ax.bar(np.arange(len(names)) + k * w, [100 * rad[n] for n in names], w, label=lab)
        ax.set_xticks(np.arange(len(names)) + 0.4 - w / 2, [n.replace("_", "–") for n in names])
        ax.set(xlabel="shell r/R_p", ylabel="damaged volume (% of shell)")
        ax.set_title("(d) radial damage distribution")
        ax.legend()
        p = out / "d_radial.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        paths["d"] = p

    # (e) montage of the mid-plane renders
    figs = run_dir / "figures"
    tags = [f"{v:.2f}V" for v in voltages]
    if (figs / "phi_final.png").is_file():
        tags.append("final")
    cols = [
        t for t in tags if (figs / f"phi_{t}.png").is_file() or (figs / f"sigma1_{t}.png").is_file()
    ]
    if cols:
        import matplotlib.image as mpimg

        fig, axs = plt.subplots(2, len(cols), figsize=(3.6 * len(cols), 7), constrained_layout=True)
        axs = np.asarray(axs).reshape(2, len(cols))
        for j, t in enumerate(cols):
            for i, name in enumerate(("phi", "sigma1")):
                f = figs / f"{name}_{t}.png"
                axs[i, j].set_axis_off()
                if f.is_file():
                    axs[i, j].imshow(mpimg.imread(f))
        fig.suptitle("(e) mid-plane cuts: φ (top), σ1 in GPa (bottom)")
        p = out / "e_midplane.png"
        fig.savefig(p, dpi=100)
        plt.close(fig)
        paths["e"] = p
    return paths
