"""Quasi-static mode against the coupled model on the demo (issue 23 item 3).

    mpirun -n 2 python benchmarks/quasistatic_vs_coupled.py [--bundle DIR] [--name NAME]
        [--qs LABEL:KEY=VALUE,KEY=VALUE ...] [--set KEY=VALUE ...]

Runs examples/demo.yaml (its mesh built once, or ``--bundle``) as shipped (``physics.mode``
coupled), then once per ``--qs`` row with ``physics.mode=quasistatic`` and that row's overrides.
Default rows: ``qs`` (``solver.dt_max_s`` 36000 s: in quasi-static mode no diffusion time scale
limits the step, only the Δφ limiter, Newton and events), ``qs_lagged`` (the same with
``solver.linear=mumps_lagged``) and ``qs_dt1800`` (the demo's own dt_max_s). Per run: wall time
of the time loop (``run.json`` solve_s) and CPU time of ``run()`` summed over ranks, steps,
Newton iterations; the damage onset (first step with phi_max >= 0.95, and the voltage where
phi_max crosses 0.95 by linear interpolation between the two steps that bracket it); damaged
fraction and crack area Γ (``crack_area_um2``) at the end of the cc step (4.5 V) and at the end
of the run. Against the coupled run: the voltage difference at the same charge (the coupled
run's V against U(x_avg) + η(I, x_avg), which the quasi-static rows satisfy exactly), the largest
damaged-fraction difference on a common voltage grid (3.7-4.49 V, cc part) and the time ratios.
Wall times on a shared machine are noisy: the load averages are recorded, and the CPU ratio is
the steadier number. Writes benchmarks/results/<NAME>.json (default quasistatic_vs_coupled).
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

REPO = Path(__file__).resolve().parent.parent

from polycrack.config import load_case  # noqa: E402
from polycrack.physics import materials as mat  # noqa: E402
from polycrack.physics.domain import ensure_bundle, load_bundle  # noqa: E402
from polycrack.physics.mechanics import ParticleDomain  # noqa: E402
from polycrack.post.plots import read_table  # noqa: E402
from polycrack.post.timeseries import damage_onset  # noqa: E402
from polycrack.workflow.exports import git_commit  # noqa: E402
from polycrack.workflow.run import CoupledRun  # noqa: E402

DEMO = REPO / "examples" / "demo.yaml"
QS_ROWS = (
    "qs:solver.dt_max_s=36000",
    "qs_lagged:solver.dt_max_s=36000,solver.linear=mumps_lagged",
    "qs_dt1800:",
)
PHI_ONSET = 0.95
GRID_V = np.linspace(3.7, 4.49, 80)


def onset(ts: dict) -> dict:
    """The onset (polycrack.post.timeseries.damage_onset) in voltage, x_avg and capacity."""
    o = damage_onset(ts, PHI_ONSET, ("voltage_V", "x_avg", "capacity_mAh_g"))
    return {
        "first_step_V": o["first_step_voltage_V"],
        "interpolated_V": o["interpolated_voltage_V"],
        "x_avg": o["interpolated_x_avg"],
        "capacity_mAh_g": o["interpolated_capacity_mAh_g"],
    }


def qs_voltage(ts: dict, rec: dict, rc) -> np.ndarray:
    """U(x_avg) + η(I/A, x_avg): the quasi-static voltage at each row's charge and current."""
    p = rc.params.electrochemistry
    x = ts["x_avg"]
    i = ts["current_A"] / (rec["mesh"]["interface_area_um2"] * 1e-12)
    i0 = mat.exchange_current_A_m2(
        x, p.c_max_mol_m3, p.c_e_mol_m3, p.m_ref_A_m2p5_mol1p5, p.i0_regularisation_x
    )
    return mat.ocp_V(x, model=p.ocp) + mat.overpotential_V(i, i0, p.T_K)


