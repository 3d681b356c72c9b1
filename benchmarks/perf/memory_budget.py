"""Where the memory of the iterative path goes: a per-rank budget of one coupled step.

    python benchmarks/perf/memory_budget.py     # 1 rank, 2 ranks, 2 ranks low-memory; the JSON
    python benchmarks/perf/memory_budget.py --h 0.6   # the same at 312 k unknowns
    mpirun -n 2 python benchmarks/perf/memory_budget.py one --json-out FILE [--petsc KEY=VALUE]

The run is ``coupled_perf.py one`` (the demo geometry at h = 0.8 µm refined once in DOLFINx,
167 k unknowns, or ``--h 0.6``, 312 k; one 1C step from rest with ``solver.linear: fieldsplit``). Resident set size
is read per rank at these points:

- ``imports``: before the mesh is read (Python, DOLFINx, PETSc and MPI libraries);
- ``mesh``: what reading and refining the mesh (``load_bundle``) left resident;
- ``problem``: what ``CoupledProblem`` added (function spaces, functions, forms, the history
  field, the empty Jacobian);
- ``steady``: resident after the third Newton iteration's linear solve, split into the
  Jacobian blocks and the GAMG hierarchies (coarse operators and interpolations, counted
  from their allocated nonzeros) and the rest (vectors, the Jacobian's values once touched, DOLFINx data);
- ``transient``: the high-water mark of the run above ``steady``: in practice the GAMG set-up
  of the displacement split, whose parallel Galerkin product (``MatPtAP``) holds its
  intermediate products (A P, the transposed parts of P) until it has finished.

Budget rows are MB summed over ranks and KB per unknown; ``benchmarks/results/
memory_budget.json`` keeps them with the per-rank values.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

STEADY_AT_RESIDUAL = 4  # the residual after the third linear solve (F, J, KSP, F, ...)


def _status_mb(key: str) -> float:
    """A /proc/self/status field (VmRSS, VmHWM), MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(key)


def _mat_mb(A) -> float:
    """This rank's part of an AIJ matrix, MB: 8-byte values and 4-byte column indices of the
    allocated nonzeros and three row arrays (PETSc no longer fills MatGetInfo's ``memory``)."""
    if A is None or not A.handle:
        return 0.0
    nz = A.getInfo(A.InfoType.LOCAL)["nz_allocated"]
    return (12 * nz + 12 * A.getLocalSize()[0]) / 2**20


def _solver_mb(newton) -> tuple[float, float]:
    """(Jacobian blocks, GAMG hierarchies without their finest operator), MB on this rank."""
    J = newton.problem.A
    nr, nc = J.getNestSize()
    jac = sum(_mat_mb(J.getNestSubMatrix(i, j)) for i in range(nr) for j in range(nc))
    amg = 0.0
    for sub in newton.snes.getKSP().getPC().getFieldSplitSubKSP():
        pc = sub.getPC()
        if pc.getType() != "gamg":
            continue
        n = pc.getMGLevels()
        for level in range(n):
            if level < n - 1:
                amg += _mat_mb(pc.getMGSmoother(level).getOperators()[0])
            if level > 0:
                amg += _mat_mb(pc.getMGInterpolation(level))
    return jac, amg


#: the low-memory options of docs/user-guide.md section 6: unsmoothed
#: aggregation on u and a CG eigenvalue estimate for the Chebyshev smoothers
LOW_MEMORY = {
    "fieldsplit_f2_pc_gamg_agg_nsmooths": 0,
    **{f"fieldsplit_{f}_mg_levels_esteig_ksp_type": "cg" for f in ("f0", "f2", "f3")},
}
#: (label, ranks, solver.petsc_options) of the table's columns
COLUMNS = [
    ("1 rank", 1, {}),
    ("2 ranks", 2, {}),
    ("2 ranks, low-memory options", 2, LOW_MEMORY),
    ("2 ranks, low-memory options, BiCGStab", 2, {**LOW_MEMORY, "ksp_type": "bcgs"}),
]


