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
import statistics
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
    import numpy as np
    from mpi4py import MPI
    from newton_parts import MESHES, geometry, machine
    from polycrack.config import GeometryConfig, resolve_case
    from polycrack.physics.domain import ensure_bundle, load_bundle
    from polycrack.physics.mechanics import ParticleDomain
    from polycrack.problems.coupled import CoupledProblem
    from polycrack.workflow.exports import git_commit

    comm = MPI.COMM_WORLD
    geo = GeometryConfig.model_validate(geometry(0.8, 0))
    bundle = ensure_bundle(geo, MESHES / "h0.8", comm)
    dom = ParticleDomain.from_domain(load_bundle(bundle, comm, refine_levels=a.refine))
    case = {
        "geometry": geometry(0.8, a.refine),
        "material": {"overrides": {"fracture.l_m": 0.8e-6, "fracture.l_gamma_m": 0.8e-6}},
        "protocol": [{"type": "cc", "c_rate": 1.0, "until_voltage_V": 4.3}],
        "solver": {"linear": "fieldsplit"},
        "output": {"fields_at_voltages_V": []},
    }
    rc = resolve_case(case, None)
    defaults = importlib.import_module("dolfinx.jit").DOLFINX_DEFAULT_JIT_OPTIONS
    problems, builds = {}, {}
    for name, flags in FLAGS.items():
        defaults["cffi_extra_compile_args"] = (flags, defaults["cffi_extra_compile_args"][1])
        t0 = time.perf_counter()
        problems[name] = CoupledProblem(dom, rc)
        builds[name] = time.perf_counter() - t0
    first = problems["O2 (default)"]
    st = first.make_stepper()
    first.ec.set_galvanostatic(first.ec.c_rate_current_A(1.0))
    st.commit(st.attempt(60.0))
    first.after_accept()
    state = [f.x.array.copy() for f in first.fields]
    H = first.blocks.history.H.x.array.copy()
    consts = {c: float(getattr(first.ec, c).value) for c in ("dt", "a0", "a1", "a2", "j_app")}
    from dolfinx.fem import petsc as fp

    for pb in problems.values():  # the same state everywhere (x_n = x: a nonzero residual)
        pb.ec.set_galvanostatic(pb.ec.c_rate_current_A(1.0))
        for f, arr in zip(pb.fields, state, strict=True):
            f.x.array[:] = arr
        pb.blocks.history.H.x.array[:] = H
        pb.ec.x_n.x.array[:] = state[0]
        pb.ec.x_nn.x.array[:] = state[0]
        for c, v in consts.items():
            getattr(pb.ec, c).value = v
        fp.assign(pb.newton.u, pb.newton.problem.x)
    times = {n: ([], []) for n in problems}
    for _ in range(a.repeat):  # round robin: the load changes over minutes
        for name, pb in problems.items():
            p = pb.newton.problem
            comm.barrier()
            t = time.perf_counter()
            pb.newton.snes.computeFunction(p.x, p.b)
            times[name][0].append(time.perf_counter() - t)
            t = time.perf_counter()
            pb.newton.snes.computeJacobian(p.x, p.A, p.A)
            times[name][1].append(time.perf_counter() - t)

    def values(pb) -> dict:
        p = pb.newton.problem
        nr, nc = p.A.getNestSize()
        out = {}
        for i in range(nr):
            for j in range(nc):
                m = p.A.getNestSubMatrix(i, j)
                if m is not None and m.handle:
                    out[f"J{i}{j}"] = m.getValuesCSR()[2].copy()
        out["F"] = np.concatenate([b.getArray() for b in p.b.getNestSubVecs()])
        return out

    ref = values(first)
    rows = []
    for name, pb in problems.items():
        diff = 0.0
        for k, v in values(pb).items():
            r = ref[k]
            scale = max(float(np.abs(r).max()), 1e-300) if r.size else 1.0
            d = float(np.abs(v - r).max()) / scale if v.size else 0.0
            diff = max(diff, comm.allreduce(d, op=MPI.MAX))
        tf, tj = times[name]
        rows.append(
            {
                "flags": name,
                "cffi_extra_compile_args": FLAGS[name],
                "build_s": builds[name],
                "residual_s": comm.allreduce(statistics.median(tf), op=MPI.MAX),
                "jacobian_s": comm.allreduce(statistics.median(tj), op=MPI.MAX),
                "max_rel_diff_vs_default": diff,
            }
        )
        if comm.rank == 0:
            r = rows[-1]
            print(
                f"{name:16s}: build {r['build_s']:.1f} s, F {r['residual_s']:.3f} s, "
                f"J {r['jacobian_s']:.3f} s, max difference vs -O2 (relative to the block's "
                f"largest entry) {diff:.3g}",
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
