"""Closed surface files (STL/PLY/OBJ via meshio) -> radial shape r(d) in µm.

The triangle surface must be watertight (every edge shared by exactly two triangles) and
star-shaped about its volume centroid: rays from the centroid are intersected with the triangles
(Möller-Trumbore) and a ray that crosses the surface more than once is reported as an error. The
radii are fitted with real spherical harmonics, like the CT route (meshing/shape.py). Coordinates
in the file are taken as µm times ``scale``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from .shape import RadialShape, fibonacci_directions, fit_sh


def read_triangles(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Points (n, 3) and triangles (m, 3) of a surface file; InputError if unreadable."""
    import meshio

    path = Path(path)
    if not path.exists():
        raise InputError(f"geometry.particle.file: {path}: no such file")
    try:
        m = meshio.read(path)
    except Exception as exc:  # meshio raises several types
        raise InputError(f"{path}: cannot read surface file: {exc}") from None
    tris = [c.data for c in m.cells if c.type == "triangle"]
    if not tris:
        raise InputError(f"{path}: no triangles in the surface file")
    pts = np.asarray(m.points, dtype=float)[:, :3]
    tri = np.concatenate(tris).astype(np.int64)
    # merge duplicate points (STL stores each triangle's corners separately)
    scale = max(float(np.ptp(pts, axis=0).max()), 1e-30)
    key = np.round(pts / (scale * 1e-9)).astype(np.int64)
    _, first, inv = np.unique(key, axis=0, return_index=True, return_inverse=True)
    return pts[first], inv.ravel()[tri]


def check_watertight(tri: np.ndarray, source: str) -> None:
    """Every edge in exactly two triangles, else InputError with the count of open edges."""
    e = np.sort(np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]]), axis=1)
    _, counts = np.unique(e, axis=0, return_counts=True)
    bad = int(np.count_nonzero(counts != 2))
    if bad:
        raise InputError(
            f"{source}: the surface is not watertight ({bad} edges are not shared by exactly two "
            "triangles); close the holes (e.g. MeshLab 'Close Holes') and try again"
        )


def _ray_hits(origin: np.ndarray, dirs: np.ndarray, P: np.ndarray, tri: np.ndarray):
    """Number of forward crossings and the farthest hit distance per ray."""
    A, B, C = P[tri[:, 0]] - origin, P[tri[:, 1]] - origin, P[tri[:, 2]] - origin
    e1, e2 = B - A, C - A
    nhit = np.zeros(len(dirs), dtype=int)
    tmax = np.zeros(len(dirs))
    for s in range(0, len(dirs), 64):
        d = dirs[s : s + 64]
        pvec = np.cross(d[:, None, :], e2[None])
        det = np.einsum("tj,rtj->rt", e1, pvec)
        ok = np.abs(det) > 1e-14
        inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
        tvec = -A
        u = np.einsum("tj,rtj->rt", tvec, pvec) * inv
        qvec = np.cross(tvec, e1)
        v = np.einsum("rj,tj->rt", d, qvec) * inv
        t = np.einsum("tj,tj->t", e2, qvec)[None] * inv
        hit = ok & (u >= -1e-12) & (v >= -1e-12) & (u + v <= 1 + 1e-12) & (t > 0)
        nhit[s : s + 64] = hit.sum(axis=1)
        tmax[s : s + 64] = np.where(hit, t, 0.0).max(axis=1)
    return nhit, tmax


def surface_shape(path: Path, lmax: int = 12, n_rays: int = 3000, scale: float = 1.0):
    """Radial shape of a closed, star-shaped surface file (µm), centred at its volume centroid."""
    P, tri = read_triangles(path)
    P = P * scale
    check_watertight(tri, str(path))
    A, B, C = P[tri[:, 0]], P[tri[:, 1]], P[tri[:, 2]]
    v6 = np.einsum("ij,ij->i", A, np.cross(B, C))
    vol = float(v6.sum()) / 6.0
    if abs(vol) < 1e-12:
        raise InputError(f"{path}: the surface encloses no volume")
    centroid = (v6[:, None] * (A + B + C)).sum(axis=0) / (4.0 * v6.sum())
    dirs = fibonacci_directions(n_rays)
    nhit, r = _ray_hits(centroid, dirs, P, tri)
    # a ray through an edge or vertex counts 2 hits at the same distance: tolerate ~1 % of rays
    multi = float(np.mean(nhit > 2)) + float(np.mean(nhit == 0))
    if multi > 0.01 or float(np.mean(nhit != 1)) > 0.05:
        raise InputError(
            f"{path}: the particle is not star-shaped about its centroid "
            f"({100 * float(np.mean(nhit != 1)):.1f} % of rays cross the surface more than once); "
            "the radial-morph route cannot mesh it"
        )
    keep = nhit >= 1
    coef, rms = fit_sh(dirs[keep], r[keep], lmax)
    shape = RadialShape(coef, lmax, "surface", rms, None)
    shape.surface_volume_um3 = abs(vol)
    return shape
