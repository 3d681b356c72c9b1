"""Convergence in h at fixed l, the phase-field viscosity and the tessellation spread (issue 23
item 4) on the demo particle (50 grains, 14 µm, base mesh h = 0.8 µm).

    mpirun -n 2 python benchmarks/convergence/study.py [--work DIR] [--only LABEL ...]
        [--levels 0 1] [--l-um 0.8 0.4 1.6] [--tau-s 10] [--seeds 1 2 3 4 5]
        [--coupled LEVEL L_UM ...] [--p2 LEVEL L_UM ...] [--plot-only] [--set KEY=VALUE ...]

Every run is the demo case (examples/demo.yaml, CC C/50 to 4.5 V then CV to C/100) in
``physics.mode: quasistatic`` (x uniform; benchmarks/results/quasistatic_vs_coupled.json: onset
within 10 mV and Γ within 0.5 % of the coupled model on this particle), with
``solver.dt_max_s`` 36000 s, at:

* ``levels``: uniform DOLFINx refinements of the one base mesh (``geometry.mesh.refine_levels``:
  h = 0.8, 0.4, 0.2 µm; the same geometry, the same grains);
* ``l-um``: the phase-field lengths l = l_gamma, with Gc_bulk and Gc_GB scaled by l (the demo's
  50 / 5 J/m^2 at l = 0.8 µm; params/nmc811_parks2023.yaml: Gc ~ l keeps the AT2 strengths).
  l = 1.6 µm is the shipped demo's own l: its levels 0 and 1 are h/l = 1/2 and 1/4, the one
  h/l = 1/4 level that fits 2 cores (206 k cells);
* ``tau-s``: the phase-field viscosity (``physics.phase_field_relaxation_s``) of the study, and
  tau = 0 at l = 0.8 µm on each level, to measure what the viscosity changes;
* ``seeds``: tessellation seeds (``geometry.grains.seed``) on level 0 at l = 0.8 µm;
* ``p2``: quasi-static runs with P2 displacement (label suffix ``_p2``), compared with the P1
  runs of the same and the next level: how much of the mesh error is the displacement's;
* ``coupled``: confirmation runs with the demo's coupled model (Li diffusion, Butler-Volmer, its
  own solver and step limit; labels ``c...``), compared with the quasi-static run of the same
  level and l (in addition to the default, level 1 at l = 1.6 µm).

Runs are kept in ``--work`` (default runs/convergence) and a run whose run.json says finished is
not solved again; one with a checkpoint continues from it (``--restart``), so the study can be
continued after an interruption (or split over sessions with ``--only``). Metrics per run: the damage onset (first step with phi_max >= 0.95 and the
interpolated crossing), Γ (crack_area_um2) and the phi >= 0.95 volume fraction at 4.0 / 4.2 /
4.5 V in the CC step and at the end of CV, the GB enrichment (damage_gb_share over the volume
share of the GB zone), and the radial shares of Γ at 4.5 V. Successive levels at the same l and
tau are compared (onset in mV, Γ and damaged volume relative). Writes
benchmarks/results/convergence.json and convergence.png (``--name`` changes the stem).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import dolfinx_solver  # noqa: F401
import numpy as np
from mpi4py import MPI
from polycrack.config import load_case
from polycrack.post.plots import read_table
from polycrack.post.timeseries import damage_onset, value_at_voltage
from polycrack.workflow.exports import git_commit
from polycrack.workflow.lock import in_use
from polycrack.workflow.run import CoupledRun

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "examples" / "demo.yaml"
BASE_H_UM = 0.8
BASE_L_UM = 0.8
GC_AT_BASE = (50.0, 5.0)  # J/m^2 (bulk, GB) at l = 0.8 µm: the demo's pair
PHI_ONSET = 0.95
VOLTAGES = (3.8, 4.0, 4.2, 4.5)  # 3.8 V: reached by every refined run so far
OVR = "material.overrides."
COMMON = ("physics.mode=quasistatic", "solver.dt_max_s=36000")


def spec(
    level: int, l_um: float, tau: float, seed: int = 1, coupled: bool = False, degree: int = 1
) -> tuple[str, list[str]]:
    """A run's label and overrides. ``coupled``: the demo's own coupled model (Li diffusion and
    Butler-Volmer, its solver and step limit) instead of the quasi-static mode, label ``c...``;
    ``degree`` 2: P2 displacement (``physics.displacement_degree``), label suffix ``_p2``."""
    scale = l_um / BASE_L_UM
    sets = [
        *(() if coupled else COMMON),
        f"geometry.mesh.refine_levels={level}",
        # as the case's material overrides, which replace the demo's own pair: the study does not
        # move (and its checkpoints stay valid) when examples/demo.yaml changes its l
        f"{OVR}fracture.l_m={l_um * 1e-6:.6g}",
        f"{OVR}fracture.l_gamma_m={l_um * 1e-6:.6g}",
        f"{OVR}fracture.Gc_bulk_J_m2={GC_AT_BASE[0] * scale:.6g}",
        f"{OVR}fracture.Gc_GB_J_m2={GC_AT_BASE[1] * scale:.6g}",
        f"physics.phase_field_relaxation_s={tau:g}",
    ]
    if seed != 1:
        sets.append(f"geometry.grains.seed={seed}")
    if degree != 1:
        sets.append(f"physics.displacement_degree={degree}")
    suffix = f"_p{degree}" if degree != 1 else ""
    return f"{'c' if coupled else 'r'}{level}_l{l_um:g}_tau{tau:g}_seed{seed}{suffix}", sets


def plan(args) -> list[tuple[str, list[str]]]:
    """The study's runs, cheapest first within each group."""
    runs = [spec(lv, l, args.tau_s) for l in args.l_um for lv in args.levels]
    if args.tau_s != 0:
        runs += [spec(lv, BASE_L_UM, 0.0) for lv in args.levels]
    runs += [spec(min(args.levels), BASE_L_UM, args.tau_s, s) for s in args.seeds if s != 1]
    runs += [spec(int(lv), float(l), args.tau_s, coupled=True) for lv, l in args.coupled]
    runs += [spec(int(lv), float(l), args.tau_s, degree=2) for lv, l in args.p2]
    seen, out = set(), []
    for label, sets in sorted(runs, key=lambda r: int(r[0][1])):
        if label not in seen:
            seen.add(label)
            out.append((label, sets))
    return out


