"""What the ``fsnorm`` command does to its own process before its loop: the collector and the allocator.

Only the command does this (``watch``, ``capture``, ``replay``): the library leaves the host program's
collector and allocator alone (README, "Per-event CPU"). Both are process-wide settings, which a library has no
business changing and a command that owns its process should.
"""

from __future__ import annotations

import ctypes
import gc
import os

from ..backends._libc import load_libc
from ..errors import SourceError

#: The collector's thresholds while ``watch``/``capture``/``replay`` run (Python's default: 700, 10, 10).
GC_THRESHOLDS = (20_000, 10, 10)

#: glibc's ``mallopt`` parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: Blocks up to this size come from the heap, not from a fresh ``mmap`` each (glibc's default: 128 KiB at first;
#: each time an ``mmap``'ed block is freed, raised to its size, up to 32 MiB, and the trim threshold to twice that).
MMAP_THRESHOLD = 1 << 20
#: Free memory at the top of the heap kept for the next block, up to this much (glibc's default: 128 KiB).
TRIM_THRESHOLD = 4 << 20
#: Environment settings by which a user chose the allocator's thresholds: theirs are left as they are.
#: (Each of them also stops glibc's own adjustment of the thresholds.)
MALLOC_ENV = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")


def tune_gc() -> None:
    """Keep the cyclic garbage collector out of the way of a storm or a replay.

    Almost nothing the loop allocates is in a reference cycle (events, records and the path tables are freed by
    reference counting; the shadow tree is nested dicts without back links), yet at Python's default thresholds
    a 3-second storm ran the collector 64-174 times, for 38-91 ms in all, and one full collection over the tree
    the start-up walk built took 48 ms at once: a pause in which nothing is read, that shows up in the
    joined latency's p99; replaying a million events spent a quarter of its time in the collector. ``gc.freeze()``
    moves what was built so far (``open``'s walk) out of the collector's sight (it is still freed by reference
    counting when it goes), and a young-generation threshold of 20,000 lets a storm pass without a collection
    (benchmarks/README.md, "Where the CPU goes")."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def tune_malloc() -> bool:
    """Keep the JSON Lines buffers in the heap: True if the thresholds were set (glibc, and the user set none).

    Each chunk of output (``fsnorm replay``: 1,024 records, 150-260 KiB) is one block, written and freed. At
    glibc's defaults such a block is first a fresh ``mmap`` of its own, later (once glibc has raised its
    thresholds) heap whose top is given back to the kernel when more than the trim threshold is free; either
    way most chunks are written into fresh pages: 35,000 page faults per million events replayed, a fifth of
    replay's CPU (2.7M events/s; 3.4M with these thresholds, peak memory the same: benchmarks/README.md,
    "Replay and the allocator"). Kept for the next block instead, up to :data:`TRIM_THRESHOLD`. A user who set
    glibc's own ``MALLOC_*_`` variables (or ``GLIBC_TUNABLES``) has chosen: nothing is changed. Another C library
    (musl) has no such thresholds: nothing is done."""
    if any(name in os.environ for name in MALLOC_ENV) or "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    try:
        libc = load_libc("mallopt")
    except SourceError:  # no C library to tune: a speed-up missed, nothing else
        return False
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # mallopt returns 1 on success; setting either threshold also stops glibc's own adjustment of both.
    mmap_set: bool = int(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) == 1
    trim_set: bool = int(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)) == 1
    return mmap_set and trim_set


def tune_process() -> None:
    """Both: what ``watch``, ``capture`` and ``replay`` do once, just before their loop."""
    tune_gc()
    tune_malloc()
