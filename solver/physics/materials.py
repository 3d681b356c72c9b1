"""Material laws as pure, vectorised functions (docs/model.md sections 3-4). No DOLFINx state.

Functions that take ``xp`` work on NumPy arrays (``xp=numpy``, the default) and on UFL
expressions (``xp=ufl``) so the same law is used in post-processing and in the weak forms.
Units are SI unless a name says otherwise.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from types import ModuleType

import numpy as np
from scipy.interpolate import PchipInterpolator
from scipy.optimize import brentq

FARADAY_C_MOL = 96485.33
GAS_CONSTANT_J_MOL_K = 8.314462
SECONDS_PER_HOUR = 3600.0
THEORETICAL_CAPACITY_MAH_G = 275.506  # LiNi0.8Mn0.1Co0.1O2, one Li per formula unit (Maerker 2019)

# Chen et al. 2020 NMC811 OCP: U(x) = a0 x + a1 + sum_k b_k tanh(c_k (x - d_k))   [V]
_CHEN_LINEAR = (-0.8090, 4.4875)
_CHEN_TANH = (
    (-0.0428, 18.5138, 0.5542),
    (-17.7326, 15.7890, 0.3117),
    (17.5842, 15.9308, 0.3120),
)


#: OCP models accepted by :func:`ocp_V` (config key ``electrochemistry.ocp``)
OCP_MODELS = ("chen2020", "chen2020_maerker2019")

# "chen2020_maerker2019": Chen 2020 where it was fitted (U <= 4.2 V, x >= _FC_X_JOIN); for
# x < _FC_X_JOIN the quadratic U = 4.2 V + s (x - x_j) + k (x - x_j)^2, C1 at the join, through
# U = 4.5 V at the end of Maerker 2019's first charge (q = 242.40 mA h/g, x = 0.1202).
# Constants from tools/fit_ocp_first_charge.py (benchmarks/results/ocp_first_charge_fit.json).
_FC_X_JOIN = 0.30462755635740035
_FC_U_JOIN_V = 4.2
_FC_SLOPE_V = -1.02549795384067
_FC_CURVATURE_V = 3.2572493701486787


def _check_ocp_model(model: str) -> None:
    if model not in OCP_MODELS:
        raise ValueError(f"unknown OCP model {model!r} (allowed: {', '.join(OCP_MODELS)})")


def _below_join(x, low, high, xp: ModuleType):
    """``low`` where x < _FC_X_JOIN, else ``high`` (NumPy or UFL)."""
    if xp is np:
        return np.where(np.asarray(x) < _FC_X_JOIN, low, high)
    return xp.conditional(xp.lt(x, _FC_X_JOIN), low, high)


def ocp_V(x, xp: ModuleType = np, model: str = "chen2020"):
    """Open-circuit potential U(x) vs Li/Li+ in V; x = c/c_max.

    ``chen2020``: Chen 2020, fitted 2.5-4.2 V, extrapolated above (4.5 V at x = 0.183).
    ``chen2020_maerker2019``: the same below 4.2 V; above, a C1 quadratic branch through 4.5 V
    at x = 0.120, the end of Maerker 2019's first charge (242.4 of 275.5 mA h/g).
    """
    _check_ocp_model(model)
    a0, a1 = _CHEN_LINEAR
    u = a0 * x + a1
    for b, c, d in _CHEN_TANH:
        u = u + b * xp.tanh(c * (x - d))
    if model == "chen2020":
        return u
    dx = x - _FC_X_JOIN
    return _below_join(x, _FC_U_JOIN_V + _FC_SLOPE_V * dx + _FC_CURVATURE_V * dx * dx, u, xp)


def docp_dx_V(x, xp: ModuleType = np, model: str = "chen2020"):
    """dU/dx in V (per unit Li fraction)."""
    _check_ocp_model(model)
    du = _CHEN_LINEAR[0] + 0.0 * x
    for b, c, d in _CHEN_TANH:
        t = xp.tanh(c * (x - d))
        du = du + b * c * (1.0 - t * t)
    if model == "chen2020":
        return du
    return _below_join(x, _FC_SLOPE_V + 2.0 * _FC_CURVATURE_V * (x - _FC_X_JOIN), du, xp)


def ocp_range_V(model: str = "chen2020") -> tuple[float, float]:
    """(min, max) of U over x in [0, 1] in V (U is monotone decreasing for chen2020)."""
    u = ocp_V(np.linspace(0.0, 1.0, 2001), model=model)
    return float(u.min()), float(u.max())


def x_at_voltage(voltage_V: float, model: str = "chen2020") -> float:
    """The Li fraction x in (0, 1) with U(x) = voltage (U is monotone)."""
    lo, hi = ocp_range_V(model)
    if not lo < voltage_V < hi:
        raise ValueError(f"{voltage_V} V is outside the OCP range {lo:.3f}-{hi:.3f} V")
    return brentq(lambda x: float(ocp_V(x, model=model)) - voltage_V, 0.0, 1.0, xtol=1e-14)


def smooth_positive(s, delta: float, xp: ModuleType = np):
    """Smooth max(s, 0): (s + sqrt(s^2 + delta^2))/2 > 0; equals s to O(delta^2/s) for s >> delta."""
    return 0.5 * (s + xp.sqrt(s * s + delta * delta))


def exchange_current_A_m2(
    x, c_max_mol_m3: float, c_e_mol_m3: float, m_ref: float, delta: float, xp: ModuleType = np
):
    """Exchange current density i0 = m_ref c_e^0.5 c_s^0.5 (c_max - c_s)^0.5 in A/m^2.

    ``m_ref`` in A m^2.5 mol^-1.5. x and 1 - x pass through :func:`smooth_positive` with width
    ``delta`` so i0 stays real and positive for any Newton iterate (also x <= 0 or x >= 1).
    """
    xs = smooth_positive(x, delta, xp)
    xv = smooth_positive(1.0 - x, delta, xp)
    return m_ref * c_e_mol_m3**0.5 * c_max_mol_m3 * xp.sqrt(xs * xv)


def thermal_voltage_V(T_K: float) -> float:
    """RT/F in V."""
    return GAS_CONSTANT_J_MOL_K * T_K / FARADAY_C_MOL


def butler_volmer_A_m2(
    eta_V, i0_A_m2, T_K: float, alpha_a: float = 0.5, alpha_c: float = 0.5, xp: ModuleType = np
):
    """Normal current density i_n = i0 [exp(a_a eta/Vt) - exp(-a_c eta/Vt)] in A/m^2.

    Positive i_n removes Li from the particle (charge). With a_a = a_c = 1/2 this is
    2 i0 sinh(F eta / 2RT) (docs/model.md section 3).
    """
    vt = thermal_voltage_V(T_K)
    if alpha_a == alpha_c == 0.5:
        return 2.0 * i0_A_m2 * xp.sinh(eta_V / (2.0 * vt))
    return i0_A_m2 * (xp.exp(alpha_a * eta_V / vt) - xp.exp(-alpha_c * eta_V / vt))


def overpotential_V(i_n_A_m2, i0_A_m2, T_K: float):
    """Inverse of the symmetric Butler-Volmer law: eta = (2RT/F) asinh(i_n / (2 i0)) in V."""
    return 2.0 * thermal_voltage_V(T_K) * np.arcsinh(np.asarray(i_n_A_m2) / (2.0 * i0_A_m2))


def current_1c_A(c_max_mol_m3: float, particle_volume_m3: float) -> float:
    """The 1C current of a particle: F c_max V_p / 3600 s (empties x = 1 -> 0 in one hour), A."""
    return FARADAY_C_MOL * c_max_mol_m3 * particle_volume_m3 / SECONDS_PER_HOUR


def c_rate_current_A(c_rate: float, c_max_mol_m3: float, particle_volume_m3: float) -> float:
    """Applied current for a C-rate (positive = charge, Li leaves the particle), A."""
    return c_rate * current_1c_A(c_max_mol_m3, particle_volume_m3)


def quasi_steady_li_spread(c_rate: float, radius_m: float, D_m2_s: float) -> float:
    """x_avg - x_surf of a sphere charged at a constant C-rate once the start-up transient has
    died out (t >> R²/D): the radial Li spread that a uniform-x (quasi-static) model neglects.

    Derivation (the long-time limit of Crank's constant-flux sphere, docs/model.md section 6.2):
    with N = I / (F 4πR²) the molar flux out of the surface, c(r, t) = c_avg(t) + f(r) with
    dc_avg/dt = -3N/R, D r⁻² (r² f')' = dc_avg/dt, -D f'(R) = N and ∫ f dV = 0, so
    f = N (3R²/5 - r²) / (2DR): c_avg - c_surf = NR/(5D) (and c_centre - c_surf = NR/(2D)).
    With x = c/c_max and 1C emptying the sphere in one hour, N = c_rate c_max R / (3 · 3600 s)::

        x_avg - x_surf = c_rate R² / (15 D · 3600 s) = I R² / (15 F c_max D V_p)

    Args:
        c_rate: C-rate (1/h); radius_m: sphere radius (m); D_m2_s: Li diffusivity (m²/s).

    Returns:
        x_avg - x_surf (dimensionless, > 0 on charge).
    """
    return c_rate * radius_m**2 / (15.0 * D_m2_s * SECONDS_PER_HOUR)


def capacity_mAh_g(x0: float, x, molar_mass_g_mol: float = 97.28):
    """Charge passed per gram of active material, (x0 - x) F / (3.6 M), in mA h/g."""
    return (x0 - np.asarray(x)) * FARADAY_C_MOL / (3.6 * molar_mass_g_mol)


def lame_GPa(E: float, nu: float) -> tuple[float, float]:
    """Lamé constants (lambda, mu) in the units of E."""
    return E * nu / ((1 + nu) * (1 - 2 * nu)), E / (2 * (1 + nu))


def bulk_shear(E: float, nu: float) -> tuple[float, float]:
    """Bulk and shear moduli (K, mu) in the units of E."""
    return E / (3 * (1 - 2 * nu)), E / (2 * (1 + nu))


def at2_strength_Pa(E_Pa: float, Gc_J_m2: float, l_m: float) -> float:
    """Peak uniaxial stress of the homogeneous AT2 solution: (3 sqrt 3 / 16) sqrt(E Gc / l), Pa."""
    return 3.0 * np.sqrt(3.0) / 16.0 * np.sqrt(E_Pa * Gc_J_m2 / l_m)


def toughness_from_gamma(gamma, Gc_bulk: float, Gc_gb: float):
    """Gc(gamma) = h Gc_GB + (1 - h) Gc_bulk with h = (1 - gamma)^2 (units of the inputs)."""
    h = (1.0 - gamma) ** 2
    return h * Gc_gb + (1.0 - h) * Gc_bulk


#: named data-side points of a lattice table usable as anchors (:attr:`LatticeStrains.landmarks`)
LANDMARK_NAMES = ("start", "c_peak", "collapse_end")


class LatticeStrains:
    """Lattice strains eps_a(x), eps_c(x) of NMC811 from the operando XRD table.

    The table (q in mA h/g, a and c in Å) gives x = 1 - q/275.506, eps = a/a(q=0) - 1 and
    c/c(q=0) - 1. Interpolation is linear or PCHIP in x, constant outside the data.

    ``mapping='normalised'`` evaluates the table at
    ``x_data = x_start - s (x_start - x_end)`` with ``s = (x0 - x)/(x0 - x_model_end)``, so that
    the model's x at the cut-off voltage lands on the end of the measured c-collapse.

    ``mapping='anchors'`` evaluates it at the affine ``x_data = a + b x`` through one or two
    ``anchors`` (data side, model x): with one the table is shifted (b = 1), with two it is
    shifted and stretched. The data side is a Li fraction of the table or one of
    :data:`LANDMARK_NAMES` (e.g. ``('c_peak', x_at_voltage(4.0))``).
    """

    def __init__(
        self,
        table: Path | str,
        interpolation: str = "linear",
        mapping: str = "direct",
        x0: float = 0.9084,
        data_x_start: float = 1.0,
        data_x_end: float = 0.12,
        model_x_end: float | None = None,
        anchors: list[tuple[str | float, float]] | None = None,
    ):
        self.table = Path(table)
        if interpolation not in ("linear", "pchip"):
            raise ValueError(
                f"lattice interpolation must be 'linear' or 'pchip', not {interpolation!r}"
            )
        if mapping not in ("direct", "normalised", "anchors"):
            raise ValueError(
                f"strain mapping must be 'direct', 'normalised' or 'anchors', not {mapping!r}"
            )
        if mapping == "normalised" and model_x_end is None:
            raise ValueError("normalised strain mapping needs model_x_end")
        if mapping == "anchors" and not (anchors and len(anchors) <= 2):
            raise ValueError("anchors strain mapping needs one or two anchors")
        self.interpolation = interpolation
        self.mapping = mapping
        self.x0 = x0
        self.data_x_start = data_x_start
        self.data_x_end = data_x_end
        self.model_x_end = model_x_end
        try:
            d = np.loadtxt(self.table, comments="#", ndmin=2)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{self.table}: cannot read lattice table: {exc}") from None
        if d.shape[1] < 5:
            raise ValueError(f"{self.table}: expected columns q, error, a, b, c, ...")
        q, a, c = d[:, 0], d[:, 2], d[:, 4]
        if len(q) < 2 or not np.isfinite(d[:, [0, 2, 4]]).all() or a[0] <= 0 or c[0] <= 0:
            raise ValueError(
                f"{self.table}: expected at least two rows of finite q, a, c with positive "
                "pristine lattice parameters in the first row"
            )
        x = 1.0 - q / THEORETICAL_CAPACITY_MAH_G
        order = np.argsort(x)
        self.x_data = x[order]
        self.eps_a_data = (a / a[0] - 1.0)[order]
        self.eps_c_data = (c / c[0] - 1.0)[order]
        #: the reference (q = 0) lattice parameters in Å
        self.a_ref_A, self.c_ref_A = float(a[0]), float(c[0])
        #: (a, b) of x_data = a + b x for the 'anchors' mapping, else None
        self.affine: tuple[float, float] | None = None
        self.anchors = None
        if mapping == "anchors":
            self.anchors = [(self._landmark_x(dx), float(mx)) for dx, mx in anchors]
            self.affine = self._affine_through(self.anchors)

    @classmethod
    def from_params(cls, params, table_path: Path) -> LatticeStrains:
        """Build from a resolved :class:`solver.config.Parameters`."""
        m = params.mechanics
        ocp = params.electrochemistry.ocp
        x_end = None
        if m.strain_mapping == "normalised":
            x_end = x_at_voltage(m.strain_map_voltage_V, ocp)
        anchors = None
        if m.strain_mapping == "anchors":
            anchors = [
                (
                    an.landmark,
                    an.model_x if an.model_x is not None else x_at_voltage(an.voltage_V, ocp),
                )
                for an in m.strain_map_anchors
            ]
        return cls(
            table_path,
            m.lattice_interpolation,
            m.strain_mapping,
            params.electrochemistry.x0,
            m.strain_map_data_x_start,
            m.strain_map_data_x_end,
            x_end,
            anchors,
        )

    @cached_property
    def landmarks(self) -> dict[str, float]:
        """Data-side Li fractions: 'start' (largest x of the table), 'c_peak' (largest eps_c; the
        largest x among equal maxima, i.e. the first reached on charge) and 'collapse_end' (the
        smallest eps_c at x below the c-peak; the peak itself if c never falls)."""
        xd, ec = self.x_data, self.eps_c_data
        peak = float(xd[ec == ec.max()].max())
        below = xd <= peak
        lo = ec[below].min()
        end = float(xd[below][ec[below] == lo].max())
        return {"start": float(xd.max()), "c_peak": peak, "collapse_end": end}

    def _landmark_x(self, spec) -> float:
        if isinstance(spec, str):
            if spec not in LANDMARK_NAMES:
                raise ValueError(
                    f"unknown strain landmark {spec!r} (allowed: {', '.join(LANDMARK_NAMES)} "
                    "or a Li fraction of the table)"
                )
            return self.landmarks[spec]
        return float(spec)

    @staticmethod
    def _affine_through(anchors: list[tuple[float, float]]) -> tuple[float, float]:
        (d1, m1) = anchors[0]
        if len(anchors) == 1:
            return d1 - m1, 1.0
        (d2, m2) = anchors[1]
        if m1 == m2 or d1 == d2:
            raise ValueError(
                f"the two strain anchors coincide (data x {d1:.4f}, {d2:.4f}; model x "
                f"{m1:.4f}, {m2:.4f})"
            )
        b = (d2 - d1) / (m2 - m1)
        if b <= 0.0:
            raise ValueError(
                "the strain anchors reverse the order of x (data x "
                f"{d1:.4f} -> model x {m1:.4f}, {d2:.4f} -> {m2:.4f}); swap one of them"
            )
        return d1 - b * m1, b

    @cached_property
    def _interp(self):
        xd = self.x_data
        if self.interpolation == "pchip":
            # PCHIP needs strictly increasing x: merge repeated x by averaging
            ux, inv = np.unique(xd, return_inverse=True)
            ea = np.bincount(inv, self.eps_a_data) / np.bincount(inv)
            ec = np.bincount(inv, self.eps_c_data) / np.bincount(inv)
            pa, pc = PchipInterpolator(ux, ea), PchipInterpolator(ux, ec)
            lo, hi = ux[0], ux[-1]
            return (lambda x: pa(np.clip(x, lo, hi))), (lambda x: pc(np.clip(x, lo, hi)))
        return (
            lambda x: np.interp(x, xd, self.eps_a_data),
            lambda x: np.interp(x, xd, self.eps_c_data),
        )

    def data_x(self, x):
        """The x at which the table is read for model Li fraction x (identity for 'direct')."""
        x = np.asarray(x, dtype=float)
        if self.mapping == "direct":
            return x
        if self.mapping == "anchors":
            a, b = self.affine
            return a + b * x
        s = (self.x0 - x) / (self.x0 - self.model_x_end)
        return self.data_x_start - s * (self.data_x_start - self.data_x_end)

    def model_x(self, x_data):
        """The model Li fraction whose table x is ``x_data`` (inverse of :meth:`data_x`)."""
        xd = np.asarray(x_data, dtype=float)
        if self.mapping == "direct":
            return xd
        if self.mapping == "anchors":
            a, b = self.affine
            return (xd - a) / b
        s = (self.data_x_start - xd) / (self.data_x_start - self.data_x_end)
        return self.x0 - s * (self.x0 - self.model_x_end)

    def eps_a(self, x):
        """In-plane (a-axis) lattice strain relative to the pristine lattice, dimensionless."""
        return self._interp[0](self.data_x(x))

    def eps_c(self, x):
        """c-axis lattice strain relative to the pristine lattice, dimensionless."""
        return self._interp[1](self.data_x(x))

    def delta_eps(self, x):
        """eps_c - eps_a."""
        return self.eps_c(x) - self.eps_a(x)
