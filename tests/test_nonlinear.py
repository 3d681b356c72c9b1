"""BlockNewton: the three linear-solver options give the same coupled solution (1 and 2 ranks).

Toy system on a box, with the structure of the real one: a vector field u (elasticity with an
eigenstrain alpha*c), a scalar c (nonlinear reaction-diffusion with a boundary source V) and one
global unknown V in a real space that enforces the mean of c.
"""

from __future__ import annotations

import basix.ufl
import dolfinx_solver  # noqa: F401
import numpy as np
import pytest
import ufl
from dolfinx import fem, mesh
from mpi4py import MPI
from petsc4py import PETSc
from polycrack.numerics.nonlinear import BlockNewton

pytestmark = pytest.mark.mpi
TARGET = 0.7


def _system(linear, **kw):
    comm = MPI.COMM_WORLD
    m = mesh.create_box(comm, [[0, 0, 0], [2.0, 1.0, 1.0]], [8, 4, 4], mesh.CellType.tetrahedron)
    Vu = fem.functionspace(m, ("Lagrange", 1, (3,)))
    Vc = fem.functionspace(m, ("Lagrange", 1))
    R = fem.functionspace(m, basix.ufl.real_element(m.basix_cell(), dtype=np.float64))
    u, c, V = fem.Function(Vu), fem.Function(Vc), fem.Function(R)
    v, q, r = ufl.TestFunction(Vu), ufl.TestFunction(Vc), ufl.TestFunction(R)
    lam, mu, alpha = 100.0, 60.0, 0.05

    def eps(w):
        return ufl.sym(ufl.grad(w))

    ee = eps(u) - alpha * c * ufl.Identity(3)
    sig = lam * ufl.tr(ee) * ufl.Identity(3) + 2 * mu * ee
    X = ufl.SpatialCoordinate(m)
    F_u = ufl.inner(sig, eps(v)) * ufl.dx
    # c / dt: the BDF mass term of the real Li-content block (dt = 1), which keeps that block
    # nonsingular on its own (fieldsplit preconditions it by GAMG, apart from V)
    F_c = (ufl.inner(ufl.grad(c), ufl.grad(q)) + (c + c**3) * q - X[0] * q) * ufl.dx
    F_c -= V * q * ufl.ds
    # like a galvanostatic Butler-Volmer row, the V-row depends on V (nonzero diagonal)
    F_V = (c - TARGET + 0.01 * ufl.sinh(V)) * r * ufl.dx
    left = mesh.locate_entities_boundary(m, 2, lambda p: np.isclose(p[0], 0.0))
    bc = fem.dirichletbc(np.zeros(3), fem.locate_dofs_topological(Vu, 2, left), Vu)
    newton = BlockNewton(
        [F_u, F_c, F_V],
        [u, c, V],
        ["vector", "scalar", "real"],
        bcs=[bc],
        linear=linear,
        groups=[[1, 2], [0]],  # c, then V, then u (fieldsplit sweep)
        **kw,
    )
    return newton, (u, c, V)


def test_linear_options_agree():
    comm = MPI.COMM_WORLD
    sols = {}
    for linear in ("mumps", "mumps_lagged", "fieldsplit"):
        newton, (u, c, V) = _system(linear)
        res = newton.solve()
        assert res.converged, (linear, res)
        mean_c = comm.allreduce(fem.assemble_scalar(fem.form(c * ufl.dx)), op=MPI.SUM) / 2.0
        vv = float(V.x.array[0])
        assert mean_c == pytest.approx(TARGET - 0.01 * np.sinh(vv), abs=1e-9), linear
        assert abs(vv) > 1e-3  # the constraint is active
        sols[linear] = (u.x.array.copy(), c.x.array.copy(), float(V.x.array[0]), res)
    ref = sols["mumps"]
    for linear in ("mumps_lagged", "fieldsplit"):
        for a, b in zip(sols[linear][:3], ref[:3], strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8, err_msg=linear)
    # the lagged LU factorises once, the fresh LU every Newton iteration
    assert ref[3].factorisations == ref[3].iterations >= 3
    assert sols["mumps_lagged"][3].factorisations == 1
    assert sols["fieldsplit"][3].linear_iterations > 0


