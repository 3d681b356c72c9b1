"""AT2 phase field, history field, grain-boundary field gamma and effective GB toughness (docs/model.md §3).

Internal units: µm, GPa; Gc in GPa µm (1 GPa µm = 1e3 J/m^2), energy densities in GPa.

Blocks for the coupled solver:

* :func:`solve_gamma` - gamma - l_g^2 lap(gamma) = 1 on the particle submesh, gamma = 0 on GB facets
  (topological dofs), zero flux on the particle surface; CG + GAMG; once per mesh.
* :func:`toughness` - Gc(gamma) = h Gc_GB + (1 - h) Gc_bulk, h = (1 - gamma)^2 (UFL).
* :class:`HistoryField` - H in a quadrature space on the submesh; ``update(psi_plus)`` sets
  H = max(H, psi+) through ``Expression.eval`` (works with u on the parent mesh, x on the submesh).
* :func:`phase_field_residual` - F_phi on the submesh:
  int Gc/l phi q + Gc l grad phi . grad q - 2 (1 - phi) D q dx, with D = max(H, psi+(u, x))
  (implicit driving force, u pulled from the parent) or D = H (staggered, lagged).
* :func:`crack_surface_density` - the AT2 crack-surface density whose integral Γ_l is the crack
  area (µm²), the mesh-objective damage measure of ``timeseries.csv`` (``crack_area_um2``).
* :func:`effective_gb_toughness`, :func:`fracture_summary` - 1D minimisation for G_eff and the AT2
  strengths, as a dict for run.json.
"""

from __future__ import annotations

import dolfinx_solver  # noqa: F401
import numpy as np
import ufl
from dolfinx import fem
from dolfinx import mesh as dmesh
from mpi4py import MPI
from scipy.linalg import solve_banded

from .. import units
from . import materials as mat

__all__ = [
    "HistoryField",
    "crack_energy",
    "crack_surface_density",
    "effective_gb_toughness",
    "fracture_summary",
    "gb_indicator",
    "phase_field_residual",
    "solve_gamma",
    "toughness",
]


def gb_indicator(gamma):
    """h = (1 - gamma)^2: 1 on a grain boundary, -> 0 inside grains."""
    return (1.0 - gamma) ** 2


def toughness(gamma, Gc_bulk: float, Gc_gb: float):
    """Gc(gamma) = h Gc_GB + (1 - h) Gc_bulk (units of the inputs; UFL or NumPy)."""
    return mat.toughness_from_gamma(gamma, Gc_bulk, Gc_gb)


def solve_gamma(
    submesh: dmesh.Mesh,
    gb_facets: np.ndarray,
    l_gamma: float,
    petsc_options: dict | None = None,
    prefix: str = "gamma_",
) -> fem.Function:
    """gamma on P1 of the particle submesh: gamma - l_g^2 lap gamma = 1, gamma = 0 on GB facets.

    ``l_gamma`` in µm. Without GB facets (single grain) gamma = 1. CG + GAMG by default.
    """
    from dolfinx.fem.petsc import LinearProblem

    V = fem.functionspace(submesh, ("Lagrange", 1))
    g, q = ufl.TrialFunction(V), ufl.TestFunction(V)
    a = (g * q + l_gamma**2 * ufl.inner(ufl.grad(g), ufl.grad(q))) * ufl.dx
    L = fem.Constant(submesh, 1.0) * q * ufl.dx
    fdim = submesh.topology.dim - 1
    submesh.topology.create_connectivity(fdim, submesh.topology.dim)
    dofs = fem.locate_dofs_topological(V, fdim, np.asarray(gb_facets, dtype=np.int32))
    bcs = [fem.dirichletbc(np.float64(0.0), dofs, V)]
    opts = petsc_options or {
        "ksp_type": "cg",
        "pc_type": "gamg",
        "ksp_rtol": 1e-12,
        "ksp_atol": 1e-14,
    }
    gamma = fem.Function(V, name="gamma")
    prob = LinearProblem(a, L, u=gamma, bcs=bcs, petsc_options=opts, petsc_options_prefix=prefix)
    prob.solve()
    reason = prob.solver.getConvergedReason()
    if reason <= 0:
        raise RuntimeError(f"gamma solve did not converge (KSP reason {reason})")
    gamma.x.scatter_forward()
    return gamma


