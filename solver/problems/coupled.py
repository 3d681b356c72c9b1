"""The coupled chemo-mechanical phase-field problem: (x, V, u, φ) in one Newton solve per step.

Fields (docs/model.md section 2): Li fraction x and voltage V on the particle submesh
(:class:`solver.electrochem.Electrochemistry`), displacement u on particle + binder and damage φ
on the particle (:func:`solver.mechanics.build_blocks`); γ is solved once, H is lagged and
updated after every accepted step. The residuals ``[F_x, F_V, F_u, F_φ]`` go into one
:class:`solver.nonlinear.BlockNewton` (``solver.linear``: mumps, mumps_lagged, fieldsplit) whose
fieldsplit sweep is x by GAMG → V exactly → u by GAMG → φ by GAMG, the order of the physical
coupling (x does not depend on u or φ; u depends on x and φ; φ on u).

``solver.linear: staggered`` — and the automatic fallback after repeated monolithic failures —
solves (x, V) by Newton, then alternates u (φ fixed) and φ (u fixed) until the largest change of
φ is below ``STAGGER_TOL`` (alternate minimisation iterated to a tolerance, not one pass). The u
and φ sub-solves use LU on small problems and GMRES + GAMG on large ones
(``solver.staggered_linear``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dolfinx_solver  # noqa: F401  (MPI before dolfinx / petsc4py)
import numpy as np
import ufl
from dolfinx import fem
from mpi4py import MPI

from .. import units
from ..config import ResolvedCase
from ..meshing.tags import INTERFACE
from ..numerics.nonlinear import BlockNewton, NewtonResult, merged
from ..numerics.stepping import AdaptiveBDF
from ..physics import mechanisms as mech
from ..physics.electrochem import Electrochemistry
from ..physics.fracture import fracture_constants
from ..physics.materials import LatticeStrains
from ..physics.mechanics import MechanicsModel, ParticleDomain, build_blocks, principal_values
from ..post.drive import DriveDiagnostics
from ..post.metrics import RADIAL_SHELLS, DamageMetrics, principal_stress_field
from .base import Problem
from .electrochemistry import x_tolerance

STAGGER_TOL = 1e-5  # max |Δφ| between two alternate-minimisation sweeps
#: sweeps before a staggered solve gives up: alternate minimisation converges linearly, and at a
#: crack jump it crawls (400 grains, 3.9-4.0 V: 200 sweeps, 400 Newton solves and 690-795 s, then
#: failed, while the monolithic retry at dt/4 converged); failing fast hands the step back to the
#: step-size control sooner.
STAGGER_MAX_SWEEPS = 50
#: consecutive monolithic failures before a step is tried staggered. 3, not 2, since failures
#: that stall end after 3-6 iterations (NEWTON_STALL_RATIO): one more monolithic attempt at a
#: quarter of the step is cheaper than a fallback that fails (400 grains at 4.077 V: 50 sweeps,
#: 288 s, failed, and the monolithic attempt at a quarter of its step converged in 4 iterations)
FALLBACK_AFTER = 3
#: steps solved staggered before the monolithic solver is tried again; doubled (up to
#: FALLBACK_STEPS_MAX) whenever that retry fails at once, reset when it succeeds. At a damage
#: onset one failing monolithic attempt costs 1-10 min on the 400-grain particle.
FALLBACK_STEPS = 5
FALLBACK_STEPS_MAX = 80
#: max-Δφ limiter: a step rejected for Δφ and retried with dt cut to at most JUMP_DT_RATIO of the
#: rejected dt is accepted when its Δφ is still at least JUMP_DPHI_RATIO of the rejected Δφ. Such
#: a Δφ does not come from the load increment but from an unstable crack advance at fixed load
#: (400 grains, 3.88 V: dt 474 s -> 366 s gave Δφ 0.233 -> 0.229, and dt then collapsed to
#: dt_min with φ frozen), which no smaller step resolves.
JUMP_DT_RATIO = 0.8
JUMP_DPHI_RATIO = 0.9


@dataclass
class StaggeredResult(NewtonResult):
    """NewtonResult of a staggered solve (``iterations`` = total Newton iterations)."""

    sweeps: int = 0
    max_sub_iterations: int = 0

    @property
    def control_iterations(self) -> int:
        """The most Newton iterations of one sub-solve: a step of many cheap sweeps is not a
        hard step (with the total, every staggered step halved dt: 590 steps instead of 62)."""
        return self.max_sub_iterations


#: ``solver.linear: auto`` picks exact LU (``mumps``) up to this many unknowns, ``fieldsplit``
#: above. Measured on a quiet 2-core machine (benchmarks/README.md): at 22 k unknowns (the
#: demo) a fresh LU per Newton iteration costs 1.5 s against 0.76 s of Jacobian assembly, and
#: fieldsplit finishes the same steps 1.8x faster (mumps_lagged 1.7x); at 163 k (400 grains,
#: h = 0.4 µm) fieldsplit is 4.3x faster per step (benchmarks/results/coupled_solvers_400_*.json).
AUTO_MUMPS_MAX_UNKNOWNS = 20_000


def auto_linear(unknowns: int) -> str:
    """The ``solver.linear`` that ``auto`` resolves to for a problem of ``unknowns`` unknowns."""
    return "mumps" if unknowns <= AUTO_MUMPS_MAX_UNKNOWNS else "fieldsplit"


def _add_counts(a: dict | None, b: dict | None) -> dict | None:
    """Two :meth:`BlockNewton.preconditioner_stats` summed (counts and reasons)."""
    if a is None or b is None:
        return b if a is None else a
    out = dict(b)
    for k in ("setups", "reuses"):
        if k in a:
            out[k] = a[k] + b.get(k, 0)
    reasons = dict(b.get("rebuilds", {}))
    for r, n in a.get("rebuilds", {}).items():
        reasons[r] = reasons.get(r, 0) + n
    out["rebuilds"] = dict(sorted(reasons.items()))
    return out


def _close(*solvers: BlockNewton | None) -> None:
    """Close the given solvers (collective), skipping None."""
    for n in solvers:
        if n is not None:
            n.close()


_SHELL_NAMES = tuple(
    f"{a:.2f}_{b:.2f}" for a, b in zip(RADIAL_SHELLS[:-1], RADIAL_SHELLS[1:], strict=True)
)
#: ``radial_damage.csv`` columns: damaged volume fraction per shell of r/R_p (``shell_0.00_0.25``
#: ...), then the crack area Γ_l (µm²) per shell (``crack_area_0.00_0.25_um2`` ...)
RADIAL_COLUMNS = tuple(f"shell_{s}" for s in _SHELL_NAMES) + tuple(
    f"crack_area_{s}_um2" for s in _SHELL_NAMES
)


class CoupledProblem(Problem):
    """All fields, residuals and solvers of a case on a :class:`ParticleDomain`."""

    kind = "coupled"
    radial_columns = RADIAL_COLUMNS

    #: Keep the PETSc objects of only one solver family (monolithic or staggered) at a time: the
    #: one not in use is destroyed at the switch and rebuilt when next needed (seconds; the
    #: forms come from the JIT cache). Set for problems above AUTO_MUMPS_MAX_UNKNOWNS: on the
    #: 400-grain sphere (163 k unknowns, 2 ranks) the first staggered fallback took the peak
    #: from 596 to 914 MB per rank, both families' matrices and preconditioners held together.
    release_idle: bool = False
    #: fieldsplit names of the monolithic fields (``solver.petsc_options`` keys)
    _split_names: tuple[str, ...] = ("f0", "f1", "f2", "f3")

    def __init__(self, dom: ParticleDomain, rc: ResolvedCase, linear: str | None = None):
        self.dom, self.rc = dom, rc
        p, phys, cfg = rc.params, rc.case.physics, rc.case.solver
        self.linear = linear or cfg.linear
        self.ec = self._electrochemistry()
        #: the Li fraction that mechanics, stress output and field files see (P1, particle)
        self.x_field = self._li_field()
        self.model = self._mechanics_model()
        self.fracture = bool(phys.fracture)
        frac = fracture_constants(p) if self.fracture else None
        self.blocks = build_blocks(
            dom,
            self.model,
            self.x_field,
            frac,
            degree=phys.displacement_degree,
            outer_boundary=phys.outer_boundary,
            relaxation=(phys.phase_field_relaxation_s, self.ec.dt),
            gb_eigenstrain=phys.mechanisms.gb_eigenstrain_weight,
            toughness_factor=self._toughness_factor(),
        )
        b = self.blocks
        fields = [self.ec.x, self.ec.V, b.u] + ([b.phi] if self.fracture else [])
        self.fields = fields
        self.field_names = ("x", "V", "u", "phi")[: len(fields)]
        self.entity_maps = [dom.entity_map]
        self._F, self._newton_fields, self._kinds, self._groups = self._monolithic_blocks()
        self._cfg = cfg
        self.unknowns = sum(
            f.function_space.dofmap.index_map.size_global * f.function_space.dofmap.index_map_bs
            for f in fields
        )
        if self.linear == "auto":
            self.linear = auto_linear(self.unknowns)
        self.staggered_linear = cfg.staggered_linear
        if self.staggered_linear == "auto":
            self.staggered_linear = (
                "mumps" if auto_linear(self.unknowns) == "mumps" else "iterative"
            )
        self.release_idle = self.unknowns > AUTO_MUMPS_MAX_UNKNOWNS
        self.newton = None  # the monolithic solver, built on first use
        self._pc_closed: dict | None = None  # preconditioner counts of closed monolithic solvers
        if self.linear != "staggered":
            self.newton = self._monolithic(self.linear)
        self._staggered = None  # built on first use
        self.failures_in_a_row = 0
        self.staggered_left = 0
        self.fallback_steps = FALLBACK_STEPS
        self._just_back = False  # the monolithic solver was just re-tried after a fallback
        self.stats = {
            "monolithic_failures": 0,
            "staggered_solves": 0,
            "staggered_sweeps": 0,
            "dphi_jumps_accepted": 0,
        }
        self._dphi_rejected: tuple[float, float] | None = None  # (dt, Δφ) last rejected
        self._jump = False  # the step under test was let through as a crack jump
        self.last_step_jump = False  # ... and the last accepted step was one
        #: collective check called between staggered sweeps (a staggered solve can take minutes):
        #: True abandons the solve as failed, and the stepper's reject callback then stops the run
        self.should_stop: Callable[[], bool] | None = None
        self.metrics = DamageMetrics(dom, b.phi, b.gamma, l=frac["l"]) if self.fracture else None
        #: printed once when the steps collapse (the run driver's stall check)
        self.stall_hint = (
            "the crack advances unstably at fixed load, which the rate-independent phase field "
            "cannot follow; physics.phase_field_relaxation_s (e.g. 10) lets the run through it "
            "(docs/user-guide.md, phase-field viscosity)"
            if self.fracture and phys.phase_field_relaxation_s <= 0
            else None
        )
        self._sigma = self.model.particle_stress(b.u, self.x_field, b.n, b.phi)
        self._s1 = None  # (function, expression, cells), compiled on first use
        self._last: dict = {}  # metrics of the last accepted state (observables -> radial_row)
        #: driving-force diagnostics (timeseries.csv columns of post/drive.py)
        self.drive = DriveDiagnostics(
            dom,
            self.model,
            b.u,
            LatticeStrains.from_params(p, rc.lattice_table_path),
            p.electrochemistry.x0,
        )
        self.phi_committed = None
        if self.fracture:
            self.commit_phi()

    # -- the parts a quasi-static problem replaces ------------------------------------------------
    def _electrochemistry(self):
        """The (x, V) block: Li transport on the particle mesh, with D(x) of
        ``physics.mechanisms.diffusivity_of_x`` and the per-grain OCP shift, i0 and D factors of
        ``physics.mechanisms.grain_heterogeneity`` when they are on."""
        dom = self.dom
        ec = Electrochemistry(
            dom.submesh, dom.sub_facet_tags, INTERFACE, self.rc.params.electrochemistry
        )
        mechs = self.rc.case.physics.mechanisms
        if mechs.diffusivity_of_x == "oregan2022":
            T_K = self.rc.params.electrochemistry.T_K
            ec.set_diffusivity(
                lambda x: units.diffusivity(1.0) * mech.diffusivity_oregan2022_m2_s(x, T_K, xp=ufl)
            )
        het = mechs.grain_heterogeneity
        if het.enabled:
            self.grains = mech.GrainData(dom)
            d = mech.grain_draws(
                self.grains.n_grains, het.seed, het.ocp_shift_std_V, het.i0_log_std, het.D_log_std
            )
            self.grain_values = d
            f = self.grains.field
            ec.set_grain_data(
                f(d["ocp_shift_V"], "ocp_shift") if het.ocp_shift_std_V > 0 else None,
                f(d["i0_factor"], "i0_factor") if het.i0_log_std > 0 else None,
                f(d["D_factor"], "D_factor") if het.D_log_std > 0 else None,
            )
        return ec

    def _toughness_factor(self):
        """Gc(x)/Gc(x0) of ``physics.mechanisms.toughness_of_x`` as UFL (None when off), of the
        Li fraction the mechanics sees (per grain in quasi-static mode with an OCP shift)."""
        law = self.rc.case.physics.mechanisms.toughness_of_x
        if law == "none" or not self.rc.case.physics.fracture:
            return None
        x = getattr(self.model.law, "x_grain", self.x_field)
        return mech.toughness_factor(x, self.rc.params.electrochemistry.x0, law, xp=ufl)

    def _li_field(self) -> fem.Function:
        """The Li fraction of the mechanics: the transport unknown x itself."""
        return self.ec.x

    def _mechanics_model(self) -> MechanicsModel:
        """Moduli, strain law (of the x field), split of the parameter set."""
        return MechanicsModel.from_params(self.rc.params, self.rc.lattice_table_path)

    def _monolithic_blocks(self) -> tuple[list, list, list[str], list[list[int]]]:
        """Residuals, unknowns, field kinds and fieldsplit groups of the monolithic Newton solve:
        all fields, in the order of the physical coupling."""
        b = self.blocks
        F = [*self.ec.residuals(), b.F_u] + ([b.F_phi] if self.fracture else [])
        kinds = ["scalar", "real", "vector"] + (["scalar"] if self.fracture else [])
        groups = [[0, 1], [2]] + ([[3]] if self.fracture else [])
        return F, self.fields, kinds, groups

    def _transport_solver(self, **kw):
        """The (x, V) solve of a staggered step (``solve() -> NewtonResult``, ``close()``).

        (x, V) keeps LU: one scalar field plus the dense voltage border, ~1/5 of the unknowns.
        """
        return BlockNewton(self._F[:2], self.fields[:2], ["scalar", "real"], name="stag_ec", **kw)

    def _solve_monolithic(self) -> NewtonResult:
        """One monolithic Newton solve of :meth:`_monolithic_blocks` at the current dt."""
        return self._monolithic_solver().solve()

    def _tolerances(self) -> list:
        """Local-error tolerances of x and V (u and φ are not error-controlled)."""
        return [x_tolerance(self.ec, self._cfg), self._cfg.time_rtol]

    # -- solvers --------------------------------------------------------------------------------
    def _monolithic(self, linear: str) -> BlockNewton:
        cfg = self._cfg
        return BlockNewton(
            self._F,
            self._newton_fields,
            self._kinds,
            bcs=self.blocks.bcs,
            entity_maps=self.entity_maps,
            linear=linear,
            rtol=cfg.newton_rtol,
            atol=cfg.newton_atol,
            max_it=cfg.newton_max_iterations,
            name="coupled",
            groups=self._groups,
            petsc_options=cfg.petsc_options,
            split_names=self._split_names[: len(self._F)],
            reuse_preconditioner=cfg.preconditioner_reuse,
        )

    def _monolithic_solver(self) -> BlockNewton:
        """The monolithic solver; with :attr:`release_idle` the staggered ones are freed first."""
        if self.release_idle and self._staggered is not None:
            _close(*self._staggered)
            self._staggered = None
        if self.newton is None:
            self.newton = self._monolithic(self.linear)
        return self.newton

    def _staggered_solvers(self):
        if self.release_idle and self.newton is not None:
            self._pc_closed = _add_counts(self._pc_closed, self.newton.preconditioner_stats())
            self.newton.close()  # collective, as every switch (all ranks fail or succeed alike)
            self.newton = None
        if self._staggered is None:
            cfg = self._cfg
            kw = dict(rtol=cfg.newton_rtol, atol=cfg.newton_atol, max_it=cfg.newton_max_iterations)
            b = self.blocks
            ec = self._transport_solver(**kw)
            kw["linear"] = self.staggered_linear
            mech = BlockNewton(
                [b.F_u],
                [b.u],
                ["vector"],
                bcs=b.bcs,
                entity_maps=self.entity_maps,
                name="stag_u",
                **kw,
            )
            frac = None
            if self.fracture:
                frac = BlockNewton(
                    [b.F_phi],
                    [b.phi],
                    ["scalar"],
                    entity_maps=self.entity_maps,
                    name="stag_phi",
                    **kw,
                )
            self._staggered = (ec, mech, frac)
        return self._staggered

    def solve_staggered(self) -> StaggeredResult:
        """(x, V) by Newton, then u and φ alternately until max |Δφ| < STAGGER_TOL."""
        t0 = time.perf_counter()
        ec, mech, frac = self._staggered_solvers()
        backup = [f.x.array.copy() for f in self.fields]
        its = lits = sweeps = worst = 0

        def add(r: NewtonResult) -> None:
            nonlocal its, lits, worst
            its, lits = its + r.iterations, lits + r.linear_iterations
            worst = max(worst, r.iterations)

        def fail(r: NewtonResult, what: str) -> StaggeredResult:
            for f, a in zip(self.fields, backup, strict=True):
                f.x.array[:] = a
            return StaggeredResult(
                False, r.reason, its, lits, time.perf_counter() - t0, 0, f"staggered {what}", sweeps
            )

        r = ec.solve()
        add(r)
        if not r.converged:
            return fail(r, "transport")
        comm = self.dom.mesh.comm
        changes: list[float] = []  # max |Δφ| of each sweep
        for sweeps in range(1, STAGGER_MAX_SWEEPS + 1):  # noqa: B007
            r = mech.solve()
            add(r)
            if not r.converged:
                return fail(r, "displacement")
            if frac is None:
                break
            phi = self.blocks.phi
            n = phi.function_space.dofmap.index_map.size_local
            old = phi.x.array[:n].copy()
            r = frac.solve()
            add(r)
            if not r.converged:
                return fail(r, "phase field")
            d = float(np.abs(phi.x.array[:n] - old).max()) if n else 0.0
            d = comm.allreduce(d, op=MPI.MAX)
            changes.append(d)
            if d < STAGGER_TOL:
                break
            if self.should_stop is not None and self.should_stop():
                return fail(NewtonResult(False, -300, its, lits, 0.0), "interrupted")
        else:
            return fail(
                NewtonResult(False, -200, its, lits, 0.0),
                "did not converge (max |Δφ| per sweep "
                + ", ".join(f"{c:.1e}" for c in changes[:3])
                + " ... "
                + ", ".join(f"{c:.1e}" for c in changes[-3:])
                + ")",
            )
        self.stats["staggered_solves"] += 1
        self.stats["staggered_sweeps"] += sweeps
        secs = time.perf_counter() - t0
        return StaggeredResult(True, 2, its, lits, secs, 0, "staggered", sweeps, worst)

    def solve(self) -> NewtonResult:
        """One nonlinear solve at the current dt, with the staggered fallback."""
        if self.linear == "staggered":
            return self.solve_staggered()
        if self.staggered_left > 0:
            res = self.solve_staggered()
            if res.converged:
                self.staggered_left -= 1
                self._just_back = self.staggered_left == 0
            return res
        res = self._solve_monolithic()
        if res.converged:
            self.failures_in_a_row = 0
            if self._just_back:
                self.fallback_steps, self._just_back = FALLBACK_STEPS, False
            return res
        self.stats["monolithic_failures"] += 1
        self.failures_in_a_row += 1
        if self._just_back:  # back from staggered steps and failing at once: stay away longer
            self.fallback_steps = min(2 * self.fallback_steps, FALLBACK_STEPS_MAX)
            self.failures_in_a_row, self._just_back = FALLBACK_AFTER, False
        if self.failures_in_a_row >= FALLBACK_AFTER:
            self.failures_in_a_row = 0
            self._rebuild_monolithic("fallback")  # the state moves on without it
            # the attempt's work is both solves' (the counts of the failed monolithic one were
            # lost before: run.json's Newton total missed 12 iterations per fallback)
            res = merged(res, self.solve_staggered())
            if res.converged:
                self.staggered_left = self.fallback_steps - 1  # >= FALLBACK_STEPS - 1 > 0
        return res

    def _rebuild_monolithic(self, reason: str) -> None:
        """A fresh preconditioner for the monolithic solver's next linear solve (if it exists)."""
        if self.newton is not None:
            self.newton.rebuild_preconditioner(reason)

    def fallback_state(self) -> dict:
        """The staggered-fallback bookkeeping (goes into checkpoints)."""
        return {
            "staggered_left": self.staggered_left,
            "failures_in_a_row": self.failures_in_a_row,
            "fallback_steps": self.fallback_steps,
            "just_back": self._just_back,
            "dphi_rejected": self._dphi_rejected,
        }

    def set_fallback_state(self, state: dict) -> None:
        """Restore :meth:`fallback_state` (keys missing in older checkpoints keep defaults)."""
        self.staggered_left = state["staggered_left"]
        self.failures_in_a_row = state["failures_in_a_row"]
        self.fallback_steps = state.get("fallback_steps", FALLBACK_STEPS)
        self._just_back = state.get("just_back", False)
        rej = state.get("dphi_rejected")
        self._dphi_rejected = tuple(rej) if rej is not None else None

    def close(self) -> None:
        """Destroy every solver's PETSc objects collectively (see BlockNewton.close)."""
        _close(self.newton, *(self._staggered or ()))

    # -- step control and updates ---------------------------------------------------------------
    def dphi_limiter(self, max_dphi: float):
        """Stepper limiter: reject a step whose max |φ - φ_committed| exceeds ``max_dphi``.

        Unless the step is a crack jump: the retry of a rejected step with dt cut to at most
        ``JUMP_DT_RATIO`` of it still moves φ by ``JUMP_DPHI_RATIO`` of the rejected Δφ or more.
        Such a step is accepted (without growing dt) instead of shrinking dt to ``dt_min``.
        """

        def limiter(dt: float) -> float:
            self._jump = False
            if not self.fracture:
                return np.inf
            phi = self.blocks.phi
            n = phi.function_space.dofmap.index_map.size_local
            d = float(np.abs(phi.x.array[:n] - self.phi_committed[:n]).max()) if n else 0.0
            d = self.dom.mesh.comm.allreduce(d, op=MPI.MAX)
            if d <= 1e-12:
                return np.inf
            if d <= max_dphi:
                return max_dphi / d
            last = self._dphi_rejected
            if (
                last is not None
                and dt <= JUMP_DT_RATIO * last[0]
                and d >= JUMP_DPHI_RATIO * last[1]
            ):
                self._jump = True
                return 1.0
            self._dphi_rejected = (dt, d)
            return 0.9 * max_dphi / d

        return limiter

    def after_accept(self) -> float:
        """Update H <- max(H, ψ+) after a converged, accepted step; returns max H (GPa)."""
        self.last_step_jump, self._jump, self._dphi_rejected = self._jump, False, None
        self.stats["dphi_jumps_accepted"] += int(self.last_step_jump)
        self.drive.accept(self.ec.x_avg())
        if not self.fracture:
            return 0.0
        self.commit_phi()
        return self.blocks.history.update(self.blocks.psi_plus, self.entity_maps)

    def commit_phi(self) -> None:
        """φ is now the accepted phase field: the Δφ limiter's reference and, for a viscous phase
        field, φ_n of the next step."""
        self.phi_committed = self.blocks.phi.x.array.copy()
        if self.blocks.phi_n is not None:
            self.blocks.phi_n.x.array[:] = self.phi_committed

    def sigma1(self) -> fem.Function:
        """Largest principal stress (GPa) as a DG0 field on the particle (compiled once)."""
        if self._s1 is None:
            f = principal_stress_field(self.dom, self._sigma)  # builds space and values once
            V = f.function_space
            s1 = principal_values(self._sigma, delta=1e-12)[0]
            sm = self.dom.submesh
            expr = fem.Expression(
                s1, V.element.interpolation_points, comm=sm.comm, entity_maps=self.entity_maps
            )
            imap = sm.topology.index_map(sm.topology.dim)
            cells = np.arange(imap.size_local + imap.num_ghosts, dtype=np.int32)
            self._s1 = (f, expr, cells)
            return f
        f, expr, cells = self._s1
        vals = expr.eval(self.dom.submesh, cells)
        f.x.array[f.function_space.dofmap.list[cells, 0]] = vals.reshape(-1)
        return f

    def metrics_now(self) -> dict:
        """Damage metrics and the maximum principal stress (Pa), collective."""
        out = {"sigma1_max_Pa": 0.0}
        s1 = self.sigma1()
        n = s1.function_space.dofmap.index_map.size_local
        smax = float(s1.x.array[:n].max()) if n else -np.inf
        out["sigma1_max_Pa"] = units.stress_to_pa(self.dom.mesh.comm.allreduce(smax, op=MPI.MAX))
        if self.metrics is not None:
            out.update(self.metrics.compute())
        return out

    def particle_average(self, expr) -> float:
        """Volume average over the particle of a scalar UFL expression on the submesh."""
        comm = self.dom.submesh.comm
        dx = ufl.dx(domain=self.dom.submesh)
        num = comm.allreduce(fem.assemble_scalar(fem.form(expr * dx)), op=MPI.SUM)
        return num / self.ec.volume_um3

    # -- the run driver's protocol (polycrack.problems.base.Problem) ------------------------------
    def make_stepper(self, on_reject: Callable[[str], None] | None = None) -> AdaptiveBDF:
        """The stepper: (x, V) error control as in the electrochemistry-only run, u and φ follow,
        the max-Δφ limiter."""
        cfg, ec = self._cfg, self.ec
        tols = self._tolerances() + [None] * (len(self.fields) - 2)
        st = AdaptiveBDF(
            self.fields,
            self.solve,
            ec.set_bdf,
            history={0: (ec.x_n, ec.x_nn)},
            tolerances=tols,
            dt_min=cfg.dt_min_s,
            dt_max=cfg.dt_max_s,
            max_retries=cfg.max_retries,
            newton_max_iterations=cfg.newton_max_iterations,
            limiters=[self.dphi_limiter(cfg.max_dphi_per_step)],
        )
        st.on_reject = on_reject
        st.after_reject = lambda kind: self._rebuild_monolithic(f"rejected_{kind}")
        return st

    def set_interrupt(self, should_stop: Callable[[], bool]) -> None:
        self.should_stop = should_stop

    def observables(self) -> dict:
        """Damage fraction, crack area Γ_l (µm²), their GB shares, max φ and max σ1 (Pa) of the
        accepted state (without fracture: no damage, Γ_l = 0, shares empty)."""
        self._last = self.metrics_now()
        obs = self._last
        return {
            "damage_fraction": obs.get("damage_fraction", 0.0),
            "damage_gb_share": obs.get("damage_gb_share"),
            "crack_area_um2": obs.get("crack_area_um2", 0.0),
            "crack_area_gb_share": obs.get("crack_area_gb_share"),
            "phi_max": obs.get("phi_max", 0.0),
            "sigma1_max_Pa": obs["sigma1_max_Pa"],
            **self.drive.row(self.blocks.history.growth if self.fracture else None),
        }

    def radial_row(self) -> list[float]:
        zeros = [0.0] * (len(RADIAL_SHELLS) - 1)
        return list(self._last.get("radial_damage_fraction", zeros)) + list(
            self._last.get("radial_crack_area_um2", zeros)
        )

    def step_message(self, obs: dict) -> str:
        jump = "  (crack jump: dphi limit waived)" if self.last_step_jump else ""
        return (
            f"damage {obs['damage_fraction']:.4f}  crack area {obs['crack_area_um2']:.4g} um^2  "
            f"phi_max {obs['phi_max']:.3f}{jump}"
        )

    def mesh_info(self) -> dict:
        dom, ec = self.dom, self.ec
        ndofs = {
            n: f.function_space.dofmap.index_map.size_global * f.function_space.dofmap.index_map_bs
            for n, f in zip(self.field_names, self.fields, strict=True)
        }
        return {
            "cells": dom.mesh.topology.index_map(3).size_global,
            "particle_cells": dom.submesh.topology.index_map(3).size_global,
            "dofs": ndofs,
            "unknowns": sum(ndofs.values()),
            "particle_volume_um3": ec.volume_um3,
            "interface_area_um2": ec.area_um2,
            "current_1C_A": ec.i_1c_A,
            **self.resolution_info(),
        }

    def resolution_info(self) -> dict:
        """The particle mesh size against the phase-field length: ``h_eq_um`` is the edge of the
        regular tetrahedron of the mean particle cell volume, (6 sqrt(2) V_p / N_cells)^(1/3) µm,
        ``h_over_l`` its ratio to l; ``gb_zone_fraction`` the particle volume share where
        (1 - gamma)^2 >= 0.5 (the denominator of a grain-boundary enrichment)."""
        n = self.dom.submesh.topology.index_map(3).size_global
        h = (6.0 * np.sqrt(2.0) * self.ec.volume_um3 / max(n, 1)) ** (1.0 / 3.0)
        out = {"h_eq_um": float(h)}
        if self.fracture and self.metrics is not None:
            l_um = float(self.rc.params.fracture.l_m) * 1e6
            out.update(l_um=l_um, h_over_l=float(h / l_um))
            out["gb_zone_fraction"] = float(self.metrics.gb_zone_fraction)
        return out

    def solver_info(self) -> dict:
        info = dict(self.stats)
        pc = self.newton.preconditioner_stats() if self.newton is not None else None
        pc = _add_counts(self._pc_closed, pc)  # with those of solvers closed at a fallback
        if pc is not None:
            info["preconditioner"] = pc
        return info

    def state_dict(self) -> tuple[dict[str, fem.Function], dict]:
        """The history field H and the solver bookkeeping (statistics, fallback state)."""
        fields = {"H": self.blocks.history.H} if self.fracture else {}
        state = {"coupled_stats": dict(self.stats), **self.fallback_state()}
        return fields, state | {"delta_eps_prime_absmax": self.drive.absmax}

    def load_state_dict(self, state: dict) -> None:
        self.stats.update(state["coupled_stats"])
        self.set_fallback_state(state)
        self.drive.absmax = float(state.get("delta_eps_prime_absmax", 0.0))
        if self.fracture:
            self.commit_phi()

    def write_fields(self, out_dir: Path, tag: str, voltage: float) -> None:
        """XDMF fields (particle: x, φ, γ, σ1; parent: u) and mid-plane renders of φ and σ1."""
        from dolfinx.io import XDMFFile

        from ..post.render import midplane_png

        comm = self.dom.mesh.comm
        fdir = Path(out_dir) / "fields"
        if comm.rank == 0:
            fdir.mkdir(parents=True, exist_ok=True)
        comm.barrier()
        s1 = self.sigma1()
        with XDMFFile(comm, fdir / f"particle_{tag}.xdmf", "w") as f:
            f.write_mesh(self.dom.submesh)
            f.write_function(self.x_field)
            if self.fracture:
                f.write_function(self.blocks.phi)
                gamma = self.blocks.gamma
                gamma.name = "gamma"
                f.write_function(gamma)
        with XDMFFile(comm, fdir / f"displacement_{tag}.xdmf", "w") as f:
            f.write_mesh(self.dom.mesh)
            if self.blocks.u.function_space.element.basix_element.degree == 1:
                f.write_function(self.blocks.u)
        figs = Path(out_dir) / "figures"
        title = f"{voltage:.3f} V"
        if self.fracture:
            midplane_png(
                self.blocks.phi, figs / f"phi_{tag}.png", title=f"phi at {title}", clim=(0, 1)
            )
        midplane_png(
            s1, figs / f"sigma1_{tag}.png", title=f"sigma1 (GPa) at {title}", cmap="coolwarm"
        )
