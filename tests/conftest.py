"""Shared pytest fixtures. ``import dolfinx_solver`` first: it loads MPI before dolfinx/petsc4py."""

from __future__ import annotations

from pathlib import Path

import dolfinx_solver  # noqa: F401  (must precede dolfinx / petsc4py)
from polycrack.verification.fixtures import mpi_tmp_path, verification  # noqa: F401

REPO = Path(__file__).resolve().parent.parent
