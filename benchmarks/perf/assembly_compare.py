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
