"""Adaptive refinement (polycrack.physics.adapt): marking, tags and geometry, field transfer, the
history rule. Small box and sphere meshes; serial and ``mpirun -n 2`` (marker ``mpi``)."""

from __future__ import annotations

import dolfinx_solver  # noqa: F401
import numpy as np
import pytest
from dolfinx import fem
from dolfinx import mesh as dmesh
from mpi4py import MPI
from polycrack.meshing.shape import RadialShape
from polycrack.meshing.tags import BINDER, GB, INTERFACE, OUTER
from polycrack.physics import adapt
from polycrack.physics.fracture import HistoryField
from polycrack.physics.mechanics import ParticleDomain
from polycrack.verification.mech_meshes import box_grains, sphere_in_shell

COMM = MPI.COMM_WORLD


def _box(n=4, binder=True):
    msh, ct, ft = box_grains(n, 1.0, 2, binder=binder)
    return ParticleDomain.build(msh, ct, ft, np.eye(3)[[2] * 8])


def _tet_volumes(msh, cells):
    X = msh.geometry.x[msh.geometry.dofmaps[0][cells]]
    return (
        np.abs(
            np.einsum("ij,ij->i", X[:, 1] - X[:, 0], np.cross(X[:, 2] - X[:, 0], X[:, 3] - X[:, 0]))
        )
        / 6
    )


def _tag_measures(msh, ct, ft) -> dict:
    """Global volume per cell tag and area per facet tag (owned entities, µm^3 / µm^2)."""
    tdim = msh.topology.dim
    n_own = msh.topology.index_map(tdim).size_local
    own = ct.indices < n_own
    vol = _tet_volumes(msh, ct.indices[own])
    out = {}
    for t in np.unique(np.concatenate(COMM.allgather(np.unique(ct.values)))):
        out[("cell", int(t))] = COMM.allreduce(float(vol[ct.values[own] == t].sum()), op=MPI.SUM)
    f_own = ft.indices < msh.topology.index_map(tdim - 1).size_local
    nodes = dmesh.entities_to_geometry(msh, tdim - 1, ft.indices[f_own])
    P = msh.geometry.x[nodes]
    area = 0.5 * np.linalg.norm(np.cross(P[:, 1] - P[:, 0], P[:, 2] - P[:, 0]), axis=1)
    for t in (GB, INTERFACE, OUTER):
        out[("facet", t)] = COMM.allreduce(float(area[ft.values[f_own] == t].sum()), op=MPI.SUM)
    return out


def _global(msh, flags):
    return COMM.allreduce(
        int(np.count_nonzero(flags[: msh.topology.index_map(3).size_local])), op=MPI.SUM
    )


# -- marking ---------------------------------------------------------------------------------------
@pytest.mark.mpi
def test_mark_threshold_buffer_and_size_floor():
    """phi > threshold marks the particle cells touching the region x < 0.3 (where phi = 1);
    each buffer layer adds the vertex neighbours (the marked set grows and contains the seeds);
    ghost copies agree with their owners; a target size above every cell marks nothing, and
    h_min above every cell does too."""
    dom = _box(6)
    V = fem.functionspace(dom.submesh, ("Lagrange", 1))
    phi = fem.Function(V)
    phi.interpolate(lambda X: (X[0] < 0.3).astype(float))
    msh = dom.mesh
    h = adapt.cell_size(msh)
    assert np.allclose(h, (3 + 2 * np.sqrt(2) + np.sqrt(3)) / 6 / 6)  # Kuhn tets of side 1/6
    m0 = adapt.mark_cells(dom, 0.01, phi=phi, phi_threshold=0.5, buffer_layers=0)
    m1 = adapt.mark_cells(dom, 0.01, phi=phi, phi_threshold=0.5, buffer_layers=1)
    m2 = adapt.mark_cells(dom, 0.01, phi=phi, phi_threshold=0.5, buffer_layers=2)
    # (a) seeds: particle cells with a vertex at x < 0.3 (x = 0 is binder, phi lives on particle)
    tdim = 3
    n_all = len(m0)
    X = msh.geometry.x[msh.geometry.dofmaps[0][np.arange(n_all)]]
    ctv = np.zeros(n_all, dtype=np.int32)
    ctv[dom.cell_tags.indices] = dom.cell_tags.values
    expect = (X[:, :, 0].min(axis=1) < 0.3) & (ctv != BINDER)
    assert np.array_equal(m0, expect)
    assert np.all(m1[m0]) and np.all(m2[m1])
    n0, n1, n2 = (_global(msh, m) for m in (m0, m1, m2))
    assert 0 < n0 < n1 < n2
    # the buffer reaches the binder, but binder cells are never marked (the conforming
    # closure splits them as far as needed)
    assert _global(msh, (m1 | m2) & (ctv == BINDER)) == 0
    # ghosts agree with their owners
    imap = msh.topology.index_map(tdim)
    from dolfinx import la

    for m in (m0, m1, m2):
        v = la.vector(imap, 1, dtype=np.float64)
        v.array[:] = m
        v.scatter_forward()
        assert np.array_equal(v.array > 0.5, m)
    assert _global(msh, adapt.mark_cells(dom, 1.0, phi=phi, buffer_layers=1)) == 0
    assert _global(msh, adapt.mark_cells(dom, 0.01, phi=phi, h_min=1.0)) == 0


