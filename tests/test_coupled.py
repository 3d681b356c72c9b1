"""Coupled run (x, V, u, phi): restart reproduces the uninterrupted run; 1 and N ranks agree.

Small 8-grain voxelised-Voronoi sphere in a binder shell, a fast CC/CV protocol and a large
phase-field length so that damage appears within a few dozen steps.
"""

from __future__ import annotations

import dolfinx_solver  # noqa: F401
import numpy as np
import pytest
from mpi4py import MPI
from polycrack.config import resolve_case
from polycrack.post.plots import read_table
from polycrack.verification.mech_meshes import sphere8_case, sphere8_domain
from polycrack.workflow.run import CoupledRun

pytestmark = pytest.mark.mpi

CASE = sphere8_case(
    [
        {"type": "cc", "c_rate": 1.0, "until_voltage_V": 3.95},
        {"type": "cv", "voltage_V": 3.95, "max_time_s": 120},
    ]
)
COLUMNS = (
    "time_s",
    "voltage_V",
    "current_A",
    "x_avg",
    "damage_fraction",
    "phi_max",
    "sigma1_max_Pa",
)


def _run(out, comm, case=CASE, **kw):
    rc = resolve_case(case, None)
    return CoupledRun(rc, out, comm, dom=sphere8_domain(comm), verbose=False, **kw).run()


def _max_rel(a, b, col):
    x, y = a[col], b[col]
    return float(np.max(np.abs(x - y) / np.maximum(np.abs(x), 1e-300)))


@pytest.mark.parametrize(
    "relaxation,linear,reuse",
    [
        (0.0, "mumps", "steps"),
        (60.0, "mumps", "steps"),
        (0.0, "fieldsplit", "steps"),
        (0.0, "fieldsplit", "newton"),
    ],
)
def test_restart_reproduces_uninterrupted_run(mpi_tmp_path, relaxation, linear, reuse):
    """Also with a viscous phase field (its φ_n must come back from the checkpoint), and with
    fieldsplit preconditioners kept across steps (not in the checkpoint: within the Newton
    tolerance, the same steps)."""
    comm = MPI.COMM_WORLD
    case = CASE | {
        "physics": {"phase_field_relaxation_s": relaxation},
        "solver": CASE["solver"] | {"linear": linear, "preconditioner_reuse": reuse},
    }
    full = _run(mpi_tmp_path / "full", comm, case)
    assert full["status"] == "finished"
    assert full["protocol"][0]["end_reason"] == "voltage"
    part = _run(mpi_tmp_path / "part", comm, case, stop_after_steps=7)
    assert part["status"] == "interrupted" and part["exit_code"] == 128 + 15
    assert (mpi_tmp_path / "part" / "checkpoint.npz").is_file()
    again = _run(mpi_tmp_path / "part", comm, case, restart=True)
    assert again["status"] == "finished"
    # wall time of the time loop over both segments: the first one ended with its checkpoint
    w1, w2 = part["wall_time_s"], again["wall_time_s"]
    assert w2["solve_s"] + 0.5 * w1["solve_s"] < w2["solve_s_all_segments"]
    assert w2["solve_s_all_segments"] <= w2["solve_s"] + w1["solve_s"] + 1e-9
    a = read_table(mpi_tmp_path / "full" / "timeseries.csv")
    b = read_table(mpi_tmp_path / "part" / "timeseries.csv")
    assert len(a["step"]) == len(b["step"]) > 7
    np.testing.assert_array_equal(a["step"], b["step"])
    # tolerance of the issue: 1e-8 relative (fieldsplit restarts are not bit for bit with any
    # preconditioner_reuse: 1.5e-12 measured with steps, 3e-12 with newton)
    for col in COLUMNS:
        assert _max_rel(a, b, col) <= 1e-8, (col, _max_rel(a, b, col))
    assert np.nanmax(a["damage_fraction"]) > 0  # the run does crack
    rd = read_table(mpi_tmp_path / "part" / "radial_damage.csv")
    assert len(rd["step"]) == len(b["step"])


