"""gmsh OCC assembly: Voronoi cells as one conforming B-rep, particle, binder shell, tags, mesh.

Route of docs/user-guide.md section 4: every Voronoi vertex/edge/ridge is created once, so neighbouring cells
share faces before any boolean; the cells are fragmented with the reference sphere (R0) and the
pieces outside it dropped; the result is fragmented with the binder sphere. Surfaces are
classified by their adjacent volumes (two grains: GB; grain + binder: INTERFACE; binder only:
OUTER). The 2D mesh is morphed radially onto the real particle shape, then meshed in 3D (HXT).
"""

from __future__ import annotations

import time

import gmsh
import numpy as np

from ..errors import InputError
from .detmath import dot_rows, norm3, norm_rows, snap
from .shape import RadialShape
from .tags import BINDER, GB, INTERFACE, OUTER
from .tessellation import Tessellation, surface_corners


def _ordered_polygon(V: np.ndarray, verts: list[int], normal: np.ndarray) -> list[int]:
    """Vertices of a planar convex polygon sorted by angle around its centroid."""
    P = V[verts]
    c = P.mean(axis=0)
    n = normal / norm3(normal)
    a = P[0] - c
    a -= n * float(dot_rows(a[None], n)[0])
    a /= norm3(a)
    b = np.cross(n, a)
    ang = np.arctan2(dot_rows(P - c, b), dot_rows(P - c, a))
    return [verts[i] for i in np.argsort(ang)]


def build_voronoi_brep(tess: Tessellation) -> list[int]:
    """OCC volumes of the real seeds' Voronoi cells with shared faces; returns volume tags."""
    occ = gmsh.model.occ
    vor = tess.vor
    n = len(tess.ref_seeds)
    V = vor.vertices
    pts: dict[int, int] = {}
    lines: dict[tuple[int, int], int] = {}
    cell_faces: dict[int, list[int]] = {i: [] for i in range(n)}
    for (i, j), verts in zip(vor.ridge_points, vor.ridge_vertices, strict=True):
        if i >= n and j >= n:
            continue
        if any(v < 0 for v in verts):
            raise InputError("unbounded Voronoi cell (seed outside the mirrored box)")
        poly = _ordered_polygon(V, list(verts), vor.points[j] - vor.points[i])
        loop = []
        for a, b in zip(poly, poly[1:] + poly[:1], strict=True):
            for v in (a, b):
                if v not in pts:
                    pts[v] = occ.addPoint(*V[v])
            key = (min(a, b), max(a, b))
            if key not in lines:
                lines[key] = occ.addLine(pts[key[0]], pts[key[1]])
            tag = lines[key]
            loop.append(tag if (a, b) == key else -tag)
        face = occ.addPlaneSurface([occ.addCurveLoop(loop)])
        for k in (i, j):
            if k < n:
                cell_faces[k].append(face)
    return [occ.addVolume([occ.addSurfaceLoop(cell_faces[i])]) for i in range(n)]


def seam_rotation(
    corners: np.ndarray,
    points: np.ndarray,
    R0: float,
    candidates: int = 128,
    step: float = 0.005,
) -> tuple[np.ndarray, float]:
    """Rotation vector (rad) and clearance (µm) for the OCC sphere so that its seam misses the grains' corners.

    An OCC sphere of radius R0 has poles (0, 0, ±R0) and a seam curve on the half plane y = 0,
    x >= 0. Grain faces crossing the seam are split there: a split point close to a corner
    (a Voronoi edge piercing the sphere, ``corners``), two crossings close together (a grain
    boundary grazing the seam) or a crossing next to a pole leave curves of a few nm and
    slivers. For a fixed set of rotations (deterministic), the seam is sampled every ``step``
    µm and labelled with its nearest Voronoi point (``points``: seeds and mirrors); the score
    is the smallest of the shortest run of one label (distance between crossings, or pole to
    crossing), the distance from the seam to the nearest corner and the distance from each pole
    to the nearest grain boundary. The best rotation wins.
    """
    from scipy.spatial import cKDTree
    from scipy.spatial.transform import Rotation

    rots = Rotation.concatenate(
        [Rotation.identity(), Rotation.random(candidates, random_state=12345)]
    )
    t = np.linspace(-np.pi / 2, np.pi / 2, int(np.ceil(np.pi * R0 / step)) + 1)
    seam0 = R0 * np.column_stack([np.cos(t), np.zeros_like(t), np.sin(t)])
    ds = R0 * (t[1] - t[0])
    tree = cKDTree(points)
    ctree = cKDTree(corners) if len(corners) else None
    best, best_d = np.zeros(3), -1.0  # rotation vectors are put on a 1e-9 rad grid below
    for rot in rots:
        M = rot.as_matrix()
        seam = np.column_stack([dot_rows(seam0, M[i]) for i in range(3)])
        _, lab = tree.query(seam)
        cuts = np.flatnonzero(np.diff(lab)) + 1
        runs = np.diff(np.concatenate([[0], cuts, [len(lab)]])) * ds
        d = float(runs.min()) if len(cuts) else float("inf")
        if ctree is not None:
            d = min(d, float(ctree.query(seam)[0].min()))
        # poles: distance to the nearest grain boundary (to the nearest bisector plane)
        poles = seam[[0, -1]]
        dist, idx = tree.query(poles, k=min(32, len(points)))
        for dd, ii in zip(dist, idx, strict=True):
            s, others = points[ii[0]], points[ii[1:]]
            gap = (dd[1:] * dd[1:] - dd[0] * dd[0]) / (2.0 * np.linalg.norm(others - s, axis=1))
            d = min(d, float(gap.min()))
        if d > best_d:
            best, best_d = snap(rot.as_rotvec()), d
    return best, best_d


