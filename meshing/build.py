"""``build_bundle``: geometry settings -> mesh bundle directory (docs/user-guide.md section 4).

Bundle contents: ``mesh.msh`` (gmsh 4.1, physical groups = tags of meshing/tags.py),
``grains.csv`` (grain_id, seed_x_um, seed_y_um, seed_z_um, axis_x, axis_y, axis_z, volume_um3) and
``mesh.json`` (counts, volumes, areas, quality, seed, settings, timings, content hash).
Deterministic: the same settings and seeds give the same bundle (the same ``content_sha256``) on
any x86-64 CPU, BLAS kernel and BLAS thread count (meshing/detmath.py). Serial (call on one rank);
the solver distributes it.
"""

from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path

import gmsh
import numpy as np

from ..errors import InputError
from .assemble import assemble, mesh_quality
from .detmath import cbrt, snap
from .digest import bundle_digest
from .shape import particle_shape
from .tags import BINDER, GB, INTERFACE
from .tessellation import tessellate, tessellate_faceted

FORMAT = 1


def _tet_volumes(nodes_xyz: dict[int, np.ndarray], conn: np.ndarray) -> np.ndarray:
    P = np.array([nodes_xyz[int(t)] for t in conn.ravel()]).reshape(-1, 4, 3)
    return (
        np.abs(
            np.einsum("ij,ij->i", P[:, 1] - P[:, 0], np.cross(P[:, 2] - P[:, 0], P[:, 3] - P[:, 0]))
        )
        / 6.0
    )


def _tri_areas(nodes_xyz: dict[int, np.ndarray], conn: np.ndarray) -> float:
    P = np.array([nodes_xyz[int(t)] for t in conn.ravel()]).reshape(-1, 3, 3)
    return float(0.5 * np.linalg.norm(np.cross(P[:, 1] - P[:, 0], P[:, 2] - P[:, 0]), axis=1).sum())


def _group_measures(dim: int, tag: int, nodes) -> float:
    total = 0.0
    for ent in gmsh.model.getEntitiesForPhysicalGroup(dim, tag):
        types, _, conns = gmsh.model.mesh.getElements(dim, ent)
        for t, c in zip(types, conns, strict=True):
            if dim == 3 and t == 4:
                total += float(_tet_volumes(nodes, np.asarray(c)).sum())
            elif dim == 2 and t == 2:
                total += _tri_areas(nodes, np.asarray(c))
    return total


def _assemble(*args, **kwargs) -> dict:
    """:func:`assemble`, with gmsh's own failures (plain ``Exception``) as InputError: the
    command line turns that into exit 2 with a message on every rank instead of a traceback on
    rank 0 and the other ranks waiting for it. Seen once: crop particle 101 (an elongated CT
    particle, largest radius 1.7 x its equivalent radius) with grains.seed 1, "a segment and a
    facet intersect" 0.6 µm from the centre after the radial morph; seeds 2 and 3 mesh."""
    try:
        return assemble(*args, **kwargs)
    except InputError:
        raise
    except Exception as exc:  # gmsh raises Exception("HXT 3D mesh failed") etc.
        raise InputError(
            f"gmsh could not mesh this geometry ({exc}); meshing is deterministic, so the same "
            "settings fail again: try another geometry.grains.seed or "
            "geometry.mesh.particle_size_um"
        ) from None