def finished(run_dir: Path) -> bool:
    """The run ended (finished, or failed: a failure is a result of the study too)."""
    try:
        status = json.loads((run_dir / "run.json").read_text()).get("status")
    except (OSError, ValueError):
        return False
    return status in ("finished", "failed")


def summarise(label: str, sets: list[str], run_dir: Path) -> dict:
    rec = json.loads((run_dir / "run.json").read_text())
    if rec["status"] == "running" and not in_use(run_dir):
        rec["status"] = "killed"  # its process is gone (e.g. the session ended): not running
    ts = read_table(run_dir / "timeseries.csv")
    cc = ts["protocol_step"] == 0
    mesh = rec.get("mesh", {})
    val = {k.split("=")[0]: k.split("=")[1] for k in sets}
    row = {
        "label": label,
        "mode": "quasistatic" if val.get("physics.mode") == "quasistatic" else "coupled",
        "displacement_degree": int(val.get("physics.displacement_degree", 1)),
        "overrides": sets,
        "status": rec["status"],
        "refine_levels": int(val["geometry.mesh.refine_levels"]),
        "h_nominal_um": BASE_H_UM / 2 ** int(val["geometry.mesh.refine_levels"]),
        "l_um": round(float(val.get("fracture.l_m") or val[OVR + "fracture.l_m"]) * 1e6, 9),
        "tau_s": float(val["physics.phase_field_relaxation_s"]),
        "seed": int(val.get("geometry.grains.seed", 1)),
        "cells": mesh.get("cells"),
        "particle_cells": mesh.get("particle_cells"),
        "unknowns": mesh.get("unknowns"),
        "h_eq_um": mesh.get("h_eq_um"),
        "gb_zone_fraction": mesh.get("gb_zone_fraction"),
        "mpi_ranks": rec.get("mpi_size"),
        # every segment of a run continued from checkpoints (solve_s is the last segment's)
        "solve_wall_s": rec.get("wall_time_s", {}).get(
            "solve_s_all_segments", rec.get("wall_time_s", {}).get("solve_s")
        ),
        "accepted_steps": rec.get("steps", {}).get("accepted"),
        "rejected_steps": sum(v for k, v in rec.get("steps", {}).items() if k != "accepted"),
        "newton_iterations": rec.get("solver", {}).get("newton_iterations"),
        "onset": {k.replace("_voltage_V", "_V"): v for k, v in damage_onset(ts, PHI_ONSET).items()},
    }
    row["h_over_l"] = row["h_nominal_um"] / row["l_um"]
    for v in VOLTAGES:
        for col, key in (("crack_area_um2", "crack_area_um2"), ("damage_fraction", "damage")):
            row[f"{key}_{v:.1f}V"] = value_at_voltage(ts, col, v, cc)
    row["voltage_end_V"] = float(ts["voltage_V"][-1])
    row["crack_area_um2_end"] = float(ts["crack_area_um2"][-1])
    row["damage_end"] = float(ts["damage_fraction"][-1])
    end_cc = int(np.flatnonzero(cc)[-1])
    partial = row["voltage_end_V"] < VOLTAGES[-1] - 1e-4
    if partial:
        row["status"] = f"{row['status']} (reached {row['voltage_end_V']:.3f} V)"
        row["damage_gb_share_4.5V"] = row["crack_area_gb_share_4.5V"] = None
        row["radial_crack_area_share_4.5V"] = None
    else:
        row["damage_gb_share_4.5V"] = float(ts["damage_gb_share"][end_cc])
        row["crack_area_gb_share_4.5V"] = float(ts["crack_area_gb_share"][end_cc])
        rad = read_table(run_dir / "radial_damage.csv")
        k = int(np.argmin(np.abs(rad["time_s"] - ts["time_s"][end_cc])))
        shells = sorted(c for c in rad if c.startswith("crack_area_") and c.endswith("_um2"))
        tot = sum(float(rad[c][k]) for c in shells)
        row["radial_crack_area_share_4.5V"] = {
            c[len("crack_area_") : -len("_um2")]: (float(rad[c][k]) / tot if tot > 0 else None)
            for c in shells
        }
    row["curve"] = {
        "voltage_V": ts["voltage_V"][cc].tolist(),
        "crack_area_um2": ts["crack_area_um2"][cc].tolist(),
        "damage_fraction": ts["damage_fraction"][cc].tolist(),
    }
    return row


