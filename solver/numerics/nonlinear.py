"""One Newton (PETSc SNES) solve of a block system, with the linear-solver options of the case file.

``linear`` (``solver.linear`` in the case file):

- ``mumps``: exact LU of the monolithic Jacobian every Newton iteration (robust, memory-hungry);
- ``mumps_lagged``: GMRES preconditioned by one MUMPS factorisation that is kept across Newton
  iterations and time steps (``snes_lag_preconditioner -1``, persistent) and rebuilt only when a
  solve fails — the Jacobian is still assembled every iteration for the Krylov products;
- ``fieldsplit``: GMRES (right-preconditioned) with a multiplicative block preconditioner, one
  split per field: the displacement gets GAMG with the rigid-body near-nullspace (block size 3),
  scalar fields GAMG, the one-DOF voltage block its exact inverse (Jacobi on a 1x1 block). The dense coupling of V
  to the surface Li content (a rank-one border) is left to the Krylov method. The splits'
  preconditioners can be kept across Newton iterations and time steps
  (``reuse_preconditioner``, :class:`PreconditionerLifeCycle`);
- ``iterative`` (one field only; the staggered sub-solves of large problems): GMRES + GAMG on
  the field's AIJ matrix, with the rigid-body near-nullspace for a ``"vector"`` field.

MUMPS needs one AIJ matrix (``kind="mpi"``). ``fieldsplit`` assembles a MATNEST instead
(``kind="nest"``): every split is a block of the nest, so the preconditioner takes its operators
without copying them, and the monolithic sparsity pattern (its construction raised the peak by
~3.4 KB per unknown) is never built. Measured on the 50-grain particle at 168 k
unknowns, 1 rank: peak memory 1193 -> 901 MB, the same Newton iterations, Krylov iterations
per Newton step 18.8 -> 20.6 (the Li-content block by GAMG instead of an exact LU of (x, V)).
After each GAMG set-up (``fieldsplit``, ``iterative``) the data its Galerkin products keep for
a reuse that never comes is freed (:func:`release_gamg_products`): 2 ranks, 167 k unknowns,
peak 5.04 -> 4.68 KB per unknown summed over ranks, the same iterates. GMRES's basis is freed
at the start of every Newton iteration (:func:`release_krylov_basis`), so that the next set-up
does not run beside it (later set-ups 552 -> 538 MB on rank 0 in that run; up to 0.8 KB per
unknown in hard steps, where the basis has 100 vectors). Where the rest of the memory goes:
``benchmarks/perf/memory_budget.py``.
"""

from __future__ import annotations

import ctypes
import functools
import itertools
import time
import weakref
from dataclasses import dataclass, field

import dolfinx_solver  # noqa: F401  (MPI before dolfinx / petsc4py)
import numpy as np
from dolfinx import fem
from dolfinx.fem import petsc as fem_petsc
from dolfinx.fem.petsc import NonlinearProblem
from dolfinx.la.petsc import _ghost_update
from mpi4py import MPI
from petsc4py import PETSc

from ..errors import InputError
from .memory import fix_mmap_threshold

LINEAR_CHOICES = ("mumps", "mumps_lagged", "fieldsplit", "iterative")
LAG_REBUILD_KRYLOV = 12  # lagged LU: refresh once GMRES needs more iterations per Newton step
#: ``fieldsplit`` preconditioner life cycle (``solver.preconditioner_reuse``): ``off`` sets the
#: split preconditioners up at every Newton iteration, ``newton`` keeps them over the Newton
#: iterations of one solve (a fresh set-up at the start of every step attempt: restarts stay
#: exact), ``steps`` keeps them across time steps as well
PC_REUSE_CHOICES = ("off", "newton", "steps")
#: a kept fieldsplit preconditioner is set up again when a linear solve needs more than
#: PC_REBUILD_GROWTH times the Krylov iterations of the first solve after its set-up, and at
#: least PC_REBUILD_MIN_EXTRA more (one GAMG set-up costs about 27 Krylov iterations at 167 k
#: unknowns, issue 26)
PC_REBUILD_GROWTH = 1.5
PC_REBUILD_MIN_EXTRA = 5
SNES_DIVERGED_LINEAR_SOLVE = -3
#: Newton stall test: a solve whose residual norm fell by less than a factor NEWTON_STALL_RATIO
#: in each of NEWTON_STALL_ITS consecutive iterations has stopped moving (the line search takes
#: vanishing steps) and is ended there as a failure, reason :data:`REASON_STALLED`. Measured on
#: the 400-grain sphere's crack advance (issue 26, benchmarks/results/newton_histories_400_np2.json):
#: the stalled solves showed ratios of 0.99-1.00 for up to 11 iterations in a row; solves that
#: converged after a damped phase never had two ratios above 0.97 in a row (damped phases
#: 0.83-0.95), but one that ran out of iterations while recovering had 0.972, 0.989, 0.980 -
#: hence 0.99 (the run was measured with 0.98; by the recorded histories 0.99 stops the same
#: solves, two of them one iteration later)
NEWTON_STALL_RATIO = 0.99
NEWTON_STALL_ITS = 3
#: NewtonResult.reason of a solve ended by the stall test
REASON_STALLED = -102


