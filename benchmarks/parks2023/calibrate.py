"""Calibrate Gc_GB for the Parks 2023 reproduction, and the sensitivity table (issue 6).

Target (Parks 2023, MODEL.md section 4): the first fully damaged material (phi >= 0.95) appears
near c-strain 0.015 / about 4.0 V. The onset voltage is a monotone function of the effective
grain-boundary strength sigma_eff = (3 sqrt(3)/16) sqrt(E G_eff / l), with G_eff the toughness a
crack along a GB sees (1D minimisation, solver.fracture.effective_gb_toughness). Gc_bulk is held
fixed (high enough that the bulk AT2 strength is >= 1.5 sigma_eff, so cracks stay on GBs) and
Gc_GB is found through G_eff.

Cheap procedure (one "evaluation" = one load sweep on the reduced mesh, ~minutes on 1 core):
  * uniform x stepped along the OCP (x = x_eq(V), V = 3.60, 3.70, then every 0.02 V up to
    ``--v-max``), quasi-static mechanics + AT2 (the same forms as the coupled solver, staggered,
    history H), onset V_on = the first V with max phi >= 0.95 (linear interpolation in V of
    max phi between the two bracketing load steps). At C/50 x is nearly uniform (the run's
    x_surf spread is reported in REPORT.md), and the overpotential is a few mV, so V_on of the
    sweep is the onset voltage of the CC charge to within the 0.02 V load step.
  * update: stress scales with Delta-eps(x) - Delta-eps(x0) in a near-uniform particle, so the
    strength that puts the onset at the target is
        sigma_new = sigma_old * [de(x_eq(V_target)) - de(x0)] / [de(x_eq(V_on)) - de(x0)],
    G_eff,new = G_eff,old (sigma_new/sigma_old)^2, and Gc_GB,new solves G_eff(Gc_GB) = G_eff,new
    (brentq). This is a secant step in the strength variable; it is repeated until
    |V_on - V_target| <= tol (2-3 evaluations in practice).
  * the coupled reduced run (reproduce.py) then checks the onset with the full x, V, u, phi
    problem.

Usage (from the repository root):
  .venv/bin/python benchmarks/parks2023/calibrate.py calibrate [--gc-bulk 120] [--gc-gb 10]
  .venv/bin/python benchmarks/parks2023/calibrate.py sensitivity [--v-max 4.3]
Results go to benchmarks/parks2023/results/calibration.json and sensitivity.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import dolfinx_solver  # noqa: F401
from mpi4py import MPI

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))

from scipy.optimize import brentq  # noqa: E402

from solver import config  # noqa: E402
from solver import materials as mat  # noqa: E402
from solver.fracture import effective_gb_toughness, fracture_summary  # noqa: E402
from solver.mechanics import MechanicsModel, ParticleDomain  # noqa: E402
from solver.quasistatic import FractureSettings, QuasiStaticFracture  # noqa: E402

RESULTS = HERE / "results"
CASE = HERE / "reduced.yaml"
V_TARGET = 4.0


def load_domain(case: Path, mesh_dir: Path, comm) -> ParticleDomain:
    """The case's mesh bundle (built into ``mesh_dir`` if missing) as a ParticleDomain."""
    from solver import domain as _dom

    rc = config.load_case(case)
    path = _dom.ensure_bundle(rc.case.geometry, mesh_dir, comm)
    return ParticleDomain.from_domain(_dom.load_bundle(path, comm))


def voltages(v_max: float) -> list[float]:
    """Load steps in V along the OCP: coarse below 3.7 V, 0.02 V above."""
    vs = [3.6, 3.7]
    v = 3.72
    while v <= v_max + 1e-9:
        vs.append(round(v, 3))
        v += 0.02
    return vs


