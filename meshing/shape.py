"""Particle shapes as star-shaped radial functions r(direction) in µm (docs/user-guide.md section 4).

- sphere: r = R;
- synthetic CT-like particle: a grey-scale voxel volume of a bumpy, roughly spherical particle
  with noise and blur, segmented exactly as a scan would be (Otsu threshold, largest connected
  component, hole filling), then rays from the centroid give the surface radius and a real
  spherical-harmonic fit (``lmax``) smooths it;
- CT volumes (.npy, .npz, TIFF stack, .raw) of one particle take the same segmentation path with
  a given voxel size; electrode scans of touching particles go through meshing/ct.py instead;
- closed surface files (STL/PLY/OBJ, coordinates in µm): meshing/surface.py.

A ray that crosses the segmented surface more than once means the particle is not star-shaped;
that is reported as an error naming the fraction of such rays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..errors import InputError
from .detmath import cbrt, lstsq, norm_rows, snap

# cos and sin of the golden-angle step pi (1 + sqrt 5) and of half of it (fixed literals, so
# that the directions come from + - * / and sqrt only; see meshing/detmath.py)
_GOLDEN_COS, _GOLDEN_SIN = -0.7373688780783203, -0.6754902942615232
_HALF_COS, _HALF_SIN = 0.3623748900804798, -0.9320324238132277


@lru_cache(maxsize=8)
def _fibonacci(n: int) -> np.ndarray:
    c, s = _HALF_COS, _HALF_SIN
    cs = np.empty((n, 2))
    for k in range(n):
        cs[k] = c, s
        c, s = c * _GOLDEN_COS - s * _GOLDEN_SIN, c * _GOLDEN_SIN + s * _GOLDEN_COS
    z = 1.0 - 2.0 * (np.arange(n) + 0.5) / n
    rho = np.sqrt(1.0 - z * z)
    d = np.column_stack([rho * cs[:, 0], rho * cs[:, 1], z])
    d = d / norm_rows(d)[:, None]
    d.setflags(write=False)
    return d


def fibonacci_directions(n: int) -> np.ndarray:
    """n nearly uniform unit vectors, (n, 3): the Fibonacci spiral, azimuths by complex rotation."""
    return _fibonacci(int(n)).copy()


@lru_cache(maxsize=4)
def _sh_constants(lmax: int) -> tuple[float, ...]:
    """sqrt((2l+1)/(4 pi) (l-m)!/(l+m)!) (times sqrt 2 for m > 0), m >= 0, index l^2 + l + m."""
    out = [0.0] * (lmax + 1) ** 2
    for l in range(lmax + 1):
        for m in range(l + 1):
            v = (2 * l + 1) * math.factorial(l - m) / math.factorial(l + m) / (4.0 * math.pi)
            out[l * l + l + m] = math.sqrt(v) * (math.sqrt(2.0) if m else 1.0)
    return tuple(out)


def _real_sh_basis(dirs: np.ndarray, lmax: int) -> np.ndarray:
    """Real spherical harmonics up to lmax at unit vectors, (n, (lmax+1)^2), column l^2 + l + m.

    Y_l0 = N_l0 P_l(z); for m > 0 Y_l,+-m = sqrt2 N_lm P_l^m(z) {cos, sin}(m phi) with P_l^m
    without the Condon-Shortley phase (the real form of SciPy's ``sph_harm_y``, to 1e-14).
    Computed as polynomials in x, y, z: P_l^m(z) / sin^m by the three-term recurrence in l and
    sin^m (cos, sin)(m phi) = (x + i y)^m, so only + - * / and sqrt are used (detmath.py).
    """
    d = np.asarray(dirs, dtype=float).reshape(-1, 3)
    x, y, z = d[:, 0], d[:, 1], d[:, 2]
    N = _sh_constants(lmax)
    out = np.empty((len(d), (lmax + 1) ** 2))
    cm, sm = np.ones(len(d)), np.zeros(len(d))  # (x + i y)^m
    for m in range(lmax + 1):
        if m > 0:
            cm, sm = x * cm - y * sm, x * sm + y * cm
        q_prev = np.zeros(len(d))
        q = np.full(len(d), float(math.prod(range(1, 2 * m, 2))))  # P_m^m / sin^m = (2m-1)!!
        for l in range(m, lmax + 1):
            if l > m:
                q, q_prev = ((2 * l - 1) * z * q - (l + m - 1) * q_prev) / (l - m), q
            base = N[l * l + l + m] * q
            if m == 0:
                out[:, l * l + l] = base
            else:
                out[:, l * l + l + m] = base * cm
                out[:, l * l + l - m] = base * sm
    return out


@dataclass
class RadialShape:
    """r(d) = sum c_k Y_k(d) (µm), centred at the origin; ``kind`` and fit diagnostics."""

    coefficients: np.ndarray
    lmax: int
    kind: str = "sphere"
    fit_rms_um: float = 0.0
    voxel_volume_um3: float | None = None

    @classmethod
    def sphere(cls, radius_um: float) -> RadialShape:
        c = np.zeros(1)
        c[0] = radius_um / _real_sh_basis(np.array([[0.0, 0.0, 1.0]]), 0)[0, 0]
        return cls(c, 0, "sphere")

    def radius(self, dirs: np.ndarray) -> np.ndarray:
        """r(d) in µm for directions (n, 3) (normalised here), the same bits on every machine."""
        d = np.asarray(dirs, dtype=float).reshape(-1, 3)
        d = d / norm_rows(d)[:, None]
        B = _real_sh_basis(d, self.lmax)
        c = np.asarray(self.coefficients, dtype=float)
        r = B[:, 0] * c[0]
        for k in range(1, len(c)):
            r += B[:, k] * c[k]
        return r

    @property
    def is_sphere(self) -> bool:
        return self.lmax == 0

    def volume_um3(self, n: int = 20000) -> float:
        """Volume enclosed by r(d): (4π/3) mean(r^3) over uniform directions."""
        r = self.radius(fibonacci_directions(n))
        return 4.0 * math.pi / 3.0 * (math.fsum((r * r * r).tolist()) / n)

    def equivalent_diameter_um(self) -> float:
        return 2.0 * cbrt(3.0 * self.volume_um3() / (4.0 * math.pi))


def synthetic_ct_volume(
    diameter_um: float, voxel_um: float, seed: int, bumpiness: float = 0.08
) -> np.ndarray:
    """Grey-scale uint8 volume of a bumpy particle (random low-order harmonics), noise and blur."""
    rng = np.random.default_rng(seed)
    R = diameter_um / 2.0
    bumps = fibonacci_directions(24)[rng.permutation(24)[:12]]
    amps = rng.normal(0.0, bumpiness, size=len(bumps))
    n = int(np.ceil(1.3 * diameter_um / voxel_um)) | 1
    ax = (np.arange(n) - n // 2) * voxel_um
    X, Y, Z = np.meshgrid(ax, ax, ax, indexing="ij")
    rr = np.sqrt(X**2 + Y**2 + Z**2) + 1e-12
    rs = np.full(rr.shape, R)
    for d, a in zip(bumps, amps, strict=True):
        cosang = (X * d[0] + Y * d[1] + Z * d[2]) / rr
        rs += R * a * np.exp(-(1.0 - cosang) / 0.15)
    inside = rr <= rs
    img = np.where(inside, 170.0, 60.0) + rng.normal(0.0, 18.0, size=rr.shape)
    img = ndimage.gaussian_filter(img, 1.0)
    return np.clip(img, 0, 255).astype(np.uint8)


def segment(volume: np.ndarray, source: str = "CT volume") -> np.ndarray:
    """Otsu threshold, largest connected component, holes filled -> boolean mask."""
    from skimage.filters import threshold_otsu

    v = np.asarray(volume, dtype=float)
    if v.ndim != 3:
        raise InputError(f"{source}: expected a 3D volume, got shape {v.shape}")
    if float(v.max()) == float(v.min()):
        raise InputError(
            f"{source}: the volume is constant (empty or all foreground): nothing to segment"
        )
    mask = v > threshold_otsu(v)
    lab, n = ndimage.label(mask)
    if n == 0:
        raise InputError(f"{source}: no foreground after Otsu thresholding")
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    mask = lab == int(np.argmax(sizes))
    mask = ndimage.binary_fill_holes(mask)
    if mask.all() or mask[0, :, :].any() and mask[-1, :, :].any() and mask.mean() > 0.9:
        raise InputError(f"{source}: the particle fills the whole volume (all foreground)")
    return mask


def fit_radial(
    mask: np.ndarray, voxel_um: float, lmax: int = 12, n_rays: int = 6000
) -> RadialShape:
    """Cast rays from the mask's centroid, fit real spherical harmonics to the surface radius."""
    idx = np.argwhere(mask)
    c = idx.mean(axis=0)
    dirs = fibonacci_directions(n_rays)
    rmax = math.sqrt(sum(s * s for s in mask.shape)) * 0.5
    steps = np.arange(0.0, rmax, 0.25)
    pts = c[None, None, :] + dirs[:, None, :] * steps[None, :, None]
    inside = ndimage.map_coordinates(
        mask.astype(np.float32), pts.reshape(-1, 3).T, order=1, cval=0.0
    )
    inside = inside.reshape(n_rays, len(steps)) >= 0.5
    crossings = np.count_nonzero(np.diff(inside.astype(np.int8), axis=1) == -1, axis=1)
    multi = float(np.mean(crossings > 1))
    if multi > 0.01:
        raise InputError(
            f"the particle is not star-shaped about its centroid ({100 * multi:.1f} % of rays "
            "cross the surface more than once); the radial-morph route cannot mesh it"
        )
    last = np.array([np.flatnonzero(row)[-1] if row.any() else 0 for row in inside])
    r = (steps[last] + 0.125) * voxel_um
    coef, rms = fit_sh(dirs, r, lmax)
    return RadialShape(coef, lmax, "ct", rms, float(mask.sum()) * voxel_um**3)


def fit_sh(dirs: np.ndarray, r: np.ndarray, lmax: int) -> tuple[np.ndarray, float]:
    """Least-squares real-SH coefficients of radii ``r`` (µm) at unit ``dirs``, on the GRID_UM grid.

    Machine-independent (meshing/detmath.py): the same coefficients under any BLAS or CPU.
    Returns the coefficients and the rms residual (µm).
    """
    coef = snap(lstsq(_real_sh_basis(dirs, lmax), r))
    resid = RadialShape(coef, lmax).radius(dirs) - r
    return coef, math.sqrt(math.fsum((resid * resid).tolist()) / len(r))


def load_ct(path: Path, raw_shape=None, raw_dtype=None) -> np.ndarray:
    """A CT volume from .npy, .npz (first array), a TIFF stack (.tif/.tiff, file or folder) or .raw."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"geometry.particle.file: {path}: no such file")
    suf = path.suffix.lower()
    try:
        if suf == ".npy":
            return np.load(path)
        if suf == ".npz":  # np.savez_compressed: the first array
            with np.load(path) as z:
                if not z.files:
                    raise InputError(f"{path}: the .npz archive holds no array")
                return z[z.files[0]]
        if suf in (".tif", ".tiff") or path.is_dir():
            import tifffile

            if path.is_dir():
                files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".tif", ".tiff"))
                if not files:
                    raise InputError(f"{path}: no TIFF files in this folder")
                return np.stack([tifffile.imread(f) for f in files])
            return tifffile.imread(path)
        if suf == ".raw":
            return np.fromfile(path, dtype=np.dtype(raw_dtype)).reshape(raw_shape)
    except (ValueError, OSError) as exc:
        raise InputError(f"{path}: cannot read CT volume: {exc}") from None
    raise InputError(f"{path}: unknown CT format {suf!r} (use .npy, .npz, .tif/.tiff or .raw)")


def particle_shape(particle, lmax: int = 12) -> RadialShape:
    """The radial shape of a :class:`solver.config.ParticleConfig`."""
    if particle.source == "sphere":
        return RadialShape.sphere(particle.diameter_um / 2.0)
    if particle.source == "synthetic":
        vox = particle.diameter_um / 70.0
        vol = synthetic_ct_volume(particle.diameter_um, vox, particle.shape_seed)
        shape = fit_radial(segment(vol, "synthetic CT volume"), vox, lmax)
        shape.kind = "synthetic"
        # rescale to the requested equivalent diameter
        s = particle.diameter_um / shape.equivalent_diameter_um()
        shape.coefficients = snap(shape.coefficients * s)
        shape.fit_rms_um *= s
        return shape
    if particle.source == "ct":
        vol = load_ct(particle.file, particle.raw_shape, particle.raw_dtype)
        try:
            return fit_radial(segment(vol, str(particle.file)), particle.voxel_size_um, lmax)
        except InputError as exc:
            if "not star-shaped" not in str(exc):
                raise
            raise InputError(
                f"{particle.file}: {exc}. If the volume holds several touching particles (an "
                "electrode scan), separate them and pick one with geometry.particle.select "
                f"(`polycrack ct-particles {particle.file} --voxel-size-um ...` lists them)"
            ) from None
    if particle.source == "surface":
        from .surface import surface_shape

        return surface_shape(particle.file, lmax)
    raise InputError(
        f"geometry.particle.source: {particle.source!r} is not supported "
        "(sphere, synthetic, ct, surface)"
    )