def test_user_petsc_options_win():
    """solver.petsc_options reach the outer Krylov solver and the fieldsplit sub-solvers, over
    polycrack's own choices (here: the u split by unsmoothed aggregation, and an outer budget of
    two Krylov iterations, too few to converge)."""
    newton, _ = _system(
        "fieldsplit",
        petsc_options={"ksp_max_it": 2, "fieldsplit_f0_pc_gamg_agg_nsmooths": 0},
    )
    ksp = newton.snes.getKSP()
    assert ksp.getTolerances()[3] == 2
    res = newton.solve()
    assert not res.converged
    sub = {k.getOptionsPrefix(): k for k in ksp.getPC().getFieldSplitSubKSP()}
    u_pc = next(k for p, k in sub.items() if p.endswith("fieldsplit_f0_")).getPC()
    opts = PETSc.Options(u_pc.getOptionsPrefix())
    assert opts.getInt("pc_gamg_agg_nsmooths") == 0


def test_flag_options_and_refused_options(capsys):
    """``True`` is PETSc's bare flag: a viewer option (snes_monitor) takes it, and the monitor
    prints; an option PETSc refuses at set-up is an InputError naming solver.petsc_options
    (exit code 2 at the command line), on every rank."""
    from polycrack.errors import InputError

    newton, _ = _system("mumps", petsc_options={"snes_monitor": True})
    assert newton.solve().converged
    if MPI.COMM_WORLD.rank == 0:
        assert "SNES Function norm" in capsys.readouterr().out
    with pytest.raises(InputError, match="solver.petsc_options: PETSc refused"):
        _system("mumps", petsc_options={"snes_monitor": 5})


def _product_types(newton: BlockNewton) -> dict[str, list[int]]:
    """MatProductGetType (0: none, 4: PtAP) of every GAMG coarse operator, by split prefix."""
    import ctypes

    get = ctypes.CDLL(PETSc.__file__).MatProductGetType
    get.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int)]
    out = {}
    for k in newton.snes.getKSP().getPC().getFieldSplitSubKSP():
        pc = k.getPC()
        if pc.getType() != "gamg":
            continue
        types = []
        for level in range(pc.getMGLevels() - 1):
            t = ctypes.c_int(-1)
            assert get(pc.getMGSmoother(level).getOperators()[0].handle, ctypes.byref(t)) == 0
            types.append(t.value)
        out[k.getOptionsPrefix()] = types
    return out


def test_gamg_product_data_released_after_setup():
    """The Galerkin-product data GAMG leaves on its coarse operators (kept for a numeric-only
    recomputation that GAMG without interpolation reuse never does; 0.4 KB per unknown on two
    ranks) is freed once the preconditioner is set up; a split that reuses its interpolation
    (here u, by the user's option) keeps it, since GAMG needs it then."""
    newton, _ = _system("fieldsplit", petsc_options={"fieldsplit_f0_pc_gamg_coarse_eq_limit": 10})
    assert newton.solve().converged
    types = _product_types(newton)
    assert any(types.values()), types  # the u split has coarse levels
    assert all(t == 0 for ts in types.values() for t in ts), types

    newton, _ = _system(
        "fieldsplit",
        petsc_options={
            "fieldsplit_f0_pc_gamg_coarse_eq_limit": 10,
            "fieldsplit_f0_pc_gamg_reuse_interpolation": True,
        },
    )
    assert newton.solve().converged
    types = _product_types(newton)
    u_types = next(ts for p, ts in types.items() if p.endswith("fieldsplit_f0_"))
    assert u_types and all(t == 4 for t in u_types), types  # PtAP data kept for the reuse