class HistoryField:
    """History H (GPa) in a degree-``degree`` quadrature space on the particle submesh.

    The integrals containing H use its quadrature rule; degree 2 integrates the P1 phase-field
    terms exactly. ``update`` must be called only after a converged step.
    """

    def __init__(self, submesh: dmesh.Mesh, degree: int = 2):
        self.mesh = submesh
        import basix.ufl

        el = basix.ufl.quadrature_element(
            submesh.basix_cell(), value_shape=(), scheme="default", degree=degree
        )
        self.Q = fem.functionspace(submesh, el)
        self.degree = degree
        self.H = fem.Function(self.Q, name="H")
        self.points = self.Q.element.interpolation_points
        tdim = submesh.topology.dim
        imap = submesh.topology.index_map(tdim)
        self.cells = np.arange(imap.size_local + imap.num_ghosts, dtype=np.int32)
        self._expr: fem.Expression | None = None
        self._src = None
        #: driving-force diagnostics of the last :meth:`update` (:meth:`growth_stats`)
        self.growth: dict[str, float | None] = {"above_fraction": None, "ratio_max": None}
        self._above: fem.Function | None = None
        self._above_form = None
        self._volume: float | None = None

    def expression(self, psi_plus, entity_maps=None) -> fem.Expression:
        """Compile psi+ at the quadrature points (cached for the same UFL object)."""
        if self._expr is None or self._src is not psi_plus:
            self._expr = fem.Expression(
                psi_plus, self.points, comm=self.mesh.comm, entity_maps=entity_maps
            )
            self._src = psi_plus
        return self._expr

    def evaluate(self, psi_plus, entity_maps=None) -> np.ndarray:
        """psi+ at the quadrature points, laid out like ``H.x.array``."""
        expr = self.expression(psi_plus, entity_maps)
        vals = expr.eval(self.mesh, self.cells)
        out = np.empty_like(self.H.x.array)
        out[self.Q.dofmap.list[self.cells]] = vals.reshape(len(self.cells), -1)
        return out

    def growth_stats(self, vals: np.ndarray) -> dict[str, float | None]:
        """Where psi+ exceeds the history H (before H is raised to it), i.e. where the phase
        field can grow at all (collective).

        Args:
            vals: psi+ (GPa) at the quadrature points, laid out like ``H.x.array``.

        Returns:
            ``above_fraction``: particle volume where psi+ > H over the particle volume, integrated
            with H's quadrature rule; ``ratio_max``: max psi+/H over the points with H > 0
            (None while H = 0 everywhere).
        """
        comm = self.mesh.comm
        if self._above is None:
            self._above = fem.Function(self.Q, name="psi_plus_above_H")
            dxq = ufl.dx(domain=self.mesh, metadata={"quadrature_degree": self.degree})
            self._above_form = fem.form(self._above * dxq)
            one = fem.form(fem.Constant(self.mesh, np.float64(1.0)) * dxq)
            self._volume = comm.allreduce(fem.assemble_scalar(one), op=MPI.SUM)
        H = self.H.x.array
        self._above.x.array[:] = (vals > H).astype(np.float64)
        above = comm.allreduce(fem.assemble_scalar(self._above_form), op=MPI.SUM)
        pos = H > 0.0
        loc = float((vals[pos] / H[pos]).max()) if pos.any() else -np.inf
        ratio = comm.allreduce(loc, op=MPI.MAX)
        return {
            "above_fraction": above / self._volume,
            "ratio_max": ratio if np.isfinite(ratio) else None,
        }

    def update(self, psi_plus, entity_maps=None) -> float:
        """H <- max(H, psi+); returns the global max of H. :attr:`growth` gets the
        :meth:`growth_stats` of psi+ against the H before the update."""
        vals = self.evaluate(psi_plus, entity_maps)
        self.growth = self.growth_stats(vals)
        np.maximum(self.H.x.array, vals, out=self.H.x.array)
        hmax = float(self.H.x.array.max()) if len(self.H.x.array) else 0.0
        return self.mesh.comm.allreduce(hmax, op=MPI.MAX)


def phase_field_residual(phi, q, drive, Gc, l: float, dx=None, viscous=None):
    """F_phi = int [Gc/l phi q + Gc l grad phi . grad q - 2 (1 - phi) drive q] dx (GPa µm^2 units).

    ``Gc`` (GPa µm) may be a UFL field (e.g. :func:`toughness` of gamma); ``drive`` (GPa) is H or
    max(H, psi+). ``viscous = (phi_n, tau_over_dt)`` adds the backward-Euler viscous term
    ``Gc/l tau/dt (phi - phi_n) q`` (``phi_n`` the last accepted phase field, ``tau_over_dt`` a
    UFL scalar such as tau / dt with dt a Constant).
    """
    if dx is None:
        dx = ufl.dx(domain=phi.function_space.mesh)
    F = (
        Gc / l * phi * q
        + Gc * l * ufl.inner(ufl.grad(phi), ufl.grad(q))
        - 2.0 * (1.0 - phi) * drive * q
    ) * dx
    if viscous is not None:
        phi_n, tau_over_dt = viscous
        F += Gc / l * tau_over_dt * (phi - phi_n) * q * dx
    return F


def crack_surface_density(phi, l: float):
    """AT2 crack-surface density phi^2/(2l) + (l/2)|grad phi|^2 (1/µm; UFL), docs/model.md §5.

    Its integral Γ_l over the particle is the crack area in µm² (a fully broken planar crack of
    cross-section A has Γ_l = A for any l and h -> 0), so Gc Γ_l is the dissipated energy.

    Args:
        phi: the phase field (UFL, on the particle submesh).
        l: the phase-field length (µm).
    """
    return phi**2 / (2.0 * l) + 0.5 * l * ufl.inner(ufl.grad(phi), ufl.grad(phi))