def sweep(
    dom: ParticleDomain,
    sets: list[str],
    v_max: float,
    stop_at_onset: bool,
    tag: str,
    log=print,
) -> dict:
    """One quasi-static load sweep with the reduced case's parameters plus ``sets``."""
    rc = config.load_case(CASE, sets)
    p = rc.params
    lat = mat.LatticeStrains.from_params(p, rc.lattice_table_path)
    model = MechanicsModel.from_params(p, rc.lattice_table_path)
    qs = QuasiStaticFracture(
        dom, model, FractureSettings.from_params(p), tol=1e-3, prefix=f"cal{tag}_"
    )
    x0 = p.electrochemistry.x0
    rows, onset = [], None
    t0 = time.perf_counter()
    for V in voltages(v_max):
        x = float(mat.x_at_voltage(V))
        qs.set_x(x)
        r = qs.solve_step()
        row = {
            "V": V,
            "x": x,
            "eps_c": float(lat.eps_c(x)),
            "delta_eps": float(lat.delta_eps(x)),
            "phi_max": r["phi_max"],
            "damage_fraction": r["damage_fraction"],
            "damage_gb_share": r["damage_gb_share"],
            "radial_damage_fraction": r["radial_damage_fraction"],
            "sigma1_max_GPa": qs.sigma1_max_GPa(),
            "iterations": r["iterations"],
        }
        rows.append(row)
        log(
            f"  [{tag}] {V:.3f} V x={x:.4f} phi_max={row['phi_max']:.3f} "
            f"dmg={row['damage_fraction']:.5f} s1max={row['sigma1_max_GPa']:.3f} it={r['iterations']}"
        )
        if onset is None and row["phi_max"] >= 0.95:
            prev = rows[-2] if len(rows) > 1 else None
            if prev is not None and prev["phi_max"] < 0.95:
                a = (0.95 - prev["phi_max"]) / (row["phi_max"] - prev["phi_max"])
                onset = prev["V"] + a * (V - prev["V"])
            else:
                onset = V
            first_shells = row["radial_damage_fraction"]
            if stop_at_onset:
                break
    del qs
    out = {
        "sets": sets,
        "fracture": fracture_summary(p),
        "split": p.fracture.split,
        "strain_mapping": p.mechanics.strain_mapping,
        "onset_V": onset,
        "onset_x": float(mat.x_at_voltage(onset)) if onset else None,
        "onset_eps_c": float(lat.eps_c(mat.x_at_voltage(onset))) if onset else None,
        "onset_radial_damage_fraction": first_shells if onset else None,
        "final": rows[-1],
        "rows": rows,
        "wall_s": time.perf_counter() - t0,
        "x0": x0,
    }
    return out


