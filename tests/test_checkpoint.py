"""Checkpoints: exact round trip, also onto another partition (COMM_WORLD -> COMM_SELF)."""

from __future__ import annotations

import basix.ufl
import dolfinx_solver  # noqa: F401
import numpy as np
import pytest
import ufl
from dolfinx import fem, mesh
from mpi4py import MPI
from polycrack.errors import InputError
from polycrack.workflow import checkpoint

pytestmark = pytest.mark.mpi


def _fields(comm):
    m = mesh.create_box(comm, [[0, 0, 0], [3.0, 2.0, 1.0]], [5, 4, 3], mesh.CellType.tetrahedron)
    P1 = fem.functionspace(m, ("Lagrange", 1))
    V3 = fem.functionspace(m, ("Lagrange", 2, (3,)))
    Q = fem.functionspace(
        m, basix.ufl.quadrature_element(m.basix_cell(), value_shape=(), scheme="default", degree=2)
    )
    R = fem.functionspace(m, basix.ufl.real_element(m.basix_cell(), dtype=np.float64))
    D0 = fem.functionspace(m, ("DG", 0))
    spaces = (("x", P1), ("u", V3), ("H", Q), ("V", R), ("g", D0), ("x_old", P1), ("u_old", V3))
    fs = {n: fem.Function(S) for n, S in spaces}
    return m, fs


def _fill(m, fs):
    fs["x"].interpolate(lambda p: np.sin(p[0]) + p[1] * p[2])
    fs["u"].interpolate(lambda p: np.vstack([p[0] ** 2, p[1] * p[0], np.cos(p[2])]))
    fs["g"].interpolate(lambda p: p[0] + 10 * p[1] + 100 * p[2])
    pts = fs["H"].function_space.ufl_element().custom_quadrature()[0]
    X = ufl.SpatialCoordinate(m)
    nc = m.topology.index_map(3).size_local + m.topology.index_map(3).num_ghosts
    vals = fem.Expression(X[0] * X[1] + X[2] ** 3, pts).eval(m, np.arange(nc, dtype=np.int32))
    fs["H"].x.array[fs["H"].function_space.dofmap.list] = vals.reshape(nc, -1)
    fs["V"].x.array[:] = 4.123456789
    fs["x_old"].interpolate(lambda p: np.cos(p[1]) - p[0])  # shares x's space (positions once)
    fs["u_old"].interpolate(lambda p: np.vstack([p[2], -p[1], p[0] * p[2]]))
    for f in fs.values():
        f.x.scatter_forward()  # ghosts take the owner's value (interpolation differs by round-off)


def test_round_trip_same_and_other_partition(mpi_tmp_path):
    comm = MPI.COMM_WORLD
    m, fs = _fields(comm)
    _fill(m, fs)
    path = checkpoint.save(mpi_tmp_path / "ck.npz", fs, {"step": 7, "t": 1.5}, comm)
    # same partition, fresh functions
    m2, fs2 = _fields(comm)
    state = checkpoint.load(path, fs2, comm)
    assert state == {"step": 7, "t": 1.5}
    with np.load(path) as data:  # positions stored once per function space
        assert "x_old__x" not in data and "u_old__x" not in data and "x_old__v" in data
    for name in fs:
        np.testing.assert_array_equal(fs2[name].x.array, fs[name].x.array, err_msg=name)
    # another partition: the whole mesh on every rank
    m3, fs3 = _fields(MPI.COMM_SELF)
    checkpoint.load(path, fs3, MPI.COMM_SELF)
    _, ref = _fields(MPI.COMM_SELF)
    _fill(m3, ref)
    for name in fs:
        np.testing.assert_allclose(fs3[name].x.array, ref[name].x.array, rtol=0, atol=1e-14)


def test_wrong_mesh_is_refused(mpi_tmp_path):
    comm = MPI.COMM_WORLD
    m, fs = _fields(comm)
    _fill(m, fs)
    path = checkpoint.save(mpi_tmp_path / "ck.npz", {"x": fs["x"]}, {}, comm)
    other = mesh.create_unit_cube(comm, 3, 3, 3)
    f = fem.Function(fem.functionspace(other, ("Lagrange", 1)))
    with pytest.raises(InputError, match="another mesh"):
        checkpoint.load(path, {"x": f}, comm)
    with pytest.raises(InputError, match="no field 'y'"):
        checkpoint.load(path, {"y": f}, comm)
