"""Coupled-run cost per linear-solver option: full (or truncated) C/50 CCCV with fracture.

    python benchmarks/coupled_solvers.py --grains 50 --h 0.8 --solvers mumps mumps_lagged fieldsplit
    mpirun -n 2 python benchmarks/coupled_solvers.py --grains 50 --h 0.8 --tag np2

Per option: wall time, accepted/rejected steps, Newton and Krylov iterations, LU factorisations,
peak memory (sum over ranks), final damage fraction. The mesh is a mesh bundle of a sphere with
Voronoi grains (``--mesh bundle``, meshing issue) or the voxelised-Voronoi test mesh
(``--mesh voxel``: grain boundaries follow tet faces; for solver timing only). Prints a table and
writes ``benchmarks/results/coupled_solvers[_TAG].json`` with machine, commit and load average.

Runs longer than a session: ``--run-dir DIR`` keeps each option's run directory in DIR/<option>
with a checkpoint every ``--checkpoint-minutes``; the same command again continues an
interrupted (killed, signalled) run from its checkpoint, skips a finished one, and reports the
time loop over all segments (``wall_s``; the work lost after a segment's last checkpoint is not
counted, it is done again). CPU time and LU factorisations are then those of the last segment.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import dolfinx_solver  # noqa: F401
from mpi4py import MPI

REPO = Path(__file__).resolve().parent.parent
#: timeseries.csv columns kept per accepted step in the JSON
STEP_COLUMNS = (
    "step",
    "time_s",
    "dt_s",
    "voltage_V",
    "damage_fraction",
    "phi_max",
    "newton_iterations",
)

from polycrack.config import resolve_case  # noqa: E402
from polycrack.numerics.nonlinear import _lu_count  # noqa: E402
from polycrack.physics.mechanics import ParticleDomain  # noqa: E402
from polycrack.workflow.exports import git_commit  # noqa: E402
from polycrack.workflow.run import CoupledRun  # noqa: E402


def make_domain(kind: str, grains: int, h: float, comm) -> ParticleDomain:
    if kind == "voxel":
        from polycrack.verification.mech_meshes import voronoi_sphere

        msh, ct, ft, axes = voronoi_sphere(n_grains=grains, h_particle=h, h_binder=2.5, comm=comm)
        return ParticleDomain.build(msh, ct, ft, axes)
    from polycrack.config import GeometryConfig
    from polycrack.physics.domain import ensure_bundle, load_bundle

    geo = GeometryConfig.model_validate(
        {
            "particle": {"source": "sphere", "diameter_um": 14.0},
            "grains": {"count": grains, "seed": 1},
            "mesh": {"particle_size_um": h, "binder_size_um": 2.5},
        }
    )
    out = Path(tempfile.gettempdir()) / f"polycrack-bench-mesh-{grains}-{h}"
    return ParticleDomain.from_domain(load_bundle(ensure_bundle(geo, out, comm), comm))


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--grains", type=int, default=50)
    ap.add_argument("--h", type=float, default=0.8, help="particle mesh size, µm")
    ap.add_argument("--l", type=float, default=0.8e-6, help="phase-field length, m")
    ap.add_argument("--mesh", choices=["bundle", "voxel"], default="bundle")
    ap.add_argument("--solvers", nargs="+", default=["mumps", "mumps_lagged", "fieldsplit"])
    ap.add_argument("--until", type=float, default=4.5, help="CC cut-off voltage (V)")
    ap.add_argument("--no-cv", action="store_true", help="skip the CV hold")
    ap.add_argument(
        "--max-steps",
        type=int,
        default=None,
        help="stop after this many accepted steps (per-step cost of slow options)",
    )
    ap.add_argument("--dt-max", type=float, default=3600.0, help="max time step (s)")
    ap.add_argument(
        "--relaxation",
        type=float,
        default=0.0,
        help="physics.phase_field_relaxation_s: viscous phase field, relaxation time (s)",
    )
    ap.add_argument(
        "--petsc",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="solver.petsc_options (relative to the coupled solver's prefix)",
    )
    ap.add_argument("--run-dir", type=Path, default=None, help="keep/continue runs in DIR/<option>")
    ap.add_argument("--checkpoint-minutes", type=float, default=10.0, help="with --run-dir")
    ap.add_argument("--verbose", action="store_true", help="print every step")
    ap.add_argument("--tag", default="")
    args = ap.parse_args()
    comm = MPI.COMM_WORLD
    petsc = dict(kv.split("=", 1) for kv in args.petsc)
    load0 = os.getloadavg()
    dom = make_domain(args.mesh, args.grains, args.h, comm)
    protocol = [{"type": "cc", "c_rate": 0.02, "until_voltage_V": args.until}]
    if not args.no_cv:
        protocol.append({"type": "cv", "voltage_V": args.until, "until_c_rate": 0.01})
    rows = []
    for linear in args.solvers:
        case = {
            "geometry": {"grains": {"count": args.grains}},
            "material": {
                "overrides": {
                    "fracture.l_m": args.l,
                    "fracture.l_gamma_m": args.l,
                    # the toughness pair these benchmarks were first run with (the demo's)
                    "fracture.Gc_bulk_J_m2": 50.0,
                    "fracture.Gc_GB_J_m2": 5.0,
                }
            },
            "protocol": protocol,
            "physics": {"phase_field_relaxation_s": args.relaxation},
            "solver": {
                "linear": linear,
                "dt_max_s": args.dt_max,
                "petsc_options": petsc,
            },
            "output": {
                "fields_at_voltages_V": [],
                "checkpoint_every_steps": 0,
                "checkpoint_every_minutes": args.checkpoint_minutes if args.run_dir else 0.0,
            },
        }
        rc = resolve_case(case, None)
        keep = args.run_dir is not None
        with (
            contextlib.nullcontext(str(args.run_dir / linear))
            if keep
            else tempfile.TemporaryDirectory()
        ) as tmp:
            out = Path(comm.bcast(tmp if comm.rank == 0 else None, root=0))
            prev = {}
            if keep and (out / "run" / "run.json").is_file():
                prev = json.loads((out / "run" / "run.json").read_text())
            lu0 = _lu_count()
            cpu0 = time.process_time()
            if prev.get("status") == "finished":  # an earlier invocation completed it
                rec = prev
            else:  # a killed run still says "running"; an interrupted one has a checkpoint
                rec = CoupledRun(
                    rc,
                    out / "run",
                    comm,
                    dom=dom,
                    verbose=args.verbose,
                    stop_after_steps=args.max_steps,
                    restart=keep and (out / "run" / "checkpoint.npz").is_file(),
                ).run()
            # this segment (set-up, time loop, exports) plus the earlier segments' time loops
            wt = rec["wall_time_s"]
            wall = wt["total_s"] - wt["solve_s"] + wt.get("solve_s_all_segments", wt["solve_s"])
            cpu = comm.allreduce(time.process_time() - cpu0, op=MPI.MAX)
            lu = comm.allreduce(_lu_count() - lu0, op=MPI.MAX)
            import csv

            damage, steps = None, None
            if comm.rank == 0:
                with open(out / "run" / "timeseries.csv") as fh:
                    table = list(csv.DictReader(fh))
                damage = float(table[-1]["damage_fraction"] or 0.0) if table else 0.0
                steps = [{k: float(r[k] or 0.0) for k in STEP_COLUMNS} for r in table]
        s = rec["solver"]
        rows.append(
            {
                "solver": linear,
                "wall_s": wall,
                "cpu_s_max_rank": cpu,
                "status": rec["status"],
                "unknowns": rec["mesh"]["unknowns"],
                "accepted": rec["steps"]["accepted"],
                "rejected": sum(v for k, v in rec["steps"].items() if k != "accepted"),
                "newton": s["newton_iterations"],
                "krylov": s["linear_iterations"],
                "staggered_solves": s.get("staggered_solves", 0),
                "peak_memory_mb": rec["peak_memory"],
                "final_voltage_V": rec["final"]["voltage_V"],
                "final_damage_fraction": damage,
                "s_per_newton": wall / max(s["newton_iterations"], 1),
                "s_per_step": wall / max(rec["steps"]["accepted"], 1),
                "lu_factorisations": lu,
                "phases_s": rec.get("wall_time_s"),
                "final_time_h": rec["final"]["time_s"] / 3600.0,
                "steps": steps,
            }
        )
        if comm.rank == 0:
            r = rows[-1]
            print(
                f"{linear:13s} {r['wall_s']:8.1f} s  {r['accepted']:4d} steps ({r['rejected']} rej)  "
                f"newton {r['newton']:4d}  krylov {r['krylov']:6d}  {r['s_per_newton']:.2f} s/newton  {r['s_per_step']:.1f} s/step  "
                f"damage {r['final_damage_fraction']}",
                flush=True,
            )
    if comm.rank == 0:
        res = {
            "benchmark": "coupled_solvers",
            "machine": {
                "node": platform.node(),
                "cpus": os.cpu_count(),
                "python": sys.version.split()[0],
            },
            "git_commit": git_commit(),
            "mpi_ranks": comm.size,
            "loadavg_start": load0,
            "loadavg_end": os.getloadavg(),
            "mesh": args.mesh,
            "grains": args.grains,
            "h_um": args.h,
            "l_m": args.l,
            "phase_field_relaxation_s": args.relaxation,
            "petsc_options": petsc,
            "PETSC_OPTIONS": os.environ.get("PETSC_OPTIONS", ""),
            "protocol": protocol,
            "rows": rows,
        }
        name = "coupled_solvers" + (f"_{args.tag}" if args.tag else "") + ".json"
        path = REPO / "benchmarks" / "results" / name
        path.write_text(json.dumps(res, indent=1, default=str))
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
