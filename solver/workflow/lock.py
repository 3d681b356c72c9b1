"""One run per run directory: ``run.lock`` names the host and process (rank 0) that owns it.

A second ``polycrack run`` into a directory in use (say a ``--restart`` typed while the first
job still runs, or two sweep workers given the same case) would interleave rows of
``timeseries.csv`` and overwrite each other's checkpoints. The lock is taken before anything in
the directory is read or removed and released when the run ends, whatever its status. A lock
left by a process that died (SIGKILL, node crash) is taken over when its owner was on this host
and no longer exists; a lock from another host cannot be checked and is refused with the command
that clears it.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from ..errors import InputError

LOCK_NAME = "run.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def acquire(out: Path) -> Path:
    """Take ``out/run.lock`` for this process (rank 0 only); returns its path.

    Raises:
        InputError: the directory is in use by a live process on this host, or by a process on
            another host (message names it and how to clear a stale lock).
    """
    path = Path(out) / LOCK_NAME
    host, pid = socket.gethostname(), os.getpid()
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _owner(path)
            ours = owner.get("host") == host and owner.get("pid") == pid
            if ours or not in_use(out):
                path.unlink(missing_ok=True)  # stale (its process is gone) or our own
                continue
            where = f"pid {owner.get('pid')} on {owner.get('host')}"
            raise InputError(
                f"{out}: in use by another run ({where}, since {owner.get('since', '?')}); "
                "wait for it or stop it. If that process no longer exists, remove "
                f"{path} and run again"
            ) from None
        with os.fdopen(fd, "w") as fh:
            json.dump({"host": host, "pid": pid, "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, fh)
        return path
    raise InputError(f"{out}: could not take {path} (another run took it at the same time)")


def in_use(out: Path) -> bool:
    """Whether ``out/run.lock`` is held: by a live process on this host, or by any process on
    another host (which cannot be checked from here). A run directory whose ``run.json`` says
    ``running`` but which is not in use was killed (SIGKILL, a node failure)."""
    path = Path(out) / LOCK_NAME
    if not path.is_file():
        return False
    owner = _owner(path)
    if owner.get("host") != socket.gethostname():
        return True
    return _alive(int(owner.get("pid", -1)))


def _owner(path: Path) -> dict:
    try:
        owner = json.loads(path.read_text())
        return owner if isinstance(owner, dict) else {}
    except (OSError, ValueError):
        return {}  # unreadable or half-written: treated as held by an unknown process


def release(path: Path | None) -> None:
    """Remove a lock taken by :func:`acquire` (rank 0; a missing file is fine)."""
    if path is not None:
        Path(path).unlink(missing_ok=True)
