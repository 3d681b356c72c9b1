"""Move finite-element functions from one mesh of a domain onto another (e.g. a refined one).

Used when a run continues on a new mesh (adaptive refinement, docs/adaptivity.md): every primary
field, every stored BDF state and the history field go through :func:`transfer`. The two meshes
may be partitioned differently; everything here is collective.

- Lagrange and DG spaces: :meth:`dolfinx.fem.Function.interpolate_nonmatching`. On a nested
  refinement a P1 field is carried over exactly, except at the new vertices that refinement pushes
  onto the curved particle or binder surface (outside the old chords by about h²/8R): they take
  the linear extension of an old cell within ``padding``. Points inside the old mesh always take
  the cell that contains them (two passes, see :func:`nonmatching`). A point farther than
  ``padding`` from the old mesh is an error (on every rank), never a silent 0.
- Quadrature spaces (the history field H), by ``quadrature_rule``; the parent of a new cell is
  the old cell that contains its midpoint (exact on a nested refinement):

  - ``parent_max``: every quadrature point of a new cell gets the largest value of its parent.
    The history is never lowered anywhere a parent had it, and the parent's maximum spreads over
    its children: on a crack-like H at h = 2l that raises the integral of H by 45 %
    (benchmarks/results/adapt_refine.json).
  - ``fit``: the linear function through the parent's values, evaluated at the new point and
    clipped to the parent's [min, max]: keeps the gradient inside the parent, never leaves the
    parent's range (0.2 % on the same H), but lowers points below the parent's maximum.
- The one-DOF real space (the cell voltage): the value itself.
"""

from __future__ import annotations

import basix
import dolfinx_solver  # noqa: F401  (MPI before dolfinx)
import numpy as np
from dolfinx import fem, geometry
from mpi4py import MPI

__all__ = ["transfer", "space_kind", "nonmatching", "QUADRATURE_RULES"]

#: rules for quadrature data (the history field), see the module docstring
QUADRATURE_RULES = ("parent_max", "fit")


def space_kind(V: fem.FunctionSpace) -> str:
    """``"real"``, ``"quadrature"`` or ``"nodal"`` (Lagrange / DG)."""
    name = type(V.ufl_element()).__name__
    if name == "_RealElement":
        return "real"
    if name == "_QuadratureElement":
        return "quadrature"
    return "nodal"


def _cells(msh) -> np.ndarray:
    imap = msh.topology.index_map(msh.topology.dim)
    return np.arange(imap.size_local + imap.num_ghosts, dtype=np.int32)


#: padding (mesh units) of the first pass: only points inside (or on) an old cell are found
EXACT_PADDING = 1e-12


def _interpolate(
    src: fem.Function,
    dst: fem.Function,
    padding: float,
    cache: dict | None,
    cells: np.ndarray | None = None,
) -> None:
    """``dst`` <- ``src`` on ``cells`` of dst's mesh (default: all local cells). The point
    search depends only on the two meshes, dst's interpolation points, the cells and the
    padding: it is cached under those, so functions of different spaces of the same element on
    the same meshes share it."""
    Vd, Vs = dst.function_space, src.function_space
    cells = _cells(Vd.mesh) if cells is None else cells
    key = (
        id(Vd.mesh),
        Vd.element.interpolation_points.tobytes(),
        id(Vs.mesh),
        padding,
        hash(cells.tobytes()),
    )
    if cache is not None and key in cache:
        data = cache[key][2]
    else:
        data = fem.create_interpolation_data(Vd, Vs, cells, padding)
        if cache is not None:  # the meshes are kept alive with their data: ids stay unique
            cache[key] = (Vd.mesh, Vs.mesh, data)
    dst.interpolate_nonmatching(src, cells, data)
    dst.x.scatter_forward()


def _cells_with(V: fem.FunctionSpace, entries: np.ndarray) -> np.ndarray:
    """Local cells with at least one DOF among the flagged array ``entries`` (blocked layout)."""
    bs = V.dofmap.index_map_bs
    nodes = entries.reshape(-1, bs).any(axis=1)
    cells = _cells(V.mesh)
    return cells[nodes[V.dofmap.list[cells]].any(axis=1)].astype(np.int32)


def _owners(Vs: fem.FunctionSpace, points: np.ndarray, padding: float, cache: dict):
    """Ownership of ``points`` in Vs's mesh (cached per point set, source mesh and padding):
    (owner rank per point or -1, received points' sender ranks, points and local cells)."""
    key = ("points", hash(points.tobytes()), points.shape, id(Vs.mesh), padding)
    if key not in cache:
        data = geometry.determine_point_ownership(Vs.mesh, points, padding)
        cache[key] = (
            Vs.mesh,
            np.asarray(data.src_owner, dtype=np.int32),
            np.asarray(data.dest_owner, dtype=np.int32),
            np.asarray(data.dest_points, dtype=np.float64).reshape(-1, 3),
            np.asarray(data.dest_cells, dtype=np.int32),
        )
    return cache[key][1:]


