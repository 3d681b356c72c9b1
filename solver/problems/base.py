"""What the run driver needs from a problem: fields, one time step, observables and its state.

Every problem kind (electrochemistry only, coupled chemo-mechanics with fracture) implements
:class:`Problem`; the driver (:mod:`polycrack.workflow.run`) owns the run directory, protocol,
checkpoints and signals and knows nothing else of the physics. ``state_dict`` /
``load_state_dict`` carry everything that is not a primary field or the stepper's history, so a
run can be checkpointed, restarted, or (later) moved onto a new mesh.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path

from dolfinx import fem

from ..numerics.stepping import AdaptiveBDF
from ..physics.electrochem import Electrochemistry


class Problem(ABC):
    """A problem on a mesh that the run driver steps through a protocol.

    Attributes:
        kind: ``"electrochemistry"`` or ``"coupled"`` (``run.json["kind"]``).
        ec: the electrochemistry block (the protocol drives its current or voltage).
        field_names: names of :attr:`fields`, in stepper order (checkpoint keys).
        fields: the primary unknowns (``fem.Function``), x and V first.
        linear: the linear-solver family in use (``solver.linear`` after ``auto``).
        radial_columns: ``radial_damage.csv`` columns, or ``()`` when there is none.
    """

    kind: str
    ec: Electrochemistry
    field_names: tuple[str, ...]
    fields: list[fem.Function]
    linear: str
    radial_columns: tuple[str, ...] = ()

    @abstractmethod
    def make_stepper(self, on_reject: Callable[[str], None] | None = None) -> AdaptiveBDF:
        """The adaptive BDF stepper over :attr:`fields` (tolerances, limiters, solve)."""

    def set_interrupt(self, should_stop: Callable[[], bool]) -> None:  # noqa: B027
        """A collective check that long solves call to give up early (default: unused)."""

    def after_accept(self) -> None:  # noqa: B027
        """Update internal variables after an accepted step (e.g. the history field)."""

    def observables(self) -> dict:
        """Extra ``timeseries.csv`` columns of the accepted state (collective)."""
        return {}

    def radial_row(self) -> list[float]:
        """Values of :attr:`radial_columns` of the accepted state (collective)."""
        return []

    def step_message(self, obs: dict) -> str:
        """Extra text of the one-line log of an accepted step."""
        return ""

    @abstractmethod
    def mesh_info(self) -> dict:
        """``run.json["mesh"]``: cells, DOFs per field, unknowns, particle volume, 1C current."""

    def solver_info(self) -> dict:
        """Problem-specific solver statistics for ``run.json["solver"]``."""
        return {}

    def state_dict(self) -> tuple[dict[str, fem.Function], dict]:
        """(internal fields, JSON-able state) beyond :attr:`fields` and the stepper history."""
        return {}, {}

    def load_state_dict(self, state: dict) -> None:  # noqa: B027
        """Restore the JSON-able part of :meth:`state_dict` (internal fields are loaded in place
        by the checkpoint reader before this is called)."""

    def write_fields(self, out_dir: Path, tag: str, voltage: float) -> None:  # noqa: B027
        """Field output (XDMF, renders) of the current state into ``out_dir`` (collective)."""

    def close(self) -> None:  # noqa: B027
        """Destroy PETSc objects collectively."""
