"""The states a run can be in, shared by the run driver, sweeps, ``collect`` and SLURM scripts."""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    """``run.json["status"]``: the only values any run writes.

    ``running`` while a process works on it (or after a crash that left no other record);
    ``finished``: the protocol ran to its end; ``failed``: a numerical failure survived every
    retry; ``interrupted``: SIGTERM/SIGINT, a checkpoint was written, ``--restart`` continues;
    ``invalid_input``: the case or a file was rejected (exit 2).
    """

    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    INVALID_INPUT = "invalid_input"

    def exit_code(self, signum: int = 0) -> int:
        """The process exit code that goes with this status (128 + signal when interrupted)."""
        return {
            RunStatus.FINISHED: 0,
            RunStatus.FAILED: 1,
            RunStatus.INVALID_INPUT: 2,
            RunStatus.INTERRUPTED: 128 + int(signum),
            RunStatus.RUNNING: 1,
        }[self]
