"""Variable-step BDF coefficients, error constants and the adaptive stepper on y' = -λ y."""

from __future__ import annotations

import basix.ufl
import dolfinx_solver  # noqa: F401
import numpy as np
import pytest
import ufl
from dolfinx import fem
from dolfinx import mesh as dmesh
from mpi4py import MPI
from polycrack.numerics.bdf import bdf_coefficients
from polycrack.numerics.nonlinear import BlockNewton
from polycrack.numerics.stepping import AdaptiveBDF, error_constants


@pytest.mark.serial
@pytest.mark.parametrize("w", [0.3, 1.0, 2.0])
def test_bdf2_exact_for_quadratics(w):
    """a0 y(t+h) + a1 y(t) + a2 y(t - h/w) = h y'(t+h) for y = 1, t, t^2 at any step ratio w."""
    h = 0.7
    a = bdf_coefficients(h, h / w, 2)
    t1, t0, tm = 1.0 + h, 1.0, 1.0 - h / w
    for y, dy in ((lambda t: 1.0, lambda t: 0.0), (lambda t: t, lambda t: 1.0),
                  (lambda t: t * t, lambda t: 2 * t)):  # fmt: skip
        assert abs(a[0] * y(t1) + a[1] * y(t0) + a[2] * y(tm) - h * dy(t1)) < 1e-13


@pytest.mark.serial
def test_error_constants_constant_step():
    """BDF2 LTE constant 2/9 vs quadratic extrapolation -1 (Milne factor 2/11); BDF1 1/2 vs -1."""
    cc, cp = error_constants(1.0, [1.0, 1.0], 2)
    assert np.isclose(cc, 2 / 9) and np.isclose(cp, -1.0)
    cc, cp = error_constants(1.0, [1.0], 1)
    assert np.isclose(cc, 0.5) and np.isclose(cp, -1.0)


def _decay(lam: float, tol: float, dt0: float, dt_max: float):
    """y' = -lam y, y(0) = 1 as one real DOF, stepped by AdaptiveBDF with a BlockNewton."""
    msh = dmesh.create_unit_interval(MPI.COMM_WORLD, 2)
    R = fem.functionspace(msh, basix.ufl.real_element(msh.basix_cell(), dtype=np.float64))
    y, yn, ynn = fem.Function(R), fem.Function(R), fem.Function(R)
    for f in (y, yn, ynn):
        f.x.array[:] = 1.0
    c = [fem.Constant(msh, np.float64(v)) for v in (1.0, -1.0, 0.0, dt0)]
    r = ufl.TestFunction(R)
    F = ((c[0] * y + c[1] * yn + c[2] * ynn) + c[3] * lam * y) * r * ufl.dx
    newton = BlockNewton([F], [y], ["real"], rtol=1e-12, atol=1e-14, name="decay")

    def set_bdf(dt, a):
        c[0].value, c[1].value, c[2].value, c[3].value = a[0], a[1], a[2], dt

    st = AdaptiveBDF([y], newton.solve, set_bdf, history={0: (yn, ynn)}, tolerances=[tol],
                     dt_min=1e-8, dt_max=dt_max)  # fmt: skip
    return st, y


def _integrate(st, t_end, dt):
    while st.t < t_end - 1e-12:
        tr = st.attempt(min(dt, t_end - st.t))
        st.commit(tr)
        dt = tr.dt_next


@pytest.mark.mpi
def test_fixed_step_bdf2_is_second_order():
    """With the error control switched off (tol huge, dt fixed), halving dt cuts the error at
    t = 1 by 4 (ratio in [3.5, 4.5]): second order after the BDF1 start-up steps."""
    errs = []
    for n in (20, 40, 80):
        h = 1.0 / n
        st, y = _decay(2.0, 1e9, h, h)
        _integrate(st, 1.0, h)
        errs.append(abs(float(y.x.array[0]) - np.exp(-2.0)))
    ratios = [errs[0] / errs[1], errs[1] / errs[2]]
    assert all(3.5 < q < 4.5 for q in ratios), (errs, ratios)


