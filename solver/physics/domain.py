"""Mesh bundle -> distributed DOLFINx mesh with tags, grain table and the particle submesh.

``ensure_bundle`` is the one "build the mesh if it is missing" entry (docs/user-guide.md section 4):
rank 0 meshes with gmsh, the others wait. ``load_bundle`` reads ``mesh.msh`` on rank 0 and
distributes it with shared-facet ghosting (interior-facet integrals over grain boundaries need
it), optionally refines it uniformly in parallel (``refine_levels``) carrying cell and facet
tags over, and reads ``grains.csv`` and ``mesh.json``.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import dolfinx_solver  # noqa: F401
import numpy as np
from dolfinx import mesh as dmesh
from dolfinx.io import gmsh as dgmsh
from mpi4py import MPI

from ..collective import collective
from ..errors import InputError
from ..meshing.tags import BINDER


@dataclass
class ParticleSubmesh:
    """The particle cells as their own mesh, with the map back to the parent and tags."""

    mesh: dmesh.Mesh
    entity_map: Any
    vertex_map: Any
    cell_tags: dmesh.MeshTags
    facet_tags: dmesh.MeshTags


@dataclass
class Domain:
    """A loaded mesh bundle (µm). ``axes[g - 1]`` is the c-axis of grain ``g``."""

    mesh: dmesh.Mesh
    cell_tags: dmesh.MeshTags
    facet_tags: dmesh.MeshTags
    grain_ids: np.ndarray
    axes: np.ndarray
    seeds_um: np.ndarray
    info: dict
    path: Path
    center: np.ndarray = field(default_factory=lambda: np.zeros(3))
    particle_volume_um3: float = 0.0

    @property
    def particle_radius_um(self) -> float:
        """Equivalent radius (3V/4π)^(1/3) of the particle."""
        return (3.0 * self.particle_volume_um3 / (4.0 * np.pi)) ** (1.0 / 3.0)

    @cached_property
    def _submesh(self) -> ParticleSubmesh:
        tdim = self.mesh.topology.dim
        self.mesh.topology.create_connectivity(tdim - 1, tdim)
        cells = self.cell_tags.indices[self.cell_tags.values != BINDER].astype(np.int32)
        sm, emap, vmap, _ = dmesh.create_submesh(self.mesh, tdim, cells)
        sm.topology.create_connectivity(tdim - 1, tdim)
        sct = dmesh.transfer_meshtags_to_submesh(self.cell_tags, sm, vmap, emap)
        sft = dmesh.transfer_meshtags_to_submesh(self.facet_tags, sm, vmap, emap)
        return ParticleSubmesh(
            sm,
            emap,
            vmap,
            sct[0] if isinstance(sct, tuple) else sct,
            sft[0] if isinstance(sft, tuple) else sft,
        )

    def particle_submesh(self) -> ParticleSubmesh:
        """The particle submesh (built once)."""
        return self._submesh


def bundle_is_complete(path: Path) -> bool:
    """All files of a bundle are present."""
    p = Path(path)
    return all((p / f).is_file() for f in ("mesh.msh", "grains.csv", "mesh.json"))


def ensure_bundle(geometry, out_dir: Path, comm: MPI.Comm = MPI.COMM_WORLD) -> Path:
    """The bundle for ``geometry`` in ``out_dir``, built on rank 0 if it is missing (collective)."""
    out = Path(out_dir)
    with collective(comm, f"mesh bundle {out}", "ensure_bundle"):
        if comm.rank == 0:
            if bundle_is_complete(out):
                same = _without_adapt(_read_info(out).get("settings"))
                if same != _without_adapt(geometry.model_dump(mode="json")):
                    raise InputError(
                        f"{out}: holds a mesh bundle for other geometry settings; "
                        "remove it or choose another output directory"
                    )
            else:
                from ..meshing import build_bundle

                build_bundle(geometry, out)
    return out


def _without_adapt(settings):
    """Geometry settings without ``mesh.adapt`` (a run-time choice: any bundle serves it)."""
    if isinstance(settings, dict) and isinstance(settings.get("mesh"), dict):
        return {**settings, "mesh": {k: v for k, v in settings["mesh"].items() if k != "adapt"}}
    return settings


def _read_info(path: Path) -> dict:
    """A bundle's ``mesh.json`` (errors name the file)."""
    f = Path(path) / "mesh.json"
    try:
        info = json.loads(f.read_text())
    except (ValueError, OSError) as exc:
        raise InputError(
            f"{f}: corrupt mesh bundle description ({exc}); build the bundle again"
        ) from None
    if not isinstance(info, dict):
        raise InputError(f"{f}: corrupt mesh bundle description (not a JSON object)")
    return info