def fill_gb_zone(rows: list[dict]) -> None:
    """GB enrichment = damage_gb_share / gb_zone_fraction; the zone depends on the mesh and
    l_gamma only, so a run without the number (older code) takes it from a sibling run."""
    for r in rows:
        if r["gb_zone_fraction"] is None:
            for o in rows:
                same = ("refine_levels", "l_um", "seed")
                if o["gb_zone_fraction"] is not None and all(o[k] == r[k] for k in same):
                    r["gb_zone_fraction"] = o["gb_zone_fraction"]
                    r["gb_zone_fraction_from"] = o["label"]
                    break
        z = r["gb_zone_fraction"]
        s = r["damage_gb_share_4.5V"]
        r["gb_enrichment_4.5V"] = s / z if z and s is not None and s == s else None


def rel(a, b):
    return None if a is None or b in (None, 0) else a / b - 1.0


def compare(rows: list[dict]) -> list[dict]:
    """Successive levels at the same l, tau and seed: onset (mV), Γ and damage (relative)."""
    out = []
    by = {
        (
            r["mode"],
            r["displacement_degree"],
            r["l_um"],
            r["tau_s"],
            r["seed"],
            r["refine_levels"],
        ): r
        for r in rows
    }
    for (mode, deg, l_um, tau, seed, lv), fine in sorted(by.items()):
        coarse = by.get((mode, deg, l_um, tau, seed, lv - 1))
        if coarse is None:
            continue
        c = {
            "mode": mode,
            "displacement_degree": deg,
            "l_um": l_um,
            "tau_s": tau,
            "seed": seed,
            "h_over_l": [coarse["h_over_l"], fine["h_over_l"]],
        }
        a, b = fine["onset"]["interpolated_V"], coarse["onset"]["interpolated_V"]
        c["onset_diff_mV"] = None if a is None or b is None else 1e3 * (a - b)
        for v in VOLTAGES:
            for key in ("crack_area_um2", "damage"):
                c[f"{key}_{v:.1f}V_rel_diff"] = rel(
                    fine[f"{key}_{v:.1f}V"], coarse[f"{key}_{v:.1f}V"]
                )
        if "reached" not in fine["status"] + coarse["status"]:  # both ran to the end
            c["crack_area_um2_end_rel_diff"] = rel(
                fine["crack_area_um2_end"], coarse["crack_area_um2_end"]
            )
        for v in VOLTAGES:
            c[f"first_order_fit_{v:.1f}V"] = first_order_fit(
                coarse[f"crack_area_um2_{v:.1f}V"],
                fine[f"crack_area_um2_{v:.1f}V"],
                fine["h_over_l"],
            )
        out.append(c)
    return out


