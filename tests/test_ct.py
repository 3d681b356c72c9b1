"""Electrode CT scans (meshing/ct.py): separating touching particles, the label table, selection,
its error messages, and meshing a particle of the real crop (tests/data/README.md)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from polycrack.cli import main
from polycrack.config import GeometryConfig, ParticleConfig, load_case
from polycrack.errors import InputError
from polycrack.meshing.build import build_bundle
from polycrack.meshing.ct import (
    DEFAULT_MIN_DIAMETER_UM,
    phase_mask,
    select_particle,
    separate_volume,
    sphericity,
)
from polycrack.meshing.shape import load_ct

DATA = Path(__file__).resolve().parent / "data"
CROP = DATA / "nrel_nmc1_electrode_crop.npz"
VOX = 0.25  # µm, synthetic volumes
EXTENT = (24.0, 20.0, 20.0)  # µm along axes 0, 1, 2
#: (centre µm, radius µm): A and B overlap by 0.3 µm (touching particles), S is narrower than
#: the minimum particle size, E is cut by the crop border at axis 0 = 24 µm
BALLS = {
    "A": ((7.0, 10.0, 10.0), 3.5),
    "B": ((13.2, 10.0, 10.0), 3.0),
    "S": ((7.0, 3.0, 3.0), 1.5),
    "E": ((22.5, 10.0, 10.0), 3.0),
}


def _grid(vox):
    vox = np.broadcast_to(np.asarray(vox, float), (3,))
    n = [int(round(e / v)) for e, v in zip(EXTENT, vox, strict=True)]
    return np.meshgrid(
        *((np.arange(k) + 0.5) * v for k, v in zip(n, vox, strict=True)), indexing="ij"
    )


def balls_volume(vox=VOX, names=tuple(BALLS)) -> np.ndarray:
    """Labelled volume: 0 pore, 1 particles (the balls above), 2 a binder layer at the bottom."""
    X = _grid(vox)
    vol = np.zeros(X[0].shape, np.uint8)
    vol[X[2] < 1.0] = 2
    for name in names:
        c, r = BALLS[name]
        vol[sum((x - ci) ** 2 for x, ci in zip(X, c, strict=True)) <= r * r] = 1
    return vol


def _shell() -> np.ndarray:
    """Label 1 on the faces of the box, 0 inside: hole filling leaves one phase."""
    v = np.ones((20, 20, 20), np.uint8)
    v[1:-1, 1:-1, 1:-1] = 0
    return v


def sel(**kw):
    base = {"label": None, "voxel": None, "point_um": None, "largest_interior": False}
    return SimpleNamespace(**{**base, **kw})


@pytest.fixture(scope="module")
def balls():
    return separate_volume(balls_volume(), VOX, label_value=1, source="balls.npy")


@pytest.fixture(scope="module")
def crop():
    return separate_volume(load_ct(CROP), 0.4, label_value=1, source=str(CROP))


def _lens(r1, r2, d):
    """Volume of the intersection of two balls (closed form)."""
    return np.pi * (r1 + r2 - d) ** 2 * (d * d + 2 * d * (r1 + r2) - 3 * (r1 - r2) ** 2) / (12 * d)


# ---------------------------------------------------------------------------------------------
# separation and the label table
# ---------------------------------------------------------------------------------------------


def test_two_touching_balls_are_separated(balls):
    """A and B touch (one connected component) yet come out as two particles; S (3 µm, below
    the 4 µm minimum) is in no particle; E is flagged as cut by the border."""
    assert [p.label for p in balls.particles] == [1, 2, 3]
    a, b, e = balls.particles
    (ca, ra), (cb, rb), (ce, _) = BALLS["A"], BALLS["B"], BALLS["E"]
    for p, c in ((a, ca), (b, cb), (e, ce)):
        assert balls.labels[tuple(int(x / VOX) for x in c)] == p.label
    assert not a.touches_border and not b.touches_border and e.touches_border
    # the pair's union volume to 1.5 % (voxelisation); the neck cut shares the lens
    union = 4 / 3 * np.pi * (ra**3 + rb**3) - _lens(ra, rb, cb[0] - ca[0])
    assert a.volume_um3 + b.volume_um3 == pytest.approx(union, rel=0.015)
    for p, r in ((a, ra), (b, rb)):
        ball = 4 / 3 * np.pi * r**3
        assert ball - _lens(ra, rb, cb[0] - ca[0]) - 0.015 * ball <= p.volume_um3 <= 1.015 * ball
        assert p.equivalent_diameter_um == pytest.approx((6 * p.volume_um3 / np.pi) ** (1 / 3))
    # centroids within a voxel of the centres (the neck cut moves them a little along axis 0)
    np.testing.assert_allclose(a.centroid_um, ca, atol=VOX)
    np.testing.assert_allclose(b.centroid_um, cb, atol=VOX)
    assert a.sphericity > 0.97 and b.sphericity > 0.97  # balls with a small flat cut
    # S: 4/3 pi 1.5^3 = 14.1 µm³ of phase in no particle
    s_vol = balls.unassigned_voxels * VOX**3
    assert s_vol == pytest.approx(4 / 3 * np.pi * 1.5**3, rel=0.05)
    assert len(balls.interior) == 2


def test_sphericity_closed_forms():
    """Sphere: 1; prolate spheroid a = b = 2, c = 4 µm: pi^(1/3) (6V)^(2/3) / A with the exact
    area 2 pi a^2 (1 + c/(a e) asin e); tolerance 0.015 (voxel 0.2 µm, also anisotropic)."""
    a, c = 2.0, 4.0
    e = np.sqrt(1 - a * a / (c * c))
    area = 2 * np.pi * a * a * (1 + c / (a * e) * np.arcsin(e))
    exact = np.pi ** (1 / 3) * (6 * 4 / 3 * np.pi * a * a * c) ** (2 / 3) / area
    for vox in (np.full(3, 0.2), np.array([0.2, 0.25, 0.3])):
        n = np.ceil(np.array([10.0, 6.0, 6.0]) / vox).astype(int)
        X = np.meshgrid(
            *((np.arange(k) + 0.5) * v - k * v / 2 for k, v in zip(n, vox, strict=True)),
            indexing="ij",
        )
        ball = X[0] ** 2 + X[1] ** 2 + X[2] ** 2 <= 2.5**2
        spheroid = (X[0] / c) ** 2 + (X[1] / a) ** 2 + (X[2] / a) ** 2 <= 1
        assert sphericity(ball, vox) == pytest.approx(1.0, abs=0.015)
        assert sphericity(spheroid, vox) == pytest.approx(exact, abs=0.015)
    assert exact < 0.94  # the test can tell the two apart


def test_anisotropic_voxels_and_resampling(balls):
    """The same balls scanned with voxels 0.2 x 0.25 x 0.3 µm, and resampled to 0.5 µm: the
    same particles, centroids within 0.3 µm, volumes of A and B within 3 % (resampling by 2
    counts the voxels half inside as inside: +2 % here; E's cut face adds more)."""
    vox = np.array([0.2, 0.25, 0.3])
    aniso = separate_volume(balls_volume(vox), vox, label_value=1)
    coarse = separate_volume(balls_volume(), VOX, label_value=1, resample_um=0.5)
    np.testing.assert_allclose(coarse.voxel_um, 0.5)
    assert coarse.labels.shape == (48, 40, 40)
    for other in (aniso, coarse):
        assert len(other.particles) == 3
        for p, q in zip(balls.particles, other.particles, strict=True):
            if not p.touches_border:
                assert q.volume_um3 == pytest.approx(p.volume_um3, rel=0.03)
            np.testing.assert_allclose(q.centroid_um, p.centroid_um, atol=0.3)
            assert q.touches_border == p.touches_border
    # a voxel index of the scan selects the same particle after resampling
    centre_b = tuple(int(x / VOX) for x in BALLS["B"][0])
    assert select_particle(coarse, sel(voxel=centre_b))[0].label == 2


def test_label_table_of_the_real_crop(crop, tmp_path):
    """nrel_nmc1 crop, voxel 0.4 µm, min diameter 4 µm: 136 particles, 52 of them inside the crop;
    labels by decreasing volume; the table accounts for the whole phase."""
    assert crop.min_diameter_um == DEFAULT_MIN_DIAMETER_UM == 4.0
    assert len(crop.particles) == 136 and len(crop.interior) == 52
    vols = [p.volume_um3 for p in crop.particles]
    assert vols == sorted(vols, reverse=True)
    assert crop.particles[0].volume_um3 == pytest.approx(2406.2, abs=0.1)
    assert not crop.particles[0].touches_border
    assert crop.unassigned_voxels / crop.phase_voxels < 0.005
    n = crop.labels.shape
    for p in crop.particles:
        touching = any(a == 0 or b == m for (a, b), m in zip(p.bbox, n, strict=True))
        assert p.touches_border == touching
        assert p.voxels == np.count_nonzero(crop.labels == p.label)
    assert min(p.equivalent_diameter_um for p in crop.interior) > 4.0
    assert all(0.85 < p.sphericity < 1.0 for p in crop.interior)
    text = crop.table()
    assert "136 particles, 52 not touching the border" in text
    assert len(text.splitlines()) == 2 + 136
    crop.write_csv(tmp_path / "t.csv")
    rows = (tmp_path / "t.csv").read_text().splitlines()
    assert rows[0].startswith("label,volume_um3,equivalent_diameter_um,centroid_0_um")
    assert len(rows) == 137


# ---------------------------------------------------------------------------------------------
# selection and its errors
# ---------------------------------------------------------------------------------------------


def test_selection_by_label_voxel_point_and_largest(balls):
    cb = BALLS["B"][0]
    assert select_particle(balls, sel(largest_interior=True)) == (
        balls.particles[0],
        {"by": "largest_interior", "label": 1},
    )
    assert select_particle(balls, sel(label=2))[0].label == 2
    assert select_particle(balls, sel(voxel=[int(x / VOX) for x in cb]))[0].label == 2
    p, how = select_particle(balls, sel(point_um=cb))
    assert p.label == 2 and how == {"by": "point_um", "point_um": list(cb), "label": 2}
    # a border particle only with allow_border
    assert select_particle(balls, sel(label=3), allow_border=True)[0].touches_border


@pytest.mark.parametrize(
    "selection, message",
    [
        (sel(point_um=(2.0, 18.0, 18.0)), "point_um [2.0, 18.0, 18.0] lies in no particle"),
        (sel(point_um=(7.0, 3.0, 3.0)), "narrower than min_diameter_um = 4 µm"),
        (sel(point_um=(7.0, 3.0, 30.0)), "lies outside the volume (extent 24, 20, 20 µm"),
        (sel(voxel=(0, 0, 80)), "voxel [0, 0, 80] lies outside the volume (shape [96, 80, 80])"),
        (sel(label=3), "particle 3 (5.66 µm) touches the crop border"),
        (sel(label=9), "no particle 9 (labels 1..3"),
    ],
)
def test_selection_errors(balls, selection, message):
    with pytest.raises(InputError) as exc:
        select_particle(balls, selection)
    assert message in str(exc.value) and "balls.npy" in str(exc.value)


def test_selection_errors_name_the_fix(balls):
    with pytest.raises(InputError, match="nearest particle is label 1, 1.50 µm away"):
        select_particle(balls, sel(point_um=(7.0, 5.2, 10.0)))
    with pytest.raises(InputError, match="touches the crop border.*allow_border: true"):
        select_particle(balls, sel(label=3))


def test_no_particle_of_the_requested_size():
    with pytest.raises(
        InputError, match=r"no particle of the requested size: .* diameter of 6.60 µm"
    ):
        separate_volume(balls_volume(), VOX, label_value=1, min_diameter_um=8.0)


def test_every_particle_cut_by_the_crop():
    """A 5.5 µm slab through the balls: every particle touches the crop border."""
    slab = balls_volume()[:, :, 18:40]
    sep = separate_volume(slab, VOX, label_value=1, source="slab.npy")
    assert sep.particles and not sep.interior
    with pytest.raises(InputError, match="largest_interior: all 3 particles .* touch the crop"):
        select_particle(sep, sel(largest_interior=True))


@pytest.mark.parametrize(
    "volume, label, message",
    [
        (np.ones((20, 20, 20), np.uint8), 1, "one phase only (every voxel is 1)"),
        (np.full((20, 20, 20), 90.0), None, "one phase only (every voxel is 90.0)"),
        (_shell(), 1, "label 1 fills it after hole filling"),
        (balls_volume(), 5, "label_value 5 does not occur in the volume (values: 0, 1, 2)"),
        (balls_volume(), None, "looks segmented (values 0, 1, 2)"),
        (np.zeros((20, 20), np.uint8), 1, "expected a 3D volume"),
    ],
)
def test_phase_errors(volume, label, message):
    with pytest.raises(InputError) as exc:
        phase_mask(volume, label, "v.npy")
    assert message in str(exc.value)


def test_otsu_on_grey_values():
    """A grey-scale scan of the balls (noise, blur) gives the same two interior particles."""
    from scipy import ndimage

    rng = np.random.default_rng(0)
    grey = np.where(balls_volume() == 1, 170.0, 60.0) + rng.normal(0, 15, (96, 80, 80))
    grey = ndimage.gaussian_filter(grey, 1.0)
    sep = separate_volume(grey, VOX, source="grey.npy")
    assert "(Otsu)" in sep.rule and len(sep.interior) == 2
    assert sep.interior[0].volume_um3 == pytest.approx(4 / 3 * np.pi * 3.5**3, rel=0.05)


# ---------------------------------------------------------------------------------------------
# case file
# ---------------------------------------------------------------------------------------------


def test_case_file_selection_forms():
    base = {"source": "ct", "file": "x.npy", "voxel_size_um": 0.4, "label_value": 1}
    p = ParticleConfig.model_validate({**base, "select": "largest_interior"})
    assert p.select.largest_interior and p.select.label is None
    assert ParticleConfig.model_validate({**base, "select": {"label": 3}}).select.label == 3
    p = ParticleConfig.model_validate({**base, "select": {"voxel": [1, 2, 3]}})
    assert p.select.voxel == (1, 2, 3)
    p = ParticleConfig.model_validate(
        {**base, "voxel_size_um": [0.3, 0.4, 0.4], "select": {"point_um": [1, 2, 3.5]}}
    )
    assert p.select.point_um == (1.0, 2.0, 3.5) and p.voxel_size_um == (0.3, 0.4, 0.4)
    # a CT particle's size is unknown before segmentation: no check against diameter_um
    GeometryConfig.model_validate(
        {"particle": {**base, "select": "largest_interior"}, "binder_outer_diameter_um": 12}
    )
    with pytest.raises(ValueError, match="rescale_to_diameter_um"):
        GeometryConfig.model_validate(
            {
                "particle": {**base, "select": "largest_interior", "rescale_to_diameter_um": 14},
                "binder_outer_diameter_um": 12,
            }
        )


@pytest.mark.parametrize(
    "particle, message",
    [
        ({"select": "largest"}, "unknown selection 'largest': use largest_interior"),
        ({"select": {"label": 2, "voxel": [1, 2, 3]}}, "exactly one of label, voxel, point_um"),
        ({"select": {}}, "exactly one of label, voxel, point_um"),
        ({"select": {"lable": 2}}, "select.lable: unknown key; did you mean 'label'?"),
        ({"select": {"label": 0}}, "select.label"),
        ({"label_value": 1}, "label_value: only for a CT electrode scan"),
        ({"voxel_size_um": [0.4, 0.4, 0.5]}, "voxel_size_um with three values: only for"),
        ({"source": "sphere", "select": {"label": 1}}, "'select' is for source 'ct'"),
    ],
)
def test_case_file_errors(tmp_path, particle, message):
    case = {
        "geometry": {
            "particle": {"source": "ct", "file": "x.npy", "voxel_size_um": 0.4, **particle}
        },
        "protocol": [{"type": "cc", "c_rate": 1.0, "until_voltage_V": 4.2}],
    }
    path = tmp_path / "case.yaml"
    path.write_text(yaml.safe_dump(case))
    with pytest.raises(InputError) as exc:
        load_case(path)
    assert message in str(exc.value) and "geometry.particle" in str(exc.value)


def test_example_case_is_valid():
    rc = load_case(Path(__file__).resolve().parent.parent / "examples" / "ct_electrode.yaml")
    p = rc.case.geometry.particle
    assert p.select.largest_interior and p.label_value == 1 and p.rescale_to_diameter_um == 14


# ---------------------------------------------------------------------------------------------
# meshing
# ---------------------------------------------------------------------------------------------


def _ct_geometry(file, select, grains=50, binder=20.0, h=0.4, **particle):
    return GeometryConfig.model_validate(
        {
            "particle": {
                "source": "ct",
                "file": str(file),
                "voxel_size_um": 0.4,
                "label_value": 1,
                "select": select,
                **particle,
            },
            "grains": {"count": grains, "seed": 1},
            "binder_outer_diameter_um": binder,
            "mesh": {"particle_size_um": h, "binder_size_um": 2.0},
        }
    )


@pytest.mark.serial
def test_interior_particle_of_the_crop_meshes(crop, tmp_path):
    """Particle 63 (7.3 µm, interior) picked by a µm point: 50 grains, min SICN >= 0.02, meshed
    volume within 3 % of its voxel volume; mesh.json records scan, selection and volumes."""
    p = crop.get(63)
    geo = _ct_geometry(CROP, {"point_um": list(p.centroid_um)}, binder=14.0)
    info = json.loads((build_bundle(geo, tmp_path / "b", verbose=False) / "mesh.json").read_text())
    ct = info["ct"]
    assert info["grains"] == 50 and info["min_sicn"] >= 0.02
    assert ct["selection"] == {"by": "point_um", "point_um": list(p.centroid_um), "label": 63}
    assert ct["route"] == "radial" and ct["particle"]["label"] == 63
    assert ct["file"] == str(CROP) and ct["phase"] == "label 1" and ct["interior_particles"] == 52
    assert ct["segmented_volume_um3"] == pytest.approx(p.volume_um3)
    assert ct["meshed_volume_um3"] == pytest.approx(info["particle_volume_um3"])
    assert abs(ct["meshed_over_segmented_volume"] - 1) < 0.03
    assert info["particle_shape"]["kind"] == "ct"


@pytest.mark.serial
def test_rescaled_particle_and_binder_check(crop, tmp_path):
    """rescale_to_diameter_um scales the particle (volume ratio kept); a binder shell that does
    not enclose the particle is refused."""
    geo = _ct_geometry(
        CROP, {"label": 91}, grains=0, binder=10.0, h=0.5, rescale_to_diameter_um=7.0
    )
    info = json.loads((build_bundle(geo, tmp_path / "b", verbose=False) / "mesh.json").read_text())
    ct = info["ct"]
    assert ct["scale"] == pytest.approx(7.0 / crop.get(91).equivalent_diameter_um)
    assert ct["segmented_volume_um3"] == pytest.approx(np.pi / 6 * 7.0**3)
    assert abs(ct["meshed_over_segmented_volume"] - 1) < 0.03
    with pytest.raises(InputError, match="binder_outer_diameter_um .* must enclose the particle"):
        build_bundle(_ct_geometry(CROP, {"label": 91}, binder=6.5), tmp_path / "c", verbose=False)


def hook_volume() -> np.ndarray:
    """A ball with a curled tube (not star-shaped about its centroid) touching a second ball."""
    vox, n = 0.3, 100
    ax = (np.arange(n) + 0.5) * vox - n * vox / 2
    X, Y, Z = np.meshgrid(ax, ax, ax, indexing="ij")
    rho, ang = np.hypot(X, Y), np.mod(np.arctan2(Y, X), 2 * np.pi)
    ball = X**2 + Y**2 + Z**2 <= 16
    other = X**2 + Y**2 + (Z + 7.5) ** 2 <= 16
    tube = ((rho - 5.5) ** 2 + Z**2 <= 1.44) & (ang < 1.5 * np.pi)
    stub = (np.abs(Y) <= 1) & (np.abs(Z) <= 1) & (X >= 3) & (X <= 5.5)
    return (ball | other | tube | stub).astype(np.uint8)


@pytest.mark.serial
@pytest.mark.slow
def test_not_star_shaped_particle_takes_the_faceted_route(tmp_path):
    """The hooked ball is separated from its neighbour and meshed through its marching-cubes
    surface (one grain, coarse): watertight facets, volume within 3 % of the voxel volume."""
    np.save(tmp_path / "hook.npy", hook_volume())
    geo = _ct_geometry(
        tmp_path / "hook.npy", {"point_um": [15, 15, 15]}, grains=1, h=0.6, voxel_size_um=0.3
    )
    info = json.loads((build_bundle(geo, tmp_path / "b", verbose=False) / "mesh.json").read_text())
    assert info["ct"]["route"] == "faceted" and info["particle_shape"]["kind"] == "faceted"
    assert info["ct"]["particles"] == 2 and info["ct"]["particle"]["label"] == 1
    assert abs(info["ct"]["meshed_over_segmented_volume"] - 1) < 0.03
    assert info["min_sicn"] > 0.02
    assert 200 <= info["particle_shape"]["triangles"] <= 2000


def test_mesher_failure_is_an_input_error(tmp_path, monkeypatch):
    """A gmsh failure (plain Exception) becomes an InputError naming what to change (crop
    particle 101 with grains.seed 1 gave 'HXT 3D mesh failed' at commit c727b93)."""
    from polycrack.meshing import build

    def fail(*args, **kwargs):
        raise Exception("HXT 3D mesh failed")

    monkeypatch.setattr(build, "assemble", fail)
    geo = _ct_geometry(CROP, {"label": 91}, grains=0, binder=10.0, h=0.5)
    with pytest.raises(InputError, match=r"HXT 3D mesh failed.*another geometry.grains.seed"):
        build_bundle(geo, tmp_path / "b", verbose=False)


def test_single_particle_route_names_the_fix(tmp_path):
    """Without select, the crop's particle network is one 'particle': the error says what to do."""
    geo = GeometryConfig.model_validate(
        {"particle": {"source": "ct", "file": str(CROP), "voxel_size_um": 0.4}}
    )
    with pytest.raises(InputError, match="not star-shaped.*geometry.particle.select"):
        build_bundle(geo, tmp_path / "b", verbose=False)


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------


def test_ct_particles_command(tmp_path, capsys):
    png, table = tmp_path / "p.png", tmp_path / "t.csv"
    argv = ["ct-particles", str(CROP), "--voxel-size-um", "0.4", "--label-value", "1"]
    assert main([*argv, "-o", str(png), "--csv", str(table)]) == 0
    out = capsys.readouterr().out
    assert "136 particles, 52 not touching the border" in out
    assert "label  volume_um3  eq_diameter_um" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20000
    assert len(table.read_text().splitlines()) == 137
    assert main([*argv, "--min-diameter-um", "40", "-o", str(png)]) == 2
    assert "no particle of the requested size" in capsys.readouterr().err
    assert main(argv[:4] + ["-o", str(png)]) == 2
    assert "looks segmented (values 0, 1, 2)" in capsys.readouterr().err
    assert main([*argv[:3], "0.4", "0.4", "-o", str(png)]) == 2
    assert "one positive voxel size or three" in capsys.readouterr().err


@pytest.mark.mpi
def test_mesh_command_refuses_a_border_particle_on_every_rank(mpi_tmp_path, capsys):
    """`polycrack mesh` under mpirun: the InputError of rank 0 is exit 2 on every rank."""
    case = {
        "geometry": {
            "particle": {
                "source": "ct",
                "file": str(CROP),
                "voxel_size_um": 0.4,
                "label_value": 1,
                "select": {"label": 2},
            },
            "grains": {"count": 10},
        },
        "protocol": [{"type": "cc", "c_rate": 1.0, "until_voltage_V": 4.2}],
    }
    from mpi4py import MPI

    path = mpi_tmp_path / "case.yaml"
    if MPI.COMM_WORLD.rank == 0:
        path.write_text(yaml.safe_dump(case))
    MPI.COMM_WORLD.barrier()
    assert main(["mesh", str(path), "-o", str(mpi_tmp_path / "m")]) == 2  # on every rank
    err = capsys.readouterr().err
    if MPI.COMM_WORLD.rank == 0:  # the agreed message is printed once, by rank 0
        assert "particle 2 (15.80 µm) touches the crop border" in err
