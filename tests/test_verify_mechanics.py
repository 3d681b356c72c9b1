"""The mechanics verification cases, shipped in the package (polycrack/verification/mechanics.py).

They live in the package so that ``polycrack verify`` runs them from an installed wheel; this
module only makes the repository's test run collect them.
"""

from polycrack.verification.mechanics import *  # noqa: F403