def stalled(norms: list[float], ratio: float = NEWTON_STALL_RATIO, its: int = NEWTON_STALL_ITS):
    """True when each of the last ``its`` Newton iterations reduced the residual norm by less
    than a factor ``ratio`` (``norms``: one norm per iterate, the initial guess first)."""
    if len(norms) <= its:
        return False
    return all(norms[-k] > ratio * norms[-k - 1] for k in range(1, its + 1))


PETSc.Log.begin()  # event counts (LU factorisations) for the solver statistics
fix_mmap_threshold()  # the solver runtime: assembly temporaries go back to the OS when freed


def _lu_count() -> int:
    """Numeric LU factorisations so far in this process (PETSc log event)."""
    return int(PETSc.Log.Event("MatLUFactorNum").getPerfInfo().get("count", 0))


_prefix_counter = itertools.count()


@functools.cache
def _mat_product_clear():
    """PETSc's ``MatProductClear`` (not wrapped by petsc4py), or None where it cannot be found."""
    try:
        fn = ctypes.CDLL(PETSc.__file__).MatProductClear  # dlsym searches libpetsc as well
    except (OSError, AttributeError):
        return None
    fn.argtypes, fn.restype = [ctypes.c_void_p], ctypes.c_int
    return fn


def release_gamg_products(pc: PETSc.PC) -> None:
    """Free the product data that GAMG's Galerkin products leave on its hierarchy.

    ``MatPtAP`` keeps its symbolic structure and intermediate products (AP, the local and
    transposed parts of P) on each coarse operator, and ``MatMatMult`` (prolongator smoothing)
    on each smoothed prolongator, for a later numeric-only recomputation. GAMG without
    interpolation reuse (our default) never does that: it rebuilds the hierarchy from scratch
    when the Jacobian changes. On two ranks the parallel products keep ~33 MB per rank at 167 k
    unknowns (0.4 KB per unknown, summed), more than the coarse operators themselves. ``pc`` is
    a GAMG or a fieldsplit of them; a GAMG that reuses its interpolation
    (``pc_gamg_reuse_interpolation``) keeps its data. Collective; a no-op before set-up.
    """
    clear = _mat_product_clear()
    if clear is None:
        return
    if pc.getType() == "fieldsplit":
        for sub in pc.getFieldSplitSubKSP():
            release_gamg_products(sub.getPC())
        return
    if pc.getType() != "gamg" or pc.getMGLevels() < 2:
        return
    if PETSc.Options(pc.getOptionsPrefix()).getBool("pc_gamg_reuse_interpolation", False):
        return
    n = pc.getMGLevels()
    for level in range(n):
        if level < n - 1:  # the coarse operators (the finest is the Jacobian block itself)
            clear(pc.getMGSmoother(level).getOperators()[0].handle)
        if level > 0:
            clear(pc.getMGInterpolation(level).handle)


#: PETSc option that frees a matrix product's data as soon as its values are computed
PRODUCT_CLEAR = "mat_product_clear"
_product_clear_set = [False]  # the option is ours (set for one set-up), not the user's


def _clear_products_during_setup() -> None:
    """Have the next preconditioner set-up free each product's data as soon as it is computed.

    :func:`release_gamg_products` frees what the set-up leaves, but only after it: inside it,
    the smoothing product of a level's prolongator still holds its data while the level's
    Galerkin product runs, and the finished products of the finer levels while the coarser ones
    are built. PETSc's ``-mat_product_clear`` frees each product's data when its values are
    done. The option is global (the products GAMG creates carry no options prefix), so it is in
    the options database only from here to the end of the set-up (:func:`_release_after_setup`).
    2 ranks, 167 k unknowns: peak 4.73 -> 4.28 KB per unknown summed over ranks, the same
    iterates. A user's own ``mat_product_clear`` is left alone.
    """
    db = PETSc.Options()
    if not db.hasName(PRODUCT_CLEAR):
        db[PRODUCT_CLEAR] = True
        _product_clear_set[0] = True


