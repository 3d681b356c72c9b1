"""Faceted-surface route for particles that are not star-shaped (closed STL/PLY/OBJ surfaces).

The radial-morph route (docs/user-guide.md section 4) needs r(d); a surface that a ray from the centroid
crosses more than once has none. Here the (decimated) triangle surface itself becomes an OCC
solid of plane faces, the seeds are sampled inside it (ray-parity test), the Voronoi cells are
built as one shared-face B-rep in real coordinates and fragmented with that solid, the outside
pieces are dropped and the binder sphere is fragmented around it; nothing is morphed. Slower and
of lower quality than the radial route (the facets' edges and corners are geometry the mesh must
respect), so it is used only when the star-shape check fails.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from .detmath import norm3


def decimate(P: np.ndarray, tri: np.ndarray, target: int) -> tuple[np.ndarray, np.ndarray]:
    """Quadric decimation (VTK through pyvista) to about ``target`` triangles, if larger."""
    if len(tri) <= target:
        return P, tri
    import pyvista as pv

    faces = np.column_stack([np.full(len(tri), 3), tri]).ravel()
    mesh = pv.PolyData(P, faces).decimate(1.0 - target / len(tri))
    return np.asarray(mesh.points, float), mesh.faces.reshape(-1, 4)[:, 1:].astype(np.int64)


def inside(points: np.ndarray, P: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """Points strictly inside the closed triangle surface (odd number of crossings of a ray)."""
    d = np.array([0.5773, 0.5774, 0.5775])
    d = d / norm3(d)
    A, B, C = P[tri[:, 0]], P[tri[:, 1]], P[tri[:, 2]]
    e1, e2 = B - A, C - A
    pvec = np.cross(d, e2)
    det = np.einsum("tj,tj->t", e1, pvec)
    ok = np.abs(det) > 1e-14
    inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
    out = np.zeros(len(points), bool)
    for s in range(0, len(points), 256):
        Q = points[s : s + 256]
        tvec = Q[:, None, :] - A[None]
        u = np.einsum("qtj,tj->qt", tvec, pvec) * inv
        qvec = np.cross(tvec, e1[None])
        v = (qvec[..., 0] * d[0] + qvec[..., 1] * d[1] + qvec[..., 2] * d[2]) * inv
        t = np.einsum("qtj,tj->qt", qvec, e2) * inv
        hit = ok & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 0)
        out[s : s + 256] = hit.sum(axis=1) % 2 == 1
    return out


def sample_inside(P: np.ndarray, tri: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n points uniform inside the surface (µm)."""
    lo, hi = P.min(axis=0), P.max(axis=0)
    got: list[np.ndarray] = []
    for _ in range(200):
        q = rng.uniform(lo, hi, size=(4 * n, 3))
        got.append(q[inside(q, P, tri)])
        if sum(len(g) for g in got) >= n:
            return np.concatenate(got)[:n]
    raise InputError("cannot sample seeds inside the surface (is it closed and oriented?)")


def occ_solid(P: np.ndarray, tri: np.ndarray) -> int:
    """OCC volume bounded by the triangles as plane faces with shared edges; returns its tag."""
    import gmsh

    occ = gmsh.model.occ
    pts = [occ.addPoint(*p) for p in P]
    lines: dict[tuple[int, int], int] = {}
    faces = []
    for t in tri:
        loop = []
        for a, b in ((t[0], t[1]), (t[1], t[2]), (t[2], t[0])):
            key = (min(a, b), max(a, b))
            if key not in lines:
                lines[key] = occ.addLine(pts[key[0]], pts[key[1]])
            loop.append(lines[key] if (a, b) == key else -lines[key])
        faces.append(occ.addPlaneSurface([occ.addCurveLoop(loop)]))
    return occ.addVolume([occ.addSurfaceLoop(faces)])


@dataclass
class FacetedSurface:
    """Closed triangle surface (µm) translated so its volume centroid is the origin."""

    points: np.ndarray
    triangles: np.ndarray
    volume_um3: float
    shift: np.ndarray