@pytest.mark.mpi
def test_mark_predictor_local_at2_solution():
    """Criterion (b): with D = psi at the quadrature points and Gc, l given, a cell is marked where
    2 D l / (Gc + 2 D l) > threshold at one of its points; D chosen as 0 except a drive that gives
    local damage 0.6 in cells whose centre has x > 0.7 (particle: 1/6 < x < 5/6)."""
    dom = _box(6)
    hist = HistoryField(dom.submesh)
    Gc, l = 0.05, 0.2
    D_hi = 0.6 / 0.4 * Gc / (2 * l)  # 2Dl/(Gc + 2Dl) = 0.6
    assert abs(adapt.local_damage(np.array([D_hi]), Gc, l)[0] - 0.6) < 1e-14
    sm = dom.submesh
    cells = hist.cells
    mid = dmesh.compute_midpoints(sm, 3, cells)
    D = np.zeros_like(hist.H.x.array)
    D[hist.Q.dofmap.list[cells[mid[:, 0] > 0.7]]] = D_hi
    Gcq = adapt.quadrature_values(hist, Gc)
    m_lo = adapt.mark_cells(
        dom, 0.01, drive=D, Gc=Gcq, l=l, history=hist, predictor_threshold=0.5, buffer_layers=0
    )
    m_hi = adapt.mark_cells(
        dom, 0.01, drive=D, Gc=Gcq, l=l, history=hist, predictor_threshold=0.7, buffer_layers=0
    )
    pmid = dmesh.compute_midpoints(dom.mesh, 3, np.arange(len(m_lo), dtype=np.int32))
    ctv = np.zeros(len(m_lo), dtype=np.int32)
    ctv[dom.cell_tags.indices] = dom.cell_tags.values
    assert np.array_equal(m_lo, (pmid[:, 0] > 0.7) & (ctv != BINDER))
    assert _global(dom.mesh, m_hi) == 0
    # extrapolation: psi grows linearly in the step count
    assert np.allclose(
        adapt.extrapolate_drive(np.array([2.0, 1.0]), np.array([1.0, 2.0]), 1.0), [3.0, 0.0]
    )