def summarise(label: str, sets: list[str], rec: dict, ts: dict, rc, wall: float, cpu: float):
    cc = ts["protocol_step"] == 0
    end_cc = int(np.flatnonzero(cc)[-1])
    row = {
        "label": label,
        "mode": rc.case.physics.mode,
        "overrides": sets,
        "status": rec["status"],
        "linear": rec["solver"]["linear"],
        "dt_max_s": rc.case.solver.dt_max_s,
        "accepted_steps": rec["steps"]["accepted"],
        "rejected_steps": sum(v for k, v in rec["steps"].items() if k != "accepted"),
        "newton_iterations": rec["solver"]["newton_iterations"],
        "linear_iterations": rec["solver"]["linear_iterations"],
        "solve_wall_s": rec["wall_time_s"]["solve_s"],
        "run_wall_s": wall,
        "run_cpu_s_all_ranks": cpu,
        "onset": onset(ts),
        "voltage_end_cc_V": float(ts["voltage_V"][end_cc]),
        "damage_fraction_4p5V": float(ts["damage_fraction"][end_cc]),
        "damage_fraction_end": float(ts["damage_fraction"][-1]),
        "max_x_avg_minus_x_surf": float(np.max(ts["x_avg"] - ts["x_surf_min"])),
    }
    if "crack_area_um2" in ts:
        row["crack_area_um2_4p5V"] = float(ts["crack_area_um2"][end_cc])
        row["crack_area_um2_end"] = float(ts["crack_area_um2"][-1])
    dv = (ts["voltage_V"] - qs_voltage(ts, rec, rc))[cc]
    row["max_abs_V_minus_qs_formula_cc_mV"] = float(1e3 * np.abs(dv).max())
    hit = np.flatnonzero(ts["phi_max"] >= PHI_ONSET)
    if hit.size and hit[0] < np.count_nonzero(cc):
        row["V_minus_qs_formula_at_onset_mV"] = float(1e3 * dv[hit[0]])
    row["damage_curve"] = np.interp(GRID_V, ts["voltage_V"][cc], ts["damage_fraction"][cc])
    return row


