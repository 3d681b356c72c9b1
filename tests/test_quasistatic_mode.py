"""``physics.mode: quasistatic``: the 0-D electrochemistry against closed forms, the radial-spread
estimate against Crank's sphere, and quasi-static runs against the coupled model.

The runs use the 8-grain sphere of tests/test_coupled.py with a Li diffusivity 1000 times the
parameter set's (4e-12 m²/s), so that at 1C the coupled model's x is nearly uniform
(x_avg - x_surf = 2.3e-4 by the quasi-steady estimate): there the two modes must agree.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import dolfinx_solver  # noqa: F401
import numpy as np
import pytest
from dolfinx import mesh as dmesh
from mpi4py import MPI
from polycrack.config import CCStep, resolve_case
from polycrack.numerics.stepping import AdaptiveBDF
from polycrack.physics import materials as mat
from polycrack.physics.mechanics import ParticleDomain
from polycrack.physics.uniform_electrochem import UniformElectrochemistry
from polycrack.post.plots import read_table
from polycrack.problems.electrochemistry import x_tolerance
from polycrack.problems.spm1d import SPM1D, crank_sphere_flux
from polycrack.verification.mech_meshes import voronoi_sphere
from polycrack.workflow.protocol import ProtocolRunner
from polycrack.workflow.run import CoupledRun
from polycrack.workflow.summary import QUASISTATIC_SPREAD_LIMIT, quasistatic_warning

R_UM = 7.0  # sphere of the 0-D tests, µm
PROTOCOL_0D = [
    {"type": "cc", "c_rate": 0.02, "until_voltage_V": 4.0},
    {"type": "cv", "voltage_V": 4.0, "max_time_s": 600.0},
    {"type": "rest", "duration_s": 100.0},
]
CASE = {
    "geometry": {"particle": {"source": "sphere"}, "grains": {"count": 8}},
    "material": {
        "overrides": {
            "fracture.l_m": 2.0e-6,
            "fracture.l_gamma_m": 2.0e-6,
            "fracture.Gc_GB_J_m2": 1.0,
            "electrochemistry.D_m2_s": 4.0e-12,
        }
    },
    "protocol": [
        {"type": "cc", "c_rate": 1.0, "until_voltage_V": 3.95},
        {"type": "cv", "voltage_V": 3.95, "max_time_s": 120},
    ],
    "solver": {"linear": "mumps", "dt_max_s": 600.0, "dt_initial_s": 5.0},
    "output": {"fields_at_voltages_V": [], "checkpoint_every_steps": 0},
}
COLUMNS = ("time_s", "voltage_V", "current_A", "x_avg", "damage_fraction", "phi_max")


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
def test_uniform_electrochemistry_cc_and_rest_closed_forms():
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
    assert np.max(np.abs(x[cc] - x_exact[cc])) < 1e-12
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
    assert np.max(np.abs(V[cc] - V_exact)) < 1e-12
    assert np.max(np.abs(current[cc] / I_app - 1.0)) < 1e-12
    assert abs(V[cc][-1] - 4.0) <= 1e-4  # the cc event (solver.event_voltage_tol_V)
    assert np.count_nonzero(cc) < 40  # x is exact: steps grow to dt_max
    assert np.max(np.abs(V[rest] - mat.ocp_V(x[rest], model=p.ocp))) < 1e-12
    assert np.ptp(x[rest]) < 1e-15 and np.max(np.abs(current[rest])) < 1e-20


@pytest.mark.mpi
def test_uniform_electrochemistry_cv_decays_at_the_linearised_rate():
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
    assert abs(rate / lam - 1.0) < 2e-3, (rate, lam)
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
def test_quasi_steady_li_spread_is_the_long_time_limit_of_crank():
    """x_avg - x_surf of Crank's constant-flux sphere at t = 3 R²/D (the series has decayed to
    e^-60) against c_rate R² / (15 D 3600 s): 1e-9 relative (Gauss-Legendre average, exact for
    the quadratic profile); and the finite-volume sphere (SPM1D, 200 cells) after 20 h at C/50
    with the parameter set's D against the same estimate: 1 %."""
    R, D, c_rate = 7.0, 4.0e-3, 0.02  # µm, µm²/s (4e-15 m²/s), 1/h
    est = mat.quasi_steady_li_spread(c_rate, R * 1e-6, D * 1e-12)
    assert abs(est - 0.00454) < 1e-5
    F0 = -c_rate * R / (3.0 * 3600.0)  # D dx/dr at r = R: Li leaves, µm/s
    g, w = np.polynomial.legendre.leggauss(8)
    r = 0.5 * R * (g + 1.0)
    x = crank_sphere_flux(r, 3.0 * R**2 / D, R, D, F0, C0=0.9)
    avg = np.sum(w * r**2 * x) / np.sum(w * r**2)
    surf = crank_sphere_flux(np.array([R]), 3.0 * R**2 / D, R, D, F0, C0=0.9)[0]
    assert abs((avg - surf) / est - 1.0) < 1e-9
    p = resolve_case({"protocol": [PROTOCOL_0D[0]]}, None).params.electrochemistry
    step = CCStep(type="cc", c_rate=c_rate, until_voltage_V=4.4, max_time_s=20 * 3600.0)
    res = SPM1D(p, R, n_cells=200).run([step])
    spread = res.x_avg[-1] - res.x_surf[-1]
    assert abs(spread / est - 1.0) < 0.01, spread


