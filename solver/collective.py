"""Error agreement between MPI ranks: a failure on one rank ends every rank the same way.

Work that only some ranks do (rank 0 reads a file, builds a mesh, creates a directory) must not
leave the other ranks waiting in the next collective call when it fails. Wrap it:

    with collective(comm, "reading mesh.msh"):
        if comm.rank == 0:
            gmsh.merge(path)

At the end of the block every rank learns (one allreduce) whether any rank failed; if so, every
rank raises the same :class:`InputError` or :class:`SolverFailure` with the message of the first
failing rank, so that ``polycrack`` exits with the same code everywhere and rank 0 prints the
message. The block itself must not call collectives (they would wait for the failed rank).
Exceptions other than InputError/SolverFailure are reported as InputError naming ``what``
(a broken file is bad input; a bug shows its type in the message).

Fault injection for tests: ``POLYCRACK_FAULT=RANK:POINT`` (e.g. ``1:load_bundle.read``) makes
the block named POINT fail on rank RANK as if it had raised InputError.
"""

from __future__ import annotations

import os

from .errors import InputError, SolverFailure

__all__ = ["collective", "agree", "make_dir", "make_writable_dir", "Agreed", "FAULT_ENV"]

FAULT_ENV = "POLYCRACK_FAULT"


class Agreed:
    """Mixin marker: an exception raised on every rank by an agreement point."""


class AgreedInputError(InputError, Agreed):
    """InputError raised on every rank."""


class AgreedSolverFailure(SolverFailure, Agreed):
    """SolverFailure raised on every rank."""


_AGREED = {"InputError": AgreedInputError, "SolverFailure": AgreedSolverFailure}


def _injected(point: str, rank: int) -> bool:
    spec = os.environ.get(FAULT_ENV, "")
    if not spec:
        return False
    r, _, p = spec.partition(":")
    return r.strip() == str(rank) and p.strip() == point


def _describe(exc: BaseException, what: str) -> tuple[str, str]:
    """(kind, message) of a local exception."""
    if isinstance(exc, SolverFailure):
        return "SolverFailure", str(exc)
    if isinstance(exc, InputError):
        return "InputError", str(exc)
    text = str(exc) or type(exc).__name__
    if isinstance(exc, OSError) and exc.filename is not None:
        text = f"{exc.strerror or text}: {exc.filename}"
    return "InputError", f"{what}: {text}" + (
        "" if isinstance(exc, OSError | ValueError) else f" ({type(exc).__name__})"
    )


def agree(comm, exc: BaseException | None, what: str = "", point: str = "") -> None:
    """Collective: raise on every rank if ``exc`` is set on any rank (see module docstring).

    ``comm`` may be None or a one-rank communicator: then a local failure is re-raised as the
    agreed exception directly.
    """
    rank = comm.rank if comm is not None else 0
    size = comm.size if comm is not None else 1
    if exc is None and point and _injected(point, rank):
        exc = InputError(f"{what or point}: fault injected on rank {rank} ({FAULT_ENV})")
    local = _describe(exc, what) if exc is not None else None
    if size > 1:
        from mpi4py import MPI

        first = comm.allreduce(rank if local is not None else size, op=MPI.MIN)
        if first == size:
            return
        kind, msg = comm.bcast(local, root=first)
    else:
        if local is None:
            return
        kind, msg = local
    raise _AGREED[kind](msg)


class collective:  # noqa: N801  (used like a function: ``with collective(comm, ...)``)
    """Context manager form of :func:`agree` around rank-local work."""

    def __init__(self, comm, what: str, point: str = ""):
        self.comm, self.what, self.point = comm, what, point or what

    def __enter__(self) -> collective:
        return self

    def __exit__(self, typ, exc, tb) -> bool:
        if exc is not None and not isinstance(exc, Exception):
            return False  # KeyboardInterrupt, SystemExit: not ours to agree on
        agree(self.comm, exc, self.what, self.point)
        return False


def make_dir(path, comm, what: str = "directory"):
    """Create ``path`` (and its parents) on rank 0 and check that it takes files (collective).

    Errors name the path and why: a file in the way, a read-only or virtual file system.
    """
    from pathlib import Path

    path = Path(path)
    with collective(comm, f"{what} {path}", "make_dir"):
        if comm is None or comm.rank == 0:
            make_writable_dir(path, what)
    return path


def make_writable_dir(path, what: str) -> None:
    """Rank-local part of :func:`make_dir`: create ``path`` and prove that a file can be made
    there (InputError naming ``what`` and the reason otherwise)."""
    import tempfile

    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                where = "" if p == path else f"{p}, above it, "
                raise InputError(f"{what} {path}: {where}is a file, not a directory")
            break
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".polycrack-write-test-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise InputError(
            f"{what} {path}: cannot create it or write to it ({exc.strerror or exc})"
        ) from None
