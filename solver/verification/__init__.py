"""Closed-form verification cases (docs/model.md section 6), shipped with the package.

Each module holds pytest tests; those marked ``verification`` record their error and tolerance
through the ``verification`` fixture (:mod:`polycrack.verification.fixtures`). ``polycrack verify``
runs them from the installed package; the repository's ``tests/test_verify_*.py`` collect them too.
"""

#: modules holding verification cases (run by ``polycrack verify``)
CASE_MODULES: tuple[str, ...] = (
    "adapt",
    "electrochem",
    "fracture",
    "mechanics",
    "quasistatic",
    "spm1d",
)
