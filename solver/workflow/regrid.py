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

__all__ = [
    "MeshPolicy",
    "AdaptPolicy",
    "MeshChange",
    "save_adapted_mesh",
    "adapted_domain",
    "transfer_all",
]

ADAPTED_DIR = "mesh_adapted"
#: distance (µm) within which a new point outside the old mesh takes an old cell's value (a new
#: surface vertex lies outside the old chords by about h²/8R: 0.011 µm at the interface for
#: h = 0.8, R = 7 µm; 0.2 µm on the binder sphere for h = 4, R = 10 µm). Points inside the old
#: mesh always take their containing cell (polycrack.numerics.transfer).
TRANSFER_PADDING_UM = 0.5


class MeshChange(Exception):
    """Raised from the accepted-step callback: continue the run on ``mesh``; ``signum``: a
    signal (or a stop request) that arrived with that step, to stop after the move; ``redo``:
    move the state from before the step and compute the step again (corrector), instead of
    moving the accepted state."""

    def __init__(self, mesh: tuple, signum: int = 0, redo: bool = False, step_no: int = 0):
        super().__init__("mesh change")
        self.mesh, self.signum, self.redo, self.step_no = mesh, int(signum), bool(redo), step_no


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
    old: dict[str, fem.Function],
    new: dict[str, fem.Function],
    padding: float = TRANSFER_PADDING_UM,
    quadrature_rule: str = "parent_max",
) -> None:
    """Fill every function of ``new`` from the function of the same name in ``old`` (the point
    search of each pair of spaces is done once for all functions on them)."""
    cache: dict = {}
    for name, f in new.items():
        transfer(old[name], f, padding, quadrature_rule, cache)


