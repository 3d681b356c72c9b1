"""One Newton iteration of the coupled problem in parts, beside the floor on the same mesh.

    python benchmarks/perf/newton_parts.py                     # demo mesh, refined once
    python benchmarks/perf/newton_parts.py --refine 0 --tag demo
    mpirun -n 2 python benchmarks/perf/newton_parts.py --tag r1_np2

In one process: the demo geometry (examples/demo.yaml: synthetic 14 µm particle, 50 grains,
binder to 20 µm, h = 0.8 µm) refined ``--refine`` times, the coupled case (x, V, u, φ) with
``solver.linear: fieldsplit`` charged at 1C from rest. For every ``solver.preconditioner_reuse``
mode (``--modes``) a fresh problem takes ``--steps`` steps of ``--dt`` s (the first at BDF1);
PETSc's event log gives per Newton iteration: residual assembly (SNESFunctionEval), Jacobian
assembly (SNESJacobianEval), preconditioner set-up (PCSetUp: the fieldsplit and its GAMG/Jacobi
splits) and Krylov (KSPSolve minus the set-ups inside it); and the Newton, Krylov and set-up
counts. Max over ranks.

The floor, on the same meshes, in the same process: isotropic linear elasticity (P1 vector, the
whole mesh, clamped outer boundary, GAMG with the rigid-body near-nullspace and polycrack's
elasticity options, CG to rtol 1e-9) and twice a Poisson problem with a mass term (P1 on the
particle, GAMG, CG to rtol 1e-9): assembly, set-up, solve, medians of ``--repeat``. The ratio
is polycrack's time per Newton iteration over the floor's, with and without the set-ups.

Writes ``benchmarks/results/newton_parts_<tag>.json`` (machine, commit, load average, the share
of a core the process got: the machine is shared and the times are under load).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "benchmarks" / "results"
MESHES = REPO / "runs" / "perf_meshes"


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def machine() -> dict:
    return {
        "node": platform.node(),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "loadavg": os.getloadavg(),
    }


def geometry(h: float, refine: int) -> dict:
    return {
        "particle": {"source": "synthetic", "diameter_um": 14.0, "shape_seed": 3},
        "grains": {"count": 50, "seed": 1},
        "binder_outer_diameter_um": 20.0,
        "mesh": {"particle_size_um": h, "binder_size_um": 2.5, "refine_levels": refine},
    }


def parts(newton, repeat: int) -> dict:
    """One Newton iteration of ``newton`` (a BlockNewton) at its current state, in parts:
    residual, Jacobian, preconditioner set-up (fieldsplit + every split) and the Krylov solve
    on it; medians of ``repeat``, max over ranks."""
    from mpi4py import MPI

    snes, p = newton.snes, newton.problem
    comm = p.A.getComm().tompi4py()
    from dolfinx.fem import petsc as fp

    fp.assign(newton.u, p.x)
    x, b, A = p.x, p.b, p.A
    dx = x.duplicate()
    ksp = snes.getKSP()
    subs = [k.getPC() for k in ksp.getPC().getFieldSplitSubKSP()]
    out: dict = {"residual_assembly": [], "jacobian_assembly": [], "pc_setup": [], "krylov": []}
    its = 0
    for _ in range(repeat):
        t = []
        comm.barrier()
        t.append(time.perf_counter())
        snes.computeFunction(x, b)
        t.append(time.perf_counter())
        snes.computeJacobian(x, A, A)
        t.append(time.perf_counter())
        for pc in subs:
            pc.setReusePreconditioner(False)
        ksp.setOperators(A, A)
        ksp.setUp()
        ksp.setUpOnBlocks()
        t.append(time.perf_counter())
        dx.set(0.0)
        ksp.solve(b, dx)
        t.append(time.perf_counter())
        its = ksp.getIterationNumber()
        for key, t0, t1 in zip(out, t[:-1], t[1:], strict=True):
            out[key].append(comm.allreduce(t1 - t0, op=MPI.MAX))
    dx.destroy()
    res = {k: statistics.median(v) for k, v in out.items()}
    res["total"] = sum(res.values())
    res["krylov_iterations"] = its
    return res


def coupled(dom, h: float, refine: int, mode: str, steps: int, dt: float, repeat: int) -> dict:
    """``steps`` steps of the coupled problem with preconditioner reuse ``mode``; then (mode
    ``off`` only) one Newton iteration in parts at the state reached."""
    from polycrack.config import resolve_case
    from polycrack.problems.coupled import CoupledProblem

    case = {
        "geometry": geometry(h, refine),
        "material": {"overrides": {"fracture.l_m": 0.8e-6, "fracture.l_gamma_m": 0.8e-6}},
        "protocol": [{"type": "cc", "c_rate": 1.0, "until_voltage_V": 4.3}],
        "physics": {"mechanics": True, "fracture": True},
        "solver": {"linear": "fieldsplit", "preconditioner_reuse": mode},
        "output": {"fields_at_voltages_V": []},
    }
    rc = resolve_case(case, None)
    pb = CoupledProblem(dom, rc)
    try:
        st = pb.make_stepper()
        pb.ec.set_galvanostatic(pb.ec.c_rate_current_A(1.0))
        t0 = time.perf_counter()
        for _ in range(steps):
            trial = st.attempt(dt)
            st.commit(trial)
            pb.after_accept()
        wall = time.perf_counter() - t0
        s = st.stats
        n = max(s.newton_iterations, 1)
        pc = pb.newton.preconditioner_stats() or {"setups": n, "reuses": 0, "rebuilds": {}}
        row = {
            "mode": mode,
            "steps": steps,
            "rejected": s.rejected_error + s.rejected_newton + s.rejected_limiter,
            "newton_iterations": s.newton_iterations,
            "krylov_iterations": s.linear_iterations,
            "krylov_per_newton": s.linear_iterations / n,
            "preconditioner": pc,
            # the Newton solves' own wall time (BlockNewton), rank 0
            "solve_s_per_newton": s.solve_seconds / n,
            "wall_s": wall,
            "unknowns": pb.unknowns,
        }
        if mode == "off":
            row["parts_s"] = parts(pb.newton, repeat)
        return row
    finally:
        pb.close()


def _median_time(fn, repeat: int, comm) -> float:
    from mpi4py import MPI

    ts = []
    for _ in range(repeat):
        comm.barrier()
        t = time.perf_counter()
        fn()
        ts.append(comm.allreduce(time.perf_counter() - t, op=MPI.MAX))
    return statistics.median(ts)


def _floor_problem(a_form, L_form, bcs, V, repeat: int, vector: bool) -> dict:
    """Assemble / GAMG set-up / CG solve of one linear problem, medians of ``repeat``."""
    from dolfinx.fem import petsc as fp
    from petsc4py import PETSc
    from polycrack.numerics.nonlinear import ELASTICITY_GAMG, rigid_body_modes

    comm = V.mesh.comm
    A = fp.create_matrix(a_form)
    b = fp.create_vector(V)

    def assemble():
        A.zeroEntries()
        fp.assemble_matrix(A, a_form, bcs=bcs)
        A.assemble()

    t_asm = _median_time(assemble, repeat, comm)
    with b.localForm() as loc:
        loc.set(0.0)
    fp.assemble_vector(b, L_form)
    fp.apply_lifting(b, [a_form], bcs=[bcs])
    b.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
    fp.set_bc(b, bcs)
    if vector:
        A.setNearNullSpace(rigid_body_modes(V))
    prefix = f"floor{id(A)}_"
    opts = PETSc.Options()
    base = {
        "ksp_type": "cg",
        "ksp_rtol": 1e-9,
        "pc_type": "gamg",
        "mg_levels_ksp_type": "chebyshev",
        "mg_levels_pc_type": "jacobi",
        **(ELASTICITY_GAMG if vector else {}),
    }
    for k, v in base.items():
        opts[prefix + k] = v
    x = b.duplicate()
    setups, solves, its = [], [], 0
    for _ in range(repeat):
        ksp = PETSc.KSP().create(comm)
        ksp.setOptionsPrefix(prefix)
        ksp.setOperators(A)
        ksp.setFromOptions()
        comm.barrier()
        t = time.perf_counter()
        ksp.setUp()
        setups.append(time.perf_counter() - t)
        x.set(0.0)
        t = time.perf_counter()
        ksp.solve(b, x)
        solves.append(time.perf_counter() - t)
        its = ksp.getIterationNumber()
        ksp.destroy()
    from mpi4py import MPI

    for k in base:
        del opts[prefix + k]
    n = V.dofmap.index_map.size_global * V.dofmap.index_map_bs
    out = {
        "unknowns": n,
        "assembly_s": t_asm,
        "setup_s": comm.allreduce(statistics.median(setups), op=MPI.MAX),
        "solve_s": comm.allreduce(statistics.median(solves), op=MPI.MAX),
        "krylov_iterations": its,
    }
    for o in (A, b, x):
        o.destroy()
    return out


def floor(dom, repeat: int) -> dict:
    """Elasticity on the whole mesh + 2 x Poisson on the particle (see module docstring)."""
    import numpy as np
    import ufl
    from dolfinx import fem, mesh

    msh, sub = dom.mesh, dom.submesh
    V = fem.functionspace(msh, ("Lagrange", 1, (3,)))
    u, v = ufl.TrialFunction(V), ufl.TestFunction(V)
    lam, mu = 60.0, 70.0  # GPa, of the order of the particle's moduli

    def eps(w):
        return ufl.sym(ufl.grad(w))

    a = fem.form(
        (
            lam * ufl.tr(eps(u)) * ufl.inner(ufl.Identity(3), eps(v))
            + 2 * mu * ufl.inner(eps(u), eps(v))
        )
        * ufl.dx
    )
    L = fem.form(ufl.inner(fem.Constant(msh, np.array([0.0, 0.0, 1e-3])), v) * ufl.dx)
    fdim = msh.topology.dim - 1
    msh.topology.create_connectivity(fdim, msh.topology.dim)
    outer = mesh.exterior_facet_indices(msh.topology)
    bc = fem.dirichletbc(np.zeros(3), fem.locate_dofs_topological(V, fdim, outer), V)
    elastic = _floor_problem(a, L, [bc], V, repeat, vector=True)
    W = fem.functionspace(sub, ("Lagrange", 1))
    p, q = ufl.TrialFunction(W), ufl.TestFunction(W)
    dx2 = ufl.dx(metadata={"quadrature_degree": 2})
    a2 = fem.form((p * q + 10.0 * ufl.inner(ufl.grad(p), ufl.grad(q))) * dx2)
    L2 = fem.form(q * dx2)
    poisson = _floor_problem(a2, L2, [], W, repeat, vector=False)
    with_setup = elastic["assembly_s"] + elastic["setup_s"] + elastic["solve_s"]
    with_setup += 2 * (poisson["assembly_s"] + poisson["setup_s"] + poisson["solve_s"])
    without = with_setup - elastic["setup_s"] - 2 * poisson["setup_s"]
    return {
        "elasticity": elastic,
        "poisson": poisson,
        "total_s": with_setup,
        "total_without_setup_s": without,
        "assembly_s": elastic["assembly_s"] + 2 * poisson["assembly_s"],
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--h", type=float, default=0.8)
    ap.add_argument("--refine", type=int, default=1)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--dt", type=float, default=60.0)
    ap.add_argument("--modes", nargs="+", default=["off", "newton", "steps"])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--tag", default=None)
    a = ap.parse_args(argv)

    import dolfinx_solver  # noqa: F401
    from mpi4py import MPI
    from petsc4py import PETSc
    from polycrack.config import GeometryConfig
    from polycrack.physics.domain import ensure_bundle, load_bundle
    from polycrack.physics.mechanics import ParticleDomain
    from polycrack.workflow.exports import git_commit

    comm = MPI.COMM_WORLD
    PETSc.Log.begin()
    t_start, cpu0, load0 = time.perf_counter(), _cpu_s(), os.getloadavg()
    geo = GeometryConfig.model_validate(geometry(a.h, 0))
    bundle = ensure_bundle(geo, MESHES / f"h{a.h}", comm)
    dom = ParticleDomain.from_domain(load_bundle(bundle, comm, refine_levels=a.refine))
    rows = []
    for mode in a.modes:
        r = coupled(dom, a.h, a.refine, mode, a.steps, a.dt, a.repeat)
        rows.append(r)
        if comm.rank == 0:
            print(
                f"{mode:7s}: {r['newton_iterations']} Newton ({r['rejected']} rejected), "
                f"{r['krylov_per_newton']:.1f} Krylov/Newton, {r['preconditioner']['setups']} "
                f"set-ups; {r['solve_s_per_newton']:.2f} s per Newton iteration",
                flush=True,
            )
    fl = floor(dom, a.repeat)
    pn = next((r["parts_s"] for r in rows if "parts_s" in r), None)
    ratios = {}
    if pn is not None:
        no_setup = pn["total"] - pn["pc_setup"]
        ratios = {
            "with_setup": pn["total"] / fl["total_s"],
            "without_setup": no_setup / fl["total_without_setup_s"],
            "jacobian_over_floor_assembly": pn["jacobian_assembly"] / fl["assembly_s"],
        }
    off = next((r for r in rows if r["mode"] == "off"), None)
    for r in rows:  # the measured Newton cost of each mode over the floor with one set-up
        r["ratio_to_floor"] = r["solve_s_per_newton"] / fl["total_s"]
        if off is not None:
            r["speedup_over_off"] = off["solve_s_per_newton"] / r["solve_s_per_newton"]
    share = comm.allreduce(_cpu_s() - cpu0, op=MPI.SUM) / comm.size
    share /= time.perf_counter() - t_start
    doc = {
        "benchmark": "newton_parts",
        "description": __doc__.split("\n\n")[0],
        "args": vars(a),
        "ranks": comm.size,
        "cells": dom.mesh.topology.index_map(3).size_global,
        "coupled": rows,
        "floor": fl,
        "git_commit": git_commit(),
        "machine": machine(),
        "loadavg_start": load0,
        "loadavg_end": os.getloadavg(),
        "cpu_share_per_rank": share,
    }
    doc["ratios"] = ratios
    if comm.rank == 0:
        e, p = fl["elasticity"], fl["poisson"]
        if pn is not None:
            print(
                f"parts  : F {pn['residual_assembly']:.2f} + J {pn['jacobian_assembly']:.2f} + "
                f"set-up {pn['pc_setup']:.2f} + Krylov {pn['krylov']:.2f} "
                f"({pn['krylov_iterations']} its) = {pn['total']:.2f} s"
            )
        print(
            f"floor  : elasticity {e['unknowns']} unknowns: assembly {e['assembly_s']:.2f} + "
            f"set-up {e['setup_s']:.2f} + CG {e['solve_s']:.2f} s ({e['krylov_iterations']} its); "
            f"2 x Poisson {p['unknowns']}: {p['assembly_s']:.3f} + {p['setup_s']:.3f} + "
            f"{p['solve_s']:.3f} s; total {fl['total_s']:.2f} s "
            f"({fl['total_without_setup_s']:.2f} without set-ups)"
        )
        if ratios:
            print(
                f"ratio  : {ratios['with_setup']:.2f} x the floor with set-up, "
                f"{ratios['without_setup']:.2f} x without; Jacobian "
                f"{ratios['jacobian_over_floor_assembly']:.2f} x the floor's assembly"
            )
        for r in rows:
            print(
                f"{r['mode']:7s}: {r['solve_s_per_newton']:.2f} s per Newton = "
                f"{r['ratio_to_floor']:.2f} x the floor with set-up"
                + (f", {r['speedup_over_off']:.2f} x faster than off" if off else "")
            )
        tag = a.tag or f"r{a.refine}_np{comm.size}"
        out = RESULTS / f"newton_parts_{tag}.json"
        out.write_text(json.dumps(doc, indent=1, default=str) + "\n")
        print(
            f"wrote {out.relative_to(REPO)}  (cpu share per rank {share:.2f}, load {os.getloadavg()})"
        )


if __name__ == "__main__":
    main()
