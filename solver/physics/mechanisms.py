"""Optional damage mechanisms of issue 22 (``physics.mechanisms``, docs/model.md section 3.10),
each off by default: per-grain scatter of the kinetics and of the OCP, a concentration-dependent
D(x), a grain-boundary weight on the lithiation eigenstrain, and a toughness that falls with
delithiation.

The pure laws (NumPy, and UFL where the forms need them) are here; the DOLFINx pieces (DG0 fields
over the grain tags, the per-grain strain law) are :class:`GrainData` and :class:`GrainStrainLaw`.
Units: V, dimensionless fractions; internal units of solver/units.py for fields.
"""

from __future__ import annotations

from types import ModuleType

import dolfinx_solver  # noqa: F401  (MPI before dolfinx / petsc4py)
import numpy as np
import ufl
from dolfinx import fem
from mpi4py import MPI
from scipy.optimize import brentq

from . import materials as mat

__all__ = [
    "LABELS",
    "DIFFUSIVITY_LAWS",
    "TOUGHNESS_LAWS",
    "GrainData",
    "GrainStrainLaw",
    "diffusivity_oregan2022_m2_s",
    "gb_eigenstrain_weight",
    "grain_draws",
    "grain_x_at_common_potential",
    "labels",
    "toughness_factor",
]

#: run.json labels: (in the paper or not, source) per option of ``physics.mechanisms``
LABELS = {
    "grain_heterogeneity": (
        "not stated in the paper",
        "[I] per-grain lognormal scatter of i0 and D, normal scatter of an OCP shift (the law and "
        "its widths); [F] the observation that the grains of polycrystalline Ni-rich layered "
        "oxides do not delithiate in step: Nat. Commun. (2020), DOI 10.1038/s41467-019-13884-x",
    ),
    "gb_eigenstrain_weight": (
        "not stated in the paper",
        "[I] eigenstrain scaled by 1 - h(gamma), h = (1 - gamma)^2 the grain-boundary indicator of "
        "docs/model.md section 3.5",
    ),
    "diffusivity_of_x": (
        "not stated in the paper",
        "[F] O'Regan, Brosa Planella, Widanage, Kendrick, Electrochim. Acta 425 (2022) 140700, "
        "DOI 10.1016/j.electacta.2022.140700 (GITT of the LG M50 NMC811 cathode, the cell of Chen "
        "2020; the fit as in PyBaMM's ORegan2022 set, with its factor 2.7 and Arrhenius term)",
    ),
    "toughness_of_x": (
        "not stated in the paper",
        "[F] Xu, Sun, de Vasconcelos, Zhao, J. Electrochem. Soc. 164 (2017) A3333, "
        "DOI 10.1149/2.1751713jes (NMC532 secondary particles, nanoindentation K_c at 0/33/66/100 "
        "% state of charge of the first charge); [I] Gc proportional to K_c^2 at fixed E",
    ),
}

# Xu et al. 2017, Fig. 8a: interfacial K_c (MPa m^1/2) of NMC532 secondary particles on the first
# charge at 0, 33, 66 and 100 % SOC, the authors' 100 % being Li0.5: Li fraction 1 - 0.5 SOC.
# 0 % and (in the text) "nearly a factor of two" at 100 % are stated; 33/66/100 % read off the
# figure (digitised, error about 0.005 MPa m^1/2; bars +-0.02-0.03).
_XU2017_X = np.array([0.5, 2.0 / 3.0, 5.0 / 6.0, 1.0])
_XU2017_KC = np.array([0.058, 0.070, 0.091, 0.102])

#: values of ``physics.mechanisms.toughness_of_x``
TOUGHNESS_LAWS = ("none", "xu2017")
#: values of ``physics.mechanisms.diffusivity_of_x``
DIFFUSIVITY_LAWS = ("none", "oregan2022")

# O'Regan et al. 2022, D of the LG M50 NMC811 cathode against its stoichiometry (the argument of
# the Chen 2020 OCP), as coded in PyBaMM (pybamm/input/parameters/lithium_ion/ORegan2022.py):
# D = 2.7 * 10^(c0 + sum_i a_i exp(-(x - b_i)^2 / c_i)) exp(d (1/298.15 - 1/T)) m^2/s
_OREGAN_C0, _OREGAN_FACTOR, _OREGAN_D_K = -13.96, 2.7, 1449.0
_OREGAN_TERMS = (
    (-0.9231, 0.3216, 0.002534),
    (-0.4066, 0.4532, 0.003926),
    (-0.993, 0.8098, 0.09924),
)


