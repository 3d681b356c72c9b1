"""The ``polycrack`` command (docs/user-guide.md section 2).

Exit codes: 0 success, 2 bad input, 1 numerical failure.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__
from .errors import InputError, SolverFailure

EXAMPLES = """examples:
  polycrack run examples/sphere_electrochem.yaml -o runs/sphere
  polycrack run case.yaml --set fracture.Gc_GB_J_m2=3.0 --set solver.linear=fieldsplit
  mpirun -n 4 polycrack run case.yaml -o runs/case
  polycrack check case.yaml            # validate and print the resolved case
  polycrack ct-particles scan.tif --voxel-size-um 0.4 --label-value 1   # list a scan's particles
"""


def _cmd_mesh(args: argparse.Namespace) -> int:
    """Build the bundle on rank 0 only (under mpirun every rank would write the same files)."""
    import dolfinx_solver  # noqa: F401  (MPI before mpi4py)
    from mpi4py import MPI

    from .config import load_case
    from .meshing import build_bundle

    rc = load_case(args.case, args.set)
    out = args.output or Path("runs") / (rc.case.name or Path(args.case).stem) / "mesh"
    comm, err = MPI.COMM_WORLD, None
    if comm.rank == 0:
        try:
            build_bundle(rc.case.geometry, Path(out))
        except InputError as exc:
            err = exc
    err = comm.bcast(err, root=0)
    if err is not None:
        raise err
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
    from .config import load_case
    from .workflow.summary import material_summary

    rc = load_case(args.case, args.set)
    import yaml

    print(f"{args.case}: valid")
    print(f"parameter set: {rc.params_path}")
    if args.verbose:
        print(yaml.safe_dump(rc.to_dict(), sort_keys=False))
    print(material_summary(rc))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from .config import load_case

    rc = load_case(args.case, args.set)
    if args.dry_run:
        print(f"{args.case}: valid (dry run, nothing solved)")
        return 0
    if args.restart is not None and args.output is not None:
        if Path(args.output).resolve() != Path(args.restart).resolve():
            raise InputError(
                f"--restart {args.restart} and -o {args.output} name different directories; "
                "a restart continues in its own run directory (drop -o)"
            )
    if args.allow_changes and args.restart is None:
        raise InputError("--allow-changes only applies to --restart")
    from mpi4py import MPI

    from .workflow.run import run_case

    out = args.restart or args.output
    rec = run_case(
        rc,
        out,
        MPI.COMM_WORLD,
        restart=args.restart is not None,
        allow_changes=tuple(args.allow_changes),
        overwrite=args.overwrite,
    )
    if MPI.COMM_WORLD.rank == 0:
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
    sp.set_defaults(func=_cmd_run)

    sp = sub.add_parser("check", help="validate a case file and print the resolved parameters")
    case_args(sp)
    sp.add_argument("-v", "--verbose", action="store_true", help="print the whole resolved case")
    sp.set_defaults(func=_cmd_check)

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
        print(f"polycrack: error: {exc}", file=sys.stderr)
        return 2
    except SolverFailure as exc:
        print(f"polycrack: solver failure: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("polycrack: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
