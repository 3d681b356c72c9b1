"""The strain law's UFL form: Jacobian and residual assembly time and the values.

    python benchmarks/perf/strain_law_forms.py                 # demo mesh (refine 0)
    python benchmarks/perf/strain_law_forms.py --refine 1

One process: the coupled demo problem (examples/demo.yaml geometry, fieldsplit, l = 0.8 µm) is
built once per form of the lattice-strain law (``StrainLawUFL(ufl_form=...)``: ``lookup``, the
binary search of conditionals, and ``hinges``, the sum of one ``max(x - x_k, 0)`` per knot),
the problems are put at the same state (assembly_compare.same_state) and their residual and
Jacobian are assembled ``--repeat`` times round robin, medians, max over ranks. The values are
compared with the first form's (max relative difference over the matrix blocks and the
residual). Writes ``benchmarks/results/strain_law_forms_<tag>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FORMS = ("lookup", "hinges")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--refine", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--tag", default=None)
    a = ap.parse_args(argv)

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
    from polycrack.physics.mechanics import StrainLawUFL
    from polycrack.problems.coupled import CoupledProblem
    from polycrack.workflow.exports import git_commit

    def problem_with(form: str):
        class WithForm(CoupledProblem):
            def _mechanics_model(self):
                model = super()._mechanics_model()
                model.law = StrainLawUFL(model.law.lattice, ufl_form=form)
                return model

        return WithForm

    comm = MPI.COMM_WORLD
    dom = demo_domain(a.refine, comm)
    rc = resolve_case(demo_case(a.refine), None)
    problems, builds = {}, {}
    for form in FORMS:
        t0 = time.perf_counter()
        problems[form] = problem_with(form)(dom, rc)
        builds[form] = time.perf_counter() - t0
    same_state(problems)
    times = time_round_robin(problems, a.repeat, comm)
    diffs = max_rel_diff(problems, comm)
    rows = []
    for form in FORMS:
        rows.append(
            {"ufl_form": form, "build_s": builds[form], **times[form], "max_rel_diff": diffs[form]}
        )
        if comm.rank == 0:
            r = rows[-1]
            print(
                f"{form:8s}: build {r['build_s']:.1f} s, F {r['residual_s']:.3f} s, "
                f"J {r['jacobian_s']:.3f} s, max difference vs {FORMS[0]} (relative to the "
                f"block's largest entry) {diffs[form]:.3g}",
                flush=True,
            )
    ratio = {k: times[FORMS[0]][k] / times[FORMS[1]][k] for k in ("residual_s", "jacobian_s")}
    for pb in problems.values():
        pb.close()
    if comm.rank == 0:
        print(
            f"lookup / hinges: residual {ratio['residual_s']:.2f}, "
            f"Jacobian {ratio['jacobian_s']:.2f}"
        )
        doc = {
            "benchmark": "strain_law_forms",
            "description": __doc__.split("\n\n")[0],
            "refine_levels": a.refine,
            "ranks": comm.size,
            "cells": dom.mesh.topology.index_map(3).size_global,
            "rows": rows,
            "ratio_lookup_over_hinges": ratio,
            "git_commit": git_commit(),
            "machine": machine(),
            "loadavg_end": os.getloadavg(),
        }
        tag = a.tag or f"r{a.refine}_np{comm.size}"
        out = REPO / "benchmarks" / "results" / f"strain_law_forms_{tag}.json"
        out.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
