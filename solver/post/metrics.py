"""Post-processing on any state: max principal stress, damaged volume, crack area, GB share, radial damage.

Units: stresses in GPa internally (``sigma1_max_Pa`` converted), lengths in µm. Every number
returned is a global (MPI-summed) value, identical on all ranks.
"""

from __future__ import annotations

import dolfinx_solver  # noqa: F401
import numpy as np
import ufl
from dolfinx import fem
from mpi4py import MPI

from .. import units
from ..physics.fracture import crack_surface_density, gb_indicator
from ..physics.mechanics import ParticleDomain, principal_values

__all__ = [
    "DamageMetrics",
    "RADIAL_SHELLS",
    "average_tensor",
    "cell_radius_and_volume",
    "gb_cell_mask",
    "principal_stress_field",
    "radial_cell_stats",
]

RADIAL_SHELLS = (0.0, 0.25, 0.5, 0.75, 1.0)


def _global(comm, form) -> float:
    return comm.allreduce(fem.assemble_scalar(form), op=MPI.SUM)


def principal_stress_field(dom: ParticleDomain, sigma, name: str = "sigma1") -> fem.Function:
    """sigma1 (largest principal stress, GPa) of a 3x3 UFL stress as DG0 on the particle submesh.

    ``sigma`` may mix parent-mesh u with submesh x/phi; evaluated with ``Expression.eval`` at the
    cell midpoints (interpolating a mixed-mesh expression fails in DOLFINx 0.11).
    """
    sm = dom.submesh
    V = fem.functionspace(sm, ("DG", 0))
    f = fem.Function(V, name=name)
    s1 = principal_values(sigma, delta=1e-12)[0]
    expr = fem.Expression(
        s1, V.element.interpolation_points, comm=sm.comm, entity_maps=[dom.entity_map]
    )
    tdim = sm.topology.dim
    imap = sm.topology.index_map(tdim)
    cells = np.arange(imap.size_local + imap.num_ghosts, dtype=np.int32)
    vals = expr.eval(sm, cells)
    f.x.array[V.dofmap.list[cells, 0]] = vals.reshape(-1)
    return f


def field_max(f: fem.Function) -> float:
    """Global max over owned dofs."""
    n = f.function_space.dofmap.index_map.size_local * f.function_space.dofmap.index_map_bs
    loc = float(f.x.array[:n].max()) if n else -np.inf
    return f.function_space.mesh.comm.allreduce(loc, op=MPI.MAX)


def average_tensor(expr, dx, comm, entity_maps=None, weight=None) -> np.ndarray:
    """Volume average of a 3x3 UFL tensor over the measure ``dx`` (optionally weighted)."""
    w = 1.0 if weight is None else weight
    vol = _global(comm, fem.form(w * dx, entity_maps=entity_maps))
    shape = expr.ufl_shape
    out = np.zeros(shape)
    for i in range(shape[0]):
        for j in range(shape[1]):
            out[i, j] = _global(comm, fem.form(w * expr[i, j] * dx, entity_maps=entity_maps))
    return out / vol


