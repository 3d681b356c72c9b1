"""Mid-plane renders: a P1 and a DG0 field on 1 and 2 ranks give a PNG on rank 0."""

from __future__ import annotations

import dolfinx_solver  # noqa: F401
import numpy as np
import pytest
from dolfinx import fem, mesh
from mpi4py import MPI
from polycrack.post.render import midplane_png

pytestmark = pytest.mark.mpi


@pytest.mark.parametrize("degree", [1, 0])
def test_midplane_png(mpi_tmp_path, degree):
    comm = MPI.COMM_WORLD
    m = mesh.create_box(comm, [[-1, -1, -1], [1, 1, 1]], [6, 6, 6], mesh.CellType.tetrahedron)
    V = fem.functionspace(m, ("DG" if degree == 0 else "Lagrange", degree))
    f = fem.Function(V, name="phi")
    f.interpolate(lambda p: np.exp(-4 * (p[0] ** 2 + p[1] ** 2)))
    out = midplane_png(f, mpi_tmp_path / f"phi{degree}.png", title="test", clim=(0, 1))
    if comm.rank == 0:
        assert out is not None and out.stat().st_size > 5_000
        from PIL import Image

        img = np.asarray(Image.open(out).convert("L"), dtype=float)
        assert img.std() > 10  # not a blank picture
    else:
        assert out is None
