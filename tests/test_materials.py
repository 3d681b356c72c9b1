"""Material laws against the values stated in docs/model.md sections 3-4."""

from __future__ import annotations

import numpy as np
import pytest
import ufl
from polycrack import params
from polycrack.config import load_parameters
from polycrack.physics import materials as mat

TABLE = params.DATA_DIR / "nmc811_lattice_maerker2019.tsv"


@pytest.fixture(scope="module")
def lattice():
    return mat.LatticeStrains(TABLE)


def test_ocp_landmarks():
    assert mat.ocp_V(0.55) == pytest.approx(3.899, abs=1e-3)
    assert mat.x_at_voltage(4.5) == pytest.approx(0.18, abs=0.005)  # docs/model.md: x(4.5 V) ~ 0.18
    assert mat.ocp_V(0.33) == pytest.approx(4.18, abs=0.01)  # Δε peak near 4.18 V
    x = np.linspace(0, 1, 1001)
    assert np.all(np.diff(mat.ocp_V(x)) < 0)  # monotone decreasing
    lo, hi = mat.ocp_range_V()
    assert (lo, hi) == pytest.approx((3.4873, 4.6785), abs=1e-4)


def test_docp_matches_finite_difference():
    x = np.linspace(0.05, 0.95, 37)
    h = 1e-6
    fd = (mat.ocp_V(x + h) - mat.ocp_V(x - h)) / (2 * h)
    np.testing.assert_allclose(mat.docp_dx_V(x), fd, rtol=1e-6, atol=1e-6)


def test_exchange_current_regularised():
    c_max, c_e, m_ref, d = 63104.0, 1000.0, 3.42e-6, 1e-3
    x = np.array([0.2, 0.5, 0.9])
    exact = m_ref * c_e**0.5 * (x * c_max) ** 0.5 * ((1 - x) * c_max) ** 0.5
    np.testing.assert_allclose(mat.exchange_current_A_m2(x, c_max, c_e, m_ref, d), exact, rtol=2e-5)
    # real, positive and finite for any Newton iterate, also outside [0, 1]
    wild = np.array([-0.5, -1e-9, 0.0, 1.0, 1.0 + 1e-9, 1.7])
    i0 = mat.exchange_current_A_m2(wild, c_max, c_e, m_ref, d)
    assert np.all(np.isfinite(i0)) and np.all(i0 > 0)


def test_butler_volmer_symmetric_and_inverse():
    T = 298.15
    eta = np.linspace(-0.2, 0.2, 9)
    i = mat.butler_volmer_A_m2(eta, 2.0, T)
    np.testing.assert_allclose(i, 4.0 * np.sinh(eta * 96485.33 / (2 * 8.314462 * T)), rtol=1e-12)
    np.testing.assert_allclose(mat.overpotential_V(i, 2.0, T), eta, atol=1e-12)
    # general alphas reduce to the same for 0.5/0.5 but take the exponential branch
    np.testing.assert_allclose(
        mat.butler_volmer_A_m2(eta, 2.0, T, 0.5000001, 0.4999999), i, rtol=1e-5
    )


def test_ufl_versions_build():
    # the same functions must accept UFL expressions (used in the weak forms)
    import dolfinx_solver  # noqa: F401
    from dolfinx import mesh as dmesh
    from mpi4py import MPI

    m = dmesh.create_unit_interval(MPI.COMM_SELF, 2)
    x = ufl.SpatialCoordinate(m)[0]
    for expr in (
        mat.ocp_V(x, xp=ufl),
        mat.docp_dx_V(x, xp=ufl),
        mat.exchange_current_A_m2(x, 63104.0, 1000.0, 3.42e-6, 1e-3, xp=ufl),
        mat.butler_volmer_A_m2(x, 1.0, 298.15, xp=ufl),
    ):
        assert isinstance(expr, ufl.core.expr.Expr)


def test_lattice_landmarks(lattice):
    x = np.linspace(0.12, 1.0, 8801)
    ec, ea, de = lattice.eps_c(x), lattice.eps_a(x), lattice.delta_eps(x)
    i = np.argmax(ec)
    assert ec[i] == pytest.approx(0.0206, abs=3e-4) and x[i] == pytest.approx(0.36, abs=0.03)
    assert lattice.eps_c(0.12) == pytest.approx(-0.013, abs=3e-4)
    assert ea.min() == pytest.approx(-0.0205, abs=3e-4)
    assert np.all(np.diff(lattice.eps_a(np.linspace(1.0, 0.12, 200))) <= 1e-12)  # a shrinks
    j = np.argmax(de)
    assert de[j] == pytest.approx(0.0386, abs=3e-4) and x[j] == pytest.approx(0.33, abs=0.02)
    # eps_c = 0.015 near x = 0.55 on the rising branch
    rising = x > 0.4
    k = np.argmin(np.abs(ec[rising] - 0.015))
    assert x[rising][k] == pytest.approx(0.55, abs=0.02)
    assert lattice.eps_a(1.0) == 0.0 and lattice.eps_c(1.0) == 0.0


def test_lattice_pchip_close_to_linear():
    lin, pch = mat.LatticeStrains(TABLE), mat.LatticeStrains(TABLE, interpolation="pchip")
    x = np.linspace(0.12, 1.0, 500)
    assert np.max(np.abs(lin.eps_c(x) - pch.eps_c(x))) < 1e-3


def test_normalised_mapping_hits_end_of_collapse():
    p, _ = load_parameters(
        params.PARAMS_DIR / "nmc811_parks2023.yaml", {"mechanics.strain_mapping": "normalised"}
    )
    lat = mat.LatticeStrains.from_params(p, TABLE)
    x_end = mat.x_at_voltage(4.5)
    assert lat.data_x(x_end) == pytest.approx(0.12, abs=1e-12)
    assert lat.data_x(p.electrochemistry.x0) == pytest.approx(1.0, abs=1e-12)
    direct = mat.LatticeStrains(TABLE)
    assert lat.eps_c(x_end) == pytest.approx(direct.eps_c(0.12), abs=1e-12)


def test_c_rate_and_capacity():
    r = 7e-6
    vol = 4 / 3 * np.pi * r**3
    i1c = mat.current_1c_A(63104.0, vol)
    assert mat.c_rate_current_A(0.02, 63104.0, vol) == pytest.approx(0.02 * i1c)
    # C/50 for 1 h moves x by exactly 0.02
    dx = mat.c_rate_current_A(0.02, 63104.0, vol) * 3600 / (96485.33 * 63104.0 * vol)
    assert dx == pytest.approx(0.02, rel=1e-12)
    assert mat.capacity_mAh_g(1.0, 0.0) == pytest.approx(275.5, abs=0.1)


def test_at2_strength_and_toughness():
    s = mat.at2_strength_Pa(150e9, 5.0, 0.2e-6)
    assert s == pytest.approx(3 * np.sqrt(3) / 16 * np.sqrt(150e9 * 5.0 / 0.2e-6), rel=1e-14)
    assert mat.toughness_from_gamma(0.0, 50.0, 5.0) == 5.0
    assert mat.toughness_from_gamma(1.0, 50.0, 5.0) == 50.0
    K, mu = mat.bulk_shear(150.0, 0.3)
    lam, mu2 = mat.lame_GPa(150.0, 0.3)
    assert mu == mu2 and K == pytest.approx(lam + 2 * mu / 3)