class MeshPolicy:
    """What the run driver asks after every accepted step (base of the mesh-change policies).

    :meth:`propose` returns (mesh, cell tags, facet tags) to continue on, or None; it must be
    collective and agree on every rank. :meth:`redo` says whether the step that proposed is
    computed again on the new mesh (the driver then keeps a copy of each committed state: see
    :attr:`corrects`). The state dicts go into the run's checkpoints.
    """

    #: how quadrature data (the history field) moves: polycrack.numerics.transfer.QUADRATURE_RULES
    quadrature_rule = "parent_max"
    #: whether :meth:`redo` can say yes
    corrects = False

    def propose(self, problem, step_no: int):  # pragma: no cover - interface
        raise NotImplementedError

    def redo(self, step_no: int) -> bool:
        return False

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class AdaptPolicy(MeshPolicy):
    """The mesh-change policy of ``geometry.mesh.adapt`` (:class:`polycrack.config.AdaptConfig`).

    After every ``every_steps`` accepted steps: mark with :func:`polycrack.physics.adapt.
    mark_cells` (φ > ``phi_threshold``; the ``predictor``'s damage of ``predictor_growth`` x
    max(H, ψ⁺) above ``predictor_threshold``; ``buffer_layers`` rings) the cells coarser than
    the target and, if any cell is marked and the estimated unknowns stay under ``max_unknowns``, refine
    them (:func:`polycrack.physics.adapt.refine_mesh`, with the particle surface push of the
    bundle's shape when ``info`` has one). The marking reads only the accepted state, so a
    restart marks as the uninterrupted run did.

    Sizes are *nominal*, as in the resolution rule (docs/convergence.md: h = particle_size_um /
    2^refine_levels): the target h_over_l x min(l, l_γ) (and ``h_min_um``) is a number L of
    halvings of the base mesh's nominal size, and a cell counts as refined k times when its
    mean edge is nearest to the base mesh's mean particle edge / 2^k (gmsh tetrahedra have a
    mean edge ≈ 1.12 x their nominal size, and ±30 % scatter). So a marked cell is refined while
    it is coarser than base / 2^(L − 1/2): the adapted mesh has the uniform level-L mesh's sizes
    where it is refined, never finer.

    Args:
        cfg: the case's ``geometry.mesh.adapt``.
        l_um: the AT2 length l (µm), for the predictor.
        l_rule_um: the length of the resolution rule, min(l, l_γ) (µm).
        info: the bundle's ``mesh.json`` (surface push), or None.
        h_nominal_um: the nominal particle size of the run's base mesh (µm); None (a mesh not
            from a bundle): its measured mean particle edge.
    """

    def __init__(
        self,
        cfg,
        l_um: float,
        l_rule_um: float,
        info: dict | None = None,
        h_nominal_um: float | None = None,
    ):
        self.cfg, self.l_um, self.info = cfg, float(l_um), info
        self.h_target_um = cfg.h_over_l * float(l_rule_um)
        self.h_nominal_um = h_nominal_um
        #: mean edge (µm) of the base mesh's particle cells, measured at the first marking
        self.base_edge_um: float | None = None
        #: one entry per mesh change: step, marked cells, cells before/after, times (s), redo
        self.changes: list[dict] = []
        self.capped = False
        #: [step, number of times it was computed again] of the last corrected step
        self.redone = [0, 0]
        self._gc_expr = None  # (problem, compiled Gc at H's points): one per problem
        self._pred = None  # (problem, DamagePredictor): one per problem

    @property
    def quadrature_rule(self) -> str:
        """How the history field moves to a new mesh (``history_transfer``)."""
        return self.cfg.history_transfer

    @property
    def corrects(self) -> bool:
        return self.cfg.max_corrections > 0

    def redo(self, step_no: int) -> bool:
        """Whether the step ``step_no`` that has just marked cells is computed again on the new
        mesh (at most ``max_corrections`` times per step); notes it in the last change."""
        count = self.redone[1] if self.redone[0] == step_no else 0
        again = count < self.cfg.max_corrections
        if again:
            self.redone = [step_no, count + 1]
        if self.changes:
            self.changes[-1]["redo"] = again
        return again

    def propose(self, problem, step_no: int):
        """(mesh, cell tags, facet tags) to continue on, or None (collective)."""
        from ..physics import adapt

        cfg, b = self.cfg, getattr(problem, "blocks", None)
        if b is None or b.history is None or step_no % cfg.every_steps:
            return None
        hist = b.history
        drive = predicted = None  # predictor_threshold null: marking by the phase field alone
        if cfg.predictor_threshold is not None:
            psi = hist.evaluate(b.psi_plus, problem.entity_maps)
            drive = cfg.predictor_growth * np.maximum(hist.H.x.array, psi)
            if cfg.predictor == "phase_field":
                predicted, drive = self._predictor(problem)(drive), None
        marked = adapt.mark_cells(
            problem.dom,
            self.size_threshold(problem.dom),
            phi=b.phi,
            phi_threshold=cfg.phi_threshold,
            drive=drive,
            Gc=self._gc(problem) if drive is not None else None,
            l=self.l_um,
            history=hist,
            predictor_threshold=cfg.predictor_threshold or 1.0,
            buffer_layers=cfg.buffer_layers,
            h_min=0.0,  # in the threshold
            predicted=predicted,
        )
        msh = problem.dom.mesh
        n_own = adapt.cell_counts(msh)[0]
        n = msh.comm.allreduce(int(np.count_nonzero(marked[:n_own])), op=MPI.SUM)
        if n == 0:
            return None
        cells = msh.topology.index_map(3).size_global
        # a marked tetrahedron becomes 8 (more where its neighbours close the refinement)
        estimate = problem.unknowns * (cells + 7 * n) / cells
        if cfg.max_unknowns is not None and estimate > cfg.max_unknowns:
            self.capped = True
            return None
        fine, ct, ft, stats = adapt.refine_mesh(
            msh, problem.dom.cell_tags, problem.dom.facet_tags, marked, self.info
        )
        self.changes.append({"step": step_no, **stats.__dict__})
        return fine, ct, ft

    def levels(self) -> int:
        """L: halvings of the nominal base size down to the target (at most to ``h_min_um``)."""
        h0 = self.h_nominal_um or self.base_edge_um
        need = max(0, int(np.ceil(np.log2(h0 / self.h_target_um) - 1e-9)))
        if self.cfg.h_min_um:
            need = min(need, max(0, int(np.floor(np.log2(h0 / self.cfg.h_min_um) + 1e-9))))
        return need

    def size_threshold(self, dom) -> float:
        """Mean edge (µm) above which a marked cell is refined (see the class docstring)."""
        from ..meshing.tags import BINDER
        from ..physics import adapt

        if self.base_edge_um is None:  # the first marking is on the base mesh
            msh, ct = dom.mesh, dom.cell_tags
            n_own = adapt.cell_counts(msh)[0]
            cells = ct.indices[(ct.values != BINDER) & (ct.indices < n_own)]
            h = adapt.cell_size(msh, cells)
            tot = msh.comm.allreduce(np.array([h.sum(), h.size]), op=MPI.SUM)
            self.base_edge_um = float(tot[0] / tot[1])
        return self.base_edge_um * 2.0 ** (0.5 - self.levels())

    def _gc(self, problem) -> np.ndarray:
        """Gc(γ, x) at the history field's points; the expression is compiled once per problem
        (its values change with x, so they are evaluated at every call)."""
        from ..physics import adapt

        b = problem.blocks
        if self._gc_expr is None or self._gc_expr[0] is not problem:
            self._gc_expr = (problem, adapt.quadrature_expression(b.history, b.Gc))
        return adapt.quadrature_values(b.history, self._gc_expr[1])

    def _predictor(self, problem):
        """The :class:`~polycrack.physics.adapt.DamagePredictor` of the problem's mesh, built
        once per problem (a new mesh makes a new problem)."""
        from ..physics import adapt

        b = problem.blocks
        if self._pred is None or self._pred[0] is not problem:
            pred = adapt.DamagePredictor(b.history, b.phi.function_space, b.Gc, self.l_um)
            self._pred = (problem, pred)
        return self._pred[1]

    def state_dict(self) -> dict:
        return {
            "changes": self.changes,
            "capped": self.capped,
            "redone": list(self.redone),
            "base_edge_um": self.base_edge_um,
        }

    def load_state_dict(self, state: dict) -> None:
        self.changes = [dict(c) for c in state.get("changes", [])]
        self.capped = bool(state.get("capped", False))
        self.redone = list(state.get("redone", [0, 0]))
        self.base_edge_um = state.get("base_edge_um", self.base_edge_um)
