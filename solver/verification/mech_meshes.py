"""Small meshes for the mechanics/fracture tests (µm): gmsh spheres and DOLFINx boxes.

Every helper returns ``(mesh, cell_tags, facet_tags)`` with the tag numbers of meshing/tags.py:
grains 1..N, BINDER; facets GB, INTERFACE, OUTER. gmsh runs on rank 0; the mesh is distributed
with shared-facet ghosting.
"""

from __future__ import annotations

import dolfinx_solver  # noqa: F401
import numpy as np
from dolfinx import mesh as dmesh
from mpi4py import MPI
from polycrack.meshing.tags import BINDER, GB, INTERFACE, OUTER


def _partitioner():
    return dmesh.create_cell_partitioner(dmesh.GhostMode.shared_facet, 2)


def sphere_in_shell(
    a: float = 1.0,
    b: float = 2.0,
    h_in: float = 0.2,
    h_out: float = 0.5,
    comm: MPI.Comm = MPI.COMM_WORLD,
    grow: float = 0.3,
    order: int = 1,
):
    """Sphere r < a (grain 1) bonded to a shell a < r < b (BINDER), graded size field.

    Size h_in for r <= a, then h_in + grow (r - a) capped at h_out. ``order=2`` gives curved
    (quadratic) cells, so a P2 displacement is isoparametric and the spheres are O(h^3) exact.
    """
    import gmsh
    from dolfinx.io import gmsh as gio

    if not gmsh.isInitialized():
        gmsh.initialize(["-noenv"])
    gmsh.option.setNumber("General.Terminal", 0)
    gmsh.model.add("sphere_in_shell")
    if comm.rank == 0:
        s_in = gmsh.model.occ.addSphere(0, 0, 0, a)
        s_out = gmsh.model.occ.addSphere(0, 0, 0, b)
        out, _ = gmsh.model.occ.cut([(3, s_out)], [(3, s_in)], removeTool=False)
        gmsh.model.occ.fragment([(3, s_in)], out)
        gmsh.model.occ.synchronize()
        vols = gmsh.model.getEntities(3)
        inner, shell = [], []
        for _, t in vols:
            m = gmsh.model.occ.getMass(3, t)
            (inner if abs(m - 4 / 3 * np.pi * a**3) < 1e-3 * a**3 else shell).append(t)
        gmsh.model.addPhysicalGroup(3, inner, 1)
        gmsh.model.addPhysicalGroup(3, shell, BINDER)
        iface, outer = [], []
        for _, t in gmsh.model.getEntities(2):
            c = gmsh.model.occ.getCenterOfMass(2, t)
            area = gmsh.model.occ.getMass(2, t)
            del c
            (iface if abs(area - 4 * np.pi * a**2) < 1e-2 * a**2 else outer).append(t)
        gmsh.model.addPhysicalGroup(2, iface, INTERFACE)
        gmsh.model.addPhysicalGroup(2, outer, OUTER)

        def size(dim, tag, x, y, z, lc):
            r = np.sqrt(x * x + y * y + z * z)
            return min(h_out, h_in + grow * max(r - a, 0.0))

        gmsh.model.mesh.setSizeCallback(size)
        gmsh.option.setNumber("Mesh.MeshSizeExtendFromBoundary", 0)
        gmsh.option.setNumber("Mesh.MeshSizeFromPoints", 0)
        gmsh.option.setNumber("Mesh.MeshSizeFromCurvature", 0)
        gmsh.option.setNumber("Mesh.Algorithm3D", 10)
        gmsh.model.mesh.generate(3)
        if order > 1:
            gmsh.model.mesh.setOrder(order)
    data = gio.model_to_mesh(gmsh.model, comm, 0, gdim=3, partitioner=_partitioner())
    gmsh.model.remove()
    return data.mesh, data.cell_tags, data.facet_tags


