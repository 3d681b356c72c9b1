"""Electrode CT volumes: separate touching particles, list them, pick one for meshing.

A real scan holds many particles that touch each other and the binder, so the largest connected
component of the particle phase is the particle network, not a particle. Route:

1. **Segmentation** -> boolean phase mask: ``label_value`` N for a segmented (labelled) volume
   (voxels equal to N), else Otsu's threshold on grey values (voxels above it). Holes enclosed by
   the phase are filled.
2. **Optional resampling** to an isotropic voxel of ``resample_um`` (linear interpolation of the
   mask, threshold 0.5).
3. **Distance-transform watershed** (scipy.ndimage EDT in µm, so anisotropic voxels are handled;
   scikit-image ``feature.peak_local_max`` and ``segmentation.watershed``). *Minimum particle
   size*: a particle is a watershed basin grown from a maximum of the distance map that is deeper
   than ``min_diameter_um / 2`` (its largest inscribed ball is wider than ``min_diameter_um``) and
   is the highest point within ``min_diameter_um / 2`` around it (an ellipsoidal neighbourhood in
   voxels); equal maxima closer than that are one marker. Two touching particles are split where
   their distance maps meet, i.e. at the neck; a neck whose inscribed ball is not much narrower
   than ``min_diameter_um`` is not split. Phase voxels with no such maximum in their connected
   piece (fragments smaller than the minimum) belong to no particle and are counted as
   "unassigned".
4. **Label table**: labels 1..n by decreasing volume; per particle the voxel volume (µm³), the
   equivalent diameter (µm), the centroid (µm, axis order 0, 1, 2 of the array, origin at the
   outer corner of voxel (0, 0, 0): voxel (i, j, k) spans [i s0, (i+1) s0) x ...), the sphericity
   pi^(1/3) (6V)^(2/3) / A (V and A of the marching-cubes surface of the mask smoothed by a
   Gaussian of one voxel, within 1 % of 1 for voxelised balls of radius >= 4 voxels) and whether
   it touches the crop border (then its shape is cut by the crop, not the particle's).
5. **Selection** (``geometry.particle.select``): by label, by a voxel index or a µm coordinate the
   particle contains, or the largest particle not touching the border; a particle touching the
   border is refused unless ``allow_border``.
6. **Extraction**: the particle's own mask (resampled to isotropic voxels if needed) goes through
   the radial route of meshing/shape.py (rays from its centroid, spherical-harmonic fit) or, when
   it is not star-shaped, through the faceted route (meshing/faceted.py) with its marching-cubes
   surface.
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..errors import InputError
from .detmath import cbrt, snap

#: default minimum particle size (µm): suits NMC secondary particles (5-20 µm) of electrode scans
DEFAULT_MIN_DIAMETER_UM = 4.0


def voxel_sizes(voxel_size_um, source: str = "voxel_size_um") -> np.ndarray:
    """Voxel edge lengths (µm) along axes 0, 1, 2 from one value or three."""
    v = np.atleast_1d(np.asarray(voxel_size_um, dtype=float)).ravel()
    if v.size == 1:
        v = np.repeat(v, 3)
    if v.size != 3 or not np.all(np.isfinite(v)) or np.any(v <= 0):
        raise InputError(
            f"{source}: need one positive voxel size or three (axis 0, 1, 2), got {voxel_size_um!r}"
        )
    return v


def phase_mask(
    volume: np.ndarray, label_value: int | None = None, source: str = "CT volume"
) -> tuple[np.ndarray, str]:
    """Boolean mask of the particle phase (holes filled) and a description of the rule used.

    Args:
        volume: 3D array, grey values or labels.
        label_value: the particle phase's label in a segmented volume; None: Otsu threshold.
        source: file name for messages.
    Returns:
        (mask, rule), e.g. ``"label 1"`` or ``"grey value > 117.5 (Otsu)"``.
    """
    from skimage.filters import threshold_otsu

    v = np.asarray(volume)
    if v.ndim != 3:
        raise InputError(f"{source}: expected a 3D volume, got shape {v.shape}")
    vmin, vmax = v.min(), v.max()
    if vmin == vmax:
        raise InputError(
            f"{source}: the volume has one phase only (every voxel is {vmin}); nothing to separate"
        )
    small_int = v.dtype.kind in "ui" and int(vmax) - int(vmin) < 256
    values = (
        np.flatnonzero(np.bincount((v.astype(np.int64) - int(vmin)).ravel())) + int(vmin)
        if small_int
        else None
    )
    if label_value is None:
        if values is not None and 3 <= len(values) <= 16:
            raise InputError(
                f"{source}: looks segmented (values {', '.join(map(str, values))}); give the "
                "particle phase's label (label_value / --label-value) instead of an Otsu threshold"
            )
        t = float(threshold_otsu(v))
        mask, rule = v > t, f"grey value > {t:g} (Otsu)"
    else:
        present = values if values is not None else np.unique(v)
        if label_value not in present:
            shown = ", ".join(map(str, present[:16])) + (" ..." if len(present) > 16 else "")
            raise InputError(
                f"{source}: label_value {label_value} does not occur in the volume (values: {shown})"
            )
        mask, rule = v == label_value, f"label {label_value}"
    mask = ndimage.binary_fill_holes(mask)
    if mask.all():
        raise InputError(
            f"{source}: the volume has one phase only ({rule} fills it after hole filling); "
            "nothing to separate"
        )
    return mask, rule


def resample_mask(
    mask: np.ndarray, vox: np.ndarray, target_um: float
) -> tuple[np.ndarray, np.ndarray]:
    """Mask on a grid of (about) ``target_um`` voxels: linear interpolation, threshold 0.5.

    A new voxel at least half inside counts as inside: coarsening by a factor of 2 puts every
    new voxel centre on an old voxel face, and then adds about 2 % to the volume of 8 µm
    particles (tests/test_ct.py). Returns the new mask and its exact voxel sizes (the extent is
    kept: n_old s_old = n_new s_new).
    """
    shape = np.array(mask.shape)
    new = np.maximum(1, np.round(shape * vox / target_um)).astype(int)
    if np.array_equal(new, shape):
        return mask, vox
    f = ndimage.zoom(mask.astype(np.float32), new / shape, order=1, grid_mode=True, mode="nearest")
    return f >= 0.5, vox * shape / np.array(f.shape)


def _ellipsoid_footprint(semi: np.ndarray) -> np.ndarray:
    """Boolean ellipsoid with semi-axes ``semi`` (voxels), at least 3 voxels wide."""
    h = np.maximum(np.floor(semi), 1).astype(int)
    g = np.meshgrid(
        *(np.arange(-k, k + 1) / s for k, s in zip(h, semi, strict=True)), indexing="ij"
    )
    return (g[0] ** 2 + g[1] ** 2 + g[2] ** 2) <= 1.0 + 1e-9


def sphericity(mask: np.ndarray, vox: np.ndarray) -> float:
    """pi^(1/3) (6V)^(2/3) / A of the marching-cubes surface of the Gaussian-smoothed mask."""
    from skimage.measure import marching_cubes, mesh_surface_area

    sigma = float(vox.min()) / vox
    f = ndimage.gaussian_filter(np.pad(mask, 3).astype(np.float32), sigma)
    if f.max() <= 0.5:  # a particle thinner than the smoothing: no surface at 0.5
        return float("nan")
    P, tri, _, _ = marching_cubes(f, 0.5, spacing=tuple(vox))
    A = mesh_surface_area(P, tri)
    a, b, c = P[tri[:, 0]], P[tri[:, 1]], P[tri[:, 2]]
    V = abs(float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum())) / 6.0
    return float(np.pi ** (1 / 3) * (6.0 * V) ** (2 / 3) / A)


@dataclass
class Particle:
    """One row of the label table (lengths µm, volumes µm³, centroid in the scan's frame)."""

    label: int
    voxels: int
    volume_um3: float
    equivalent_diameter_um: float
    centroid_um: tuple[float, float, float]
    sphericity: float
    touches_border: bool
    bbox: tuple[tuple[int, int], ...] = field(repr=False)  # [start, stop) per axis

    def row(self) -> dict:
        d = asdict(self)
        d["centroid_um"] = list(self.centroid_um)
        d["bbox"] = [list(b) for b in self.bbox]
        return d


@dataclass
class Separation:
    """A separated volume: label image (0 = no particle), voxel sizes and the label table."""

    labels: np.ndarray
    voxel_um: np.ndarray
    particles: list[Particle]
    rule: str
    min_diameter_um: float
    phase_voxels: int
    source: str
    scan_voxel_um: np.ndarray  # voxel sizes of the scan before resampling
    scan_shape: tuple[int, int, int]

    @property
    def unassigned_voxels(self) -> int:
        return self.phase_voxels - int(sum(p.voxels for p in self.particles))

    @property
    def interior(self) -> list[Particle]:
        return [p for p in self.particles if not p.touches_border]

    def get(self, label: int) -> Particle:
        if not 1 <= label <= len(self.particles):
            raise InputError(
                f"{self.source}: geometry.particle.select.label: no particle {label} "
                f"(labels 1..{len(self.particles)}; `polycrack ct-particles` lists them)"
            )
        return self.particles[label - 1]

    def summary(self) -> dict:
        """JSON-ready description (no per-particle rows)."""
        return {
            "file": self.source,
            "scan_shape": list(self.scan_shape),
            "scan_voxel_size_um": self.scan_voxel_um.tolist(),
            "voxel_size_um": self.voxel_um.tolist(),
            "phase": self.rule,
            "min_diameter_um": self.min_diameter_um,
            "particles": len(self.particles),
            "interior_particles": len(self.interior),
            "phase_volume_um3": self.phase_voxels * float(np.prod(self.voxel_um)),
            "unassigned_phase_fraction": self.unassigned_voxels / max(self.phase_voxels, 1),
        }

    def table(self) -> str:
        """The label table as aligned text, with a header line about the separation."""
        s = self.summary()
        head = (
            f"{self.source}: shape {tuple(self.labels.shape)}, voxel "
            f"{' x '.join(f'{v:g}' for v in self.voxel_um)} µm, phase {self.rule}, "
            f"min_diameter_um {self.min_diameter_um:g}: {s['particles']} particles, "
            f"{s['interior_particles']} not touching the border; "
            f"{100 * s['unassigned_phase_fraction']:.1f} % of the phase in no particle"
        )
        cols = "label  volume_um3  eq_diameter_um  centroid_um (axis 0, 1, 2)  sphericity  border"
        lines = [head, cols]
        for p in self.particles:
            c = ", ".join(f"{x:6.2f}" for x in p.centroid_um)
            lines.append(
                f"{p.label:5d}  {p.volume_um3:10.1f}  {p.equivalent_diameter_um:14.2f}  "
                f"({c})    {p.sphericity:10.3f}  {'yes' if p.touches_border else 'no':>6}"
            )
        return "\n".join(lines)

    def write_csv(self, path: Path) -> None:
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(
                [
                    "label",
                    "volume_um3",
                    "equivalent_diameter_um",
                    "centroid_0_um",
                    "centroid_1_um",
                    "centroid_2_um",
                    "sphericity",
                    "touches_border",
                ]
            )
            for p in self.particles:
                w.writerow(
                    [
                        p.label,
                        p.volume_um3,
                        p.equivalent_diameter_um,
                        *p.centroid_um,
                        p.sphericity,
                        int(p.touches_border),
                    ]
                )

    def particle_mask(self, label: int, pad: int = 2) -> np.ndarray:
        """The particle's voxels in its bounding box plus ``pad`` empty voxels on every side."""
        p = self.get(label)
        box = self.labels[tuple(slice(a, b) for a, b in p.bbox)] == label
        return np.pad(box, pad)


def separate(
    mask: np.ndarray,
    voxel_um: np.ndarray,
    min_diameter_um: float = DEFAULT_MIN_DIAMETER_UM,
    source: str = "CT volume",
) -> tuple[np.ndarray, int]:
    """Distance-transform watershed of a phase mask (module docstring, step 3).

    Returns:
        (labels, count): int32 label image, 0 outside every particle, 1..count by decreasing
        voxel count (ties: the particle whose first voxel comes first in C order).
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    vox = np.asarray(voxel_um, dtype=float)
    r = 0.5 * float(min_diameter_um)
    dist = ndimage.distance_transform_edt(mask, sampling=vox)
    deepest = float(dist.max())
    if deepest <= r:
        raise InputError(
            f"{source}: no particle of the requested size: the widest ball inside the phase has "
            f"a diameter of {2 * deepest:.2f} µm, min_diameter_um is {min_diameter_um:g} µm; lower "
            "min_diameter_um (--min-diameter-um) or check voxel_size_um"
        )
    peaks = peak_local_max(
        dist, footprint=_ellipsoid_footprint(r / vox), threshold_abs=r, exclude_border=False
    )
    # equal maxima (plateaus) closer than r are one marker
    pairs = cKDTree(peaks * vox).query_pairs(r, output_type="ndarray")
    graph = coo_matrix(
        (np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(peaks), len(peaks))
    )
    _, group = connected_components(graph, directed=False)
    markers = np.zeros(mask.shape, np.int32)
    markers[tuple(peaks.T)] = group + 1
    lab = watershed(-dist, markers, mask=mask)
    # renumber: decreasing voxel count, ties by first voxel in C order
    counts = np.bincount(lab.ravel())
    flat = lab.ravel()
    nz = np.flatnonzero(flat)
    first = np.full(counts.size, flat.size, dtype=np.int64)
    np.minimum.at(first, flat[nz], nz)
    ids = np.arange(1, counts.size)
    ids = ids[counts[1:] > 0]
    order = ids[np.lexsort((first[ids], -counts[ids]))]
    new = np.zeros(counts.size, np.int32)
    new[order] = np.arange(1, order.size + 1, dtype=np.int32)
    return new[lab], int(order.size)


def label_table(labels: np.ndarray, vox: np.ndarray) -> list[Particle]:
    """Volume, equivalent diameter, centroid, sphericity and border flag of labels 1..n."""
    out = []
    shape = labels.shape
    for k, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        box = labels[sl] == k
        n = int(box.sum())
        start = np.array([s.start for s in sl])
        c = (np.argwhere(box).mean(axis=0) + start + 0.5) * vox
        V = n * float(np.prod(vox))
        out.append(
            Particle(
                label=k,
                voxels=n,
                volume_um3=V,
                equivalent_diameter_um=cbrt(6.0 * V / np.pi),  # feeds the rescale: no libm
                centroid_um=tuple(float(x) for x in c),
                sphericity=sphericity(box, vox),
                touches_border=any(
                    s.start == 0 or s.stop == m for s, m in zip(sl, shape, strict=True)
                ),
                bbox=tuple((int(s.start), int(s.stop)) for s in sl),
            )
        )
    return out


def separate_volume(
    volume: np.ndarray,
    voxel_size_um,
    *,
    label_value: int | None = None,
    min_diameter_um: float = DEFAULT_MIN_DIAMETER_UM,
    resample_um: float | None = None,
    source: str = "CT volume",
) -> Separation:
    """Segment, optionally resample, separate and tabulate a CT volume (module docstring).

    Args:
        volume: 3D grey-scale or labelled array.
        voxel_size_um: voxel edge (µm), one value or three (axis 0, 1, 2).
        label_value: particle phase label of a segmented volume; None: Otsu.
        min_diameter_um: minimum particle size (µm), see :func:`separate`.
        resample_um: isotropic voxel (µm) to resample the phase mask to first; None: keep.
        source: file name for messages.
    """
    vox0 = voxel_sizes(voxel_size_um, f"{source}: voxel_size_um")
    mask, rule = phase_mask(volume, label_value, source)
    vox = vox0
    if resample_um is not None:
        mask, vox = resample_mask(mask, vox0, float(resample_um))
        if not mask.any() or mask.all():
            raise InputError(
                f"{source}: resample_um = {resample_um:g} µm leaves one phase only "
                f"(grid {mask.shape}); use a smaller resample_um"
            )
    labels, _ = separate(mask, vox, min_diameter_um, source)
    return Separation(
        labels=labels,
        voxel_um=vox,
        particles=label_table(labels, vox),
        rule=rule,
        min_diameter_um=float(min_diameter_um),
        phase_voxels=int(mask.sum()),
        source=source,
        scan_voxel_um=vox0,
        scan_shape=tuple(int(n) for n in np.shape(volume)),
    )


def _voxel_of(sep: Separation, point_um: np.ndarray, what: str) -> tuple[int, ...]:
    """The (possibly resampled) voxel holding a point in µm, or InputError if outside."""
    idx = np.floor(np.asarray(point_um, float) / sep.voxel_um).astype(int)
    extent = np.array(sep.labels.shape) * sep.voxel_um
    if np.any(idx < 0) or np.any(idx >= np.array(sep.labels.shape)):
        raise InputError(
            f"{sep.source}: geometry.particle.select.{what} lies outside the volume "
            f"(extent {', '.join(f'{e:g}' for e in extent)} µm along axes 0, 1, 2)"
        )
    return tuple(int(i) for i in idx)


def _nearest_particle(sep: Separation, idx: tuple[int, ...]) -> str:
    """', nearest particle: label N, x µm away' (or '' if there is none)."""
    if not sep.particles:
        return ""
    _, ind = ndimage.distance_transform_edt(
        sep.labels == 0, sampling=sep.voxel_um, return_indices=True
    )
    near = tuple(int(ind[a][idx]) for a in range(3))
    d = float(np.linalg.norm((np.array(near) - np.array(idx)) * sep.voxel_um))
    k = int(sep.labels[near])
    return f"; the nearest particle is label {k}, {d:.2f} µm away"


def select_particle(sep: Separation, select, allow_border: bool = False) -> tuple[Particle, dict]:
    """The particle named by a selection (``label``, ``voxel``, ``point_um`` or
    ``largest_interior``, duck-typed: solver.config.CTSelection) and a record of how.

    Raises InputError for an unknown label, a point outside the volume or in no particle, no
    particle inside the crop, or a particle touching the border when ``allow_border`` is False.
    """
    src = sep.source
    if getattr(select, "largest_interior", False):
        inner = sep.interior
        if not inner:
            raise InputError(
                f"{src}: geometry.particle.select: largest_interior: all {len(sep.particles)} "
                f"particles of at least min_diameter_um = {sep.min_diameter_um:g} µm touch the "
                "crop border; pick one by label with allow_border: true, or use a larger crop"
            )
        p, how = inner[0], {"by": "largest_interior"}
    elif getattr(select, "label", None) is not None:
        p, how = sep.get(int(select.label)), {"by": "label", "label": int(select.label)}
    else:
        if getattr(select, "voxel", None) is not None:
            v = np.asarray(select.voxel, int)
            what = f"voxel {list(map(int, v))}"
            if np.any(v < 0) or np.any(v >= np.array(sep.scan_shape)):
                raise InputError(
                    f"{src}: geometry.particle.select.{what} lies outside the volume "
                    f"(shape {list(sep.scan_shape)})"
                )
            point = (v + 0.5) * sep.scan_voxel_um
            how = {"by": "voxel", "voxel": v.tolist()}
        elif getattr(select, "point_um", None) is not None:
            point = np.asarray(select.point_um, float)
            what = f"point_um {point.tolist()}"
            how = {"by": "point_um", "point_um": point.tolist()}
        else:
            raise InputError(
                f"{src}: geometry.particle.select: give one of label, voxel, point_um or "
                "largest_interior"
            )
        idx = _voxel_of(sep, point, what)
        k = int(sep.labels[idx])
        if k == 0:
            raise InputError(
                f"{src}: geometry.particle.select.{what} lies in no particle (pore, another "
                f"phase, or a fragment narrower than min_diameter_um = {sep.min_diameter_um:g} "
                f"µm){_nearest_particle(sep, idx)}"
            )
        p = sep.get(k)
    if p.touches_border and not allow_border:
        raise InputError(
            f"{src}: particle {p.label} ({p.equivalent_diameter_um:.2f} µm) touches the crop "
            "border, so its shape is cut by the crop; pick an interior particle (`polycrack "
            "ct-particles` lists them) or set geometry.particle.allow_border: true"
        )
    how["label"] = p.label
    return p, how


def isotropic_mask(mask: np.ndarray, vox: np.ndarray) -> tuple[np.ndarray, float]:
    """The mask on isotropic voxels of the smallest edge (unchanged if already isotropic)."""
    if np.allclose(vox, vox[0], rtol=1e-9):
        return mask, float(vox[0])
    m, v = resample_mask(mask, vox, float(vox.min()))
    return m, float(v.mean())


def mask_surface(mask: np.ndarray, vox: float) -> tuple[np.ndarray, np.ndarray]:
    """Closed marching-cubes surface (µm) of a mask on isotropic voxels: points, triangles.

    The mask is smoothed by a Gaussian of half a voxel first (the staircase of a binary mask
    otherwise leaves many coplanar slivers for the decimation).
    """
    from skimage.measure import marching_cubes

    f = ndimage.gaussian_filter(np.pad(mask, 3).astype(np.float32), 0.5)
    P, tri, _, _ = marching_cubes(f, 0.5, spacing=(vox, vox, vox))
    return P.astype(float), tri.astype(np.int64)


def faceted_particle(mask: np.ndarray, vox: float, h_um: float, scale: float, source: str):
    """The faceted-route surface (meshing/faceted.py) of a particle mask, scaled by ``scale``.

    Quadric decimation of a marching-cubes surface sometimes leaves edges that are not shared
    by exactly two triangles (and OCC then fails); the facet count is raised until it does not
    (at most 2000 facets), else InputError.
    """
    from .faceted import centred_surface
    from .surface import check_watertight

    P, tri = mask_surface(mask, vox)
    h = float(h_um)
    for _ in range(8):
        surf = centred_surface(P * scale, tri, h, source)
        try:
            check_watertight(surf.triangles, source)
            return surf
        except InputError:
            if len(surf.triangles) >= 1990:
                break
            h /= 1.25
    raise InputError(
        f"{source}: the decimated marching-cubes surface is not watertight at any facet count "
        "up to 2000; this particle cannot take the faceted route"
    )


@dataclass
class CTParticle:
    """An extracted particle: a radial shape or a faceted surface, and its mesh.json record."""

    shape: object | None
    faceted: object | None
    record: dict


def ct_geometry(particle, h_um: float, lmax: int = 12, verbose: bool = False) -> CTParticle:
    """Load, separate, select and extract the particle of ``geometry.particle`` (source ct).

    Args:
        particle: solver.config.ParticleConfig with ``select`` set.
        h_um: target element size in the particle (µm; sets the faceted route's facet count).
        lmax: spherical-harmonic degree of the radial fit.
    Returns:
        CTParticle; lengths in µm, rescaled to ``rescale_to_diameter_um`` if that is set.
    """
    from .shape import fit_radial, load_ct

    src = str(particle.file)
    vol = load_ct(particle.file, particle.raw_shape, particle.raw_dtype)
    sep = separate_volume(
        vol,
        particle.voxel_size_um,
        label_value=particle.label_value,
        min_diameter_um=particle.min_diameter_um,
        resample_um=particle.resample_um,
        source=src,
    )
    p, how = select_particle(sep, particle.select, particle.allow_border)
    mask, vox = isotropic_mask(sep.particle_mask(p.label), sep.voxel_um)
    scale = 1.0
    target = getattr(particle, "rescale_to_diameter_um", None)
    if target is not None:
        scale = float(target) / p.equivalent_diameter_um
    shape = faceted = None
    try:
        shape = fit_radial(mask, vox, lmax)
        shape.kind = "ct"
        shape.coefficients = snap(shape.coefficients * scale)  # detmath.GRID_UM, like fit_sh
        shape.fit_rms_um *= scale
        shape.voxel_volume_um3 = p.volume_um3 * scale**3
        route = "radial"
    except InputError as exc:
        if "not star-shaped" not in str(exc):
            raise
        faceted = faceted_particle(mask, vox, h_um, scale, f"{src} particle {p.label}")
        route = "faceted"
        if verbose:
            print(
                f"{src}: particle {p.label} is not star-shaped ({exc}) -> faceted-surface route "
                f"({len(faceted.triangles)} facets from its marching-cubes surface)"
            )
    record = {
        **sep.summary(),
        "selection": how,
        "allow_border": bool(particle.allow_border),
        "particle": p.row(),
        "route": route,
        "scale": scale,
        "segmented_volume_um3": p.volume_um3 * scale**3,
    }
    return CTParticle(shape, faceted, record)


def preview(sep: Separation, path: Path, title: str | None = None) -> Path:
    """Mid-plane slices (normal to axes 0, 1, 2) coloured by particle, labels at the centroids
    of their sections (bold: interior particles, grey italics: touching the border); PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from skimage.segmentation import find_boundaries

    lab = sep.labels
    n = len(sep.particles)
    rng = np.random.default_rng(0)
    colours = np.vstack([[0.08, 0.08, 0.08], 0.25 + 0.75 * rng.random((n, 3))])
    border = np.array([False] + [p.touches_border for p in sep.particles])
    fig, axes = plt.subplots(1, 3, figsize=(15, 5.4))
    names = ("axis 0", "axis 1", "axis 2")
    for a, ax in enumerate(axes):
        mid = lab.shape[a] // 2
        sl = np.take(lab, mid, axis=a)
        rest = [i for i in range(3) if i != a]
        rgb = colours[sl].copy()
        rgb[border[sl]] *= 0.55  # border particles darker
        rgb[find_boundaries(sl, mode="inner")] = 1.0
        ext = [
            0,
            lab.shape[rest[1]] * sep.voxel_um[rest[1]],
            lab.shape[rest[0]] * sep.voxel_um[rest[0]],
            0,
        ]
        ax.imshow(rgb, extent=ext, interpolation="nearest")
        for k in np.unique(sl[sl > 0]):
            # the label goes on the section's point farthest from its edge (inside, even if
            # the section is not convex); sections of a few pixels get none
            inside = ndimage.distance_transform_edt(
                np.pad(sl == k, 1), sampling=sep.voxel_um[rest]
            )[1:-1, 1:-1]
            if inside.max() < 2.0 * sep.voxel_um[rest].max():
                continue
            ij = np.array(np.unravel_index(np.argmax(inside), inside.shape)) + 0.5
            y, x = ij[0] * sep.voxel_um[rest[0]], ij[1] * sep.voxel_um[rest[1]]
            edge = border[k]
            ax.text(
                x,
                y,
                str(k),
                ha="center",
                va="center",
                fontsize=7 if edge else 9,
                color="0.8" if edge else "white",
                fontweight="normal" if edge else "bold",
                fontstyle="italic" if edge else "normal",
            )
        ax.set_title(f"{names[a]} = {(mid + 0.5) * sep.voxel_um[a]:.1f} µm (slice {mid})")
        ax.set_xlabel(f"axis {rest[1]} (µm)")
        ax.set_ylabel(f"axis {rest[0]} (µm)")
    fig.suptitle(
        title
        or f"{Path(sep.source).name}: {n} particles ({len(sep.interior)} interior, bold; "
        "border particles darker, italic)"
    )
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
