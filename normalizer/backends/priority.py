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
started later inherit it from the thread that starts them, except under ``SCHED_RESET_ON_FORK``, which resets
a negative nice: fsnorm's reader thread is then given it when it starts) and, where the kernel groups by
session, raises the session's group to the calling thread's new value (``/proc/self/autogroup``; never
lowered). Boosts in one process do not add up: while one is in force, another changes nothing, and the
priority is given back when the last of them is. The task nice alone does not
compete across sessions: a thread's weight counts only inside its group. Only the session group changes what
the watcher gets against a storm started elsewhere. The group is the whole session's: the watcher's consumer
(the shell pipeline or daemon that reads its output) shares it, which is what the latency needs too.
:meth:`PriorityBoost.restore` gives back what is still as it was left (the threads it changed, and the
group), so a terminal's session does not stay raised after the watcher exits. Threads started while boosted
keep the boosted value.

**Precedent and default.** ``auditd`` raises itself by 4 by default (``priority_boost`` in auditd.conf) for the
same reason: a consumer of a kernel event queue that falls behind loses events. ``fsnorm watch``, ``capture``
and ``serve`` do the same by default (``--priority-boost``, :func:`default_cli_boost`), unless they were
started at a nice value above 0 (``nice -n 10 fsnorm watch``: the user asked for less); the library
(``priority_boost=``, :data:`DEFAULT_BOOST`) does not touch its host process unless asked.

**Privilege.** A nice value below 0 needs ``CAP_SYS_NICE`` (root has it) or an ``RLIMIT_NICE`` that allows
it, for the threads and for the session group; and the kernel refuses a session-group change from a process
without ``CAP_SYS_ADMIN`` within 100 ms of the last one made by anyone (``EAGAIN``): fsnorm then tries once
more 110 ms later. A refusal is a :class:`PriorityBoost` whose ``error`` says what was not done; what was done
stays done.

**Where it does not apply.** In a cgroup with the cpu controller (cgroup v2 with the controller enabled, as
systemd does for units with ``CPUWeight=`` and on some distributions for every unit; a container with a CPU
share; cgroup v1 outside the root of the cpu hierarchy) the kernel schedules that cgroup, not the session: the
session group is left alone (:func:`autogroup_nice` says None) and the cgroup's weight is the lever
(``CPUWeight=`` for the unit). A thread under a real-time policy keeps it (its nice value has no effect there).
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import time
from dataclasses import dataclass

#: The library's default (``priority_boost=``): none; the host process's priority is its own.
DEFAULT_BOOST = 0
#: The boost ``fsnorm watch``, ``capture`` and ``serve`` take by default (``--priority-boost``), as auditd
#: does: 4 nice levels, a weight about 2.4 times the default's (module docstring).
DEFAULT_CLI_BOOST = 4
#: The nice range: -20 (highest priority) to 19.
NICE_MIN, NICE_MAX = -20, 19
MAX_BOOST = NICE_MAX - NICE_MIN
#: The wait before the one retry of a session-group change the kernel refused with EAGAIN (it allows one per
#: 100 ms, across the machine, to processes without CAP_SYS_ADMIN).
AUTOGROUP_RETRY_S = 0.11

AUTOGROUP_FILE = "/proc/self/autogroup"
AUTOGROUP_SWITCH = "/proc/sys/kernel/sched_autogroup_enabled"
CGROUP_FILE = "/proc/self/cgroup"
CGROUP2_MOUNT = "/sys/fs/cgroup"
TASKS_DIR = "/proc/self/task"

#: The boost in force in this process (None: none) and how many holders share it (boost_priority / restore).
_lock = threading.Lock()
_held: PriorityBoost | None = None
_holders = 0


@dataclass(frozen=True)
class PriorityBoost:
    """What :func:`boost_priority` did, and what it found, so that :meth:`restore` can give it back."""

    #: Nice levels asked for.
    boost: int
    #: The calling thread's nice value after the boost (its value before, less ``boost``, at least -20): the
    #: value the session group is raised to.
    nice: int
    #: (thread id, nice before, nice given) of each thread changed.
    threads: tuple[tuple[int, int, int], ...] = ()
    #: (nice before, nice after) of the session's scheduling group; None where it was left alone (the kernel
    #: does not schedule this process by session, or the group was already at or above ``nice``, or it could
    #: not be changed).
    autogroup: tuple[int, int] | None = None
    #: Why part of the boost was not applied (None: all of it was).
    error: str | None = None

    @property
    def applied(self) -> bool:
        """True when every part of the boost took effect."""
        return self.error is None

    def restore(self) -> None:
        """Give this holder's share of the boost back (once per holder): the last holder in the process gives
        back the previous nice values that are still as the boost left them (another program, or the user, that
        changed one since keeps its change). Raising a nice value needs no privilege; a session-group change
        refused twice (EAGAIN) is left."""
        global _held, _holders
        with _lock:
            if _held is not self:
                return  # a boost of 0, or given back already
            _holders -= 1
            if _holders > 0:
                return
            _held = None
        self._give_back()

    def _give_back(self) -> None:
        for tid, before, given in self.threads:
            with contextlib.suppress(OSError):  # the thread has ended (ESRCH), or its id is gone
                if tid and not os.path.exists(f"{TASKS_DIR}/{tid}"):
                    continue  # ended: its id may be another process's by now
                if os.getpriority(os.PRIO_PROCESS, tid) == given:
                    os.setpriority(os.PRIO_PROCESS, tid, before)
        if self.autogroup is not None:
            before, after = self.autogroup
            if autogroup_nice() == after:
                with contextlib.suppress(OSError):
                    set_autogroup_nice(before)


