"""The quasi-static verification cases, shipped in the package (polycrack/verification/quasistatic.py).

They live in the package so that ``polycrack verify`` runs them from an installed wheel; this
module only makes the repository's test run collect them.
"""

from polycrack.verification.quasistatic import *  # noqa: F403