def test_check_warns_about_quasistatic_mode_at_fast_charges():
    """The warning names the estimate and the limit; none for coupled runs or slow charges."""
    base = {"protocol": [{"type": "cc", "c_rate": 0.02, "until_voltage_V": 4.2}]}
    assert quasistatic_warning(resolve_case(base, None)) is None
    slow = resolve_case(base | {"physics": {"mode": "quasistatic"}}, None)
    assert quasistatic_warning(slow) is None  # 0.0045 at C/50
    fast = resolve_case(
        base | {"physics": {"mode": "quasistatic"}}, None, ["protocol.0.c_rate=0.1"]
    )
    msg = quasistatic_warning(fast)
    assert msg is not None and "0.0227" in msg and f"> {QUASISTATIC_SPREAD_LIMIT:g}" in msg
    coupled = resolve_case(base, None, ["protocol.0.c_rate=0.1"])
    assert quasistatic_warning(coupled) is None


# -- runs ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def runs():
    """A coupled and a quasi-static run of CASE into one directory shared by all ranks."""
    comm = MPI.COMM_WORLD
    path = tempfile.mkdtemp(prefix="polycrack-qs-") if comm.rank == 0 else None
    path = Path(comm.bcast(path, root=0))
    out = {}
    for mode in ("coupled", "quasistatic"):
        rec = _run(path / mode, comm, mode)
        out[mode] = (rec, read_table(path / mode / "timeseries.csv"))
    yield path, out
    comm.barrier()
    if comm.rank == 0:
        shutil.rmtree(path, ignore_errors=True)


def _domain(comm):
    msh, ct, ft, axes = voronoi_sphere(n_grains=8, h_particle=2.0, h_binder=4.0, comm=comm)
    return ParticleDomain.build(msh, ct, ft, axes)


def _run(out, comm, mode, **kw):
    rc = resolve_case(CASE | {"physics": {"mode": mode}}, None)
    return CoupledRun(rc, out, comm, dom=_domain(comm), verbose=False, **kw).run()