def build_bundle(geometry, out_dir: Path, *, verbose: bool = True) -> Path:
    """Mesh ``geometry`` (a :class:`solver.config.GeometryConfig`) into the bundle ``out_dir``.

    No BLAS call and no CPU-dependent function feeds the geometry (meshing/detmath.py): with the
    shape fit by ``np.linalg.lstsq`` the demo gave 25 673-25 903 tets depending on the OpenBLAS
    kernel (benchmarks/results/mesh_determinism_before.json). gmsh ignores the user's option
    files and runs on one thread.
    """
    out = Path(out_dir)
    t0 = time.perf_counter()
    p, g, m = geometry.particle, geometry.grains, geometry.mesh
    faceted = ct = shape = None
    if p.source == "ct" and getattr(p, "select", None) is not None:
        # an electrode scan: separate the touching particles and pick one (meshing/ct.py)
        from .ct import ct_geometry

        ct = ct_geometry(p, m.particle_size_um, verbose=verbose)
        shape, faceted = ct.shape, ct.faceted
    try:
        if ct is None:
            shape = particle_shape(p)
    except InputError as exc:
        # a closed surface that is not star-shaped: faceted-surface route (meshing/faceted.py)
        if p.source != "surface" or "not star-shaped" not in str(exc):
            raise
        from .faceted import faceted_surface

        faceted = faceted_surface(p.file, m.particle_size_um)
        shape = None
        if verbose:
            print(
                f"{p.file}: not star-shaped -> faceted-surface route "
                f"({len(faceted.triangles)} facets); expect slivers where grain boundaries "
                "cross facet edges (see min_sicn in mesh.json)"
            )
    t_shape = time.perf_counter() - t0
    Rb = geometry.binder_outer_diameter_um / 2.0
    if faceted is not None:
        R0 = rmax = float(np.linalg.norm(faceted.points, axis=1).max())
    else:
        R0 = float(
            snap(
                shape.radius(np.eye(3))[0]
                if shape.is_sphere
                else cbrt(3.0 * shape.volume_um3() / (4.0 * np.pi))
            )
        )
        rmax = float(shape.radius(np.random.default_rng(0).normal(size=(4000, 3))).max())
    if rmax >= Rb * 0.98:
        raise InputError(
            f"geometry.binder_outer_diameter_um ({2 * Rb}) must enclose the particle "
            f"(largest radius {rmax:.2f} µm)"
        )
    n = max(int(g.count), 1)
    vol_p = faceted.volume_um3 if faceted is not None else shape.volume_um3()
    per_grain = vol_p / n
    if g.count > 1 and per_grain < 4.0 * m.particle_size_um**3:
        raise InputError(
            f"geometry.grains.count = {g.count} grains cannot be resolved with "
            f"mesh.particle_size_um = {m.particle_size_um}: a grain would hold about "
            f"{per_grain / (m.particle_size_um**3 / 6):.0f} elements (need >= 24); use fewer grains or a "
            "smaller particle_size_um"
        )
    t1 = time.perf_counter()
    if faceted is not None:
        tess = tessellate_faceted(faceted.points, faceted.triangles, n, g.seed, g.min_edge_um)
    else:
        tess = tessellate(shape, n, g.seed, R0=R0, min_edge=g.min_edge_um)
    t_tess = time.perf_counter() - t1

    gmsh.initialize(readConfigFiles=False, interruptible=False)
    try:
        gmsh.option.setNumber("General.NumThreads", 1)
        gmsh.option.setNumber("General.Terminal", 1 if verbose else 0)
        gmsh.option.setNumber("General.Verbosity", 2)
        gmsh.model.add("polycrack")
        stats = _assemble(
            tess,
            shape,
            Rb,
            m.particle_size_um,
            m.binder_size_um,
            g.count <= 1,
            verbose,
            faceted=(faceted.points, faceted.triangles) if faceted is not None else None,
        )
        qual = mesh_quality()
        tags, xyz, _ = gmsh.model.mesh.getNodes()
        nodes = dict(zip((int(t) for t in tags), xyz.reshape(-1, 3), strict=True))
        vols = np.array([_group_measures(3, i + 1, nodes) for i in range(n)])
        binder_vol = _group_measures(3, BINDER, nodes)
        gb_area = _group_measures(2, GB, nodes) if g.count > 1 else 0.0
        if_area = _group_measures(2, INTERFACE, nodes)
        out.mkdir(parents=True, exist_ok=True)
        gmsh.option.setNumber("Mesh.MshFileVersion", 4.1)
        tmp = out / "mesh.msh.tmp.msh"
        gmsh.write(str(tmp))
        os.replace(tmp, out / "mesh.msh")
    finally:
        gmsh.finalize()
    empty = [i + 1 for i, v in enumerate(vols) if v <= 0]
    if empty:
        raise InputError(
            f"grains {empty[:10]} have no elements; use a smaller mesh.particle_size_um"
        )
    with open(out / "grains.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            [
                "grain_id",
                "seed_x_um",
                "seed_y_um",
                "seed_z_um",
                "axis_x",
                "axis_y",
                "axis_z",
                "volume_um3",
            ]
        )
        for i in range(n):
            w.writerow([i + 1, *tess.seeds_um[i].tolist(), *tess.axes[i].tolist(), float(vols[i])])
    info = {
        "format": FORMAT,
        "generator": "polycrack.meshing (gmsh OCC Voronoi B-rep, reference-sphere morph)",
        "gmsh_version": gmsh.__version__,
        "settings": geometry.model_dump(mode="json"),
        "particle_shape": (
            {
                "kind": shape.kind,
                "lmax": shape.lmax,
                "fit_rms_um": shape.fit_rms_um,
                "equivalent_diameter_um": shape.equivalent_diameter_um(),
                "reference_radius_um": R0,
                "segmented_volume_um3": shape.voxel_volume_um3,
                "surface_volume_um3": getattr(shape, "surface_volume_um3", None),
                "radial_coefficients": shape.coefficients.tolist(),
                "binder_outer_radius_um": Rb,
            }
            if shape is not None
            else {
                "kind": "faceted",
                "file": str(p.file),
                "triangles": len(faceted.triangles),
                "centroid_shift_um": faceted.shift.tolist(),
                "surface_volume_um3": faceted.volume_um3,
                "bounding_radius_um": R0,
                "binder_outer_radius_um": Rb,
            }
        ),
        "grains": n,
        "regularisation_defects_left": tess.defects,
        "seam_clearance_um": stats.get("seam_clearance_um"),
        "grains_in_several_pieces": stats.get("grains_in_several_pieces", []),
        "particle_volume_um3": float(vols.sum()),
        "shape_volume_um3": vol_p,
        "binder_volume_um3": binder_vol,
        "gb_area_um2": gb_area,
        "interface_area_um2": if_area,
        **qual,
        "content_sha256": None,
        "timings_s": {
            "shape": t_shape,
            "tessellation": t_tess,
            **{k: v for k, v in stats.items() if k.endswith("_s")},
            "total": time.perf_counter() - t0,
        },
    }
    if ct is not None:
        seg = ct.record["segmented_volume_um3"]
        info["ct"] = {
            **ct.record,
            "meshed_volume_um3": float(vols.sum()),
            "meshed_over_segmented_volume": float(vols.sum()) / seg,
        }
    # the same hash means the same mesh, tags and grains.csv (meshing/digest.py)
    info["content_sha256"] = bundle_digest(out)["bundle"]
    (out / "mesh.json").write_text(json.dumps(info, indent=1))
    if verbose:
        print(
            f"mesh bundle {out}: {n} grains, {qual['tets']} tets, min SICN {qual['min_sicn']:.3f}, "
            f"{time.perf_counter() - t0:.1f} s"
        )
    return out