def _read_grains(path: Path, grains: int | None = None) -> tuple[np.ndarray, ...]:
    """grain ids, unit c-axes and seeds (µm) from ``grains.csv``; ``grains``: expected count."""
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
        ids = np.array([int(r["grain_id"]) for r in rows], dtype=np.int32)
        axes = np.array([[float(r[f"axis_{c}"]) for c in "xyz"] for r in rows]).reshape(-1, 3)
        seeds = np.array([[float(r[f"seed_{c}_um"]) for c in "xyz"] for r in rows]).reshape(-1, 3)
    except (KeyError, ValueError, TypeError, OSError, csv.Error) as exc:
        raise InputError(
            f"{path}: damaged grain table ({type(exc).__name__}: {exc}); build the bundle again"
        ) from None
    problem = None
    if grains is not None and len(ids) != grains:
        problem = f"{len(ids)} grains, but mesh.json says {grains}"
    elif not np.array_equal(ids, np.arange(1, len(ids) + 1)):
        problem = "grain ids are not 1..N in order"
    elif not (np.isfinite(axes).all() and np.isfinite(seeds).all()):
        problem = "non-finite axis or seed"
    elif len(ids) and not np.allclose(np.linalg.norm(axes, axis=1), 1.0, atol=1e-6):
        problem = "c-axes are not unit vectors"
    if problem:
        raise InputError(f"{path}: damaged grain table ({problem}); build the bundle again")
    return ids, axes, seeds


def _read_msh_quietly(msh_path: Path, comm: MPI.Comm, partitioner):
    """``dolfinx.io.gmsh.read_from_msh`` on rank 0 without gmsh's progress output; a damaged
    file is an InputError on every rank."""
    import gmsh

    own = comm.rank == 0 and not gmsh.isInitialized()

    def done() -> None:
        if comm.rank == 0:
            gmsh.model.remove()
            if own:
                gmsh.finalize()

    if comm.rank == 0:
        if own:
            gmsh.initialize(["-noenv"])
        gmsh.option.setNumber("General.Terminal", 0)
        gmsh.model.add("bundle")
    try:
        with collective(comm, f"{msh_path}", "load_bundle.read"):
            if comm.rank == 0:
                try:
                    gmsh.merge(str(msh_path))
                    why = "" if gmsh.model.getPhysicalGroups(3) else "no tagged tetrahedra"
                except Exception as exc:  # gmsh raises plain Exception
                    why = str(exc)
                if why:
                    raise InputError(
                        f"{msh_path}: damaged mesh file (gmsh: {why}); build the bundle again"
                    )
    except InputError:
        done()
        raise
    data = dgmsh.model_to_mesh(gmsh.model, comm, 0, gdim=3, partitioner=partitioner)
    done()
    return data


