"""Shared pytest fixtures. ``import dolfinx_solver`` first: it loads MPI before dolfinx/petsc4py."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import dolfinx_solver  # noqa: F401  (must precede dolfinx / petsc4py)
import pytest
from mpi4py import MPI

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def mpi_tmp_path():
    """A temporary directory shared by all ranks of COMM_WORLD (created on rank 0, removed after)."""
    comm = MPI.COMM_WORLD
    path = tempfile.mkdtemp(prefix="polycrack-") if comm.rank == 0 else None
    path = Path(comm.bcast(path, root=0))
    yield path
    comm.barrier()
    if comm.rank == 0:
        shutil.rmtree(path, ignore_errors=True)
