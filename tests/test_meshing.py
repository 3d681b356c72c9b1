"""Mesh bundles: tags, volumes, conformity of grain boundaries, determinism, loading on N ranks."""

from __future__ import annotations

import json

import dolfinx_solver  # noqa: F401
import numpy as np
import pytest
import ufl
from dolfinx import fem
from mpi4py import MPI
from polycrack.config import GeometryConfig
from polycrack.errors import InputError
from polycrack.meshing import build_bundle
from polycrack.meshing.shape import fit_radial, segment, synthetic_ct_volume
from polycrack.meshing.tags import BINDER, GB, INTERFACE, OUTER
from polycrack.physics.domain import ensure_bundle, load_bundle

R = 7.0


def _geo(source="sphere", count=12, h=1.2, seed=1, **particle):
    return GeometryConfig.model_validate(
        {
            "particle": {"source": source, "diameter_um": 2 * R, **particle},
            "grains": {"count": count, "seed": seed},
            "mesh": {"particle_size_um": h, "binder_size_um": 3.0},
        }
    )


@pytest.fixture(scope="module")
def sphere_bundle(tmp_path_factory):
    comm = MPI.COMM_WORLD
    path = tmp_path_factory.mktemp("bundle") if comm.rank == 0 else None
    path = comm.bcast(str(path) if path else None, root=0)
    from pathlib import Path

    return ensure_bundle(_geo(), Path(path) / "sphere12", comm)


@pytest.mark.mpi
def test_bundle_contents_and_tags(sphere_bundle):
    info = json.loads((sphere_bundle / "mesh.json").read_text())
    assert info["grains"] == 12 and info["tets"] > 1000
    assert info["min_sicn"] > 0.02
    # sphere volume within 1 % of 4/3 pi R^3 (faceting error at h = 1.2 µm)
    assert info["particle_volume_um3"] == pytest.approx(4 / 3 * np.pi * R**3, rel=0.01)
    # interface area within 2 % of the sphere's
    assert info["interface_area_um2"] == pytest.approx(4 * np.pi * R**2, rel=0.02)
    dom = load_bundle(sphere_bundle, MPI.COMM_WORLD)
    comm = dom.mesh.comm
    tags = np.unique(np.concatenate(comm.allgather(dom.cell_tags.values)))
    assert set(tags) == set(range(1, 13)) | {BINDER}
    ftags = np.unique(np.concatenate(comm.allgather(dom.facet_tags.values)))
    assert set(ftags) == {GB, INTERFACE, OUTER}
    assert dom.axes.shape == (12, 3)
    np.testing.assert_allclose(np.linalg.norm(dom.axes, axis=1), 1.0, rtol=1e-12)


@pytest.mark.mpi
def test_tagged_measures_rank_independent(sphere_bundle):
    """Grain volumes, interface and GB areas (interior facets) equal the serial mesh.json values."""
    info = json.loads((sphere_bundle / "mesh.json").read_text())
    dom = load_bundle(sphere_bundle, MPI.COMM_WORLD)
    comm, m = dom.mesh.comm, dom.mesh
    dx = ufl.Measure("dx", domain=m, subdomain_data=dom.cell_tags)
    dS = ufl.Measure("dS", domain=m, subdomain_data=dom.facet_tags)
    ds = ufl.Measure("ds", domain=m, subdomain_data=dom.facet_tags)
    one = fem.Constant(m, 1.0)

    def total(form):
        return comm.allreduce(fem.assemble_scalar(fem.form(form)), op=MPI.SUM)

    vols = [total(one * dx(g)) for g in range(1, 13)]
    assert sum(vols) == pytest.approx(info["particle_volume_um3"], rel=1e-10)
    assert min(vols) > 0
    assert total(one("+") * dS(GB)) == pytest.approx(info["gb_area_um2"], rel=1e-10)
    assert total(one("+") * dS(INTERFACE)) == pytest.approx(info["interface_area_um2"], rel=1e-10)
    assert total(one * ds(OUTER)) == pytest.approx(4 * np.pi * 10.0**2, rel=0.03)


def _worst_bisector_distance(dom, seeds: np.ndarray) -> float:
    """Largest distance (µm) of a GB facet vertex from the bisector plane of its grains' seeds."""
    from dolfinx.mesh import entities_to_geometry

    m = dom.mesh
    m.topology.create_connectivity(2, 3)
    f2c = m.topology.connectivity(2, 3)
    cell_tag = np.zeros(m.topology.index_map(3).size_local, dtype=int)
    cell_tag[dom.cell_tags.indices] = dom.cell_tags.values
    x = m.geometry.x
    worst = 0.0
    for f in dom.facet_tags.find(GB):
        a, b = (cell_tag[c] for c in f2c.links(f))
        assert a != b
        pa, pb = seeds[a - 1], seeds[b - 1]
        n = (pb - pa) / np.linalg.norm(pb - pa)
        mid = 0.5 * (pa + pb)
        pts = x[entities_to_geometry(m, 2, np.array([f], dtype=np.int32))[0]]
        worst = max(worst, float(np.abs((pts - mid) @ n).max()))
    return worst


