"""Electrochemistry block: closed forms of docs/model.md section 6.2-6.3 on gmsh spheres (µm, s).

Serial and ``mpirun -n 2``. Coarse meshes keep every test at a few seconds.
"""

from __future__ import annotations

import dolfinx_solver  # noqa: F401
import numpy as np
import pytest
from mpi4py import MPI
from polycrack.cases import case_path
from polycrack.config import CCStep, CVStep, RestStep, SolverConfig, load_case
from polycrack.meshing.tags import INTERFACE
from polycrack.physics import materials as mat
from polycrack.physics.electrochem import Electrochemistry
from polycrack.problems.electrochemistry import electrochem_solver
from polycrack.problems.spm1d import SPM1D, crank_sphere_flux
from polycrack.verification.meshes import particle_sphere
from polycrack.workflow.protocol import ProtocolRunner

CASE = case_path("sphere_electrochem")


def _params(**over):
    sets = [f"electrochemistry.{k}={v}" for k, v in over.items()]
    return load_case(CASE, sets).params.electrochemistry


def _block(radius, h, ecp, cfg):
    msh, _, ft = particle_sphere(radius, h)
    ec = Electrochemistry(msh, ft, INTERFACE, ecp)
    newton, stepper = electrochem_solver(ec, cfg)
    return ec, stepper


def _l2(comm, form) -> float:
    from dolfinx import fem

    return float(np.sqrt(comm.allreduce(fem.assemble_scalar(fem.form(form)), op=MPI.SUM)))


@pytest.mark.mpi
@pytest.mark.verification
def test_crank_constant_flux_sphere(verification):
    """Galvanostatic CC on a sphere is Crank's constant-flux problem (docs/model.md 6.2): the 3D x
    field matches the series solution to 1 % in the relative L2 norm of x - x0 at Dt/a^2 = 0.1
    and 0.4 (a = 1 µm, D = 1 µm^2/s, 500C so that the profile amplitude is ~0.05)."""
    import ufl
    from dolfinx import fem

    a, D = 1.0, 1.0
    ecp = _params(D_m2_s=1e-12)
    cfg = SolverConfig(dt_initial_s=1e-3, dt_min_s=1e-6, dt_max_s=0.05, time_rtol=1e-4)
    ec, stepper = _block(a, 0.1, ecp, cfg)
    runner = ProtocolRunner(ec, stepper, [], cfg)
    comm = ec.comm
    t_prev = 0.0
    for k, t_end in enumerate((0.1, 0.4)):
        step = CCStep(type="cc", c_rate=500.0, until_voltage_V=4.6, max_time_s=t_end - t_prev)
        s = runner.run_step(k, step)
        t_prev = stepper.t
        assert s.end_reason == "time" and abs(stepper.t - t_end) < 1e-12
        j = float(ec.j_app.value)  # outward flux of x, µm/s
        ex = fem.Function(ec.W)
        ex.interpolate(
            lambda X, t=stepper.t, j=j: crank_sphere_flux(
                np.linalg.norm(X, axis=0), t, a, D, -j, ec.x0, nterms=100
            )
        )
        err = _l2(comm, (ec.x - ex) ** 2 * ufl.dx) / _l2(comm, (ex - ec.x0) ** 2 * ufl.dx)
        verification(f"Crank sphere L2(x - x_exact)/L2(x_exact - x0) at Dt/a^2={t_end}", err, 0.01)


def _cc_run(h: float, hours: float = 6.0):
    """C/50 CC for ``hours`` on a coarse 14 µm sphere with the baseline parameters."""
    ecp = _params()
    cfg = SolverConfig(dt_initial_s=10.0, dt_max_s=3600.0)
    ec, stepper = _block(7.0, h, ecp, cfg)
    comm = ec.comm
    rows = []

    def on_accept(n, k, trial):
        s = ec.state()
        i_n = ec.surface_current_density()
        lo = comm.allreduce(float(i_n.min(initial=np.inf)), op=MPI.MIN)
        hi = comm.allreduce(float(i_n.max(initial=-np.inf)), op=MPI.MAX)
        rows.append((stepper.t, s, lo, hi))

    runner = ProtocolRunner(ec, stepper, [], cfg, on_accept)
    step = CCStep(type="cc", c_rate=0.02, until_voltage_V=4.5, max_time_s=hours * 3600.0)
    runner.run_step(0, step)
    return ec, rows