def load_bundle(
    path: Path, comm: MPI.Comm = MPI.COMM_WORLD, refine_levels: int | None = None
) -> Domain:
    """Read a bundle on rank 0 and distribute it (collective); see the module docstring."""
    path = Path(path)
    with collective(comm, f"mesh bundle {path}", "load_bundle.info"):
        if not bundle_is_complete(path):
            raise InputError(f"{path}: not a mesh bundle (needs mesh.msh, grains.csv, mesh.json)")
        info = _read_info(path)
        try:
            levels = (
                refine_levels
                if refine_levels is not None
                else int(info.get("settings", {}).get("mesh", {}).get("refine_levels", 0))
            )
        except (AttributeError, TypeError, ValueError) as exc:
            raise InputError(f"{path / 'mesh.json'}: corrupt settings ({exc})") from None
    # transfer_meshtag does not support ghosted meshes: refine unghosted, then redistribute
    ghosts = dmesh.GhostMode.none if levels > 0 else dmesh.GhostMode.shared_facet
    part = dmesh.create_cell_partitioner(ghosts, 2)
    data = _read_msh_quietly(path / "mesh.msh", comm, part)
    msh, ct, ft = data.mesh, data.cell_tags, data.facet_tags
    for _ in range(levels):
        msh, ct, ft = _refine(msh, ct, ft)
        push_to_surfaces(msh, ft, info)
    if levels > 0:
        msh, ct, ft = reghost(msh, ct, ft)
    return _domain(msh, ct, ft, path, info)


def domain_on_mesh(msh, ct, ft, bundle: Path) -> Domain:
    """A :class:`Domain` of the bundle ``bundle`` (grains, description) on another mesh of the
    same particle, e.g. an adapted one (collective)."""
    with collective(msh.comm, f"mesh bundle {bundle}", "domain_on_mesh.info"):
        info = _read_info(Path(bundle))
    return _domain(msh, ct, ft, Path(bundle), info)


def _domain(msh, ct, ft, path: Path, info: dict) -> Domain:
    """The Domain of a distributed mesh with its tags: grains from ``path/grains.csv``, the
    particle volume (µm³) and centroid (µm) measured on the submesh."""
    comm = msh.comm
    with collective(comm, f"{path / 'grains.csv'}", "load_bundle.grains"):
        ids, axes, seeds = _read_grains(path / "grains.csv", info.get("grains"))
    dom = Domain(msh, ct, ft, ids, axes, seeds, info, path)
    import ufl
    from dolfinx import fem

    sub = dom.particle_submesh()
    one = fem.form(fem.Constant(sub.mesh, 1.0) * ufl.dx(domain=sub.mesh))
    vol = comm.allreduce(fem.assemble_scalar(one), op=MPI.SUM)
    X = ufl.SpatialCoordinate(sub.mesh)
    c = [
        comm.allreduce(fem.assemble_scalar(fem.form(X[i] * ufl.dx(domain=sub.mesh))), op=MPI.SUM)
        / vol
        for i in range(3)
    ]
    dom.particle_volume_um3 = vol
    dom.center = np.array(c)
    return dom


def _refine(msh, ct, ft):
    """One uniform refinement with cell and facet tags carried over.

    The mesh must be unghosted (``transfer_meshtag`` refuses ghosted meshes); ``reghost``
    redistributes with shared-facet ghosts afterwards. Plaza splits faces by their longest edge
    and breaks exact ties by vertex number, which depends on the partition: where a tied face is
    a grain boundary touching the interface, the pushed (non-planar) interface midpoints make
    the two grains' volumes differ slightly (~1e-6 relative) between rank counts, while the total
    volume and the tagged areas agree to ~1e-10.
    """
    tdim = msh.topology.dim
    msh.topology.create_entities(1)
    msh.topology.create_entities(tdim - 1)
    msh.topology.create_connectivity(tdim - 1, tdim)
    fine, parent_cell, parent_facet = dmesh.refine(
        msh, partitioner=None, option=dmesh.RefinementOption.parent_cell_and_facet
    )
    fine.topology.create_entities(tdim - 1)
    ct2 = dmesh.transfer_meshtag(ct, fine, parent_cell)
    ft2 = dmesh.transfer_meshtag(ft, fine, parent_cell, parent_facet)
    return fine, ct2, ft2