@pytest.mark.serial
def test_gb_facets_on_bisector_planes(sphere_bundle):
    """Every GB facet lies on the bisector plane of the seeds of its two grains (1e-6 µm)."""
    from polycrack.meshing.shape import RadialShape
    from polycrack.meshing.tessellation import tessellate

    tess = tessellate(RadialShape.sphere(R), 12, 1, R0=R)
    dom = load_bundle(sphere_bundle, MPI.COMM_SELF)
    assert _worst_bisector_distance(dom, tess.ref_seeds) < 1e-6
    # the check can fail: with the seeds of another tessellation it does
    other = tessellate(RadialShape.sphere(R), 12, 2, R0=R)
    assert _worst_bisector_distance(dom, other.ref_seeds) > 0.1


@pytest.mark.serial
def test_same_seed_same_bundle(tmp_path):
    a = build_bundle(_geo(count=6, h=1.6), tmp_path / "a", verbose=False)
    b = build_bundle(_geo(count=6, h=1.6), tmp_path / "b", verbose=False)
    c = build_bundle(_geo(count=6, h=1.6, seed=2), tmp_path / "c", verbose=False)
    assert (a / "mesh.msh").read_bytes() == (b / "mesh.msh").read_bytes()
    assert (a / "grains.csv").read_text() == (b / "grains.csv").read_text()
    assert (a / "grains.csv").read_text() != (c / "grains.csv").read_text()


@pytest.mark.serial
def test_bundle_independent_of_blas_threads(tmp_path):
    """In-process: the same bundle with 1 and 2 BLAS threads (no BLAS call feeds the geometry,
    meshing/detmath.py; tests/test_mesh_determinism.py also varies the OpenBLAS kernel)."""
    from threadpoolctl import threadpool_limits

    geo = _geo("synthetic", count=6, h=1.6, shape_seed=3)
    out = []
    for n in (1, 2):
        with threadpool_limits(limits=n, user_api="blas"):
            b = build_bundle(geo, tmp_path / f"blas{n}", verbose=False)
        out.append(((b / "grains.csv").read_text(), (b / "mesh.msh").read_bytes()))
    assert out[0] == out[1]


@pytest.mark.serial
def test_c_axes_uniform_on_sphere():
    """Mean of n is ~0 and the mean of n_z^2 is 1/3 (uniform law), 4000 axes, 5-sigma bounds."""
    from polycrack.meshing.tessellation import uniform_axes

    a = uniform_axes(4000, np.random.default_rng(0))
    sd = 1 / np.sqrt(3 * 4000)
    assert np.all(np.abs(a.mean(axis=0)) < 5 * sd)
    assert np.mean(a[:, 2] ** 2) == pytest.approx(1 / 3, abs=5 * np.sqrt(4 / 45 / 4000))
    # three independent uniform Euler angles would fail this: mean(cos^2 theta) = 1/2
    th = np.random.default_rng(1).uniform(0, np.pi, 4000)
    assert abs(np.mean(np.cos(th) ** 2) - 1 / 3) > 5 * np.sqrt(4 / 45 / 4000)


@pytest.mark.serial
def test_synthetic_ct_round_trip():
    """Segmented voxel volume within 3 % of the fitted shape's volume; bumpy, not a sphere."""
    vox = 0.2
    vol = synthetic_ct_volume(14.0, vox, seed=3)
    mask = segment(vol, "synthetic")
    shape = fit_radial(mask, vox, lmax=12)
    assert shape.volume_um3() == pytest.approx(mask.sum() * vox**3, rel=0.03)
    r = shape.radius(np.random.default_rng(0).normal(size=(2000, 3)))
    assert r.max() / r.min() > 1.05
    assert shape.fit_rms_um < 2 * vox


@pytest.mark.serial
def test_bad_inputs(tmp_path):
    with pytest.raises(InputError, match="constant"):
        segment(np.zeros((20, 20, 20)), "empty.npy")
    with pytest.raises(InputError, match="constant"):
        segment(np.full((20, 20, 20), 255), "full.npy")
    with pytest.raises(InputError, match="grains.count = 5000 grains cannot be resolved"):
        build_bundle(_geo(count=5000, h=1.0), tmp_path / "x", verbose=False)
    with pytest.raises(InputError, match="no such file"):
        from polycrack.meshing.shape import load_ct

        load_ct(tmp_path / "missing.npy")
    with pytest.raises(ValueError, match="binder_outer_diameter_um"):
        GeometryConfig.model_validate(
            {"particle": {"diameter_um": 14}, "binder_outer_diameter_um": 12}
        )


