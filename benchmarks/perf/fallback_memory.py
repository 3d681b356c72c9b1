"""Peak memory of a step that falls back to the staggered solver, with and without releasing the
idle solver family (``CoupledProblem.release_idle``).

    mpirun -n 2 python benchmarks/perf/fallback_memory.py          # release (the default)
    mpirun -n 2 python benchmarks/perf/fallback_memory.py --keep   # both families kept
    python benchmarks/perf/fallback_memory.py --table              # both, one process each

The demo geometry at h = 0.8 µm refined once (167 k unknowns) and one 1C step as in
``coupled_perf.py one``, with the monolithic Newton capped at one iteration
(``solver.petsc_options: {snes_max_it: 1}``) so that it fails twice and the step is solved
staggered (x, V by LU; u and φ by GMRES + GAMG). ``--table`` runs both variants under
``mpirun -n 2`` and writes ``benchmarks/results/fallback_memory_np2.json``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def one(keep: bool) -> dict:
    import coupled_perf
    import dolfinx_solver  # noqa: F401
    import polycrack.problems.coupled as sc

    if keep:
        init = sc.CoupledProblem.__init__

        def init_keep(self, *a, **k):
            init(self, *a, **k)
            self.release_idle = False

        sc.CoupledProblem.__init__ = init_keep
    r = coupled_perf.run_one(0.8, 1, "fieldsplit", 1, {"snes_max_it": 1})
    m = r["memory"]
    return {
        "variant": "both families kept" if keep else "idle family released",
        "unknowns": r["unknowns"],
        "ranks": r["ranks"],
        "monolithic_failures_then_staggered_solves": r["staggered_solves"],
        "peak_mb_all_ranks": round(m["peak_rss_before_bare_mb_all_ranks"]),
        "kb_per_unknown_above_imports": round(m["peak_minus_imports_kb_per_unknown"], 2),
        "run_s": round(r["wall_s"]["run"], 1),
        "loadavg_end": r["loadavg_end"],
        "git_commit": r["git_commit"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--keep", action="store_true", help="keep both solver families")
    ap.add_argument("--table", action="store_true", help="run both variants on 2 ranks")
    ap.add_argument("--json-out", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if not a.table:
        row = one(a.keep)
        from mpi4py import MPI

        if MPI.COMM_WORLD.rank == 0:
            print(json.dumps(row))
            if a.json_out:
                Path(a.json_out).write_text(json.dumps(row))
        return
    from coupled_perf import spawn_json, write_result

    rows = []
    for keep in (False, True):
        r = spawn_json([__file__, *(["--keep"] if keep else [])], 2)
        rows.append(r)
        print(
            f"{r['variant']:24s} {r['peak_mb_all_ranks']:6d} MB  {r['kb_per_unknown_above_imports']} KB/unknown"
        )
    doc = {
        "benchmark": "fallback_memory_np2",
        "what": __doc__.strip().split("\n\n")[0].replace("\n", " "),
        "machine": {"node": os.uname().nodename, "cpus": os.cpu_count()},
        "rows": rows,
    }
    write_result("fallback_memory_np2", doc)


if __name__ == "__main__":
    main()
