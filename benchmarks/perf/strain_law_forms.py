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

FORMS = ("lookup", "hinges")


def main(argv: list[str] | None = None) -> None:
    from assembly_compare import parse_args

    a = parse_args(__doc__, argv)
    import dolfinx_solver  # noqa: F401  (MPI before dolfinx)
    from assembly_compare import compare, write_result
    from mpi4py import MPI
    from polycrack.physics.mechanics import StrainLawUFL
    from polycrack.problems.coupled import CoupledProblem

    def problem_with(form: str):
        class WithForm(CoupledProblem):
            def _mechanics_model(self):
                model = super()._mechanics_model()
                model.law = StrainLawUFL(model.law.lattice, ufl_form=form)
                return model

        return WithForm

    comm = MPI.COMM_WORLD
    rows, info = compare({f: problem_with(f) for f in FORMS}, a.refine, a.repeat, comm, "ufl_form")
    times = info["times"]
    ratio = {k: times[FORMS[0]][k] / times[FORMS[1]][k] for k in ("residual_s", "jacobian_s")}
    if comm.rank == 0:
        print(
            f"lookup / hinges: residual {ratio['residual_s']:.2f}, "
            f"Jacobian {ratio['jacobian_s']:.2f}"
        )
    write_result(
        "strain_law_forms",
        __doc__,
        a,
        comm,
        rows,
        cells=info["cells"],
        ratio_lookup_over_hinges=ratio,
    )


if __name__ == "__main__":
    main()