def _eval_points(
    src: fem.Function, points: np.ndarray, padding: float, cache: dict
) -> tuple[np.ndarray, np.ndarray]:
    """``src`` at ``points`` of this rank, evaluated by the ranks whose cells contain them
    (collective). Returns (values (n, value size), found mask)."""
    comm = src.function_space.mesh.comm
    owner, senders, dpts, dcells = _owners(src.function_space, points, padding, cache)
    vs = int(np.prod(src.function_space.value_shape, dtype=int))
    vals = src.eval(dpts, dcells).reshape(-1, vs) if dcells.size else np.zeros((0, vs))
    # the owner received each rank's points in that rank's order; the values go back in it
    send = [vals[senders == r] for r in range(comm.size)]
    recv = comm.alltoall(send)
    out = np.zeros((points.shape[0], vs))
    for r in range(comm.size):
        out[owner == r] = recv[r]
    return out, owner >= 0


def _nodal(src: fem.Function, dst: fem.Function, padding: float, cache: dict) -> int:
    """Two-pass transfer into a Lagrange / DG space, one point per owned node; returns the
    global number of nodes not found within ``padding``."""
    Vd = dst.function_space
    comm = Vd.mesh.comm
    n = Vd.dofmap.index_map.size_local
    key = ("coords", id(Vd.mesh), Vd.element.interpolation_points.tobytes())
    if key not in cache:
        cache[key] = (Vd.mesh, np.ascontiguousarray(Vd.tabulate_dof_coordinates()[:n]))
    pts = cache[key][1]
    vals, found = _eval_points(src, pts, EXACT_PADDING, cache)
    outside = np.flatnonzero(~found)
    lost = 0
    if comm.allreduce(outside.size, op=MPI.SUM):
        near, ok = _eval_points(src, np.ascontiguousarray(pts[outside]), padding, cache)
        vals[outside] = near
        lost = comm.allreduce(int(np.count_nonzero(~ok)), op=MPI.SUM)
    bs = Vd.dofmap.index_map_bs
    dst.x.array[: n * bs] = vals.reshape(n, bs).ravel()
    dst.x.scatter_forward()
    return lost


def nonmatching(
    src: fem.Function, dst: fem.Function, padding: float, cache: dict | None = None
) -> int:
    """``dst`` <- ``src`` on another mesh in two passes (collective): the old cell that contains
    each new point wherever there is one, then for the points outside the old mesh an old cell
    within ``padding`` (searched only for those points). One pass with a large padding may take
    a neighbour of the containing cell (measured on a quadratic field in tests/test_regrid.py).

    A continuous Lagrange or a DG0 destination is filled node by node: each owned node's point
    is located once (:func:`dolfinx.geometry.determine_point_ownership`) and the old function
    is evaluated there by the rank that owns the old cell. Other destinations (quadrature, DG of
    degree ≥ 1, whose nodes on a cell's boundary belong to that cell) go through
    :meth:`dolfinx.fem.Function.interpolate_nonmatching` (every cell's points: a node shared by
    20 tetrahedra would be located 20 times).

    ``cache``: a dict kept across calls between the same two meshes; the point search (the
    costly part) is then done once per point set and padding, not for every function.

    Returns:
        the global number of new points found in no old cell even with ``padding`` (they are 0).
    """
    cache = {} if cache is None else cache
    el = dst.function_space.ufl_element()
    if space_kind(dst.function_space) == "nodal" and (
        not el.discontinuous or el.embedded_superdegree == 0
    ):
        return _nodal(src, dst, padding, cache)
    _interpolate(src, dst, EXACT_PADDING, cache)
    one, found = fem.Function(src.function_space), fem.Function(dst.function_space)
    one.x.array[:] = 1.0
    _interpolate(one, found, EXACT_PADDING, cache)
    outside = found.x.array < 0.5
    comm = dst.function_space.mesh.comm
    if comm.allreduce(int(np.count_nonzero(outside)), op=MPI.SUM) == 0:
        return 0
    cells = _cells_with(dst.function_space, outside)
    near = fem.Function(dst.function_space)
    _interpolate(src, near, padding, cache, cells)
    dst.x.array[outside] = near.x.array[outside]
    found.x.array[:] = 0.0
    _interpolate(one, found, padding, cache, cells)
    found.x.array[~outside] = 1.0
    bs = dst.function_space.dofmap.index_map_bs
    n = dst.function_space.dofmap.index_map.size_local * bs
    return comm.allreduce(int(np.count_nonzero(found.x.array[:n] < 0.5)), op=MPI.SUM)