class DamageMetrics:
    """Damaged volume fraction (phi >= threshold), crack area Γ_l, their GB shares, radial shells.

    Indicators are integrated at the quadrature points of a degree-``degree`` rule on the
    particle submesh (degree 2: 4 interior points per tet; basix degree-4 rules have points on
    edges, where a threshold indicator is biased). Shells are r/R_p in ``shells`` (the last one open-ended, for non-spherical
    particles), with r measured from ``dom.center`` and R_p = ``dom.radius_um``.

    With the phase-field length ``l`` (µm) it also reports the AT2 crack area
    Γ_l = int phi^2/(2l) + (l/2)|grad phi|^2 dV (µm², exact for P1 phi with the degree-2 rule), the
    share of Γ_l whose density sits where h = (1 - gamma)^2 >= ``h_threshold`` (the indicator of
    ``damage_gb_share``, at the same quadrature points) and Γ_l per shell. All forms are compiled
    here once; :meth:`compute` only assembles (collective).
    """

    def __init__(
        self,
        dom: ParticleDomain,
        phi: fem.Function,
        gamma: fem.Function | None,
        threshold: float = 0.95,
        h_threshold: float = 0.5,
        shells: tuple[float, ...] = RADIAL_SHELLS,
        degree: int = 2,
        l: float | None = None,
    ):
        self.dom = dom
        self.phi = phi
        sm = dom.submesh
        dx = ufl.dx(domain=sm, metadata={"quadrature_degree": degree})
        dmg = ufl.conditional(ufl.ge(phi, threshold), 1.0, 0.0)
        one = fem.Constant(sm, 1.0)
        self.f_vol = fem.form(one * dx)
        self.f_dmg = fem.form(dmg * dx)
        crack = crack_surface_density(phi, l) if l is not None else None
        self.f_crack = fem.form(crack * dx) if crack is not None else None
        self.f_crack_gb = None
        if gamma is not None:
            on_gb = ufl.conditional(ufl.ge(gb_indicator(gamma), h_threshold), 1.0, 0.0)
            self.f_gb_zone = fem.form(on_gb * dx)
            self.f_gb = fem.form(dmg * on_gb * dx)
            self.f_phi_gb = fem.form(phi * on_gb * dx)
            if crack is not None:
                self.f_crack_gb = fem.form(crack * on_gb * dx)
        else:
            self.f_gb = None
        self.f_phi = fem.form(phi * dx)
        X = ufl.SpatialCoordinate(sm)
        c = ufl.as_vector([float(ci) for ci in dom.center[: sm.geometry.dim]])
        rr = ufl.sqrt(ufl.inner(X - c, X - c)) / dom.radius_um
        self.shells = tuple(shells)
        self.f_shell, self.f_shell_dmg, self.f_shell_crack = [], [], []
        for k in range(len(shells) - 1):
            lo, hi = shells[k], shells[k + 1]
            ind = ufl.conditional(ufl.ge(rr, lo), 1.0, 0.0)
            if k < len(shells) - 2:
                ind = ind * ufl.conditional(ufl.lt(rr, hi), 1.0, 0.0)
            self.f_shell.append(fem.form(ind * dx))
            self.f_shell_dmg.append(fem.form(ind * dmg * dx))
            if crack is not None:
                self.f_shell_crack.append(fem.form(ind * crack * dx))
        self.volume = _global(sm.comm, self.f_vol)
        #: volume share of the grain-boundary zone h = (1 - gamma)^2 >= h_threshold, the
        #: denominator of the GB enrichment damage_gb_share / gb_zone_fraction (NaN without gamma)
        self.gb_zone_fraction = (
            _global(sm.comm, self.f_gb_zone) / self.volume if gamma is not None else float("nan")
        )
        self.shell_volumes = [_global(sm.comm, f) for f in self.f_shell]

    def compute(self) -> dict:
        """damage_fraction, damage_gb_share, phi_max, phi_mean, damage_gb_share_phi_weighted
        (int phi [h >= 0.5] / int phi, defined before any phi >= 0.95), radial_damage_fraction (per
        shell volume), radial_damage_share (per total damaged volume); with ``l``: crack_area_um2
        (Γ_l, µm²), crack_area_gb_share (int [h >= 0.5] Γ_l density / Γ_l; NaN without gamma or when
        Γ_l = 0) and radial_crack_area_um2 (Γ_l per shell, summing to Γ_l)."""
        comm = self.dom.submesh.comm
        vd = _global(comm, self.f_dmg)
        vgb = _global(comm, self.f_gb) if self.f_gb is not None else 0.0
        shell_d = [_global(comm, f) for f in self.f_shell_dmg]
        vphi = _global(comm, self.f_phi)
        vphi_gb = _global(comm, self.f_phi_gb) if self.f_gb is not None else 0.0
        crack = {}
        if self.f_crack is not None:
            area = _global(comm, self.f_crack)
            area_gb = _global(comm, self.f_crack_gb) if self.f_crack_gb is not None else np.nan
            crack = {
                "crack_area_um2": area,
                "crack_area_gb_share": (area_gb / area) if area > 0 else float("nan"),
                "radial_crack_area_um2": [_global(comm, f) for f in self.f_shell_crack],
            }
        return {
            "damage_fraction": vd / self.volume,
            "damage_gb_share": (vgb / vd) if vd > 0 else float("nan"),
            "phi_max": field_max(self.phi),
            "damage_gb_share_phi_weighted": (vphi_gb / vphi) if vphi > 0 else float("nan"),
            "phi_mean": vphi / self.volume,
            "radial_damage_fraction": [
                d / v if v > 0 else 0.0 for d, v in zip(shell_d, self.shell_volumes, strict=True)
            ],
            "radial_damage_share": [d / vd if vd > 0 else 0.0 for d in shell_d],
            **crack,
        }