def _release_after_setup(ksp: PETSc.KSP, its: int, _rnorm: float) -> None:
    """KSP monitor: iteration 0 of every solve comes right after the preconditioner set-up."""
    if its == 0:
        if _product_clear_set[0]:
            del PETSc.Options()[PRODUCT_CLEAR]
            _product_clear_set[0] = False
        release_gamg_products(ksp.getPC())


def release_krylov_basis(ksp: PETSc.KSP) -> None:
    """Free the Krylov basis a GMRES solver keeps from its last solve; no-op for other types.

    GMRES allocates its basis vectors as the iterations need them and keeps them until the
    solver is reset, so from the second Newton iteration on the next preconditioner set-up runs
    beside the last solve's basis: up to ``ksp_gmres_restart`` (100 for ``fieldsplit``) vectors
    of the whole system, 0.8 KB per unknown, at the hard steps of a run. GMRES's own data is
    rebuilt by a type round trip (the preconditioner, operators, tolerances, preconditioning side
    and monitors belong to the KSP and stay); its options (restart, orthogonalisation) are read
    again. The iterates do not change. Collective.
    """
    if ksp.getType() != PETSc.KSP.Type.GMRES:
        return
    ksp.setType(PETSc.KSP.Type.PREONLY)
    ksp.setType(PETSc.KSP.Type.GMRES)
    ksp.setFromOptions()


def _release_before_newton_step(snes: PETSc.SNES, _step: int, clear_products: bool) -> None:
    """SNES update: runs at the start of every Newton iteration, before the Jacobian.

    ``clear_products``: no GAMG of this solver reuses its interpolation (which recomputes its
    Galerkin products from their data).
    """
    release_krylov_basis(snes.getKSP())
    if clear_products:
        _clear_products_during_setup()


class PreconditionerLifeCycle:
    """When the split preconditioners of a ``fieldsplit`` solver are set up, and the counts.

    PETSc keeps a sub-solver's preconditioner when its PC has ``reuse_preconditioner`` set
    (the MATNEST blocks are the same matrices with new values, so the Krylov method always works
    with the current Jacobian; only the preconditioner is stale). Each linear solve reports
    through the outer KSP's post-solve hook: the first solve after a set-up gives the reference
    Krylov count; a later one that needs more than ``growth`` times it (and at least
    ``min_extra`` more), or fails, asks for a set-up at the next linear solve. Others ask with
    :meth:`request` (a failed Newton solve, a rejected step, a fallback, a new step attempt in
    mode ``newton``). A linear solve that fails on a kept preconditioner does not fail the
    Newton solve: SNES goes on with its (inexact) direction, one more linear failure allowed,
    and the next iteration has a fresh set-up (the demo's damage onset: GMRES ran out of its
    100 iterations on a kept preconditioner and the step was rejected). Counts: ``setups``, ``reuses`` (linear solves on a kept preconditioner),
    ``rebuilds`` (set-ups by reason; ``first`` is the initial one). Deterministic: the decisions
    depend on iteration counts only.
    """

    def __init__(self, snes: PETSc.SNES, growth: float, min_extra: int):
        self.snes, self.ksp = snes, snes.getKSP()
        self.growth, self.min_extra = growth, min_extra
        ksp = self.ksp
        self.setups = 0
        self.reuses = 0
        self.rebuilds: dict[str, int] = {}
        self.base: int | None = None  # Krylov iterations of the first solve after the set-up
        self.pending: str | None = "first"  # reason of the set-up at the next linear solve
        self.stale_failure = False  # a linear solve on a kept preconditioner failed
        ksp.setPostSolve(self._post_solve)

    def _sub_pcs(self) -> list[PETSc.PC]:
        return [k.getPC() for k in self.ksp.getPC().getFieldSplitSubKSP()]

    def _set_reuse(self, reuse: bool) -> None:
        for pc in self._sub_pcs():
            pc.setReusePreconditioner(reuse)

    def request(self, reason: str) -> None:
        """Set the split preconditioners up at the next linear solve (first reason counts)."""
        if self.pending is None:
            self.pending = reason
            self._set_reuse(False)

    def _post_solve(self, ksp: PETSc.KSP, _b: PETSc.Vec, _x: PETSc.Vec) -> None:
        its, failed = ksp.getIterationNumber(), ksp.getConvergedReason() < 0
        if self.pending is not None:  # this solve set the preconditioners up
            self.setups += 1
            self.rebuilds[self.pending] = self.rebuilds.get(self.pending, 0) + 1
            self.pending, self.base = None, its
            self._set_reuse(True)
            return
        self.reuses += 1
        base = self.base or 0
        if failed:  # not the Newton solve's failure: go on, with a fresh set-up next
            self.stale_failure = True
            self.request("linear_failure")
            self.snes.setMaxLinearSolveFailures(self.snes.getMaxLinearSolveFailures() + 1)
        elif its > max(self.growth * base, base + self.min_extra):
            self.request("krylov_growth")

    def stats(self) -> dict:
        """The counts for run.json."""
        return {
            "setups": self.setups,
            "reuses": self.reuses,
            "rebuilds": dict(sorted(self.rebuilds.items())),
        }


