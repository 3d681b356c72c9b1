"""Reproduce Parks et al., J. Mater. Chem. A 11 (2023) 21322, Fig. 5 - one command (issue 6).

  .venv/bin/python benchmarks/parks2023/reproduce.py [--reduced | --full] [--run-dir DIR] [--np N]

1. runs the case (``reduced.yaml``: 100 grains, h = 0.6 µm, l = 1.2 µm, 2 ranks, <= 1 h here;
   ``full400.yaml``: 400 grains, h = 0.4 µm, meant for a cluster) under mpirun into the run
   directory, unless that directory already holds a finished run (``run.json`` status
   ``finished``: it is reused; ``interrupted``: it is restarted from its checkpoint);
2. regenerates the Fig. 5 panels (a)-(e) from the run directory (fig5.py beside this script) into
   ``benchmarks/parks2023/figures/<case>/``;
3. computes the sigma1 radial profile of the undamaged particle at uniform x(4.0, 4.2, 4.5 V)
   (mechanics only, the "why" behind the radial damage distribution; ``--no-stress`` skips it);
4. writes ``benchmarks/parks2023/results/summary_<case>.json``: landmarks (onset voltage / x /
   eps_c / radial shells, c-peak, ends of CC and CV), damage and GB share at 4.0 / 4.2 / 4.5 V,
   radial damage, the x spread, time and capacity at 4.5 V vs the paper's experiment, wall times
   and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent

VOLTAGES = (4.0, 4.2, 4.5)
CASES = {"reduced": HERE / "reduced.yaml", "full400": HERE / "full400.yaml"}
VENV_BIN = ROOT / ".venv" / "bin"

# The paper's experiment (Parks 2023, [P]): a cell of 0.5 mA h theoretical capacity charged at C/50
# (I = 10 µA) to 4.5 V, then held at 4.5 V until C/100.
EXPERIMENT = {"theoretical_capacity_mAh": 0.5, "c_rate": 0.02, "current_uA": 0.5 / 50 * 1000}


def run_status(run_dir: Path) -> str | None:
    rj = run_dir / "run.json"
    if not rj.is_file():
        return None
    try:
        return json.loads(rj.read_text()).get("status")
    except json.JSONDecodeError:
        return None


def run_case(case: Path, run_dir: Path, np_: int, sets: list[str]) -> float:
    """Run (or restart) the coupled case under mpirun; return the wall time in s."""
    status = run_status(run_dir)
    cmd = [str(VENV_BIN / "mpirun"), "-n", str(np_), str(VENV_BIN / "polycrack"), "run", str(case)]
    if status in ("interrupted", "running") and (run_dir / "checkpoint.npz").is_file():
        cmd += ["--restart", str(run_dir)]
    cmd += ["-o", str(run_dir)]
    for s in sets:
        cmd += ["--set", s]
    print("+", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    return time.perf_counter() - t0


def stress_profile(case: Path, run_dir: Path, sets: list[str]) -> dict:
    """sigma1 per radial shell (all cells and GB cells) at uniform x_eq(V), no damage."""
    import dolfinx_solver  # noqa: F401
    from mpi4py import MPI
    from polycrack import config
    from polycrack.physics import domain as _dom
    from polycrack.physics import materials as mat
    from polycrack.physics.fracture import effective_gb_toughness, fracture_constants
    from polycrack.physics.mechanics import MechanicsModel, ParticleDomain
    from polycrack.post.metrics import cell_radius_and_volume, gb_cell_mask, radial_cell_stats
    from polycrack.problems.quasistatic import QuasiStaticFracture

    comm = MPI.COMM_WORLD
    rc = config.load_case(case, sets)
    mesh_dir = run_dir / "mesh"
    path = rc.case.geometry.bundle or _dom.ensure_bundle(rc.case.geometry, mesh_dir, comm)
    dom = ParticleDomain.from_domain(_dom.load_bundle(path, comm))
    p = rc.params
    fc = fracture_constants(p)
    g_eff = effective_gb_toughness(fc["Gc_bulk"], fc["Gc_gb"], fc["l"], fc["l_gamma"])
    s_eff = float(mat.at2_strength_Pa(p.mechanics.E_particle_Pa, g_eff * 1e3, p.fracture.l_m)) / 1e9
    model = MechanicsModel.from_params(p, rc.lattice_table_path)
    qs = QuasiStaticFracture(dom, model, None, prefix="p23s_")
    r, vol = cell_radius_and_volume(dom)
    out = {"sigma_c_GB_effective_GPa": s_eff, "voltages": {}}
    mask = None
    try:  # the GB field of a fracture problem gives the GB cells
        from polycrack.problems.quasistatic import FractureSettings

        qf = QuasiStaticFracture(dom, model, FractureSettings.from_params(p), prefix="p23g_")
        mask = gb_cell_mask(dom, qf.gamma)
        del qf
    except Exception as exc:  # noqa: BLE001 - the profile without the GB split is still useful
        print(f"GB mask unavailable: {exc}", flush=True)
    for v in VOLTAGES:
        x = float(mat.x_at_voltage(v))
        qs.set_x(x)
        qs.solve_step()
        s1 = qs.sigma1()
        n = dom.submesh.topology.index_map(3).size_local
        vals = s1.x.array[s1.function_space.dofmap.list[:n, 0]]
        th = (s_eff, 0.8 * s_eff)
        row = {"x": x, "all": radial_cell_stats(vals, r, vol, comm, thresholds=th)}
        if mask is not None:
            row["gb_cells"] = radial_cell_stats(vals, r, vol, comm, mask=mask, thresholds=th)
            row["grain_interior_cells"] = radial_cell_stats(
                vals, r, vol, comm, mask=~mask, thresholds=th
            )
        out["voltages"][f"{v:.2f}"] = row
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--reduced", action="store_true", help="the reduced case (default)")
    g.add_argument("--full", action="store_true", help="the 400-grain case (cluster)")
    ap.add_argument("--run-dir", type=Path, help="run directory (default runs/parks2023/<case>)")
    ap.add_argument("--np", type=int, default=2, help="MPI ranks of the run (default 2)")
    ap.add_argument("--no-run", action="store_true", help="only post-process an existing run dir")
    ap.add_argument("--no-stress", action="store_true", help="skip the sigma1 radial profile")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    name = "full400" if args.full else "reduced"
    case = CASES[name]
    run_dir = (args.run_dir or ROOT / "runs" / "parks2023" / name).resolve()
    load0 = list(os.getloadavg())
    wall = None
    if not args.no_run and run_status(run_dir) != "finished":
        wall = run_case(case, run_dir, args.np, args.set)
    if run_status(run_dir) != "finished":
        print(f"{run_dir}: run is not finished (status {run_status(run_dir)})", file=sys.stderr)
    from fig5 import fig5_panels, landmarks  # this folder (the script's own)
    from polycrack import config
    from polycrack.physics import materials as mat

    rc = config.load_case(case, args.set)
    lat = mat.LatticeStrains.from_params(rc.params, rc.lattice_table_path)
    fig_dir = HERE / "figures" / name
    paths = fig5_panels(run_dir, fig_dir, VOLTAGES, lattice=lat, title=f"({name})")
    lm = landmarks(run_dir, VOLTAGES)
    res = HERE / "results"
    res.mkdir(parents=True, exist_ok=True)
    summary = {
        "case": str(case.relative_to(ROOT)),
        "run_dir": str(run_dir),
        "figures": {k: str(v.relative_to(ROOT)) for k, v in paths.items()},
        "landmarks": lm,
        "wall_time_this_invocation_s": wall,
        "loadavg_start": load0,
        "loadavg_end": list(os.getloadavg()),
    }
    end_cc, end = lm["end_cc"], lm["end"]
    summary["voltage_curve"] = {
        "time_to_4p5V_h": end_cc["time_h"],
        "capacity_at_4p5V_mAh_g": end_cc["capacity_mAh_g"],
        "capacity_end_of_cv_mAh_g": end["capacity_mAh_g"],
        "time_end_of_cv_h": end["time_h"],
        "theoretical_capacity_mAh_g": float(mat.THEORETICAL_CAPACITY_MAH_G),
        "experiment": EXPERIMENT
        | {
            "hours_for_full_theoretical_capacity_at_C/50": 50.0,
            "note": "the model's C-rate is per theoretical capacity too (docs/model.md section 3), so "
            "time/50 h = fraction of the theoretical capacity charged",
        },
    }
    if not args.no_stress:
        sp = res / f"stress_profile_{name}.json"
        summary["sigma1_profile_uniform_x"] = stress_profile(case, run_dir, args.set)
        sp.write_text(json.dumps(summary["sigma1_profile_uniform_x"], indent=1))
    out = res / f"summary_{name}.json"
    out.write_text(json.dumps(summary, indent=1))
    on = lm["onset"]
    print(f"figures: {fig_dir}\nsummary: {out}")
    if on:
        print(
            f"onset (first phi >= 0.95): {on['voltage_V']:.3f} V, x = {on['x_avg']:.3f}, "
            f"eps_c = {on['eps_c']:.4f}, shells {on.get('first_damaged_row_radial')}"
        )
    print(
        f"end: {end['voltage_V']:.3f} V, damage {end['damage_fraction']:.4f}, GB share "
        f"{end['damage_gb_share']:.3f}, radial {end['radial_damage_fraction']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
