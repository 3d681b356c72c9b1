"""Shared by the assembly benchmarks (jit_flags.py, strain_law_forms.py): several builds of the
coupled demo problem put at one state, their residual and Jacobian assembled round robin, and
their values compared with the first build's.

The state: one 1C step of 60 s from rest solved with the first problem, then x_n = x (a nonzero
residual) copied into every problem with the step constants and 0.9 times the history field: H
is ψ+ of that state, and at a tie max(H, ψ+) takes its derivative from either side by rounding
(the φ-x and φ-u blocks of two exact forms then differ by O(1)).
"""

from __future__ import annotations

import statistics
import time


def demo_case(refine: int) -> dict:
    """The coupled demo case of the perf benchmarks (fieldsplit, l = 0.8 µm)."""
    from newton_parts import geometry

    return {
        "geometry": geometry(0.8, refine),
        "material": {"overrides": {"fracture.l_m": 0.8e-6, "fracture.l_gamma_m": 0.8e-6}},
        "protocol": [{"type": "cc", "c_rate": 1.0, "until_voltage_V": 4.3}],
        "solver": {"linear": "fieldsplit"},
        "output": {"fields_at_voltages_V": []},
    }


def demo_domain(refine: int, comm):
    """The demo geometry (h = 0.8 µm) refined ``refine`` times (bundle cached in runs/)."""
    from newton_parts import MESHES, geometry
    from polycrack.config import GeometryConfig
    from polycrack.physics.domain import ensure_bundle, load_bundle
    from polycrack.physics.mechanics import ParticleDomain

    geo = GeometryConfig.model_validate(geometry(0.8, 0))
    bundle = ensure_bundle(geo, MESHES / "h0.8", comm)
    return ParticleDomain.from_domain(load_bundle(bundle, comm, refine_levels=refine))


def same_state(problems: dict) -> None:
    """Solve one 60 s 1C step with the first problem and copy its state into all of them
    (module docstring)."""
    from dolfinx.fem import petsc as fp

    first = next(iter(problems.values()))
    st = first.make_stepper()
    first.ec.set_galvanostatic(first.ec.c_rate_current_A(1.0))
    st.commit(st.attempt(60.0))
    first.after_accept()
    state = [f.x.array.copy() for f in first.fields]
    H = 0.9 * first.blocks.history.H.x.array  # no ties between H and ψ+ (module docstring)
    consts = {c: float(getattr(first.ec, c).value) for c in ("dt", "a0", "a1", "a2", "j_app")}
    for pb in problems.values():
        pb.ec.set_galvanostatic(pb.ec.c_rate_current_A(1.0))
        for f, arr in zip(pb.fields, state, strict=True):
            f.x.array[:] = arr
        pb.blocks.history.H.x.array[:] = H
        pb.ec.x_n.x.array[:] = state[0]
        pb.ec.x_nn.x.array[:] = state[0]
        for c, v in consts.items():
            getattr(pb.ec, c).value = v
        fp.assign(pb.newton.u, pb.newton.problem.x)


def time_round_robin(problems: dict, repeat: int, comm) -> dict:
    """Median residual and Jacobian assembly times (s, max over ranks) of every problem,
    ``repeat`` rounds over all problems (the load of a shared machine drifts over minutes)."""
    from mpi4py import MPI

    times = {n: ([], []) for n in problems}
    for _ in range(repeat):
        for name, pb in problems.items():
            p = pb.newton.problem
            comm.barrier()
            t = time.perf_counter()
            pb.newton.snes.computeFunction(p.x, p.b)
            times[name][0].append(time.perf_counter() - t)
            comm.barrier()
            t = time.perf_counter()
            pb.newton.snes.computeJacobian(p.x, p.A, p.A)
            times[name][1].append(time.perf_counter() - t)
    return {
        n: {
            "residual_s": comm.allreduce(statistics.median(tf), op=MPI.MAX),
            "jacobian_s": comm.allreduce(statistics.median(tj), op=MPI.MAX),
        }
        for n, (tf, tj) in times.items()
    }


def _values(pb) -> dict:
    import numpy as np

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


def max_rel_diff(problems: dict, comm) -> dict:
    """Per problem: max over the Jacobian blocks and the residual of |value - first's| over the
    block's largest entry (after the last :func:`time_round_robin` assembly)."""
    import numpy as np
    from mpi4py import MPI

    ref = _values(next(iter(problems.values())))
    out = {}
    for name, pb in problems.items():
        diff = 0.0
        for k, v in _values(pb).items():
            r = ref[k]
            scale = max(float(np.abs(r).max()), 1e-300) if r.size else 1.0
            d = float(np.abs(v - r).max()) / scale if v.size else 0.0
            diff = max(diff, comm.allreduce(d, op=MPI.MAX))
        out[name] = diff
    return out


def parse_args(doc: str, argv: list[str] | None):
    """The assembly benchmarks' command line: --refine, --repeat, --tag."""
    import argparse

    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--refine", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--tag", default=None)
    return ap.parse_args(argv)


def compare(builders: dict, refine: int, repeat: int, comm, label: str) -> tuple[list, dict]:
    """Build one coupled demo problem per ``builders`` entry (name -> callable(dom, rc) returning
    a CoupledProblem), put them at one state, time and compare their assemblies; print a line
    per problem (rank 0). Returns (rows, times by name); the problems are closed."""
    from polycrack.config import resolve_case

    dom = demo_domain(refine, comm)
    rc = resolve_case(demo_case(refine), None)
    problems, builds = {}, {}
    for name, build in builders.items():
        t0 = time.perf_counter()
        problems[name] = build(dom, rc)
        builds[name] = time.perf_counter() - t0
    same_state(problems)
    times = time_round_robin(problems, repeat, comm)
    diffs = max_rel_diff(problems, comm)
    first = next(iter(builders))
    rows = []
    for name in problems:
        rows.append(
            {label: name, "build_s": builds[name], **times[name], "max_rel_diff": diffs[name]}
        )
        if comm.rank == 0:
            r = rows[-1]
            print(
                f"{name:16s}: build {r['build_s']:.1f} s, F {r['residual_s']:.3f} s, "
                f"J {r['jacobian_s']:.3f} s, max difference vs {first} (relative to the block's "
                f"largest entry) {diffs[name]:.3g}",
                flush=True,
            )
    cells = dom.mesh.topology.index_map(3).size_global
    for pb in problems.values():
        pb.close()
    return rows, {"times": times, "cells": cells}


def write_result(benchmark: str, doc: str, a, comm, rows: list, **extra) -> None:
    """benchmarks/results/<benchmark>_<tag>.json (rank 0) with machine, commit and load."""
    import json
    import os

    from newton_parts import REPO, RESULTS, machine
    from polycrack.workflow.exports import git_commit

    if comm.rank != 0:
        return
    out_doc = {
        "benchmark": benchmark,
        "description": doc.split("\n\n")[0],
        "refine_levels": a.refine,
        "ranks": comm.size,
        "rows": rows,
        **extra,
        "git_commit": git_commit(),
        "machine": machine(),
        "loadavg_end": os.getloadavg(),
    }
    tag = a.tag or f"r{a.refine}_np{comm.size}"
    out = RESULTS / f"{benchmark}_{tag}.json"
    out.write_text(json.dumps(out_doc, indent=1) + "\n")
    print(f"wrote {out.relative_to(REPO)}")
