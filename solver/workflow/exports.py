"""Run-directory writers (docs/user-guide.md section 5): ``timeseries.csv`` and ``run.json``.

Only rank 0 writes. Each accepted step becomes one CSV line written with a single ``write()``
on an ``O_APPEND`` descriptor and fsync'd, so a killed run keeps every completed step and never
a half row from a buffered writer. ``run.json`` is replaced atomically (temporary file, fsync,
rename).
"""

from __future__ import annotations

import json
import math
import os
import platform
import resource
import subprocess
from pathlib import Path

from mpi4py import MPI

__all__ = [
    "TIMESERIES_COLUMNS",
    "TimeSeriesWriter",
    "write_json_atomic",
    "versions",
    "git_commit",
    "peak_memory_mb",
]

#: Required columns (docs/user-guide.md section 5), then extra solver columns.
TIMESERIES_COLUMNS = (
    "step",
    "time_s",
    "dt_s",
    "voltage_V",
    "current_A",
    "capacity_mAh_g",
    "x_avg",
    "x_surf_min",
    "x_surf_max",
    "eps_a",
    "eps_c",
    "damage_fraction",
    "damage_gb_share",
    "crack_area_um2",
    "crack_area_gb_share",
    "phi_max",
    "sigma1_max_Pa",
    "newton_iterations",
    "protocol_step",
    "step_type",
    "bdf_order",
    "error_estimate",
    # driving-force diagnostics (polycrack.post.drive)
    "delta_eps_prime",
    "delta_eps_prime_absmax",
    "psi_plus_above_H_fraction",
    "psi_plus_over_H_max",
    "binder_pressure_mean_Pa",
    # the mesh the step was computed on (changes in runs with geometry.mesh.adapt)
    "cells",
    "unknowns",
)


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    return str(v)


class TimeSeriesWriter:
    """Append-only CSV with a fixed header; ``append(row)`` is durable when it returns.

    Missing keys become empty cells. ``resume=True`` keeps an existing file (restart); a file
    written with other columns (an older version, e.g. before ``crack_area_um2``) is first
    rewritten under the current header, its cells moved by column name and new columns left empty,
    so that appended rows line up.
    """

    def __init__(
        self,
        path: Path,
        columns: tuple[str, ...] = TIMESERIES_COLUMNS,
        comm: MPI.Comm = MPI.COMM_WORLD,
        resume: bool = False,
    ):
        self.path = Path(path)
        self.columns = tuple(columns)
        self.rank0 = comm.rank == 0
        self._fd: int | None = None
        if self.rank0:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fresh = not (resume and self.path.exists())
            if not fresh:
                _reheader(self.path, self.columns)
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | (os.O_TRUNC if fresh else 0)
            self._fd = os.open(self.path, flags, 0o644)
            if fresh:
                self._write(",".join(self.columns) + "\n")

    def _write(self, text: str) -> None:
        assert self._fd is not None
        os.write(self._fd, text.encode())
        os.fsync(self._fd)

    def append(self, row: dict) -> None:
        """Write one row (rank 0); unknown keys are an error, missing ones empty."""
        if not self.rank0:
            return
        extra = set(row) - set(self.columns)
        if extra:
            raise KeyError(f"unknown time-series columns {sorted(extra)}")
        self._write(",".join(_fmt(row.get(c)) for c in self.columns) + "\n")

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _reheader(path: Path, columns: tuple[str, ...]) -> None:
    """Rewrite the CSV at ``path`` under the header ``columns`` (by name; atomic) if it differs."""
    import csv
    import io

    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows or tuple(rows[0]) == columns:
        return
    head = rows[0]
    buf = io.StringIO()
    buf.write(",".join(columns) + "\n")
    for r in rows[1:]:
        if not r:
            continue
        cells = dict(zip(head, r, strict=False))
        buf.write(",".join(cells.get(c, "") for c in columns) + "\n")
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as fh:
        fh.write(buf.getvalue())
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_json_atomic(path: Path, data: dict, comm: MPI.Comm = MPI.COMM_WORLD) -> None:
    """Write JSON on rank 0 through a temporary file and a rename."""
    if comm.rank != 0:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=2, default=str)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def git_commit(repo: Path | None = None) -> str | None:
    """HEAD commit of the source checkout (with ``+dirty`` if modified), or None."""
    repo = repo or Path(__file__).resolve().parents[2]  # solver/workflow/ -> the checkout
    try:
        sha = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict:
    """Versions of polycrack and its numerical stack."""
    import basix
    import dolfinx
    import ufl
    from petsc4py import PETSc

    from .. import __version__

    return {
        "polycrack": __version__,
        "dolfinx": dolfinx.__version__,
        "basix": basix.__version__,
        "ufl": ufl.__version__,
        "petsc": ".".join(str(v) for v in PETSc.Sys.getVersion()),
        "mpi": MPI.Get_library_version().splitlines()[0].strip(),
        "python": platform.python_version(),
    }


def peak_memory_mb(comm: MPI.Comm = MPI.COMM_WORLD) -> dict:
    """Peak resident memory (MB): maximum over ranks and sum over ranks."""
    mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB
    return {
        "max_rank_MB": comm.allreduce(mb, op=MPI.MAX),
        "sum_ranks_MB": comm.allreduce(mb, op=MPI.SUM),
    }
