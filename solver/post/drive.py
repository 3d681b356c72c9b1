"""Driving-force diagnostics per accepted step (``timeseries.csv``, docs/user-guide.md section 5).

Why damage can or cannot grow at a step: at uniform x every crack-driving energy scales with
Δε′ = Δε(x) − Δε(x0) (docs/model.md section 4), so its running maximum |Δε′| says when the history
field can be exceeded again; the volume where ψ⁺ > H and max ψ⁺/H say where and by how much it
is; the mean binder pressure is the load of the isotropic part of the eigenstrain. Units: Pa at
the edges, GPa inside (solver/units.py).
"""

from __future__ import annotations

import dolfinx_solver  # noqa: F401
import numpy as np
import ufl
from dolfinx import fem
from mpi4py import MPI

from .. import units
from ..physics import materials as mat
from ..physics.mechanics import BINDER_REGION, MechanicsModel, ParticleDomain

__all__ = ["DRIVE_COLUMNS", "DriveDiagnostics"]

#: the ``timeseries.csv`` columns of :meth:`DriveDiagnostics.row`
DRIVE_COLUMNS = (
    "delta_eps_prime",
    "delta_eps_prime_absmax",
    "psi_plus_above_H_fraction",
    "psi_plus_over_H_max",
    "binder_pressure_mean_Pa",
)


class DriveDiagnostics:
    """Δε′ at x_avg and its running max |Δε′|, the ψ⁺ > H statistics of the history field, the
    mean binder pressure.

    Args:
        dom: the particle domain (parent mesh with binder region tags).
        model: the mechanics model (binder moduli).
        u: the displacement (parent mesh, µm).
        lattice: the lattice-strain table of the case (NumPy).
        x0: the stress-free Li fraction.
    """

    def __init__(
        self,
        dom: ParticleDomain,
        model: MechanicsModel,
        u: fem.Function,
        lattice: mat.LatticeStrains,
        x0: float,
    ):
        self.lattice, self.x0 = lattice, float(x0)
        self.absmax = 0.0
        self.d_eps_prime: float | None = None
        self.comm = dom.mesh.comm
        self._p = None
        if dom.has_binder:
            dxb = dom.dx_parent()(BINDER_REGION)
            pressure = -ufl.tr(model.binder_stress(u)) / 3.0
            self._p = fem.form(pressure * dxb)
            one = fem.form(fem.Constant(dom.mesh, np.float64(1.0)) * dxb)
            self._vb = self.comm.allreduce(fem.assemble_scalar(one), op=MPI.SUM)

    def delta_eps_prime(self, x: float) -> float:
        """Δε(x) − Δε(x0) of the table (dimensionless)."""
        return float(self.lattice.delta_eps(x) - self.lattice.delta_eps(self.x0))

    def accept(self, x_avg: float) -> None:
        """Record an accepted step at mean Li fraction ``x_avg``."""
        self.d_eps_prime = self.delta_eps_prime(x_avg)
        self.absmax = max(self.absmax, abs(self.d_eps_prime))

    def binder_pressure_Pa(self) -> float | None:
        """Volume-mean pressure −tr σ/3 of the binder in Pa (> 0 in compression; None without
        binder). Collective."""
        if self._p is None:
            return None
        p = self.comm.allreduce(fem.assemble_scalar(self._p), op=MPI.SUM) / self._vb
        return units.stress_to_pa(p)

    def row(self, growth: dict | None) -> dict:
        """The :data:`DRIVE_COLUMNS` of the last accepted step; ``growth`` the history field's
        :attr:`~polycrack.physics.fracture.HistoryField.growth` (None without fracture)."""
        g = growth or {}
        return {
            "delta_eps_prime": self.d_eps_prime,
            "delta_eps_prime_absmax": self.absmax if self.d_eps_prime is not None else None,
            "psi_plus_above_H_fraction": g.get("above_fraction"),
            "psi_plus_over_H_max": g.get("ratio_max"),
            "binder_pressure_mean_Pa": self.binder_pressure_Pa(),
        }