def diffusivity_oregan2022_m2_s(x, T_K: float = 298.15, xp: ModuleType = np):
    """Li diffusivity D(x) of NMC811 in m²/s (O'Regan et al. 2022): 3.0e-15 at x = 0.8,
    7.3e-15 at 0.5, 2.9e-15 at 0.32, 2.8e-14 at 0.2 (298.15 K).

    Args:
        x: Li fraction (NumPy array or UFL expression); T_K: temperature (K).
    """
    e = _OREGAN_C0
    for a, b, c in _OREGAN_TERMS:
        e = e + a * xp.exp(-((x - b) ** 2) / c)
    arrhenius = float(np.exp(_OREGAN_D_K * (1.0 / 298.15 - 1.0 / T_K)))
    return _OREGAN_FACTOR * arrhenius * xp.exp(float(np.log(10.0)) * e)


def toughness_ratio_xu2017(x, xp: ModuleType = np):
    """(K_c(x)/K_c(x = 1))² of Xu et al. 2017, linear in x between the four measured points and
    constant outside them (x = 1 - 0.5 SOC): 1 at x = 1, 0.323 at x <= 0.5. With the model's E
    independent of x, Gc = K_c² (1 - ν²)/E scales with this ratio."""
    r = (_XU2017_KC / _XU2017_KC[-1]) ** 2
    if xp is np:
        return np.interp(np.asarray(x, dtype=float), _XU2017_X, r)
    out = float(r[0])
    slopes = np.diff(r) / np.diff(_XU2017_X)
    prev = 0.0
    for xk, s in zip(_XU2017_X[:-1], slopes, strict=True):
        out = out + float(s - prev) * ufl.max_value(x - float(xk), 0.0)
        prev = s
    return out - float(prev) * ufl.max_value(x - float(_XU2017_X[-1]), 0.0)


def toughness_factor(x, x0: float, law: str, xp: ModuleType = np):
    """Gc(x)/Gc(x0): the toughness of the parameter set holds at the start of the charge (x0).

    Args:
        x: Li fraction (NumPy array or UFL expression); x0: the initial Li fraction;
        law: one of :data:`TOUGHNESS_LAWS` (``none``: 1).
    """
    if law == "none":
        return 1.0 + 0.0 * x if xp is np else 1.0
    if law == "xu2017":
        return toughness_ratio_xu2017(x, xp) / float(toughness_ratio_xu2017(x0))
    raise ValueError(f"unknown toughness law {law!r} (allowed: {', '.join(TOUGHNESS_LAWS)})")


def gb_eigenstrain_weight(gamma):
    """1 - h(gamma) = 1 - (1 - gamma)²: 1 inside grains, 0 on a grain boundary (UFL or NumPy)."""
    return 1.0 - (1.0 - gamma) ** 2


def grain_draws(
    n_grains: int, seed: int, ocp_shift_std_V: float, i0_log_std: float, D_log_std: float
) -> dict[str, np.ndarray]:
    """Per-grain data (index g - 1 for grain tag g), the same on every rank and partition.

    The OCP shift is normal with mean 0 and standard deviation ``ocp_shift_std_V`` (V); the i0 and
    D factors are lognormal exp(s z - s²/2) with z standard normal (mean 1, median exp(-s²/2)).
    Three independent streams of ``numpy.random.default_rng(seed)`` in this order, so a zero
    standard deviation leaves the other two unchanged.
    """
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((3, n_grains))
    return {
        "ocp_shift_V": ocp_shift_std_V * z[0],
        "i0_factor": np.exp(i0_log_std * z[1] - 0.5 * i0_log_std**2),
        "D_factor": np.exp(D_log_std * z[2] - 0.5 * D_log_std**2),
    }


def grain_x_at_common_potential(
    x_avg: float, shifts_V: np.ndarray, weights: np.ndarray, ocp: str
) -> tuple[np.ndarray, float]:
    """Li fraction of every grain when all grains share one Li potential μ (quasi-static mode):
    U(x_g) + ΔU_g = μ, with μ such that the volume-weighted mean of x_g is ``x_avg``.

    Args:
        x_avg: the particle's mean Li fraction; shifts_V: ΔU_g (V); weights: grain volume
        fractions (sum 1); ocp: the OCP model.

    Returns:
        (x_g, μ in V); x_g = x_avg and μ = U(x_avg) when every shift is 0.
    """
    shifts = np.asarray(shifts_V, dtype=float)
    if not shifts.any():
        return np.full(shifts.shape, float(x_avg)), float(mat.ocp_V(x_avg, model=ocp))
    lo_u, hi_u = mat.ocp_range_V(ocp)

    def x_of(mu: float) -> np.ndarray:
        target = np.clip(mu - shifts, lo_u + 1e-9, hi_u - 1e-9)
        return np.array([mat.x_at_voltage(float(t), ocp) for t in target])

    def excess(mu: float) -> float:
        return float(np.dot(weights, x_of(mu))) - float(x_avg)

    u = float(mat.ocp_V(x_avg, model=ocp))
    span = 4.0 * float(np.abs(shifts).max()) + 1e-6
    a, b = u - span, u + span
    while excess(a) < 0.0 and a > lo_u - 1.0:
        a -= span
    while excess(b) > 0.0 and b < hi_u + 1.0:
        b += span
    mu = brentq(excess, a, b, xtol=1e-13)
    return x_of(mu), float(mu)