def _check(lost: int, padding: float) -> None:
    if lost:
        raise RuntimeError(
            f"field transfer: {lost} new points lie farther than {padding:g} µm from the old "
            "mesh (they would be 0)"
        )


def _dg0(msh, cache: dict) -> fem.FunctionSpace:
    key = ("DG0", id(msh))
    if key not in cache:
        cache[key] = (msh, fem.functionspace(msh, ("DG", 0)))
    return cache[key][1]


def _per_cell(V: fem.FunctionSpace, vals: np.ndarray, cache: dict) -> fem.Function:
    """A DG0 function on V's mesh with one value per local cell (ghosts updated)."""
    d0 = fem.Function(_dg0(V.mesh, cache))
    d0.x.array[d0.function_space.dofmap.list[_cells(V.mesh), 0]] = vals
    d0.x.scatter_forward()
    return d0


def _parent(d0_src: fem.Function, Vd: fem.FunctionSpace, padding: float, cache: dict):
    """Per local new cell, the value of ``d0_src`` at its midpoint (the parent's value)."""
    d0 = fem.Function(_dg0(Vd.mesh, cache))
    _check(nonmatching(d0_src, d0, padding, cache), padding)
    return d0.x.array[d0.function_space.dofmap.list[_cells(Vd.mesh), 0]]


def _quadrature(src, dst, padding: float, rule: str, cache: dict) -> None:
    Vs, Vd = src.function_space, dst.function_space
    vals = src.x.array[Vs.dofmap.list[_cells(Vs.mesh)]]  # (old cells, points)
    hi = _parent(_per_cell(Vs, vals.max(axis=1), cache), Vd, padding, cache)
    new = np.repeat(hi[:, None], Vd.dofmap.list.shape[1], axis=1)
    if rule == "fit":
        lo = _parent(_per_cell(Vs, vals.min(axis=1), cache), Vd, padding, cache)
        msh = Vs.mesh
        P1 = fem.functionspace(msh, ("DG", 1))
        el = basix.create_element(basix.ElementFamily.P, msh.basix_cell(), 1, discontinuous=True)
        B = el.tabulate(0, Vs.element.interpolation_points)[0, :, :, 0]  # (points, basis)
        fit = fem.Function(P1)
        coef = np.linalg.lstsq(B, vals.T, rcond=None)[0].T  # (cells, basis)
        fit.x.array[P1.dofmap.list[_cells(msh)]] = coef
        fit.x.scatter_forward()
        at = fem.Function(Vd)
        _check(nonmatching(fit, at, padding, cache), padding)
        new = np.clip(at.x.array[Vd.dofmap.list[_cells(Vd.mesh)]], lo[:, None], hi[:, None])
    dst.x.array[Vd.dofmap.list[_cells(Vd.mesh)]] = new
    dst.x.scatter_forward()


def transfer(
    src: fem.Function,
    dst: fem.Function,
    padding: float = 0.5,
    quadrature_rule: str = "parent_max",
    cache: dict | None = None,
) -> None:
    """Fill ``dst`` (on the new mesh) from ``src`` (on the old mesh); see the module docstring.

    Args:
        src: the function on the old mesh.
        dst: a function of the same kind of space on the new mesh (overwritten).
        padding: distance (mesh units, µm) within which a new point outside the old mesh is
            still given the value of the nearest old cell.
        quadrature_rule: ``parent_max`` or ``fit`` for quadrature data (the history field).
        cache: a dict shared by the transfers between the same two meshes (see
            :func:`nonmatching`).
    """
    if quadrature_rule not in QUADRATURE_RULES:
        raise ValueError(
            f"unknown history transfer rule {quadrature_rule!r} ({', '.join(QUADRATURE_RULES)})"
        )
    cache = {} if cache is None else cache
    kind = space_kind(src.function_space)
    if kind != space_kind(dst.function_space):
        raise ValueError(
            f"cannot transfer {kind} data into a {space_kind(dst.function_space)} space"
        )
    if kind == "real":
        comm = dst.function_space.mesh.comm
        dst.x.array[:] = comm.bcast(float(src.x.array[0]) if comm.rank == 0 else None, root=0)
        return
    if kind == "nodal":
        _check(nonmatching(src, dst, padding, cache), padding)
        return
    _quadrature(src, dst, padding, quadrature_rule, cache)
