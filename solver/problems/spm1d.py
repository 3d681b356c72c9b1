"""1D spherical single-particle reference model (finite volumes) and Crank's closed form.

Same equations as :mod:`solver.electrochem` for a sphere of radius R (docs/model.md section 3), in
µm and s: vertex-centred finite volumes on ``r_i = i R / N`` (control volumes
``[r_{i-1/2}, r_{i+1/2}]``, exact spherical volumes and face areas, conservative), integrated by
SciPy's implicit BDF/Radau with tight tolerances. The surface node carries the Butler-Volmer
flux, so the voltage is algebraic: CC steps use ``V = U(x_s) + (2RT/F) asinh(i_n / 2 i0(x_s))``
and CV steps ``i_n = 2 i0 sinh(F (V_set - U(x_s)) / 2RT)``; both make the system a plain ODE and
stop events are located by SciPy's dense-output root finding.

C-rate: ``I_1C = F c_max V_p / 3600 s`` of the ideal sphere, i.e. a CC flux of x of
``c_rate R / (3 * 3600)`` µm/s.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.integrate import solve_ivp
from scipy.optimize import brentq
from scipy.sparse import diags

from .. import units
from ..config import CCStep, CVStep, RestStep
from ..physics import materials as mat

__all__ = ["SPM1D", "SPMResult", "crank_sphere_flux", "crank_roots"]


def crank_roots(n: int) -> np.ndarray:
    """The first n positive roots of tan(a) = a (4.493409, 7.725252, ...)."""
    roots = []
    for k in range(1, n + 1):
        lo, hi = k * np.pi + 1e-9, k * np.pi + np.pi / 2 - 1e-9
        roots.append(brentq(lambda a: np.sin(a) - a * np.cos(a), lo, hi, xtol=1e-14))
    return np.asarray(roots)


def crank_sphere_flux(r, t: float, a: float, D: float, F0: float, C0: float = 0.0, nterms=200):
    """Crank's constant-flux sphere (docs/model.md section 6.2): C(r, t) with D dC/dr = F0 at r = a.

    ``C - C0 = (F0 a / D)[3Dt/a^2 + r^2/(2a^2) - 3/10 - (2a/r) sum exp(-D a_n^2 t/a^2)
    sin(a_n r/a) / (a_n^2 sin a_n)]``, with (a/r) sin(a_n r/a) -> a_n at r = 0. Any consistent
    units (here µm, s, and x for C).
    """
    r = np.asarray(r, dtype=float)
    al = crank_roots(nterms)
    rr = r[..., None]
    with np.errstate(invalid="ignore", divide="ignore"):
        shape = np.where(rr > 1e-12 * a, (a / rr) * np.sin(al * rr / a), al)
    series = np.sum(np.exp(-D * al**2 * t / a**2) * shape / (al**2 * np.sin(al)), axis=-1)
    return C0 + (F0 * a / D) * (3 * D * t / a**2 + r**2 / (2 * a**2) - 0.3 - 2.0 * series)


@dataclass
class SPMResult:
    """Time series of the 1D model (dense per protocol step)."""

    t: np.ndarray
    voltage: np.ndarray
    current_A: np.ndarray
    x_avg: np.ndarray
    x_surf: np.ndarray
    steps: list[dict] = field(default_factory=list)
    dense: list = field(default_factory=list)  # (t0, t1, sol, mode, value) per protocol step

    def voltage_at(self, t: np.ndarray, model: SPM1D) -> np.ndarray:
        """V at arbitrary times (µs accuracy of the dense output of each protocol step)."""
        t = np.atleast_1d(np.asarray(t, dtype=float))
        out = np.full(t.shape, np.nan)
        for t0, t1, sol, mode, value in self.dense:
            m = (t >= t0 - 1e-9) & (t <= t1 + 1e-9)
            if np.any(m):
                y = sol(np.clip(t[m], t0, t1))
                out[m] = model.voltage_of(y, mode, value)
        return out


class SPM1D:
    """Spherical single particle: radius ``radius_um``, parameters ``ec`` (ElectrochemistryParams)."""

    def __init__(self, ec, radius_um: float, n_cells: int = 200):
        self.ec = ec
        self.R = float(radius_um)
        self.N = int(n_cells)
        self.D = units.diffusivity(ec.D_m2_s)
        r = np.linspace(0.0, self.R, self.N + 1)
        self.r = r
        rf = 0.5 * (r[1:] + r[:-1])  # faces
        edges = np.concatenate([[0.0], rf, [self.R]])
        self.vol = (edges[1:] ** 3 - edges[:-1] ** 3) / 3.0  # per steradian
        self.coef = self.D * rf**2 / np.diff(r)  # face conductance per steradian
        self.volume_m3 = 4.0 / 3.0 * np.pi * (self.R * units.LENGTH_M) ** 3
        self.area_m2 = 4.0 * np.pi * (self.R * units.LENGTH_M) ** 2
        self.i_1c_A = mat.current_1c_A(ec.c_max_mol_m3, self.volume_m3)
        self.flux_per_A_m2 = units.flux_x(1.0, ec.c_max_mol_m3, mat.FARADAY_C_MOL)  # µm/s
        lower = np.concatenate([self.coef, [0.0]])
        self._lap = diags(
            [self.coef, -(np.concatenate([[0.0], self.coef]) + lower), self.coef], [-1, 0, 1]
        ).tocsr()
        self._lap = diags(1.0 / self.vol) @ self._lap

    # -- laws ------------------------------------------------------------------------------------
    def i0(self, xs):
        e = self.ec
        return mat.exchange_current_A_m2(
            xs, e.c_max_mol_m3, e.c_e_mol_m3, e.m_ref_A_m2p5_mol1p5, e.i0_regularisation_x
        )

    def i_n_potentiostatic(self, xs, V):
        e = self.ec
        return mat.butler_volmer_A_m2(
            V - mat.ocp_V(xs, model=e.ocp), self.i0(xs), e.T_K, e.alpha_a, e.alpha_c
        )

    def voltage_galvanostatic(self, xs, i_n):
        return mat.ocp_V(xs, model=self.ec.ocp) + mat.overpotential_V(i_n, self.i0(xs), self.ec.T_K)

    def i_n_of(self, y, mode: str, value: float):
        xs = y[-1]
        return np.full_like(xs, value) if mode == "cc" else self.i_n_potentiostatic(xs, value)

    def voltage_of(self, y, mode: str, value: float):
        xs = y[-1]
        return self.voltage_galvanostatic(xs, value) if mode == "cc" else np.full_like(xs, value)

    def x_avg(self, y):
        return (self.vol @ y) / (self.R**3 / 3.0)

    # -- integration -----------------------------------------------------------------------------
    def _rhs(self, mode: str, value: float):
        fac = self.R**2 / self.vol[-1] * self.flux_per_A_m2

        def f(t, y):
            dy = self._lap @ y
            i_n = value if mode == "cc" else self.i_n_potentiostatic(y[-1], value)
            dy[-1] -= fac * i_n
            return dy

        return f

    def run(self, protocol: list, x0: float | None = None, rtol: float = 1e-9) -> SPMResult:
        """Run CC/CV/rest steps; returns the time series (one row per internal step)."""
        y = np.full(self.N + 1, float(self.ec.x0 if x0 is None else x0))
        t = 0.0
        T, Vs, Is, XA, XS = [], [], [], [], []
        res = SPMResult(*(np.empty(0),) * 5)
        sparsity = diags([1.0, 1.0, 1.0], [-1, 0, 1], shape=(self.N + 1, self.N + 1))
        for k, step in enumerate(protocol):
            events = []
            t_max = 1e9
            if isinstance(step, CCStep):
                sign = 1.0 if step.direction == "charge" else -1.0
                mode, value = "cc", sign * step.c_rate * self.i_1c_A / self.area_m2
                vs = step.until_voltage_V

                def ev(t, y, vs=vs, s=sign, v=value):
                    return s * (self.voltage_galvanostatic(y[-1], v) - vs)

                events.append(ev)
                t_max = step.max_time_s or t_max
            elif isinstance(step, CVStep):
                mode, value = "cv", step.voltage_V
                if step.until_c_rate is not None:
                    i_stop = step.until_c_rate * self.i_1c_A / self.area_m2
                    events.append(
                        lambda t, y, i_stop=i_stop, v=value: (
                            abs(self.i_n_potentiostatic(y[-1], v)) - i_stop
                        )
                    )
                t_max = step.max_time_s or t_max
            elif isinstance(step, RestStep):
                mode, value, t_max = "cc", 0.0, step.duration_s
            else:
                raise TypeError(step)
            for e in events:
                e.terminal = True
                e.direction = 0
            sol = solve_ivp(
                self._rhs(mode, value),
                (t, t + t_max),
                y,
                method="BDF",
                rtol=rtol,
                atol=1e-12,
                jac_sparsity=sparsity,
                events=events or None,
                dense_output=True,
                first_step=1e-3,
            )
            if sol.status < 0:
                raise RuntimeError(f"1D SPM failed in protocol step {k}: {sol.message}")
            reason = "time"
            t_end = sol.t[-1]
            if events and len(sol.t_events[0]):
                t_end = float(sol.t_events[0][0])
                reason = "voltage" if mode == "cc" else "current"
            ys = sol.sol(np.append(sol.t[sol.t < t_end], t_end))
            ts = np.append(sol.t[sol.t < t_end], t_end)
            T.append(ts)
            Vs.append(self.voltage_of(ys, mode, value))
            Is.append(self.i_n_of(ys, mode, value) * self.area_m2)
            XA.append(self.x_avg(ys))
            XS.append(ys[-1])
            res.steps.append(
                {"index": k, "type": step.type, "t_start_s": t, "t_end_s": t_end,
                 "duration_s": t_end - t, "end_reason": reason}
            )  # fmt: skip
            res.dense.append((t, t_end, sol.sol, mode, value))
            y = sol.sol(t_end)
            t = t_end
        res.t = np.concatenate(T)
        res.voltage = np.concatenate(Vs)
        res.current_A = np.concatenate(Is)
        res.x_avg = np.concatenate(XA)
        res.x_surf = np.concatenate(XS)
        return res