def test_products_cleared_during_setup(monkeypatch):
    """Each product's data is freed as soon as it is computed (``-mat_product_clear``, put in the
    options database for the set-up only): with the after-set-up release disabled, no coarse
    operator keeps product data; the option is gone after the solve; the iterates are those of
    a solver without it."""
    import polycrack.numerics.nonlinear as nl

    monkeypatch.setattr(nl, "release_gamg_products", lambda pc: None)
    opts = {"fieldsplit_f0_pc_gamg_coarse_eq_limit": 10}
    ref, _ = _system("fieldsplit", petsc_options=opts)
    ref.snes.setUpdate(None)  # neither the option nor the Krylov-basis release
    r0 = ref.solve()
    assert any(t == 4 for ts in _product_types(ref).values() for t in ts)  # data kept
    newton, _ = _system("fieldsplit", petsc_options=opts)
    res = newton.solve()
    types = _product_types(newton)
    assert any(types.values()), types
    assert all(t == 0 for ts in types.values() for t in ts), types
    assert not PETSc.Options().hasName(nl.PRODUCT_CLEAR)
    assert (res.iterations, res.linear_iterations) == (r0.iterations, r0.linear_iterations)
    for a, b in zip(newton.u, ref.u, strict=True):
        np.testing.assert_array_equal(a.x.array, b.x.array)


def test_krylov_basis_released_between_newton_iterations():
    """The iterative paths free GMRES's basis at the start of every Newton iteration (before the
    next preconditioner set-up) without changing the solver: the restart, the preconditioning
    side, the monitors and the iterates stay those of a solver that keeps its basis."""
    import polycrack.numerics.nonlinear as nl

    opts = {"ksp_gmres_restart": 37}
    newton, _ = _system("fieldsplit", petsc_options=opts)
    ksp = newton.snes.getKSP()
    released = []
    orig = nl.release_krylov_basis

    def spy(k):
        released.append(k.getType())
        orig(k)

    nl.release_krylov_basis = spy
    try:
        res = newton.solve()
    finally:
        nl.release_krylov_basis = orig
    assert res.converged
    assert len(released) == res.iterations >= 3  # once per Newton iteration
    assert ksp.getType() == "gmres" and ksp.getPCSide() == PETSc.PC.Side.RIGHT
    text = _view_text(ksp)
    assert "restart=37" in text, text
    assert all(t == 0 for ts in _product_types(newton).values() for t in ts)  # monitor kept

    kept, _ = _system("fieldsplit", petsc_options=opts)
    kept.snes.setUpdate(None)
    ref = kept.solve()
    assert (ref.iterations, ref.linear_iterations) == (res.iterations, res.linear_iterations)
    for a, b in zip(newton.u, kept.u, strict=True):
        np.testing.assert_array_equal(a.x.array, b.x.array)


def _view_text(ksp: PETSc.KSP) -> str:
    """KSPView output as a string (rank 0's copy on every rank)."""
    import os
    import tempfile

    comm = ksp.getComm().tompi4py()
    path = comm.bcast(tempfile.mkstemp(suffix=".txt")[1] if comm.rank == 0 else None)
    v = PETSc.Viewer().createASCII(path, comm=ksp.getComm())
    ksp.view(v)
    v.destroy()
    comm.barrier()
    text = comm.bcast(open(path).read() if comm.rank == 0 else None)
    if comm.rank == 0:
        os.remove(path)
    return text


def _count_gamg_setups() -> int:
    return int(PETSc.Log.Event("PCSetUp_GAMG+").getPerfInfo().get("count", 0))


def test_kept_split_preconditioners_same_solution_fewer_setups():
    """Reusing the split preconditioners over Newton iterations (``newton``) and across solves
    (``steps``): fewer set-ups than linear solves, the counts add up, the same converged
    solution as a set-up at every iteration (to the Newton tolerance)."""
    ref, fields = _system("fieldsplit")
    r0 = ref.solve()
    assert r0.converged and ref.preconditioner_stats() is None and r0.iterations >= 3
    want = [f.x.array.copy() for f in fields]
    for mode in ("newton", "steps"):
        newton, fields = _system("fieldsplit", reuse_preconditioner=mode)
        res = newton.solve()
        assert res.converged, mode
        for a, b in zip(fields, want, strict=True):
            np.testing.assert_allclose(a.x.array, b, rtol=1e-7, atol=1e-9, err_msg=mode)
        st = newton.preconditioner_stats()
        assert st["setups"] + st["reuses"] == res.iterations, st
        assert 1 <= st["setups"] < res.iterations, st
        assert st["rebuilds"].get("first") == 1, st
        # a second solve from a perturbed state: ``newton`` sets up again, ``steps`` keeps it
        for f in fields:
            f.x.array[:] *= 0.9
        res2 = newton.solve()
        assert res2.converged
        st2 = newton.preconditioner_stats()
        assert st2["setups"] + st2["reuses"] == res.iterations + res2.iterations
        if mode == "newton":
            assert st2["rebuilds"].get("step") == 1, st2
        else:
            assert "step" not in st2["rebuilds"], st2
        newton.rebuild_preconditioner("test")  # an explicit request is honoured and counted
        for f in fields:
            f.x.array[:] *= 0.9
        assert newton.solve().converged
        assert newton.preconditioner_stats()["rebuilds"].get("test") == 1


