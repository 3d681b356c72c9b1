"""Cycling protocol: CC / CV / rest steps with events located by step-size control.

Each step sets the mode of the :class:`~solver.electrochem.Electrochemistry` block (galvanostatic
with I_app, potentiostatic with V_set, or zero current) through its Constants and advances the
:class:`~solver.stepping.AdaptiveBDF` stepper until its stop condition:

- ``cc``: V reaches ``until_voltage_V`` (|V - V_stop| <= ``solver.event_voltage_tol_V``), or
  ``max_time_s``;
- ``cv``: |I| falls to ``until_c_rate`` x I_1C (relative tolerance ``EVENT_CURRENT_RTOL``), or
  ``max_time_s``;
- ``rest``: ``duration_s`` elapsed.

Events are written as g(state) with g < 0 before and g = 0 at the event. Before each step dt is
cut so that the linear extrapolation of g lands on the event; a step that overshoots by more
than the tolerance is discarded and retried from the same state with a regula-falsi (Illinois)
step size between the last state and the overshooting one, so the event is hit to tolerance
instead of overshot by a whole step. Time limits clamp dt exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..config import CV_MAX_JUMP_V, CCStep, CVStep, RestStep, SolverConfig
from ..errors import InputError, SolverFailure
from ..numerics.stepping import AdaptiveBDF, Trial
from ..physics.electrochem import Electrochemistry

EVENT_CURRENT_RTOL = 1e-3
MAX_EVENT_ITERATIONS = 30
#: CV_MAX_JUMP_V (imported above, defined in polycrack.config): largest |V_set - V| a ``cv`` step
#: may start with; the same limit is checked from the file by ``polycrack check``.

__all__ = ["ProtocolRunner", "StepSummary", "EVENT_CURRENT_RTOL"]


@dataclass
class StepSummary:
    """What one protocol step did."""

    index: int
    type: str
    t_start_s: float
    t_end_s: float = 0.0
    end_reason: str = ""
    voltage_end_V: float = 0.0
    current_end_A: float = 0.0
    accepted_steps: int = 0
    event_retries: int = 0

    @property
    def duration_s(self) -> float:
        return self.t_end_s - self.t_start_s

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["duration_s"] = self.duration_s
        return d


@dataclass
class _Event:
    g: Callable[[], float]  # < 0 before the event, >= 0 after
    tol: float
    name: str


@dataclass
class ProtocolRunner:
    """Runs a list of protocol steps; ``on_accept(step_no, protocol_index, trial)`` per step."""

    ec: Electrochemistry
    stepper: AdaptiveBDF
    steps: list
    cfg: SolverConfig
    on_accept: Callable[[int, int, Trial], None] | None = None
    summaries: list[StepSummary] = field(default_factory=list)
    step_no: int = 0
    _k: int = 0
    _loop: dict = field(default_factory=dict)

    # -- configuration of one protocol step -----------------------------------------------------
    def _configure(self, step) -> tuple[_Event | None, float | None]:
        ec = self.ec
        if isinstance(step, CCStep):
            sign = 1.0 if step.direction == "charge" else -1.0
            ec.set_galvanostatic(sign * ec.c_rate_current_A(step.c_rate))
            vs = step.until_voltage_V
            g = (lambda: ec.voltage - vs) if sign > 0 else (lambda: vs - ec.voltage)
            return _Event(g, self.cfg.event_voltage_tol_V, "voltage"), step.max_time_s
        if isinstance(step, CVStep):
            ec.set_potentiostatic(step.voltage_V)
            ev = None
            if step.until_c_rate is not None:
                i_stop = ec.c_rate_current_A(step.until_c_rate)
                ev = _Event(
                    lambda: (i_stop - abs(ec.current_A())) / i_stop, EVENT_CURRENT_RTOL, "current"
                )
            return ev, step.max_time_s
        if isinstance(step, RestStep):
            ec.set_galvanostatic(0.0)
            return None, step.duration_s
        raise TypeError(f"unknown protocol step {step!r}")

    # -- main loop ------------------------------------------------------------------------------
    def run(self, resume: dict | None = None) -> list[StepSummary]:
        """Run every step in order; returns the per-step summaries.

        ``resume`` (from :attr:`position` saved in a checkpoint) continues inside protocol step
        ``resume["k"]`` with its loop state; the stepper must already hold the restored history.
        """
        start = 0
        if resume is not None:
            start = int(resume["k"])
            self.step_no = int(resume["step_no"])
            self.summaries = [StepSummary(**d) for d in resume["summaries"]]
        loop0 = resume["loop"] if resume is not None else None
        if loop0 is not None and loop0.get("done"):  # the checkpoint closed protocol step k
            summ = StepSummary(**loop0["summary"])
            self._configure(self.steps[start])
            summ.t_end_s = self.stepper.t
            summ.voltage_end_V = self.ec.voltage
            summ.current_end_A = self.ec.current_A()
            self.summaries.append(summ)
            start, loop0 = start + 1, None
        for k in range(start, len(self.steps)):
            loop = loop0 if k == start else None
            self.summaries.append(self.run_step(k, self.steps[k], loop))
        return self.summaries

    def set_position(self, position: dict) -> None:
        """Take a saved :attr:`position` as the current one (a run moved onto a new mesh writes
        its checkpoint with the new runner before that runner resumes)."""
        self._k = int(position["k"])
        self.step_no = int(position["step_no"])
        self.summaries = [StepSummary(**d) for d in position["summaries"]]
        self._loop = dict(position["loop"])

    @property
    def position(self) -> dict:
        """JSON-able place in the protocol after the last accepted step (for checkpoints)."""
        return {
            "k": self._k,
            "step_no": self.step_no,
            "summaries": [
                {k: v for k, v in s.to_dict().items() if k != "duration_s"} for s in self.summaries
            ],
            "loop": dict(self._loop),
        }

    def _aim(self, dt, t_end, event, g_now, g_last, bracket) -> float | None:
        """The next step size: at most to the step's end time and to the predicted event
        (inside a bracket by regula falsi, else by the last slope of g); None at the end time.
        """
        st = self.stepper
        if t_end is not None:
            rem = t_end - st.t
            if rem <= 1e-9 * max(1.0, abs(t_end)):
                return None
            dt = min(dt, rem)
        if event is not None and g_now is not None:
            if bracket is not None:
                t_hi, g_hi = bracket
                frac = -g_now / (g_hi - g_now) if g_hi != g_now else 0.5
                dt = min(dt, max(frac, 1e-3) * (t_hi - st.t))
            elif g_last is not None:
                slope = (g_now - g_last[1]) / (st.t - g_last[0])
                if slope > 0:
                    dt = min(dt, max(-g_now / slope, st.dt_min))
        return max(dt, st.dt_min)

    def run_step(self, k: int, step, loop: dict | None = None) -> StepSummary:
        st = self.stepper
        event, t_max = self._configure(step)
        if loop is None:
            if isinstance(step, CVStep) and abs(step.voltage_V - self.ec.voltage) > CV_MAX_JUMP_V:
                raise InputError(
                    f"protocol step {k} (cv at voltage_V = {step.voltage_V:g} V) starts at "
                    f"{self.ec.voltage:.4g} V: a potentiostatic jump of "
                    f"{abs(step.voltage_V - self.ec.voltage):.3g} V (> {CV_MAX_JUMP_V} V) is "
                    "not resolvable in time; put a cc step with "
                    f"until_voltage_V: {step.voltage_V:g} before it"
                )
            summ = StepSummary(k, step.type, st.t)
            st.restart()
            dt = self.cfg.dt_initial_s
            g_now = None  # g is only meaningful after the first step in the new mode
            g_last: tuple[float, float] | None = None  # (t, g) of the previous accepted state
            bracket: tuple[float, float] | None = None  # (t_hi, g_hi) of a discarded overshoot
            side = 0
        else:  # resume inside this step (restart from a checkpoint)
            summ = StepSummary(**loop["summary"])
            dt, g_now, side = loop["dt"], loop["g_now"], loop["side"]
            g_last = tuple(loop["g_last"]) if loop["g_last"] is not None else None
            bracket = tuple(loop["bracket"]) if loop["bracket"] is not None else None
        t_end = summ.t_start_s + t_max if t_max is not None else None
        self._k = k
        while True:
            dt = self._aim(dt, t_end, event, g_now, g_last, bracket)
            if dt is None:
                summ.end_reason = "time"
                break
            trial = st.attempt(dt)
            g_new = event.g() if event is not None else None
            if g_new is not None and g_new > event.tol and g_now is not None:
                # overshoot: discard and aim between the last state and this one
                st.discard()
                self.stepper.stats.rejected_event += 1
                summ.event_retries += 1
                if summ.event_retries > MAX_EVENT_ITERATIONS:
                    raise SolverFailure(
                        f"could not locate the {event.name} event of protocol step {k} "
                        f"(t = {st.t:.6g} s); try a smaller solver.dt_max_s"
                    )
                bracket, side = (st.t + trial.dt, g_new), +1
                dt = trial.dt
                continue
            st.commit(trial)
            self.step_no += 1
            summ.accepted_steps += 1
            done = False
            if g_new is not None:
                if g_new >= -event.tol:
                    summ.end_reason = event.name
                    done = True
                else:
                    if g_now is not None:
                        g_last = (st.t - trial.dt, g_now)
                    g_now = g_new
                    if bracket is not None:
                        if st.t >= bracket[0]:
                            bracket = None
                        elif side == -1:  # Illinois: the same end moved twice, halve g there
                            bracket = (bracket[0], 0.5 * bracket[1])
                        side = -1
            dt = trial.dt_next
            self._loop = {
                "dt": dt,
                "g_now": g_now,
                "g_last": g_last,
                "bracket": bracket,
                "side": side,
                "summary": {k2: v for k2, v in summ.to_dict().items() if k2 != "duration_s"},
                "done": done,
            }
            if self.on_accept is not None:
                self.on_accept(self.step_no, k, trial)
            if done:
                break
        summ.t_end_s = st.t
        summ.voltage_end_V = self.ec.voltage
        summ.current_end_A = self.ec.current_A()
        return summ
