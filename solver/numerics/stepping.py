"""Adaptive variable-step BDF1/BDF2 with a predictor-corrector error estimate and cut-back.

Generic over the fields of a block problem: the caller passes the unknowns, which of them carry
BDF history (``history``: field index -> (f_n, f_nn) Functions used in the residual), which are
error-controlled (``tolerances``, absolute, in the field's units; a callable is evaluated at
every step, e.g. to tighten the tolerance in one protocol mode) and a ``solve()`` that returns a
:class:`solver.nonlinear.NewtonResult`.

Order: the first step after :meth:`AdaptiveBDF.restart` is BDF1 without an error estimate (only
one state known); the second is BDF1 with a linear predictor; from then on variable-step BDF2
with a quadratic predictor. The local error of the corrector is estimated by Milne's device,
``LTE = C_c / (C_c - C_p) (y_c - y_p)``, with the error constants ``C_c`` (BDF) and ``C_p``
(extrapolation) computed for the actual step ratios. A step is accepted when
``max_f ||LTE_f||_inf / tol_f <= 1``; the next step is ``dt * clip(0.9 err^(-1/(k+1)), 0.2, 2)``,
further limited by the Newton iteration count and by user limiters (e.g. the coupled run's
"max Δφ per step"): ``limiter(dt) -> factor`` (factor < 1 rejects the step and retries with
``dt * factor``; factor >= 1 only caps the growth of the next step). After a Newton failure at
``dt_f`` the next ``FAIL_HOLD`` accepted steps stay below ``FAIL_CAP * dt_f``: without that
memory the growth factor 2 walks straight back to the failing step size (400 grains at 4.04 V:
a failed attempt of 100-170 s after every second accepted step of 20-30 s).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from math import factorial

import dolfinx_solver  # noqa: F401
import numpy as np
from dolfinx import fem
from mpi4py import MPI

from ..errors import SolverFailure
from .bdf import bdf_coefficients

__all__ = ["AdaptiveBDF", "Trial", "StepStats", "error_constants"]

MAX_GROWTH = 2.0  # < 1 + sqrt(2): zero-stability of variable-step BDF2
MIN_SHRINK = 0.2
SAFETY = 0.9
FAIL_CAP = 0.5  # after a Newton failure at dt_f, accepted steps stay <= FAIL_CAP * dt_f ...
FAIL_HOLD = 5  # ... for this many accepted steps


def _extrapolation_weights(times: Sequence[float], t: float) -> np.ndarray:
    """Lagrange weights w_i with P(t) = sum w_i y(times[i])."""
    w = np.ones(len(times))
    for i, ti in enumerate(times):
        for j, tj in enumerate(times):
            if i != j:
                w[i] *= (t - tj) / (ti - tj)
    return w


def error_constants(dt: float, past: Sequence[float], order: int) -> tuple[float, float]:
    """(C_c, C_p): errors of the BDF corrector and of the extrapolation predictor for y = t^(k+1)/(k+1)!.

    ``past`` = previous step sizes [h_{n-1}, h_{n-2}, ...] (most recent first). Times are placed
    at t_{n+1} = 0, t_n = -dt, t_{n-1} = -dt - h_{n-1}, ...
    """
    k = order
    times = [-dt]
    for h in past[:k]:
        times.append(times[-1] - h)
    y = lambda t: t ** (k + 1) / factorial(k + 1)  # noqa: E731
    dy0 = 0.0  # y'(0) for k >= 1
    a = bdf_coefficients(dt, past[0] if past else None, k)
    tau = a[0] * y(0.0) + a[1] * y(times[0]) + (a[2] * y(times[1]) if k >= 2 else 0.0)
    tau -= dt * dy0
    c_c = -tau / a[0]
    w = _extrapolation_weights(times[: k + 1], 0.0)
    c_p = float(np.dot(w, [y(t) for t in times[: k + 1]])) - y(0.0)
    return c_c, c_p


@dataclass
class Trial:
    """A converged, error-accepted step that is not committed yet."""

    dt: float
    order: int
    error: float
    newton_iterations: int
    dt_next: float
    retries: int


@dataclass
class StepStats:
    """Totals over a run."""

    accepted: int = 0
    rejected_error: int = 0
    rejected_newton: int = 0
    rejected_limiter: int = 0
    rejected_event: int = 0
    newton_iterations: int = 0
    newton_iterations_accepted: int = 0
    linear_iterations: int = 0
    solve_seconds: float = 0.0
    log: list = field(default_factory=list)


class AdaptiveBDF:
    """Adaptive BDF stepping of a block problem (see module docstring).

    ``set_bdf(dt, (a0, a1, a2))`` must write the step and weights into the residual's Constants.
    """

    def __init__(
        self,
        fields: list[fem.Function],
        solve: Callable[[], object],
        set_bdf: Callable[[float, tuple[float, float, float]], None],
        *,
        history: dict[int, tuple[fem.Function, fem.Function]],
        tolerances: list[float | Callable[[], float] | None],
        dt_min: float,
        dt_max: float,
        max_retries: int = 8,
        newton_max_iterations: int = 25,
        max_order: int = 2,
        limiters: Sequence[Callable[[float], float]] = (),
        comm: MPI.Comm | None = None,
    ):
        if len(tolerances) != len(fields):
            raise ValueError("one tolerance (or None) per field")
        self.fields = fields
        self.solve = solve
        self.set_bdf = set_bdf
        self.history = history
        self.tol = tolerances
        self.dt_min, self.dt_max = dt_min, dt_max
        self.max_retries = max_retries
        self.newton_max = newton_max_iterations
        self.max_order = max_order
        self.limiters = list(limiters)
        self.comm = comm or fields[0].function_space.mesh.comm
        self.t = 0.0
        self.stats = StepStats()
        #: called with a one-line message for every rejected attempt (progress output)
        self.on_reject: Callable[[str], None] | None = None
        #: called with the kind of every rejected attempt ("newton", "error", "limiter"), before
        #: ``on_reject``: the problem's solvers drop what they kept from it (preconditioners)
        self.after_reject: Callable[[str], None] | None = None
        self._states: list[list[np.ndarray]] = [self._snapshot()]
        self._times: list[float] = [0.0]
        self._fail_dt: float | None = None  # dt of the latest Newton failure, s
        self._since_fail = 0  # accepted steps since then

    # -- state ----------------------------------------------------------------------------------
    def control_state(self) -> dict:
        """Step-size memory that a checkpoint must carry for an exact restart."""
        return {"fail_dt": self._fail_dt, "since_fail": self._since_fail}

    def set_control_state(self, state: dict) -> None:
        """Inverse of :meth:`control_state` (missing keys: no memory)."""
        self._fail_dt = state.get("fail_dt")
        self._since_fail = int(state.get("since_fail", 0))

    def state_dict(self) -> dict:
        """Everything an exact restart needs: time, stored states and their times, statistics.

        Returns:
            ``{"t": s, "times": [s], "states": [[array per field]], "stats": {...},
            "step_control": {...}}``; the arrays are the local parts (owned + ghosts) of each
            field, in the order of ``fields``.
        """
        return {
            "t": self.t,
            "times": list(self._times),
            "states": [[a.copy() for a in st] for st in self._states],
            "stats": {k: v for k, v in self.stats.__dict__.items() if k != "log"},
            "step_control": self.control_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Inverse of :meth:`state_dict` (the arrays must match the current partition)."""
        if len(state["states"]) != len(state["times"]):
            raise ValueError("one time per stored state")
        self._states = [[np.asarray(a).copy() for a in st] for st in state["states"]]
        self._times = list(state["times"])
        self.t = float(state["t"])
        for k, v in state.get("stats", {}).items():
            setattr(self.stats, k, v)
        self.set_control_state(state.get("step_control", {}))

    def _snapshot(self) -> list[np.ndarray]:
        return [f.x.array.copy() for f in self.fields]

    def _restore(self, state: list[np.ndarray]) -> None:
        for f, a in zip(self.fields, state, strict=True):
            f.x.array[:] = a

    def restart(self) -> None:
        """Forget the history (next step BDF1), e.g. at a protocol step boundary."""
        self._states = [self._states[-1]]
        self._times = [self._times[-1]]

    def reset(self, t: float = 0.0) -> None:
        """Take the current field values as the initial state at time t."""
        self.t = t
        self._states = [self._snapshot()]
        self._times = [t]

    @property
    def order(self) -> int:
        """Order of the next step: 1 while fewer than 3 states are known."""
        return min(self.max_order, max(1, len(self._states) - 1))

    @property
    def past_steps(self) -> list[float]:
        """Previous step sizes, most recent first."""
        ts = self._times
        return [ts[i] - ts[i - 1] for i in range(len(ts) - 1, 0, -1)]

    # -- one attempt ----------------------------------------------------------------------------
    def _predict(self, dt: float, order: int) -> list[np.ndarray] | None:
        n = len(self._states)
        k = min(order, n - 1)
        if k < 1:
            return None
        times = self._times[-(k + 1) :]
        w = _extrapolation_weights(times, self.t + dt)
        states = self._states[-(k + 1) :]
        return [
            sum(wi * s[i] for wi, s in zip(w, states, strict=True)) for i in range(len(self.fields))
        ]

    def _error(self, pred: list[np.ndarray], dt: float, order: int) -> float:
        c_c, c_p = error_constants(dt, self.past_steps, order)
        fac = abs(c_c / (c_c - c_p))
        err = 0.0
        for f, yp, tol in zip(self.fields, pred, self.tol, strict=True):
            if tol is None:
                continue
            tol = float(tol()) if callable(tol) else float(tol)
            nloc = (
                f.function_space.dofmap.index_map.size_local * f.function_space.dofmap.index_map_bs
            )
            d = np.abs(f.x.array[:nloc] - yp[:nloc])
            e = fac * float(d.max()) / tol if d.size else 0.0
            err = max(err, e)
        return float(self.comm.allreduce(err, op=MPI.MAX))

    def _solve_once(self, dt: float):
        """Set history/weights/predictor and solve; returns (result, predictor, order)."""
        order = self.order
        past = self.past_steps
        a = bdf_coefficients(dt, past[0] if past else None, order)
        self.set_bdf(dt, a)
        last = self._states[-1]
        prev = self._states[-2] if len(self._states) >= 2 else last
        for i, (fn, fnn) in self.history.items():
            fn.x.array[:] = last[i]
            fnn.x.array[:] = prev[i]
        pred = self._predict(dt, order)
        self._restore(pred if pred is not None else last)
        res = self.solve()
        self.stats.newton_iterations += res.iterations
        self.stats.linear_iterations += getattr(res, "linear_iterations", 0)
        self.stats.solve_seconds += getattr(res, "seconds", 0.0)
        return res, pred, order

    def attempt(self, dt: float) -> Trial:
        """Solve one step of at most ``dt``, shrinking it on Newton failure or a large error.

        On return the fields hold the (uncommitted) solution at ``self.t + trial.dt``; call
        :meth:`commit` or :meth:`discard`. Raises :class:`SolverFailure` when ``dt_min`` or the
        retry budget is exhausted.
        """
        dt = float(min(dt, self.dt_max))
        retries = 0
        while True:
            if dt < self.dt_min * (1 - 1e-12):
                raise SolverFailure(
                    f"time step fell below dt_min = {self.dt_min:g} s at t = {self.t:.6g} s "
                    "(try a smaller solver.dt_min_s, a looser solver.time_rtol, or check the inputs)"
                )
            res, pred, order = self._solve_once(dt)
            if not res.converged:
                self.stats.rejected_newton += 1
                self.discard()
                self._fail_dt, self._since_fail = dt, 0  # before the report (it may checkpoint)
                self._rejected(dt, "newton", res.reason, res)
                retries += 1
                if retries > self.max_retries:
                    raise SolverFailure(
                        f"Newton failed {retries} times in a row at t = {self.t:.6g} s "
                        f"(last dt {dt:g} s, SNES reason {res.reason} {res.message}); "
                        "try solver.linear=mumps or a smaller solver.dt_initial_s"
                    )
                dt = max(dt * 0.25, self.dt_min) if dt > self.dt_min else dt * 0.25
                continue
            err = self._error(pred, dt, order) if pred is not None else 0.0
            k1 = order + 1 if pred is not None else 2
            fac = SAFETY * err ** (-1.0 / k1) if err > 0 else MAX_GROWTH
            if err > 1.0:
                self.stats.rejected_error += 1
                self.discard()
                self._rejected(dt, "error", err, res)
                retries += 1
                if retries > 4 * self.max_retries:
                    raise SolverFailure(f"local error control failed at t = {self.t:.6g} s")
                dt = max(dt * max(MIN_SHRINK, fac), self.dt_min)
                continue
            fac = min(MAX_GROWTH, max(MIN_SHRINK, fac))
            its = getattr(res, "control_iterations", res.iterations)
            if its > max(4, self.newton_max // 2):
                fac = min(fac, 0.5)
            elif its > 4:
                fac = min(fac, 1.0)
            rejected = False
            for lim in self.limiters:
                lf = float(lim(dt))
                if lf < 1.0:
                    self.stats.rejected_limiter += 1
                    self.discard()
                    self._rejected(dt, "limiter", lf, res)
                    dt = max(dt * max(lf, MIN_SHRINK), self.dt_min)
                    rejected = True
                    break
                fac = min(fac, lf)
            if rejected:
                retries += 1
                if retries > 4 * self.max_retries:
                    raise SolverFailure(f"step limiter rejected too often at t = {self.t:.6g} s")
                continue
            dt_next = min(self.dt_max, max(self.dt_min, dt * fac))
            if self._fail_dt is not None:
                dt_next = min(dt_next, max(dt, FAIL_CAP * self._fail_dt))
            return Trial(dt, order, err, res.iterations, dt_next, retries)

    def _rejected(self, dt: float, kind: str, value: float, res: object) -> None:
        """Record a rejected attempt (``stats.log``) and report it through ``on_reject``.

        Called after :meth:`discard`: the fields hold the last committed state, so the callback
        may write a checkpoint (or raise to stop the run).
        """
        self.stats.log.append((self.t, dt, kind, value))
        if self.after_reject is not None:
            self.after_reject(kind)
        if self.on_reject is None:
            return
        why = getattr(res, "message", "")
        what = {
            "newton": f"Newton failed (reason {value}{': ' + why if why else ''})",
            "error": f"local error {value:.3g} > 1",
            "limiter": f"step limiter factor {value:.3g}",
        }[kind]
        its = getattr(res, "iterations", 0)
        lits = getattr(res, "linear_iterations", 0)
        secs = getattr(res, "seconds", 0.0)
        self.on_reject(
            f"  rejected at t = {self.t / 3600.0:.4f} h, dt = {dt:.4g} s: {what} "
            f"({its} Newton, {lits} Krylov, {secs:.1f} s)"
        )

    def commit(self, trial: Trial) -> None:
        """Accept the trial: the fields become the newest state."""
        self.t += trial.dt
        self._states.append(self._snapshot())
        self._times.append(self.t)
        keep = self.max_order + 1
        self._states = self._states[-keep:]
        self._times = self._times[-keep:]
        self.stats.accepted += 1
        if self._fail_dt is not None:
            self._since_fail += 1
            if self._since_fail >= FAIL_HOLD:
                self._fail_dt, self._since_fail = None, 0
        self.stats.newton_iterations_accepted += trial.newton_iterations

    def discard(self) -> None:
        """Put the fields back to the last committed state."""
        self._restore(self._states[-1])

    def state_at(self, index: int = -1) -> list[np.ndarray]:
        """A committed state (copy-free view): -1 newest."""
        return self._states[index]


def growth_factor_ok(w: float) -> bool:
    """Step ratio admissible for variable-step BDF2 (0 < w < 1 + sqrt 2)."""
    return 0.0 < w < 1.0 + math.sqrt(2.0)
