"""Variable-step BDF weights: shared by the time-discrete forms and the adaptive stepper."""

from __future__ import annotations


def bdf_coefficients(dt: float, dt_prev: float | None, order: int) -> tuple[float, float, float]:
    """Variable-step BDF weights (a0, a1, a2) for ``a0 y_{n+1} + a1 y_n + a2 y_{n-1} = dt f``.

    ``order`` 1 is backward Euler; order 2 uses the step ratio ω = dt/dt_prev:
    a0 = (1+2ω)/(1+ω), a1 = -(1+ω), a2 = ω²/(1+ω) (exact for quadratics in t).
    """
    if order == 1 or dt_prev is None:
        return 1.0, -1.0, 0.0
    w = dt / dt_prev
    return (1.0 + 2.0 * w) / (1.0 + w), -(1.0 + w), w * w / (1.0 + w)
