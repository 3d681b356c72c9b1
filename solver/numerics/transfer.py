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
- Quadrature spaces (the history field H): every quadrature point of a new cell gets the largest
  old value of the old cell that contains the new cell's midpoint (the parent on a nested
  refinement). The transfer never lowers the history anywhere a parent had it, and it spreads
  the parent's maximum over its children: the refined state is never less damaged than the old.
- The one-DOF real space (the cell voltage): the value itself.
"""

from __future__ import annotations

import dolfinx_solver  # noqa: F401  (MPI before dolfinx)
import numpy as np
from dolfinx import fem
from mpi4py import MPI

__all__ = ["transfer", "space_kind", "nonmatching"]


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


def _interpolate(src: fem.Function, dst: fem.Function, padding: float) -> None:
    cells = _cells(dst.function_space.mesh)
    data = fem.create_interpolation_data(dst.function_space, src.function_space, cells, padding)
    dst.interpolate_nonmatching(src, cells, data)
    dst.x.scatter_forward()


def nonmatching(src: fem.Function, dst: fem.Function, padding: float) -> int:
    """``dst`` <- ``src`` on another mesh in two passes (collective): the old cell that contains
    each new point wherever there is one, then for the points outside the old mesh an old cell
    within ``padding``. One pass with a large padding may take a neighbour of the containing
    cell (measured on a quadratic field in tests/test_regrid.py).

    Returns:
        the global number of new points found in no old cell even with ``padding`` (they are 0).
    """
    _interpolate(src, dst, EXACT_PADDING)
    one, found = fem.Function(src.function_space), fem.Function(dst.function_space)
    one.x.array[:] = 1.0
    _interpolate(one, found, EXACT_PADDING)
    outside = found.x.array < 0.5
    comm = dst.function_space.mesh.comm
    if comm.allreduce(int(np.count_nonzero(outside)), op=MPI.SUM) == 0:
        return 0
    near = fem.Function(dst.function_space)
    _interpolate(src, near, padding)
    dst.x.array[outside] = near.x.array[outside]
    _interpolate(one, found, padding)
    bs = dst.function_space.dofmap.index_map_bs
    n = dst.function_space.dofmap.index_map.size_local * bs
    return comm.allreduce(int(np.count_nonzero(found.x.array[:n] < 0.5)), op=MPI.SUM)


def _check(lost: int, padding: float) -> None:
    if lost:
        raise RuntimeError(
            f"field transfer: {lost} new points lie farther than {padding:g} µm from the old "
            "mesh (they would be 0)"
        )


def transfer(src: fem.Function, dst: fem.Function, padding: float = 0.5) -> None:
    """Fill ``dst`` (on the new mesh) from ``src`` (on the old mesh); see the module docstring.

    Args:
        src: the function on the old mesh.
        dst: a function of the same kind of space on the new mesh (overwritten).
        padding: distance (mesh units, µm) within which a new point outside the old mesh is
            still given the value of the nearest old cell.
    """
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
        _check(nonmatching(src, dst, padding), padding)
        return
    # quadrature: parent maximum through DG0 on both meshes
    Vs, Vd = src.function_space, dst.function_space
    d0_src = fem.Function(fem.functionspace(Vs.mesh, ("DG", 0)))
    qdofs = Vs.dofmap.list  # (cells, points per cell)
    cells = _cells(Vs.mesh)
    d0_src.x.array[d0_src.function_space.dofmap.list[cells, 0]] = src.x.array[qdofs[cells]].max(
        axis=1
    )
    d0_src.x.scatter_forward()
    d0_dst = fem.Function(fem.functionspace(Vd.mesh, ("DG", 0)))
    _check(nonmatching(d0_src, d0_dst, padding), padding)
    cells = _cells(Vd.mesh)
    vals = d0_dst.x.array[d0_dst.function_space.dofmap.list[cells, 0]]
    dst.x.array[Vd.dofmap.list[cells]] = vals[:, None]
    dst.x.scatter_forward()
