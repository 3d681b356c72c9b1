"""Quasi-static mode: the uniform (0-D) electrochemistry and the radial-spread estimate against
closed forms (docs/model.md sections 6.11-6.12).

The 0-D model runs through the run's adaptive BDF stepper and protocol runner on a one-cell mesh
(which only carries its one-DOF real space); serial and ``mpirun -n 2`` (every rank computes the
same numbers). The spread estimate is checked against Crank's sphere and the 1D reference (1 rank).
"""

from __future__ import annotations

import dolfinx_solver  # noqa: F401
import numpy as np
import pytest
from dolfinx import mesh as dmesh
from mpi4py import MPI
from polycrack.config import CCStep, resolve_case
from polycrack.numerics.stepping import AdaptiveBDF
from polycrack.physics import materials as mat
from polycrack.physics.uniform_electrochem import UniformElectrochemistry
from polycrack.problems.electrochemistry import x_tolerance
from polycrack.problems.spm1d import SPM1D, crank_sphere_flux
from polycrack.workflow.protocol import ProtocolRunner

R_UM = 7.0  # sphere of the 0-D tests, µm
PROTOCOL_0D = [
    {"type": "cc", "c_rate": 0.02, "until_voltage_V": 4.0},
    {"type": "cv", "voltage_V": 4.0, "max_time_s": 600.0},
    {"type": "rest", "duration_s": 100.0},
]


# -- the 0-D electrochemistry --------------------------------------------------------------------
def _run_0d(comm, protocol=PROTOCOL_0D, time_rtol=1e-3):
    """The uniform model of a 7 µm sphere through ``protocol`` with the run's stepper and
    protocol runner; returns (model, parameters, rows of (t, protocol step, x, V, I))."""
    rc = resolve_case({"protocol": protocol, "solver": {"time_rtol": time_rtol}}, None)
    ec = UniformElectrochemistry(
        dmesh.create_unit_cube(comm, 1, 1, 1),
        4.0 / 3.0 * np.pi * R_UM**3,
        4.0 * np.pi * R_UM**2,
        rc.params.electrochemistry,
    )
    cfg = rc.case.solver
    st = AdaptiveBDF(
        ec.unknowns,
        ec.solve,
        ec.set_bdf,
        history={0: (ec.x_n, ec.x_nn)},
        tolerances=[x_tolerance(ec, cfg), None],
        dt_min=cfg.dt_min_s,
        dt_max=cfg.dt_max_s,
    )
    rows = []

    def on_accept(step_no, k, trial):
        s = ec.state()
        assert s.x_surf_min == s.x_surf_max == s.x_avg == ec.x_value
        rows.append((st.t, k, s.x_avg, s.voltage_V, s.current_A))

    ProtocolRunner(ec, st, rc.case.protocol, cfg, on_accept).run()
    return ec, rc.params.electrochemistry, np.array(rows)


@pytest.mark.mpi
@pytest.mark.verification
def test_uniform_electrochemistry_cc_and_rest_closed_forms(verification):
    """CC: x = x0 - I t / (F c_max V_p) to 1e-12 and V = U(x) + (2RT/F) asinh(i / 2 i0(x)) to
    1e-12 V, i0 = m_ref c_e^0.5 c_max (s(x) s(1 - x))^0.5 with the parameter set's smooth clip
    s(y) = (y + (y² + δ²)^0.5) / 2 (without it V moves by up to 1.5e-8 V near x0); rest:
    V = U(x), x frozen, current 0."""
    ec, p, rows = _run_0d(MPI.COMM_WORLD)
    t, k, x, V, current = rows.T
    cc, rest = k == 0, k == 2
    I_app = 0.02 * mat.FARADAY_C_MOL * p.c_max_mol_m3 * ec.volume_m3 / 3600.0
    assert abs(ec.c_rate_current_A(0.02) / I_app - 1.0) < 1e-14
    x_exact = p.x0 - I_app * t / (mat.FARADAY_C_MOL * p.c_max_mol_m3 * ec.volume_m3)
    verification("0-D cc: max |x - (x0 - I t/Q)|", np.max(np.abs(x[cc] - x_exact[cc])), 1e-12)
    i = I_app / (4.0 * np.pi * (R_UM * 1e-6) ** 2)
    xc, d = x[cc], p.i0_regularisation_x
    clip = lambda y: 0.5 * (y + np.sqrt(y * y + d * d))  # noqa: E731
    i0 = (
        p.m_ref_A_m2p5_mol1p5
        * p.c_e_mol_m3**0.5
        * p.c_max_mol_m3
        * np.sqrt(clip(xc) * clip(1 - xc))
    )
    vt = mat.GAS_CONSTANT_J_MOL_K * p.T_K / mat.FARADAY_C_MOL
    V_exact = mat.ocp_V(xc, model=p.ocp) + 2.0 * vt * np.arcsinh(i / (2.0 * i0))
    verification(
        "0-D cc: max |V - U(x) - (2RT/F) asinh(i/2i0)| (V)", np.max(np.abs(V[cc] - V_exact)), 1e-12
    )
    assert np.max(np.abs(current[cc] / I_app - 1.0)) < 1e-12
    assert abs(V[cc][-1] - 4.0) <= 1e-4  # the cc event (solver.event_voltage_tol_V)
    assert np.count_nonzero(cc) < 40  # x is exact: steps grow to dt_max
    assert np.max(np.abs(V[rest] - mat.ocp_V(x[rest], model=p.ocp))) < 1e-12
    assert np.ptp(x[rest]) < 1e-15 and np.max(np.abs(current[rest])) < 1e-20