def faceted_surface(path: Path, h: float, max_triangles: int = 2000) -> FacetedSurface:
    """Read, check (watertight), centre and decimate a surface file for the faceted route.

    The triangle count is reduced to about the surface area over the area of a triangle of side
    2h (at most ``max_triangles``: every facet becomes an OCC face, and the fragment cost grows
    with their number).
    """
    from .surface import read_triangles

    P, tri = read_triangles(path)
    return centred_surface(P, tri, h, str(path), max_triangles)


def centred_surface(
    P: np.ndarray, tri: np.ndarray, h: float, source: str, max_triangles: int = 2000
) -> FacetedSurface:
    """:func:`faceted_surface` for triangles in memory (µm), e.g. a CT particle's marching-cubes
    surface; ``source`` names it in messages."""
    from .surface import check_watertight

    check_watertight(tri, source)
    A, B, C = P[tri[:, 0]], P[tri[:, 1]], P[tri[:, 2]]
    v6 = np.einsum("ij,ij->i", A, np.cross(B, C))
    if abs(float(v6.sum())) < 1e-12:
        raise InputError(f"{source}: the surface encloses no volume")
    centroid = (v6[:, None] * (A + B + C)).sum(axis=0) / (4.0 * v6.sum())
    area = 0.5 * float(np.linalg.norm(np.cross(B - A, C - A), axis=1).sum())
    target = int(min(max_triangles, max(200, area / (np.sqrt(3) / 4 * (2 * h) ** 2))))
    P, tri = decimate(P - centroid, tri, target)
    A, B, C = P[tri[:, 0]], P[tri[:, 1]], P[tri[:, 2]]
    vol = float(np.einsum("ij,ij->i", A, np.cross(B, C)).sum()) / 6.0
    if vol < 0:  # inward normals: flip so the OCC faces and the volume are positive
        tri = tri[:, ::-1]
        vol = -vol
    return FacetedSurface(P, tri, vol, centroid)


def edge_samples(P: np.ndarray, tri: np.ndarray, step: float) -> tuple[np.ndarray, ...]:
    """Points every <= ``step`` µm along each facet edge: (points, edge id, spacing per point)."""
    e = np.unique(
        np.sort(np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]]), 1), axis=0
    )
    L = np.linalg.norm(P[e[:, 1]] - P[e[:, 0]], axis=1)
    m = np.ceil(L / step).astype(int) + 1
    eid = np.repeat(np.arange(len(e)), m)
    start = np.concatenate([[0], np.cumsum(m)[:-1]])
    t = (np.arange(eid.size) - start[eid]) / (m[eid] - 1)
    S = P[e[eid, 0]] + t[:, None] * (P[e[eid, 1]] - P[e[eid, 0]])
    return S, eid, (L / (m - 1))[eid]


def facet_edge_defects(
    lab: np.ndarray, eid: np.ndarray, ds: np.ndarray, tol: float, n: int
) -> tuple[int, np.ndarray]:
    """Grain boundaries crossing a facet edge within ``tol`` of each other or of its ends.

    ``lab`` is the nearest Voronoi point of each edge sample: a run of one label shorter than
    tol on an edge that some boundary crosses is a defect (a curve of a few nm after the
    fragment, and slivers). Returns the count and the real seeds (< n) of the short runs.
    """
    cut = np.flatnonzero((lab[1:] != lab[:-1]) | (eid[1:] != eid[:-1])) + 1
    starts = np.concatenate([[0], cut])
    ends = np.concatenate([cut, [lab.size]])
    length = np.add.reduceat(ds, starts) - ds[ends - 1]
    runs_per_edge = np.bincount(eid[starts], minlength=int(eid.max()) + 1)
    short = (length < tol) & (runs_per_edge[eid[starts]] > 1)
    seeds = np.unique(lab[starts[short]])
    return int(short.sum()), seeds[seeds < n]