@pytest.mark.parametrize("relaxation", [0.0, 10.0])
def test_run_of_tiny_steps_hints_at_the_phase_field_viscosity(
    mpi_tmp_path, monkeypatch, relaxation
):
    """STALL_STEPS accepted steps < STALL_DT_S: one hint in run.json, only if tau = 0."""
    import polycrack.workflow.run as cr

    monkeypatch.setattr(cr, "STALL_STEPS", 3)
    case = CASE | {
        "physics": {"phase_field_relaxation_s": relaxation},
        "solver": CASE["solver"] | {"dt_max_s": 0.5, "dt_initial_s": 0.5},
    }
    rec = _run(mpi_tmp_path, MPI.COMM_WORLD, case, stop_after_steps=4)
    warnings = rec.get("warnings", [])
    if relaxation == 0:
        assert len(warnings) == 1 and "phase_field_relaxation_s" in warnings[0]
    else:
        assert warnings == []


def test_ranks_agree(mpi_tmp_path):
    """COMM_WORLD run vs a COMM_SELF run of the same case: voltage 1e-6 rel, damage 1e-3 abs."""
    comm = MPI.COMM_WORLD
    if comm.size == 1:
        pytest.skip("needs mpirun -n 2")
    _run(mpi_tmp_path / "world", comm)
    own = mpi_tmp_path / f"self{comm.rank}"
    _run(own, MPI.COMM_SELF)
    comm.barrier()
    a = read_table(mpi_tmp_path / "world" / "timeseries.csv")
    b = read_table(own / "timeseries.csv")
    assert len(a["step"]) == len(b["step"])
    assert _max_rel(a, b, "voltage_V") <= 1e-6
    assert float(np.max(np.abs(a["damage_fraction"] - b["damage_fraction"]))) <= 1e-3


def test_auto_linear_picks_lu_for_small_and_fieldsplit_for_large_problems():
    from polycrack.problems.coupled import AUTO_MUMPS_MAX_UNKNOWNS, CoupledProblem, auto_linear

    assert auto_linear(10_000) == "mumps"
    assert auto_linear(22_000) == "fieldsplit"  # the demo
    assert auto_linear(163_000) == "fieldsplit"  # 400 grains at h = 0.4 µm
    assert auto_linear(AUTO_MUMPS_MAX_UNKNOWNS) == "mumps"
    assert auto_linear(AUTO_MUMPS_MAX_UNKNOWNS + 1) == "fieldsplit"
    rc = resolve_case({**CASE, "solver": {"linear": "auto"}}, None)
    cp = CoupledProblem(sphere8_domain(MPI.COMM_SELF), rc)
    try:
        assert cp.linear == "mumps" and 0 < cp.unknowns <= AUTO_MUMPS_MAX_UNKNOWNS
    finally:
        cp.close()


def test_fieldsplit_matches_lu(mpi_tmp_path):
    """The iterative path (GMRES + block preconditioner on a MATNEST) reproduces the exact-LU
    run through the damage onset: same steps, voltage to 1e-6 relative, damaged fraction to 1e-4
    absolute."""
    comm = MPI.COMM_WORLD
    ref = read_table(_run_case(mpi_tmp_path / "lu", comm, "mumps") / "timeseries.csv")
    out = _run_case(mpi_tmp_path / "fs", comm, "fieldsplit")
    rec = read_table(out / "timeseries.csv")
    np.testing.assert_array_equal(ref["step"], rec["step"])
    assert _max_rel(ref, rec, "voltage_V") <= 1e-6
    assert float(np.max(np.abs(ref["damage_fraction"] - rec["damage_fraction"]))) <= 1e-4
    assert np.nanmax(rec["damage_fraction"]) > 0


def test_staggered_iterative_matches_lu(mpi_tmp_path):
    """Alternate minimisation with GMRES + GAMG sub-solves (the fallback on large problems)
    reproduces the monolithic LU run: the same accepted steps (step control sees the hardest
    sub-solve, not the sum over sweeps), voltage to 1e-6 relative, damaged fraction to 1e-4."""
    comm = MPI.COMM_WORLD
    ref = read_table(_run_case(mpi_tmp_path / "lu", comm, "mumps") / "timeseries.csv")
    out = _run_case(mpi_tmp_path / "st", comm, "staggered", staggered_linear="iterative")
    rec = read_table(out / "timeseries.csv")
    np.testing.assert_array_equal(ref["step"], rec["step"])
    assert _max_rel(ref, rec, "voltage_V") <= 1e-6
    assert float(np.max(np.abs(ref["damage_fraction"] - rec["damage_fraction"]))) <= 1e-4
    assert np.nanmax(rec["damage_fraction"]) > 0