def compare(row: dict, ref: dict) -> dict:
    """Differences of a quasi-static row to the coupled one."""
    out = {}
    for key in ("first_step_V", "interpolated_V"):
        a, b = row["onset"][key], ref["onset"][key]
        out[f"onset_{key}_diff_mV"] = None if a is None or b is None else 1e3 * (a - b)
    a, b = row["onset"]["x_avg"], ref["onset"]["x_avg"]
    out["onset_x_avg_diff"] = None if a is None or b is None else a - b
    # how much of the onset's voltage difference the missing surface depletion explains: the
    # coupled run's V minus U(x_avg) + η at its onset step
    out["coupled_V_minus_qs_formula_at_onset_mV"] = ref.get("V_minus_qs_formula_at_onset_mV")
    for key in ("damage_fraction_4p5V", "damage_fraction_end", "crack_area_um2_4p5V"):
        if key in row and key in ref and ref[key]:
            out[f"{key}_rel_diff"] = row[key] / ref[key] - 1.0
    scale = max(float(ref["damage_curve"][-1]), 1e-12)
    out["damage_curve_max_diff_rel_to_final"] = float(
        np.max(np.abs(row["damage_curve"] - ref["damage_curve"])) / scale
    )
    out["solve_wall_ratio_coupled_over_qs"] = ref["solve_wall_s"] / row["solve_wall_s"]
    out["cpu_ratio_coupled_over_qs"] = ref["run_cpu_s_all_ranks"] / row["run_cpu_s_all_ranks"]
    out["newton_ratio_coupled_over_qs"] = ref["newton_iterations"] / row["newton_iterations"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--bundle", type=Path, help="an existing demo mesh bundle")
    ap.add_argument("--qs", nargs="+", default=list(QS_ROWS), help="LABEL:KEY=VALUE,...")
    ap.add_argument("--set", action="append", default=[], help="override every run")
    ap.add_argument("--name", default="quasistatic_vs_coupled", help="results/<name>.json")
    ap.add_argument(
        "--resummarise",
        type=Path,
        metavar="WORKDIR",
        help="recompute the metrics of results/<name>.json from the run directories its runs "
        "left in WORKDIR (times and loads are kept from the JSON; nothing is solved)",
    )
    args = ap.parse_args()
    if args.resummarise is not None:
        return resummarise(REPO / "benchmarks" / "results" / f"{args.name}.json", args.resummarise)
    comm = MPI.COMM_WORLD
    work = Path(comm.bcast(tempfile.mkdtemp(prefix="polycrack-qs-") if comm.rank == 0 else None))
    rc0 = load_case(DEMO, args.set)
    bundle = args.bundle or ensure_bundle(rc0.case.geometry, work / "mesh", comm)
    dom = ParticleDomain.from_domain(load_bundle(bundle, comm))
    specs = [("coupled", [])]
    for spec in args.qs:
        label, _, sets = spec.partition(":")
        specs.append((label, ["physics.mode=quasistatic", *filter(None, sets.split(","))]))
    rows, loads = [], []
    for label, sets in specs:
        rc = load_case(DEMO, [*args.set, *sets])
        loads.append(os.getloadavg())
        comm.barrier()
        c0, t0 = time.process_time(), time.perf_counter()
        rec = CoupledRun(rc, work / label, comm, dom=dom, verbose=False).run()
        wall = time.perf_counter() - t0
        cpu = comm.allreduce(time.process_time() - c0, op=MPI.SUM)
        if comm.rank == 0:
            ts = read_table(work / label / "timeseries.csv")
            rows.append(summarise(label, sets, rec, ts, rc, wall, cpu))
            r = rows[-1]
            print(
                f"{label}: {r['accepted_steps']} steps, {r['newton_iterations']} Newton, "
                f"solve {r['solve_wall_s']:.1f} s, cpu {cpu:.1f} s, onset {r['onset']}, "
                f"damage at 4.5 V {r['damage_fraction_4p5V']:.5f}",
                flush=True,
            )
    if comm.rank != 0:
        return
    ref = rows[0]
    for r in rows[1:]:
        r["vs_coupled"] = compare(r, ref)
        print(r["label"], json.dumps(r["vs_coupled"]))
    for r in rows:
        r["damage_curve"] = [float(v) for v in r["damage_curve"]]
    res = {
        "benchmark": "quasistatic_vs_coupled",
        "machine": {"node": platform.node(), "cpus": os.cpu_count()},
        "git_commit": git_commit(),
        "mpi_ranks": comm.size,
        "bundle_tets": json.loads((Path(bundle) / "mesh.json").read_text()).get("tets"),
        "loadavg_before_each_run": loads,
        "loadavg_end": os.getloadavg(),
        "overrides": args.set,
        "damage_curve_voltages_V": [float(v) for v in GRID_V],
        "rows": rows,
    }
    out = REPO / "benchmarks" / "results" / f"{args.name}.json"
    out.write_text(json.dumps(res, indent=1))
    print(f"wrote {out}")


def resummarise(path: Path, work: Path) -> None:
    """Recompute every row of ``path`` from ``work/<label>`` (run.json, timeseries.csv)."""
    res = json.loads(path.read_text())
    rows = []
    for old in res["rows"]:
        label = old["label"]
        rc = load_case(DEMO, [*res["overrides"], *old["overrides"]])
        rec = json.loads((work / label / "run.json").read_text())
        ts = read_table(work / label / "timeseries.csv")
        rows.append(
            summarise(
                label, old["overrides"], rec, ts, rc, old["run_wall_s"], old["run_cpu_s_all_ranks"]
            )
        )
    for r in rows[1:]:
        r["vs_coupled"] = compare(r, rows[0])
    for r in rows:
        r["damage_curve"] = [float(v) for v in r["damage_curve"]]
    res["rows"] = rows
    res["resummarised_with"] = git_commit()
    path.write_text(json.dumps(res, indent=1))
    print(f"rewrote {path}")


if __name__ == "__main__":
    main()