@pytest.mark.mpi
def test_damage_predictor_solves_the_at2_equation():
    """Criterion (c): the predicted phase field of a uniform drive is the homogeneous AT2 value
    2Dl/(Gc + 2Dl) (the constant solves the equation with natural boundary conditions; P1 holds
    it exactly: to the CG tolerance, 1e-6 here); a drive confined to one cell, whose local value
    is the same 0.6, gives far less (the gradient term spreads it over l = 0.2 > the cell size
    0.17), so it marks nothing at threshold 0.5 where the local predictor marks the cell."""
    dom = _box(6)
    hist = HistoryField(dom.submesh)
    Gc, l = 0.05, 0.2
    D_hi = 0.6 / 0.4 * Gc / (2 * l)
    V = fem.functionspace(dom.submesh, ("Lagrange", 1))
    pred = adapt.DamagePredictor(hist, V, Gc, l)
    phi = pred(np.full_like(hist.H.x.array, D_hi))
    n_own = V.dofmap.index_map.size_local
    err = COMM.allreduce(float(np.abs(phi.x.array - 0.6).max(initial=0.0)), op=MPI.MAX)
    assert err < 1e-6
    m = adapt.mark_cells(dom, 0.01, predicted=phi, predictor_threshold=0.5, buffer_layers=0)
    ctv = np.zeros(len(m), dtype=np.int32)
    ctv[dom.cell_tags.indices] = dom.cell_tags.values
    assert np.array_equal(m, ctv != BINDER)
    # one cell (the owner's of the particle cell nearest the centre) carries the drive
    sm = dom.submesh
    mid = dmesh.compute_midpoints(sm, 3, hist.cells)
    n_cells = sm.topology.index_map(3).size_local
    d = np.linalg.norm(mid[:n_cells] - 0.5, axis=1)
    best = COMM.allreduce((float(d.min(initial=np.inf)), COMM.rank), op=MPI.MIN)
    D = np.zeros_like(hist.H.x.array)
    if COMM.rank == best[1]:
        D[hist.Q.dofmap.list[int(np.argmin(d))]] = D_hi
    # the ghost copies of that cell's points carry it too (as H's layout does)
    from dolfinx import la

    imap = hist.Q.dofmap.index_map
    v = la.vector(imap, 1, dtype=np.float64)
    v.array[:] = D
    v.scatter_forward()
    spike = pred(v.array.copy())
    peak = COMM.allreduce(float(spike.x.array[:n_own].max(initial=0.0)), op=MPI.MAX)
    assert 0.0 < peak < 0.05  # measured 0.0146 on 1 and 2 ranks
    assert _global(dom.mesh, adapt.mark_cells(dom, 0.01, predicted=spike, buffer_layers=0)) == 0
    local = adapt.mark_cells(
        dom, 0.01, drive=v.array, Gc=Gc, l=l, history=hist, predictor_threshold=0.5, buffer_layers=0
    )
    assert _global(dom.mesh, local) == 1


# -- refinement: tags and geometry ---------------------------------------------------------------
@pytest.mark.mpi
def test_refinement_keeps_tagged_volumes_and_areas():
    """Refining the cells with centre x < 0.5 of a 2x2x2-grain cube in a binder layer: every cell
    tag's volume and every facet tag's area (GB, INTERFACE, OUTER) unchanged to 1e-10 relative,
    more cells, all 8 grains present, the mesh ghosted with shared facets (ghost cells on 2 ranks)
    and the particle submesh built."""
    dom = _box(4)
    before = _tag_measures(dom.mesh, dom.cell_tags, dom.facet_tags)
    mid = dmesh.compute_midpoints(
        dom.mesh, 3, np.arange(adapt.cell_counts(dom.mesh)[1], dtype=np.int32)
    )
    marked = mid[:, 0] < 0.5
    new, st = adapt.refine_domain(dom, marked)
    after = _tag_measures(new.mesh, new.cell_tags, new.facet_tags)
    assert before.keys() == after.keys()
    for k, v in before.items():
        assert v > 0 and abs(after[k] / v - 1.0) < 1e-10, (k, v, after[k])
    assert st.cells_after > st.cells_before == 384
    assert st.marked_cells == COMM.allreduce(
        int(np.count_nonzero(marked[: dom.mesh.topology.index_map(3).size_local])), op=MPI.SUM
    )
    if COMM.size > 1:
        assert COMM.allreduce(new.mesh.topology.index_map(3).num_ghosts, op=MPI.SUM) > 0
    grains = set(np.concatenate(COMM.allgather(np.unique(new.sub_cell_tags.values))).tolist())
    assert grains == set(range(1, 9))
    # the size floor on a mixed mesh: phi = 1 everywhere marks exactly the particle cells
    # coarser than the target (the unrefined half), none of the refined ones
    one = fem.Function(fem.functionspace(new.submesh, ("Lagrange", 1)))
    one.x.array[:] = 1.0
    m = adapt.mark_cells(new, 0.2, phi=one, buffer_layers=0)
    ctv = np.zeros(len(m), dtype=np.int32)
    ctv[new.cell_tags.indices] = new.cell_tags.values
    h = adapt.cell_size(new.mesh)
    assert np.array_equal(m, (h > 0.2) & (ctv != BINDER))
    assert _global(new.mesh, m) > 0 and _global(new.mesh, (h <= 0.2) & (ctv != BINDER)) > 0
    # a second round on the refined mesh
    marked2 = adapt.cell_size(new.mesh) > 0.2
    new2, st2 = adapt.refine_domain(new, marked2)
    after2 = _tag_measures(new2.mesh, new2.cell_tags, new2.facet_tags)
    for k, v in before.items():
        assert abs(after2[k] / v - 1.0) < 1e-10, (k, v, after2[k])
    assert st2.cells_after > st.cells_after