@dataclass
class NewtonResult:
    """Outcome of one nonlinear solve."""

    converged: bool
    reason: int
    iterations: int
    linear_iterations: int
    seconds: float
    factorisations: int = 0
    message: str = ""

    @property
    def control_iterations(self) -> int:
        """Newton iterations that measure how hard the step was (step-size control)."""
        return self.iterations


@dataclass
class SolverStats:
    """Totals over a run (go to run.json)."""

    solves: int = 0
    failures: int = 0
    newton_iterations: int = 0
    linear_iterations: int = 0
    factorisations: int = 0
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    def add(self, r: NewtonResult) -> None:
        self.solves += 1
        self.failures += 0 if r.converged else 1
        self.newton_iterations += r.iterations
        self.linear_iterations += r.linear_iterations
        self.factorisations += r.factorisations
        self.seconds += r.seconds


def merged(first: NewtonResult, retry: NewtonResult) -> NewtonResult:
    """The retry's result with the work of the failed first attempt added (in place)."""
    retry.iterations += first.iterations
    retry.linear_iterations += first.linear_iterations
    retry.seconds += first.seconds
    retry.factorisations += first.factorisations
    return retry


def rigid_body_modes(V: fem.FunctionSpace) -> PETSc.NullSpace:
    """The six rigid-body modes of a 3D vector space as an orthonormal PETSc near-nullspace."""
    from dolfinx.la.petsc import create_vector

    x = V.tabulate_dof_coordinates()
    n = V.dofmap.index_map.size_local
    bs = V.dofmap.index_map_bs
    if bs != 3:
        raise ValueError(f"rigid-body modes need a 3D vector space, not block size {bs}")
    vecs = [create_vector([(V.dofmap.index_map, bs)]) for _ in range(6)]
    arrs = [v.array_w.reshape(-1, 3) for v in vecs]  # owned part only
    p = x[:n]
    for i in range(3):
        arrs[i][:, i] = 1.0
    arrs[3][:, 0], arrs[3][:, 1] = -p[:, 1], p[:, 0]
    arrs[4][:, 0], arrs[4][:, 2] = p[:, 2], -p[:, 0]
    arrs[5][:, 2], arrs[5][:, 1] = p[:, 1], -p[:, 2]
    for v in vecs:
        v.assemble()
    # Gram-Schmidt (PETSc wants an orthonormal basis)
    basis: list[PETSc.Vec] = []
    for v in vecs:
        for b in basis:
            v.axpy(-v.dot(b), b)
        v.normalize()
        basis.append(v)
    return PETSc.NullSpace().create(vectors=basis, comm=V.mesh.comm)


#: GAMG for elasticity (u, with the rigid-body near-nullspace). Measured at 167 k unknowns of the
#: coupled problem, one rank (benchmarks/perf): aggressive coarsening on two levels instead of
#: one drops the dense third level (1410 rows, 1.5 M nonzeros), 13.0 M -> 10.9 M nonzeros in the
#: hierarchy for 20.6 instead of 19.4 Krylov iterations per Newton step and a cheaper set-up;
#: not reusing the interpolation drops the PtAP data GAMG keeps for the reuse (0.16 KB per
#: unknown) for 1.3 s more set-up per Newton step (12.5 s). Threshold 0.06 or 0.0, plain
#: aggregation, MIS-3 or no aggressive coarsening: more memory or 1.5-2x the iterations.
ELASTICITY_GAMG = {
    "pc_gamg_threshold": 0.02,
    "pc_gamg_aggressive_coarsening": 2,
    "pc_gamg_reuse_interpolation": "false",
}


def clear_options(prefix: str) -> None:
    """Remove every option under ``prefix`` from PETSc's global options database."""
    db = PETSc.Options()
    for key in list(db.getAll()):
        if key.startswith(prefix):
            db.delValue(key)


def _gamg_options(p: str) -> dict:
    """GAMG with Chebyshev/Jacobi smoothing, options under prefix ``p``."""
    return {
        p + "pc_type": "gamg",
        p + "mg_levels_ksp_type": "chebyshev",
        p + "mg_levels_pc_type": "jacobi",
    }