def sigma1_max_Pa(dom: ParticleDomain, sigma) -> float:
    """Global max of the cellwise sigma1 in Pa."""
    return units.STRESS_PA * field_max(principal_stress_field(dom, sigma))


def cell_radius_and_volume(dom: ParticleDomain) -> tuple[np.ndarray, np.ndarray]:
    """(r/R_p of the cell midpoints, cell volumes in µm^3) of the owned particle-submesh cells."""
    sm = dom.submesh
    V0 = fem.functionspace(sm, ("DG", 0))
    vol = fem.assemble_vector(fem.form(ufl.TestFunction(V0) * ufl.dx(domain=sm)))
    n = sm.topology.index_map(sm.topology.dim).size_local
    cells = np.arange(n, dtype=np.int32)
    from dolfinx.mesh import compute_midpoints

    mid = compute_midpoints(sm, sm.topology.dim, cells)
    c = np.asarray(dom.center, dtype=float)[: mid.shape[1]]
    r = np.linalg.norm(mid - c, axis=1) / dom.radius_um
    return r, np.asarray(vol.array[V0.dofmap.list[cells, 0]])


def gb_cell_mask(dom: ParticleDomain, gamma: fem.Function, h_threshold: float = 0.5) -> np.ndarray:
    """Owned particle cells whose midpoint has h = (1 - gamma)^2 >= h_threshold (on a GB)."""
    sm = dom.submesh
    V0 = fem.functionspace(sm, ("DG", 0))
    hf = fem.Function(V0)
    hf.interpolate(fem.Expression(gb_indicator(gamma), V0.element.interpolation_points))
    n = sm.topology.index_map(sm.topology.dim).size_local
    return hf.x.array[V0.dofmap.list[np.arange(n), 0]] >= h_threshold


def radial_cell_stats(
    values: np.ndarray,
    r: np.ndarray,
    vol: np.ndarray,
    comm: MPI.Comm,
    mask: np.ndarray | None = None,
    shells: tuple[float, ...] = RADIAL_SHELLS,
    thresholds: tuple[float, ...] = (),
) -> list[dict]:
    """Per radial shell r/R_p in ``shells`` (last shell open-ended): volume-weighted mean, max,
    99th percentile of cellwise ``values`` (owned cells; e.g. sigma1 in GPa) and the volume
    fraction of the shell with value >= each of ``thresholds``. ``mask`` restricts the cells (e.g.
    grain-boundary cells); the data are gathered on every rank (fine for post-processing sizes).
    """
    m = np.ones(len(values), bool) if mask is None else np.asarray(mask, bool)
    parts = comm.allgather((values[m], r[m], vol[m]))
    v = np.concatenate([p[0] for p in parts])
    rr = np.concatenate([p[1] for p in parts])
    w = np.concatenate([p[2] for p in parts])
    out = []
    for k in range(len(shells) - 1):
        lo, hi = shells[k], shells[k + 1]
        sel = (rr >= lo) & ((rr < hi) if k < len(shells) - 2 else True)
        row = {"shell": [lo, hi], "volume_um3": float(w[sel].sum()), "cells": int(sel.sum())}
        if sel.any():
            vs, ws = v[sel], w[sel]
            order = np.argsort(vs)
            cw = np.cumsum(ws[order]) / ws.sum()
            row.update(
                mean=float(np.dot(vs, ws) / ws.sum()),
                max=float(vs.max()),
                p99=float(vs[order][np.searchsorted(cw, 0.99)]),
            )
            for t in thresholds:
                row[f"fraction_ge_{t:g}"] = float(ws[vs >= t].sum() / ws.sum())
        out.append(row)
    return out