@pytest.mark.mpi
def test_refined_interface_vertices_lie_on_the_particle_surface():
    """Sphere (a = 1) in a binder shell (b = 2), refined where x > 0: every vertex of an INTERFACE
    facet at r = a to 1e-12 (the new chord midpoints pushed out), every OUTER vertex at r = b, and
    the particle volume moves towards 4/3 pi a^3 (chord error shrinks)."""
    a, b = 1.0, 2.0
    msh, ct, ft = sphere_in_shell(a, b, 0.5, 1.0, grow=0.5)
    dom = ParticleDomain.build(msh, ct, ft, np.array([[0.0, 0.0, 1.0]]))
    info = {
        "particle_shape": {
            "radial_coefficients": RadialShape.sphere(a).coefficients.tolist(),
            "lmax": 0,
            "binder_outer_radius_um": b,
        }
    }
    mid = dmesh.compute_midpoints(msh, 3, np.arange(adapt.cell_counts(msh)[1], dtype=np.int32))
    new, st = adapt.refine_domain(dom, mid[:, 0] > 0.0, info=info)
    assert st.cells_after > st.cells_before
    m = new.mesh
    for tag, r in ((INTERFACE, a), (OUTER, b)):
        nodes = dmesh.entities_to_geometry(m, 2, new.facet_tags.find(tag)).ravel()
        err = np.abs(np.linalg.norm(m.geometry.x[nodes], axis=1) - r).max(initial=0.0)
        assert COMM.allreduce(err, op=MPI.MAX) < 1e-12
        assert COMM.allreduce(len(nodes), op=MPI.SUM) > 0

    def vol(d):
        n_own = d.submesh.topology.index_map(3).size_local
        return COMM.allreduce(float(_tet_volumes(d.submesh, np.arange(n_own)).sum()), op=MPI.SUM)

    exact = 4.0 / 3.0 * np.pi * a**3
    assert abs(vol(new) - exact) < abs(vol(dom) - exact)
    # pushed interface vertices lie outside the old particle (chord error ~ h^2/(8a) = 0.03 µm):
    # the default padding finds their cell, a tiny one is an error on every rank (not a silent 0)
    f = fem.Function(fem.functionspace(dom.submesh, ("Lagrange", 1)))
    f.x.array[:] = 1.0
    V_new = fem.functionspace(new.submesh, ("Lagrange", 1))
    assert (
        COMM.allreduce(
            np.abs(adapt.transfer_p1(f, V_new).x.array - 1.0).max(initial=0.0), op=MPI.MAX
        )
        < 1e-12
    )
    with pytest.raises(RuntimeError, match="farther than"):
        adapt.transfer_p1(f, V_new, padding=1e-9)
    with pytest.raises(ValueError, match="unknown history transfer rule"):
        adapt.transfer_history(HistoryField(dom.submesh), HistoryField(new.submesh), rule="mean")


