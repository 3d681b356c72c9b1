"""A run that moves onto a new mesh: the mesh files, the problem's domain on them, the transfer.

The run driver (:class:`polycrack.workflow.run.Run`) asks its mesh-change policy after every
accepted step whether to continue on a new mesh (``propose(problem, step_no)`` returns
``(mesh, cell tags, facet tags)`` or None). On a new mesh the driver

1. writes it with its tags to ``mesh_adapted/mesh_NNN.xdmf`` in the run directory and reads it back
   with shared-facet ghosts (:func:`save_adapted_mesh`, :func:`adapted_domain`): the run and a
   restart from any later checkpoint see the same file and so the same partition;
2. builds the case's problem on it and moves every primary field, every stored BDF state and the
   problem's internal fields (the history H) with :func:`polycrack.numerics.transfer.transfer`
   (:func:`transfer_all`); γ is solved again on the new mesh by the new problem;
3. writes a checkpoint whose state names the mesh file (``state["mesh"]``), the grain axes and
   the particle centre and radius, so ``--restart`` builds the problem on the adapted mesh.

Earlier mesh files are kept: an older checkpoint still names its own.
"""

from __future__ import annotations

from pathlib import Path

import dolfinx_solver  # noqa: F401  (MPI before dolfinx)
import numpy as np
from dolfinx import fem
from mpi4py import MPI

from ..collective import collective
from ..errors import InputError
from ..numerics.transfer import transfer
from ..physics.domain import read_mesh_xdmf, write_mesh_xdmf
from ..physics.mechanics import ParticleDomain

__all__ = ["MeshChange", "save_adapted_mesh", "adapted_domain", "transfer_all"]

ADAPTED_DIR = "mesh_adapted"
#: distance (µm) within which a new point outside the old mesh takes an old cell's value (a new
#: surface vertex lies outside the old chords by about h²/8R: 0.011 µm at the interface for
#: h = 0.8, R = 7 µm; 0.2 µm on the binder sphere for h = 4, R = 10 µm). Points inside the old
#: mesh always take their containing cell (polycrack.numerics.transfer).
TRANSFER_PADDING_UM = 0.5


class MeshChange(Exception):
    """Raised from the accepted-step callback: continue the run on ``mesh``."""

    def __init__(self, mesh: tuple):
        super().__init__("mesh change")
        self.mesh = mesh


def save_adapted_mesh(
    out: Path, index: int, mesh: tuple, dom: ParticleDomain, comm: MPI.Comm
) -> dict:
    """Write ``mesh`` = (mesh, cell tags, facet tags) as ``mesh_adapted/mesh_<index>.xdmf``
    (collective); returns the JSON-able mesh state of the checkpoint (file relative to ``out``,
    index, grain axes, particle centre and radius in µm)."""
    rel = f"{ADAPTED_DIR}/mesh_{index:03d}.xdmf"
    with collective(comm, f"{Path(out) / ADAPTED_DIR}", "regrid.mkdir"):
        if comm.rank == 0:
            (Path(out) / ADAPTED_DIR).mkdir(parents=True, exist_ok=True)
    write_mesh_xdmf(*mesh, Path(out) / rel)
    return {
        "file": rel,
        "index": index,
        "axes": np.asarray(dom.axes).tolist(),
        "center": np.asarray(dom.center).tolist(),
        "radius_um": float(dom.radius_um),
    }


def adapted_domain(out: Path, state: dict, comm: MPI.Comm) -> ParticleDomain:
    """The :class:`ParticleDomain` on the adapted mesh named by a checkpoint's mesh state."""
    path = Path(out) / state["file"]
    with collective(comm, f"{path}", "regrid.exists"):
        if comm.rank == 0 and not (path.is_file() and path.with_suffix(".h5").is_file()):
            raise InputError(
                f"{path}: the adapted mesh the checkpoint was written on is missing (with its "
                ".h5); a run moved onto a new mesh cannot be continued without it"
            )
    msh, ct, ft = read_mesh_xdmf(path, comm)
    return ParticleDomain.build(
        msh, ct, ft, np.asarray(state["axes"]), np.asarray(state["center"]), state["radius_um"]
    )


def transfer_all(
    old: dict[str, fem.Function], new: dict[str, fem.Function], padding: float = TRANSFER_PADDING_UM
) -> None:
    """Fill every function of ``new`` from the function of the same name in ``old``."""
    for name, f in new.items():
        transfer(old[name], f, padding)