def one(json_out: str | None, petsc: dict | None = None, h: float = 0.8) -> dict | None:
    """One instrumented run in this process (collective); the budget row on rank 0."""
    import coupled_perf
    import dolfinx_solver  # noqa: F401
    import polycrack.numerics.nonlinear as nl
    import polycrack.physics.domain as sd
    import polycrack.workflow.run as cr
    from mpi4py import MPI

    at: dict[str, float] = {}
    newtons: list = []
    calls = [0]

    load = sd.load_bundle

    def load_bundle(*a, **k):
        at["imports"] = _status_mb("VmRSS")
        dom = load(*a, **k)
        at["mesh"] = _status_mb("VmRSS")
        return dom

    init = cr.CoupledProblem.__init__

    def problem_init(self, *a, **k):
        at["before_problem"] = _status_mb("VmRSS")
        init(self, *a, **k)
        at["problem"] = _status_mb("VmRSS")

    newton_init = nl.BlockNewton.__init__

    def block_newton_init(self, *a, **k):
        newton_init(self, *a, **k)
        newtons.append(self)

    residual = nl._residual_nest

    def residual_nest(*a, **k):
        calls[0] += 1
        if calls[0] == STEADY_AT_RESIDUAL:
            at["steady"] = _status_mb("VmRSS")
            at["jacobian"], at["gamg"] = _solver_mb(newtons[-1])
        at["hwm"] = _status_mb("VmHWM")  # the last one: the run's peak before the bare solve
        residual(*a, **k)

    sd.load_bundle = load_bundle
    cr.CoupledProblem.__init__ = problem_init
    nl.BlockNewton.__init__ = block_newton_init
    nl._residual_nest = residual_nest
    r = coupled_perf.run_one(h, 1, "fieldsplit", 1, petsc or {})
    comm = MPI.COMM_WORLD
    ranks = comm.gather(at, root=0)
    if comm.rank != 0:
        return None
    n = r["unknowns"]
    parts = {
        "mesh": lambda a: a["mesh"] - a["imports"],
        "problem": lambda a: a["problem"] - a["before_problem"],
        "jacobian_blocks": lambda a: a["jacobian"],
        "gamg_hierarchies": lambda a: a["gamg"],
        "rest_steady": lambda a: a["steady"] - a["problem"] - a["jacobian"] - a["gamg"],
        "transient": lambda a: a["hwm"] - a["steady"],
    }
    budget = {}
    for name, f in parts.items():
        per_rank = [round(f(a), 1) for a in ranks]
        mb = sum(per_rank)
        budget[name] = {
            "mb_per_rank": per_rank,
            "mb": round(mb, 1),
            "kb_per_unknown": round(mb * 1024 / n, 2),
        }
    above = sum(a["hwm"] - a["imports"] for a in ranks)
    row = {
        "ranks": comm.size,
        "particle_mesh_size_um": h,
        "solver.petsc_options": petsc or {},
        "unknowns": n,
        "newton": r["newton_iterations"],
        "krylov_per_newton": round(r["krylov_per_newton"], 1),
        "imports_mb_per_rank": [round(a["imports"]) for a in ranks],
        "peak_mb_per_rank": [round(a["hwm"]) for a in ranks],
        "peak_above_imports_kb_per_unknown": round(above * 1024 / n, 2),
        "budget": budget,
        "git_commit": r["git_commit"],
    }
    if json_out:
        Path(json_out).write_text(json.dumps(row, indent=1))
    return row


def table(rows: list[dict]) -> str:
    """Markdown: one column per configuration, KB per unknown (MB summed over ranks)."""
    hdr = "| part | " + " | ".join(r["label"] for r in rows)
    lines = [hdr + " |", "|---|" + "---:|" * len(rows)]
    for name in rows[0]["budget"]:
        cells = [
            f"{r['budget'][name]['kb_per_unknown']:.2f} ({r['budget'][name]['mb']:.0f} MB)"
            for r in rows
        ]
        lines.append(f"| {name.replace('_', ' ')} | " + " | ".join(cells) + " |")
    tot = [f"**{r['peak_above_imports_kb_per_unknown']:.2f}**" for r in rows]
    lines.append("| peak above imports | " + " | ".join(tot) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("mode", nargs="?", default="table", choices=("table", "one"))
    ap.add_argument("--json-out", help="(one) write the row here")
    ap.add_argument("--petsc", nargs="*", default=[], help="(one) solver.petsc_options KEY=VALUE")
    ap.add_argument("--h", type=float, default=0.8, help="particle mesh size before refinement, µm")
    a = ap.parse_args()
    if a.mode == "one":
        one(a.json_out, dict(kv.split("=", 1) for kv in a.petsc), a.h)
        return
    from coupled_perf import machine, spawn_json, write_result
    from polycrack.workflow.exports import git_commit

    rows = []
    for label, ranks, petsc in COLUMNS:
        args = [
            __file__,
            "one",
            "--h",
            str(a.h),
            "--petsc",
            *(f"{k}={v}" for k, v in petsc.items()),
        ]
        rows.append({"label": label, **spawn_json(args, ranks)})
    print(table(rows))
    doc = {
        "benchmark": "memory_budget",
        "what": __doc__.strip().splitlines()[0],
        "command": " ".join(["python", "benchmarks/perf/memory_budget.py", *sys.argv[1:]]),
        "machine": machine(),
        "git_commit": git_commit(),
        "rows": rows,
    }
    write_result("memory_budget" + ("" if a.h == 0.8 else f"_h{a.h}"), doc)


if __name__ == "__main__":
    main()