def _onset(t: dict) -> float:
    """Voltage at which phi_max reaches 0.95, interpolated linearly between the two steps that
    bracket it (the first such step alone moves with the step sizes: 3.794 vs 3.828 V here)."""
    hit = np.flatnonzero(t["phi_max"] >= 0.95)
    assert hit.size and hit[0] > 0, "no damage onset"
    k = hit[0]
    p0, p1 = t["phi_max"][k - 1], t["phi_max"][k]
    v0, v1 = t["voltage_V"][k - 1], t["voltage_V"][k]
    return float(v0 + (0.95 - p0) / (p1 - p0) * (v1 - v0))


@pytest.mark.mpi
def test_quasistatic_matches_coupled_when_diffusion_is_fast(runs):
    """Fast diffusion (x_avg - x_surf 2.4e-4 in the coupled run): the coupled cc voltage within
    1 mV of the quasi-static one at the same charge (measured 0.35 mV), the onset voltage
    (phi_max = 0.95, interpolated) within 5 mV (measured 3.4 mV: the two runs take different
    steps, 35 mV apart there) and the final damaged fraction within 2 % (measured 0.15 %)."""
    _, out = runs
    (rc_c, a), (rc_q, b) = out["coupled"], out["quasistatic"]
    assert rc_c["status"] == rc_q["status"] == "finished"
    assert rc_q["kind"] == "quasistatic" and rc_c["kind"] == "coupled"
    assert rc_q["mesh"]["dofs"]["x"] == 1 and rc_q["mesh"]["dofs"]["V"] == 1
    assert rc_q["mesh"]["current_1C_A"] == rc_c["mesh"]["current_1C_A"]
    np.testing.assert_array_equal(b["x_surf_min"], b["x_avg"])
    np.testing.assert_array_equal(b["x_surf_max"], b["x_avg"])
    spread = float(np.max(a["x_avg"] - a["x_surf_min"]))
    assert spread < 3e-4  # the regime of the comparison
    # the quasi-static voltage at the coupled run's charge: U(x) + η(I/A, x) at its x_avg and I
    p = resolve_case(CASE, None).params.electrochemistry
    area_m2 = rc_q["mesh"]["interface_area_um2"] * 1e-12

    def v_qs(t):
        x, i = t["x_avg"], t["current_A"] / area_m2
        i0 = mat.exchange_current_A_m2(
            x, p.c_max_mol_m3, p.c_e_mol_m3, p.m_ref_A_m2p5_mol1p5, p.i0_regularisation_x
        )
        return mat.ocp_V(x, model=p.ocp) + mat.overpotential_V(i, i0, p.T_K)

    cc_a, cc_b = a["protocol_step"] == 0, b["protocol_step"] == 0
    assert np.max(np.abs(v_qs(b)[cc_b] - b["voltage_V"][cc_b])) < 1e-12
    dv = float(np.max(np.abs(v_qs(a)[cc_a] - a["voltage_V"][cc_a])))
    onset = abs(_onset(a) - _onset(b))
    da, db = a["damage_fraction"][-1], b["damage_fraction"][-1]
    assert dv < 1e-3
    assert onset < 5e-3
    assert da > 0.01 and abs(db / da - 1.0) < 0.02
    assert (Path(runs[0]) / "quasistatic" / "radial_damage.csv").is_file()


@pytest.mark.mpi
def test_quasistatic_restart_reproduces_uninterrupted_run(runs, mpi_tmp_path):
    comm = MPI.COMM_WORLD
    full = runs[1]["quasistatic"][1]
    part = _run(mpi_tmp_path, comm, "quasistatic", stop_after_steps=7)
    assert part["status"] == "interrupted"
    again = _run(mpi_tmp_path, comm, "quasistatic", restart=True)
    assert again["status"] == "finished" and again["kind"] == "quasistatic"
    b = read_table(mpi_tmp_path / "timeseries.csv")
    np.testing.assert_array_equal(full["step"], b["step"])
    for col in COLUMNS:
        x, y = full[col], b[col]
        rel = np.max(np.abs(x - y) / np.maximum(np.abs(x), 1e-300))
        assert rel <= 1e-8, col
