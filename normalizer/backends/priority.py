"""A priority boost for the process that drains the kernel queue: its threads, and the session group the
kernel schedules it in.

**Why.** A storm of file operations is CPU work of its own: the programs making the events keep every CPU
busy, and the watcher must get a CPU soon each time events arrive, or its records wait (latency) and, once the
kernel queue is full (16,384 events by default), events are lost. On a desktop or server kernel with
``CONFIG_SCHED_AUTOGROUP`` (``/proc/sys/kernel/sched_autogroup_enabled`` = 1, the default of most
distributions) the scheduler first divides the CPUs between *sessions* (each ``setsid()``: a terminal, a
daemon), then between the threads of each. Measured here (benchmarks/README.md, "Priority boost"): with four
to eight threads renaming flat out in another session, the watcher's session was preempted each time one of
them woke, the watcher ran in pieces of 5-20 µs, and its records waited 20-100 ms though it used a sixth of one
CPU; the same storms with the session raised by 4 nice levels gave a joined p99 of 3-6 ms.

**What.** :func:`boost_priority` lowers the nice value of every thread of the process by ``boost`` (threads
started later inherit it from the thread that starts them) and, where the kernel groups by session, raises the
session's group to the same nice value (``/proc/self/autogroup``; never lowered). The task nice alone does not
compete across sessions: a thread's weight counts only inside its group. Only the session group changes what
the watcher gets against a storm started elsewhere. The group is the whole session's: the watcher's consumer
(the shell pipeline or daemon that reads its output) shares it, which is what the latency needs too.
:meth:`PriorityBoost.restore` gives back what is still as it was left (threads and group), so a terminal's
session does not stay raised after the watcher exits.

**Precedent and default.** ``auditd`` raises itself by 4 by default (``priority_boost`` in auditd.conf) for the
same reason: a consumer of a kernel event queue that falls behind loses events. ``fsnorm watch``, ``capture``
and ``serve`` do the same by default (``--priority-boost``, :data:`DEFAULT_CLI_BOOST`); the library
(``priority_boost=``) does not touch its host process unless asked.

**Privilege.** A lower nice value needs ``CAP_SYS_NICE`` (root has it) or an ``RLIMIT_NICE`` that allows it,
and the kernel lets a process without ``CAP_SYS_ADMIN`` change its session group once a second. A refusal is a
:class:`PriorityBoost` whose ``error`` says what was not done; what was done stays done.

**Where it does not apply.** Under a cgroup with the cpu controller (a systemd unit with ``CPUWeight=``, a
container with a CPU share), the group the kernel schedules is that cgroup, and its weight is the lever:
``CPUWeight=`` for the unit. A thread under a real-time policy keeps it (its nice value has no effect there).
"""

from __future__ import annotations

import contextlib
import errno
import os
from dataclasses import dataclass

#: The boost ``fsnorm watch``, ``capture`` and ``serve`` take by default (``--priority-boost``), as auditd
#: does: 4 nice levels, a weight about 2.4 times the default's (module docstring).
DEFAULT_CLI_BOOST = 4
#: The nice range: -20 (highest priority) to 19.
NICE_MIN, NICE_MAX = -20, 19
MAX_BOOST = NICE_MAX - NICE_MIN

AUTOGROUP_FILE = "/proc/self/autogroup"
AUTOGROUP_SWITCH = "/proc/sys/kernel/sched_autogroup_enabled"
TASKS_DIR = "/proc/self/task"


@dataclass(frozen=True)
class PriorityBoost:
    """What :func:`boost_priority` did, and what it found, so that :meth:`restore` can give it back."""

    #: Nice levels asked for.
    boost: int
    #: The nice value the threads were given (the calling thread's before, less ``boost``, at least -20).
    nice: int
    #: (thread id, nice before) of each thread changed.
    threads: tuple[tuple[int, int], ...] = ()
    #: (nice before, nice after) of the session's scheduling group; None where it was left alone (the kernel
    #: does not group by session, or it was already at or above ``nice``, or it could not be changed).
    autogroup: tuple[int, int] | None = None
    #: Why part of the boost was not applied (None: all of it was).
    error: str | None = None

    @property
    def applied(self) -> bool:
        """True when every part of the boost took effect."""
        return self.error is None

    def restore(self) -> None:
        """Give back the previous nice values that are still as this boost left them: another program (or
        another boost) that changed them since keeps its change. Raising a nice value needs no privilege;
        the session group's can be refused for a second after a change (``EAGAIN``) and is then left."""
        for tid, before in self.threads:
            with contextlib.suppress(OSError):  # the thread has ended (ESRCH)
                if os.getpriority(os.PRIO_PROCESS, tid) == self.nice:
                    os.setpriority(os.PRIO_PROCESS, tid, before)
        if self.autogroup is not None:
            before, after = self.autogroup
            if autogroup_nice() == after:
                with contextlib.suppress(OSError):
                    _write_autogroup(before)