def strength_update(res: dict, gc_bulk: float, l_m: float, lg_m: float, lat, x0: float) -> float:
    """Gc_GB whose sigma_eff moves the sweep's onset to V_TARGET (module docstring)."""
    de0 = float(lat.delta_eps(x0))
    d_t = float(lat.delta_eps(mat.x_at_voltage(V_TARGET))) - de0
    d_on = float(lat.delta_eps(mat.x_at_voltage(res["onset_V"]))) - de0
    g_old = res["fracture"]["G_eff_GB_J_m2"]
    g_new = g_old * (d_t / d_on) ** 2
    lo, hi = 1e-3, gc_bulk
    glo = effective_gb_toughness(gc_bulk, lo, l_m, lg_m)
    if g_new <= glo:
        raise SystemExit(
            f"needed G_eff {g_new:.1f} J/m^2 is below G_eff(Gc_GB -> 0) = {glo:.1f}; "
            "lower Gc_bulk or raise l_gamma"
        )
    return float(brentq(lambda g: effective_gb_toughness(gc_bulk, g, l_m, lg_m) - g_new, lo, hi))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("mode", choices=["calibrate", "sensitivity"])
    ap.add_argument("--gc-bulk", type=float, default=120.0, help="J/m^2, held fixed")
    ap.add_argument("--gc-gb", type=float, default=10.0, help="J/m^2, first guess")
    ap.add_argument("--tol", type=float, default=0.03, help="V, accepted |V_on - 4.0 V|")
    ap.add_argument("--max-evals", type=int, default=4)
    ap.add_argument("--v-max", type=float, default=4.3, help="sweep end (sensitivity)")
    ap.add_argument("--mesh", type=Path, default=ROOT / "runs" / "parks2023" / "mesh_reduced")
    ap.add_argument("--only", default=None, help="sensitivity: comma-separated row names")
    args = ap.parse_args()
    comm = MPI.COMM_WORLD
    log = print if comm.rank == 0 else (lambda *a, **k: None)
    RESULTS.mkdir(parents=True, exist_ok=True)
    dom = load_domain(CASE, args.mesh, comm)
    meta = {
        "mpi_ranks": comm.size,
        "loadavg_start": list(os.getloadavg()),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "case": str(CASE.relative_to(ROOT)),
        "procedure": "quasi-static uniform-x sweeps along the OCP (module docstring)",
    }
    if args.mode == "calibrate":
        rc = config.load_case(CASE)
        p = rc.params
        lat = mat.LatticeStrains.from_params(p, rc.lattice_table_path)
        l_m, lg_m = p.fracture.l_m, p.fracture.l_gamma_m
        gb = args.gc_gb
        evals = []
        for i in range(args.max_evals):
            sets = [f"fracture.Gc_bulk_J_m2={args.gc_bulk}", f"fracture.Gc_GB_J_m2={gb:.4g}"]
            log(f"evaluation {i + 1}: Gc_bulk = {args.gc_bulk}, Gc_GB = {gb:.4g} J/m^2")
            res = sweep(dom, sets, 4.3, True, f"e{i}", log)
            res.pop("rows")
            evals.append(res)
            log(f"  onset V = {res['onset_V']}  ({res['wall_s']:.0f} s)")
            if res["onset_V"] is None:
                gb = gb * 0.5
                continue
            if abs(res["onset_V"] - V_TARGET) <= args.tol:
                break
            gb = strength_update(res, args.gc_bulk, l_m, lg_m, lat, p.electrochemistry.x0)
        best = min(
            (e for e in evals if e["onset_V"] is not None),
            key=lambda e: abs(e["onset_V"] - V_TARGET),
        )
        out = meta | {
            "target_V": V_TARGET,
            "Gc_bulk_J_m2": args.gc_bulk,
            "evaluations": evals,
            "calibrated": best["fracture"] | {"onset_V": best["onset_V"]},
            "loadavg_end": list(os.getloadavg()),
        }
        if comm.rank == 0:
            (RESULTS / "calibration.json").write_text(json.dumps(out, indent=1))
        log(json.dumps(out["calibrated"], indent=1))
        return 0

    # sensitivity: one-at-a-time variations around the calibrated baseline (params file values
    # plus the reduced case's overrides)
    rc = config.load_case(CASE)
    f = rc.params.fracture
    l, lg = f.l_m, f.l_gamma_m
    rows = {
        "baseline": [],
        "l x1.5": [f"fracture.l_m={1.5 * l:.4g}"],
        "l_gamma x0.5": [f"fracture.l_gamma_m={0.5 * lg:.4g}"],
        "l_gamma x2": [f"fracture.l_gamma_m={2 * lg:.4g}"],
        "Gc_GB x0.5": [f"fracture.Gc_GB_J_m2={0.5 * f.Gc_GB_J_m2:.4g}"],
        "Gc_GB x2": [f"fracture.Gc_GB_J_m2={2 * f.Gc_GB_J_m2:.4g}"],
        "split spectral": ["fracture.split=spectral"],
        "split none": ["fracture.split=none"],
        "mapping normalised": ["mechanics.strain_mapping=normalised"],
    }
    if args.only:
        keep = [s.strip() for s in args.only.split(",")]
        rows = {k: v for k, v in rows.items() if k in keep}
    path = RESULTS / "sensitivity.json"
    table = json.loads(path.read_text()) if path.is_file() else {"rows": {}}
    for name, sets in rows.items():
        log(f"sensitivity row {name!r}: {sets}")
        res = sweep(dom, sets, args.v_max, False, name.replace(" ", "_"), log)
        res["damage_at_v_max"] = res["final"]["damage_fraction"]
        res["gb_share_at_v_max"] = res["final"]["damage_gb_share"]
        res.pop("rows")
        table["rows"][name] = res
        table.update(meta | {"v_max": args.v_max, "loadavg_end": list(os.getloadavg())})
        if comm.rank == 0:
            path.write_text(json.dumps(table, indent=1))
        log(f"  onset {res['onset_V']}  damage at {args.v_max} V {res['damage_at_v_max']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