def test_idle_solver_family_released_between_fallbacks(mpi_tmp_path, monkeypatch):
    """With ``release_idle`` (problems above AUTO_MUMPS_MAX_UNKNOWNS) the monolithic solver is
    destroyed when the staggered fallback takes over and rebuilt when it is tried again, and
    the other way round; the run is the same as with both kept. The monolithic Newton gets one
    iteration (too few), so that the run switches back and forth many times."""
    import polycrack.problems.coupled as sc
    from polycrack.numerics.nonlinear import BlockNewton

    comm = MPI.COMM_WORLD
    opts = {"petsc_options": {"snes_max_it": 1}, "staggered_linear": "mumps"}
    keep = _run_case(mpi_tmp_path / "keep", comm, "mumps", **opts)
    closed = []
    close = BlockNewton.close

    def closing(self):  # the prefix now: a destroyed SNES must not be touched
        closed.append(self.snes.getOptionsPrefix())
        close(self)

    monkeypatch.setattr(BlockNewton, "close", closing)
    monkeypatch.setattr(sc, "AUTO_MUMPS_MAX_UNKNOWNS", 0)
    case = {**CASE, "solver": {**CASE["solver"], "linear": "mumps", **opts}}
    rec = _run(mpi_tmp_path / "rel", comm, case=case)
    assert rec["status"] == "finished", rec["status"]
    a = read_table(keep / "timeseries.csv")
    b = read_table(mpi_tmp_path / "rel" / "timeseries.csv")
    np.testing.assert_array_equal(a["step"], b["step"])
    for col in COLUMNS:
        np.testing.assert_allclose(b[col], a[col], rtol=1e-10, atol=1e-300, err_msg=col)
    assert rec["solver"]["staggered_solves"] > 0 and rec["solver"]["monolithic_failures"] > 2
    mono = [p for p in closed if p.startswith("coupled")]
    assert len(mono) >= 3, len(mono)  # built again after each stretch of staggered steps


def _run_case(out, comm, linear, **solver):
    case = {**CASE, "solver": {**CASE["solver"], "linear": linear, **solver}}
    rec = _run(out, comm, case=case)
    assert rec["status"] == "finished", rec["status"]
    return out


def test_signal_during_rejected_attempts_stops_with_checkpoint(mpi_tmp_path, monkeypatch):
    """SIGTERM arriving while step attempts are being rejected (here: a tight max Δφ limiter
    once damage grows) stops the run at that rejection with a checkpoint of the last accepted
    step, instead of waiting for the next accepted one; --restart then finishes the run."""
    import os
    import signal

    import polycrack.numerics.stepping as stepping

    comm = MPI.COMM_WORLD
    case = {**CASE, "solver": {**CASE["solver"], "max_dphi_per_step": 0.02}}
    rejected = stepping.AdaptiveBDF._rejected
    seen = []

    def rejected_then_signal(self, dt, kind, value, res):
        seen.append(self.t)  # time of the last accepted step
        os.kill(os.getpid(), signal.SIGTERM)
        return rejected(self, dt, kind, value, res)

    monkeypatch.setattr(stepping.AdaptiveBDF, "_rejected", rejected_then_signal)
    out = mpi_tmp_path / "run"
    rec = _run(out, comm, case=case)
    assert len(seen) == 1  # stopped at the first rejection
    assert rec["status"] == "interrupted" and rec["exit_code"] == 128 + signal.SIGTERM
    assert (out / "checkpoint.npz").is_file()
    ts = read_table(out / "timeseries.csv")
    n_rows = len(ts["step"])
    assert n_rows == rec["steps"]["accepted"] > 0
    assert ts["time_s"][-1] == pytest.approx(seen[0], rel=1e-12)  # no step after the signal
    monkeypatch.setattr(stepping.AdaptiveBDF, "_rejected", rejected)
    again = _run(out, comm, case=case, restart=True)
    assert again["status"] == "finished"
    assert len(read_table(out / "timeseries.csv")["step"]) > n_rows