def test_kept_preconditioner_rebuilt_on_krylov_growth(monkeypatch):
    """A kept preconditioner that makes the Krylov count grow beyond the threshold is set up
    again (reason krylov_growth): with a threshold below the fresh count (half of it) every
    reuse triggers it; with a huge one nothing does (the toy needs 15-19 Krylov iterations on
    a fresh or a kept preconditioner alike)."""
    import polycrack.numerics.nonlinear as nl

    counts = {}
    for growth, extra in ((0.5, -(10**6)), (1e6, 10**6)):
        monkeypatch.setattr(nl, "PC_REBUILD_GROWTH", growth)
        monkeypatch.setattr(nl, "PC_REBUILD_MIN_EXTRA", extra)
        newton, fields = _system("fieldsplit", reuse_preconditioner="steps")
        for _ in range(3):
            assert newton.solve().converged
            for f in fields:
                f.x.array[:] *= 0.8
        counts[growth] = newton.preconditioner_stats()
    assert counts[1e6]["setups"] == 1, counts
    low = counts[0.5]
    assert low["rebuilds"].get("krylov_growth", 0) >= 3 and low["setups"] > 3, counts


def test_stale_preconditioner_linear_failure_is_retried_fresh(monkeypatch):
    """A linear solve that fails on a kept preconditioner is not a Newton failure: Newton goes
    on and the next linear solve has a fresh set-up (reason linear_failure); a linear failure
    with a fresh set-up still fails the Newton solve."""
    newton, fields = _system("fieldsplit", reuse_preconditioner="steps")
    assert newton.solve().converged
    ksp = newton.snes.getKSP()
    rtol, atol, dtol, max_it = ksp.getTolerances()
    post = newton.pc_life._post_solve
    calls = []
    n0 = sum(newton.preconditioner_stats()[k] for k in ("setups", "reuses"))

    key = newton.prefix + "ksp_max_it"  # read again at every Newton iteration
    db = PETSc.Options()

    def budget_once(k, b, x):  # the first solve on the kept preconditioner gets 3 iterations
        calls.append(k.getConvergedReason())
        post(k, b, x)
        db[key] = max_it

    ksp.setPostSolve(budget_once)
    db[key] = 3
    for f in fields:
        f.x.array[:] *= 0.5
    res = newton.solve()
    assert calls[0] < 0 and res.converged, (calls, res)
    st = newton.preconditioner_stats()
    assert st["rebuilds"].get("linear_failure") == 1, st
    assert st["setups"] + st["reuses"] - n0 == res.iterations  # one Newton solve, no retry
    # a solve that runs out of Newton iterations after a stale linear failure is not repeated
    # (its later iterations had fresh set-ups already)
    ksp.setPostSolve(budget_once)
    db[key] = 3
    newton.snes.setTolerances(max_it=1)
    for f in fields:
        f.x.array[:] *= 0.5
    res = newton.solve()
    newton.snes.setTolerances(max_it=25)
    assert calls[-1] < 0 and not res.converged and res.reason == -5, (calls, res)
    assert res.iterations == 1, res  # one attempt of one iteration, no retry
    db[key] = 3  # now every solve gets 3 iterations: the fresh one fails too, and so does Newton
    ksp.setPostSolve(post)
    newton.rebuild_preconditioner("test")
    for f in fields:
        f.x.array[:] *= 0.5
    res = newton.solve()
    db[key] = max_it
    assert not res.converged and res.reason == -3, res


