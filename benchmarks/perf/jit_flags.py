"""Compiler flags of the form kernels: Jacobian and residual assembly time and the values.

    python benchmarks/perf/jit_flags.py                  # demo mesh (refine 0), 3 flag sets
    python benchmarks/perf/jit_flags.py --refine 1

One process: the coupled demo problem (examples/demo.yaml geometry, fieldsplit) is built once per
flag set (``cffi_extra_compile_args`` of the DOLFINx JIT: DOLFINx's default ``-O2 -g0``, then
``-O3 -g0``, then ``-O3 -march=native -g0``; the flags are part of the JIT cache key, so every
set compiles its own kernels), put at the same state (one 1C step of 60 s from rest, solved with
the default flags' problem, x_n = x) and its residual and Jacobian are assembled ``--repeat``
times, round robin over the flag sets (the load of the shared machine drifts), medians. The values are compared with the default flags' (max relative difference over the
matrix blocks and the residual): flags that change them break bitwise reproducibility across
machines. Writes ``benchmarks/results/jit_flags_<tag>.json``.
"""

from __future__ import annotations

FLAGS = {
    "O2 (default)": ["-O2", "-g0"],
    "O3": ["-O3", "-g0"],
    "O3 march=native": ["-O3", "-march=native", "-g0"],
}


def main(argv: list[str] | None = None) -> None:
    from assembly_compare import parse_args

    a = parse_args(__doc__, argv)
    import importlib

    import dolfinx_solver  # noqa: F401  (MPI before dolfinx)
    from assembly_compare import compare, write_result
    from mpi4py import MPI
    from polycrack.problems.coupled import CoupledProblem

    defaults = importlib.import_module("dolfinx.jit").DOLFINX_DEFAULT_JIT_OPTIONS

    def with_flags(flags: list[str]):
        def build(dom, rc):  # the flags are part of the JIT cache key: own kernels per set
            defaults["cffi_extra_compile_args"] = (flags, defaults["cffi_extra_compile_args"][1])
            return CoupledProblem(dom, rc)

        return build

    comm = MPI.COMM_WORLD
    rows, _ = compare(
        {n: with_flags(f) for n, f in FLAGS.items()}, a.refine, a.repeat, comm, "flags"
    )
    for r in rows:
        r["cffi_extra_compile_args"] = FLAGS[r["flags"]]
    write_result("jit_flags", __doc__, a, comm, rows)


if __name__ == "__main__":
    main()