@pytest.fixture(scope="module")
def cc_run():
    return _cc_run(1.4)


@pytest.mark.mpi
@pytest.mark.verification
def test_galvanostatic_x_avg(cc_run, verification):
    """x_avg = x0 - 0.02 t[h] during CC at C/50, to 1e-6 at every accepted step (docs/model.md 6.3)."""
    ec, rows = cc_run
    err = max(abs(s.x_avg - (ec.x0 - 0.02 * t / 3600.0)) for t, s, _, _ in rows)
    verification("C/50 CC: max |x_avg - (x0 - 0.02 t[h])|", err, 1e-6, steps=len(rows))


@pytest.mark.mpi
@pytest.mark.verification
def test_galvanostatic_current(cc_run, verification):
    """The V-row holds ∫ i_n dS = I_app to solver precision (1e-8 relative) at every step."""
    ec, rows = cc_run
    i_app = ec.I_app_A
    err_i = max(abs(s.current_A - i_app) / i_app for _, s, _, _ in rows)
    verification("C/50 CC: |∫ i_n dS - I_app| / I_app", err_i, 1e-8)


@pytest.mark.mpi
@pytest.mark.verification
def test_uniform_flux_on_sphere(cc_run, verification):
    """On a sphere i_n is uniform up to the mesh: V is one number, so nodal i_n varies only with
    x_s, whose spread on an unstructured tet mesh is an O(h^2) discretisation error; at C/50
    η ≈ 1 mV, so a 1e-4 spread of x_s (0.2 mV in U) is a ~20 % spread of i_n. Checked: the
    spread at 6 h falls by >= 2.5x (O(h^2): 4x) when h halves (1.4 -> 0.7 µm), and the
    surface-integrated current is exact (previous test)."""
    ec, rows = cc_run
    _, rows_fine = _cc_run(0.7)

    def spread(rs):
        t, s, lo, hi = rs[-1]
        return (hi - lo) / (s.current_A / ec.area_m2)

    coarse, fine = spread(rows), spread(rows_fine)
    verification(
        "C/50 CC: i_n spread ratio h=1.4/h=0.7 (>= 2.5), reported as 2.5/ratio",
        2.5 / (coarse / fine),
        1.0,
        spread_coarse=coarse,
        spread_fine=fine,
    )


@pytest.mark.mpi
@pytest.mark.verification
def test_voltage_is_ocp_plus_overpotential(cc_run, verification):
    """V = U(x_s) + (2RT/F) asinh(i_n / 2 i0(x_s)) with the surface-average x_s and i_n = I/|Γ|;
    tolerance 1e-5 V (the spread of x_s over the coarse mesh enters at second order)."""
    ec, rows = cc_run
    e = ec.ec
    err = 0.0
    for _, s, _, _ in rows:
        xs = s.x_surf_avg
        i0 = mat.exchange_current_A_m2(
            xs, e.c_max_mol_m3, e.c_e_mol_m3, e.m_ref_A_m2p5_mol1p5, e.i0_regularisation_x
        )
        v = mat.ocp_V(xs) + mat.overpotential_V(s.current_A / ec.area_m2, i0, e.T_K)
        err = max(err, abs(s.voltage_V - float(v)))
    verification("C/50 CC: |V - U(x_s) - (2RT/F) asinh(i_n/2i0)|", err, 1e-5)