def _norms(ratios):
    out = [1.0]
    for r in ratios:
        out.append(out[-1] * r)
    return out


#: residual-norm ratios of Newton solves on the 400-grain sphere's crack advance (issue 26,
#: ``snes_monitor``, 2 ranks): solves that converged after a damped phase ...
NOT_STALLED = [
    [0.035, 0.95, 0.95, 0.94, 0.9, 0.83, 0.53, 0.031, 0.025, 1.1e-05],
    [0.0054, 0.52, 0.89, 0.88, 0.82, 0.62, 0.99, 0.68, 0.14, 0.1, 0.042, 0.00045],
    [0.00031, 0.88, 0.64, 0.26, 0.76, 0.97, 0.085, 0.14, 0.0028, 0.00022],
    [0.89, 0.0051, 0.89, 0.6, 0.58, 0.021, 0.0066, 2.3e-05],
    [0.66, 0.88, 0.96, 0.88, 0.74, 0.88, 0.86, 0.89, 0.9, 0.67, 0.99, 0.89],  # ran out
    # ran out of its 12 iterations while recovering (0.32 in the last one)
    [0.8, 0.947, 0.972, 0.989, 0.98, 0.964, 0.947, 0.935, 0.914, 0.877, 0.768, 0.323],
]
#: ... and solves whose line search stopped moving (ended by -5 / -6 after 12-19 iterations
#: before the stall test)
STALLED = [
    [0.038, 0.992, 0.997, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
    [1.0, 1.0, 1.0],
    [0.997, 0.999, 1.0],
]
# (two more, recorded only until a 0.98 threshold ended them: 0.987, 0.999, 1.000 and 0.907,
# 0.936, 0.950, 0.982, 0.993, 0.996 - the 0.99 test lets each go on for at least one more)


def test_stall_test_on_measured_histories():
    """The stall test never fires on a damped phase that went on to converge (nor on a slow
    solve that ran out of iterations: that is the iteration limit's job) and fires on the
    stalled solves at the first iterate where the last three ratios exceed 0.99."""
    from polycrack.numerics.nonlinear import NEWTON_STALL_ITS, NEWTON_STALL_RATIO, stalled

    for ratios in NOT_STALLED:
        h = _norms(ratios)
        assert not any(stalled(h[: k + 1]) for k in range(len(h))), ratios
    for ratios in STALLED:
        h = _norms(ratios)
        first = next(k for k in range(len(h)) if stalled(h[: k + 1]))
        assert first == next(
            k
            for k in range(NEWTON_STALL_ITS, len(h))
            if min(ratios[k - NEWTON_STALL_ITS : k]) > NEWTON_STALL_RATIO
        ), ratios
    assert not stalled([1.0, 0.999, 0.999])  # too few iterates to judge


@pytest.mark.parametrize("linear", ["mumps", "iterative"])
def test_stalled_solve_ends_early(linear):
    """Newton on (c^2 + 1) = 0, which has no root: the line search creeps towards c = 0, where
    the residual norm bottoms out. The solve ends after the third iteration in a row that gains
    less than 1 % (6 iterations, not the 25 allowed), reports REASON_STALLED, and leaves the
    initial guess in place (1 and 2 ranks alike)."""
    from polycrack.numerics.nonlinear import REASON_STALLED

    m = mesh.create_unit_cube(MPI.COMM_WORLD, 3, 3, 3, mesh.CellType.tetrahedron)
    c = fem.Function(fem.functionspace(m, ("Lagrange", 1)))
    q = ufl.TestFunction(c.function_space)
    newton = BlockNewton([(c**2 + 1) * q * ufl.dx], [c], ["scalar"], linear=linear, max_it=25)
    c.x.array[:] = 3.0
    res = newton.solve()
    assert not res.converged and res.reason == REASON_STALLED and res.message == "stalled"
    assert res.iterations == 6 and newton.stalls == 1, res
    ratios = [b / a for a, b in zip(newton.history, newton.history[1:], strict=False)]
    assert all(r > 0.99 for r in ratios[-3:]) and ratios[2] < 0.99, ratios
    assert np.all(c.x.array == 3.0)
    newton.close()
