"""The MPI + DOLFINx stack itself: a global integral is the same on 1 and N ranks."""

from __future__ import annotations

import dolfinx_solver  # noqa: F401
import numpy as np
import pytest
import ufl
from dolfinx import fem, mesh
from mpi4py import MPI

pytestmark = pytest.mark.mpi


def test_global_integrals_rank_independent():
    comm = MPI.COMM_WORLD
    m = mesh.create_box(comm, [[0, 0, 0], [2.0, 1.0, 0.5]], [6, 4, 3], mesh.CellType.tetrahedron)
    x = ufl.SpatialCoordinate(m)
    vol = comm.allreduce(fem.assemble_scalar(fem.form(1.0 * ufl.dx(domain=m))), op=MPI.SUM)
    mom = comm.allreduce(fem.assemble_scalar(fem.form(x[0] * x[1] * ufl.dx)), op=MPI.SUM)
    area = comm.allreduce(fem.assemble_scalar(fem.form(1.0 * ufl.ds(domain=m))), op=MPI.SUM)
    assert vol == pytest.approx(1.0, rel=1e-12)
    assert mom == pytest.approx(2.0**2 / 2 * 1.0**2 / 2 * 0.5, rel=1e-12)
    assert area == pytest.approx(2 * (2.0 + 1.0 + 0.5), rel=1e-12)
    n_cells = comm.allreduce(m.topology.index_map(3).size_local, op=MPI.SUM)
    assert n_cells == 6 * 4 * 3 * 6
    assert np.isfinite(vol)