def test_staggered_fallback_policy():
    """FALLBACK_AFTER monolithic failures in a row switch to staggered steps; a monolithic retry
    that fails at once doubles the staggered stretch; one that succeeds resets it."""
    from polycrack.numerics.nonlinear import NewtonResult
    from polycrack.problems.coupled import (
        FALLBACK_AFTER,
        FALLBACK_STEPS,
        CoupledProblem,
        StaggeredResult,
    )

    calls = []
    n = FALLBACK_AFTER
    script = iter([False] * n + [False, True, True])  # one entry per monolithic attempt

    class Mono:
        def solve(self):
            calls.append("m")
            return NewtonResult(next(script), 2, 3, 30, 0.0)

        def rebuild_preconditioner(self, reason):
            calls.append("r")  # a fallback leaves the monolithic preconditioner stale
            assert reason == "fallback"

    cp = object.__new__(CoupledProblem)
    cp.linear, cp.newton = "fieldsplit", Mono()
    cp.stats = {"monolithic_failures": 0}
    cp.set_fallback_state({"staggered_left": 0, "failures_in_a_row": 0})

    def staggered():
        calls.append("s")
        return StaggeredResult(True, 2, 9, 90, 0.0, 0, "staggered", 3, 3)

    cp.solve_staggered = staggered
    results = [cp.solve() for _ in range(n - 1 + FALLBACK_STEPS + 2 * FALLBACK_STEPS + 2)]
    assert "".join(calls) == (
        "m" * n + "r" + "s" * FALLBACK_STEPS + "mrs" + "s" * (2 * FALLBACK_STEPS - 1) + "mm"
    )
    assert [r.converged for r in results] == [False] * (n - 1) + [True] * (len(results) - n + 1)
    # the fallback attempt counts the failed monolithic solve's work beside the staggered one's
    fb = results[n - 1]
    assert (fb.iterations, fb.linear_iterations) == (3 + 9, 30 + 90)
    assert fb.control_iterations == 3  # step control: the staggered sub-solves only
    assert cp.fallback_steps == FALLBACK_STEPS  # reset by the successful monolithic step
    assert cp.stats["monolithic_failures"] == n + 1
    assert results[-1].control_iterations == 3


def _fake_problem(n: int = 4):
    """A CoupledProblem shell with a φ vector and no forms (for the step-control logic)."""
    from types import SimpleNamespace

    from polycrack.problems.coupled import CoupledProblem

    cp = object.__new__(CoupledProblem)
    imap = SimpleNamespace(size_local=n)
    phi = SimpleNamespace(
        x=SimpleNamespace(array=np.zeros(n)),
        function_space=SimpleNamespace(dofmap=SimpleNamespace(index_map=imap)),
    )
    history = SimpleNamespace(update=lambda *a: 0.0)
    cp.blocks = SimpleNamespace(phi=phi, phi_n=None, history=history, psi_plus=None)
    cp.dom = SimpleNamespace(mesh=SimpleNamespace(comm=MPI.COMM_SELF))
    cp.fracture, cp.entity_maps, cp.fields = True, [], [phi]
    cp.phi_committed = phi.x.array.copy()
    cp.stats = {"dphi_jumps_accepted": 0, "staggered_solves": 0, "staggered_sweeps": 0}
    cp.set_fallback_state({"staggered_left": 0, "failures_in_a_row": 0})
    cp._jump = cp.last_step_jump = False
    cp.should_stop = None
    cp.ec = SimpleNamespace(x_avg=lambda: 0.5)  # after_accept records Δε′ at x_avg
    cp.drive = SimpleNamespace(accept=lambda x: None)
    return cp


def test_dphi_limiter_accepts_a_crack_jump_only_when_dphi_does_not_shrink_with_dt():
    """max Δφ = 0.1. A Δφ that halves with dt is a resolvable increment: rejected again. A Δφ
    that stays (0.30 -> 0.29 for dt 100 -> 30 s) is an unstable crack jump: accepted at factor 1
    (no growth), reported once by after_accept, and forgotten at the next step."""
    cp = _fake_problem()
    lim = cp.dphi_limiter(0.1)
    phi = cp.blocks.phi.x.array

    phi[1] = 0.30
    assert lim(100.0) == pytest.approx(0.9 * 0.1 / 0.30)
    phi[1] = 0.15  # shrinks with dt: not a jump
    assert lim(50.0) < 1.0
    phi[1] = 0.149  # barely shrinks, but dt was only cut to 0.9x: not a jump yet
    assert lim(45.0) < 1.0
    phi[1] = 0.145
    assert lim(20.0) == 1.0  # dt 0.44x, dphi 0.97x: a jump
    cp.after_accept()
    assert cp.last_step_jump and cp.stats["dphi_jumps_accepted"] == 1

    # next step: the rejection memory is gone, so one rejection alone is not a jump
    phi[1] = 0.145 + 0.3
    assert lim(20.0) < 1.0
    phi[1] = 0.145 + 0.05
    assert lim(5.0) == pytest.approx(2.0)
    cp.after_accept()
    assert not cp.last_step_jump and cp.stats["dphi_jumps_accepted"] == 1


