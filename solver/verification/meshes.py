"""Small gmsh sphere meshes for the electrochemistry tests (µm), cached per (radius, h, comm size).

The particle only (cell tag 1), its surface tagged INTERFACE: what the electrochemistry block
sees on the particle submesh of a bundle.
"""

from __future__ import annotations

import dolfinx_solver  # noqa: F401
import numpy as np
from dolfinx import mesh as dmesh
from mpi4py import MPI
from polycrack.meshing.tags import INTERFACE

_CACHE: dict = {}


def sphere_particle_mesh(
    radius_um: float,
    h_um: float,
    comm: MPI.Comm = MPI.COMM_WORLD,
    h_surface_um: float | None = None,
):
    """A ball of radius ``radius_um`` (µm) meshed by gmsh on rank 0 and distributed.

    Cell tag 1 (one grain), surface facets tagged INTERFACE. ``h_surface_um`` (default ``h_um``)
    grades the element size towards the surface. Returns ``(mesh, cell_tags, facet_tags)``.
    """
    import gmsh
    from dolfinx.io import gmsh as gio

    if not gmsh.isInitialized():
        gmsh.initialize(["-noenv"])
    gmsh.option.setNumber("General.Terminal", 0)
    gmsh.model.add("sphere_particle")
    if comm.rank == 0:
        s = gmsh.model.occ.addSphere(0, 0, 0, radius_um)
        gmsh.model.occ.synchronize()
        gmsh.model.addPhysicalGroup(3, [s], 1)
        surf = [t for _, t in gmsh.model.getBoundary([(3, s)], oriented=False)]
        gmsh.model.addPhysicalGroup(2, surf, INTERFACE)
        hs = h_um if h_surface_um is None else h_surface_um

        def size(dim, tag, x, y, z, lc):
            r = float(np.sqrt(x * x + y * y + z * z))
            return hs + (h_um - hs) * max(0.0, 1.0 - r / radius_um) * 2.0 if hs < h_um else h_um

        gmsh.model.mesh.setSizeCallback(size)
        gmsh.option.setNumber("Mesh.MeshSizeExtendFromBoundary", 0)
        gmsh.option.setNumber("Mesh.MeshSizeFromPoints", 0)
        gmsh.option.setNumber("Mesh.MeshSizeFromCurvature", 0)
        gmsh.option.setNumber("Mesh.Algorithm3D", 10)
        gmsh.option.setNumber("Mesh.RandomSeed", 1)
        gmsh.model.mesh.generate(3)
    part = dmesh.create_cell_partitioner(dmesh.GhostMode.shared_facet, 2)
    data = gio.model_to_mesh(gmsh.model, comm, 0, gdim=3, partitioner=part)
    gmsh.model.remove()
    return data.mesh, data.cell_tags, data.facet_tags


def particle_sphere(radius_um: float, h_um: float, comm: MPI.Comm = MPI.COMM_WORLD):
    """(mesh, cell_tags, facet_tags) of a ball, built once per process and arguments."""
    key = (radius_um, h_um, comm.size)
    if key not in _CACHE:
        _CACHE[key] = sphere_particle_mesh(radius_um, h_um, comm)
    return _CACHE[key]


def dumbbell_stl(path, neck_radius_um: float = 1.5, size_um: float = 0.5):
    """STL of two balls of radius 4 µm at x = ±6 µm joined by a cylinder (a particle that is
    not star-shaped about its centroid: the faceted meshing route); returns ``path``."""
    import gmsh

    gmsh.initialize(interruptible=False)
    try:
        gmsh.option.setNumber("General.Terminal", 0)
        occ = gmsh.model.occ
        a, b = occ.addSphere(-6, 0, 0, 4.0), occ.addSphere(6, 0, 0, 4.0)
        neck = occ.addCylinder(-6, 0, 0, 12.0, 0, 0, neck_radius_um)
        occ.fuse([(3, a)], [(3, b), (3, neck)])
        occ.synchronize()
        gmsh.option.setNumber("Mesh.MeshSizeMax", size_um)
        gmsh.model.mesh.generate(2)
        gmsh.write(str(path))
    finally:
        gmsh.finalize()
    return path