def _remove_exclusive(drop: list[tuple[int, int]], keep: list[int]) -> None:
    """Remove the volumes ``drop`` and every face, curve and point used only by them.

    Same result as ``occ.remove(drop, recursive=True)``, which took 21 s of CPU for the ~250
    outside pieces at 400 grains; non-recursive removal of precomputed sets takes < 1 s.
    """
    if not drop:
        return
    occ = gmsh.model.occ
    occ.synchronize()
    gone: list[tuple[int, int]] = list(drop)
    kept_up = [(3, t) for t in keep]
    drop_up = list(drop)
    for _ in range(3):
        k = {e for e in gmsh.model.getBoundary(kept_up, combined=False, oriented=False)}
        d = {e for e in gmsh.model.getBoundary(drop_up, combined=False, oriented=False)}
        only = sorted(d - k)
        gone += only
        kept_up, drop_up = sorted(k), only
        if not only:
            break
    occ.remove(gone, recursive=False)


def assemble(
    tess: Tessellation,
    shape: RadialShape | None,
    binder_radius: float,
    h_particle: float,
    h_binder: float,
    single_grain: bool = False,
    verbose: bool = False,
    faceted: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict:
    """Build, tag and mesh the model in the current gmsh session; returns statistics.

    Radial route: the tessellation lives in the reference sphere (R0) and the 2D mesh is morphed
    onto ``shape``. Faceted route (``faceted`` = surface points and triangles, µm, centred; no
    ``shape``): the cells are clipped by the triangle solid itself and nothing is morphed; a
    Voronoi cell that the non-convex particle cuts into several pieces keeps all of them in its
    grain's volume group (listed in the statistics).
    """
    occ = gmsh.model.occ
    R0 = tess.R0
    t0 = time.perf_counter()
    seam_clearance: float | None = None
    split: list[int] = []
    if faceted is not None:
        from .faceted import occ_solid

        sphere = occ_solid(*faceted)
    else:
        sphere = occ.addSphere(0, 0, 0, R0)
    if not single_grain and faceted is None:
        rv, seam_clearance = seam_rotation(
            surface_corners(tess.vor, len(tess.ref_seeds), R0), tess.vor.points, R0
        )
        ang = norm3(rv)
        if ang > 0:
            occ.rotate([(3, sphere)], 0, 0, 0, *(rv / ang).tolist(), ang)
    if single_grain:
        grains = [[sphere]]
    else:
        cells = build_voronoi_brep(tess)
        out, omap = occ.fragment([(3, c) for c in cells], [(3, sphere)])
        inside = {t for _, t in omap[len(cells)]}
        grains = []
        for i, pieces in enumerate(omap[: len(cells)]):
            mine = [t for d, t in pieces if d == 3 and t in inside]
            if len(mine) > 1 and faceted is not None:
                split.append(i + 1)
            elif len(mine) != 1:
                raise InputError(
                    f"grain {i + 1}: clipping its Voronoi cell by the particle gave {len(mine)} "
                    "pieces; try another grains.seed or a larger grains.min_edge_um"
                )
            grains.append(mine)
        flat = [t for g in grains for t in g]
        _remove_exclusive([(3, t) for _, t in out if t not in set(flat)], flat)
    outer = occ.addSphere(0, 0, 0, binder_radius)
    flat = [t for g in grains for t in g]
    out, omap = occ.fragment([(3, g) for g in flat], [(3, outer)])
    piece = {
        old: [tt for d, tt in pieces if d == 3][0] for old, pieces in zip(flat, omap, strict=False)
    }
    new_grains = [[piece[t] for t in g] for g in grains]
    gset = {t for g in new_grains for t in g}
    binder = [t for d, t in omap[len(flat)] if d == 3 and t not in gset]
    occ.synchronize()
    t_brep = time.perf_counter() - t0

    for i, g in enumerate(new_grains):
        gmsh.model.addPhysicalGroup(3, g, i + 1, name=f"grain{i + 1}")
    gmsh.model.addPhysicalGroup(3, binder, BINDER, name="binder")
    grain_set, binder_set = gset, set(binder)
    gb, iface, outer_s, orphan = [], [], [], []
    for _, s in gmsh.model.getEntities(2):
        up, _ = gmsh.model.getAdjacencies(2, s)
        ng = sum(1 for v in up if v in grain_set)
        nb = sum(1 for v in up if v in binder_set)
        if ng == 2:
            gb.append(s)
        elif ng == 1 and nb == 1:
            iface.append(s)
        elif nb == 1 and ng == 0:
            outer_s.append(s)
        else:
            orphan.append(s)
    if orphan:
        raise InputError(f"{len(orphan)} surfaces belong to no grain pair (OCC fragment defect)")
    if gb:
        gmsh.model.addPhysicalGroup(2, gb, GB, name="grain_boundaries")
    gmsh.model.addPhysicalGroup(2, iface, INTERFACE, name="interface")
    gmsh.model.addPhysicalGroup(2, outer_s, OUTER, name="outer")

    # sizes: h_particle inside the (reference) particle, growing to h_binder in the shell
    f = gmsh.model.mesh.field
    ball = f.add("Ball")
    f.setNumber(ball, "Radius", R0)
    f.setNumber(ball, "VIn", h_particle)
    f.setNumber(ball, "VOut", h_binder)
    f.setNumber(ball, "Thickness", 0.6 * (binder_radius - R0))
    f.setAsBackgroundMesh(ball)
    for key, val in (
        ("Mesh.MeshSizeExtendFromBoundary", 0),
        ("Mesh.MeshSizeFromPoints", 0),
        ("Mesh.MeshSizeFromCurvature", 0),
        ("Mesh.Algorithm", 6),
        ("Mesh.Algorithm3D", 10),
        ("Mesh.Optimize", 1),
        ("Mesh.RandomSeed", 1),
        ("General.NumThreads", 1),
    ):
        gmsh.option.setNumber(key, val)
    t1 = time.perf_counter()
    gmsh.model.mesh.generate(2)
    if shape is not None and not shape.is_sphere:
        _morph(shape, R0, binder_radius)
    else:
        _snap_nodes()
    gmsh.model.mesh.generate(3)
    if faceted is not None:
        # facet corners and edges leave slivers; Netgen's optimiser moves volume nodes only, so
        # grain-boundary facets stay on their bisector planes
        gmsh.model.mesh.optimize("Netgen")
    t_mesh = time.perf_counter() - t1
    return {
        "grains": len(new_grains),
        "gb_surfaces": len(gb),
        "interface_surfaces": len(iface),
        "seam_clearance_um": seam_clearance,
        "grains_in_several_pieces": split,
        "brep_s": t_brep,
        "mesh_s": t_mesh,
    }


def _snap_nodes() -> None:
    """Put the surface-mesh nodes on the GRID_UM grid, so that the 3D mesher gets the same input
    even if OCC's surface evaluation (glibc's CPU-specific sin/cos) differs in the last bit."""
    tags, xyz, _ = gmsh.model.mesh.getNodes()
    for t, y in zip(tags, snap(xyz.reshape(-1, 3)), strict=True):
        gmsh.model.mesh.setNode(int(t), y.tolist(), [])


def _morph(shape: RadialShape, R0: float, Rb: float) -> None:
    """Move every surface-mesh node radially: particle onto r(d), binder blended to the fixed outer sphere.

    The new positions use only IEEE arithmetic (meshing/detmath.py) and are put on the GRID_UM
    grid before the 3D mesh is built.
    """
    tags, xyz, _ = gmsh.model.mesh.getNodes()
    X = snap(xyz.reshape(-1, 3))
    d = norm_rows(X)
    ok = d > 1e-12
    dirs = np.zeros_like(X)
    dirs[ok] = X[ok] / d[ok, None]
    r = np.full(len(X), R0)
    r[ok] = shape.radius(dirs[ok])
    new_d = np.where(d <= R0 * (1 + 1e-9), d * r / R0, r + (d - R0) * (Rb - r) / (Rb - R0))
    Y = snap(dirs * new_d[:, None])
    Y[~ok] = X[~ok]
    for t, y in zip(tags, Y, strict=True):
        gmsh.model.mesh.setNode(int(t), y.tolist(), [])


def mesh_quality() -> dict:
    """Tet count and min SICN of the current 3D mesh."""
    types, etags, _ = gmsh.model.mesh.getElements(3)
    allt = np.concatenate([np.asarray(t) for t in etags]) if etags else np.array([], dtype=int)
    q = (
        np.asarray(gmsh.model.mesh.getElementQualities(allt, "minSICN"))
        if len(allt)
        else np.array([1.0])
    )
    return {
        "tets": int(len(allt)),
        "min_sicn": float(q.min()),
        "tets_below_0.1": int(np.count_nonzero(q < 0.1)),
    }
