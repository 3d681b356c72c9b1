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

import argparse
import json
import os
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FLAGS = {
    "O2 (default)": ["-O2", "-g0"],
    "O3": ["-O3", "-g0"],
    "O3 march=native": ["-O3", "-march=native", "-g0"],
}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--refine", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--tag", default=None)
    a = ap.parse_args(argv)
    import importlib

    import dolfinx_solver  # noqa: F401  (MPI before dolfinx)
    from assembly_compare import (
        demo_case,
        demo_domain,
        max_rel_diff,
        same_state,
        time_round_robin,
    )
    from mpi4py import MPI
    from newton_parts import machine
    from polycrack.config import resolve_case
    from polycrack.problems.coupled import CoupledProblem
    from polycrack.workflow.exports import git_commit

    comm = MPI.COMM_WORLD
    dom = demo_domain(a.refine, comm)
    rc = resolve_case(demo_case(a.refine), None)
    defaults = importlib.import_module("dolfinx.jit").DOLFINX_DEFAULT_JIT_OPTIONS
    problems, builds = {}, {}
    for name, flags in FLAGS.items():
        defaults["cffi_extra_compile_args"] = (flags, defaults["cffi_extra_compile_args"][1])
        t0 = time.perf_counter()
        problems[name] = CoupledProblem(dom, rc)
        builds[name] = time.perf_counter() - t0
    same_state(problems)
    times = time_round_robin(problems, a.repeat, comm)
    diffs = max_rel_diff(problems, comm)
    rows = []
    for name in problems:
        rows.append(
            {
                "flags": name,
                "cffi_extra_compile_args": FLAGS[name],
                "build_s": builds[name],
                **times[name],
                "max_rel_diff_vs_default": diffs[name],
            }
        )
        if comm.rank == 0:
            r = rows[-1]
            print(
                f"{name:16s}: build {r['build_s']:.1f} s, F {r['residual_s']:.3f} s, "
                f"J {r['jacobian_s']:.3f} s, max difference vs -O2 (relative to the block's "
                f"largest entry) {diffs[name]:.3g}",
                flush=True,
            )
    for pb in problems.values():
        pb.close()
    if comm.rank == 0:
        doc = {
            "benchmark": "jit_flags",
            "description": __doc__.split("\n\n")[0],
            "refine_levels": a.refine,
            "ranks": comm.size,
            "rows": rows,
            "git_commit": git_commit(),
            "machine": machine(),
            "loadavg_end": os.getloadavg(),
        }
        tag = a.tag or f"r{a.refine}_np{comm.size}"
        out = REPO / "benchmarks" / "results" / f"jit_flags_{tag}.json"
        out.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
