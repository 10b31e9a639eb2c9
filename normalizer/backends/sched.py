"""Short scheduler slices for the threads that read the kernel queue: read soon after events arrive, even
when every CPU is busy.

**Why.** A storm of file operations is itself CPU work: the programs making the events keep every CPU busy,
and the thread that must drain the kernel queue (16,384 events by default, then the kernel drops events) wakes
up to find them all taken. The scheduler (EEVDF since Linux 6.6) serves runnable threads by *virtual
deadline*: a thread's deadline is its virtual runtime plus its *slice* (by default ``base_slice_ns``,
0.7 ms x (1 + log2 CPUs)). A thread that asks for a shorter slice gets an earlier deadline each time it wakes,
so it is picked before the busy threads and, since Linux 6.12 (``PREEMPT_SHORT``), preempts one whose slice is
longer; it runs in shorter pieces when it has much to do. Its *share* of the CPU is unchanged: a slice is not a
priority (nice and weight are untouched), so nothing is taken from the programs being watched beyond what the
watcher used anyway. This is the interface the scheduler offers latency-sensitive threads for exactly this
(``sched_attr.sched_runtime`` for SCHED_OTHER, 0.1-100 ms; ``sched_setattr(2)``); it needs no privilege.

**Where.** :func:`request_slice` sets the calling thread's slice; threads and processes it creates afterwards
inherit it. ``fsnorm watch --sched-slice USEC`` asks for it for its whole process at start (every thread of it
reads, parses and writes for the kernel queue); the library (``sched_slice_us``) asks only for its own reader
thread (``read_buffer``), never for the caller's threads, which are the caller's to tune (:func:`request_slice`
is public for that).

**Off by default.** In the benchmark's storm (4-8 threads renaming flat out + 2 noise threads on 2 CPUs,
alternated with and without, load 1.5-7) a 300 us slice gave no consistent gain: `fsnorm watch`'s joined p99
fell in some pairs and rose in others, the iterator's rose, and storms overflowed as often with it as without
(benchmarks/README.md, "Scheduler slice"). There the busy threads are many more than the CPUs, and an earlier
deadline does not make the queue's CPU share larger. It stays a knob for a machine whose other work runs in
long slices.

**Kernels without it.** Before Linux 6.6 (CFS) the value is accepted and has no effect. A kernel or sandbox
that refuses the call (seccomp, an architecture whose system call number is not known here) gets a
:class:`SliceError`: the watcher goes on with the default slice and says so once (a latency hint is never a
reason to stop watching).
"""

from __future__ import annotations

import functools
import os
import platform
import struct
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ctypes

#: The slice fsnorm asks for by default (``--sched-slice``, ``sched_slice_us``): 0, none (module docstring,
#: "Off by default").
DEFAULT_SLICE_US = 0
#: The kernel's bounds (``kernel/sched/syscalls.c``): it clamps a requested slice to them.
MIN_SLICE_US = 100
MAX_SLICE_US = 100_000

#: ``sched_setattr`` / ``sched_getattr`` system call numbers (no libc wrapper before glibc 2.41).
_SYSCALLS = {"x86_64": (314, 315), "aarch64": (274, 275), "riscv64": (274, 275), "ppc64le": (355, 356),
             "s390x": (345, 346)}
#: ``struct sched_attr`` as of Linux 3.14 (SCHED_ATTR_SIZE_VER0): size, policy, flags, nice, priority,
#: runtime, deadline, period.
_ATTR = struct.Struct("=IIQiIQQQ")
#: The policies a slice applies to (the fair class): a thread under a real-time or idle policy is left alone.
_FAIR_POLICIES = (os.SCHED_OTHER, os.SCHED_BATCH)
#: ``sched_attr.sched_flags``: the reset-on-fork flag ``sched_getscheduler`` reports in the policy's high bit.
_SCHED_FLAG_RESET_ON_FORK = 0x01


class SliceError(OSError):
    """The kernel refused the slice (or this architecture's system call is not known here)."""


@functools.cache
def _syscall() -> tuple[ctypes.CDLL, int, int] | None:
    """libc's ``syscall`` and the two numbers; None on an architecture not in the table (ctypes is imported
    only here, when a slice is first asked for)."""
    import ctypes

    numbers = _SYSCALLS.get(platform.machine())
    if numbers is None:
        return None
    return ctypes.CDLL(None, use_errno=True), numbers[0], numbers[1]


def _buffer(data: bytes) -> ctypes.Array[ctypes.c_char]:
    import ctypes

    return ctypes.create_string_buffer(data, len(data))


def check_slice_us(us: int) -> None:
    """ValueError unless ``us`` is 0 (do not ask) or within the kernel's bounds."""
    if us != 0 and not MIN_SLICE_US <= us <= MAX_SLICE_US:
        raise ValueError(f"a scheduler slice is 0 (the kernel's default) or {MIN_SLICE_US}-{MAX_SLICE_US} "
                         f"microseconds, not {us}")


def request_slice(us: int, tid: int = 0) -> None:
    """Ask for a slice of ``us`` microseconds for thread ``tid`` (0: the calling thread), its policy and nice
    value kept as they are (module docstring). ``us`` 0 gives the thread the kernel's default back.
    Raises :class:`SliceError` if the kernel refuses."""
    check_slice_us(us)
    call = _syscall()
    if call is None:
        raise SliceError(0, f"sched_setattr's system call number on {platform.machine()} is not known")
    libc, setattr_nr, _ = call
    got = os.sched_getscheduler(tid)
    policy = got & ~os.SCHED_RESET_ON_FORK  # systemd's units, pid 1 among them, often carry the flag: kept
    flags = _SCHED_FLAG_RESET_ON_FORK if got & os.SCHED_RESET_ON_FORK else 0
    if policy not in _FAIR_POLICIES:
        raise SliceError(0, f"the thread runs under scheduling policy {policy}, not SCHED_OTHER or SCHED_BATCH: "
                            "its scheduling is left as it is")
    nice = os.getpriority(os.PRIO_PROCESS, tid)  # per thread on Linux; sched_setattr sets it too
    attr = _buffer(_ATTR.pack(_ATTR.size, policy, flags, nice, 0, us * 1000, 0, 0))
    if libc.syscall(setattr_nr, tid, attr, 0) != 0:
        import ctypes

        err = ctypes.get_errno()
        raise SliceError(err, f"sched_setattr: {os.strerror(err)}")


def thread_slice_us(tid: int = 0) -> int | None:
    """Thread ``tid``'s slice (0: the calling thread) as the kernel reports it, in microseconds: the one asked
    for, else the default (``sched_getattr``'s ``sched_runtime``, Linux 6.6+); None where it is not reported."""
    call = _syscall()
    if call is None:
        return None
    libc, _, getattr_nr = call
    buf = _buffer(bytes(_ATTR.size))
    if libc.syscall(getattr_nr, tid, buf, _ATTR.size, 0) != 0:
        return None
    runtime = _ATTR.unpack(buf.raw)[5]
    return runtime // 1000 if runtime else None
