"""Timing of one quasi-static fracture step on a 400-grain sphere (h = 0.4 µm in the particle):
monolithic Newton on [F_u, F_phi] with MUMPS LU versus FGMRES + multiplicative fieldsplit (GAMG
with the rigid-body near-nullspace on u, GAMG on phi), and the staggered scheme (MUMPS per field)
for reference. Writes benchmarks/results/fracture_step.json (times, Newton/Krylov iterations,
peak memory, load average - the machine is shared, so timings are noisy).

Three staggered preload steps take x from x0 to ``--x`` + ``--dx``; the timed step then goes to
``--x`` (default 0.725 -> 0.70, partial damage with l = 0.8 µm) from that converged state, the
same start for every solver. Mesh: the meshing bundle when available, else the voxelised Voronoi fallback
of polycrack.verification.mech_meshes.

Run: python benchmarks/fracture_step.py [--h 0.4] [--x 0.7]   (also under mpirun -n 2)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

import dolfinx_solver  # noqa: F401
import numpy as np
from mpi4py import MPI

ROOT = Path(__file__).resolve().parent.parent


from polycrack import config  # noqa: E402
from polycrack.numerics.nonlinear import BlockNewton  # noqa: E402
from polycrack.physics import materials as mat  # noqa: E402
from polycrack.physics import mechanics as M  # noqa: E402
from polycrack.problems.quasistatic import FractureSettings, QuasiStaticFracture  # noqa: E402


def peak_mb(comm) -> float:
    """Sum over ranks of the peak resident set size, MB."""
    return comm.allreduce(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, op=MPI.SUM)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--h", type=float, default=0.4)
    ap.add_argument("--grains", type=int, default=400)
    ap.add_argument("--x", type=float, default=0.70)
    ap.add_argument("--dx", type=float, default=0.025, help="the timed step is x + dx -> x")
    ap.add_argument("--l", type=float, default=0.8)
    ap.add_argument("--skip", default="", help="comma list of mumps,fieldsplit,staggered to skip")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "fracture_step.json"))
    a = ap.parse_args()
    comm = MPI.COMM_WORLD

    def log(msg):
        if comm.rank == 0:
            print(msg, flush=True)

    t0 = time.perf_counter()
    import fracture_demo50

    if a.grains != 50:  # the fallback mesh builder takes the grain count from here
        from polycrack.verification.mech_meshes import voronoi_sphere

        msh, ct, ft, axes = voronoi_sphere(a.grains, 7.0, 10.0, a.h, 2.0, seed=1, comm=comm)
        dom, source = M.ParticleDomain.build(msh, ct, ft, axes), "voxelised Voronoi fallback"
    else:
        dom, source = fracture_demo50.build_domain(a.h, 1, comm)
    t_mesh = time.perf_counter() - t0
    p, _ = config.load_parameters(config.find_parameter_set("nmc811_parks2023"))
    lat = mat.LatticeStrains.from_params(p, config._params.PARAMS_DIR / p.mechanics.lattice_table)
    model = M.MechanicsModel(
        M.ElasticModuli(150.0, 0.3),
        M.ElasticModuli(0.3, 0.3),
        M.StrainLawUFL(lat),
        0.9084,
        "hybrid",
        1e-7,
    )
    t0 = time.perf_counter()
    qs = QuasiStaticFracture(dom, model, FractureSettings(0.05, 0.005, a.l, a.l), tol=1e-4)
    t_setup = time.perf_counter() - t0
    nu = qs.V.dofmap.index_map.size_global * 3
    nphi = qs.phi.function_space.dofmap.index_map.size_global
    log(
        f"mesh ({source}) {dom.mesh.topology.index_map(3).size_global} cells, u dofs {nu}, "
        f"phi dofs {nphi}; mesh {t_mesh:.1f} s, forms + gamma {t_setup:.1f} s"
    )
    result = {
        "description": __doc__.split("\n\n")[0],
        "mesh_source": source,
        "grains": a.grains,
        "h_particle_um": a.h,
        "cells": dom.mesh.topology.index_map(3).size_global,
        "u_dofs": nu,
        "phi_dofs": nphi,
        "x_step": a.x,
        "l_um": a.l,
        "mpi_ranks": comm.size,
        "loadavg_start": os.getloadavg(),
        "mesh_s": t_mesh,
        "setup_s": t_setup,
        "solvers": {},
    }
    skip = set(filter(None, a.skip.split(",")))
    # preload: staggered steps to x + dx_pre, so that the timed step starts from a converged state
    t0 = time.perf_counter()
    for xp in np.linspace(0.9084, a.x + a.dx, 4)[1:]:
        qs.set_x(float(xp))
        rp = qs.solve_step()
        log(
            f"preload x = {xp:.4f}: {rp['iterations']} staggered iterations, phi_max {rp['phi_max']:.3f}"
        )
    result["preload_s"] = time.perf_counter() - t0
    result["x_preload"] = a.x + a.dx
    saved = [qs.u.x.array.copy(), qs.phi.x.array.copy(), qs.history.H.x.array.copy()]

    def restore():
        qs.u.x.array[:] = saved[0]
        qs.phi.x.array[:] = saved[1]
        qs.history.H.x.array[:] = saved[2]
        qs.set_x(a.x)

    for linear in ("mumps", "fieldsplit"):
        if linear in skip:
            continue
        restore()
        bn = BlockNewton(
            [qs.F_u, qs.F_phi],
            [qs.u, qs.phi],
            ["vector", "scalar"],
            bcs=qs.bcs,
            entity_maps=[dom.entity_map],
            linear=linear,
            rtol=1e-8,
            atol=1e-10,
            max_it=50,
            name=f"bench{linear}",
        )
        r = bn.solve()
        m = qs.metrics.compute()
        rec = {
            "converged": r.converged,
            "time_s": r.seconds,
            "newton_iterations": r.iterations,
            "krylov_iterations": r.linear_iterations,
            "lu_factorisations": r.factorisations,
            "phi_max": m["phi_max"],
            "peak_rss_MB_all_ranks": peak_mb(comm),
            "loadavg": os.getloadavg(),
        }
        result["solvers"][f"monolithic_{linear}"] = rec
        log(f"monolithic {linear}: {rec}")
    if "staggered" not in skip:
        restore()
        r = qs.solve_step()
        rec = {
            "converged": True,
            "time_s": r["time_s"],
            "staggered_iterations": r["iterations"],
            "phi_max": r["phi_max"],
            "peak_rss_MB_all_ranks": peak_mb(comm),
            "loadavg": os.getloadavg(),
        }
        result["solvers"]["staggered_mumps"] = rec
        log(f"staggered mumps: {rec}")
    result["loadavg_end"] = os.getloadavg()
    if comm.rank == 0:
        Path(a.out).write_text(json.dumps(result, indent=1))
        print(f"-> {a.out}")


if __name__ == "__main__":
    main()
