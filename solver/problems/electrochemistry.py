"""The electrochemistry-only problem: (x, V) on the particle, one monolithic Newton per step.

Also home of what every problem with an electrochemistry block shares: the local-error tolerance
on x (:func:`x_tolerance`) and the (x, V) solver with LU reuse (:func:`electrochem_solver`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import dolfinx_solver  # noqa: F401  (MPI before dolfinx / petsc4py)
from dolfinx import fem
from petsc4py import PETSc

from ..config import ResolvedCase, SolverConfig
from ..meshing.tags import INTERFACE
from ..numerics.nonlinear import BlockNewton
from ..numerics.stepping import AdaptiveBDF
from ..physics.electrochem import Electrochemistry
from .base import Problem

#: Absolute local-error tolerance on x is ``time_rtol * X_TOL_FACTOR`` (``X_TOL_CV`` in CV
#: steps); on V it is ``time_rtol`` volts. CV is tighter because there the current follows
#: η = V - U(x_s) of ~1 mV: at x ≈ 0.18 a 1e-5 error in x_s is a ~4 % error in the current.
X_TOL_FACTOR = 1.0
X_TOL_CV = 0.001


class ReusedLU:
    """Chord-Newton for (x, V): keep one Jacobian + MUMPS factorisation while dt and mode stay.

    The transport Jacobian is ``M + dt K`` plus the weakly nonlinear Butler-Volmer border; with
    dt and the CC/CV mode fixed it changes little from step to step, so the Jacobian and its LU
    are kept (PETSc ``snes_lag_jacobian``/``snes_lag_preconditioner`` -2, persistent) and Newton
    becomes a chord iteration that still converges to the SNES tolerances (the residual is
    always exact). A fresh Jacobian and factorisation are made when dt/a0 changes by more than
    ``dt_change`` (relative), when the mode changes, after a failed solve, or when the last
    solve needed more than ``max_chord_iterations``. A chord solve is capped at
    ``max_chord_iterations + 2`` iterations; if it stalls (e.g. the sinh of Butler-Volmer at a
    high rate) the same step is re-solved by exact Newton (fresh Jacobian and LU every
    iteration) before the stepper cuts dt.

    Restarts are exact: :meth:`state` gives what decides the next refresh and where the kept
    Jacobian was assembled (the initial guess of the solve that refreshed it, and the values of
    the step Constants then); :meth:`load_state` assembles and factorises it again there, so a
    restarted run takes the iterates of the uninterrupted one (on 2 ranks a restart from a
    fresh LU took other chord iterates, and in about one run in five other steps).
    """

    #: the Constants of :class:`Electrochemistry` that a kept Jacobian was assembled with
    CONSTANTS = ("dt", "a0", "a1", "a2", "j_app", "V_set", "g", "p")

    def __init__(
        self,
        newton: BlockNewton,
        ec: Electrochemistry,
        dt_change: float = 0.05,
        max_chord_iterations: int = 4,
    ):
        self.newton, self.ec = newton, ec
        self.dt_change, self.max_chord = dt_change, max_chord_iterations
        opts = PETSc.Options()
        pre = newton.snes.getOptionsPrefix() or ""
        for key, val in (
            ("snes_lag_preconditioner_persists", True),
            ("snes_lag_jacobian_persists", True),
        ):
            opts[pre + key] = val
        self._opts, self._pre = opts, pre
        self.max_it = newton.snes.getTolerances()[3]
        self._key: tuple[float, float] | None = None
        self._last_its = 0
        self.refreshes = 0
        #: where the kept Jacobian was assembled: the unknowns' values (checkpointed as fields)
        #: and the Constants' values
        self.lin_fields = [fem.Function(f.function_space) for f in newton.u]
        self._lin_constants: dict[str, float] | None = None

    def _set_lag(self, lag: int, max_it: int) -> None:
        for key in ("snes_lag_preconditioner", "snes_lag_jacobian"):
            self._opts[self._pre + key] = lag
        self.newton.snes.setFromOptions()
        self.newton.snes.setTolerances(max_it=max_it)

    def solve(self):
        ec = self.ec
        dt, g = float(ec.dt.value) / float(ec.a0.value), float(ec.g.value)  # J ~ a0 (M + dt/a0 K)
        k = self._key
        fresh = (
            k is None
            or g != k[1]
            or abs(dt / k[0] - 1.0) > self.dt_change
            or self._last_its > self.max_chord
        )
        if fresh:  # -2: build at the next iteration, then keep (persistent across solves)
            self._set_lag(-2, self.max_chord + 2)
            self.refreshes += 1
            self._key = (dt, g)
            for lin, f in zip(self.lin_fields, self.newton.u, strict=True):
                lin.x.array[:] = f.x.array
            self._lin_constants = {c: float(getattr(ec, c).value) for c in self.CONSTANTS}
        res = self.newton.solve()
        self._last_its = res.iterations
        if not res.converged:
            # chord stalled (stale or strongly nonlinear Jacobian): exact Newton for this solve
            self._set_lag(1, self.max_it)
            res2 = self.newton.solve()
            res2.iterations += res.iterations
            res2.linear_iterations += res.linear_iterations
            res2.seconds += res.seconds
            res = res2
            self._key, self._lin_constants = None, None
            self._set_lag(-2, self.max_chord + 2)
        return res

    def state(self) -> dict:
        """What decides the next refresh and the kept Jacobian's Constants (JSON); the kept
        Jacobian's unknowns are :attr:`lin_fields` (checkpoint fields)."""
        return {
            "key": list(self._key) if self._key is not None else None,
            "last_its": self._last_its,
            "refreshes": self.refreshes,
            "constants": self._lin_constants,
        }

    def load_state(self, state: dict) -> None:
        """Restore :meth:`state` (with :attr:`lin_fields` loaded): assemble and factorise the
        kept Jacobian again where it was. Collective."""
        self._last_its, self.refreshes = int(state["last_its"]), int(state["refreshes"])
        key, consts = state["key"], state["constants"]
        self._key = tuple(key) if key is not None else None
        self._lin_constants = consts
        if self._key is None or consts is None:
            return
        ec, u = self.ec, self.newton.u
        now = [f.x.array.copy() for f in u]
        before = {c: float(getattr(ec, c).value) for c in self.CONSTANTS}
        for f, lin in zip(u, self.lin_fields, strict=True):
            f.x.array[:] = lin.x.array
        for c, v in consts.items():
            getattr(ec, c).value = v
        self._set_lag(-2, self.max_chord + 2)  # as at the refresh: build once (lags -> -1)
        self.newton.set_up_at_current()
        for f, a in zip(u, now, strict=True):
            f.x.array[:] = a
        for c, v in before.items():
            getattr(ec, c).value = v