def labels(mech) -> dict:
    """run.json entry of a :class:`polycrack.config.MechanismsConfig`: per option whether it is
    on, its setting, "in the paper" or "not stated in the paper", and its source."""
    het = mech.grain_heterogeneity
    settings = {
        "grain_heterogeneity": (het.enabled, het.model_dump()),
        "gb_eigenstrain_weight": (mech.gb_eigenstrain_weight, mech.gb_eigenstrain_weight),
        "diffusivity_of_x": (mech.diffusivity_of_x != "none", mech.diffusivity_of_x),
        "toughness_of_x": (mech.toughness_of_x != "none", mech.toughness_of_x),
    }
    return {
        k: {"on": bool(on), "setting": s, "paper": LABELS[k][0], "source": LABELS[k][1]}
        for k, (on, s) in settings.items()
    }


# ---------------------------------------------------------------------------------------------
# DOLFINx: per-grain data as DG0 fields over the grain tags
# ---------------------------------------------------------------------------------------------


class GrainData:
    """DG0 fields on the particle submesh from per-grain values (grain tag g -> values[g - 1]).

    Args:
        dom: a :class:`polycrack.physics.mechanics.ParticleDomain` (grain tags 1..N on its
        submesh, N = len(dom.axes)).
    """

    def __init__(self, dom):
        self.dom = dom
        self.n_grains = len(dom.axes)
        self.V = fem.functionspace(dom.submesh, ("DG", 0))
        tags = dom.sub_cell_tags
        imap = dom.submesh.topology.index_map(dom.submesh.topology.dim)
        own = tags.indices < imap.size_local
        self._cells, self._grain = tags.indices, tags.values - 1
        self._dofs = self.V.dofmap.list[tags.indices, 0]
        # grain volume fractions: owned cell volumes summed per grain over all ranks
        cv = fem.assemble_vector(fem.form(ufl.TestFunction(self.V) * ufl.dx)).array
        vol = np.bincount(
            self._grain[own], weights=cv[self._dofs[own]], minlength=self.n_grains
        ).astype(float)
        vol = dom.submesh.comm.allreduce(vol, op=MPI.SUM)
        self.weights = vol / vol.sum()

    def field(self, values: np.ndarray, name: str) -> fem.Function:
        """A DG0 function with ``values[g - 1]`` in the cells of grain g."""
        f = fem.Function(self.V, name=name)
        self.assign(f, values)
        return f

    def assign(self, f: fem.Function, values: np.ndarray) -> None:
        """Set the DG0 ``f`` to ``values[g - 1]`` in grain g."""
        f.x.array[self._dofs] = np.asarray(values, dtype=float)[self._grain]
        f.x.scatter_forward()


class GrainStrainLaw:
    """Lattice strains of per-grain Li fractions as two DG0 fields (quasi-static mode with an OCP
    shift per grain): the interface of :class:`polycrack.physics.mechanics.UniformStrainLaw`.

    Args:
        law: a law with ``eps_a_np``/``eps_c_np`` (the case's :class:`StrainLawUFL`).
        grains: the :class:`GrainData` of the domain.
        shifts_V: the per-grain OCP shifts (V); ocp: the OCP model; x: initial mean Li fraction.
    """

    def __init__(self, law, grains: GrainData, shifts_V: np.ndarray, ocp: str, x: float):
        self.law, self.grains, self.shifts, self.ocp = law, grains, np.asarray(shifts_V), ocp
        self._a = fem.Function(grains.V, name="eps_a")
        self._c = fem.Function(grains.V, name="eps_c")
        #: per-grain Li fraction as a DG0 field (what Gc(x) sees in this mode)
        self.x_grain = fem.Function(grains.V, name="x_grain")
        self.x_values = np.zeros(grains.n_grains)
        self.mu_V = 0.0
        self.set(x)

    def set(self, x: float) -> None:
        """The per-grain strains at mean Li fraction ``x`` (a number)."""
        xg, self.mu_V = grain_x_at_common_potential(x, self.shifts, self.grains.weights, self.ocp)
        self.x_values = xg
        self.grains.assign(self._a, self.law.eps_a_np(xg))
        self.grains.assign(self._c, self.law.eps_c_np(xg))
        self.grains.assign(self.x_grain, xg)

    def eps_a(self, x):
        return float(self.law.eps_a_np(x)) if isinstance(x, int | float) else self._a

    def eps_c(self, x):
        return float(self.law.eps_c_np(x)) if isinstance(x, int | float) else self._c