def box_grains(
    n: int = 6, L: float = 1.0, splits: int = 2, comm: MPI.Comm = MPI.COMM_WORLD, binder=False
):
    """Cube [0, L]^3, n^3 x 6 tets, grains = splits^3 sub-cubes (tags 1..splits^3), no binder.

    GB facets on the internal planes; with ``binder=True`` the outermost layer of cells is BINDER
    (then the particle is the inner cube and OUTER the cube surface). Facets on the cube surface
    get OUTER.
    """
    msh = dmesh.create_box(
        comm,
        [np.zeros(3), np.full(3, L)],
        [n, n, n],
        dmesh.CellType.tetrahedron,
        ghost_mode=dmesh.GhostMode.shared_facet,
    )
    tdim = 3
    imap = msh.topology.index_map(tdim)
    ncell = imap.size_local + imap.num_ghosts
    cells = np.arange(ncell, dtype=np.int32)
    mid = dmesh.compute_midpoints(msh, tdim, cells)
    idx = np.clip((mid / L * splits).astype(int), 0, splits - 1)
    tags = 1 + idx[:, 0] + splits * idx[:, 1] + splits**2 * idx[:, 2]
    if binder:
        h = L / n
        edge = np.any((mid < h) | (mid > L - h), axis=1)
        tags = np.where(edge, BINDER, tags)
    ct = dmesh.meshtags(msh, tdim, cells, tags.astype(np.int32))
    msh.topology.create_connectivity(tdim - 1, tdim)
    f2c = msh.topology.connectivity(tdim - 1, tdim)
    fmap = msh.topology.index_map(tdim - 1)
    nf = fmap.size_local + fmap.num_ghosts
    ftags = np.zeros(nf, dtype=np.int32)
    cell_tag = np.empty(ncell, dtype=np.int32)
    cell_tag[cells] = tags
    for f in range(nf):
        c = f2c.links(f)
        if len(c) == 2:
            t0, t1 = cell_tag[c[0]], cell_tag[c[1]]
            if t0 != t1:
                if BINDER in (t0, t1):
                    ftags[f] = INTERFACE
                else:
                    ftags[f] = GB
    boundary = dmesh.exterior_facet_indices(msh.topology)
    ftags[boundary] = OUTER
    # a facet on a process boundary may see only one cell; fix GB/INTERFACE by geometry
    fmid = dmesh.compute_midpoints(msh, tdim - 1, np.arange(nf, dtype=np.int32))
    planes = np.arange(1, splits) * L / splits
    on_plane = np.zeros(nf, dtype=bool)
    for p in planes:
        on_plane |= np.any(np.isclose(fmid, p), axis=1)
    # only trust the geometric test for facets with a single local cell
    single = np.array([len(f2c.links(f)) == 1 for f in range(nf)])
    single[boundary] = False
    if not binder:
        ftags[single & on_plane] = GB
    keep = np.flatnonzero(ftags > 0).astype(np.int32)
    ft = dmesh.meshtags(msh, tdim - 1, keep, ftags[keep])
    return msh, ct, ft