def x_tolerance(ec: Electrochemistry, cfg: SolverConfig):
    """Local-error tolerance on x for :class:`AdaptiveBDF` (a callable, read every step).

    ``time_rtol * X_TOL_FACTOR`` in galvanostatic steps (CC, rest), ``time_rtol * X_TOL_CV`` in
    potentiostatic (CV) steps; the tolerance on V is ``time_rtol`` volts.
    """

    def tol() -> float:
        return cfg.time_rtol * (X_TOL_FACTOR if ec.mode == "galvanostatic" else X_TOL_CV)

    return tol


def electrochem_solver(
    ec: Electrochemistry, cfg: SolverConfig, limiters=(), reuse_lu: bool | None = None
) -> tuple[BlockNewton, AdaptiveBDF]:
    """The monolithic (x, V) Newton solver and the adaptive BDF stepper for a block.

    ``solver.linear``: ``mumps`` and ``mumps_lagged`` use MUMPS LU of the whole bordered (x, V)
    Jacobian; by default (``reuse_lu=None``) both keep the Jacobian and its factorisation while
    dt and the mode stay the same (:class:`ReusedLU`, chord Newton to the same SNES
    tolerances; 2-3x faster on 2 ranks). ``reuse_lu=False`` gives exact Newton with a fresh LU
    per iteration. ``auto`` is ``mumps`` here (the (x, V) block alone is small);
    ``staggered`` has nothing to stagger without mechanics and maps to ``mumps``;
    ``fieldsplit`` puts (x, V) in one exact-LU split (no gain without mechanics).
    """
    linear = "mumps" if cfg.linear in ("auto", "staggered", "mumps_lagged") else cfg.linear
    lagged = linear == "mumps" if reuse_lu is None else (reuse_lu and linear == "mumps")
    newton = BlockNewton(
        ec.residuals(),
        ec.unknowns,
        ["scalar", "real"],
        linear=linear,
        rtol=cfg.newton_rtol,
        atol=cfg.newton_atol,
        max_it=cfg.newton_max_iterations,
        name="ec",
        groups=[[0, 1]],
    )
    solve = newton.solve
    if lagged:
        solve = ReusedLU(newton, ec).solve
    stepper = AdaptiveBDF(
        ec.unknowns,
        solve,
        ec.set_bdf,
        history={0: (ec.x_n, ec.x_nn)},
        tolerances=[x_tolerance(ec, cfg), cfg.time_rtol],
        dt_min=cfg.dt_min_s,
        dt_max=cfg.dt_max_s,
        max_retries=cfg.max_retries,
        newton_max_iterations=cfg.newton_max_iterations,
        limiters=limiters,
    )
    return newton, stepper


