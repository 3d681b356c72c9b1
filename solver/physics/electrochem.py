"""Li transport + Butler-Volmer kinetics + global particle voltage as one reusable residual block.

Unknowns (docs/model.md section 3), internal units µm and s (solver/units.py):

- ``x`` = c/c_max, P1 on the particle mesh (the particle submesh of a bundle, or a particle-only
  mesh), dimensionless;
- ``V`` the particle potential vs Li/Li+ in V, one global DOF (``basix.ufl.real_element``).

Residuals (test functions q for x, r for V), BDF weights ``a0, a1, a2`` and step ``dt`` [s]::

    F_x = ∫_Ωp (a0 x + a1 x_n + a2 x_nn) q + dt D ∇x·∇q dx + ∫_Γ dt j(x, V) q ds
    F_V = ∫_Γ [ g dt (j(x, V) - j_app) + p L_V (V - V_set) ] r ds

with ``j = i_n / (F c_max)`` the outward flux of x in µm/s, ``i_n = 2 i0 sinh(F η / 2RT)``,
``η = V - U(x)``, ``j_app = I_app / (F c_max |Γ|)``. The mode weights ``g`` (galvanostatic) and
``p = 1 - g`` (potentiostatic) and every other number that changes during a run are
``fem.Constant``s, so switching between CC/CV/rest or changing dt never re-JITs. Both residuals
are scaled by ``dt`` so their entries are "x times µm^3" and Newton tolerances do not depend on
the step size. ``L_V`` = 1 µm/V makes the potentiostatic row V - V_set = 0 in the same units.

The coupled run appends its own residuals to ``[F_x, F_V]`` and solves everything in one
:class:`solver.nonlinear.BlockNewton` (``kind="mpi"``, MUMPS LU on the bordered system).
"""

from __future__ import annotations

from dataclasses import dataclass

import basix.ufl
import dolfinx_solver  # noqa: F401  (MPI before dolfinx / petsc4py)
import numpy as np
import ufl
from dolfinx import fem
from dolfinx import mesh as dmesh
from mpi4py import MPI

from .. import units
from ..numerics.bdf import bdf_coefficients
from . import materials as mat

__all__ = ["Electrochemistry", "ElectrochemState", "bdf_coefficients"]


@dataclass
class ElectrochemState:
    """Scalar observables of the current (x, V) state."""

    voltage_V: float
    current_A: float
    x_avg: float
    x_surf_min: float
    x_surf_max: float
    x_surf_avg: float