def test_staggered_solve_stops_between_sweeps_on_request():
    """A staggered solve that has not converged stops after the sweep in which should_stop turns
    True, restores the fields and reports failure (the stepper then checkpoints and exits)."""
    from polycrack.numerics.nonlinear import NewtonResult

    cp = _fake_problem()
    phi = cp.blocks.phi.x.array

    class Sub:
        def __init__(self, moves_phi):
            self.moves_phi = moves_phi

        def solve(self):
            if self.moves_phi:
                phi[0] += 1e-2  # never below STAGGER_TOL
            return NewtonResult(True, 2, 1, 1, 0.0)

    cp._staggered = (Sub(False), Sub(False), Sub(True))
    asked = []
    cp.should_stop = lambda: asked.append(1) or len(asked) >= 3
    res = cp.solve_staggered()
    assert not res.converged and res.message == "staggered interrupted"
    assert res.sweeps == 3 and len(asked) == 3
    assert np.all(phi == 0.0)  # back at the committed state
    # without a stop request it runs out of sweeps and says how far the sweeps were from agreeing
    cp.should_stop = None
    cp._staggered = (Sub(False), Sub(False), Sub(True))
    res = cp.solve_staggered()
    assert not res.converged and res.reason == -200
    assert res.message.startswith("staggered did not converge (max |Δφ| per sweep 1.0e-02"), res


def _numpy_crack_area(phi, gamma, l_um, center, radius_um, shells):
    """Γ_l, its GB part and Γ_l per shell of P1 fields, in numpy on the owned cells (summed over
    ranks): Γ_l exactly from the P1 mass formula int phi^2 = vol/20 (sum phi_i^2 + (sum phi_i)^2)
    and the cellwise gradient; the GB part and the shells with the degree-2 basix rule and the
    indicators [h >= 0.5], h = (1 - gamma)^2, and lo <= r/R_p < hi at its points."""
    import basix

    V, Vg = phi.function_space, gamma.function_space
    n = V.mesh.topology.index_map(3).size_local
    dofs, gdofs = V.dofmap.list[:n], Vg.dofmap.list[:n]
    X = V.tabulate_dof_coordinates()[dofs]  # (n, 4, 3), dof i at reference vertex i
    np.testing.assert_array_equal(X, Vg.tabulate_dof_coordinates()[gdofs])
    p, g = phi.x.array[dofs], gamma.x.array[gdofs]
    J = np.transpose(X[:, 1:] - X[:, :1], (0, 2, 1))  # columns: edges from vertex 0
    det = np.abs(np.linalg.det(J))
    grad = np.linalg.solve(np.transpose(J, (0, 2, 1)), (p[:, 1:] - p[:, :1])[..., None])[..., 0]
    grad2 = np.einsum("ci,ci->c", grad, grad)
    mass = det / 6 / 20 * ((p * p).sum(1) + p.sum(1) ** 2)
    area = float(np.sum(mass / (2 * l_um) + 0.5 * l_um * det / 6 * grad2))
    pts, wts = basix.make_quadrature(basix.CellType.tetrahedron, 2)
    lam = np.column_stack([1 - pts.sum(1), pts])  # (q, 4) barycentric
    pq, gq = p @ lam.T, g @ lam.T  # (n, q)
    xq = np.einsum("qi,cij->cqj", lam, X)
    dens = pq**2 / (2 * l_um) + 0.5 * l_um * grad2[:, None]
    w = dens * wts[None, :] * det[:, None]
    gb = float(np.sum(w * ((1 - gq) ** 2 >= 0.5)))
    rr = np.linalg.norm(xq - np.asarray(center)[:3], axis=2) / radius_um
    per_shell = []
    for k in range(len(shells) - 1):
        ind = (rr >= shells[k]) & ((rr < shells[k + 1]) if k < len(shells) - 2 else True)
        per_shell.append(float(np.sum(w * ind)))
    comm = MPI.COMM_WORLD
    return (
        comm.allreduce(area, op=MPI.SUM),
        comm.allreduce(gb, op=MPI.SUM),
        [comm.allreduce(s, op=MPI.SUM) for s in per_shell],
    )