def crack_energy(phi, Gc, l: float, dx=None):
    """Dissipated energy int Gc (phi^2/(2l) + (l/2)|grad phi|^2) dx (GPa µm^3 in 3D, per area in 1D)."""
    if dx is None:
        dx = ufl.dx(domain=phi.function_space.mesh)
    return Gc * crack_surface_density(phi, l) * dx


# ---------------------------------------------------------------------------------------------
# Effective GB toughness and AT2 strengths
# ---------------------------------------------------------------------------------------------


def effective_gb_toughness(
    Gc_bulk: float,
    Gc_gb: float,
    l: float,
    l_gamma: float,
    n: int = 40000,
    length_factor: float = 30.0,
) -> float:
    """G_eff: toughness of a straight crack along a GB, from a 1D minimisation (docs/model.md §3).

    min over phi with phi(0) = 1 of 2 int_0^L Gc(s) (phi^2/l + l phi'^2)/2 ds, with
    gamma(s) = 1 - exp(-s/l_gamma) (distance s from the GB) and L = length_factor max(l, l_gamma);
    P1 elements on a uniform grid of n cells (consistent mass; relative error
    about (h/l)^2/24, 1e-8 for the defaults). Units of Gc in = units out; l, l_gamma in any one unit.
    """
    L = length_factor * max(l, l_gamma)
    s = np.linspace(0.0, L, n + 1)
    hs = s[1] - s[0]
    sm = 0.5 * (s[1:] + s[:-1])
    gam = 1.0 - np.exp(-sm / l_gamma)
    G = toughness(gam, Gc_bulk, Gc_gb)  # per cell (midpoint)
    # element matrices of int G (phi^2/l + l phi'^2) for P1: mass (lumped-consistent) + stiffness
    km = G * hs / l  # consistent mass: km/3 diag, km/6 off
    kk = G * l / hs
    diag = np.zeros(n + 1)
    off = np.zeros(n)
    diag[:-1] += km / 3 + kk
    diag[1:] += km / 3 + kk
    off += km / 6 - kk
    # phi_0 = 1 (Dirichlet), unknowns phi_1..phi_n
    rhs = np.zeros(n)
    rhs[0] = -off[0] * 1.0
    ab = np.zeros((3, n))
    ab[0, 1:] = off[1:]
    ab[1, :] = diag[1:]
    ab[2, :-1] = off[1:]
    phi = np.concatenate([[1.0], solve_banded((1, 1), ab, rhs)])
    # phi^T K phi = int G (phi^2/l + l phi'^2) ds over one side = 2 x (one side of the functional);
    # the two sides of the crack together dissipate exactly phi^T K phi
    return float(np.dot(diag * phi, phi) + 2.0 * np.dot(off * phi[:-1], phi[1:]))


def fracture_summary(params) -> dict:
    """G_eff and AT2 strengths of a resolved :class:`solver.config.Parameters` (SI, for run.json)."""
    f, m = params.fracture, params.mechanics
    G_eff = effective_gb_toughness(f.Gc_bulk_J_m2, f.Gc_GB_J_m2, f.l_m, f.l_gamma_m)
    E = m.E_particle_Pa
    return {
        "Gc_bulk_J_m2": f.Gc_bulk_J_m2,
        "Gc_GB_J_m2": f.Gc_GB_J_m2,
        "l_m": f.l_m,
        "l_gamma_m": f.l_gamma_m,
        "G_eff_GB_J_m2": G_eff,
        "G_eff_over_Gc_bulk": G_eff / f.Gc_bulk_J_m2,
        "sigma_c_bulk_Pa": float(mat.at2_strength_Pa(E, f.Gc_bulk_J_m2, f.l_m)),
        "sigma_c_GB_nominal_Pa": float(mat.at2_strength_Pa(E, f.Gc_GB_J_m2, f.l_m)),
        "sigma_c_GB_effective_Pa": float(mat.at2_strength_Pa(E, G_eff, f.l_m)),
        "split": f.split,
    }


def fracture_constants(params) -> dict:
    """Gc_bulk, Gc_GB (GPa µm), l, l_gamma (µm), k in internal units."""
    f = params.fracture
    return {
        "Gc_bulk": units.toughness(f.Gc_bulk_J_m2),
        "Gc_gb": units.toughness(f.Gc_GB_J_m2),
        "l": units.length(f.l_m),
        "l_gamma": units.length(f.l_gamma_m),
        "k": f.k_residual,
    }


def summary_line(params) -> str:
    """One line for the run header: G_eff and the AT2 strengths (bulk, GB nominal, GB effective)."""
    s = fracture_summary(params)
    return (
        f"  effective GB toughness G_eff = {s['G_eff_GB_J_m2']:.2f} J/m^2 "
        f"({s['G_eff_over_Gc_bulk']:.3f} Gc_bulk, l_gamma = {s['l_gamma_m'] * 1e6:g} µm); "
        f"AT2 strength with G_eff: {s['sigma_c_GB_effective_Pa'] / 1e9:.2f} GPa"
    )