class ElectrochemProblem(Problem):
    """Li fraction x and voltage V on a particle mesh (``physics.mechanics: false``).

    Args:
        mesh: particle mesh in µm (the particle submesh of a bundle, or a particle-only mesh).
        facet_tags: facet tags of ``mesh`` (Li exchange on ``INTERFACE``).
        rc: the resolved case.
        reuse_lu: keep the LU while dt and mode stay (None: by ``solver.linear``).
    """

    kind = "electrochemistry"
    field_names = ("x", "V")

    def __init__(self, mesh, facet_tags, rc: ResolvedCase, reuse_lu: bool | None = None):
        self.rc = rc
        self.ec = Electrochemistry(mesh, facet_tags, INTERFACE, rc.params.electrochemistry)
        self.fields = list(self.ec.unknowns)
        self._reuse_lu = reuse_lu
        self.newton: BlockNewton | None = None
        self._reuse: ReusedLU | None = None

    @property
    def linear(self) -> str:
        return self.newton.linear if self.newton is not None else self.rc.case.solver.linear

    def make_stepper(self, on_reject: Callable[[str], None] | None = None) -> AdaptiveBDF:
        self.newton, stepper = electrochem_solver(
            self.ec, self.rc.case.solver, reuse_lu=self._reuse_lu
        )
        owner = getattr(stepper.solve, "__self__", None)
        self._reuse = owner if isinstance(owner, ReusedLU) else None
        stepper.on_reject = on_reject
        return stepper

    def mesh_info(self) -> dict:
        ec = self.ec
        n_x = ec.W.dofmap.index_map.size_global
        msh = ec.W.mesh
        return {
            "cells": msh.topology.index_map(3).size_global,
            "dofs": {"x": n_x, "V": 1},
            "x_dofs": n_x,
            "unknowns": n_x + 1,
            "particle_volume_um3": ec.volume_um3,
            "interface_area_um2": ec.area_um2,
            "current_1C_A": ec.i_1c_A,
        }

    def solver_info(self) -> dict:
        return {
            "lu_reuse": self._reuse is not None,
            "jacobian_refreshes": self._reuse.refreshes if self._reuse is not None else None,
        }

    def state_dict(self) -> tuple[dict[str, fem.Function], dict]:
        """The kept LU's linearisation point and refresh state (an exact restart)."""
        if self._reuse is None:
            return {}, {}
        names = [f"lu_{n}" for n in self.field_names]
        return dict(zip(names, self._reuse.lin_fields, strict=True)), {
            "reused_lu": self._reuse.state()
        }

    def load_state_dict(self, state: dict) -> None:
        if self._reuse is not None and "reused_lu" in state:
            self._reuse.load_state(state["reused_lu"])

    def write_fields(self, out_dir: Path, tag: str, voltage: float) -> None:
        """XDMF of x on the particle (``fields/particle_<tag>.xdmf``)."""
        from dolfinx.io import XDMFFile

        comm = self.ec.W.mesh.comm
        fdir = Path(out_dir) / "fields"
        if comm.rank == 0:
            fdir.mkdir(parents=True, exist_ok=True)
        comm.barrier()
        with XDMFFile(comm, fdir / f"particle_{tag}.xdmf", "w") as f:
            f.write_mesh(self.ec.W.mesh)
            f.write_function(self.ec.x)

    def close(self) -> None:
        if self.newton is not None:
            self.newton.close()
