"""Size guard: unknowns and memory of a case before anything is meshed or allocated.

The mesh counts come from :mod:`meshing.estimate` (or from the bundle's ``mesh.json`` when the
case names one); unknowns follow from the fields the case solves, and memory from the
measurements in README.md ("Cost, memory and which solver to pick") and
benchmarks/results/mesh_scaling.json. ``polycrack check`` prints the estimate; ``polycrack mesh``
and ``run`` refuse (exit 2) a case whose estimate exceeds the memory available on this node
(``MemAvailable``) or the ``--max-memory`` given.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError
from .meshing.estimate import GMSH_BASE_BYTES, GMSH_BYTES_PER_TET, MeshEstimate, estimate_mesh

#: resident memory of one rank after the imports (DOLFINx, PETSc, gmsh; README: ≈ 216-220 MB)
IMPORT_BYTES_PER_RANK = 0.22e9
#: peak memory per unknown, summed over ranks, above the imports: iterative solvers (fieldsplit,
#: GAMG) with the staggered fallback running (6.3 KB on 2 ranks; 3-4.3 KB without it) and a
#: fresh MUMPS LU (20-35 KB at 163 k unknowns; README)
BYTES_PER_UNKNOWN_ITERATIVE = 6.3e3
BYTES_PER_UNKNOWN_LU = 35e3
#: peak while uniform refinement runs, per final cell summed over ranks (mesh_scaling.json: the
#: 400-grain bundle refined twice on 2 ranks, 12.5 M cells, 3.33 GB per rank)
REFINE_BYTES_PER_CELL = 0.55e3
#: the ``auto`` solver choice switches from MUMPS to fieldsplit above this (polycrack.problems.coupled)
AUTO_MUMPS_MAX_UNKNOWNS = 20_000


@dataclass
class SizeEstimate:
    """Estimated unknowns and memory (bytes, summed over ``ranks``) of a case."""

    mesh: MeshEstimate
    from_bundle: bool
    ranks: int
    unknowns: int
    linear: str  # "lu" or "iterative"
    run_bytes: float  # peak of the run, all ranks, imports included
    meshing_bytes: float  # gmsh on one rank while the bundle is built (0 if it exists)

    def summary(self) -> str:
        """One line for ``polycrack check`` and error messages."""
        m = self.mesh
        src = "from the bundle" if self.from_bundle else "estimated"
        refine = f" after {m.refine_levels} refinement(s)" if m.refine_levels else ""
        parts = [
            f"size {src}: {_count(m.cells)} cells{refine} ({_count(m.particle_cells)} in the "
            f"particle), {_count(self.unknowns)} unknowns",
            f"memory ≈ {_gb(self.run_bytes)} on {_ranks(self.ranks)} ({self.linear} solver)",
        ]
        if self.meshing_bytes:
            parts.append(f"meshing ≈ {_gb(self.meshing_bytes)}")
        return ", ".join(parts)


def _ranks(n: int) -> str:
    return f"{n} rank" + ("s" if n != 1 else "")


def _count(n: float) -> str:
    if n >= 1e9:
        return f"{n:.2e}"
    if n >= 1e6:
        return f"{n / 1e6:.1f} M"
    if n >= 1e4:
        return f"{n / 1e3:.0f} k"
    return f"{int(n)}"


def _gb(b: float) -> str:
    if b >= 1e15:
        return f"{b / 1e9:.1e} GB"
    return f"{b / 1e9:.2f} GB" if b < 10e9 else f"{b / 1e9:.0f} GB"


def _bundle_mesh(geometry) -> MeshEstimate | None:
    """The estimate with the real tet count of an existing bundle (``mesh.json``); the
    particle's share of the tets is the estimator's."""
    from .meshing.estimate import TETS_PER_VERTEX

    try:
        info = json.loads((Path(geometry.bundle) / "mesh.json").read_text())
        tets = int(info["tets"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    est = estimate_mesh(geometry)
    p_tets = tets * est.particle_cells_gmsh / max(est.cells_gmsh, 1)
    refine_levels = est.refine_levels
    f = 8**refine_levels
    return MeshEstimate(
        particle_volume_um3=float(info.get("particle_volume_um3") or est.particle_volume_um3),
        binder_volume_um3=float(info.get("binder_volume_um3") or est.binder_volume_um3),
        gb_area_um2=float(info.get("gb_area_um2") or 0.0),
        interface_area_um2=float(info.get("interface_area_um2") or 0.0),
        cells_gmsh=tets,
        particle_cells_gmsh=int(p_tets),
        refine_levels=refine_levels,
        cells=tets * f,
        particle_cells=int(p_tets * f),
        vertices=int(tets * f / TETS_PER_VERTEX),
        particle_vertices=int(p_tets * f / TETS_PER_VERTEX),
        meshing_bytes=0.0,
    )


def estimate_case(rc, ranks: int = 1) -> SizeEstimate:
    """Unknowns and memory of a resolved case (:class:`polycrack.config.ResolvedCase`) on
    ``ranks`` MPI ranks."""
    case = rc.case
    geo = case.geometry
    mesh = None
    if geo.bundle is not None:
        mesh = _bundle_mesh(geo)
    from_bundle = mesh is not None
    if mesh is None:
        mesh = estimate_mesh(geo)
    ph = case.physics
    unknowns = mesh.particle_vertices + 1  # x (P1 on the particle) and the voltage
    if ph.mechanics:
        # u: P1 vector on every vertex; P2 adds the edges (≈ vertices + cells in a tet mesh)
        nodes = mesh.vertices if ph.displacement_degree == 1 else mesh.vertices + mesh.cells
        unknowns += 3 * nodes
    if ph.fracture:
        unknowns += mesh.particle_vertices
    lin = case.solver.linear
    if not ph.mechanics or lin in ("mumps", "mumps_lagged"):
        linear = "lu"
    elif lin == "auto" or (lin == "staggered" and case.solver.staggered_linear == "auto"):
        linear = "lu" if unknowns <= AUTO_MUMPS_MAX_UNKNOWNS else "iterative"
    elif lin == "staggered" and case.solver.staggered_linear == "mumps":
        linear = "lu"
    else:
        linear = "iterative"
    per = BYTES_PER_UNKNOWN_LU if linear == "lu" else BYTES_PER_UNKNOWN_ITERATIVE
    solve = float(unknowns) * per
    refine = REFINE_BYTES_PER_CELL * mesh.cells if mesh.refine_levels else 0.0
    run_bytes = ranks * IMPORT_BYTES_PER_RANK + max(solve, refine)
    meshing = 0.0 if from_bundle else GMSH_BASE_BYTES + GMSH_BYTES_PER_TET * mesh.cells_gmsh
    return SizeEstimate(mesh, from_bundle, ranks, int(unknowns), linear, run_bytes, meshing)


def available_bytes() -> float | None:
    """Memory available for new processes on this node (``MemAvailable``), or None."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024.0
    except OSError:
        pass
    try:
        return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def check_size(
    est: SizeEstimate,
    stage: str,
    max_memory_gb: float | None = None,
    ranks_on_node: int | None = None,
    available: float | None = None,
) -> None:
    """Raise InputError if ``stage`` ("mesh" or "run") would not fit.

    With ``max_memory_gb`` the estimate (summed over ranks) is compared with it; otherwise the
    share of the ranks on this node (``ranks_on_node`` of ``est.ranks``) with the memory
    available here. ``available`` (bytes) overrides the node's for tests.
    """
    if stage == "mesh":
        need = est.meshing_bytes
        what = "meshing (gmsh, one process)"
    else:
        need = est.run_bytes
        what = f"the run on {_ranks(est.ranks)}"
        if max_memory_gb is None and ranks_on_node is not None and 0 < ranks_on_node < est.ranks:
            need = est.run_bytes * ranks_on_node / est.ranks
            what = f"the run ({ranks_on_node} of its {est.ranks} ranks on this node)"
        if est.meshing_bytes and not est.from_bundle:
            need = max(need, est.meshing_bytes)
    if max_memory_gb is not None:
        limit, where = max_memory_gb * 1e9, f"--max-memory {max_memory_gb:g} GB"
    else:
        limit = available if available is not None else available_bytes()
        where = "the memory available on this node"
        if limit is None:
            return
        where += f" ({_gb(limit)})"
    if need > limit:
        raise InputError(
            f"case too large: {what} needs ≈ {_gb(need)}, more than {where}. {est.summary()}. "
            "Use a coarser geometry.mesh (particle_size_um, binder_size_um, refine_levels), "
            "more nodes, or --max-memory GB if the estimate is too pessimistic"
        )
