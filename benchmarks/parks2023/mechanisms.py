"""The mechanism table of issue 22 (item 5) on a small case, in quasi-static and coupled mode.

    python benchmarks/parks2023/mechanisms.py [--bundle DIR] [--rows LABEL ...] [--name NAME]
        [--max-cpu-s S] [--resummarise]
    python benchmarks/parks2023/mechanisms.py --table coupled --work DIR

``--table coupled`` (name mechanisms_coupled) runs the options that need transport (per-grain
i0 and D scatter, D(x)) in ``physics.mode: coupled`` (``solver.linear: fieldsplit``,
``dt_max_s`` 1800 as the demo), beside a coupled baseline; everything else below is the same.

The demo case (polycrack.cases demo.yaml: 50 grains, h = 0.8 µm) with l = l_γ = 0.8 µm and Gc 50 /
5 J/m² (the demo's set before main 54b3335, at h/l = 1), with
``physics.mode: quasistatic`` (x uniform; ``solver.linear: mumps_lagged``, ``dt_max_s`` 36000),
C/50 to 4.5 V and the hold to C/100, once per row: the baseline, each mechanism of
``physics.mechanisms`` that quasi-static mode supports and each strain-data set alone, and
combinations. Per row: onset voltage (φ_max crosses 0.95), the radial shell holding most of the
first damaged volume, damaged fraction and crack area Γ_l at 4.0 / 4.2 / 4.5 V and at the end,
the c-peak voltage (largest ε_c at x_avg) and the growth of Γ_l and of the damaged fraction after
it, the volume fraction where ψ⁺ > H at the end of the cc step, the grain-boundary enrichment (GB share of Γ_l over the GB-zone volume share), the running
max |Δε′| and where ψ⁺ > H last happened (the driving-force columns), CPU time. Runs stop being
started once the CPU time spent exceeds ``--max-cpu-s`` (default 900 s); rows not run are listed.
Writes benchmarks/parks2023/results/<NAME>.json and benchmarks/parks2023/figures/<NAME>.png
(default name mechanisms_qs). Serial (one rank).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import dolfinx_solver  # noqa: F401
import numpy as np
from mpi4py import MPI

HERE = Path(__file__).resolve().parent

from polycrack.cases import case_path  # noqa: E402
from polycrack.config import load_case  # noqa: E402
from polycrack.physics.domain import ensure_bundle, load_bundle  # noqa: E402
from polycrack.physics.mechanics import ParticleDomain  # noqa: E402
from polycrack.post.plots import read_table  # noqa: E402
from polycrack.workflow.exports import git_commit  # noqa: E402
from polycrack.workflow.run import CoupledRun  # noqa: E402

BASE_SETS = [
    # the demo's fracture set before it followed h/l <= 1/2 (main 54b3335): the table below was
    # computed with it, at h/l = 1 (docs/convergence.md: onset moves ~10 mV, Γ ~17 % with h/l)
    "fracture.l_m=0.8e-6",
    "fracture.l_gamma_m=0.8e-6",
    "fracture.Gc_bulk_J_m2=50.0",
    "fracture.Gc_GB_J_m2=5.0",
    "physics.mode=quasistatic",
    "solver.linear=mumps_lagged",
    "solver.dt_max_s=36000",
    "output.fields_at_voltages_V=[]",
    "output.checkpoint_every_steps=0",
    "output.checkpoint_every_minutes=0",
]
M = "physics.mechanisms."
HET = f"{M}grain_heterogeneity.ocp_shift_std_V=0.01"
ROWS = {  # in the order they are run (the CPU budget may stop the last ones)
    "baseline": [],
    "het_ocp10mV": [HET],
    "gb_eigenstrain_weight": [f"{M}gb_eigenstrain_weight=true"],
    "toughness_xu2017": [f"{M}toughness_of_x=xu2017"],
    "data_kondrakov2017": ["mechanics.lattice_data=kondrakov2017"],
    "data_li2019": ["mechanics.lattice_data=li2019"],
    "het_ocp10mV+toughness": [HET, f"{M}toughness_of_x=xu2017"],
    "het_ocp10mV+gbw+toughness": [
        HET,
        f"{M}gb_eigenstrain_weight=true",
        f"{M}toughness_of_x=xu2017",
    ],
    "het_ocp30mV": [f"{M}grain_heterogeneity.ocp_shift_std_V=0.03"],
    "kondrakov2017+toughness": [
        "mechanics.lattice_data=kondrakov2017",
        f"{M}toughness_of_x=xu2017",
    ],
}
OCP1 = "electrochemistry.ocp=chen2020_maerker2019"
ANCHORS = [
    "mechanics.strain_mapping=anchors",
    "mechanics.strain_map_anchors=[{landmark: c_peak, voltage_V: 4.0}, "
    "{landmark: collapse_end, voltage_V: 4.5}]",
]
ROWS.update(
    {
        # stop 24: the first-charge OCP (x = 0.12 at 4.5 V) alone and with the tables whose Δε′
        # turns negative on it (docs/strain-data.md), and Gc(x) with the viscous phase field
        "ocp_first_charge": [OCP1],
        "li2019+ocp_first_charge": ["mechanics.lattice_data=li2019", OCP1],
        "maerker_anchors+ocp_first_charge": [*ANCHORS, OCP1],
        "toughness_xu2017_tau10": [
            f"{M}toughness_of_x=xu2017",
            "physics.phase_field_relaxation_s=10",
        ],
    }
)
COUPLED_SETS = [
    "physics.mode=coupled",
    "solver.linear=fieldsplit",
    "solver.dt_max_s=1800",
]
COUPLED_ROWS = {
    "coupled_baseline": [],
    "coupled_D_oregan2022": [f"{M}diffusivity_of_x=oregan2022"],
    "coupled_het_i0_1.0": [f"{M}grain_heterogeneity.i0_log_std=1.0"],
    "coupled_het_D_1.0": [f"{M}grain_heterogeneity.D_log_std=1.0"],
}
TABLES = {"quasistatic": (ROWS, []), "coupled": (COUPLED_ROWS, COUPLED_SETS)}
VOLTAGES = (4.0, 4.2, 4.5)
PHI_ONSET = 0.95
SHELLS = ("0.00_0.25", "0.25_0.50", "0.50_0.75", "0.75_1.00")


def _num(v):
    return None if v is None or not np.isfinite(v) else float(v)


def onset_V(ts: dict) -> float | None:
    """Voltage where φ_max crosses PHI_ONSET (linear between the two bracketing steps)."""
    hit = np.flatnonzero(ts["phi_max"] >= PHI_ONSET)
    if not hit.size:
        return None
    k = int(hit[0])
    if k == 0:
        return float(ts["voltage_V"][0])
    p0, p1 = ts["phi_max"][k - 1], ts["phi_max"][k]
    v0, v1 = ts["voltage_V"][k - 1], ts["voltage_V"][k]
    return float(v0 + (PHI_ONSET - p0) / (p1 - p0) * (v1 - v0))


def first_shell(rd: dict) -> str | None:
    """The shell r/R_p with the largest damaged fraction at the first row with any damage."""
    vals = np.array([rd[f"shell_{s}"] for s in SHELLS]).T
    hit = np.flatnonzero(vals.max(axis=1) > 0.0)
    return None if not hit.size else SHELLS[int(np.argmax(vals[hit[0]]))]


def at_voltage(ts: dict, col: str, v: float) -> float | None:
    """``col`` at voltage v on the cc step (interpolated; None if the run did not reach v)."""
    cc = ts["protocol_step"] == 0
    vv, yy = ts["voltage_V"][cc], ts[col][cc]
    if not len(vv) or v > vv.max() + 1e-3:  # the cc step ends within its event tolerance
        return None
    return float(np.interp(v, vv, yy))


def summarise(label: str, out: Path, rec: dict, cpu_s: float) -> dict:
    """One row of the table from a run directory."""
    ts = read_table(out / "timeseries.csv")
    rd = read_table(out / "radial_damage.csv")
    k_peak = int(np.argmax(ts["eps_c"]))
    row = {
        "label": label,
        "status": rec["status"],
        "steps": int(len(ts["step"])),
        "cpu_s": cpu_s,
        "onset_V": onset_V(ts),
        "first_damage_shell": first_shell(rd),
        "c_peak_V": float(ts["voltage_V"][k_peak]),
        "c_peak_x": float(ts["x_avg"][k_peak]),
        "end_V": float(ts["voltage_V"][-1]),
        "end_x": float(ts["x_avg"][-1]),
    }
    for v in VOLTAGES:
        row[f"damage_fraction_{v:.1f}V"] = _num(at_voltage(ts, "damage_fraction", v))
        row[f"crack_area_um2_{v:.1f}V"] = _num(at_voltage(ts, "crack_area_um2", v))
    for col in ("damage_fraction", "crack_area_um2", "crack_area_gb_share", "phi_max"):
        row[f"{col}_end"] = _num(ts[col][-1])
    row["crack_area_growth_after_c_peak_um2"] = float(
        ts["crack_area_um2"][-1] - ts["crack_area_um2"][k_peak]
    )
    row["damage_fraction_growth_after_c_peak"] = float(
        ts["damage_fraction"][-1] - ts["damage_fraction"][k_peak]
    )
    gbz = rec["mesh"].get("gb_zone_fraction")
    share = row["crack_area_gb_share_end"]
    row["gb_zone_fraction"] = gbz
    row["gb_enrichment"] = share / gbz if share is not None and gbz else None
    grow = np.flatnonzero(ts["psi_plus_over_H_max"] > 1.0 + 1e-9)
    row["last_step_psi_plus_above_H_V"] = float(ts["voltage_V"][grow[-1]]) if grow.size else None
    cc = np.flatnonzero(ts["protocol_step"] == 0)
    row["psi_plus_above_H_fraction_end_cc"] = float(ts["psi_plus_above_H_fraction"][cc[-1]])
    row["delta_eps_prime_absmax_end"] = float(ts["delta_eps_prime_absmax"][-1])
    row["binder_pressure_end_Pa"] = float(ts["binder_pressure_mean_Pa"][-1])
    return row


def run_row(label: str, sets: list[str], domain, work: Path, base: list[str]) -> dict:
    """Run one row into ``work/label`` (or reuse a finished run there, with its ``cpu_s.txt``)."""
    out = work / label
    done = out / "cpu_s.txt"
    if done.is_file() and (out / "run.json").is_file():
        rec = json.loads((out / "run.json").read_text())
        row = summarise(label, out, rec, float(done.read_text()))
        row["sets"], row["reused"] = sets, True
        row["mechanisms"] = {k: v["on"] for k, v in rec.get("mechanisms", {}).items()}
        return row
    rc = load_case(case_path("demo"), base + sets)
    t0 = time.process_time()
    dom = ParticleDomain.from_domain(domain)
    rec = CoupledRun(rc, out, MPI.COMM_WORLD, dom=dom, verbose=False, overwrite=True).run()
    cpu = time.process_time() - t0
    done.write_text(repr(cpu))
    row = summarise(label, out, rec, cpu)
    row["sets"] = sets
    row["mechanisms"] = {k: v["on"] for k, v in rec.get("mechanisms", {}).items()}
    return row


def plot(rows: list[dict], work: Path, path: Path, mode: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5))
    for i, r in enumerate(rows):
        ts = read_table(work / r["label"] / "timeseries.csv")
        q = ts["capacity_mAh_g"]
        style = {"color": f"C{i % 10}", "linestyle": ("-", "--")[i // 10 % 2]}  # 10 colours
        a.plot(q, ts["crack_area_um2"], label=r["label"], **style)
        b.plot(q, ts["psi_plus_above_H_fraction"], label=r["label"], **style)
    a.set_xlabel("capacity (mA h/g)")
    a.set_ylabel("crack area Γ_l (µm²)")
    b.set_xlabel("capacity (mA h/g)")
    b.set_ylabel("volume fraction with ψ⁺ > H")
    a.legend(fontsize=7)
    fig.suptitle(f"demo particle, {mode} mode, C/50 to 4.5 V + hold: mechanisms (issue 22)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", type=Path, default=None, help="mesh bundle of the demo case")
    ap.add_argument("--table", choices=list(TABLES), default="quasistatic")
    ap.add_argument("--rows", nargs="*", default=None, help="labels (default: the whole table)")
    ap.add_argument("--name", default=None, help="default mechanisms_qs / mechanisms_coupled")
    ap.add_argument("--work", type=Path, default=None, help="run directories (default: temp)")
    ap.add_argument("--max-cpu-s", type=float, default=900.0)
    ap.add_argument("--resummarise", action="store_true", help="re-read --work, run nothing")
    args = ap.parse_args()
    table, extra = TABLES[args.table]
    args.rows = list(table) if args.rows is None else args.rows
    unknown = [r for r in args.rows if r not in table]
    if unknown:
        raise SystemExit(f"--rows: {unknown} not in the {args.table} table: {list(table)}")
    args.name = args.name or (
        "mechanisms_qs" if args.table == "quasistatic" else "mechanisms_coupled"
    )
    base = BASE_SETS + extra
    comm = MPI.COMM_WORLD
    if comm.size != 1:
        raise SystemExit("run on one rank")
    work = args.work or Path(tempfile.mkdtemp(prefix="polycrack-mech-"))
    rows, skipped, spent = [], [], 0.0
    if args.resummarise:
        for label in args.rows:
            rec = json.loads((work / label / "run.json").read_text())
            cpu = work / label / "cpu_s.txt"
            row = summarise(
                label, work / label, rec, float(cpu.read_text()) if cpu.is_file() else None
            )
            row["sets"] = table[label]
            row["mechanisms"] = {k: v["on"] for k, v in rec.get("mechanisms", {}).items()}
            rows.append(row)
            spent += row["cpu_s"] or 0.0
    else:
        rc = load_case(case_path("demo"), base)
        bundle = args.bundle or ensure_bundle(rc.case.geometry, work / "mesh", comm)
        domain = load_bundle(bundle, comm, rc.case.geometry.mesh.refine_levels)
        for label in args.rows:
            if spent > args.max_cpu_s:
                skipped.append(label)
                continue
            row = run_row(label, table[label], domain, work, base)
            spent += row["cpu_s"]
            rows.append(row)
            print(json.dumps({k: row[k] for k in ("label", "onset_V", "cpu_s")}), flush=True)
            write(args, rows, skipped, spent, work, table, base)  # a killed job keeps them
    write(args, rows, skipped, spent, work, table, base)
    plot(rows, work, HERE / "figures" / f"{args.name}.png", args.table)


def write(args, rows, skipped, spent: float, work: Path, table: dict, base: list[str]) -> None:
    res = {
        "benchmark": f"parks2023_{args.name}",
        "command": f"python benchmarks/parks2023/mechanisms.py --table {args.table} "
        + " ".join(f"--rows {' '.join(args.rows)}".split()),
        "case": "polycrack.cases demo.yaml with " + ", ".join(base),
        "machine": {"node": platform.node(), "cpus": os.cpu_count()},
        "git_commit": git_commit(),
        "loadavg_end": list(os.getloadavg()),
        "cpu_s_total": spent,
        "rows": rows,
        "not_run": [r for r in table if r not in {x["label"] for x in rows}],
        "work_dir": str(work),
    }
    out = HERE / "results" / f"{args.name}.json"
    out.write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {out}", flush=True)


if __name__ == "__main__":
    main()
