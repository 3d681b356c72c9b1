"""Small-strain elasticity with lithiation eigenstrain, energy splits and degradation (docs/model.md §3).

Internal units (solver/units.py): lengths in µm, stresses and energy densities in GPa.

Building blocks, written so that the coupled solver can put them into one monolithic
``NonlinearProblem`` (docs/model.md section 3.8):

* :class:`ParticleDomain` - parent mesh (particle + binder), its tags, the particle submesh with its
  entity map, a particle/binder region tag, the grain c-axes as a DG0 vector field on the submesh.
* :class:`StrainLawUFL` - eps_a(x), eps_c(x) of the lattice table as *exact* piecewise-linear UFL
  functions of the Li fraction x (a sum of hinge functions ``max(x - x_k, 0)``), differentiable
  in x almost everywhere, so the coupled Jacobian contains d eps*/dx.
* :func:`eigenstrain`, :func:`strain_energy_split`, :func:`stress` - constitutive law with splits
  ``none | voldev | spectral | hybrid`` and degradation ``(1 - phi)^2 + k``.
* :func:`displacement_residual` - the residual F_u on the parent mesh: particle cells with
  eigenstrain and degradation (x, phi and n pulled from the submesh via the entity map), binder
  cells elastic and undamaged.
* :func:`displacement_bcs` - clamped outer binder surface, or traction-free with the six rigid
  modes removed by a statically determinate 3-2-1 support (no reactions for a self-equilibrated
  eigenstrain load, so stresses are those of the free body).
* :func:`build_blocks` - all of the above plus phi, gamma, Gc(gamma), the history field and F_phi
  for a given x, in one call (what the coupled solver uses)::

      dom = ParticleDomain.from_domain(load_bundle(path, comm))
      model = MechanicsModel.from_params(params, rc.lattice_table_path)
      b = build_blocks(dom, model, x, fracture_constants(params), degree=1,
                       outer_boundary=case.physics.outer_boundary)
      # NonlinearProblem([b.F_u, F_x, b.F_phi, F_V], [b.u, x, b.phi, V], bcs=b.bcs,
      #                  entity_maps=[dom.entity_map], kind="mpi", ...)
      # after every converged step: b.history.update(b.psi_plus, [dom.entity_map])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dolfinx_solver  # noqa: F401  (MPI before dolfinx / petsc4py)
import numpy as np
import ufl
from dolfinx import fem
from dolfinx import mesh as dmesh
from mpi4py import MPI

from .. import units
from ..meshing.tags import BINDER, GB, INTERFACE, OUTER
from . import materials as mat

PARTICLE_REGION = 1  # region tag (parent mesh) of all grain cells
BINDER_REGION = 2  # region tag (parent mesh) of the binder cells
SPLITS = ("none", "voldev", "spectral", "hybrid")

__all__ = [
    "BINDER_REGION",
    "PARTICLE_REGION",
    "SPLITS",
    "ElasticModuli",
    "LinearStrainLaw",
    "MechanicsModel",
    "ParticleDomain",
    "StrainLawUFL",
    "UniformStrainLaw",
    "degradation",
    "displacement_bcs",
    "displacement_residual",
    "eigenstrain",
    "principal_values",
    "strain",
    "strain_energy_split",
    "stress",
]


# ---------------------------------------------------------------------------------------------
# Domain
# ---------------------------------------------------------------------------------------------


@dataclass
class ParticleDomain:
    """Parent mesh, tags, particle submesh + entity map and grain axes, in µm.

    ``axes[g - 1]`` is the unit c-axis of grain ``g`` (cell tag g). The binder (tag BINDER) may be
    absent (free polycrystal). ``center``/``radius_um`` define r/R_p for radial post-processing.
    """

    mesh: dmesh.Mesh
    cell_tags: dmesh.MeshTags
    facet_tags: dmesh.MeshTags
    submesh: dmesh.Mesh
    entity_map: Any  # dolfinx EntityMap: submesh cells -> parent cells
    sub_cell_tags: dmesh.MeshTags
    sub_facet_tags: dmesh.MeshTags
    axes: np.ndarray
    center: np.ndarray
    radius_um: float
    region_tags: dmesh.MeshTags = field(init=False)
    has_binder: bool = field(init=False)

    def __post_init__(self) -> None:
        tdim = self.mesh.topology.dim
        ct = self.cell_tags
        vals = np.where(ct.values == BINDER, BINDER_REGION, PARTICLE_REGION).astype(np.int32)
        order = np.argsort(ct.indices)
        self.region_tags = dmesh.meshtags(self.mesh, tdim, ct.indices[order], vals[order])
        nb = int(np.count_nonzero(ct.values == BINDER))
        self.has_binder = self.mesh.comm.allreduce(nb, op=MPI.SUM) > 0
        self.axes = np.asarray(self.axes, dtype=np.float64).reshape(-1, 3)

    # -- constructors ------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        msh: dmesh.Mesh,
        cell_tags: dmesh.MeshTags,
        facet_tags: dmesh.MeshTags,
        axes: np.ndarray,
        center: np.ndarray | None = None,
        radius_um: float | None = None,
    ) -> ParticleDomain:
        """From a parent mesh with grain tags 1..N (+ optional BINDER) and facet tags."""
        tdim = msh.topology.dim
        msh.topology.create_connectivity(tdim - 1, tdim)
        cells = cell_tags.indices[cell_tags.values != BINDER].astype(np.int32)
        sm, emap, vmap, _ = dmesh.create_submesh(msh, tdim, cells)
        sm.topology.create_connectivity(tdim - 1, tdim)
        sct = dmesh.transfer_meshtags_to_submesh(cell_tags, sm, vmap, emap)
        sft = dmesh.transfer_meshtags_to_submesh(facet_tags, sm, vmap, emap)
        return cls._finish(msh, cell_tags, facet_tags, sm, emap, sct, sft, axes, center, radius_um)

    @classmethod
    def from_domain(cls, dom: Any) -> ParticleDomain:
        """Adapter for ``solver.domain.Domain`` (mesh bundle): uses its cached particle submesh."""
        ps = dom.particle_submesh()
        return cls._finish(
            dom.mesh,
            dom.cell_tags,
            dom.facet_tags,
            ps.mesh,
            ps.entity_map,
            ps.cell_tags,
            ps.facet_tags,
            dom.axes,
            getattr(dom, "center", None),
            getattr(dom, "particle_radius_um", None),
        )

    @classmethod
    def _finish(cls, msh, ct, ft, sm, emap, sct, sft, axes, center, radius_um) -> ParticleDomain:
        comm = msh.comm
        one = fem.form(fem.Constant(sm, 1.0) * ufl.dx(domain=sm))
        vol = comm.allreduce(fem.assemble_scalar(one), op=MPI.SUM)
        if center is None:
            X = ufl.SpatialCoordinate(sm)
            center = (
                np.array(
                    [
                        comm.allreduce(fem.assemble_scalar(fem.form(X[i] * ufl.dx)), op=MPI.SUM)
                        for i in range(sm.geometry.dim)
                    ]
                )
                / vol
            )
        if radius_um is None:
            radius_um = (3.0 * vol / (4.0 * np.pi)) ** (1.0 / 3.0)
        return cls(msh, ct, ft, sm, emap, sct, sft, np.asarray(axes), np.asarray(center), radius_um)

    # -- fields ------------------------------------------------------------------------------
    @property
    def gdim(self) -> int:
        return self.mesh.geometry.dim

    def axis_field(self) -> fem.Function:
        """Grain c-axes as a DG0 vector field on the particle submesh (unit vectors)."""
        V = fem.functionspace(self.submesh, ("DG", 0, (self.gdim,)))
        n = fem.Function(V, name="c_axis")
        tags = self.sub_cell_tags
        dofs = V.dofmap.list[tags.indices, 0]
        a = self.axes[tags.values - 1]
        a = a / np.linalg.norm(a, axis=1)[:, None]
        arr = n.x.array.reshape(-1, self.gdim)
        arr[dofs] = a[:, : self.gdim]
        n.x.scatter_forward()
        return n

    def grain_field(self) -> fem.Function:
        """Grain id as a DG0 field on the particle submesh."""
        V = fem.functionspace(self.submesh, ("DG", 0))
        g = fem.Function(V, name="grain")
        tags = self.sub_cell_tags
        g.x.array[V.dofmap.list[tags.indices, 0]] = tags.values
        g.x.scatter_forward()
        return g

    def dx_parent(self, degree: int | None = None) -> ufl.Measure:
        """dx on the parent mesh with region tags (PARTICLE_REGION, BINDER_REGION)."""
        md = {"quadrature_degree": degree} if degree is not None else {}
        return ufl.Measure("dx", domain=self.mesh, subdomain_data=self.region_tags, metadata=md)

    def dx_sub(self, degree: int | None = None) -> ufl.Measure:
        """dx on the particle submesh."""
        md = {"quadrature_degree": degree} if degree is not None else {}
        return ufl.Measure("dx", domain=self.submesh, metadata=md)

    def gb_facets(self) -> np.ndarray:
        """Local grain-boundary facets of the submesh."""
        return self.sub_facet_tags.find(GB)

    def interface_facets(self) -> np.ndarray:
        """Local particle-binder interface facets of the submesh."""
        return self.sub_facet_tags.find(INTERFACE)


# ---------------------------------------------------------------------------------------------
# Strain laws in UFL
# ---------------------------------------------------------------------------------------------


def _hinge_coefficients(xk: np.ndarray, fk: np.ndarray) -> tuple[float, np.ndarray]:
    """f(x) = f0 + sum_k c_k max(x - x_k, 0): linear interpolation, constant outside the knots."""
    slopes = np.diff(fk) / np.diff(xk)
    s = np.concatenate([[0.0], slopes, [0.0]])
    return float(fk[0]), np.diff(s)


class StrainLawUFL:
    """eps_a(x), eps_c(x) of a :class:`solver.materials.LatticeStrains` as UFL expressions.

    ``interpolation='linear'``: the table's linear interpolation reproduced exactly (79
    segments), constant outside the data as in the table class. ``'pchip'``: the PCHIP curve
    sampled on ``pchip_knots`` uniform knots and linearly interpolated (max deviation from the
    PCHIP curve 2.5e-5 for 321 knots, below the table's precision; see :meth:`max_deviation`).
    The 'normalised' and 'anchors' mappings are affine in x and applied first. Strains are
    dimensionless.

    ``ufl_form``: how the piecewise-linear law is written in UFL. ``'lookup'`` (default): a
    binary search, nested ``conditional(x < x_m, ...)`` to depth ceil(log2(segments + 2)), whose
    leaf is the one segment's ``f_k + s_k (x - x_k)``; its x-derivative is that segment's slope
    ``s_k``. ``'hinges'``: ``f_0 + sum_k c_k max(x - x_k, 0)`` (one ``max`` per knot, the form
    before issue 26; kept for comparison). Both give the table's interpolation to rounding
    (1e-15), and the same slopes away from the knots. Measured on the demo mesh and refined
    once (1 rank), the coupled Jacobian assembly is 12 % and the residual assembly 26 % cheaper
    with ``'lookup'`` (``benchmarks/perf/strain_law_forms.py``).
    """

    def __init__(
        self, lattice: mat.LatticeStrains, pchip_knots: int = 321, ufl_form: str = "lookup"
    ):
        if ufl_form not in ("lookup", "hinges"):
            raise ValueError(f"ufl_form must be 'lookup' or 'hinges', not {ufl_form!r}")
        self.ufl_form = ufl_form
        self.lattice = lattice
        if lattice.interpolation == "linear":
            xk = lattice.x_data
            fa, fc = lattice.eps_a_data, lattice.eps_c_data
        else:
            xk = np.linspace(lattice.x_data[0], lattice.x_data[-1], pchip_knots)
            fa = lattice._interp[0](xk)
            fc = lattice._interp[1](xk)
        self.knots = np.asarray(xk, dtype=float)
        self._values = {"a": np.asarray(fa, dtype=float), "c": np.asarray(fc, dtype=float)}
        self._a = _hinge_coefficients(self.knots, self._values["a"])
        self._c = _hinge_coefficients(self.knots, self._values["c"])
        if lattice.mapping == "direct":
            self._affine = (0.0, 1.0)
        elif lattice.mapping == "anchors":
            self._affine = lattice.affine
        else:
            s_scale = 1.0 / (lattice.x0 - lattice.model_x_end)
            span = lattice.data_x_start - lattice.data_x_end
            # x_data = x_start - (x0 - x) s_scale span
            self._affine = (lattice.data_x_start - lattice.x0 * s_scale * span, s_scale * span)

    def _data_x(self, x):
        a, b = self._affine
        return x if (a, b) == (0.0, 1.0) else a + b * x

    def _hinges(self, coef, x, use_ufl: bool):
        f0, c = coef
        xd = self._data_x(x)
        out = f0
        for xk, ck in zip(self.knots, c, strict=True):
            if ck == 0.0:
                continue
            if use_ufl:
                out = out + float(ck) * ufl.max_value(xd - float(xk), 0.0)
            else:
                out = out + ck * np.maximum(xd - xk, 0.0)
        return out

    def _lookup(self, fk: np.ndarray, x):
        """The linear interpolation of (knots, fk) at x, constant outside, as a binary search
        of nested UFL conditionals (see the class docstring)."""
        xk = self.knots
        slopes = np.diff(fk) / np.diff(xk)
        xd = self._data_x(x)

        def leaf(k: int):
            if k < 0:
                return float(fk[0])
            if k >= len(slopes):
                return float(fk[-1])
            return float(fk[k]) + float(slopes[k]) * (xd - float(xk[k]))

        def search(lo: int, hi: int):
            # segments lo .. hi - 1; segment -1 is x < x_0, segment len(slopes) is x >= x_n
            if hi - lo == 1:
                return leaf(lo)
            m = (lo + hi) // 2
            return ufl.conditional(ufl.lt(xd, float(xk[m])), search(lo, m), search(m, hi))

        return search(-1, len(slopes) + 1)

    def _lookup_number(self, fk: np.ndarray, x: float) -> float:
        """:meth:`_lookup` at a number, with the same leaf arithmetic."""
        xk = self.knots
        a, b = self._affine
        xd = x if (a, b) == (0.0, 1.0) else a + b * x
        if xd < xk[0]:
            return float(fk[0])
        k = int(np.searchsorted(xk, xd, side="right")) - 1
        if k >= len(xk) - 1:
            return float(fk[-1])
        slope = (fk[k + 1] - fk[k]) / (xk[k + 1] - xk[k])
        return float(fk[k] + slope * (xd - xk[k]))

    def _ufl(self, which: str, x):
        if isinstance(x, int | float):  # a number (e.g. the reference x0): a number
            if self.ufl_form == "hinges":
                return float((self.eps_a_np if which == "a" else self.eps_c_np)(x))
            return self._lookup_number(self._values[which], float(x))
        if self.ufl_form == "hinges":
            return self._hinges(self._a if which == "a" else self._c, x, True)
        return self._lookup(self._values[which], x)

    def eps_a(self, x):
        """a-axis strain (UFL expression of x; a float for a number x)."""
        return self._ufl("a", x)

    def eps_c(self, x):
        """c-axis strain (UFL expression of x; a float for a number x)."""
        return self._ufl("c", x)

    def eps_a_np(self, x):
        """The same hinge sum in NumPy (for tests)."""
        return self._hinges(self._a, np.asarray(x, dtype=float), False)

    def eps_c_np(self, x):
        """The same hinge sum in NumPy (for tests)."""
        return self._hinges(self._c, np.asarray(x, dtype=float), False)

    def max_deviation(self, n: int = 20001) -> float:
        """max |hinge law - table law| over x in [0, 1] for eps_a and eps_c."""
        x = np.linspace(0.0, 1.0, n)
        da = np.abs(self.eps_a_np(x) - self.lattice.eps_a(x)).max()
        dc = np.abs(self.eps_c_np(x) - self.lattice.eps_c(x)).max()
        return float(max(da, dc))


class UniformStrainLaw:
    """eps_a, eps_c of a *uniform* Li fraction as two Constants (quasi-static mode).

    ``eps_a(x)``/``eps_c(x)`` of a UFL argument return the Constants, whose values
    :meth:`set` computes from ``law``'s NumPy form at the current x; of a number they return
    ``law``'s value (the reference x0 of :func:`eigenstrain`). The weak forms then carry two
    numbers instead of ``law``'s hinge sums at every quadrature point (for the demo: residual
    assembly 4x, Jacobian assembly 1.2x faster) with the same strains.

    Args:
        law: a law with ``eps_a_np``/``eps_c_np`` (:class:`StrainLawUFL`).
        mesh: mesh of the Constants (the particle submesh).
        x: initial Li fraction.
    """

    def __init__(self, law: StrainLawUFL, mesh: dmesh.Mesh, x: float):
        self.law = law
        self._a = fem.Constant(mesh, np.float64(0.0))
        self._c = fem.Constant(mesh, np.float64(0.0))
        self.set(x)

    def set(self, x: float) -> None:
        """The strains of Li fraction ``x`` (a number)."""
        self._a.value = float(self.law.eps_a_np(x))
        self._c.value = float(self.law.eps_c_np(x))

    def eps_a(self, x):
        return float(self.law.eps_a_np(x)) if isinstance(x, int | float) else self._a

    def eps_c(self, x):
        return float(self.law.eps_c_np(x)) if isinstance(x, int | float) else self._c


class LinearStrainLaw:
    """eps_a = a0 + a1 x, eps_c = c0 + c1 x (verification cases with a chosen eigenstrain)."""

    def __init__(self, a0: float = 0.0, a1: float = 0.0, c0: float = 0.0, c1: float = 0.0):
        self.a0, self.a1, self.c0, self.c1 = a0, a1, c0, c1

    def eps_a(self, x):
        return self.a0 + self.a1 * x

    def eps_c(self, x):
        return self.c0 + self.c1 * x


# ---------------------------------------------------------------------------------------------
# Constitutive law
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ElasticModuli:
    """Isotropic moduli in GPa."""

    E: float
    nu: float

    @property
    def lame(self) -> tuple[float, float]:
        return mat.lame_GPa(self.E, self.nu)

    @property
    def bulk(self) -> float:
        return mat.bulk_shear(self.E, self.nu)[0]

    @property
    def shear(self) -> float:
        return mat.bulk_shear(self.E, self.nu)[1]


def strain(u):
    """Small strain sym(grad u) (dimensionless)."""
    return ufl.sym(ufl.grad(u))


def eigenstrain(x, n, law, x0: float, gdim: int = 3):
    """eps* = [eps_a(x) - eps_a(x0)] I + [deps(x) - deps(x0)] n (x) n, deps = eps_c - eps_a."""
    ea = law.eps_a(x) - law.eps_a(x0)
    dd = (law.eps_c(x) - law.eps_a(x)) - (law.eps_c(x0) - law.eps_a(x0))
    return ea * ufl.Identity(gdim) + dd * ufl.outer(n, n)


SPLIT_SMOOTHING = 1e-6  # strain width of the smoothed <s>+- in the voldev/spectral splits


def _pos(s, delta: float = 0.0):
    """<s>+ ; with delta > 0 the C-infinity version (s + sqrt(s^2 + delta^2))/2."""
    if delta > 0.0:
        return 0.5 * (s + ufl.sqrt(s * s + delta * delta))
    return 0.5 * (s + abs(s))


def _neg(s, delta: float = 0.0):
    """<s>- = s - <s>+ (same smoothing)."""
    if delta > 0.0:
        return 0.5 * (s - ufl.sqrt(s * s + delta * delta))
    return 0.5 * (s - abs(s))


def principal_values(A, delta: float = 1e-10, eta: float = 1e-10):
    """Eigenvalues (l1 >= l2 >= l3) of a symmetric 3x3 UFL tensor, closed form (Smith 1961).

    With m = tr A / 3, D = A - m I, J2 = tr(D D)/2, J3 = det D, s = sqrt(J2/3 + delta^2),
    r = J3 / (2 s^3) clipped to [-1 + eta, 1 - eta] and theta = acos(r)/3:
    l1 = m + 2 s cos(theta), l3 = m + 2 s cos(theta + 2 pi/3), l2 = 3 m - l1 - l3.
    ``delta`` (units of A) keeps the derivative finite at J2 = 0 and perturbs the eigenvalues by at
    most 2 delta; the clip makes d theta/dA vanish at exactly repeated eigenvalues, where the
    chain rule then still gives the correct symmetric derivative.
    """
    dim = A.ufl_shape[0]
    if dim != 3:
        raise ValueError("principal_values needs a 3x3 tensor")
    m = ufl.tr(A) / 3.0
    D = A - m * ufl.Identity(3)
    J2 = 0.5 * ufl.inner(D, D)
    J3 = ufl.det(D)
    s = ufl.sqrt(J2 / 3.0 + delta**2)
    r = J3 / (2.0 * s**3)
    r = ufl.max_value(ufl.min_value(r, 1.0 - eta), -1.0 + eta)
    theta = ufl.acos(r) / 3.0
    l1 = m + 2.0 * s * ufl.cos(theta)
    l3 = m + 2.0 * s * ufl.cos(theta + 2.0 * np.pi / 3.0)
    l2 = 3.0 * m - l1 - l3
    return l1, l2, l3


def strain_energy_split(e, lmbda: float, mu: float, split: str, delta: float | None = None):
    """(psi+, psi-) of the elastic strain e in GPa (energy per µm^3 = GJ/m^3).

    none: psi+ = psi0; voldev (Amor 2009): psi+ = K/2 <tr e>+^2 + mu e_d:e_d;
    spectral and hybrid (Miehe 2010): psi+ = lambda/2 <tr e>+^2 + mu sum <e_i>+^2.
    For voldev and spectral, <.>+- are smoothed over a strain width ``delta`` (default
    SPLIT_SMOOTHING = 1e-6): the energy becomes C2, so Newton does not cycle at the kink (e.g. the
    lateral strain of a damaged bar in uniaxial stress tends to 0-); psi+ + psi- = psi0 +
    O(mu delta^2) and the stress changes by O(mu delta) ~ 1e-4 GPa at most.
    """
    if delta is None:
        delta = SPLIT_SMOOTHING
    tr = ufl.tr(e)
    gdim = e.ufl_shape[0]
    psi0 = 0.5 * lmbda * tr**2 + mu * ufl.inner(e, e)
    if split == "none":
        return psi0, 0.0 * psi0
    if split == "voldev":
        K = lmbda + 2.0 * mu / gdim
        ed = ufl.dev(e)
        pp = 0.5 * K * _pos(tr, delta) ** 2 + mu * ufl.inner(ed, ed)
        return pp, 0.5 * K * _neg(tr, delta) ** 2
    if split in ("spectral", "hybrid"):
        ls = principal_values(e)
        d = delta if split == "spectral" else 0.0  # hybrid: psi+ only drives H, no Newton kink
        pp = 0.5 * lmbda * _pos(tr, d) ** 2 + mu * sum(_pos(li, d) ** 2 for li in ls)
        pm = 0.5 * lmbda * _neg(tr, d) ** 2 + mu * sum(_neg(li, d) ** 2 for li in ls)
        return pp, pm
    raise ValueError(f"unknown energy split {split!r} (allowed: {', '.join(SPLITS)})")


def degradation(phi, k: float):
    """g(phi) + k = (1 - phi)^2 + k."""
    return (1.0 - phi) ** 2 + k


def stress(e, lmbda: float, mu: float, split: str = "none", phi=None, k: float = 1e-7):
    """Cauchy stress (GPa) of the elastic strain e with damage phi (None: undamaged).

    none/hybrid: (g + k) C:e; voldev/spectral: (g + k) d psi+/de + d psi-/de.
    """
    gdim = e.ufl_shape[0]
    sig0 = lmbda * ufl.tr(e) * ufl.Identity(gdim) + 2.0 * mu * e
    if phi is None:
        return sig0
    g = degradation(phi, k)
    if split in ("none", "hybrid"):
        return g * sig0
    if split in ("voldev", "spectral"):
        ev = ufl.variable(e)
        pp, pm = strain_energy_split(ev, lmbda, mu, split)
        return g * ufl.diff(pp, ev) + ufl.diff(pm, ev)
    raise ValueError(f"unknown energy split {split!r} (allowed: {', '.join(SPLITS)})")


# ---------------------------------------------------------------------------------------------
# Residual and boundary conditions
# ---------------------------------------------------------------------------------------------


@dataclass
class MechanicsModel:
    """Everything F_u needs besides the unknowns: moduli (GPa), strain law, x0, split, k."""

    particle: ElasticModuli
    binder: ElasticModuli
    law: Any
    x0: float
    split: str = "hybrid"
    k_residual: float = 1e-7
    #: a scalar UFL field on the particle multiplying the eigenstrain (None: 1), e.g. the
    #: grain-boundary weight of polycrack.physics.mechanisms (set by :func:`build_blocks`)
    eigenstrain_weight: Any = None

    @classmethod
    def from_params(cls, params, lattice_table_path, split: str | None = None) -> MechanicsModel:
        """From a resolved :class:`solver.config.Parameters` (SI -> GPa)."""
        m, f = params.mechanics, params.fracture
        lat = mat.LatticeStrains.from_params(params, lattice_table_path)
        return cls(
            ElasticModuli(units.stress(m.E_particle_Pa), m.nu_particle),
            ElasticModuli(units.stress(m.E_binder_Pa), m.nu_binder),
            StrainLawUFL(lat),
            params.electrochemistry.x0,
            split or f.split,
            f.k_residual,
        )

    def elastic_strain(self, u, x, n):
        """eps(u) - w eps*(x, n) in a grain (w = :attr:`eigenstrain_weight`, default 1)."""
        es = eigenstrain(x, n, self.law, self.x0, u.ufl_shape[0])
        if self.eigenstrain_weight is not None:
            es = self.eigenstrain_weight * es
        return strain(u) - es

    def particle_stress(self, u, x, n, phi=None):
        """Stress in the grains (GPa)."""
        lm, mu = self.particle.lame
        return stress(self.elastic_strain(u, x, n), lm, mu, self.split, phi, self.k_residual)

    def binder_stress(self, u):
        """Stress in the binder (GPa), elastic and undamaged."""
        lm, mu = self.binder.lame
        return stress(strain(u), lm, mu)

    def psi_plus(self, u, x, n):
        """Crack-driving energy density psi0+ of the grains (GPa)."""
        lm, mu = self.particle.lame
        return strain_energy_split(self.elastic_strain(u, x, n), lm, mu, self.split)[0]


def displacement_residual(
    model: MechanicsModel,
    dom: ParticleDomain,
    u: fem.Function,
    v,
    x,
    n,
    phi=None,
    quadrature_degree: int | None = None,
):
    """F_u on the parent mesh: int sigma_p : eps(v) dx(particle) + int sigma_b : eps(v) dx(binder).

    ``x``, ``phi`` and ``n`` live on the particle submesh; pass ``entity_maps=[dom.entity_map]``
    when compiling. ``x`` may also be a UFL expression/Constant.
    """
    if quadrature_degree is None:
        quadrature_degree = 2 if u.function_space.element.basix_element.degree == 1 else 4
    dx = dom.dx_parent(quadrature_degree)
    F = ufl.inner(model.particle_stress(u, x, n, phi), strain(v)) * dx(PARTICLE_REGION)
    if dom.has_binder:
        F += ufl.inner(model.binder_stress(u), strain(v)) * dx(BINDER_REGION)
    return F


def _global_pick(comm, coords: np.ndarray, score: np.ndarray) -> np.ndarray:
    """The coordinate with the smallest score over all ranks (ties: lowest rank)."""
    if len(score):
        i = int(np.argmin(score))
        best = (float(score[i]), comm.rank)
        pt = coords[i]
    else:
        best = (np.inf, comm.rank)
        pt = np.zeros(3)
    allb = comm.allgather(best)
    owner = min(range(len(allb)), key=lambda r: allb[r])
    return comm.bcast(pt, root=owner)


def rigid_body_constraints(V: fem.FunctionSpace, center: np.ndarray) -> list[fem.DirichletBC]:
    """3-2-1 support removing the rigid modes of a traction-free body.

    Node A (nearest ``center``) fixed in x, y, z; node B (largest x) fixed in y, z; node C
    (largest y) fixed in z. Statically determinate: a self-equilibrated load gives no reactions.
    """
    msh = V.mesh
    comm = msh.comm
    gdim = msh.geometry.dim
    Vs, _ = V.sub(0).collapse()
    X = Vs.tabulate_dof_coordinates()
    nown = Vs.dofmap.index_map.size_local
    Xo = X[:nown]
    A = _global_pick(comm, Xo, np.linalg.norm(Xo - center, axis=1))
    B = _global_pick(comm, Xo, -Xo[:, 0])
    C = _global_pick(comm, Xo, -Xo[:, 1])
    scale = float(np.ptp(msh.geometry.x[:, :gdim], axis=0).max()) if len(msh.geometry.x) else 1.0
    scale = comm.allreduce(scale, op=MPI.MAX)
    tol = 1e-10 * scale
    bcs = []
    for point, comps in ((A, range(gdim)), (B, range(1, gdim)), (C, range(2, gdim))):
        for i in comps:
            Vi, _ = V.sub(i).collapse()
            dofs = fem.locate_dofs_geometrical(
                (V.sub(i), Vi),
                lambda xx, p=point: np.linalg.norm(xx[:gdim].T - p[:gdim], axis=1) < tol,
            )
            bcs.append(fem.dirichletbc(np.float64(0.0), dofs[0], V.sub(i)))
    return bcs


def displacement_bcs(
    V: fem.FunctionSpace, dom: ParticleDomain, outer_boundary: str = "clamped"
) -> list[fem.DirichletBC]:
    """'clamped': u = 0 on the OUTER facets; 'traction_free': 3-2-1 rigid-mode support."""
    if outer_boundary == "clamped":
        fdim = dom.mesh.topology.dim - 1
        facets = dom.facet_tags.find(OUTER)
        if dom.mesh.comm.allreduce(len(facets), op=MPI.SUM) == 0:
            raise ValueError("outer_boundary 'clamped' needs OUTER facets (tag 3) in the mesh")
        dofs = fem.locate_dofs_topological(V, fdim, facets)
        zero = np.zeros(dom.gdim, dtype=np.float64)
        return [fem.dirichletbc(zero, dofs, V)]
    if outer_boundary == "traction_free":
        return rigid_body_constraints(V, dom.center)
    raise ValueError(f"outer_boundary must be 'clamped' or 'traction_free', not {outer_boundary!r}")


def make_displacement_space(dom: ParticleDomain, degree: int = 1) -> fem.FunctionSpace:
    """Vector Lagrange space of ``degree`` on the parent mesh."""
    return fem.functionspace(dom.mesh, ("Lagrange", degree, (dom.gdim,)))


def uniform_x(dom: ParticleDomain, value: float | Callable[[np.ndarray], np.ndarray]):
    """A P1 Li-fraction field on the submesh: a constant, or a function of coordinates (3, n)."""
    X = fem.functionspace(dom.submesh, ("Lagrange", 1))
    x = fem.Function(X, name="x")
    if callable(value):
        x.interpolate(value)
    else:
        x.x.array[:] = value
    return x


# ---------------------------------------------------------------------------------------------
# Everything the coupled solver needs, in one call
# ---------------------------------------------------------------------------------------------


@dataclass
class MechanicsFractureBlocks:
    """Fields, residuals and BCs of mechanics (+ fracture) for a given Li field ``x``.

    ``F_u`` (parent mesh, test function of ``V``) and ``F_phi`` (submesh) are UFL forms; compile
    them with ``entity_maps=[dom.entity_map]``, e.g. in
    ``NonlinearProblem([F_u, F_x, F_phi, F_V], [u, x, phi, V], kind="mpi", ...)``. ``psi_plus``
    is the crack-driving energy (mixed-mesh UFL); after each converged step call
    ``history.update(psi_plus, [dom.entity_map])``. ``F_phi`` uses the implicit driving force
    max(H, psi+(u, x)), so the phi-u Jacobian block is non-zero. ``gamma``, ``Gc`` and ``n`` are
    fixed per mesh. Units: µm, GPa, Gc in GPa µm.
    """

    V: fem.FunctionSpace
    u: fem.Function
    phi: fem.Function | None
    n: fem.Function
    F_u: Any
    F_phi: Any
    psi_plus: Any
    bcs: list
    gamma: fem.Function | None
    Gc: Any
    history: Any
    #: last accepted phi when the phase field is viscous (``relaxation``), else None
    phi_n: fem.Function | None = None


def build_blocks(
    dom: ParticleDomain,
    model: MechanicsModel,
    x,
    fracture: dict | None,
    degree: int = 1,
    outer_boundary: str = "clamped",
    bcs_factory: Callable | None = None,
    gamma: fem.Function | None = None,
    gamma_prefix: str = "gamma_",
    relaxation: tuple[float, Any] | None = None,
    gb_eigenstrain: bool = False,
    toughness_factor: Any = None,
) -> MechanicsFractureBlocks:
    """Build u, phi, residuals, BCs, gamma, Gc(gamma) and the history field.

    ``x``: the Li fraction on the particle submesh (a P1 Function, or any UFL expression on it).
    ``fracture``: None (mechanics only) or a dict with Gc_bulk, Gc_gb (GPa µm), l, l_gamma (µm),
    e.g. :func:`solver.fracture.fracture_constants`; gamma is solved here unless given.
    ``relaxation = (tau_s, dt)``: a viscous phase field with relaxation time tau (s) and the step
    dt (s, a Constant on the submesh); ``phi_n`` must then be set to phi after every accepted step.
    ``gb_eigenstrain``: scale the eigenstrain by 1 - h(gamma) (``model.eigenstrain_weight``; needs
    ``fracture``); ``toughness_factor``: a scalar UFL field on the submesh multiplying Gc(gamma),
    e.g. Gc(x)/Gc(x0) (polycrack.physics.mechanisms, docs/model.md section 3.10).
    """
    from .fracture import HistoryField, phase_field_residual, solve_gamma, toughness

    sm = dom.submesh
    if gb_eigenstrain:
        from .mechanisms import gb_eigenstrain_weight

        if fracture is None:
            raise ValueError("the grain-boundary eigenstrain weight needs the fracture model")
        if gamma is None:
            gamma = solve_gamma(sm, dom.gb_facets(), fracture["l_gamma"], prefix=gamma_prefix)
        model.eigenstrain_weight = gb_eigenstrain_weight(gamma)
    n = dom.axis_field()
    V = make_displacement_space(dom, degree)
    u = fem.Function(V, name="u")
    bcs = bcs_factory(V) if bcs_factory else displacement_bcs(V, dom, outer_boundary)
    psi_plus = model.psi_plus(u, x, n)
    if fracture is None:
        F_u = displacement_residual(model, dom, u, ufl.TestFunction(V), x, n, None)
        return MechanicsFractureBlocks(V, u, None, n, F_u, None, psi_plus, bcs, None, None, None)
    phi = fem.Function(fem.functionspace(sm, ("Lagrange", 1)), name="phi")
    F_u = displacement_residual(model, dom, u, ufl.TestFunction(V), x, n, phi)
    if gamma is None:
        gamma = solve_gamma(sm, dom.gb_facets(), fracture["l_gamma"], prefix=gamma_prefix)
    history = HistoryField(sm, degree=2)
    Gc = toughness(gamma, fracture["Gc_bulk"], fracture["Gc_gb"])
    if toughness_factor is not None:
        Gc = Gc * toughness_factor
    drive = ufl.max_value(history.H, psi_plus)
    dxq = ufl.dx(domain=sm, metadata={"quadrature_degree": 2})
    phi_n, viscous = None, None
    if relaxation is not None and relaxation[0] > 0.0:
        phi_n = fem.Function(phi.function_space, name="phi_n")
        viscous = (phi_n, float(relaxation[0]) / relaxation[1])
    F_phi = phase_field_residual(
        phi, ufl.TestFunction(phi.function_space), drive, Gc, fracture["l"], dxq, viscous
    )
    return MechanicsFractureBlocks(
        V, u, phi, n, F_u, F_phi, psi_plus, bcs, gamma, Gc, history, phi_n
    )