def first_order_fit(coarse: float | None, fine: float | None, h_over_l_fine: float) -> dict | None:
    """Γ(h) = Γ_0 (1 + c h/l) through two levels h and h/2 (the error model of a crack band one
    cell wide: benchmarks/convergence/gamma_discretisation.py, c = 1/2): the extrapolated Γ_0
    (µm², Richardson, 2 Γ_fine − Γ_coarse), the constant c, and the fine level's error
    Γ_fine/Γ_0 − 1. None without both values."""
    if coarse is None or fine is None or coarse != coarse or fine != fine or coarse <= 0:
        return None
    g0 = 2.0 * fine - coarse
    if g0 <= 0:
        return None
    return {
        "gamma0_um2": g0,
        "c": (coarse - fine) / (g0 * h_over_l_fine),
        "fine_error": fine / g0 - 1.0,
    }


def tau_effect(rows: list[dict]) -> list[dict]:
    """The study's viscosity against tau = 0 on each level (l = 0.8 µm, seed 1)."""
    out = []
    rows = [r for r in rows if r["mode"] == "quasistatic" and r["displacement_degree"] == 1]
    zero = {r["refine_levels"]: r for r in rows if r["tau_s"] == 0 and r["seed"] == 1}
    for r in rows:
        z = zero.get(r["refine_levels"])
        if r["tau_s"] == 0 or r["seed"] != 1 or r["l_um"] != BASE_L_UM or z is None:
            continue
        a, b = r["onset"]["interpolated_V"], z["onset"]["interpolated_V"]
        out.append(
            {
                "refine_levels": r["refine_levels"],
                "tau_s": r["tau_s"],
                "onset_diff_mV": None if a is None or b is None else 1e3 * (a - b),
                "crack_area_um2_4.5V_rel_diff": rel(
                    r["crack_area_um2_4.5V"], z["crack_area_um2_4.5V"]
                ),
                "damage_4.5V_rel_diff": rel(r["damage_4.5V"], z["damage_4.5V"]),
                "newton_ratio_tau0_over_tau": (
                    z["newton_iterations"] / r["newton_iterations"]
                    if r["newton_iterations"]
                    else None
                ),
            }
        )
    return out


def mode_effect(rows: list[dict]) -> list[dict]:
    """Each coupled run against the quasi-static run of the same level, l, tau and seed."""
    key = ("refine_levels", "l_um", "tau_s", "seed")
    qs = {
        tuple(r[k] for k in key): r
        for r in rows
        if r["mode"] == "quasistatic" and r["displacement_degree"] == 1
    }
    out = []
    for c in rows:
        q = qs.get(tuple(c[k] for k in key))
        if c["mode"] != "coupled" or q is None:
            continue
        a, b = c["onset"]["interpolated_V"], q["onset"]["interpolated_V"]
        d = {k: c[k] for k in key}
        d["onset_diff_mV"] = None if a is None or b is None else 1e3 * (a - b)
        for v in VOLTAGES:
            for k in ("crack_area_um2", "damage"):
                d[f"{k}_{v:.1f}V_rel_diff"] = rel(c[f"{k}_{v:.1f}V"], q[f"{k}_{v:.1f}V"])
        d["wall_ratio_coupled_over_quasistatic"] = (
            c["solve_wall_s"] / q["solve_wall_s"]
            if c["solve_wall_s"] and q["solve_wall_s"]
            else None
        )
        out.append(d)
    return out


