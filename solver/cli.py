"""The ``polycrack`` command (docs/user-guide.md section 2).

Exit codes: 0 success, 2 bad input, 1 numerical failure. Under ``mpirun`` every rank ends with
the same code and rank 0 prints the message: rank-local work goes through agreement points
(:mod:`polycrack.collective`), and an error that reaches :func:`main` on some ranks only ends the
whole job with ``MPI_Abort`` after its message is flushed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from . import __version__
from .collective import Agreed, collective
from .errors import InputError, SolverFailure

EXAMPLES = """examples:
  polycrack run examples/sphere_electrochem.yaml -o runs/sphere
  polycrack run case.yaml --set fracture.Gc_GB_J_m2=3.0 --set solver.linear=fieldsplit
  mpirun -n 4 polycrack run case.yaml -o runs/case
  polycrack check case.yaml            # validate and print the resolved case
  polycrack strain-path case.yaml --set mechanics.lattice_data=kondrakov2017
  polycrack ct-particles scan.tif --voxel-size-um 0.4 --label-value 1   # list a scan's particles
"""


def _world():
    """MPI_COMM_WORLD (DOLFINx's MPI loaded first)."""
    import dolfinx_solver  # noqa: F401  (MPI before mpi4py)
    from mpi4py import MPI

    return MPI.COMM_WORLD


def _load(args: argparse.Namespace, comm=None, files: bool = True):
    """The resolved case, validated on every rank with one agreed outcome; ``files``: also the
    input files it names (the particle file is only read when a bundle is built)."""
    from .config import input_file_problems, load_case

    with collective(comm, str(args.case), "load_case"):
        rc = load_case(args.case, args.set)
        problems = input_file_problems(rc) if files else []
        if problems:
            raise InputError("\n".join(problems))
    if comm is None or comm.rank == 0:
        for w in rc.warnings:
            print(f"polycrack: warning: {w}", file=sys.stderr)
    return rc


def _size_guard(rc, stage: str, max_memory_gb: float | None, comm=None):
    """Refuse (exit 2, every rank) a case whose estimate does not fit; returns the estimate."""
    from .sizing import check_size, estimate_case

    size = comm.size if comm is not None else 1
    est = estimate_case(rc, size)
    local = 1
    if comm is not None and size > 1:
        from mpi4py import MPI

        node = comm.Split_type(MPI.COMM_TYPE_SHARED)
        local = node.size
        node.Free()
    with collective(comm, "size guard", "size_guard"):
        if stage == "run" or comm is None or comm.rank == 0:  # gmsh runs on rank 0 only
            check_size(est, stage, max_memory_gb, ranks_on_node=local)
    return est


def _cmd_mesh(args: argparse.Namespace) -> int:
    """Build the bundle on rank 0 only (under mpirun every rank would write the same files)."""
    from .collective import make_dir

    comm = _world()
    rc = _load(args, comm)
    est = _size_guard(rc, "mesh", args.max_memory, comm)
    if comm.rank == 0:
        print(est.summary())
    out = Path(args.output or Path("runs") / (rc.case.name or Path(args.case).stem) / "mesh")
    make_dir(out, comm, "bundle directory")
    with collective(comm, f"meshing into {out}", "mesh.build"):
        if comm.rank == 0:
            from .meshing import build_bundle

            build_bundle(rc.case.geometry, out)
    return 0


def _cmd_ct_particles(args: argparse.Namespace) -> int:
    """Separate the particles of an electrode scan, print their table, write a preview PNG."""
    from .meshing.ct import DEFAULT_MIN_DIAMETER_UM, preview, separate_volume
    from .meshing.shape import load_ct

    if args.raw_shape is not None and args.raw_dtype is None:
        raise InputError("--raw-shape needs --raw-dtype (e.g. uint8)")
    if str(args.scan).endswith(".raw") and args.raw_shape is None:
        raise InputError(f"{args.scan}: a .raw volume needs --raw-shape NZ NY NX and --raw-dtype")
    for name in ("min_diameter_um", "resample_um"):
        v = getattr(args, name)
        if v is not None and not v > 0:
            raise InputError(f"--{name.replace('_', '-')}: must be positive, got {v}")
    vol = load_ct(args.scan, args.raw_shape, args.raw_dtype)
    sep = separate_volume(
        vol,
        args.voxel_size_um,
        label_value=args.label_value,
        min_diameter_um=args.min_diameter_um or DEFAULT_MIN_DIAMETER_UM,
        resample_um=args.resample_um,
        source=str(args.scan),
    )
    print(sep.table())
    if args.csv:
        sep.write_csv(args.csv)
        print(f"wrote {args.csv}")
    out = args.output or Path(f"{Path(args.scan).stem}_particles.png")
    print(f"wrote {preview(sep, out)}")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    import yaml

    from .sizing import available_bytes, check_size, estimate_case
    from .workflow.summary import (
        case_warnings,
        li_spread_line,
        material_summary,
        resolution_line,
    )

    rc = _load(args)
    est = estimate_case(rc, 1)
    check_size(est, "run", args.max_memory)
    print(f"{args.case}: valid")
    print(f"parameter set: {rc.params_path}")
    if args.verbose:
        print(yaml.safe_dump(rc.to_dict(), sort_keys=False))
    print(material_summary(rc))
    avail = available_bytes()
    print(est.summary() + (f"; {avail / 1e9:.1f} GB available here" if avail else ""))
    for line in (li_spread_line(rc), resolution_line(rc)):
        if line:
            print(line)
    for warning in case_warnings(rc):
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def _cmd_strain_path(args: argparse.Namespace) -> int:
    """Δε′(V) of the case's lattice data and OCP at uniform x (NumPy only, no DOLFINx)."""
    from .config import load_case
    from .workflow import strain_path

    rc = load_case(args.case, args.set)
    try:
        res = strain_path.for_case(rc, args.v_end, args.dv)
    except ValueError as exc:
        raise InputError(f"{args.case}: {exc}") from None
    print(strain_path.format_report(res))
    if args.json is not None:
        if str(args.json) == "-":
            print(strain_path.to_json(res))
        else:
            args.json.write_text(strain_path.to_json(res) + "\n")
            print(f"wrote {args.json}")
    if args.plot is not None:
        strain_path.plot(res, args.plot)
        print(f"wrote {args.plot}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    comm = _world()
    rc = _load(args, comm, files=args.restart is None)
    est = _size_guard(rc, "run", args.max_memory, comm)
    if args.dry_run:
        if comm.rank == 0:
            print(f"{args.case}: valid (dry run, nothing solved)")
            print(est.summary())
        return 0
    if args.restart is not None and args.output is not None:
        if Path(args.output).resolve() != Path(args.restart).resolve():
            raise InputError(
                f"--restart {args.restart} and -o {args.output} name different directories; "
                "a restart continues in its own run directory (drop -o)"
            )
    if args.allow_changes and args.restart is None:
        raise InputError("--allow-changes only applies to --restart")
    from .workflow.run import run_case

    out = args.restart or args.output
    rec = run_case(
        rc,
        out,
        comm,
        restart=args.restart is not None,
        allow_changes=tuple(args.allow_changes),
        overwrite=args.overwrite,
    )
    if comm.rank == 0:
        st = rec["steps"]
        print(
            f"{rec['status']}: {st['accepted']} steps, {rec['final']['time_s'] / 3600:.3f} h, "
            f"V = {rec['final']['voltage_V']:.4f} V, wall {rec['wall_time_s']['total_s']:.1f} s; "
            f"run directory {out or rc.case.output.dir or Path('runs') / (rc.case.name or 'run')}"
        )
    return int(rec.get("exit_code", 0))


def _cmd_plot(args: argparse.Namespace) -> int:
    from .post.plots import plot_run

    for path in plot_run(args.run_dir, args.output):
        print(f"wrote {path}")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from .workflow.sweep import sweep

    return sweep(args.sweep_file, mode=args.mode, submit=args.submit)


def _cmd_collect(args: argparse.Namespace) -> int:
    from .workflow.sweep import collect

    collect(args.sweep_dir)
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from .workflow.verify import main as verify_main

    return verify_main(args.np, args.k)


def _max_memory_arg(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "--max-memory",
        type=_positive_float,
        metavar="GB",
        help="refuse the case if its estimated memory (all ranks) exceeds GB "
        "(default: the memory available on this node)",
    )


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of GB, got {text!r}")
    return v


def _cmd_demo(args: argparse.Namespace) -> int:
    from .workflow.demo import run_demo

    return run_demo(Path(args.output), args.set)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    p = argparse.ArgumentParser(
        prog="polycrack",
        description="Chemo-mechanical phase-field fracture of polycrystalline cathode particles "
        "(DOLFINx). Parameters and case files: see docs/user-guide.md and params/.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"polycrack {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def case_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("case", type=Path, help="case file (YAML)")
        sp.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a case or parameter value, e.g. --set electrochemistry.D_m2_s=1e-14 "
            "or --set solver.linear=fieldsplit (repeatable; validated like the file)",
        )

    sp = sub.add_parser("mesh", help="build the mesh bundle of a case")
    case_args(sp)
    sp.add_argument("-o", "--output", type=Path, help="bundle directory")
    _max_memory_arg(sp)
    sp.set_defaults(func=_cmd_mesh)

    sp = sub.add_parser(
        "ct-particles",
        help="separate the touching particles of an electrode CT scan, list them, preview",
        description="Segment a CT volume (--label-value N, or Otsu on grey values), separate "
        "touching particles by a distance-transform watershed, print the label table (volume, "
        "equivalent diameter, centroid, sphericity, border contact) and write mid-plane slices "
        "with the labels as a PNG. Pick a particle for geometry.particle.select (docs/ct.md).",
    )
    sp.add_argument(
        "scan", type=Path, help="CT volume: .npy, .npz, .tif/.tiff (file or folder), .raw"
    )
    sp.add_argument(
        "--voxel-size-um",
        type=float,
        nargs="+",
        required=True,
        metavar="S",
        help="voxel edge in µm: one value, or three (axis 0, 1, 2)",
    )
    sp.add_argument("--label-value", type=int, help="particle phase label of a segmented volume")
    sp.add_argument(
        "--min-diameter-um",
        type=float,
        help="minimum particle size: diameter of the largest ball inside a particle (default 4)",
    )
    sp.add_argument("--resample-um", type=float, help="resample to this isotropic voxel first")
    sp.add_argument("--raw-shape", type=int, nargs=3, metavar="N", help=".raw: NZ NY NX")
    sp.add_argument("--raw-dtype", help=".raw: numpy dtype, e.g. uint8")
    sp.add_argument("--csv", type=Path, help="also write the table as CSV")
    sp.add_argument(
        "-o", "--output", type=Path, help="preview PNG (default SCAN-STEM_particles.png)"
    )
    sp.set_defaults(func=_cmd_ct_particles)

    sp = sub.add_parser("run", help="run a case (also under mpirun -n N)")
    case_args(sp)
    sp.add_argument("-o", "--output", type=Path, help="run directory")
    sp.add_argument("--restart", type=Path, metavar="DIR", help="continue from a run directory")
    sp.add_argument(
        "--allow-changes",
        action="append",
        default=[],
        metavar="KEY",
        help="with --restart: accept a changed case value, e.g. fracture.Gc_GB_J_m2 "
        "(recorded in run.json; repeatable)",
    )
    sp.add_argument(
        "--overwrite", action="store_true", help="replace a run already in the run directory"
    )
    sp.add_argument("--dry-run", action="store_true", help="validate only")
    _max_memory_arg(sp)
    sp.set_defaults(func=_cmd_run)

    sp = sub.add_parser("check", help="validate a case file and print the resolved parameters")
    case_args(sp)
    sp.add_argument("-v", "--verbose", action="store_true", help="print the whole resolved case")
    _max_memory_arg(sp)
    sp.set_defaults(func=_cmd_check)

    sp = sub.add_parser(
        "strain-path",
        help="Δε′(V), ε_v(V), V* and an Eshelby σ1 estimate of the case's lattice data (seconds)",
        description="For uniform x on the case's OCP: Δε′ = Δε(x) − Δε(x0) (Δε = ε_c − ε_a), "
        "the lattice volume strain, the voltage V* after which Δε′ reaches no new extreme of "
        "either sign (no new damage after V*, since ψ⁺ ∝ Δε′² on each side of zero), a "
        "single-grain Eshelby σ1 estimate and the c-peak / end-of-collapse landmarks. NumPy "
        "only. See docs/strain-data.md.",
    )
    case_args(sp)
    sp.add_argument(
        "--v-end",
        type=float,
        default=None,
        metavar="V",
        help="end voltage (default: the highest voltage of the protocol)",
    )
    sp.add_argument("--dv", type=float, default=0.01, metavar="V", help="voltage step (0.01)")
    sp.add_argument(
        "--json", type=Path, metavar="FILE", help="also write the result as JSON (- = stdout)"
    )
    sp.add_argument("--plot", type=Path, metavar="PNG", help="also plot Δε′, ε_v and σ1 vs V")
    sp.set_defaults(func=_cmd_strain_path)

    sp = sub.add_parser(
        "verify", help="run the closed-form verification cases (docs/model.md section 6)"
    )
    sp.add_argument("-n", "--np", type=int, default=1, help="MPI ranks (runs under mpirun)")
    sp.add_argument("-k", default=None, help="only cases whose test name matches (pytest -k)")
    sp.set_defaults(func=_cmd_verify)

    sp = sub.add_parser("plot", help="write the figures of a run directory")
    sp.add_argument("run_dir", type=Path, help="run directory (holds timeseries.csv)")
    sp.add_argument("-o", "--output", type=Path, help="figure directory (default RUN_DIR/figures)")
    sp.set_defaults(func=_cmd_plot)

    sp = sub.add_parser(
        "sweep", help="expand and run (or write a SLURM array for) a parameter grid"
    )
    sp.add_argument("sweep_file", type=Path, help="sweep file (YAML): base case, grid, execution")
    sp.add_argument(
        "--mode", choices=["local", "slurm"], help="override execution.mode of the sweep file"
    )
    sp.add_argument("--submit", action="store_true", help="slurm: also run sbatch on the script")
    sp.set_defaults(func=_cmd_sweep)

    sp = sub.add_parser("collect", help="join finished runs of a sweep into one table")
    sp.add_argument("sweep_dir", type=Path, help="sweep directory (holds sweep.json)")
    sp.set_defaults(func=_cmd_collect)

    sp = sub.add_parser("demo", help="run the built-in default case end to end")
    sp.add_argument(
        "-o", "--output", default="demo_out", help="output directory (default demo_out)"
    )
    sp.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override the demo case"
    )
    sp.set_defaults(func=_cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except InputError as exc:
        return _fail(exc, 2, "error")
    except SolverFailure as exc:
        return _fail(exc, 1, "solver failure")
    except KeyboardInterrupt:
        print("polycrack: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        comm = _parallel_world()
        if comm is None:
            raise
        import traceback

        traceback.print_exc()
        _abort(comm, 1, f"polycrack: internal error: {type(exc).__name__}: {exc}")
        raise  # not reached


def _parallel_world():
    """COMM_WORLD if MPI is running with more than one rank, else None (MPI not imported)."""
    MPI = sys.modules.get("mpi4py.MPI")
    if MPI is None or not MPI.Is_initialized() or MPI.Is_finalized():
        return None
    return MPI.COMM_WORLD if MPI.COMM_WORLD.size > 1 else None


def _fail(exc: Exception, code: int, label: str) -> int:
    """Print ``exc`` once and return ``code`` on every rank; abort the job if only some ranks
    may have failed (the others would wait in a collective call forever)."""
    msg = f"polycrack: {label}: {exc}"
    comm = _parallel_world()
    if comm is None:
        print(msg, file=sys.stderr)
        return code
    if isinstance(exc, Agreed):  # raised on every rank by an agreement point
        if comm.rank == 0:
            print(msg, file=sys.stderr, flush=True)
        return code
    _abort(comm, code, msg)
    return code  # not reached


def _abort(comm, code: int, msg: str) -> None:
    """Last resort under mpirun: print ``msg`` and end every rank with ``code`` (MPI_Abort).

    A rank other than 0 waits a moment first, so that when rank 0 failed too its message is the
    one printed (its abort ends this rank). Every rank pauses between printing and aborting so
    that the launcher forwards the message before it kills the job.
    """
    if comm.rank != 0:
        time.sleep(1.0)
        msg = msg.replace("polycrack: ", f"polycrack (rank {comm.rank}): ", 1)
    print(msg, file=sys.stderr, flush=True)
    sys.stdout.flush()
    # The launcher forwards output through pipes and tears them down on MPI_Abort: give it a
    # moment to pass the message on (CI lost rank 0's whole stderr once without this pause).
    time.sleep(0.5)
    comm.Abort(code)


if __name__ == "__main__":
    sys.exit(main())