def _tagged_measures(dom) -> np.ndarray:
    m, comm = dom.mesh, dom.mesh.comm
    dx = ufl.Measure("dx", domain=m, subdomain_data=dom.cell_tags)
    dS = ufl.Measure("dS", domain=m, subdomain_data=dom.facet_tags)
    ds = ufl.Measure("ds", domain=m, subdomain_data=dom.facet_tags)
    one = fem.Constant(m, 1.0)
    forms = [one * dx(g) for g in range(1, 13)]
    forms += [one("+") * dS(GB), one("+") * dS(INTERFACE), one * ds(OUTER)]
    return np.array([comm.allreduce(fem.assemble_scalar(fem.form(f)), op=MPI.SUM) for f in forms])


@pytest.mark.mpi
def test_refined_measures_rank_independent(sphere_bundle):
    """refine_levels=1: tagged volumes and areas (incl. interior GB facets) equal on 1 and N ranks
    (see the tolerances below); the interface vertices go back onto the sphere (volume error
    shrinks, < 0.5 %)."""
    fine = _tagged_measures(load_bundle(sphere_bundle, MPI.COMM_WORLD, refine_levels=1))
    ref = _tagged_measures(load_bundle(sphere_bundle, MPI.COMM_SELF, refine_levels=1))
    # Total volume, interface and outer areas to 1e-9; GB area to 1e-7 and per-grain volumes to
    # 1e-5, because the refined GB faces next to the interface depend on the rank count: gmsh
    # makes some tets with exactly tied edge lengths, Plaza breaks the longest-edge tie by a
    # partition-dependent vertex number, so such a face is split along another edge; once its
    # interface midpoint is pushed onto r(d) the face is not planar, and its area and the two
    # grains' volumes change (vertex sets identical on 1 and 2 ranks). Measured: grains 1/12
    # traded ~6e-7 of their volume with an earlier bundle; GB area 2.3e-9 with this one.
    np.testing.assert_allclose(fine[13:], ref[13:], rtol=1e-9)
    assert fine[12] == pytest.approx(ref[12], rel=1e-7)
    assert fine[:12].sum() == pytest.approx(ref[:12].sum(), rel=1e-9)
    np.testing.assert_allclose(fine[:12], ref[:12], rtol=1e-5)
    coarse = _tagged_measures(load_bundle(sphere_bundle, MPI.COMM_SELF))
    exact = 4 / 3 * np.pi * R**3
    assert abs(fine[:12].sum() - exact) < 0.5 * abs(coarse[:12].sum() - exact)
    assert fine[:12].sum() == pytest.approx(exact, rel=0.005)


@pytest.mark.serial
def test_surface_source(tmp_path):
    """A closed STL sphere (R = 7 µm) gives r(d) within 1 % of R; an open STL is an InputError."""
    import gmsh
    import meshio
    from polycrack.meshing.surface import surface_shape

    gmsh.initialize(interruptible=False)
    try:
        gmsh.option.setNumber("General.Terminal", 0)
        gmsh.model.occ.addSphere(0.5, 0, 0, R)
        gmsh.model.occ.synchronize()
        gmsh.option.setNumber("Mesh.MeshSizeMax", 1.0)
        gmsh.model.mesh.generate(2)
        gmsh.write(str(tmp_path / "s.stl"))
    finally:
        gmsh.finalize()
    shape = surface_shape(tmp_path / "s.stl", n_rays=800)
    r = shape.radius(np.random.default_rng(0).normal(size=(500, 3)))
    np.testing.assert_allclose(r, R, rtol=0.01)
    m = meshio.read(tmp_path / "s.stl")
    m.cells[0].data = m.cells[0].data[3:]
    meshio.write(tmp_path / "open.stl", m)
    with pytest.raises(InputError, match="not watertight"):
        surface_shape(tmp_path / "open.stl")


@pytest.mark.serial
def test_faceted_route_for_non_star_shaped_surface(tmp_path):
    """A dumbbell (two balls joined by a thin neck) is not star-shaped: the faceted route meshes
    it with all grain tags, grains summing to the decimated surface's volume, GB facets on the
    bisector planes and no regularisation defect left (quality bound loose: that route still
    leaves some slivers)."""
    from polycrack.verification.meshes import dumbbell_stl

    dumbbell_stl(tmp_path / "dumbbell.stl", neck_radius_um=1.0, size_um=0.8)
    geo = GeometryConfig.model_validate(
        {
            "particle": {"source": "surface", "file": str(tmp_path / "dumbbell.stl")},
            "grains": {"count": 8, "seed": 1},
            "binder_outer_diameter_um": 26.0,
            "mesh": {"particle_size_um": 1.2, "binder_size_um": 3.0},
        }
    )
    out = build_bundle(geo, tmp_path / "b", verbose=False)
    info = json.loads((out / "mesh.json").read_text())
    assert info["particle_shape"]["kind"] == "faceted"
    assert info["regularisation_defects_left"] == 0 and info["min_sicn"] > 0.01
    assert info["particle_volume_um3"] == pytest.approx(
        info["particle_shape"]["surface_volume_um3"], rel=1e-6
    )
    dom = load_bundle(out, MPI.COMM_SELF)
    assert set(np.unique(dom.cell_tags.values)) == set(range(1, 9)) | {BINDER}
    assert _worst_bisector_distance(dom, dom.seeds_um) < 1e-6
