"""Adaptive local mesh refinement for quasi-static fracture (issue #24, part 1). Units: µm, GPa.

A step of an adaptive run: :func:`mark_cells` (phase field above a threshold, the local AT2
solution of a predicted driving force above a threshold, a buffer of vertex neighbours, only
cells coarser than the target size) -> :func:`refine_domain` (Plaza refinement of the marked
cells' edges, cell and facet tags carried over through the parent maps, interface vertices pushed
onto r(d), the mesh ghosted with shared facets like the run mesh) -> :func:`transfer_p1` /
:func:`transfer_history` (fields onto the new mesh, in parallel; the partitions differ) -> redo the
load step. The driver that strings these together is the caller's (see
:mod:`polycrack.verification.adapt` for the bar case).

Choices (measured in :mod:`polycrack.verification.adapt` and benchmarks/README.md):

* cell size h: the mean of the six edge lengths of a tetrahedron (:func:`cell_size`); it is the
  gmsh target size of a gmsh mesh on average and halves under uniform refinement, like the
  nominal h = particle_size_um / 2^refine_levels of the resolution rule.
* ghosts: ``dolfinx.mesh.refine`` of the ghosted run mesh with ``partitioner=None`` gives an
  unghosted mesh whose cells stay on their parent's rank, with local parent cells and parent
  facets. ``transfer_meshtag`` refuses ghosted parents, so the tags are carried over here from
  the parent maps (:func:`_transfer_tags`), then the mesh is redistributed with shared-facet
  ghosts by the XDMF round trip of :func:`polycrack.physics.domain.reghost` (as the uniform
  refinement of ``load_bundle`` does).
* history H (quadrature points, never lowered): ``rule="parent_max"`` gives every new point the
  max of H over the 4 points of the old cell that contains it; ``rule="fit"`` the P1 fit of the
  parent's 4 values at the point, clipped to the parent's [min, max] (>= the parent's min only).
  The caller then raises H to psi+ of the transferred state if it wants.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import dolfinx_solver  # noqa: F401
import numpy as np
import ufl
from dolfinx import fem, la
from dolfinx import mesh as dmesh
from mpi4py import MPI

from ..meshing.tags import BINDER
from ..numerics.transfer import nonmatching, transfer
from .domain import Domain, push_to_surfaces, reghost
from .mechanics import ParticleDomain

__all__ = [
    "AdaptStats",
    "DamagePredictor",
    "cell_counts",
    "cell_size",
    "extrapolate_drive",
    "grow_marks",
    "local_damage",
    "mark_cells",
    "quadrature_values",
    "refine_domain",
    "refine_mesh",
    "sync_marks",
    "transfer_history",
    "transfer_p1",
]

_EDGES = ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))


@dataclass
class AdaptStats:
    """Global counts of one refinement (all ranks agree)."""

    marked_cells: int
    cells_before: int
    cells_after: int
    #: dolfinx.mesh.refine (s, max over ranks)
    refine_time_s: float
    #: tag transfer through the parent maps and surface push (s)
    tags_time_s: float
    #: the shared-facet redistribution (XDMF round trip) (s)
    reghost_time_s: float


def cell_counts(msh: dmesh.Mesh) -> tuple[int, int]:
    """(owned, owned + ghost) cells on this rank."""
    imap = msh.topology.index_map(msh.topology.dim)
    return imap.size_local, imap.size_local + imap.num_ghosts


def cell_size(msh: dmesh.Mesh, cells: np.ndarray | None = None) -> np.ndarray:
    """h of tetrahedra: the mean of their six edge lengths (µm).

    Args:
        msh: an affine tetrahedral mesh (µm).
        cells: local cell indices (default: all owned and ghost cells).

    Returns:
        h per cell (µm).
    """
    if cells is None:
        cells = np.arange(cell_counts(msh)[1], dtype=np.int32)
    X = msh.geometry.x[msh.geometry.dofmaps[0][cells]]
    return np.mean([np.linalg.norm(X[:, i] - X[:, j], axis=1) for i, j in _EDGES], axis=0)


def local_damage(drive: np.ndarray, Gc: np.ndarray | float, l: float) -> np.ndarray:
    """The homogeneous AT2 solution phi = 2 D l / (Gc + 2 D l) of a driving force D.

    Args:
        drive: driving force D (GPa), e.g. max(H, predicted psi+).
        Gc: toughness (GPa µm), same shape as ``drive`` or a scalar.
        l: phase-field length (µm).
    """
    twoDl = 2.0 * np.maximum(drive, 0.0) * l
    return twoDl / (Gc + twoDl)


def extrapolate_drive(psi_now: np.ndarray, psi_prev: np.ndarray, factor: float) -> np.ndarray:
    """Linear extrapolation psi_now + factor (psi_now - psi_prev), clipped at 0 (GPa).

    ``factor`` is (next step) / (last step) in the load parameter, e.g. dt_next / dt_last; for a
    load whose psi+ grows as the square of a load parameter s use :math:`(s_{n+1}/s_n)^2 psi_now`
    instead (``psi_prev = 0``, ``factor = (s_{n+1}/s_n)^2 - 1``).
    """
    return np.maximum(psi_now + factor * (psi_now - psi_prev), 0.0)


class DamagePredictor:
    """The AT2 phase field of a predicted driving force on the current mesh (collective).

    phi_D solves the phase-field equation of the run with the history H replaced by a predicted
    driving force D (at H's quadrature points) and without the viscosity,

        ∫ [(Gc/l + 2 D) phi q + Gc l ∇phi · ∇q] dx = ∫ 2 D q dx   for all q in P1,

    i.e. the damage the present mesh would settle to if the driving force were D everywhere.
    Unlike :func:`local_damage` (the same equation without the gradient term, pointwise) it
    knows that a drive confined to a region narrower than l cannot break it: a spike of D in
    one cell gives phi_D far below the local value, a drive that is wide compared with l gives
    the local value. Linear and symmetric positive definite: CG + GAMG, relative tolerance 1e-8.

    Args:
        history: the :class:`~polycrack.physics.fracture.HistoryField` (point layout, degree).
        V: the P1 phase-field space on the particle submesh.
        Gc: toughness (GPa µm): a number or a UFL field on the submesh (e.g. Gc(γ)).
        l: phase-field length (µm).
        prefix: PETSc options prefix.
    """

    def __init__(self, history, V: fem.FunctionSpace, Gc, l: float, prefix: str = "predict_"):
        from dolfinx.fem.petsc import LinearProblem

        self.D = fem.Function(history.Q, name="predicted_drive")
        self.phi = fem.Function(V, name="predicted_phi")
        dxq = ufl.dx(domain=history.mesh, metadata={"quadrature_degree": history.degree})
        p, q = ufl.TrialFunction(V), ufl.TestFunction(V)
        a = ((Gc / l + 2.0 * self.D) * p * q + Gc * l * ufl.inner(ufl.grad(p), ufl.grad(q))) * dxq
        opts = {"ksp_type": "cg", "pc_type": "gamg", "ksp_rtol": 1e-8, "ksp_atol": 1e-14}
        self._problem = LinearProblem(
            a, 2.0 * self.D * q * dxq, u=self.phi, petsc_options=opts, petsc_options_prefix=prefix
        )

    def __call__(self, drive: np.ndarray) -> fem.Function:
        """phi_D for the driving force ``drive`` (GPa, laid out like ``history.H.x.array``, owned
        and ghost points); the returned function is reused by the next call."""
        self.D.x.array[:] = np.maximum(drive, 0.0)
        self._problem.solve()
        reason = self._problem.solver.getConvergedReason()
        if reason <= 0:
            raise RuntimeError(f"damage predictor did not converge (KSP reason {reason})")
        self.phi.x.scatter_forward()
        return self.phi


def quadrature_expression(history, expr):
    """``expr`` (a UFL scalar on the particle submesh) compiled at the history field's
    quadrature points, for repeated :func:`quadrature_values`; a number stays a number."""
    if np.isscalar(expr) or isinstance(expr, fem.Expression):
        return expr
    return fem.Expression(expr, history.points, comm=history.mesh.comm)


def quadrature_values(history, expr) -> np.ndarray:
    """A UFL scalar on the particle submesh (e.g. Gc(gamma), GPa µm), or its compiled
    :func:`quadrature_expression`, at the history field's quadrature points, laid out like
    ``history.H.x.array``; a number is broadcast."""
    if np.isscalar(expr):
        return np.full_like(history.H.x.array, float(expr))
    vals = quadrature_expression(history, expr).eval(history.mesh, history.cells)
    out = np.empty_like(history.H.x.array)
    out[history.Q.dofmap.list[history.cells]] = vals.reshape(len(history.cells), -1)
    return out


def sync_marks(msh: dmesh.Mesh, marked: np.ndarray) -> np.ndarray:
    """Owned cells' flags copied to their ghost copies on the other ranks."""
    imap = msh.topology.index_map(msh.topology.dim)
    v = la.vector(imap, 1, dtype=np.float64)
    v.array[:] = 0.0
    v.array[: imap.size_local] = marked[: imap.size_local]
    v.scatter_forward()
    return v.array > 0.5


def grow_marks(msh: dmesh.Mesh, marked: np.ndarray, layers: int) -> np.ndarray:
    """``layers`` rings of vertex neighbours added to consistent cell flags (consistent out)."""
    tdim = msh.topology.dim
    msh.topology.create_connectivity(tdim, 0)
    c2v = msh.topology.connectivity(tdim, 0).array.reshape(len(marked), -1)
    vmap = msh.topology.index_map(0)
    for _ in range(layers):
        flag = la.vector(vmap, 1, dtype=np.float64)
        flag.array[:] = 0.0
        flag.array[c2v[marked].ravel()] = 1.0
        flag.scatter_reverse(la.InsertMode.add)
        flag.scatter_forward()
        marked = np.any(flag.array[c2v] > 0.5, axis=1)
    return marked


def mark_cells(
    dom: ParticleDomain,
    h_target: float,
    phi: fem.Function | None = None,
    phi_threshold: float = 0.5,
    drive: np.ndarray | None = None,
    Gc: np.ndarray | float | None = None,
    l: float | None = None,
    history=None,
    predictor_threshold: float = 0.5,
    buffer_layers: int = 1,
    h_min: float = 0.0,
    predicted: fem.Function | None = None,
) -> np.ndarray:
    """Cells of the full mesh (particle + binder) to refine; identical on all ranks for shared
    cells (collective).

    A particle cell is a seed if phi exceeds ``phi_threshold`` at one of its vertices (a), if the
    local AT2 solution :func:`local_damage` of ``drive`` exceeds ``predictor_threshold`` at one of
    its quadrature points (b), or if the predicted phase field ``predicted``
    (:class:`DamagePredictor`) exceeds ``predictor_threshold`` at one of its vertices (c); seeds
    grow by ``buffer_layers`` rings of vertex neighbours; of those, only particle cells with
    :func:`cell_size` > max(h_target, h_min) are marked (binder cells are split only by the
    conforming closure of the refinement).

    Args:
        dom: the domain (parent mesh, particle submesh and its entity map).
        h_target: target size (µm), e.g. h_over_l * l with the resolution rule's h_over_l.
        phi: the P1 phase field on the particle submesh (None: criterion (a) off).
        phi_threshold: threshold of criterion (a).
        drive: predicted driving force (GPa) at the points of ``history`` (None: (b) off), e.g.
            max(H, :func:`extrapolate_drive` of psi+).
        Gc: toughness (GPa µm) at the same points (:func:`quadrature_values`) or a number.
        l: phase-field length (µm).
        history: the :class:`~polycrack.physics.fracture.HistoryField` giving the point layout.
        predictor_threshold: threshold of criterion (b).
        predicted: the P1 phase field of a predicted drive (None: (c) off).
        buffer_layers: rings of vertex neighbours added.
        h_min: size floor (µm).

    Returns:
        bool per local (owned + ghost) cell of ``dom.mesh``.
    """
    msh, sm = dom.mesh, dom.submesh
    n_own, n_all = cell_counts(msh)
    sub_all = cell_counts(sm)[1]
    sub_cells = np.arange(sub_all, dtype=np.int32)
    seed_sub = np.zeros(sub_all, dtype=bool)
    if phi is not None:
        dofs = phi.function_space.dofmap.list[sub_cells]
        seed_sub |= phi.x.array[dofs].max(axis=1) > phi_threshold
    if drive is not None:
        if history is None or l is None or Gc is None:
            raise ValueError("the predictor needs history (point layout), Gc and l")
        loc = local_damage(drive, Gc, l)
        seed_sub |= loc[history.Q.dofmap.list[sub_cells]].max(axis=1) > predictor_threshold
    if predicted is not None:
        dofs = predicted.function_space.dofmap.list[sub_cells]
        seed_sub |= predicted.x.array[dofs].max(axis=1) > predictor_threshold
    parent = dom.entity_map.sub_topology_to_topology(sub_cells[seed_sub], False)
    marked = np.zeros(n_all, dtype=bool)
    marked[parent[parent < n_own]] = True
    marked = sync_marks(msh, marked)
    marked = grow_marks(msh, marked, buffer_layers)
    # only particle cells: binder cells next to a crack are split only as far as the conforming
    # closure needs (marking them too refined the 4 µm binder cells twice on the 8-grain sphere)
    particle = np.ones(n_all, dtype=bool)
    particle[dom.cell_tags.indices[dom.cell_tags.values == BINDER]] = False
    return marked & particle & (cell_size(msh) > max(h_target, h_min))


# ---------------------------------------------------------------------------------------------
# Refinement
# ---------------------------------------------------------------------------------------------


def _transfer_tags(msh, ct, ft, fine, parent_cell, parent_facet):
    """Cell and facet tags of a (ghosted) parent carried to its refinement through the parent
    maps; ``fine`` must be unghosted with its cells on their parent's rank."""
    tdim = msh.topology.dim
    _, n_all = cell_counts(msh)
    cval = np.zeros(n_all, dtype=np.int32)
    cval[ct.indices] = ct.values
    nf = fine.topology.index_map(tdim).size_local
    # parent_cell and parent_facet are in the order the refined cells were created; the mesh
    # constructor reorders cells (original_cell_index maps back; global numbers, and the cells
    # stayed on their rank, so the rank's offset is that of its owned range)
    imap = fine.topology.index_map(tdim)
    orig = np.asarray(fine.topology.original_cell_index)[:nf] - imap.local_range[0]
    parent_cell = parent_cell[orig]
    ct2 = dmesh.meshtags(fine, tdim, np.arange(nf, dtype=np.int32), cval[parent_cell])
    msh.topology.create_connectivity(tdim, tdim - 1)
    fine.topology.create_entities(tdim - 1)
    fine.topology.create_connectivity(tdim, tdim - 1)
    fmap = msh.topology.index_map(tdim - 1)
    fval = np.zeros(fmap.size_local + fmap.num_ghosts, dtype=np.int32)
    fval[ft.indices] = ft.values
    c2f = msh.topology.connectivity(tdim, tdim - 1).array.reshape(n_all, -1)
    c2f_fine = fine.topology.connectivity(tdim, tdim - 1).array.reshape(nf, -1)
    pf = parent_facet.reshape(len(orig), -1)[orig].astype(np.int64)
    inside = pf >= 0
    child, local = np.nonzero(inside)
    tags = fval[c2f[parent_cell[child], pf[child, local]]]
    keep = tags > 0
    facets, first = np.unique(c2f_fine[child[keep], local[keep]], return_index=True)
    ft2 = dmesh.meshtags(fine, tdim - 1, facets.astype(np.int32), tags[keep][first])
    return ct2, ft2


def refine_mesh(msh, ct, ft, marked: np.ndarray, info: dict | None = None):
    """Plaza refinement of the edges of the marked cells (collective), tags carried over,
    interface/outer vertices pushed onto r(d)/the binder sphere (``info``: a bundle's mesh.json,
    None: no push), ghosted with shared facets.

    Args:
        msh, ct, ft: a ghosted or unghosted tetrahedral mesh with cell and facet tags.
        marked: bool per local cell (:func:`mark_cells`).
        info: the bundle description with ``particle_shape`` (or None).

    Returns:
        (mesh, cell_tags, facet_tags, AdaptStats).
    """
    comm = msh.comm
    tdim = msh.topology.dim
    t0 = time.perf_counter()
    msh.topology.create_entities(1)
    msh.topology.create_connectivity(tdim, 1)
    edges = dmesh.compute_incident_entities(
        msh.topology, np.flatnonzero(marked).astype(np.int32), tdim, 1
    )
    fine, pc, pf = dmesh.refine(
        msh, edges, partitioner=None, option=dmesh.RefinementOption.parent_cell_and_facet
    )
    ta = time.perf_counter()
    ct2, ft2 = _transfer_tags(msh, ct, ft, fine, pc, pf)
    if info is not None:
        push_to_surfaces(fine, ft2, info)
    t1 = time.perf_counter()
    fine, ct2, ft2 = reghost(fine, ct2, ft2)
    t2 = time.perf_counter()
    n_own = cell_counts(msh)[0]
    stats = AdaptStats(
        comm.allreduce(int(np.count_nonzero(marked[:n_own])), op=MPI.SUM),
        msh.topology.index_map(tdim).size_global,
        fine.topology.index_map(tdim).size_global,
        comm.allreduce(ta - t0, op=MPI.MAX),
        comm.allreduce(t1 - ta, op=MPI.MAX),
        comm.allreduce(t2 - t1, op=MPI.MAX),
    )
    return fine, ct2, ft2, stats


def refine_domain(dom, marked: np.ndarray, info: dict | None = None):
    """:func:`refine_mesh` of a :class:`~polycrack.physics.domain.Domain` (a bundle: its
    ``info`` drives the surface push; volume and centre recomputed as ``load_bundle`` does) or
    of a :class:`~polycrack.physics.mechanics.ParticleDomain` (``info`` as given; centre and
    radius kept). Returns (the same kind of domain on the new mesh, AdaptStats)."""
    if isinstance(dom, Domain):
        msh, ct, ft, stats = refine_mesh(dom.mesh, dom.cell_tags, dom.facet_tags, marked, dom.info)
        new = Domain(msh, ct, ft, dom.grain_ids, dom.axes, dom.seeds_um, dom.info, dom.path)
        sm = new.particle_submesh().mesh
        comm = msh.comm
        vol = comm.allreduce(fem.assemble_scalar(fem.form(1.0 * ufl.dx(domain=sm))), op=MPI.SUM)
        X = ufl.SpatialCoordinate(sm)
        new.particle_volume_um3 = vol
        new.center = (
            np.array(
                [
                    comm.allreduce(fem.assemble_scalar(fem.form(X[i] * ufl.dx)), op=MPI.SUM)
                    for i in range(3)
                ]
            )
            / vol
        )
        return new, stats
    msh, ct, ft, stats = refine_mesh(dom.mesh, dom.cell_tags, dom.facet_tags, marked, info)
    return ParticleDomain.build(msh, ct, ft, dom.axes, dom.center, dom.radius_um), stats


# ---------------------------------------------------------------------------------------------
# Field transfer
# ---------------------------------------------------------------------------------------------


def _padding(source: fem.Function, padding: float | None) -> float:
    """The point-search padding (µm): as given, or a quarter of the source mesh's largest cell
    (:func:`cell_size`), which exceeds the push of a surface vertex, h^2/(8R) <= h/8 for h <= R."""
    if padding is not None:
        return float(padding)
    msh = source.function_space.mesh
    return 0.25 * msh.comm.allreduce(float(cell_size(msh).max(initial=0.0)), op=MPI.MAX)


def _interpolate(target: fem.Function, source: fem.Function, padding: float) -> None:
    """``target`` <- ``source`` on another mesh (collective), on all local cells of the target,
    by :func:`polycrack.numerics.transfer.nonmatching` (each point from the old cell containing
    it; only points outside the old mesh use ``padding``).

    Raises RuntimeError (on every rank) if an interpolation point lies farther than ``padding``
    (µm) from the source mesh: it would silently get 0.
    """
    lost = nonmatching(source, target, padding)
    if lost:
        raise RuntimeError(
            f"field transfer: {lost} interpolation points farther than {padding:g} µm from the old "
            "mesh (increase padding)"
        )


def transfer_p1(source: fem.Function, V_new: fem.FunctionSpace, padding: float | None = None):
    """A (scalar or vector) Lagrange field interpolated onto another mesh (collective).

    Exact for a P1 field and a nested refinement (new vertices are edge midpoints); vertices
    pushed onto a curved surface lie outside the old mesh by up to ~h^2/(8R): ``padding``
    (µm; default a quarter of the largest old cell) lets the point search find the nearest old
    cell, whose linear function is extrapolated there. A point farther away is an error.

    Args:
        source: the field on the old mesh.
        V_new: its space on the new mesh.
        padding: point-search padding (µm), None: automatic.
    """
    out = fem.Function(V_new, name=source.name)
    _interpolate(out, source, _padding(source, padding))
    return out


def transfer_history(
    old, new, rule: str = "parent_max", padding: float | None = None
) -> dict[str, float]:
    """H of a :class:`~polycrack.physics.fracture.HistoryField` onto a refined mesh's one
    (collective; ``new.H`` is overwritten).

    ``parent_max``: every new point gets the max of the parent cell's 4 values (never below any
    of them). ``fit``: the P1 function through the parent's 4 values at the new point, clipped to
    the parent's [min, max] (never below the parent's min; keeps gradients inside the cell). The
    parent is the old cell containing the point (exact for nested cells).

    Returns:
        {"H_integral_old", "H_integral_new"} (GPa µm^3), int H dx with H's quadrature rule.
    """
    sm_old = old.mesh
    transfer(old.H, new.H, _padding(old.H, padding), quadrature_rule=rule)
    comm = sm_old.comm

    def integral(h) -> float:
        dxq = ufl.dx(domain=h.mesh, metadata={"quadrature_degree": h.degree})
        return comm.allreduce(fem.assemble_scalar(fem.form(h.H * dxq)), op=MPI.SUM)

    return {"H_integral_old": integral(old), "H_integral_new": integral(new)}
