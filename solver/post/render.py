"""Off-screen pyvista renders of a field on a mid-plane cut (works under MPI: rank 0 draws).

The field's mesh pieces are gathered to rank 0 (a render needs the whole cut, and the cut of a
particle mesh is small), assembled into one VTK grid, sliced by the plane z = z0 through the
particle centre, and written to PNG. P1 fields become point data, DG0 fields cell data.
"""

from __future__ import annotations

import os
from pathlib import Path

import dolfinx_solver  # noqa: F401
import numpy as np
from dolfinx import fem, plot

os.environ.setdefault("PYVISTA_OFF_SCREEN", "true")


def _gather_grid(f: fem.Function):
    """(cells, celltypes, points, point_or_cell values, is_cell_data) on rank 0, None elsewhere."""
    V = f.function_space
    msh = V.mesh
    comm = msh.comm
    tdim = msh.topology.dim
    n_owned = msh.topology.index_map(tdim).size_local
    degree = V.ufl_element().embedded_superdegree
    cell_data = degree == 0
    if cell_data:
        topo, types, geom = plot.vtk_mesh(msh, tdim, np.arange(n_owned, dtype=np.int32))
        values = f.x.array[V.dofmap.list[:n_owned, 0]]
    else:
        topo, types, geom = plot.vtk_mesh(V)
        values = f.x.array.copy()
        ncell = len(types)
        topo = topo.reshape(ncell, -1)[:n_owned].reshape(-1)
        types = types[:n_owned]
    parts = comm.gather((topo, types, geom, values), root=0)
    if comm.rank != 0:
        return None
    cells, ctypes, pts, vals = [], [], [], []
    offset = 0
    for topo_r, types_r, geom_r, vals_r in parts:
        t = topo_r.reshape(len(types_r), -1).copy()
        t[:, 1:] += offset
        cells.append(t.reshape(-1))
        ctypes.append(types_r)
        pts.append(geom_r)
        vals.append(vals_r)
        offset += len(geom_r)
    return (
        np.concatenate(cells),
        np.concatenate(ctypes),
        np.concatenate(pts),
        np.concatenate(vals),
        cell_data,
    )


def midplane_png(
    f: fem.Function,
    path: Path | str,
    *,
    title: str = "",
    label: str | None = None,
    clim: tuple[float, float] | None = None,
    cmap: str = "inferno",
    z0: float | None = None,
) -> Path | None:
    """Render ``f`` on the plane z = z0 (default: centre of the mesh) to ``path``; rank 0 writes.

    Collective. Returns the path on rank 0, ``None`` on the other ranks.
    """
    data = _gather_grid(f)
    if data is None:
        return None
    import pyvista as pv

    cells, ctypes, pts, vals, cell_data = data
    grid = pv.UnstructuredGrid(cells, ctypes, pts)
    name = label or f.name
    if cell_data:
        grid.cell_data[name] = vals
    else:
        grid.point_data[name] = vals
    centre = pts.mean(axis=0) if z0 is None else np.array([*pts.mean(axis=0)[:2], z0])
    cut = grid.slice(normal="z", origin=centre)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    plotter = pv.Plotter(off_screen=True, window_size=(800, 700))
    plotter.add_mesh(
        cut, scalars=name, cmap=cmap, clim=clim, show_edges=False, scalar_bar_args={"title": name}
    )
    if title:
        plotter.add_text(title, font_size=11)
    plotter.view_xy()
    plotter.screenshot(str(path))
    plotter.close()
    return path
