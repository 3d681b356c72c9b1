"""Machine-independent meshing: the same case gives the same bundle under every BLAS kernel,
BLAS thread count and CPU (issue 23; benchmarks/mesh_determinism.py measures the full grid).

Before meshing/detmath.py the demo gave 25 673-25 903 tets depending on ``OPENBLAS_CORETYPE``
(benchmarks/results/mesh_determinism_before.json): the shape fit's ``lstsq`` and the ``@`` of
the radius evaluation differ in the last bits between OpenBLAS kernels, and the tessellation and
gmsh amplify that.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from polycrack.meshing.digest import bundle_digest

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "examples" / "demo.yaml"
# the demo bundle (gmsh 4.15.2 of requirements.lock): update both with the README caption
DEMO_TETS = 25815
DEMO_SHA256 = "413ba066164f4afd6dcdadf249cb1da02edfed508bbcf7d7885ea33cb7e09a8d"
# (OPENBLAS_CORETYPE, OPENBLAS_NUM_THREADS): four kernels (Prescott = SSE3 Katmai kernels,
# Sandybridge = AVX, Haswell = AVX2 + FMA, SkylakeX = AVX-512), both thread counts; the quick
# test uses the first three
VARIANTS = [("Prescott", 1), ("Haswell", 2), ("SkylakeX", 1), ("Sandybridge", 2)]

SMALL_CASE = """\
name: small
geometry:
  particle: {source: synthetic, diameter_um: 8.0, shape_seed: 3}
  grains: {count: 6, seed: 1}
  binder_outer_diameter_um: 12.0
  mesh: {particle_size_um: 1.2, binder_size_um: 2.5}
protocol:
  - {type: cc, c_rate: 1.0, until_voltage_V: 4.2}
"""


def _mesh(case: Path, out: Path, coretype: str, threads: int) -> dict:
    """``polycrack mesh case -o out`` in a child process under the given OpenBLAS kernel and
    thread count; the bundle's content hash computed here (meshing/digest.py)."""
    env = {
        **os.environ,
        "OPENBLAS_CORETYPE": coretype,
        "OPENBLAS_NUM_THREADS": str(threads),
        "OMP_NUM_THREADS": "1",
    }
    exe = Path(sys.executable).parent / "polycrack"
    p = subprocess.run(
        [str(exe), "mesh", str(case), "-o", str(out)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert p.returncode == 0, f"{coretype}/{threads}: {p.stderr[-2000:]}"
    return bundle_digest(out)


def _assert_same(digests: dict) -> None:
    ref_key = next(iter(digests))
    ref = digests[ref_key]
    for key, d in digests.items():
        diff = [k for k in ("nodes", "cells", "tags", "grains") if d[k] != ref[k]]
        assert not diff, (
            f"{key} differs from {ref_key} in {diff} ({d['n_tets']} vs {ref['n_tets']} tets)"
        )


@pytest.mark.serial
def test_small_bundle_same_under_blas_kernels_and_threads(tmp_path):
    """A 6-grain synthetic particle under three OpenBLAS kernels and 1 / 2 threads: one hash
    (with np.linalg.lstsq in the shape fit all three differed: 2204 / 2210 / 2204 tets)."""
    case = tmp_path / "small.yaml"
    case.write_text(SMALL_CASE)
    digests = {v: _mesh(case, tmp_path / f"{v[0]}{v[1]}", *v) for v in VARIANTS[:3]}
    _assert_same(digests)


@pytest.mark.serial
@pytest.mark.slow
def test_demo_bundle_same_under_blas_kernels_and_threads(tmp_path):
    """The demo bundle under four OpenBLAS kernels and 1 / 2 threads: the pinned hash."""
    digests = {v: _mesh(DEMO, tmp_path / f"{v[0]}{v[1]}", *v) for v in VARIANTS}
    _assert_same(digests)
    d = next(iter(digests.values()))
    assert (d["n_tets"], d["bundle"]) == (DEMO_TETS, DEMO_SHA256)


@pytest.mark.serial
def test_demo_tet_count_pinned(tmp_path):
    """The demo mesh (examples/demo.yaml) has DEMO_TETS tets and the content hash DEMO_SHA256
    on every machine; mesh.json records the same hash."""
    import json

    from polycrack.config import load_case
    from polycrack.meshing import build_bundle

    out = build_bundle(load_case(DEMO, []).case.geometry, tmp_path / "demo", verbose=False)
    info = json.loads((out / "mesh.json").read_text())
    d = bundle_digest(out)
    assert info["content_sha256"] == d["bundle"]
    assert (info["tets"], d["n_tets"]) == (DEMO_TETS, DEMO_TETS)
    assert d["bundle"] == DEMO_SHA256


@pytest.mark.serial
def test_sh_basis_and_fit_match_scipy_and_lapack():
    """The IEEE-only real spherical harmonics equal the SciPy form (so the coefficients in older
    bundles' mesh.json keep their meaning) and the normal-equation fit equals LAPACK's lstsq."""
    from polycrack.meshing.detmath import cbrt, lstsq
    from polycrack.meshing.shape import _real_sh_basis, fibonacci_directions
    from scipy.special import sph_harm_y

    d = np.random.default_rng(0).normal(size=(3000, 3))
    d = np.vstack([d / np.linalg.norm(d, axis=1)[:, None], np.eye(3), -np.eye(3)])
    theta, phi = np.arccos(np.clip(d[:, 2], -1, 1)), np.arctan2(d[:, 1], d[:, 0])
    cols = []
    for l in range(13):
        for m in range(-l, l + 1):
            y = sph_harm_y(l, abs(m), theta, phi)
            part = y.imag if m < 0 else y.real
            cols.append(part if m == 0 else np.sqrt(2) * (-1) ** m * part)
    np.testing.assert_allclose(_real_sh_basis(d, 12), np.column_stack(cols), rtol=0, atol=1e-12)

    f = fibonacci_directions(6000)
    np.testing.assert_allclose(np.linalg.norm(f, axis=1), 1.0, rtol=0, atol=1e-15)
    B = _real_sh_basis(f, 12)
    r = 7.0 + 0.3 * B[:, 5] + np.random.default_rng(1).normal(0.0, 0.05, len(f))
    np.testing.assert_allclose(lstsq(B, r), np.linalg.lstsq(B, r, rcond=None)[0], atol=1e-12)
    for a in (1e-6, 0.3, 2.0, 343.0, 4.0e5):
        assert cbrt(a) == pytest.approx(a ** (1 / 3), rel=4e-16)
    assert math.isclose(cbrt(27.0), 3.0, rel_tol=0, abs_tol=0)