def check_boost(boost: int) -> None:
    """ValueError unless ``boost`` is 0 (leave the priority alone) to 39 (the whole nice range)."""
    if isinstance(boost, bool) or not isinstance(boost, int) or not 0 <= boost <= MAX_BOOST:
        raise ValueError(f"a priority boost is 0 (none) to {MAX_BOOST} nice levels, not {boost!r}")


def default_cli_boost() -> int:
    """The CLI's boost when none is given: :data:`DEFAULT_CLI_BOOST`, or 0 for a process started at a nice
    value above 0 (``nice -n 10 fsnorm watch``: the user asked for less, and is not overridden)."""
    return DEFAULT_CLI_BOOST if os.getpriority(os.PRIO_PROCESS, 0) <= 0 else 0


def _cpu_cgroup_is_root() -> bool:
    """True when the kernel schedules this process in the root cpu group, the only one where session groups
    apply (``task_wants_autogroup``): cgroup v1's cpu hierarchy at "/", or cgroup v2 with the cpu controller
    not enabled for the process's cgroup."""
    try:
        with open(CGROUP_FILE, "rb") as f:
            lines = f.read().splitlines()
    except OSError:
        return True  # no cgroups: nothing but the root group
    unified: bytes | None = None
    for line in lines:
        _, controllers, path = line.split(b":", 2)
        if b"cpu" in controllers.split(b","):
            return path == b"/"  # cgroup v1 (or hybrid): its cpu hierarchy decides
        if controllers == b"":
            unified = path
    if unified is None or unified == b"/":
        return True
    try:
        with open(f"{CGROUP2_MOUNT}{os.fsdecode(unified)}/cgroup.controllers", "rb") as f:
            return b"cpu" not in f.read().split()
    except OSError:
        return True  # not mounted where expected: cannot tell; the write is harmless either way


def autogroup_nice() -> int | None:
    """The nice value of the session group this process is scheduled in, or None where the kernel does not
    schedule it by session (no ``CONFIG_SCHED_AUTOGROUP``, ``sched_autogroup_enabled`` = 0, or a cpu
    cgroup of its own: module docstring)."""
    try:
        with open(AUTOGROUP_SWITCH, "rb") as f:
            if f.read().strip() != b"1":
                return None
        with open(AUTOGROUP_FILE, "rb") as f:
            fields = f.read().split()  # b"/autogroup-1164 nice 0"
    except OSError:
        return None
    if len(fields) != 3 or fields[1] != b"nice" or not _cpu_cgroup_is_root():
        return None
    try:
        return int(fields[2])
    except ValueError:
        return None


def set_autogroup_nice(nice: int) -> None:
    """Set this process's session group's nice value (OSError if refused). os.write, not a file object: an
    unbuffered file's write returns None for EAGAIN instead of raising.
    One retry after :data:`AUTOGROUP_RETRY_S` when the kernel says EAGAIN (its 100 ms limit)."""
    for attempt in (0, 1):
        fd = os.open(AUTOGROUP_FILE, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, b"%d" % nice)
            return
        except BlockingIOError:
            if attempt:
                raise
        finally:
            os.close(fd)
        time.sleep(AUTOGROUP_RETRY_S)


def _thread_ids() -> list[int]:
    try:
        return sorted(int(name) for name in os.listdir(TASKS_DIR) if name.isdigit())
    except OSError:
        return [0]  # no /proc: the calling thread only


def boost_priority(boost: int) -> PriorityBoost:
    """Raise this process's threads and its session group by ``boost`` nice levels (module docstring). Never
    raises for a refusal: the result's ``error`` says what was not done. ValueError for a bad ``boost``. While
    an earlier boost is in force, the same boost object is shared (nothing changes again); each holder gives
    its share back with :meth:`PriorityBoost.restore`."""
    global _held, _holders
    check_boost(boost)
    with _lock:
        if _held is not None:
            _holders += 1
            return _held
        nice = max(NICE_MIN, os.getpriority(os.PRIO_PROCESS, 0) - boost)
        if not boost:
            return PriorityBoost(boost, nice)
        _held, _holders = _apply(boost, nice), 1
        return _held


def _apply(boost: int, nice: int) -> PriorityBoost:
    changed: list[tuple[int, int, int]] = []
    problems: list[str] = []
    for tid in _thread_ids():
        try:
            before = os.getpriority(os.PRIO_PROCESS, tid)
            given = max(NICE_MIN, before - boost)
            if given < before:
                os.setpriority(os.PRIO_PROCESS, tid, given)
                changed.append((tid, before, given))
        except OSError as exc:
            if exc.errno == errno.ESRCH:
                continue  # the thread ended meanwhile
            problems.append(f"nice {nice} not set: {exc.strerror}"
                            + (" (needs CAP_SYS_NICE or RLIMIT_NICE)" if exc.errno == errno.EPERM else ""))
            break
    group = _boost_autogroup(nice, problems)
    return PriorityBoost(boost, nice, tuple(changed), group, "; ".join(problems) or None)


def _boost_autogroup(nice: int, problems: list[str]) -> tuple[int, int] | None:
    """Raise the session group to ``nice`` if it is below it; (before, after), or None if left alone."""
    before = autogroup_nice()
    if before is None or before <= nice:
        return None
    try:
        set_autogroup_nice(nice)
    except OSError as exc:
        why = {errno.EPERM: " (needs CAP_SYS_NICE or RLIMIT_NICE)",
               errno.EACCES: " (/proc/self/autogroup is not this process's to write: it changed its user)",
               errno.EAGAIN: " (the kernel allows one change per 100 ms without CAP_SYS_ADMIN; tried twice)"}
        problems.append(f"session group nice {nice} not set: {exc.strerror}{why.get(exc.errno or 0, '')}")
        return None
    return before, nice