def check_boost(boost: int) -> None:
    """ValueError unless ``boost`` is 0 (leave the priority alone) to 39 (the whole nice range)."""
    if isinstance(boost, bool) or not isinstance(boost, int) or not 0 <= boost <= MAX_BOOST:
        raise ValueError(f"a priority boost is 0 (none) to {MAX_BOOST} nice levels, not {boost!r}")


def autogroup_nice() -> int | None:
    """The nice value of the session group this process is scheduled in, or None where the kernel does not
    group by session (no ``CONFIG_SCHED_AUTOGROUP``, or ``sched_autogroup_enabled`` = 0)."""
    try:
        with open(AUTOGROUP_SWITCH, "rb") as f:
            if f.read().strip() != b"1":
                return None
        with open(AUTOGROUP_FILE, "rb") as f:
            fields = f.read().split()  # b"/autogroup-1164 nice 0"
    except OSError:
        return None
    if len(fields) != 3 or fields[1] != b"nice":
        return None
    try:
        return int(fields[2])
    except ValueError:
        return None


def _write_autogroup(nice: int) -> None:
    """os.write, not a file object: an unbuffered file's write returns None for EAGAIN (the kernel's "once a
    second" answer) instead of raising."""
    fd = os.open(AUTOGROUP_FILE, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, b"%d" % nice)
    finally:
        os.close(fd)


def _thread_ids() -> list[int]:
    try:
        return sorted(int(name) for name in os.listdir(TASKS_DIR) if name.isdigit())
    except OSError:
        return [0]  # no /proc: the calling thread only


def boost_priority(boost: int) -> PriorityBoost:
    """Raise this process's threads and its session group by ``boost`` nice levels (module docstring). Never
    raises for a refusal: the result's ``error`` says what was not done. ValueError for a bad ``boost``."""
    check_boost(boost)
    base = os.getpriority(os.PRIO_PROCESS, 0)
    nice = max(NICE_MIN, base - boost)
    if not boost:
        return PriorityBoost(boost, base)
    changed: list[tuple[int, int]] = []
    problems: list[str] = []
    for tid in _thread_ids():
        try:
            before = os.getpriority(os.PRIO_PROCESS, tid)
            if before > nice:
                os.setpriority(os.PRIO_PROCESS, tid, nice)
                changed.append((tid, before))
        except OSError as exc:
            if exc.errno == errno.ESRCH:
                continue  # the thread ended meanwhile
            problems.append(f"nice {nice} not set: {exc.strerror}"
                            + (" (needs CAP_SYS_NICE or RLIMIT_NICE)" if exc.errno in (errno.EPERM, errno.EACCES)
                               else ""))
            break
    group = _boost_autogroup(nice, problems)
    return PriorityBoost(boost, nice, tuple(changed), group, "; ".join(problems) or None)


def _boost_autogroup(nice: int, problems: list[str]) -> tuple[int, int] | None:
    """Raise the session group to ``nice`` if it is below it; (before, after), or None if left alone."""
    before = autogroup_nice()
    if before is None or before <= nice:
        return None
    try:
        _write_autogroup(nice)
    except OSError as exc:
        why = {errno.EPERM: " (needs CAP_SYS_NICE or RLIMIT_NICE)", errno.EACCES: " (needs CAP_SYS_NICE)",
               errno.EAGAIN: " (changed less than a second ago; needs CAP_SYS_ADMIN to change it sooner)"}
        problems.append(f"session group nice {nice} not set: {exc.strerror}{why.get(exc.errno or 0, '')}")
        return None
    return before, nice
