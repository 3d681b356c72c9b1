"""Adaptive refinement (polycrack.physics.adapt, issue #24 part 1): the verification bar with both
history-transfer rules, and the cost of one refinement of a particle mesh by phase.

1. The bicrystal bar of polycrack.verification.adapt: uniform mesh against the adaptive run with
   ``rule=parent_max`` and ``rule=fit`` (cells, peak load, final Γ, redone steps, wall time, the
   ratio int H dx after / before each transfer).
2. A 50-grain sphere bundle (14 µm, h = 0.8 µm in the particle, binder shell to 20 µm), loaded
   ghosted as a run loads it: the cells within 1.2 µm of a point at r = 5 µm marked (+ 1 buffer layer)
   and refined three times towards h_target = 0.2 µm (l = 0.4 µm and the rule h/l = 0.5); per round
   the time of dolfinx.mesh.refine, of the tag transfer + surface push, and of the shared-facet
   redistribution (XDMF round trip), and the cell counts.
3. The history rule where H varies inside a cell: H = exp(-|X - X0| / l) (a crack-like profile,
   l = 0.4 µm, X0 at r = 5 µm) at the quadrature points of the sphere mesh, transferred with both
   rules onto the first refinement: int H dx after / before and the mean and max of H_new - H(X)
   at the new points (H(X) the profile itself, what a re-evaluation would give).

Writes benchmarks/results/adapt_refine[_np<N>].json. Run: python benchmarks/adapt_refine.py
(also under mpirun -n 2).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import dolfinx_solver  # noqa: F401
import numpy as np
import ufl
from dolfinx import fem
from dolfinx import mesh as dmesh
from mpi4py import MPI

ROOT = Path(__file__).resolve().parent.parent

from polycrack.config import GeometryConfig  # noqa: E402
from polycrack.physics import adapt  # noqa: E402
from polycrack.physics.domain import ensure_bundle, load_bundle  # noqa: E402
from polycrack.physics.fracture import HistoryField  # noqa: E402
from polycrack.physics.mechanics import ParticleDomain  # noqa: E402
from polycrack.verification import adapt as va  # noqa: E402


def bar_case(comm) -> dict:
    t0 = time.perf_counter()
    ref = va.run_uniform(comm=comm)
    t1 = time.perf_counter()
    out = {"uniform": {**ref, "wall_s": t1 - t0}}
    for rule in ("parent_max", "fit"):
        t = time.perf_counter()
        ad = va.run_adaptive(rule, comm=comm)
        ad["wall_s"] = time.perf_counter() - t
        ad["peak_rel_err"] = ad["peak_GPa"] / ref["peak_GPa"] - 1.0
        ad["gamma_rel_err"] = ad["gamma_um2"] / ref["gamma_um2"] - 1.0
        out[rule] = ad
    return out


def sphere(comm, h: float, workdir: Path):
    geo = GeometryConfig.model_validate(
        {
            "particle": {"source": "sphere", "diameter_um": 14.0},
            "grains": {"count": 50, "seed": 1},
            "binder_outer_diameter_um": 20.0,
            "mesh": {"particle_size_um": h, "binder_size_um": 2.0},
        }
    )
    return load_bundle(ensure_bundle(geo, workdir / f"sphere50_h{h:g}", comm), comm)


def refine_rounds(dom, x0, radius: float, h_target: float, rounds: int) -> tuple[list, list]:
    """Rows of timings and the domains after each round."""
    comm = dom.mesh.comm
    rows, doms = [], []
    for _ in range(rounds):
        n = adapt.cell_counts(dom.mesh)[1]
        mid = dmesh.compute_midpoints(dom.mesh, 3, np.arange(n, dtype=np.int32))
        seed = np.linalg.norm(mid - x0, axis=1) < radius
        t = time.perf_counter()
        marked = adapt.grow_marks(dom.mesh, adapt.sync_marks(dom.mesh, seed), 1)
        marked &= adapt.cell_size(dom.mesh) > h_target
        t_mark = comm.allreduce(time.perf_counter() - t, op=MPI.MAX)
        t = time.perf_counter()
        new, st = adapt.refine_domain(dom, marked)
        t_all = comm.allreduce(time.perf_counter() - t, op=MPI.MAX)
        rows.append(
            {
                "cells_before": st.cells_before,
                "marked": st.marked_cells,
                "cells_after": st.cells_after,
                "mark_s": t_mark,
                "refine_s": st.refine_time_s,
                "tags_and_push_s": st.tags_time_s,
                "reghost_s": st.reghost_time_s,
                "refine_domain_total_s": t_all,
            }
        )
        dom = new
        doms.append(new)
    return rows, doms


def history_rule(dom_old, dom_new, x0, l: float) -> dict:
    old = HistoryField(ParticleDomain.from_domain(dom_old).submesh)
    new_sub = ParticleDomain.from_domain(dom_new).submesh
    comm = old.mesh.comm

    def profile(h: HistoryField) -> np.ndarray:
        sm = h.mesh
        X = sm.geometry.x[sm.geometry.dofmaps[0][h.cells]]
        pts = X[:, :1] + np.einsum("qk,nkj->nqj", h.points, X[:, 1:] - X[:, :1])
        vals = np.exp(-np.linalg.norm(pts - x0, axis=2) / l)
        out = np.empty_like(h.H.x.array)
        out[h.Q.dofmap.list[h.cells]] = vals
        return out

    old.H.x.array[:] = profile(old)
    res = {}
    for rule in ("parent_max", "fit"):
        new = HistoryField(new_sub)
        rec = adapt.transfer_history(old, new, rule=rule)
        exact = profile(new)
        n_own = new.mesh.topology.index_map(3).size_local
        d = (new.H.x.array - exact)[new.Q.dofmap.list[:n_own]].ravel()
        dxq = ufl.dx(domain=new.mesh, metadata={"quadrature_degree": 2})
        fexact = fem.Function(new.Q)
        fexact.x.array[:] = exact
        i_exact = comm.allreduce(fem.assemble_scalar(fem.form(fexact * dxq)), op=MPI.SUM)
        res[rule] = {
            "H_integral_ratio_new_over_old": rec["H_integral_new"] / rec["H_integral_old"],
            "H_integral_ratio_new_over_profile": rec["H_integral_new"] / i_exact,
            "mean_H_new_minus_profile": comm.allreduce(float(d.sum()), op=MPI.SUM)
            / comm.allreduce(len(d), op=MPI.SUM),
            "max_H_new_minus_profile": comm.allreduce(float(d.max(initial=-np.inf)), op=MPI.MAX),
            "min_H_new_minus_profile": comm.allreduce(float(d.min(initial=np.inf)), op=MPI.MIN),
        }
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--h", type=float, default=0.8, help="particle mesh size of the sphere (µm)")
    ap.add_argument("--skip-bar", action="store_true")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    comm = MPI.COMM_WORLD
    result: dict = {
        "ranks": comm.size,
        "loadavg_start": os.getloadavg(),
        "git_commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
        ).stdout.strip(),
    }
    if not a.skip_bar:
        result["bar"] = bar_case(comm)
    tmp = tempfile.mkdtemp(prefix="adapt_bench_") if comm.rank == 0 else None
    tmp = Path(comm.bcast(tmp, root=0))
    t = time.perf_counter()
    dom = sphere(comm, a.h, tmp)
    result["sphere_load_s"] = time.perf_counter() - t
    x0 = np.array([5.0, 0.0, 0.0])
    rows, doms = refine_rounds(dom, x0, 1.2, 0.2, 3)
    result["sphere_rounds"] = rows
    result["history_rule"] = history_rule(dom, doms[0], x0, 0.4)
    result["loadavg_end"] = os.getloadavg()
    if comm.rank == 0:
        name = "adapt_refine" + ("" if comm.size == 1 else f"_np{comm.size}") + ".json"
        out = Path(a.out) if a.out else ROOT / "benchmarks" / "results" / name
        out.write_text(json.dumps(result, indent=1, default=float))
        print(json.dumps(result, indent=1, default=float))


if __name__ == "__main__":
    main()