def push_to_surfaces(msh, ft, info: dict) -> None:
    """Move vertices of INTERFACE facets onto r(d) and of OUTER facets onto the binder sphere.

    New vertices of uniform refinement sit on chords (inside the curved surface by about
    h^2 / 8R); the particle shape r(d) is the spherical-harmonic series stored in ``mesh.json``.
    The flags are made consistent across ranks (reverse + forward scatter), and the new position
    depends only on the old one, so owned and ghost copies move identically.
    """
    from dolfinx import fem, la

    from ..meshing.shape import RadialShape
    from ..meshing.tags import INTERFACE, OUTER

    ps = info.get("particle_shape", {})
    if "radial_coefficients" not in ps:
        return
    shape = RadialShape(np.asarray(ps["radial_coefficients"]), int(ps["lmax"]))
    Rb = float(ps["binder_outer_radius_um"])
    msh.topology.create_connectivity(msh.topology.dim - 1, msh.topology.dim)
    V = fem.functionspace(msh, ("Lagrange", 1))
    node2dof = np.empty(msh.geometry.x.shape[0], dtype=np.int64)
    node2dof[msh.geometry.dofmaps[0].ravel()] = V.dofmap.list.ravel()
    x = msh.geometry.x
    for tag in (INTERFACE, OUTER):
        flag = fem.Function(V)
        dofs = fem.locate_dofs_topological(V, msh.topology.dim - 1, ft.find(tag))
        flag.x.array[dofs] = 1.0
        flag.x.scatter_reverse(la.InsertMode.add)
        flag.x.scatter_forward()
        nodes = np.flatnonzero(flag.x.array[node2dof] > 0)
        if len(nodes) == 0:
            continue
        p = x[nodes]
        d = np.linalg.norm(p, axis=1)
        r = shape.radius(p / d[:, None]) if tag == INTERFACE else np.full(len(p), Rb)
        x[nodes] = p * (r / d)[:, None]


def reghost(msh, ct, ft):
    """Redistribute with shared-facet ghosts through an XDMF round trip (comm-shared tmp dir)."""
    import shutil
    import tempfile

    comm = msh.comm
    tmp = tempfile.mkdtemp(prefix="polycrack_reghost_") if comm.rank == 0 else None
    tmp = Path(comm.bcast(tmp, root=0))
    f = tmp / "refined.xdmf"
    write_mesh_xdmf(msh, ct, ft, f)
    out = read_mesh_xdmf(f, comm)
    comm.barrier()
    if comm.rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def write_mesh_xdmf(msh, ct, ft, path: Path) -> None:
    """Write a mesh with its cell and facet tags to one XDMF file (collective)."""
    from dolfinx.io import XDMFFile

    tdim = msh.topology.dim
    msh.topology.create_connectivity(tdim - 1, tdim)
    ct.name, ft.name = "cell_tags", "facet_tags"
    with XDMFFile(msh.comm, str(path), "w") as xf:
        xf.write_mesh(msh)
        xf.write_meshtags(ct, msh.geometry)
        xf.write_meshtags(ft, msh.geometry)


def read_mesh_xdmf(path: Path, comm: MPI.Comm):
    """(mesh, cell tags, facet tags) of :func:`write_mesh_xdmf`'s file, distributed with
    shared-facet ghosts (collective). The same file read on the same ranks gives the same
    partition, so a restart on an adapted mesh sees the mesh the run had."""
    from dolfinx.io import XDMFFile

    with XDMFFile(comm, str(path), "r") as xf:
        m2 = xf.read_mesh(ghost_mode=dmesh.GhostMode.shared_facet, name="mesh")
        tdim = m2.topology.dim
        m2.topology.create_entities(tdim - 1)
        m2.topology.create_connectivity(tdim - 1, tdim)
        ct2 = xf.read_meshtags(m2, name="cell_tags")
        ft2 = xf.read_meshtags(m2, name="facet_tags")
    return m2, ct2, ft2
