"""1D spherical finite-volume reference: Crank's closed form, conservation, grid convergence."""

from __future__ import annotations

import numpy as np
import pytest
from polycrack.cases import case_path
from polycrack.config import CCStep, CVStep, load_case
from polycrack.physics import materials as mat
from polycrack.problems.spm1d import SPM1D, crank_roots, crank_sphere_flux

CASE = case_path("sphere_electrochem")


def _ecp(**over):
    return load_case(
        CASE, [f"electrochemistry.{k}={v}" for k, v in over.items()]
    ).params.electrochemistry


@pytest.mark.serial
def test_crank_roots_and_long_time_profile():
    """tan a = a roots of docs/model.md 6.2, and the long-time profile C - C_avg = (F0 a/D)(r^2/2a^2 - 3/10)."""
    assert np.allclose(crank_roots(3), [4.493409, 7.725252, 10.904122], atol=1e-6)
    r = np.linspace(0, 1, 11)
    c = crank_sphere_flux(r, 10.0, 1.0, 1.0, 0.3)
    avg = 3 * 0.3 * 10.0  # 3 F0 t / a
    assert np.allclose(c - avg, 0.3 * (r**2 / 2 - 0.3), atol=1e-12)


@pytest.mark.serial
@pytest.mark.verification
def test_spm1d_matches_crank(verification):
    """A 1D CC run (a = 1 µm, D = 1 µm^2/s, 500C) is Crank's constant-flux sphere: max error of
    x(r) <= 1e-3 of the profile amplitude at Dt/a^2 = 0.05 and 0.4 (200 cells)."""
    ecp = _ecp(D_m2_s=1e-12)
    m = SPM1D(ecp, 1.0, 200)
    for t in (0.05, 0.4):
        step = CCStep(type="cc", c_rate=500.0, until_voltage_V=4.6, max_time_s=t)
        res = m.run([step])
        y = res.dense[0][2](t)
        j = 500.0 * (1.0 / 3.0) / 3600.0  # outward flux of x, µm/s
        ex = crank_sphere_flux(m.r, t, 1.0, 1.0, -j, ecp.x0)
        amp = j * 1.0 / 1.0
        verification(
            f"1D FV vs Crank, max |Δx| / (F0 a/D) at Dt/a^2={t}", np.abs(y - ex).max() / amp, 1e-3
        )


@pytest.mark.serial
@pytest.mark.verification
def test_spm1d_conservation_and_grid_convergence(verification):
    """x_avg = x0 - 0.02 t[h] at C/50 (to 1e-9), and the time to 4.5 V / CV duration change by
    < 1e-4 / 1e-3 relative between 100 and 200 cells (the reference is converged)."""
    rc = load_case(CASE)
    ecp = rc.params.electrochemistry
    r100 = SPM1D(ecp, 7.0, 100).run(rc.case.protocol)
    r200 = SPM1D(ecp, 7.0, 200).run(rc.case.protocol)
    cc = r200.t <= r200.steps[0]["t_end_s"]
    err = np.abs(r200.x_avg[cc] - (ecp.x0 - 0.02 * r200.t[cc] / 3600)).max()
    verification("1D C/50: max |x_avg - (x0 - 0.02 t[h])|", err, 1e-9)
    d45 = abs(r100.steps[0]["t_end_s"] / r200.steps[0]["t_end_s"] - 1)
    dcv = abs(r100.steps[1]["duration_s"] / r200.steps[1]["duration_s"] - 1)
    verification("1D grid 100 vs 200 cells: time to 4.5 V", d45, 1e-4)
    verification("1D grid 100 vs 200 cells: CV duration", dcv, 1e-3)
    v_end = r200.voltage[cc][-1]
    assert abs(v_end - 4.5) < 1e-6
    i_stop = 0.01 * SPM1D(ecp, 7.0).i_1c_A
    assert abs(r200.current_A[-1] - i_stop) < 1e-6 * i_stop


@pytest.mark.serial
def test_spm1d_voltage_is_ocp_plus_overpotential():
    """During CC the reported V is U(x_s) + (2RT/F) asinh(i_n / 2 i0(x_s)); in CV the current is
    the Butler-Volmer current at V_set (consistency of the two modes)."""
    ecp = _ecp()
    m = SPM1D(ecp, 7.0, 50)
    res = m.run([CCStep(type="cc", c_rate=0.1, until_voltage_V=4.0),
                 CVStep(type="cv", voltage_V=4.0, max_time_s=600.0)])  # fmt: skip
    n_cc = int(np.sum(res.t <= res.steps[0]["t_end_s"]))
    xs, v, i = res.x_surf[:n_cc], res.voltage[:n_cc], res.current_A[:n_cc] / m.area_m2
    i0 = m.i0(xs)
    assert np.allclose(v, mat.ocp_V(xs) + mat.overpotential_V(i, i0, ecp.T_K), atol=1e-12)
    xs, i = res.x_surf[n_cc:], res.current_A[n_cc:] / m.area_m2
    vt = mat.thermal_voltage_V(ecp.T_K)
    assert np.allclose(i, 2 * m.i0(xs) * np.sinh((4.0 - mat.ocp_V(xs)) / (2 * vt)), rtol=1e-12)