def pierce_defects(
    vor, P: np.ndarray, tri: np.ndarray, tol: float, n: int
) -> tuple[int, np.ndarray]:
    """Voronoi edges piercing a facet within ``tol`` of the facet's edges, or two piercings
    closer than ``tol`` (the grains' corners on the surface); returns the count and the seeds
    (< n) around them. Brute force over edge/triangle pairs near each other (KD-tree filter)."""
    from itertools import chain

    from scipy.spatial import cKDTree

    V = vor.vertices
    rv = vor.ridge_vertices
    lens = np.fromiter(map(len, rv), int, len(rv))
    flat = np.fromiter(chain.from_iterable(rv), int, int(lens.sum()))
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(int)
    prev = np.arange(flat.size) - 1
    prev[starts] = starts + lens - 1
    a0, b0 = flat, flat[prev]
    ok = (a0 >= 0) & (b0 >= 0)
    if not ok.any():
        return 0, np.zeros(0, int)
    E = np.unique(np.column_stack([np.minimum(a0, b0)[ok], np.maximum(a0, b0)[ok]]), axis=0)
    A, B, C = P[tri[:, 0]], P[tri[:, 1]], P[tri[:, 2]]
    cen = (A + B + C) / 3.0
    rad = np.linalg.norm(np.stack([A, B, C]) - cen, axis=2).max()
    X0, X1 = V[E[:, 0]], V[E[:, 1]]
    mid, half = 0.5 * (X0 + X1), 0.5 * np.linalg.norm(X1 - X0, axis=1)
    # only edges that can reach the surface
    near = cKDTree(cen).query(mid, distance_upper_bound=np.inf)[0] < half + rad
    X0, X1, mid, half = X0[near], X1[near], mid[near], half[near]
    tree = cKDTree(cen)
    cands = tree.query_ball_point(mid, half + rad)
    nc = np.fromiter(map(len, cands), int, len(cands))
    if nc.sum() == 0:
        return 0, np.zeros(0, int)
    ei = np.repeat(np.arange(len(cands)), nc)
    ti = np.fromiter(chain.from_iterable(cands), int, int(nc.sum()))
    O, D = X0[ei], X1[ei] - X0[ei]
    a, b, c = A[ti], B[ti], C[ti]
    e1, e2 = b - a, c - a
    pv = np.cross(D, e2)
    det = np.einsum("ij,ij->i", e1, pv)
    ok = np.abs(det) > 1e-14
    inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
    tv = O - a
    u = np.einsum("ij,ij->i", tv, pv) * inv
    qv = np.cross(tv, e1)
    v = np.einsum("ij,ij->i", D, qv) * inv
    t = np.einsum("ij,ij->i", e2, qv) * inv
    hit = ok & (u >= 0) & (v >= 0) & (u + v <= 1) & (t >= 0) & (t <= 1)
    if not hit.any():
        return 0, np.zeros(0, int)
    X = O[hit] + t[hit, None] * D[hit]
    w = np.column_stack([1 - u[hit] - v[hit], u[hit], v[hit]])
    # distance to the edge opposite vertex k = w_k * (2 area) / |opposite edge|
    a, b, c = a[hit], b[hit], c[hit]
    area2 = np.linalg.norm(np.cross(b - a, c - a), axis=1)
    opp = np.column_stack(
        [
            np.linalg.norm(c - b, axis=1),
            np.linalg.norm(c - a, axis=1),
            np.linalg.norm(b - a, axis=1),
        ]
    )
    d_edge = (w * area2[:, None] / opp).min(axis=1)
    bad_pt = d_edge < tol
    pairs = (
        cKDTree(X).query_pairs(tol, output_type="ndarray") if len(X) > 1 else np.zeros((0, 2), int)
    )
    bad_pt[pairs.ravel()] = True
    count = int(np.count_nonzero(d_edge < tol)) + len(pairs)
    if not bad_pt.any():
        return count, np.zeros(0, int)
    _, idx = cKDTree(vor.points).query(X[bad_pt], k=3)
    seeds = np.unique(idx)
    return count, seeds[seeds < n]
