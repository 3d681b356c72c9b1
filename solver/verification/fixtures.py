"""Pytest fixtures of the verification cases (a pytest plugin: ``-p polycrack.verification.fixtures``).

``polycrack verify`` and the repository's ``tests/conftest.py`` both load them, so the verification
cases run the same way from a source checkout and from an installed wheel.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import dolfinx_solver  # noqa: F401  (must precede dolfinx / petsc4py)
import pytest
from mpi4py import MPI


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


@pytest.fixture
def verification(request):
    """``verification(case, error, tolerance, **info)``: assert ``error <= tolerance`` and record it.

    ``polycrack verify`` runs the tests marked ``verification`` and prints what was recorded
    (one JSON line per call, to the file in ``$POLYCRACK_VERIFY_OUT``).
    """

    def record(case: str, error: float, tolerance: float, **info) -> None:
        error, tolerance = float(error), float(tolerance)
        out = os.environ.get("POLYCRACK_VERIFY_OUT")
        if out and MPI.COMM_WORLD.rank == 0:
            row = {
                "case": case,
                "error": error,
                "tolerance": tolerance,
                "passed": error <= tolerance,
                "ranks": MPI.COMM_WORLD.size,
                "test": request.node.nodeid,
                **info,
            }
            with open(out, "a") as fh:
                fh.write(json.dumps(row) + "\n")
        assert error <= tolerance, f"{case}: error {error:.3e} > tolerance {tolerance:.3e}"

    return record