def random_axes(n: int, seed: int = 0) -> np.ndarray:
    """n unit vectors uniform on the sphere (normalised Gaussian)."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, 3))
    return a / np.linalg.norm(a, axis=1)[:, None]


def tag_grains_by_seeds(msh, particle_cells_tag: int, old_tags, seeds: np.ndarray):
    """Re-tag the cells of ``old_tags == particle_cells_tag`` by their nearest seed (1..N) and
    rebuild facet tags (GB between grains, INTERFACE grain-binder, OUTER on the boundary).

    A 'voxelised' Voronoi tessellation on a given tet mesh: grain boundaries follow tet faces.
    """
    tdim = 3
    imap = msh.topology.index_map(tdim)
    ncell = imap.size_local + imap.num_ghosts
    cells = np.arange(ncell, dtype=np.int32)
    old = np.full(ncell, BINDER, dtype=np.int32)
    old[old_tags.indices] = old_tags.values
    mid = dmesh.compute_midpoints(msh, tdim, cells)
    from scipy.spatial import cKDTree

    grain = 1 + cKDTree(seeds).query(mid)[1]
    tags = np.where(old == particle_cells_tag, grain, BINDER).astype(np.int32)
    ct = dmesh.meshtags(msh, tdim, cells, tags)
    msh.topology.create_connectivity(tdim - 1, tdim)
    f2c = msh.topology.connectivity(tdim - 1, tdim)
    fmap = msh.topology.index_map(tdim - 1)
    nf = fmap.size_local + fmap.num_ghosts
    ftags = np.zeros(nf, dtype=np.int32)
    for f in range(nf):
        c = f2c.links(f)
        if len(c) == 2 and tags[c[0]] != tags[c[1]]:
            ftags[f] = INTERFACE if BINDER in (tags[c[0]], tags[c[1]]) else GB
    ftags[dmesh.exterior_facet_indices(msh.topology)] = OUTER
    keep = np.flatnonzero(ftags > 0).astype(np.int32)
    return ct, dmesh.meshtags(msh, tdim - 1, keep, ftags[keep])


def voronoi_sphere(
    n_grains: int = 50,
    radius: float = 7.0,
    binder_radius: float = 10.0,
    h_particle: float = 0.7,
    h_binder: float = 2.0,
    seed: int = 1,
    comm: MPI.Comm = MPI.COMM_WORLD,
):
    """Sphere of ``n_grains`` voxelised Voronoi grains (seeds uniform in the sphere) in a binder
    shell; returns (mesh, cell_tags, facet_tags, axes). Grain ids 1..n_grains (a grain whose seed
    captured no cell simply has no cells)."""
    msh, ct0, _ = sphere_in_shell(radius, binder_radius, h_particle, h_binder, comm=comm, grow=0.5)
    rng = np.random.default_rng(seed)
    pts = []
    while len(pts) < n_grains:
        p = rng.uniform(-radius, radius, size=3)
        if np.linalg.norm(p) < radius:
            pts.append(p)
    seeds = np.array(pts)
    ct, ft = tag_grains_by_seeds(msh, 1, ct0, seeds)
    return msh, ct, ft, random_axes(n_grains, seed + 1000)


def sphere8_case(protocol: list[dict], overrides: dict | None = None, **top) -> dict:
    """The case of the driver tests on the 8-grain sphere (:func:`sphere8_domain`): l = l_γ = 2 µm,
    Gc_GB 1 J/m², MUMPS, no field output or periodic checkpoints; ``protocol`` and extra
    ``material.overrides`` and top-level keys (e.g. ``physics``) as given. A fresh dict."""
    return {
        "geometry": {"particle": {"source": "sphere"}, "grains": {"count": 8}},
        "material": {
            "overrides": {
                "fracture.l_m": 2.0e-6,
                "fracture.l_gamma_m": 2.0e-6,
                "fracture.Gc_GB_J_m2": 1.0,
                **(overrides or {}),
            }
        },
        "protocol": [dict(p) for p in protocol],
        **top,
        "solver": {"linear": "mumps", "dt_max_s": 600.0, "dt_initial_s": 5.0},
        "output": {"fields_at_voltages_V": [], "checkpoint_every_steps": 0},
    }


def sphere8_domain(comm: MPI.Comm = MPI.COMM_WORLD, h_particle: float = 2.0):
    """The 8-grain sphere (R = 7 µm, binder to 10 µm, h = ``h_particle`` / 4 µm) of the driver
    tests as a :class:`~polycrack.physics.mechanics.ParticleDomain`."""
    from polycrack.physics.mechanics import ParticleDomain

    msh, ct, ft, axes = voronoi_sphere(n_grains=8, h_particle=h_particle, h_binder=4.0, comm=comm)
    return ParticleDomain.build(msh, ct, ft, axes)
