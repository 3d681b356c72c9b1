"""Small gmsh sphere meshes for the electrochemistry tests (µm), cached per (radius, h, comm size).

The particle only (cell tag 1), its surface tagged INTERFACE: what the electrochemistry block
sees on the particle submesh of a bundle.
"""

from __future__ import annotations

import dolfinx_solver  # noqa: F401
from mpi4py import MPI

from solver.run import sphere_particle_mesh

_CACHE: dict = {}


def particle_sphere(radius_um: float, h_um: float, comm: MPI.Comm = MPI.COMM_WORLD):
    """(mesh, cell_tags, facet_tags) of a ball, built once per process and arguments."""
    key = (radius_um, h_um, comm.size)
    if key not in _CACHE:
        _CACHE[key] = sphere_particle_mesh(radius_um, h_um, comm)
    return _CACHE[key]