def _base_options(linear: str, rtol: float, atol: float, max_it: int, line_search: str) -> dict:
    opts: dict = {
        "snes_type": "newtonls",
        "snes_linesearch_type": line_search,
        "snes_rtol": rtol,
        "snes_atol": atol,
        "snes_stol": 0.0,
        "snes_max_it": max_it,
        "snes_divergence_tolerance": 1e8,
    }
    if linear == "mumps":
        opts.update({"ksp_type": "preonly", "pc_type": "lu", "pc_factor_mat_solver_type": "mumps"})
    elif linear == "mumps_lagged":
        opts.update(
            {
                "ksp_type": "gmres",
                "ksp_rtol": 1e-10,
                "ksp_atol": 1e-14,
                "ksp_max_it": 60,
                "ksp_gmres_restart": 60,
                "pc_type": "lu",
                "pc_factor_mat_solver_type": "mumps",
                "snes_lag_preconditioner": -2,  # build at the first iteration, then keep
                "snes_lag_preconditioner_persists": True,
            }
        )
    elif linear == "fieldsplit":
        opts.update(
            {
                # the block preconditioner is linear (preonly GAMG / Jacobi), so GMRES with right
                # preconditioning (true residual, as FGMRES) suffices and stores half the vectors:
                # peak 4.20 -> 3.99 KB per unknown at 167 k unknowns (1 rank)
                "ksp_type": "gmres",
                "ksp_pc_side": "right",
                # 1e-6, not 1e-9: the Newton tolerance still decides convergence; the demo's whole
                # charge: 24 % fewer Krylov and 1 % more Newton iterations, the same time series
                # to 2.5e-7 mV (benchmarks/README.md, issue 26)
                "ksp_rtol": 1e-6,
                "ksp_atol": 1e-14,
                "ksp_max_it": 100,  # ~15 per Newton step when it works; fail fast at damage onset
                "ksp_gmres_restart": 100,
                "pc_type": "fieldsplit",
                "pc_fieldsplit_type": "multiplicative",
            }
        )
    elif linear == "iterative":
        opts.update(
            {
                "ksp_type": "gmres",
                "ksp_rtol": 1e-10,
                "ksp_atol": 1e-14,
                "ksp_max_it": 200,
                "ksp_gmres_restart": 50,
                **_gamg_options(""),
            }
        )
    else:
        raise ValueError(f"linear solver must be one of {LINEAR_CHOICES}, not {linear!r}")
    if linear.startswith("mumps"):  # more workspace for 3D fill-in; detect null pivots
        opts.update({"mat_mumps_icntl_14": 80, "mat_mumps_icntl_24": 1})
    return opts


#: SNES's converged reason of a solve that ran out of Newton iterations
DIVERGED_MAX_IT = int(PETSc.SNES.ConvergedReason.DIVERGED_MAX_IT)
#: failures not retried on fresh preconditioners (their later iterations had fresh set-ups)
NO_RETRY = (DIVERGED_MAX_IT, REASON_STALLED)


def petsc_value(v):
    """A case's PETSc option value for the options database: ``True`` is the bare flag
    (``-snes_monitor``, also true for a boolean option; petsc4py would store the string "true",
    which a viewer option reads as a viewer name), other values as given."""
    return "" if v is True else v


