"""Quasi-static mechanics + AT2 fracture: under a prescribed Li field, and the run mode
``physics.mode: quasistatic``.

:class:`QuasiStaticFracture` (verification cases, calibration and benchmarks): x prescribed per
load step (uniform or any field); per step alternate minimisation (u with phi fixed, then phi
with u fixed, driving force D = max(H, psi+(u, x))) until max |phi_k - phi_{k-1}| < ``tol``, or
one monolithic Newton solve of [F_u, F_phi] (``scheme='monolithic'``, MUMPS); then
H <- max(H, psi+). Units: µm, GPa. The residual forms are exposed (``F_u``, ``F_phi``).

:class:`QuasiStaticProblem` (the run driver's problem of ``physics.mode: quasistatic``): x is
uniform and follows the protocol's charge (:class:`~polycrack.physics.uniform_electrochem.
UniformElectrochemistry`), and mechanics + fracture are solved per load step by the coupled
problem's own solvers (monolithic (u, φ) Newton with the staggered fallback, or staggered).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import dolfinx_solver  # noqa: F401
import numpy as np
from dolfinx import fem
from dolfinx.fem.petsc import NonlinearProblem
from mpi4py import MPI

from ..meshing.tags import INTERFACE
from ..numerics.nonlinear import NewtonResult
from ..physics import mechanisms as mech
from ..physics.mechanics import (
    MechanicsModel,
    ParticleDomain,
    UniformStrainLaw,
    build_blocks,
    uniform_x,
)
from ..physics.uniform_electrochem import UniformElectrochemistry
from ..post.metrics import DamageMetrics, field_max, principal_stress_field
from .coupled import CoupledProblem
from .electrochemistry import x_tolerance

LU = {"ksp_type": "preonly", "pc_type": "lu", "pc_factor_mat_solver_type": "mumps"}


@dataclass
class FractureSettings:
    """Gc_bulk, Gc_gb in GPa µm; l, l_gamma in µm."""

    Gc_bulk: float
    Gc_gb: float
    l: float
    l_gamma: float

    @classmethod
    def from_params(cls, params) -> FractureSettings:
        from ..physics.fracture import fracture_constants

        c = fracture_constants(params)
        return cls(c["Gc_bulk"], c["Gc_gb"], c["l"], c["l_gamma"])


class QuasiStaticFracture:
    """Mechanics + fracture on a :class:`ParticleDomain` for prescribed x fields.

    ``phi_bounds=True`` (staggered only) solves the phi step as a variational inequality
    phi_n <= phi <= 1 (PETSc vinewtonrsls): strict irreversibility and no P1 overshoot above 1.
    ``bcs_factory(V) -> list[DirichletBC]`` replaces the outer-boundary conditions (e.g. for a bar
    test); ``gamma`` may be given, otherwise it is solved from the GB facets.
    ``toughness_of_x(x) -> UFL``: a factor on Gc of the Li field x (polycrack.physics.mechanisms).
    """

    def __init__(
        self,
        dom: ParticleDomain,
        model: MechanicsModel,
        frac: FractureSettings | None,
        degree: int = 1,
        outer_boundary: str = "clamped",
        bcs_factory: Callable | None = None,
        gamma: fem.Function | None = None,
        scheme: str = "staggered",
        tol: float = 1e-4,
        max_iter: int = 300,
        prefix: str = "qs",
        phi_bounds: bool = False,
        toughness_of_x: Callable | None = None,
    ):
        self.dom, self.model, self.frac = dom, model, frac
        self.tol, self.max_iter, self.scheme = tol, max_iter, scheme
        emaps = [dom.entity_map]
        self.x = uniform_x(dom, model.x0)
        self.fracture = frac is not None
        fr = (
            None
            if frac is None
            else {
                "Gc_bulk": frac.Gc_bulk,
                "Gc_gb": frac.Gc_gb,
                "l": frac.l,
                "l_gamma": frac.l_gamma,
            }
        )
        self.blocks = b = build_blocks(
            dom,
            model,
            self.x,
            fr,
            degree,
            outer_boundary,
            bcs_factory,
            gamma,
            gamma_prefix=f"{prefix}gamma_",
            toughness_factor=None if toughness_of_x is None else toughness_of_x(self.x),
        )
        self.V, self.u, self.n, self.bcs = b.V, b.u, b.n, b.bcs
        self.F_u, self.F_phi, self.psi_plus = b.F_u, b.F_phi, b.psi_plus
        self.gamma, self.history = b.gamma, b.history
        self.phi = (
            b.phi
            if self.fracture
            else fem.Function(fem.functionspace(dom.submesh, ("Lagrange", 1)), name="phi")
        )
        if self.fracture:
            self.metrics = DamageMetrics(dom, self.phi, self.gamma, l=frac.l)
        nonlinear_u = model.split in ("voldev", "spectral")
        u_opts = dict(LU)
        u_opts.update(
            {
                "snes_type": "newtonls",
                "snes_linesearch_type": "basic",
                "snes_rtol": 1e-9,
                "snes_atol": 1e-11,
                "snes_max_it": 50,
            }
            if nonlinear_u
            else {"snes_type": "ksponly"}
        )
        if scheme == "monolithic" and self.fracture:
            opts = dict(LU)
            opts.update(
                {
                    "snes_type": "newtonls",
                    "snes_linesearch_type": "bt",
                    "snes_rtol": 1e-8,
                    "snes_atol": 1e-10,
                    "snes_max_it": 100,
                }
            )
            self.mono = NonlinearProblem(
                [self.F_u, self.F_phi],
                [self.u, self.phi],
                bcs=self.bcs,
                kind="mpi",
                entity_maps=emaps,
                petsc_options=opts,
                petsc_options_prefix=f"{prefix}mono_",
            )
        else:
            self.prob_u = NonlinearProblem(
                self.F_u,
                self.u,
                bcs=self.bcs,
                entity_maps=emaps,
                petsc_options=u_opts,
                petsc_options_prefix=f"{prefix}u_",
            )
            if self.fracture:
                phi_opts = dict(LU)
                phi_opts["snes_type"] = "ksponly"
                if phi_bounds:  # variational inequality phi_n <= phi <= 1 (semismooth Newton)
                    phi_opts.update(
                        {
                            "snes_type": "vinewtonrsls",
                            "snes_rtol": 1e-10,
                            "snes_atol": 1e-12,
                            "snes_max_it": 50,
                        }
                    )
                self.prob_phi = NonlinearProblem(
                    self.F_phi,
                    self.phi,
                    entity_maps=emaps,
                    petsc_options=phi_opts,
                    petsc_options_prefix=f"{prefix}phi_",
                )
                self.phi_bounds = phi_bounds
                if phi_bounds:
                    self._phi_lb = fem.Function(self.phi.function_space)
                    self._phi_ub = fem.Function(self.phi.function_space)
                    self._phi_ub.x.array[:] = 1.0
                    self.prob_phi.solver.setVariableBounds(
                        self._phi_lb.x.petsc_vec, self._phi_ub.x.petsc_vec
                    )
        self.stats = {"steps": 0, "iterations": 0, "solve_time_s": 0.0, "stalled_accepted": 0}
        self.stall_rtol = 1e-3
        self._fref: float | None = None

    # -- x field --------------------------------------------------------------------------------
    def set_x(self, value: float | Callable[[np.ndarray], np.ndarray]) -> None:
        """Uniform value, or a callable of coordinates (3, n) -> x (e.g. radial profile)."""
        if callable(value):
            self.x.interpolate(value)
        else:
            self.x.x.array[:] = value
        self.x.x.scatter_forward()

    # -- solves ---------------------------------------------------------------------------------
    def _solve(self, prob, what: str) -> int:
        snes = prob.solver
        if snes.getType() != "ksponly":
            snes.setConvergenceHistory(length=200, reset=True)
        prob.solve()
        r = snes.getConvergedReason()
        if r <= 0 and snes.getType() != "ksponly":
            # Newton on the voldev/spectral splits can stall at a floor ~1e-4 of the step's first
            # residual (the eigenvalue clip leaves a tiny kink at repeated principal strains):
            # accept such a state, count it, and fail otherwise.
            hist = snes.getConvergenceHistory()[0]
            if self._fref is None and len(hist):
                self._fref = float(hist[0])
            if self._fref and snes.getFunctionNorm() <= self.stall_rtol * self._fref:
                self.stats["stalled_accepted"] += 1
                return snes.getIterationNumber()
        elif snes.getType() != "ksponly" and self._fref is None:
            hist = snes.getConvergenceHistory()[0]
            self._fref = float(hist[0]) if len(hist) else None
        if r <= 0:
            raise RuntimeError(f"{what} solve failed (SNES reason {r})")
        return snes.getIterationNumber()

    def solve_step(self) -> dict:
        """Equilibrate u and phi for the current x (and BC values), then update H."""
        t0 = time.perf_counter()
        self._fref = None  # reference residual: the first Newton residual of this step
        if self.fracture and getattr(self, "phi_bounds", False):
            self._phi_lb.x.array[:] = self.phi.x.array  # irreversibility: phi >= phi_n
        comm = self.dom.mesh.comm
        it = 0
        if not self.fracture:
            self._solve(self.prob_u, "displacement")
            it = 1
        elif self.scheme == "monolithic":
            it = self._solve(self.mono, "monolithic")
        else:
            nloc = self.phi.function_space.dofmap.index_map.size_local
            for it in range(1, self.max_iter + 1):  # noqa: B007 (used after the loop)
                old = self.phi.x.array[:nloc].copy()
                self._solve(self.prob_u, "displacement")
                self._solve(self.prob_phi, "phase-field")
                d = float(np.abs(self.phi.x.array[:nloc] - old).max()) if nloc else 0.0
                d = comm.allreduce(d, op=MPI.MAX)
                if d < self.tol:
                    break
            else:
                raise RuntimeError(f"staggered solve: no convergence in {self.max_iter} iterations")
        if self.fracture:
            self.history.update(self.psi_plus, [self.dom.entity_map])
        dt = time.perf_counter() - t0
        self.stats["steps"] += 1
        self.stats["iterations"] += it
        self.stats["solve_time_s"] += dt
        out = {"iterations": it, "time_s": dt}
        if self.fracture:
            out.update(self.metrics.compute())
        return out

    def stress(self):
        """Grain stress (UFL, GPa) of the current state."""
        return self.model.particle_stress(
            self.u, self.x, self.n, self.phi if self.fracture else None
        )

    def sigma1(self) -> fem.Function:
        """Max principal stress (GPa), DG0 on the particle submesh."""
        return principal_stress_field(self.dom, self.stress())

    def sigma1_max_GPa(self) -> float:
        return field_max(self.sigma1())

    def sweep(self, xs, callback: Callable | None = None) -> list[dict]:
        """Solve for each x in ``xs`` (values or callables); returns one record per step."""
        rows = []
        for xv in xs:
            self.set_x(xv)
            rec = self.solve_step()
            rec["x"] = xv if not callable(xv) else None
            rows.append(rec)
            if callback is not None:
                callback(self, rec)
        return rows


class QuasiStaticProblem(CoupledProblem):
    """``physics.mode: quasistatic``: uniform x, V = U(x) + η, mechanics + fracture per step.

    The rate-independent limit of a slow charge: the radial Li spread x_avg - x_surf, about
    I R² / (15 F c_max D V_p) for a sphere (:func:`polycrack.physics.materials.
    quasi_steady_li_spread`; 0.0045 for the demo at C/50), is neglected. Unknowns of the stepper:
    x and V (one DOF each; x error-controlled, V exact for its x), u and φ. A step solves (x, V)
    exactly (:meth:`UniformElectrochemistry.solve`), hands x to the mechanics (the uniform P1
    field of the output and the lattice strains as two Constants,
    :class:`~polycrack.physics.mechanics.UniformStrainLaw`), then solves (u, φ): one monolithic
    Newton solve (``solver.linear`` mumps, mumps_lagged or fieldsplit, whose splits keep the
    coupled names f2 = u, f3 = φ) with the coupled problem's staggered fallback, or alternate
    minimisation (``staggered``). History field, Δφ limiter, observables, checkpoints and field
    output are the coupled problem's.
    """

    kind = "quasistatic"
    #: u and φ keep the coupled run's split names, so solver.petsc_options mean the same
    _split_names = ("f2", "f3")

    def _electrochemistry(self) -> UniformElectrochemistry:
        dom = self.dom
        return UniformElectrochemistry.on_particle(
            dom.submesh, dom.sub_facet_tags, INTERFACE, self.rc.params.electrochemistry
        )

    def _li_field(self) -> fem.Function:
        return self.ec.x_field

    def _mechanics_model(self) -> MechanicsModel:
        """The strains of the uniform x as two Constants, or with a per-grain OCP shift
        (``physics.mechanisms.grain_heterogeneity.ocp_shift_std_V``) those of each grain's x,
        U(x_g) + ΔU_g = the common Li potential, as two DG0 fields."""
        model = super()._mechanics_model()
        het = self.rc.case.physics.mechanisms.grain_heterogeneity
        if het.ocp_shift_std_V > 0.0:
            self.grains = mech.GrainData(self.dom)
            self.grain_values = mech.grain_draws(
                self.grains.n_grains, het.seed, het.ocp_shift_std_V, 0.0, 0.0
            )
            model.law = mech.GrainStrainLaw(
                model.law,
                self.grains,
                self.grain_values["ocp_shift_V"],
                self.rc.params.electrochemistry.ocp,
                self.ec.x_value,
            )
        else:
            model.law = UniformStrainLaw(model.law, self.dom.submesh, self.ec.x_value)
        return model

    def _monolithic_blocks(self) -> tuple[list, list, list[str], list[list[int]]]:
        """(u, φ) only: x is known before the mechanics is solved."""
        b = self.blocks
        F = [b.F_u] + ([b.F_phi] if self.fracture else [])
        fields = [b.u] + ([b.phi] if self.fracture else [])
        kinds = ["vector"] + (["scalar"] if self.fracture else [])
        return F, fields, kinds, [[i] for i in range(len(F))]

    def _tolerances(self) -> list:
        """x only: V = U(x) + η(I, x) is exact for the x of the step (no time-discretisation
        error of its own), and in CC and rest steps x itself is exact (linear in t)."""
        return [x_tolerance(self.ec, self._cfg), None]

    def _apply_x(self) -> None:
        """The mechanics sees the current x (after a solve, a restored state or a restart)."""
        self.ec.sync_field()
        self.model.law.set(self.ec.x_value)

    def solve_transport(self) -> NewtonResult:
        """(x, V) of the step, then :meth:`_apply_x`."""
        r = self.ec.solve()
        if r.converged:
            self._apply_x()
        return r

    def _transport_solver(self, **kw) -> _Transport:
        return _Transport(self)

    def _solve_monolithic(self) -> NewtonResult:
        r = self.solve_transport()
        if not r.converged:
            return r
        return self._monolithic_solver().solve()

    def after_accept(self) -> float:
        self._apply_x()
        return super().after_accept()

    def load_state_dict(self, state: dict) -> None:
        self._apply_x()
        super().load_state_dict(state)

    def solver_info(self) -> dict:
        return {**super().solver_info(), "cv_root_evaluations": self.ec.evaluations}


class _Transport:
    """The (x, V) solver of the staggered family (``solve``, ``close``)."""

    def __init__(self, problem: QuasiStaticProblem):
        self.solve = problem.solve_transport

    def close(self) -> None:
        """Nothing to free."""
