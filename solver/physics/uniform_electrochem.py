"""Uniform (0-D) electrochemistry: one Li fraction x and the voltage V of a particle whose Li
content is uniform, the rate-independent limit of a slow charge (``physics.mode: quasistatic``).

With Q = F c_max V_p the particle's Li capacity (C), A its surface area and I the current (A,
> 0 charges, i.e. removes Li), the model is (docs/model.md section 3 with ∇x = 0)::

    dx/dt = -I / Q
    V = U(x) + η,   I / A = i_BV(η, i0(x))    (symmetric: η = (2RT/F) asinh(I / (2 A i0(x))))

CC and rest steps prescribe I, so x follows the charge exactly (BDF is exact for a linear x(t))
and V is explicit. CV steps prescribe V; then x solves the scalar BDF equation

    a0 x + a1 x_n + a2 x_nn + dt (A / Q) i_BV(V_set - U(x), i0(x)) = 0

(a root of a monotone function for the Chen 2020 OCP, found by bracketing + Brent to 1e-14).
x and V are real-valued unknowns (``fem.Function`` of a one-DOF real space on the particle mesh),
so the adaptive BDF stepper, the protocol runner and the checkpoints treat them like the fields
of :class:`~polycrack.physics.electrochem.Electrochemistry`, whose control interface
(set_galvanostatic, set_potentiostatic, c_rate_current_A, set_bdf, voltage, current_A, state)
this class repeats. Every rank computes the same numbers (no communication in a solve).
"""

from __future__ import annotations

import time

import basix.ufl
import dolfinx_solver  # noqa: F401  (MPI before dolfinx / petsc4py)
import numpy as np
import ufl
from dolfinx import fem
from dolfinx import mesh as dmesh
from mpi4py import MPI
from scipy.optimize import brentq

from .. import units
from ..numerics.nonlinear import NewtonResult
from . import materials as mat
from .electrochem import ElectrochemState

__all__ = ["UniformElectrochemistry"]

#: x is searched in [X_EDGE, 1 - X_EDGE] (the regularised i0 keeps the kinetics finite there)
X_EDGE = 1e-9
#: absolute tolerance of the scalar root finds (x dimensionless, η in V)
ROOT_XTOL = 1e-14