@pytest.mark.mpi
@pytest.mark.verification
def test_uniform_electrochemistry_cv_decays_at_the_linearised_rate(verification):
    """CV at V_set after C/50: i/i0 ~ 0.02, so i = i0 η / (RT/F) and η = |U'(x_eq)| (x - x_eq)
    make the current decay as exp(-λ t), λ = A i0(x_eq) |U'(x_eq)| F / (RT Q) (73 s here). The
    rate fitted to log I while I falls from 1/2 to 1/1000 of its start is within 0.2 % of λ at
    solver.time_rtol 1e-7 (measured 0.04 %; at the default 1e-3 the x tolerance of 1e-6 is
    larger than x - x_eq late in the hold and the rate is 10 % off)."""
    ec, p, rows = _run_0d(MPI.COMM_WORLD, PROTOCOL_0D[:2], time_rtol=1e-7)
    t, k, x, V, current = rows.T
    cv = k == 1
    assert np.all(V[cv] == 4.0)
    x_eq = mat.x_at_voltage(4.0, p.ocp)
    vt = mat.GAS_CONSTANT_J_MOL_K * p.T_K / mat.FARADAY_C_MOL
    lam = ec.area_m2 * ec.i0(x_eq) * abs(mat.docp_dx_V(x_eq, model=p.ocp)) / (vt * ec.capacity_C)
    tc, ic = t[cv], current[cv]
    fit = (ic < 0.5 * ic[0]) & (ic > 1e-3 * ic[0])
    rate = -np.polyfit(tc[fit], np.log(ic[fit]), 1)[0]
    verification("0-D cv: current decay rate / linearised rate - 1", abs(rate / lam - 1.0), 2e-3)
    assert np.all(np.diff(ic) < 0.0)
    decay = np.exp(-lam * (tc[-1] - tc[0]))
    assert abs((x[cv][-1] - x_eq) / ((x[cv][0] - x_eq) * decay) - 1.0) < 0.05


@pytest.mark.mpi
def test_uniform_electrochemistry_cv_step_solves_the_bdf_equation():
    """One potentiostatic BDF1 step from x_n: a0 x - x_n + dt (A/Q) i_BV(V_set - U(x), i0(x)) = 0
    to 1e-14 (the root find), V = V_set."""
    _, p, _ = _run_0d(MPI.COMM_WORLD, PROTOCOL_0D[:1])
    ec = UniformElectrochemistry(
        dmesh.create_unit_cube(MPI.COMM_WORLD, 1, 1, 1), 1436.76, 615.75, p, x0=0.5
    )
    ec.set_potentiostatic(4.0)
    ec.set_bdf(30.0, (1.0, -1.0, 0.0))
    res = ec.solve()
    assert res.converged and ec.voltage == 4.0
    xv = ec.x_value
    resid = xv - 0.5 + 30.0 * ec.area_m2 / ec.capacity_C * ec.current_density(xv, 4.0)
    assert abs(resid) < 1e-14 and xv < 0.5
    assert np.all(ec.x_field.x.array == xv)


# -- the radial-spread estimate -----------------------------------------------------------------
@pytest.mark.serial
@pytest.mark.verification
def test_quasi_steady_li_spread_is_the_long_time_limit_of_crank(verification):
    """x_avg - x_surf of Crank's constant-flux sphere at t = 3 R²/D (the series has decayed to
    e^-60) against c_rate R² / (15 D 3600 s): 1e-9 relative (Gauss-Legendre average, exact for
    the quadratic profile; measured 7e-15); and the finite-volume sphere (SPM1D, 200 cells)
    after 20 h at C/50 with the parameter set's D (0.00454): 1e-4 relative (measured 2.1e-5,
    second order in the cell size: 8.3e-5 at 100 cells)."""
    R, D, c_rate = 7.0, 4.0e-3, 0.02  # µm, µm²/s (4e-15 m²/s), 1/h
    est = mat.quasi_steady_li_spread(c_rate, R * 1e-6, D * 1e-12)
    assert abs(est - 0.00454) < 1e-5
    F0 = -c_rate * R / (3.0 * 3600.0)  # D dx/dr at r = R: Li leaves, µm/s
    g, w = np.polynomial.legendre.leggauss(8)
    r = 0.5 * R * (g + 1.0)
    x = crank_sphere_flux(r, 3.0 * R**2 / D, R, D, F0, C0=0.9)
    avg = np.sum(w * r**2 * x) / np.sum(w * r**2)
    surf = crank_sphere_flux(np.array([R]), 3.0 * R**2 / D, R, D, F0, C0=0.9)[0]
    verification("quasi-steady spread vs Crank at t = 3R^2/D", abs((avg - surf) / est - 1.0), 1e-9)
    p = resolve_case({"protocol": [PROTOCOL_0D[0]]}, None).params.electrochemistry
    step = CCStep(type="cc", c_rate=c_rate, until_voltage_V=4.4, max_time_s=20 * 3600.0)
    res = SPM1D(p, R, n_cells=200).run([step])
    spread = res.x_avg[-1] - res.x_surf[-1]
    verification("quasi-steady spread vs 1D reference, C/50, 20 h", abs(spread / est - 1.0), 1e-4)