def _petsc_error_text(exc: Exception) -> str:
    """The last line of a PETSc error's traceback text (the reason), with its error code."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    reason = lines[-1].lstrip("[0123456789] ") if lines else ""
    code = getattr(exc, "ierr", None)
    return f"PETSc error {code}: {reason}" if code is not None else reason


def _residual_nest(snes, x, b, u, residual, jacobian, bcs0, bcs1) -> None:
    """SNES residual on a MATNEST/VECNEST problem, as DOLFINx's ``assemble_residual`` but
    assembling one residual form at a time and doing the Dirichlet lifting one block row at a
    time, only for the Jacobian blocks whose column field has boundary conditions (here u).

    DOLFINx packs the coefficients of all residual forms, and for the lifting of all Jacobian
    blocks, at once: at 167 k unknowns those transients (~140 MB) set the peak memory of the run.
    ``bcs0`` / ``bcs1``: the boundary conditions by row / column block (``fem.bcs_by_block``).
    """
    _ghost_update(x, PETSc.InsertMode.INSERT, PETSc.ScatterMode.FORWARD)
    fem_petsc.assign(x, u)
    for bi in b.getNestSubVecs():
        with bi.localForm() as loc:
            loc.set(0.0)
    for b_i, L_i in zip(b.getNestSubVecs(), residual, strict=True):  # one form's pack at a time
        fem_petsc.assemble_vector(b_i, L_i)
    x0 = x.getNestSubVecs()
    for b_i, row in zip(b.getNestSubVecs(), jacobian, strict=True):
        a_row = [a if bcs1[j] else None for j, a in enumerate(row)]
        if any(a is not None for a in a_row):
            fem_petsc.apply_lifting(b_i, a_row, bcs=bcs1, x0=x0, alpha=-1.0)
    _ghost_update(b, PETSc.InsertMode.ADD, PETSc.ScatterMode.REVERSE)
    fem_petsc.set_bc(b, bcs0, x0=x, alpha=-1.0)
    _ghost_update(b, PETSc.InsertMode.INSERT, PETSc.ScatterMode.FORWARD)


def _jacobian_nest(snes, x, J, P, u, jacobian, bcs) -> None:
    """SNES Jacobian on a MATNEST, as DOLFINx's ``assemble_jacobian`` but packing the
    coefficients of one block at a time (DOLFINx packs all blocks first, a transient of the
    size of every block's coefficient arrays together)."""
    _ghost_update(x, PETSc.InsertMode.INSERT, PETSc.ScatterMode.FORWARD)
    fem_petsc.assign(x, u)
    J.zeroEntries()
    for i, row in enumerate(jacobian):
        for j, a in enumerate(row):
            if a is not None:
                fem_petsc.assemble_matrix(J.getNestSubMatrix(i, j), a, bcs, diag=1.0)
    J.assemble()


class BlockNewton:
    """Newton for residuals ``F[i](u)`` with ``u[i]`` the fields, solved together.

    The Jacobian is one AIJ matrix for the MUMPS options and a MATNEST for ``fieldsplit``.

    ``kinds`` names each field for the fieldsplit preconditioner: ``"vector"`` (GAMG with the
    rigid-body near-nullspace), ``"scalar"`` (GAMG) or ``"real"`` (one global DOF, exact 1x1
    inverse). ``groups`` (fieldsplit only) gives the order of the multiplicative sweep as lists
    of field indices (flattened: every field is its own split). Put fields that others depend on
    first (transport, then displacement, then damage). ``split_names`` names the splits in the
    options (``fieldsplit_<name>_...``; default ``f0``, ``f1``, ... by position), so that a
    problem solving a subset of the fields keeps the names of the full set.
    """

    def __init__(
        self,
        F: list,
        u: list[fem.Function],
        kinds: list[str],
        *,
        bcs: list | None = None,
        entity_maps: list | None = None,
        linear: str = "mumps",
        rtol: float = 1e-9,
        atol: float = 1e-10,
        max_it: int = 25,
        line_search: str = "bt",
        name: str = "coupled",
        groups: list[list[int]] | None = None,
        petsc_options: dict | None = None,
        split_names: list[str] | None = None,
        reuse_preconditioner: str = "off",
    ):
        if len(F) != len(u) or len(kinds) != len(u):
            raise ValueError("F, u and kinds need one entry per field")
        if linear == "iterative" and (len(u) != 1 or kinds[0] == "real"):
            raise ValueError("linear='iterative' solves one scalar or vector field")
        if reuse_preconditioner not in PC_REUSE_CHOICES:
            raise ValueError(f"reuse_preconditioner must be one of {PC_REUSE_CHOICES}")
        self.u = u
        self.kinds = kinds
        self.split_names = list(split_names or [f"f{i}" for i in range(len(u))])
        self.linear = linear
        self.comm = u[0].function_space.mesh.comm
        opts = _base_options(linear, rtol, atol, max_it, line_search)
        if linear == "iterative" and kinds[0] == "vector":
            opts.update(ELASTICITY_GAMG)
        prefix = f"{name}{next(_prefix_counter)}_"
        self.prefix = prefix
        # this solver's options leave the database with it (close, garbage collection or exit):
        # options never read (e.g. MUMPS settings of a solver that never factorised) would
        # otherwise be reported as unused when PETSc finalises
        self._forget = weakref.finalize(self, clear_options, prefix)
        self.problem = NonlinearProblem(
            F,
            u,
            bcs=bcs or [],
            entity_maps=entity_maps,
            kind="nest" if linear == "fieldsplit" else "mpi",
            petsc_options_prefix=prefix,
            petsc_options=opts,
        )
        self.snes: PETSc.SNES = self.problem.solver
        if linear == "fieldsplit":
            Fs, Js, bcl = self.problem.F, self.problem.J, bcs or []
            by_row = fem.bcs_by_block(fem.extract_function_spaces(Fs), bcl)
            by_col = fem.bcs_by_block(fem.extract_function_spaces(Js, 1), bcl)
            fctx = {"u": u, "residual": Fs, "jacobian": Js, "bcs0": by_row, "bcs1": by_col}
            self.snes.setFunction(_residual_nest, self.problem.b, kargs=fctx)
            jctx = {"u": u, "jacobian": Js, "bcs": bcl}  # petsc4py keeps both dicts
            self.snes.setJacobian(_jacobian_nest, self.problem.A, None, kargs=jctx)
            self._setup_fieldsplit(prefix, groups or [[i] for i in range(len(u))])
        elif linear == "iterative" and kinds[0] == "vector":
            self.problem.A.setNearNullSpace(rigid_body_modes(u[0].function_space))
        if petsc_options:  # the user's last word; sub-solver options are read at first set-up
            db = PETSc.Options()
            for k, v in petsc_options.items():
                db[prefix + k] = petsc_value(v)
            try:
                self.snes.setFromOptions()
            except PETSc.Error as exc:  # the same options on every rank: every rank raises
                raise InputError(
                    f"solver.petsc_options: PETSc refused {petsc_options} "
                    f"({_petsc_error_text(exc)})"
                ) from None
        if linear in ("fieldsplit", "iterative"):  # memory releases around each GAMG set-up
            self.snes.getKSP().setMonitor(_release_after_setup)
            reuse = any(
                k.startswith(prefix)
                and k.endswith("pc_gamg_reuse_interpolation")
                and PETSc.Options().getBool(k, False)
                for k in PETSc.Options().getAll()
            )
            self.snes.setUpdate(_release_before_newton_step, kargs={"clear_products": not reuse})
        self.reuse_preconditioner = reuse_preconditioner if linear == "fieldsplit" else "off"
        #: set-ups and reuses of the split preconditioners (fieldsplit with reuse), else None
        self.pc_life: PreconditionerLifeCycle | None = None
        if self.reuse_preconditioner != "off":
            self.pc_life = PreconditionerLifeCycle(
                self.snes, PC_REBUILD_GROWTH, PC_REBUILD_MIN_EXTRA
            )
        #: lagged LU: fresh factorisations by reason
        self.lu_rebuilds: dict[str, int] = {}
        #: residual norms of the latest solve, one per Newton iteration (0 = initial guess)
        self.history: list[float] = []
        self._stalled = False
        #: solves ended by the stall test (:data:`NEWTON_STALL_RATIO`)
        self.stalls = 0
        self.snes.setMonitor(self._stall_monitor)

    def _stall_monitor(self, snes: PETSc.SNES, its: int, fnorm: float) -> None:
        """Record ``fnorm`` and end the solve when it has stalled (see NEWTON_STALL_RATIO).

        SNES calls its monitors after the convergence test and stops when a reason is set; the
        norm is the global one, so every rank decides alike."""
        if its == 0:
            self.history = []
        self.history.append(fnorm)
        if snes.getConvergedReason() == 0 and stalled(self.history):
            self._stalled = True
            snes.setConvergedReason(PETSc.SNES.ConvergedReason.DIVERGED_DTOL)

    def _setup_fieldsplit(self, prefix: str, groups: list[list[int]]) -> None:
        order = [i for g in groups for i in g]
        if sorted(order) != list(range(len(self.u))):
            raise ValueError(f"groups {groups} must name every field exactly once")
        isets = self.problem.A.getNestISs()[0]  # this rank's rows of each field
        pc = self.snes.getKSP().getPC()
        opts = PETSc.Options()
        splits = []
        for i in order:
            p = f"{prefix}fieldsplit_{self.split_names[i]}_"
            opts[p + "ksp_type"] = "preonly"
            if self.kinds[i] == "real":  # one global DOF: Jacobi is its exact inverse
                opts[p + "pc_type"] = "jacobi"
            else:
                for k, v in _gamg_options(p).items():
                    opts[k] = v
                if self.kinds[i] == "vector":
                    isets[i].compose("nearnullspace", rigid_body_modes(self.u[i].function_space))
                    for k, v in ELASTICITY_GAMG.items():
                        opts[p + k] = v
            splits.append((self.split_names[i], isets[i]))
        pc.setFieldSplitIS(*splits)
        pc.setFromOptions()
        self.snes.getKSP().setFromOptions()

    def close(self) -> None:
        """Destroy the PETSc objects now, on every rank together.

        PETSc destruction is collective; left to Python's garbage collector it can happen at
        different moments on different ranks (reference cycles) and deadlock a later solve.
        """
        p = self.problem
        for name in ("_snes", "_A", "_b", "_x", "_P_mat"):
            obj = getattr(p, name, None)
            if obj is not None:
                obj.destroy()
        self._forget()

    def rebuild_preconditioner(self, reason: str = "failure") -> None:
        """Force a fresh preconditioner at the next linear solve (lagged LU, or the split
        preconditioners kept by ``reuse_preconditioner``); ``reason`` goes to the counts."""
        if self.pc_life is not None:
            self.pc_life.request(reason)
        if self.linear == "mumps_lagged":
            self.lu_rebuilds[reason] = self.lu_rebuilds.get(reason, 0) + 1
            opts = PETSc.Options()
            key = (self.snes.getOptionsPrefix() or "") + "snes_lag_preconditioner"
            opts[key] = -2
            self.snes.setFromOptions()
            del opts[key]

    def set_up_at_current(self) -> None:
        """Assemble the Jacobian at the current ``u`` and set the preconditioner up on it.

        What the first iteration of a solve with a fresh Jacobian does, without solving: a
        solver that lags its Jacobian (``snes_lag_jacobian -1``) goes on with this one. Used to
        rebuild, after a restart, the factorisation a chord Newton kept (:class:`ReusedLU` in
        polycrack.problems.electrochemistry): with lags -2 (build once) SNES assembles here and
        keeps this Jacobian and preconditioner from then on. Collective.
        """
        p = self.problem
        fem_petsc.assign(self.u, p.x)
        _ghost_update(p.x, PETSc.InsertMode.INSERT, PETSc.ScatterMode.FORWARD)
        P = p.P_mat if p.P_mat is not None else p.A
        self.snes.computeJacobian(p.x, p.A, P)
        ksp = self.snes.getKSP()
        ksp.setOperators(p.A, P)
        ksp.setUp()

    def preconditioner_stats(self) -> dict | None:
        """Set-ups, reuses and rebuild reasons of the kept preconditioner (run.json), or None
        when nothing is kept (``mumps``, ``iterative``, ``fieldsplit`` without reuse)."""
        if self.pc_life is not None:
            return {"reuse": self.reuse_preconditioner, **self.pc_life.stats()}
        if self.linear == "mumps_lagged":
            return {"reuse": "lagged_lu", "rebuilds": dict(sorted(self.lu_rebuilds.items()))}
        return None

    def solve(self) -> NewtonResult:
        """Run SNES from the current values of ``u``; ``u`` holds the last iterate afterwards.

        With ``mumps_lagged`` a failure with a kept (stale) factorisation is retried once at
        once with a fresh one, so only genuine Newton failures reach the step-size control; the
        same for ``fieldsplit`` with kept preconditioners when a Newton solve that went on
        after a linear failure on a kept one fails, unless it failed by running out of Newton
        iterations or by stalling (``NO_RETRY``; see the comment below).
        """
        life = self.pc_life
        if life is not None:
            if self.reuse_preconditioner == "newton":
                life.request("step")
            life.stale_failure = False
            self.snes.setMaxLinearSolveFailures(1)  # fresh set-ups: a linear failure is final
        res = self._solve_once()
        if life is not None:
            # no retry after a solve that used all its iterations: every linear failure on a kept
            # preconditioner was followed by a fresh set-up within it, so the retry would repeat
            # it (the 400-grain sphere's damage onset: two such retries, 12 more Newton
            # iterations and ~70 s each, both failed again)
            if res.converged or not life.stale_failure or res.reason in NO_RETRY:
                return res
            retry = self._solve_once()  # the failed solve asked for a fresh set-up
            return merged(res, retry)
        if self.linear != "mumps_lagged":
            return res
        if not res.converged and res.factorisations == 0:
            res = merged(res, self._solve_once())
        if res.converged and res.linear_iterations > LAG_REBUILD_KRYLOV * max(res.iterations, 1):
            self.rebuild_preconditioner("krylov_growth")  # the kept LU has gone stale
        return res

    def _solve_once(self) -> NewtonResult:
        t0 = time.perf_counter()
        lu0 = _lu_count()
        backup = [f.x.array.copy() for f in self.u]
        msg = ""
        self._stalled = False
        try:
            self.problem.solve()
            reason = self.snes.getConvergedReason()
        except PETSc.Error as exc:  # e.g. MUMPS zero pivot, NaN in assembly
            reason, msg = -100, f"PETSc error {exc.ierr}"
        if self._stalled:
            self.stalls += 1
            reason, msg = REASON_STALLED, "stalled"
        its = self.snes.getIterationNumber()
        lits = self.snes.getLinearSolveIterations()
        ok = reason > 0
        if ok:
            vals = np.concatenate([f.x.array for f in self.u])
            ok = bool(self.comm.allreduce(bool(np.all(np.isfinite(vals))), op=MPI.LAND))
            if not ok:
                reason, msg = -101, "non-finite values in the solution"
        if not ok:
            for f, b in zip(self.u, backup, strict=True):
                f.x.array[:] = b
            self.rebuild_preconditioner("newton_failure")
        fact = _lu_count() - lu0
        return NewtonResult(ok, reason, its, lits, time.perf_counter() - t0, fact, msg)