@pytest.mark.mpi
def test_adaptive_error_follows_tolerance_and_cutback():
    """The adaptive global error at t = 2 (accumulated over 40-170 steps) stays below 50x the
    per-step tolerance and falls by > 5x when the tolerance falls 100x (more steps); a step asked far too large (0.5 with λ = 3 at tol 1e-6) is rejected by the
    error estimate and cut back instead of kept. The first step after a start has no estimate
    and is only limited by dt_initial (here 1e-3)."""
    out = []
    for tol in (1e-4, 1e-6):
        st, y = _decay(3.0, tol, 1e-3, 1.0)
        _integrate(st, 2.0, 1e-3)
        out.append((abs(float(y.x.array[0]) - np.exp(-6.0)), st.stats.accepted))
    assert out[0][0] < 50 * 1e-4 and out[1][0] < 50 * 1e-6, out  # global = sum of local errors
    assert out[0][0] / out[1][0] > 5 and out[1][1] > out[0][1], out
    st, y = _decay(3.0, 1e-6, 1e-3, 1.0)
    _integrate(st, 0.01, 1e-3)
    messages: list[str] = []
    kinds: list[str] = []
    st.on_reject = messages.append
    st.after_reject = kinds.append  # the problem's solvers drop what they kept (preconditioners)
    before = st.stats.rejected_error
    tr = st.attempt(0.5)
    assert st.stats.rejected_error > 0 and tr.dt < 0.1 and tr.error <= 1.0
    # every rejected attempt is reported (progress output of long runs)
    assert len(messages) == st.stats.rejected_error - before > 0 and "local error" in messages[0]
    assert kinds == ["error"] * len(messages)


def _flaky_run(hold: int, monkeypatch) -> AdaptiveBDF:
    """y' = -y/2 stepped to t = 6 with Newton 'failing' whenever dt > 0.3, FAIL_HOLD = hold."""
    import polycrack.numerics.stepping as stepping
    from polycrack.numerics.nonlinear import NewtonResult

    monkeypatch.setattr(stepping, "FAIL_HOLD", hold)
    st, _ = _decay(0.5, 1e9, 0.1, 10.0)
    seen = {"dt": 0.1}
    set_bdf, solve = st.set_bdf, st.solve

    def set_bdf_spy(dt, a):
        seen["dt"] = dt
        set_bdf(dt, a)

    def flaky():
        return solve() if seen["dt"] <= 0.3 else NewtonResult(False, -5, 12, 0, 0.0)

    st.set_bdf, st.solve = set_bdf_spy, flaky
    _integrate(st, 6.0, 0.1)
    return st


@pytest.mark.mpi
def test_newton_failure_holds_the_step_below_the_failed_size(monkeypatch):
    """Newton 'fails' whenever dt > 0.3 (a stand-in for a crack front that Newton cannot follow
    with large steps). Without failure memory (FAIL_HOLD 0) growth x2 walks back into the
    failing size after every second accepted step (18 failures in 39 steps); with it (5),
    accepted steps stay <= FAIL_CAP x the failed dt for 5 steps: 5 failures, at least 3x fewer.
    The memory survives a checkpoint round trip (control_state)."""
    without = _flaky_run(0, monkeypatch).stats.rejected_newton
    st = _flaky_run(5, monkeypatch)
    with_memory = st.stats.rejected_newton
    assert without >= 12 and 0 < with_memory and 3 * with_memory <= without, (without, with_memory)
    st.attempt(1.0)  # fails at 1.0, accepted at 0.25
    state = st.control_state()
    assert state["fail_dt"] == pytest.approx(1.0) and state["since_fail"] == 0
    st2, _ = _decay(0.5, 1e9, 0.1, 10.0)
    st2.set_control_state(state)
    assert st2.control_state() == state
