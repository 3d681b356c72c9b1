"""The adaptive-refinement verification case, shipped in the package (polycrack/verification/adapt.py).

It lives in the package so that ``polycrack verify`` runs it from an installed wheel; this module
only makes the repository's test run collect it.
"""

from polycrack.verification.adapt import *  # noqa: F403
