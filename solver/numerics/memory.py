"""Process memory settings for long solver runs (glibc only; no effect elsewhere)."""

from __future__ import annotations

import ctypes
import os

#: glibc serves allocations of at least this many bytes by mmap and returns them on free.
MMAP_THRESHOLD_BYTES = 256 * 1024


def fix_mmap_threshold(nbytes: int = MMAP_THRESHOLD_BYTES) -> None:
    """Fix glibc's mmap threshold (``mallopt(M_MMAP_THRESHOLD)``) unless the user set it.

    By default glibc raises the threshold to the size of each freed mmapped block, after which
    the assembly temporaries (coefficient packs of tens of MB per residual or Jacobian
    assembly) come from the heap and are not given back: the resident set grew by ~0.35 KB per
    unknown over the first Newton iterations of the coupled problem. A fixed threshold keeps the
    steady state at what the solver holds. No effect (and no error) outside glibc.
    """
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return
    try:
        ctypes.CDLL(None).mallopt(-3, int(nbytes))  # M_MMAP_THRESHOLD = -3
    except (OSError, AttributeError):
        pass