# -- field transfer ---------------------------------------------------------------------------------
@pytest.mark.mpi
def test_p1_transfer_is_exact_for_nested_refinement():
    """A linear scalar on the particle submesh and a linear vector on the full mesh transferred
    onto a locally refined mesh (new partition after reghosting) equal the linear functions at
    every new node to 1e-12; so does a piecewise-linear (kinked) field's interpolant after two
    refinements (nested P1 spaces: transfer = identity)."""
    dom = _box(4)
    Vs = fem.functionspace(dom.submesh, ("Lagrange", 1))
    Vv = fem.functionspace(dom.mesh, ("Lagrange", 1, (3,)))
    f = fem.Function(Vs)
    f.interpolate(lambda X: 1.0 + 2 * X[0] - X[1] + 0.5 * X[2])
    g = fem.Function(Vv)
    g.interpolate(lambda X: np.vstack([X[1], -X[0] + X[2], 3 * X[2] + 0.1]))
    k = fem.Function(Vs)
    k.interpolate(lambda X: np.abs(X[0] - 0.5) + X[1] * X[2])  # nonlinear: its P1 interpolant
    mid = dmesh.compute_midpoints(
        dom.mesh, 3, np.arange(adapt.cell_counts(dom.mesh)[1], dtype=np.int32)
    )
    new, _ = adapt.refine_domain(dom, mid[:, 1] < 0.6)
    f2 = adapt.transfer_p1(f, fem.functionspace(new.submesh, ("Lagrange", 1)))
    g2 = adapt.transfer_p1(g, fem.functionspace(new.mesh, ("Lagrange", 1, (3,))))
    k2 = adapt.transfer_p1(k, f2.function_space)
    X = f2.function_space.tabulate_dof_coordinates().T
    err_f = np.abs(f2.x.array - (1.0 + 2 * X[0] - X[1] + 0.5 * X[2])).max(initial=0.0)
    Y = g2.function_space.tabulate_dof_coordinates().T
    ex = np.vstack([Y[1], -Y[0] + Y[2], 3 * Y[2] + 0.1]).T.ravel()
    err_g = np.abs(g2.x.array - ex).max(initial=0.0)
    assert COMM.allreduce(max(err_f, err_g), op=MPI.MAX) < 1e-12
    # back-transfer of the kinked field to the coarse mesh reproduces it (old nodes are new nodes)
    k3 = adapt.transfer_p1(k2, Vs)
    err_k = np.abs(k3.x.array - k.x.array).max(initial=0.0)
    assert COMM.allreduce(err_k, op=MPI.MAX) < 1e-12


def _gather_cells(hist: HistoryField):
    """All ranks' owned submesh cells: vertex coordinates (n, 4, 3) and H values (n, 4)."""
    sm = hist.mesh
    n_own = sm.topology.index_map(3).size_local
    X = sm.geometry.x[sm.geometry.dofmaps[0][:n_own]]
    H = hist.H.x.array[hist.Q.dofmap.list[:n_own]]
    return np.concatenate(COMM.allgather(X)), np.concatenate(COMM.allgather(H))