@pytest.mark.mpi
@pytest.mark.verification
def test_cccv_rest_vs_1d_reference(verification):
    """Coarse 3D sphere (h = 1.2 µm) vs the 1D finite-volume model over the baseline C/50 CC to
    4.5 V, CV to C/100, 10 min rest: max |ΔV| over CC <= 2 mV, time to 4.5 V within 0.5 %, CV
    duration within 5 %; the events are hit to 1e-4 V and 1e-3 of the cut-off current, the rest
    lasts exactly 600 s at zero current with x_avg constant; <= 150 accepted steps."""
    rc = load_case(CASE)
    cfg = rc.case.solver
    ecp = rc.params.electrochemistry
    ec, stepper = _block(7.0, 1.2, ecp, cfg)
    protocol = [*rc.case.protocol, RestStep(type="rest", duration_s=600.0)]
    ts, vs, xa = [], [], []

    def on_accept(n, k, trial):
        if k == 0:
            ts.append(stepper.t)
            vs.append(ec.voltage)
        if k == 2:
            xa.append(ec.x_avg())

    runner = ProtocolRunner(ec, stepper, protocol, cfg, on_accept)
    s3 = runner.run()
    model = SPM1D(ecp, 7.0, 100)
    ref = model.run(protocol)
    dv = np.abs(np.array(vs) - ref.voltage_at(np.array(ts), model)).max()
    t45 = abs(s3[0].t_end_s - ref.steps[0]["t_end_s"]) / ref.steps[0]["t_end_s"]
    cv = abs(s3[1].duration_s - ref.steps[1]["duration_s"]) / ref.steps[1]["duration_s"]
    verification("3D vs 1D: max |ΔV| over CC [V]", dv, 2e-3)
    verification("3D vs 1D: time to 4.5 V, relative", t45, 5e-3)
    verification("3D vs 1D: CV duration, relative", cv, 5e-2)
    verification("CC stop: |V - 4.5 V|", abs(s3[0].voltage_end_V - 4.5), cfg.event_voltage_tol_V)
    i_stop = ec.c_rate_current_A(0.01)
    verification("CV stop: |I - I_stop| / I_stop", abs(s3[1].current_end_A - i_stop) / i_stop, 1e-3)
    verification("rest: |duration - 600 s|", abs(s3[2].duration_s - 600.0), 1e-9)
    verification("rest: |I| [A] (1e-8 of I_1C)", abs(s3[2].current_end_A), 1e-8 * ec.i_1c_A)
    verification("rest: x_avg drift", max(xa) - min(xa), 1e-10)
    assert s3[0].end_reason == "voltage" and s3[1].end_reason == "current"
    assert stepper.stats.accepted <= 150


@pytest.mark.mpi
def test_potentiostatic_row_and_mode_switch_without_rejit():
    """A CV step holds V = V_set exactly; switching CC <-> CV only changes Constants (the same
    compiled forms are reused: no new JIT), and the current has the sign of the overpotential."""
    ecp = _params()
    cfg = SolverConfig(dt_initial_s=50.0, dt_max_s=600.0)
    ec, stepper = _block(7.0, 1.6, ecp, cfg)
    runner = ProtocolRunner(ec, stepper, [], cfg)
    v_oc = float(mat.ocp_V(ec.x0))
    runner.run_step(0, CVStep(type="cv", voltage_V=v_oc + 0.02, max_time_s=300.0))
    assert abs(ec.voltage - (v_oc + 0.02)) < 1e-12
    assert ec.current_A() > 0  # V above the OCP: charge current
    runner.run_step(1, CVStep(type="cv", voltage_V=v_oc - 0.02, max_time_s=300.0))
    assert ec.current_A() < 0
    i_app = -ec.c_rate_current_A(0.5)
    runner.run_step(2, CCStep(type="cc", c_rate=0.5, until_voltage_V=3.0, direction="discharge",
                              max_time_s=300.0))  # fmt: skip
    assert abs(ec.current_A() - i_app) < 1e-8 * abs(i_app)