def test_crack_area_columns_match_a_numpy_evaluation(mpi_tmp_path):
    """After 18 accepted steps of the coupled case (phi_max ~ 1, the first phi >= 0.95): the
    crack_area_um2 and crack_area_gb_share of timeseries.csv and the per-shell Γ_l of
    radial_damage.csv equal an independent numpy evaluation of the P1 phase field and gamma of
    that state (l = fracture.l_m in µm), to 1e-10 relative; the shells sum to Γ_l."""
    from polycrack.post.metrics import RADIAL_SHELLS

    comm = MPI.COMM_WORLD
    out = mpi_tmp_path / "run"
    rc = resolve_case(CASE, None)
    run = CoupledRun(rc, out, comm, dom=sphere8_domain(comm), verbose=False, stop_after_steps=18)
    rec = run.run()
    assert rec["status"] == "interrupted"
    pb = run.problem
    l_um = rc.params.fracture.l_m * 1e6
    area, gb, shells = _numpy_crack_area(
        pb.blocks.phi, pb.blocks.gamma, l_um, pb.dom.center, pb.dom.radius_um, RADIAL_SHELLS
    )
    ts = read_table(out / "timeseries.csv")
    rd = read_table(out / "radial_damage.csv")
    assert ts["step"][-1] == 18 and area > 10.0 and 0.0 < gb < area
    assert abs(ts["crack_area_um2"][-1] / area - 1) <= 1e-10
    assert abs(ts["crack_area_gb_share"][-1] / (gb / area) - 1) <= 1e-10
    names = [c for c in rd if c.startswith("crack_area_")]
    assert len(names) == len(shells) == len(RADIAL_SHELLS) - 1
    for name, s in zip(names, shells, strict=True):
        assert abs(rd[name][-1] - s) <= 1e-10 * area, name
    assert abs(sum(rd[c][-1] for c in names) / area - 1) <= 1e-10


def test_fieldsplit_preconditioner_reuse_same_run_fewer_setups(mpi_tmp_path):
    """solver.preconditioner_reuse: ``steps`` keeps the GAMG set-ups across Newton iterations
    and steps: the same accepted steps and values as ``off`` (a set-up every iteration) to the
    Newton tolerance, far fewer set-ups than linear solves, counted in run.json."""
    comm = MPI.COMM_WORLD
    recs, tables = {}, {}
    for mode in ("off", "steps"):
        solver = CASE["solver"] | {"linear": "fieldsplit", "preconditioner_reuse": mode}
        out = mpi_tmp_path / mode
        recs[mode] = _run(out, comm, CASE | {"solver": solver}, stop_after_steps=6)
        tables[mode] = read_table(out / "timeseries.csv")
    off, on = recs["off"]["solver"], recs["steps"]["solver"]
    assert "preconditioner" not in off
    pc = on["preconditioner"]
    assert pc["reuse"] == "steps" and pc["rebuilds"]["first"] == 1
    assert pc["setups"] + pc["reuses"] >= on["newton_iterations"]  # retries add solves
    assert pc["setups"] <= on["newton_iterations"] // 3, pc
    a, b = tables["off"], tables["steps"]
    np.testing.assert_array_equal(a["step"], b["step"])
    for col in ("time_s", "voltage_V", "x_avg"):
        assert _max_rel(a, b, col) <= 1e-7, col


def test_preconditioner_counts_survive_a_closed_solver():
    """The counts of a monolithic solver closed at a staggered fallback are added to those of
    the one built after it (run.json keeps the whole run's set-ups)."""
    from polycrack.problems.coupled import _add_counts

    a = {"reuse": "steps", "setups": 3, "reuses": 10, "rebuilds": {"first": 1, "fallback": 2}}
    b = {"reuse": "steps", "setups": 2, "reuses": 5, "rebuilds": {"first": 1, "krylov_growth": 1}}
    s = _add_counts(a, b)
    assert (s["setups"], s["reuses"]) == (5, 15)
    assert s["rebuilds"] == {"fallback": 2, "first": 2, "krylov_growth": 1}
    assert (
        _add_counts(None, b) is b and _add_counts(a, None) is a and _add_counts(None, None) is None
    )
