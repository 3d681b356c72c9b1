"""Size of the mesh a case asks for, before meshing: cells, vertices and gmsh's memory.

Numbers only (no gmsh, no DOLFINx), so that ``polycrack check`` and the size guard of
``polycrack mesh``/``run`` answer in milliseconds even for a case that would never finish
meshing. The tet count is a fit to real bundles (``benchmarks/mesh_estimate.py``,
``benchmarks/results/mesh_estimate.json``):

    tets = A_P Vp/h^3 + A_GB Agb/h^2 + A_B Vb/hb^3 + A_IF Aif/h^2

with Vp, Vb the particle and binder volumes (µm^3), Agb the grain-boundary area (a Voronoi
estimate, :func:`gb_area_um2`), Aif the particle surface (µm^2), h and hb the particle and binder
element sizes (µm). Uniform refinement multiplies the cells by 8 per level. CT and surface
particles are taken as the sphere of ``particle.diameter_um`` (their shape is known only after
loading the file).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

#: coefficients of the tet model above, a least-squares fit (relative errors) to the 11 bundles of
#: benchmarks/results/mesh_estimate.json (2 k-70 k tets, 0-200 grains, h 0.4-1.6 µm): every
#: row within 9 %; the 50- and 400-grain spheres at h = 0.4 µm of mesh_scaling.json (128 k and
#: 195 k tets, not in the fit) within 1.2 %
A_P, A_GB, A_B, A_IF = 2.089, 7.351, 3.379, 8.557
#: tets per vertex of the gmsh meshes (5.0-5.8 in the same rows; uniform refinement keeps the
#: ratio); the lower end, so that unknowns are not underestimated
TETS_PER_VERTEX = 5.5
#: gmsh's resident memory while meshing: a base plus bytes per tet (a linear fit to the same
#: rows, 120 MB + 1.48 KB per tet; mesh_scaling.json: 354 MB at 195 k tets and 400 grains)
GMSH_BASE_BYTES = 120e6
GMSH_BYTES_PER_TET = 1.5e3
#: surface area per unit volume of a Poisson-Voronoi tessellation of unit seed density
VORONOI_SV = 2.910


@dataclass
class MeshEstimate:
    """Estimated size of a case's mesh (counts are global, over all ranks)."""

    particle_volume_um3: float
    binder_volume_um3: float
    gb_area_um2: float
    interface_area_um2: float
    cells_gmsh: int
    particle_cells_gmsh: int
    refine_levels: int
    cells: int
    particle_cells: int
    vertices: int
    particle_vertices: int
    meshing_bytes: float

    def to_dict(self) -> dict:
        return asdict(self)


def gb_area_um2(particle_volume_um3: float, surface_um2: float, grains: int) -> float:
    """Grain-boundary area (µm^2) of ``grains`` Voronoi grains filling the particle.

    The Poisson-Voronoi surface density S_V = 2.91 n^(1/3) times the volume, less half the
    particle surface (cells cut by it lose their outer faces); within 4 % of the 50-400-grain
    meshes of benchmarks/results/mesh_scaling.json. 0 for one grain.
    """
    if grains <= 1:
        return 0.0
    a = VORONOI_SV * grains ** (1 / 3) * particle_volume_um3 ** (2 / 3) - 0.5 * surface_um2
    return max(a, 0.0)


def estimate_counts(
    diameter_um: float,
    binder_outer_diameter_um: float,
    particle_size_um: float,
    binder_size_um: float,
    grains: int,
    refine_levels: int = 0,
) -> MeshEstimate:
    """The estimate from plain numbers (lengths in µm)."""
    vp = math.pi / 6.0 * diameter_um**3
    vb = max(math.pi / 6.0 * binder_outer_diameter_um**3 - vp, 0.0)
    aif = math.pi * diameter_um**2
    agb = gb_area_um2(vp, aif, grains)
    h, hb = particle_size_um, binder_size_um
    p_tets = A_P * vp / h**3 + A_GB * agb / h**2
    tets = p_tets + A_B * vb / hb**3 + A_IF * aif / h**2
    f = 8.0**refine_levels
    return MeshEstimate(
        particle_volume_um3=vp,
        binder_volume_um3=vb,
        gb_area_um2=agb,
        interface_area_um2=aif,
        cells_gmsh=_int(tets),
        particle_cells_gmsh=_int(p_tets),
        refine_levels=refine_levels,
        cells=_int(tets * f),
        particle_cells=_int(p_tets * f),
        vertices=_int(tets * f / TETS_PER_VERTEX),
        particle_vertices=_int(p_tets * f / TETS_PER_VERTEX),
        meshing_bytes=GMSH_BASE_BYTES + GMSH_BYTES_PER_TET * tets,
    )


def estimate_mesh(geometry) -> MeshEstimate:
    """The estimate for a :class:`polycrack.config.GeometryConfig` (duck-typed)."""
    m = geometry.mesh
    return estimate_counts(
        geometry.particle.diameter_um,
        geometry.binder_outer_diameter_um,
        m.particle_size_um,
        m.binder_size_um,
        int(geometry.grains.count),
        int(m.refine_levels),
    )


def _int(x: float) -> int:
    """Round to an int; counts beyond 1e18 are clipped (they only need to read as 'too big')."""
    return int(min(x, 1e18))