def _parents(points: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Index of the tet of X (n, 4, 3) containing each point (strictly inside: min bary > 1e-9)."""
    T = np.transpose(X[:, 1:] - X[:, :1], (0, 2, 1))  # (n, 3, 3)
    Tinv = np.linalg.inv(T)
    out = np.full(len(points), -1)
    for i, p in enumerate(points):
        lam = np.einsum("nij,nj->ni", Tinv, p - X[:, 0])
        bary = np.column_stack([1 - lam.sum(axis=1), lam])
        inside = np.flatnonzero(bary.min(axis=1) > 1e-9)
        assert len(inside) == 1
        out[i] = inside[0]
    return out


@pytest.mark.mpi
@pytest.mark.parametrize("rule", ["parent_max", "fit"])
def test_history_transfer_never_lowers_h(rule):
    """H random in [0, 1] at the 4 points of every cell, refined twice (different partitions):
    for every new point and its parent (the old cell containing it, found here by barycentric
    coordinates over all ranks' cells), parent_max gives H_new = max over the parent's points,
    so min(H_new - H_parent) >= 0 for every parent value; fit gives H_new in the parent's
    [min, max]. int H dx does not decrease for parent_max."""
    dom = _box(3)
    old = HistoryField(dom.submesh)
    rng = np.random.default_rng(7 + COMM.rank)
    old.H.x.array[:] = rng.uniform(0.0, 1.0, len(old.H.x.array))
    old.H.x.scatter_forward()
    mid = dmesh.compute_midpoints(
        dom.mesh, 3, np.arange(adapt.cell_counts(dom.mesh)[1], dtype=np.int32)
    )
    new_dom, _ = adapt.refine_domain(dom, mid[:, 2] > 0.4)
    new = HistoryField(new_dom.submesh)
    rec = adapt.transfer_history(old, new, rule=rule)
    X_old, H_old = _gather_cells(old)
    sm = new.mesh
    n_own = sm.topology.index_map(3).size_local
    Xn = sm.geometry.x[sm.geometry.dofmaps[0][:n_own]]
    pts = Xn[:, :1, :] + np.einsum("qk,nkj->nqj", new.points, Xn[:, 1:, :] - Xn[:, :1, :])
    par = _parents(pts.reshape(-1, 3), X_old)
    Hn = new.H.x.array[new.Q.dofmap.list[:n_own]].ravel()
    hi, lo = H_old[par].max(axis=1), H_old[par].min(axis=1)
    if rule == "parent_max":
        gap = (Hn[:, None] - H_old[par]).min(initial=np.inf)
        assert COMM.allreduce(gap, op=MPI.MIN) >= 0.0
        assert np.array_equal(Hn, hi)
        assert rec["H_integral_new"] >= rec["H_integral_old"]
    else:
        assert np.all(Hn >= lo) and np.all(Hn <= hi)
        assert COMM.allreduce(int(np.count_nonzero(Hn < hi)), op=MPI.SUM) > 0


# -- a mesh bundle (Domain) ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_bundle(tmp_path_factory):
    from pathlib import Path

    from polycrack.config import GeometryConfig
    from polycrack.physics.domain import ensure_bundle

    geo = GeometryConfig.model_validate(
        {
            "particle": {"source": "sphere", "diameter_um": 6.0},
            "grains": {"count": 6, "seed": 3},
            "mesh": {"particle_size_um": 1.2, "binder_size_um": 3.0},
        }
    )
    path = str(tmp_path_factory.mktemp("adapt_bundle")) if COMM.rank == 0 else None
    return ensure_bundle(geo, Path(COMM.bcast(path, root=0)) / "b", COMM)


@pytest.mark.mpi
def test_refine_bundle_domain(small_bundle):
    """A loaded bundle (ghosted run mesh, 6 grains in a binder shell) refined where x > 1 µm: a
    Domain again, with every grain, every interface/outer vertex on r(d)/the binder sphere to
    1e-12 µm, a particle volume at least as close to the sphere's, the particle submesh and
    ParticleDomain.from_domain working, and a P1 field transferred exactly (linear)."""
    from polycrack.physics.domain import Domain, load_bundle

    dom = load_bundle(small_bundle, COMM)
    info = dom.info
    ps = info["particle_shape"]
    shape = RadialShape(np.asarray(ps["radial_coefficients"]), int(ps["lmax"]))
    mid = dmesh.compute_midpoints(
        dom.mesh, 3, np.arange(adapt.cell_counts(dom.mesh)[1], dtype=np.int32)
    )
    new, st = adapt.refine_domain(dom, mid[:, 0] > 1.0)
    assert isinstance(new, Domain) and st.cells_after > st.cells_before
    m = new.mesh
    for tag in (INTERFACE, OUTER):
        nodes = np.unique(dmesh.entities_to_geometry(m, 2, new.facet_tags.find(tag)).ravel())
        p = m.geometry.x[nodes]
        r = shape.radius(p) if tag == INTERFACE else np.full(len(p), ps["binder_outer_radius_um"])
        err = np.abs(np.linalg.norm(p, axis=1) - r).max(initial=0.0)
        assert COMM.allreduce(err, op=MPI.MAX) < 1e-12
    grains = set(np.concatenate(COMM.allgather(np.unique(new.cell_tags.values))).tolist())
    assert grains == set(range(1, 7)) | {BINDER}
    exact = 4.0 / 3.0 * np.pi * 3.0**3
    assert abs(new.particle_volume_um3 - exact) <= abs(dom.particle_volume_um3 - exact)
    pdom_old, pdom = ParticleDomain.from_domain(dom), ParticleDomain.from_domain(new)
    f = fem.Function(fem.functionspace(pdom_old.submesh, ("Lagrange", 1)))
    f.interpolate(lambda X: 0.3 + X[0] - 2 * X[2])
    g = adapt.transfer_p1(f, fem.functionspace(pdom.submesh, ("Lagrange", 1)))
    X = g.function_space.tabulate_dof_coordinates().T
    # exact away from the pushed surface; pushed vertices (outside the old mesh by up to
    # h^2/(8R)) get the extrapolated linear value, so exact there too
    err = np.abs(g.x.array - (0.3 + X[0] - 2 * X[2])).max(initial=0.0)
    assert COMM.allreduce(err, op=MPI.MAX) < 1e-10