def degree_effect(rows: list[dict]) -> list[dict]:
    """Each P2-displacement run against the P1 runs of the same l, tau and seed on its own level
    and on the next finer one: Γ relative, and how much of the P1 level change P2 gives
    (``share_of_refinement``: (Γ_P2 − Γ_P1) / (Γ_P1,finer − Γ_P1); 1 = all of it)."""
    key = ("l_um", "tau_s", "seed")
    p1 = {
        (*(r[k] for k in key), r["refine_levels"]): r
        for r in rows
        if r["mode"] == "quasistatic" and r["displacement_degree"] == 1
    }
    out = []
    for r in rows:
        if r["displacement_degree"] != 2:
            continue
        same = p1.get((*(r[k] for k in key), r["refine_levels"]))
        finer = p1.get((*(r[k] for k in key), r["refine_levels"] + 1))
        if same is None:
            continue
        d = {k: r[k] for k in (*key, "refine_levels")}
        a, b = r["onset"]["interpolated_V"], same["onset"]["interpolated_V"]
        d["onset_diff_mV"] = None if a is None or b is None else 1e3 * (a - b)
        for v in VOLTAGES:
            g2, g1 = r[f"crack_area_um2_{v:.1f}V"], same[f"crack_area_um2_{v:.1f}V"]
            d[f"crack_area_um2_{v:.1f}V_rel_diff"] = rel(g2, g1)
            gf = finer[f"crack_area_um2_{v:.1f}V"] if finer else None
            ok = None not in (g2, g1, gf) and gf != g1
            d[f"share_of_refinement_{v:.1f}V"] = (g2 - g1) / (gf - g1) if ok else None
        comparable = (  # whole runs on the same number of ranks
            r["status"] == same["status"] == "finished" and r["mpi_ranks"] == same["mpi_ranks"]
        )
        d["wall_ratio_p2_over_p1"] = (
            r["solve_wall_s"] / same["solve_wall_s"]
            if comparable and r["solve_wall_s"] and same["solve_wall_s"]
            else None
        )
        d["unknowns_ratio_p2_over_p1"] = (
            r["unknowns"] / same["unknowns"] if r["unknowns"] and same["unknowns"] else None
        )
        out.append(d)
    return out


def seed_spread(rows: list[dict]) -> dict | None:
    group = [
        r
        for r in rows
        if r["l_um"] == BASE_L_UM
        and r["tau_s"] != 0
        and r["mode"] == "quasistatic"
        and r["displacement_degree"] == 1
    ]
    if not group:
        return None
    lv = min(r["refine_levels"] for r in group)
    group = [r for r in group if r["refine_levels"] == lv]
    if len(group) < 2:
        return None
    out = {"refine_levels": lv, "seeds": [r["seed"] for r in group]}
    for key, get in (
        ("onset_V", lambda r: r["onset"]["interpolated_V"]),
        ("crack_area_um2_4.5V", lambda r: r["crack_area_um2_4.5V"]),
        ("damage_4.5V", lambda r: r["damage_4.5V"]),
    ):
        vals = np.array([get(r) for r in group if get(r) is not None], float)
        out[key] = {
            "values": vals.tolist(),
            "mean": float(vals.mean()),
            "std": float(vals.std(ddof=1)) if vals.size > 1 else None,
            "range": float(vals.max() - vals.min()),
        }
    return out