class Electrochemistry:
    """x (P1) and V (real) on a particle mesh with the Butler-Volmer interface ``interface_tag``.

    Parameters
    ----------
    mesh:
        Particle mesh in µm (the particle submesh of a bundle, or a particle-only mesh).
    facet_tags:
        Facet tags of ``mesh``; Li exchange happens on facets with ``interface_tag``.
    ec:
        :class:`solver.config.ElectrochemistryParams` (SI values).
    x0:
        Initial Li fraction (default ``ec.x0``).
    quadrature_degree:
        Quadrature degree of the interface terms (nonlinear in x).
    """

    def __init__(
        self,
        mesh: dmesh.Mesh,
        facet_tags: dmesh.MeshTags,
        interface_tag: int,
        ec,
        *,
        x0: float | None = None,
        quadrature_degree: int = 2,
    ):
        self.mesh = mesh
        self.comm: MPI.Comm = mesh.comm
        self.ec = ec
        self.x0 = float(ec.x0 if x0 is None else x0)
        self.interface_tag = interface_tag
        self.facet_tags = facet_tags
        self.W = fem.functionspace(mesh, ("Lagrange", 1))
        self.R = fem.functionspace(
            mesh, basix.ufl.real_element(mesh.basix_cell(), dtype=np.float64)
        )
        self.x = fem.Function(self.W, name="x")
        self.x_n = fem.Function(self.W, name="x_n")
        self.x_nn = fem.Function(self.W, name="x_nn")
        self.V = fem.Function(self.R, name="V")
        for f in (self.x, self.x_n, self.x_nn):
            f.x.array[:] = self.x0
        self.V.x.array[:] = float(mat.ocp_V(self.x0, model=ec.ocp))

        c = lambda v: fem.Constant(mesh, np.float64(v))  # noqa: E731
        self.dt = c(1.0)  # s
        self.a0, self.a1, self.a2 = c(1.0), c(-1.0), c(0.0)
        self.j_app = c(0.0)  # µm/s, outward flux of x (charge > 0)
        self.V_set = c(float(self.V.x.array[0]))  # V
        self.g = c(1.0)  # galvanostatic weight
        self.p = c(0.0)  # potentiostatic weight
        self.D = c(units.diffusivity(ec.D_m2_s))  # µm^2/s
        #: per-grain fields (DG0, :meth:`set_grain_data`): OCP shift (V), factors on i0 and D
        self.ocp_shift = self.i0_factor = self.D_factor = None
        #: D(x) in µm²/s as a callable of the UFL x (:meth:`set_diffusivity`); None: the constant D
        self.D_of_x = None

        self.dx = ufl.Measure("dx", domain=mesh)
        self.ds = ufl.Measure(
            "ds",
            domain=mesh,
            subdomain_data=facet_tags,
            subdomain_id=interface_tag,
            metadata={"quadrature_degree": quadrature_degree},
        )
        self.volume_um3 = self._sum(fem.form(c(1.0) * self.dx))
        self.area_um2 = self._sum(fem.form(c(1.0) * self.ds))
        if self.area_um2 <= 0.0:
            raise ValueError(f"no interface facets with tag {interface_tag} on the particle mesh")
        self.volume_m3 = self.volume_um3 * units.LENGTH_M**3
        self.area_m2 = self.area_um2 * units.LENGTH_M**2
        self.i_1c_A = mat.current_1c_A(ec.c_max_mol_m3, self.volume_m3)

        # observables
        self._f_int_x = fem.form(self.x * self.dx)
        self._f_int_xs = fem.form(self.x * self.ds)
        self._f_current = fem.form(self.i_n(self.x, self.V) * self.ds)
        self.mesh.topology.create_connectivity(mesh.topology.dim - 1, mesh.topology.dim)
        facets = facet_tags.find(interface_tag)
        dofs = fem.locate_dofs_topological(self.W, mesh.topology.dim - 1, facets)
        nown = self.W.dofmap.index_map.size_local
        self._surf_dofs = dofs[dofs < nown]
        self.I_app_A = 0.0
        self.mode = "galvanostatic"

    # -- laws in UFL ----------------------------------------------------------------------------
    def ocp(self, x):
        """U(x) in V (+ the grain's OCP shift, if set)."""
        u = mat.ocp_V(x, xp=ufl, model=self.ec.ocp)
        return u if self.ocp_shift is None else u + self.ocp_shift

    def i0(self, x):
        """Regularised exchange current density in A/m^2 (x the grain's factor, if set)."""
        e = self.ec
        i0 = mat.exchange_current_A_m2(
            x, e.c_max_mol_m3, e.c_e_mol_m3, e.m_ref_A_m2p5_mol1p5, e.i0_regularisation_x, xp=ufl
        )
        return i0 if self.i0_factor is None else i0 * self.i0_factor

    def set_diffusivity(self, D_of_x) -> None:
        """A concentration-dependent D: ``D_of_x(x)`` a UFL expression in µm²/s, replacing the
        constant ``ec.D_m2_s`` (docs/model.md section 3.10). Call before :meth:`residuals`."""
        self.D_of_x = D_of_x

    def set_grain_data(self, ocp_shift=None, i0_factor=None, D_factor=None) -> None:
        """Per-grain OCP shift (V), i0 and D factors as DG0 fields on the particle mesh (None:
        none), for grain-to-grain heterogeneity (docs/model.md section 3.10). Call before
        :meth:`residuals`."""
        self.ocp_shift, self.i0_factor, self.D_factor = ocp_shift, i0_factor, D_factor
        self._f_current = fem.form(self.i_n(self.x, self.V) * self.ds)

    def i_n(self, x, V):
        """Butler-Volmer normal current density in A/m^2 (> 0 removes Li)."""
        e = self.ec
        return mat.butler_volmer_A_m2(V - self.ocp(x), self.i0(x), e.T_K, e.alpha_a, e.alpha_c, ufl)

    def flux(self, x, V):
        """Outward flux of x, i_n / (F c_max), in µm/s."""
        return self.i_n(x, V) * units.flux_x(1.0, self.ec.c_max_mol_m3, mat.FARADAY_C_MOL)

    # -- residuals ------------------------------------------------------------------------------
    def residuals(self, x_coupling=None) -> list:
        """UFL residuals ``[F_x, F_V]`` for the unknowns ``[self.x, self.V]``.

        ``x_coupling`` (optional): a callable ``q -> UFL form`` (already integrated, e.g. a
        stress-assisted flux ``∫ D x(1-x) Ω/RT ∇σ_h·∇q dx`` from the coupled run) that is added
        to F_x as ``dt * x_coupling(q)``, in the same units as the diffusion term.
        """
        x, V = self.x, self.V
        q = ufl.TestFunction(self.W)
        r = ufl.TestFunction(self.R)
        j = self.flux(x, V)
        F_x = (self.a0 * x + self.a1 * self.x_n + self.a2 * self.x_nn) * q * self.dx
        D = self.D if self.D_of_x is None else self.D_of_x(x)
        D = D if self.D_factor is None else D * self.D_factor
        F_x += self.dt * D * ufl.inner(ufl.grad(x), ufl.grad(q)) * self.dx
        F_x += self.dt * j * q * self.ds
        if x_coupling is not None:
            F_x += self.dt * x_coupling(q)
        L_V = fem.Constant(self.mesh, np.float64(1.0))  # µm/V
        F_V = (self.g * self.dt * (j - self.j_app) + self.p * L_V * (V - self.V_set)) * r * self.ds
        return [F_x, F_V]

    @property
    def unknowns(self) -> list[fem.Function]:
        """``[x, V]`` in the order of :meth:`residuals`."""
        return [self.x, self.V]

    # -- control --------------------------------------------------------------------------------
    def set_galvanostatic(self, current_A: float) -> None:
        """Prescribe the total current I_app in A (> 0 charges, i.e. removes Li)."""
        self.I_app_A = float(current_A)
        self.j_app.value = units.flux_x(
            current_A / self.area_m2, self.ec.c_max_mol_m3, mat.FARADAY_C_MOL
        )
        self.g.value, self.p.value = 1.0, 0.0
        self.mode = "galvanostatic"

    def set_potentiostatic(self, voltage_V: float) -> None:
        """Hold V = voltage_V; the current becomes an output."""
        self.V_set.value = float(voltage_V)
        self.g.value, self.p.value = 0.0, 1.0
        self.mode = "potentiostatic"

    def c_rate_current_A(self, c_rate: float) -> float:
        """Current of a C-rate for this particle's (mesh) volume, A."""
        return c_rate * self.i_1c_A

    def set_bdf(self, dt: float, a: tuple[float, float, float]) -> None:
        """Set step size [s] and BDF weights (a0, a1, a2)."""
        self.dt.value = float(dt)
        self.a0.value, self.a1.value, self.a2.value = (float(v) for v in a)

    def set_history(self, x_n: np.ndarray, x_nn: np.ndarray) -> None:
        """Local arrays (owned + ghosts) of x at t_n and t_{n-1}."""
        self.x_n.x.array[:] = x_n
        self.x_nn.x.array[:] = x_nn

    # -- observables ----------------------------------------------------------------------------
    def _sum(self, form) -> float:
        return float(self.comm.allreduce(fem.assemble_scalar(form), op=MPI.SUM))

    @property
    def voltage(self) -> float:
        """V in volts (same on every rank)."""
        return float(self.V.x.array[0])

    def current_A(self) -> float:
        """I = ∫_Γ i_n dS in A."""
        return self._sum(self._f_current) * units.LENGTH_M**2

    def x_avg(self) -> float:
        """Volume average of x."""
        return self._sum(self._f_int_x) / self.volume_um3

    def surface_x_range(self) -> tuple[float, float]:
        """(min, max) of x over the interface nodes."""
        v = self.x.x.array[self._surf_dofs]
        lo = float(v.min()) if v.size else np.inf
        hi = float(v.max()) if v.size else -np.inf
        return self.comm.allreduce(lo, op=MPI.MIN), self.comm.allreduce(hi, op=MPI.MAX)

    def state(self) -> ElectrochemState:
        """All scalar observables (collective)."""
        lo, hi = self.surface_x_range()
        return ElectrochemState(
            voltage_V=self.voltage,
            current_A=self.current_A(),
            x_avg=self.x_avg(),
            x_surf_min=lo,
            x_surf_max=hi,
            x_surf_avg=self._sum(self._f_int_xs) / self.area_um2,
        )

    def surface_current_density(self) -> np.ndarray:
        """i_n in A/m^2 at the owned interface nodes (from nodal x and the global V)."""
        xs = self.x.x.array[self._surf_dofs]
        e = self.ec
        i0 = mat.exchange_current_A_m2(
            xs, e.c_max_mol_m3, e.c_e_mol_m3, e.m_ref_A_m2p5_mol1p5, e.i0_regularisation_x
        )
        eta = self.voltage - mat.ocp_V(xs, model=e.ocp)
        return mat.butler_volmer_A_m2(eta, i0, e.T_K, e.alpha_a, e.alpha_c)