class UniformElectrochemistry:
    """x and V of a particle with uniform Li content (see module docstring).

    Args:
        mesh: the particle mesh (µm); carries the one-DOF real space of x and V, the step
            Constant ``dt`` (used by a viscous phase field) and :attr:`x_field`.
        volume_um3: particle volume V_p (µm³).
        area_um2: Li-exchanging surface area A (µm²).
        ec: :class:`polycrack.config.ElectrochemistryParams` (SI values).
        x0: initial Li fraction (default ``ec.x0``).

    Attributes:
        x_field: x as a uniform P1 field on ``mesh`` (what mechanics and field files see), set
            by every successful :meth:`solve` and by :meth:`sync_field`.
    """

    @classmethod
    def on_particle(
        cls, mesh: dmesh.Mesh, facet_tags: dmesh.MeshTags, interface_tag: int, ec, **kw
    ) -> UniformElectrochemistry:
        """On a particle mesh: V_p and A integrated over the mesh and its ``interface_tag`` facets
        (the same numbers, hence the same 1C current, as :class:`Electrochemistry`)."""
        one = fem.Constant(mesh, np.float64(1.0))
        ds = ufl.Measure("ds", domain=mesh, subdomain_data=facet_tags, subdomain_id=interface_tag)

        def total(form) -> float:
            return float(mesh.comm.allreduce(fem.assemble_scalar(fem.form(form)), op=MPI.SUM))

        area = total(one * ds)
        if area <= 0.0:
            raise ValueError(f"no interface facets with tag {interface_tag} on the particle mesh")
        return cls(mesh, total(one * ufl.dx(domain=mesh)), area, ec, **kw)

    def __init__(
        self,
        mesh: dmesh.Mesh,
        volume_um3: float,
        area_um2: float,
        ec,
        *,
        x0: float | None = None,
    ):
        if volume_um3 <= 0.0 or area_um2 <= 0.0:
            raise ValueError(f"volume ({volume_um3} µm³) and area ({area_um2} µm²) must be > 0")
        self.mesh = mesh
        self.comm = mesh.comm
        self.ec = ec
        self.x0 = float(ec.x0 if x0 is None else x0)
        self.R = fem.functionspace(
            mesh, basix.ufl.real_element(mesh.basix_cell(), dtype=np.float64)
        )
        self.x = fem.Function(self.R, name="x")
        self.x_n = fem.Function(self.R, name="x_n")
        self.x_nn = fem.Function(self.R, name="x_nn")
        self.V = fem.Function(self.R, name="V")
        for f in (self.x, self.x_n, self.x_nn):
            f.x.array[:] = self.x0
        self.V.x.array[:] = float(mat.ocp_V(self.x0, model=ec.ocp))
        self.x_field = fem.Function(fem.functionspace(mesh, ("Lagrange", 1)), name="x")
        self.x_field.x.array[:] = self.x0
        self.dt = fem.Constant(mesh, np.float64(1.0))  # s
        self.a = (1.0, -1.0, 0.0)
        self.volume_um3, self.area_um2 = float(volume_um3), float(area_um2)
        self.volume_m3 = self.volume_um3 * units.LENGTH_M**3
        self.area_m2 = self.area_um2 * units.LENGTH_M**2
        #: Li capacity of the particle Q = F c_max V_p, C
        self.capacity_C = mat.FARADAY_C_MOL * ec.c_max_mol_m3 * self.volume_m3
        self.i_1c_A = mat.current_1c_A(ec.c_max_mol_m3, self.volume_m3)
        self.I_app_A = 0.0
        self.V_set = float(self.V.x.array[0])
        self.mode = "galvanostatic"
        self.evaluations = 0  # function evaluations of the CV root finds

    # -- laws (NumPy scalars) -------------------------------------------------------------------
    def i0(self, x: float) -> float:
        """Regularised exchange current density at Li fraction x, A/m²."""
        e = self.ec
        return float(
            mat.exchange_current_A_m2(
                x, e.c_max_mol_m3, e.c_e_mol_m3, e.m_ref_A_m2p5_mol1p5, e.i0_regularisation_x
            )
        )

    def current_density(self, x: float, V: float) -> float:
        """Butler-Volmer current density i(η = V - U(x), i0(x)), A/m² (> 0 removes Li)."""
        e = self.ec
        eta = V - float(mat.ocp_V(x, model=e.ocp))
        return float(mat.butler_volmer_A_m2(eta, self.i0(x), e.T_K, e.alpha_a, e.alpha_c))

    def overpotential(self, i_A_m2: float, x: float) -> float:
        """η with i_BV(η, i0(x)) = i, V: (2RT/F) asinh(i / 2 i0) for a_a = a_c = 1/2, else a
        bracketed root of the monotone Butler-Volmer law."""
        e = self.ec
        i0 = self.i0(x)
        if e.alpha_a == e.alpha_c == 0.5:
            return float(mat.overpotential_V(i_A_m2, i0, e.T_K))
        f = lambda eta: float(  # noqa: E731
            mat.butler_volmer_A_m2(eta, i0, e.T_K, e.alpha_a, e.alpha_c) - i_A_m2
        )
        lo, hi = _bracket(f, 0.0, 0.01, -10.0, 10.0)
        if lo == hi:
            return lo
        return float(brentq(f, lo, hi, xtol=ROOT_XTOL, rtol=4 * np.finfo(float).eps))

    def voltage_galvanostatic(self, x: float, current_A: float) -> float:
        """V = U(x) + η(I / A, i0(x)), V."""
        return float(mat.ocp_V(x, model=self.ec.ocp)) + self.overpotential(
            current_A / self.area_m2, x
        )

    # -- control (the interface of Electrochemistry that the protocol runner uses) --------------
    def set_galvanostatic(self, current_A: float) -> None:
        """Prescribe the total current I_app in A (> 0 charges, i.e. removes Li)."""
        self.I_app_A = float(current_A)
        self.mode = "galvanostatic"

    def set_potentiostatic(self, voltage_V: float) -> None:
        """Hold V = voltage_V; the current becomes an output."""
        self.V_set = float(voltage_V)
        self.mode = "potentiostatic"

    def c_rate_current_A(self, c_rate: float) -> float:
        """Current of a C-rate for this particle's (mesh) volume, A."""
        return c_rate * self.i_1c_A

    def set_bdf(self, dt: float, a: tuple[float, float, float]) -> None:
        """Set step size [s] and BDF weights (a0, a1, a2)."""
        self.dt.value = float(dt)
        self.a = tuple(float(v) for v in a)

    @property
    def unknowns(self) -> list[fem.Function]:
        """``[x, V]`` (the stepper's first two fields)."""
        return [self.x, self.V]

    # -- one step -------------------------------------------------------------------------------
    def solve(self) -> NewtonResult:
        """x and V at the end of the step set by :meth:`set_bdf` from the history x_n, x_nn.

        Returns a :class:`NewtonResult` with ``iterations`` = 1 (a direct solve: the step-size
        control must not read the root find's function evaluations, counted in
        :attr:`evaluations`, as Newton iterations); not converged when no x in (0, 1) satisfies
        the step.
        """
        t0 = time.perf_counter()
        a0, a1, a2 = self.a
        dt = float(self.dt.value)
        rest = a1 * float(self.x_n.x.array[0]) + a2 * float(self.x_nn.x.array[0])
        evals = 1
        try:
            if self.mode == "galvanostatic":
                x = -(rest + dt * self.I_app_A / self.capacity_C) / a0
                if not X_EDGE < x < 1.0 - X_EDGE:
                    raise ValueError(f"x = {x:.6g} leaves (0, 1)")
                V = self.voltage_galvanostatic(x, self.I_app_A)
            else:
                V = self.V_set
                k = dt * self.area_m2 / self.capacity_C

                def f(xv: float) -> float:
                    return a0 * xv + rest + k * self.current_density(xv, V)

                guess = min(max(float(self.x.x.array[0]), 2 * X_EDGE), 1.0 - 2 * X_EDGE)
                lo, hi = _bracket(f, guess, 1e-4, X_EDGE, 1.0 - X_EDGE)
                x = lo
                if lo < hi:
                    x, info = brentq(
                        f, lo, hi, xtol=ROOT_XTOL, rtol=4 * np.finfo(float).eps, full_output=True
                    )
                    evals = int(info.function_calls)
            ok = bool(np.isfinite(x) and np.isfinite(V))
            msg = "" if ok else "non-finite x or V"
        except ValueError as exc:  # no bracket / x out of range: let the stepper cut dt
            ok, msg = False, f"uniform electrochemistry: {exc}"
        secs = time.perf_counter() - t0
        if not ok:
            return NewtonResult(False, -1, 1, 0, secs, 0, msg)
        self.x.x.array[:] = x
        self.V.x.array[:] = V
        self.x_field.x.array[:] = x
        self.evaluations += evals
        return NewtonResult(True, 2, 1, 0, secs)

    def sync_field(self) -> None:
        """Set :attr:`x_field` to x (after the stepper restored x, or a checkpoint was read)."""
        self.x_field.x.array[:] = self.x_value

    def close(self) -> None:
        """Nothing to free (no PETSc objects); the staggered solver family calls it."""

    # -- observables ----------------------------------------------------------------------------
    @property
    def x_value(self) -> float:
        """The uniform Li fraction (same on every rank)."""
        return float(self.x.x.array[0])

    @property
    def voltage(self) -> float:
        """V in volts (same on every rank)."""
        return float(self.V.x.array[0])

    def current_A(self) -> float:
        """I = A i_BV(V - U(x), i0(x)) in A."""
        return self.area_m2 * self.current_density(self.x_value, self.voltage)

    def x_avg(self) -> float:
        """The volume average of x (= x)."""
        return self.x_value

    def state(self) -> ElectrochemState:
        """All scalar observables; the surface values are x itself."""
        x = self.x_value
        return ElectrochemState(
            voltage_V=self.voltage,
            current_A=self.current_A(),
            x_avg=x,
            x_surf_min=x,
            x_surf_max=x,
            x_surf_avg=x,
        )


def _bracket(f, x: float, step: float, lo_lim: float, hi_lim: float) -> tuple[float, float]:
    """An interval inside [lo_lim, hi_lim] next to ``x`` where ``f`` changes sign, found by steps
    that double on both sides (the root nearest ``x`` on the side found first). Raises
    ValueError when both limits are reached without a sign change."""
    s = np.sign(f(x))
    if s == 0:
        return x, x
    lo = hi = x
    while lo > lo_lim or hi < hi_lim:
        lo_new, hi_new = max(lo - step, lo_lim), min(hi + step, hi_lim)
        if lo_new < lo and np.sign(f(lo_new)) != s:
            return lo_new, lo
        if hi_new > hi and np.sign(f(hi_new)) != s:
            return hi, hi_new
        lo, hi, step = lo_new, hi_new, 2.0 * step
    raise ValueError(f"no sign change in [{lo_lim:g}, {hi_lim:g}]")