def plot(res: dict, path: Path) -> None:
    """One panel per l (seed 1: each level, tau and mode) and one for the tessellation seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ls = sorted({r["l_um"] for r in res["rows"] if r["seed"] == 1})
    fig, axs = plt.subplots(1, len(ls) + 1, figsize=(5 * (len(ls) + 1), 4.5), squeeze=False)
    axs = axs[0]
    lv_seeds = min(r["refine_levels"] for r in res["rows"])
    for r in res["rows"]:
        c = r["curve"]
        if r["seed"] != 1:
            axs[-1].plot(c["voltage_V"], c["crack_area_um2"], lw=1, label=f"seed {r['seed']}")
            continue
        ax = axs[ls.index(r["l_um"])]
        style = ":" if r["mode"] == "coupled" else ("-" if r["tau_s"] else "--")
        cells = f" ({r['particle_cells']} cells)" if r["particle_cells"] else ""
        lab = f"h/l = {r['h_over_l']:g}, tau = {r['tau_s']:g} s{cells}, {r['status']}"
        if r["mode"] == "coupled":
            lab = "coupled, " + lab
        if r["displacement_degree"] == 2:
            style, lab = "-.", "P2 u, " + lab
        ax.plot(c["voltage_V"], c["crack_area_um2"], style, label=lab)
        base = r["l_um"] == BASE_L_UM and r["tau_s"] and r["mode"] == "quasistatic"
        base = base and r["displacement_degree"] == 1
        if base and r["refine_levels"] == lv_seeds:
            axs[-1].plot(c["voltage_V"], c["crack_area_um2"], "k-", lw=2, label="seed 1")
    titles = [f"l = {l_um:g} µm" for l_um in ls]
    titles.append(f"tessellation seeds (l = {BASE_L_UM:g} µm, level {lv_seeds})")
    for ax, title in zip(axs, titles, strict=True):
        ax.set(xlabel="cell voltage (V)", ylabel="crack area Γ (µm²)", title=title, xlim=(3.8, 4.5))
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.suptitle("demo particle, CC C/50 to 4.5 V (quasi-static unless marked): Γ against voltage")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--work", type=Path, default=REPO / "runs" / "convergence")
    ap.add_argument("--levels", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--l-um", type=float, nargs="+", default=[0.8, 0.4, 1.6])
    ap.add_argument("--tau-s", type=float, default=10.0)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    ap.add_argument(
        "--coupled",
        nargs=2,
        action="append",
        default=[["1", "1.6"]],
        metavar=("LEVEL", "L_UM"),
        help="a coupled confirmation run (the demo's coupled model) at this level and l "
        "(repeatable; default: level 1 at l = 1.6 µm, the finest level that fits 2 cores)",
    )
    ap.add_argument("--only", nargs="+", help="solve only these labels (others are summarised)")
    ap.add_argument(
        "--p2",
        nargs=2,
        action="append",
        default=[["0", "1.6"], ["0", "0.8"]],
        metavar=("LEVEL", "L_UM"),
        help="a quasi-static run with P2 displacement at this level and l, compared with the P1 "
        "runs of the same and the next level (repeatable; default: level 0 at l = 1.6 and 0.8 µm)",
    )
    ap.add_argument("--plot-only", action="store_true", help="summarise what is in --work")
    ap.add_argument("--name", default="convergence")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        help="KEY=VALUE for every run solved now (e.g. solver.linear=mumps_lagged, which was "
        "faster at level 1); a run continued from its checkpoint accepts these keys changed",
    )
    args = ap.parse_args()
    comm = MPI.COMM_WORLD
    runs = plan(args)
    timing = {}
    for label, sets in runs:
        run_dir = args.work / label
        if args.plot_only or finished(run_dir) or (args.only and label not in args.only):
            continue
        if comm.rank == 0:
            print(f"--- {label}: {' '.join(sets)}", flush=True)
        rc = load_case(DEMO, [*sets, *args.set])
        comm.barrier()
        t0 = time.perf_counter()
        resume = (run_dir / "checkpoint.npz").is_file()  # an interrupted run continues
        allow = tuple(kv.split("=")[0] for kv in args.set)
        CoupledRun(
            rc,
            run_dir,
            comm,
            verbose=False,
            restart=resume,
            overwrite=not resume,
            allow_changes=allow,
        ).run()
        timing[label] = {"wall_s": time.perf_counter() - t0, "loadavg": os.getloadavg()}
    if comm.rank != 0:
        return
    # runs still going (or stopped) are summarised as far as they got, with their status: a
    # level that did not reach 4.5 V still gives its onset and Γ at 4.0 V
    rows = [
        summarise(label, sets, args.work / label)
        for label, sets in runs
        if (args.work / label / "timeseries.csv").is_file()
    ]
    fill_gb_zone(rows)
    out = REPO / "benchmarks" / "results" / f"{args.name}.json"
    old = json.loads(out.read_text()) if out.exists() else {}
    timing = {**old.get("run_timing", {}), **timing}
    res = {
        "benchmark": "convergence",
        "machine": {"node": platform.node(), "cpus": os.cpu_count()},
        "git_commit": git_commit(),
        "loadavg_end": os.getloadavg(),
        "case": "examples/demo.yaml",
        "common_overrides": list(COMMON),
        "planned": [label for label, _ in runs],
        "missing": [label for label, _ in runs if not finished(args.work / label)],
        "run_timing": timing,
        "rows": rows,
        "levels": compare(rows),
        "tau_effect": tau_effect(rows),
        "seed_spread": seed_spread(rows),
        "coupled_vs_quasistatic": mode_effect(rows),
        "p2_vs_p1": degree_effect(rows),
    }
    out.write_text(json.dumps(res, indent=1))
    plot(res, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")
    for c in res["levels"]:
        print("levels", json.dumps(c))
    for c in res["tau_effect"]:
        print("tau", json.dumps(c))
    print("seeds", json.dumps(res["seed_spread"]))
    for c in res["coupled_vs_quasistatic"]:
        print("coupled", json.dumps(c))
    for c in res["p2_vs_p1"]:
        print("p2", json.dumps(c))


if __name__ == "__main__":
    main()
