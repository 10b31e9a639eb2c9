"""The priority boost (normalizer.backends.priority) on the real kernel: the nice value of every thread of the
process, the session's scheduling group (``/proc/PID/autogroup``), what is given back, and what an unprivileged
process is told.

Every boost here runs in a child process in a session of its own (``start_new_session``): the test runner's
session group is never touched by these tests. The latency the boost buys is measured in ``make bench`` (the
storm, benchmarks/README.md "Priority boost"), never asserted here."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from live import Lines, require_nobody, wait_for_watches
from watchproc import FSNORM, REPO, close_watch, stop_watch

import normalizer
from normalizer.backends.priority import DEFAULT_CLI_BOOST, MAX_BOOST, check_boost
from normalizer.errors import SourceError


def _probe() -> tuple[bool, bool]:
    """Whether a process in a session of its own is scheduled by session group here and may raise itself and
    its group (root with CAP_SYS_NICE; a container's root may lack it), asked of such a child: the test runner
    may be in the kernel's default group, which has no file of its own."""
    code = ("import os; from normalizer.backends.priority import autogroup_nice\n"
            "grouped = ok = autogroup_nice() is not None\n"
            "if ok:\n"
            "    try:\n"
            "        os.setpriority(os.PRIO_PROCESS, 0, -1); fd = os.open('/proc/self/autogroup', os.O_WRONLY)\n"
            "        os.write(fd, b'-1'); os.close(fd)\n"
            "    except OSError:\n"
            "        ok = False\n"
            "print(grouped, ok)")
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60,
                         check=True, start_new_session=True)
    grouped, can_raise = res.stdout.split()
    return grouped == "True", can_raise == "True"


GROUPS, CAN_RAISE = _probe()
needs_groups = pytest.mark.skipif(not CAN_RAISE, reason="this kernel does not group tasks by session (autogroup), or "
                                  "this root may not raise a priority (no CAP_SYS_NICE)")
NOBODY = 65534

#: Run in the child before the code under test. ``unprivileged``: become an ordinary user, keeping /proc/self
#: writable by it as for any process that never changed its credentials (PR_SET_DUMPABLE). ``without_admin``:
#: stay root but give up CAP_SYS_ADMIN (capset), as a service granted only CAP_SYS_NICE is.
_UNPRIVILEGED = """
import ctypes, os, struct
libc = ctypes.CDLL(None, use_errno=True)
def unprivileged():
    os.setgroups([]); os.setgid(65534); os.setuid(65534)
    libc.prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE
def without_admin():
    header = ctypes.create_string_buffer(struct.pack("=Ii", 0x20080522, 0))  # _LINUX_CAPABILITY_VERSION_3
    data = ctypes.create_string_buffer(24)
    assert libc.capget(header, data) == 0
    caps = list(struct.unpack("=6I", data.raw))
    caps[0] &= ~(1 << 21)  # CAP_SYS_ADMIN out of the effective set
    assert libc.capset(header, ctypes.create_string_buffer(struct.pack("=6I", *caps), 24)) == 0
"""

_PROBE = """
import json, os, threading
from normalizer.backends.priority import autogroup_nice, boost_priority
def nices():
    found = set()
    for t in os.listdir("/proc/self/task"):
        try:
            found.add(os.getpriority(os.PRIO_PROCESS, int(t)))
        except ProcessLookupError:
            pass  # a thread that ended (joined) can still be listed for a moment
    return sorted(found)
def state():
    return {"nices": nices(), "group": autogroup_nice()}
os.setpriority(os.PRIO_PROCESS, 0, 0)  # whatever the test runner was started at (`nice make test`)
if autogroup_nice() not in (None, 0):
    with open("/proc/self/autogroup", "w") as f:
        f.write("0")
"""


#: The children's environment: the checkout on their path, and without coverage's subprocess patch (its
#: COVERAGE_* variables), since a child that gives up root cannot write coverage's data file in the checkout.
CHILD_ENV = {**{k: v for k, v in os.environ.items() if not k.startswith("COVERAGE")}, "PYTHONPATH": str(REPO)}


def in_session(body: str, *, user: str = "") -> dict[str, object]:
    """Run ``body`` (which sets ``out``, a dict) in a fresh Python in a session of its own; its ``out``."""
    code = _UNPRIVILEGED + _PROBE + textwrap.dedent(user) + textwrap.dedent(body) + "\nprint(json.dumps(out))\n"
    res = subprocess.run([sys.executable, "-c", code], cwd="/", env=CHILD_ENV, capture_output=True, text=True,
                         timeout=60, check=False, start_new_session=True)
    assert res.returncode == 0, res.stderr
    result: dict[str, object] = json.loads(res.stdout.strip().splitlines()[-1])
    return result


# -- the function ----------------------------------------------------------------------------------------------


@needs_groups
def test_every_thread_and_the_session_group_are_raised_and_given_back() -> None:
    out = in_session("""
        gate = threading.Event()
        early = threading.Thread(target=gate.wait, daemon=True); early.start()  # exists before the boost
        def pair():
            return [os.getpriority(os.PRIO_PROCESS, 0), os.getpriority(os.PRIO_PROCESS, early.native_id)]
        before = {"threads": pair(), "group": autogroup_nice()}
        b = boost_priority(4)
        late_nice = []
        late = threading.Thread(target=lambda: late_nice.append(os.getpriority(os.PRIO_PROCESS, 0)))
        late.start(); late.join()
        during = {"threads": pair(), "group": autogroup_nice()}
        b.restore()
        after = {"threads": pair(), "group": autogroup_nice()}
        gate.set(); early.join()
        out = {"before": before, "during": during, "after": after, "late": late_nice, "error": b.error,
               "group": b.autogroup, "threads": len(b.threads)}
    """)
    assert out["before"] == {"threads": [0, 0], "group": 0}
    assert out["during"] == {"threads": [-4, -4], "group": -4}
    assert out["late"] == [-4]  # a thread started after the boost inherits it
    assert out["threads"] == 2 and out["group"] == [0, -4] and out["error"] is None
    assert out["after"] == {"threads": [0, 0], "group": 0}


@needs_groups
def test_the_boost_counts_from_the_nice_value_the_process_was_started_with() -> None:
    out = in_session("""
        os.setpriority(os.PRIO_PROCESS, 0, 10)  # `nice -n 10 fsnorm watch`: the user asked for less
        b = boost_priority(4)
        out = {"during": state(), "group": b.autogroup}
    """)
    # The threads go from 10 to 6; the session group (0) is already above that and is never lowered.
    assert out == {"during": {"nices": [6], "group": 0}, "group": None}


@needs_groups
def test_each_thread_is_lowered_from_its_own_nice_value() -> None:
    out = in_session("""
        gate, ready = threading.Event(), threading.Event()
        mine = []
        def background():
            os.setpriority(os.PRIO_PROCESS, 0, 10)  # a host's thread kept low on purpose
            ready.set(); gate.wait(); mine.append(os.getpriority(os.PRIO_PROCESS, 0))
        t = threading.Thread(target=background, daemon=True); t.start(); ready.wait()
        b = boost_priority(4)
        gate.set(); t.join()
        out = {"main": os.getpriority(os.PRIO_PROCESS, 0), "background": mine, "group": state()["group"]}
    """)
    assert out == {"main": -4, "background": [6], "group": -4}


@needs_groups
def test_boosts_in_one_process_do_not_add_up_and_the_last_gives_back() -> None:
    out = in_session("""
        first = boost_priority(4)
        second = boost_priority(4)
        both = state()
        first.restore()
        one_left = state()
        second.restore()
        out = {"both": both, "one_left": one_left, "after": state(), "same": first is second}
    """)
    assert out == {"both": {"nices": [-4], "group": -4}, "one_left": {"nices": [-4], "group": -4},
                   "after": {"nices": [0], "group": 0}, "same": True}


@needs_groups
def test_the_nice_range_ends_at_minus_20() -> None:
    out = in_session("""
        b = boost_priority(39)
        out = {"during": state(), "nice": b.nice}
    """)
    assert out == {"during": {"nices": [-20], "group": -20}, "nice": -20}


@needs_groups
def test_restore_leaves_what_someone_else_changed_since() -> None:
    out = in_session("""
        b = boost_priority(4)
        with open("/proc/self/autogroup", "w") as f:
            f.write("-7")  # an administrator's own choice, made while fsnorm ran
        os.setpriority(os.PRIO_PROCESS, 0, -2)
        b.restore()
        out = state()
    """)
    assert out == {"nices": [-2], "group": -7}


def test_zero_changes_nothing() -> None:
    out = in_session("""
        b = boost_priority(0)
        out = {"state": state(), "threads": b.threads, "group": b.autogroup, "applied": b.applied}
    """)
    assert out == {"state": {"nices": [0], "group": 0 if GROUPS else None}, "threads": [], "group": None,
                   "applied": True}


@pytest.mark.parametrize("bad", [-1, MAX_BOOST + 1, True, 4.0, "4"])
def test_a_boost_outside_the_nice_range_is_refused_before_anything_changes(bad: object) -> None:
    with pytest.raises(ValueError, match="0 \\(none\\) to 39 nice levels"):
        check_boost(bad)  # type: ignore[arg-type]


def test_an_unprivileged_process_is_told_why_and_nothing_changes() -> None:
    out = in_session("""
        unprivileged()
        b = boost_priority(4)
        out = {"state": state(), "error": b.error, "threads": b.threads, "group": b.autogroup}
    """)
    assert out["state"] == {"nices": [0], "group": 0 if GROUPS else None}
    assert out["threads"] == [] and out["group"] is None
    assert "Permission denied" in str(out["error"]) and "CAP_SYS_NICE or RLIMIT_NICE" in str(out["error"])


@needs_groups
def test_without_cap_sys_admin_a_session_group_change_just_after_another_is_refused_and_said() -> None:
    """The kernel refuses a session-group change from a process without CAP_SYS_ADMIN within 100 ms of the
    last change made by anyone (EAGAIN): here, the one just made. fsnorm retries once after
    AUTOGROUP_RETRY_S (made 0 here, so that both tries fall in the 100 ms); the threads are raised
    (CAP_SYS_NICE), the group is said to be left. 150 ms later the group is raised too."""
    out = in_session("""
        import normalizer.backends.priority as priority
        priority.AUTOGROUP_RETRY_S = 0.0
        with open("/proc/self/autogroup", "w") as f:
            f.write("0")  # a change, just now
        without_admin()
        b = boost_priority(4)
        first = {"state": state(), "error": b.error, "group": b.autogroup}
        b.restore()
        time.sleep(0.15)
        b = boost_priority(4)
        out = {"first": first, "second": {"state": state(), "error": b.error, "group": b.autogroup}}
    """, user="import time\n")
    first, second = out["first"], out["second"]
    assert isinstance(first, dict) and isinstance(second, dict)
    assert first["state"] == {"nices": [-4], "group": 0} and first["group"] is None
    assert "one change per 100 ms without CAP_SYS_ADMIN" in str(first["error"])
    assert second == {"state": {"nices": [-4], "group": -4}, "error": None, "group": [0, -4]}


# -- the library: off unless asked, given back at close ---------------------------------------------------------


@needs_groups
def test_the_library_boosts_only_when_asked_and_gives_it_back_at_close(tree: Path) -> None:
    out = in_session(f"""
        import normalizer
        with normalizer.watch({str(tree / "w")!r}) as s:
            plain = state()
        with normalizer.watch({str(tree / "w")!r}, priority_boost=3) as s:
            reader = s.source._reader.native_id
            boosted = state()
            reader_nice = os.getpriority(os.PRIO_PROCESS, reader)
            error = s.source.priority.error
        # After close: the caller's thread and the group (the reader thread, started boosted, has ended).
        after = {{"nices": [os.getpriority(os.PRIO_PROCESS, 0)], "group": autogroup_nice()}}
        out = {{"plain": plain, "boosted": boosted, "reader": reader_nice, "error": error, "after": after}}
    """)
    assert out["plain"] == {"nices": [0], "group": 0}
    assert out["boosted"] == {"nices": [-3], "group": -3} and out["reader"] == -3 and out["error"] is None
    assert out["after"] == {"nices": [0], "group": 0}


@needs_groups
def test_the_reader_thread_is_boosted_under_reset_on_fork(tree: Path) -> None:
    """SCHED_RESET_ON_FORK (systemd units often carry it) gives a new thread a negative nice back as 0: the
    reader thread, started after the boost, is given the boosted value by fsnorm itself."""
    out = in_session(f"""
        import normalizer
        os.sched_setscheduler(0, os.SCHED_OTHER | os.SCHED_RESET_ON_FORK, os.sched_param(0))
        with normalizer.watch({str(tree / "w")!r}, priority_boost=4) as s:
            reader = os.getpriority(os.PRIO_PROCESS, s.source._reader.native_id)
            plain = []
            t = threading.Thread(target=lambda: plain.append(os.getpriority(os.PRIO_PROCESS, 0)))
            t.start(); t.join()
        out = {{"reader": reader, "plain_thread": plain}}
    """)
    assert out == {"reader": -4, "plain_thread": [0]}  # the flag is in force: a plain new thread gets 0


@pytest.mark.parametrize("bad", [-4, 40])
def test_the_library_refuses_a_bad_boost_with_a_source_error(tree: Path, bad: int) -> None:
    with pytest.raises(SourceError, match="priority_boost"):
        normalizer.watch(tree / "w", priority_boost=bad)


# -- the CLI: on by default ---------------------------------------------------------------------------------------


def _start(args: list[str], *, nobody: bool = False) -> tuple[subprocess.Popen[str], Lines]:
    """``fsnorm watch ARGS`` in a session of its own (optionally as user nobody, through setpriv as the other
    unprivileged tests do), once it is started."""
    if nobody:
        require_nobody()  # skips, saying why, without setpriv or where nobody cannot read this checkout
    prefix = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"] if nobody else []
    proc = subprocess.Popen([*prefix, *FSNORM, "watch", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd="/" if nobody else REPO, env=CHILD_ENV, start_new_session=True)
    assert proc.stdout is not None
    return proc, Lines(proc.stdout)


def _nices(pid: int) -> set[int]:
    return {int(Path(f"/proc/{pid}/task/{t}/stat").read_text().rsplit(")", 1)[1].split()[16])
            for t in os.listdir(f"/proc/{pid}/task")}


def _group(pid: int) -> int:
    return int(Path(f"/proc/{pid}/autogroup").read_text().split()[-1])


@needs_groups
@pytest.mark.parametrize(("args", "nice"), [([], -DEFAULT_CLI_BOOST), (["--priority-boost", "0"], 0),
                                            (["--priority-boost", "7"], -7)])
def test_watch_raises_its_threads_and_session_by_default_and_gives_the_session_back(tree: Path, args: list[str],
                                                                                    nice: int) -> None:
    proc, lines = _start([str(tree / "w"), *args])
    try:
        wait_for_watches(proc.pid, 3)
        assert _nices(proc.pid) == {nice} and len(os.listdir(f"/proc/{proc.pid}/task")) >= 2
        assert _group(proc.pid) == nice
        os.rename(tree / "w/a", tree / "w/d")
        assert '"kind":"rename"' in lines.next()
        _, err = stop_watch(proc, lines)
    finally:
        close_watch(proc, lines)
    assert "priority" not in err


@needs_groups
def test_watch_gives_the_session_group_back_when_it_exits(tree: Path) -> None:
    """The shell (here: sh) that started ``fsnorm watch`` in its session reads its group after fsnorm exits."""
    script = (f"cat /proc/self/autogroup; {' '.join(FSNORM)} watch {tree / 'w'} >/dev/null 2>&1 & "
              "i=0; while grep -q ' nice 0$' /proc/self/autogroup && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); "
              "done; cat /proc/self/autogroup; kill -TERM $!; wait $!; cat /proc/self/autogroup")
    res = subprocess.run(["sh", "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60, check=True,
                         start_new_session=True)
    nices = [int(line.split()[-1]) for line in res.stdout.splitlines()]
    assert nices == [0, -DEFAULT_CLI_BOOST, 0], res.stdout


@pytest.fixture
def public_tree() -> Iterator[Path]:
    """The ``tree`` layout where an unprivileged user can watch and rename (pytest's own temporary directory is
    private to root), owned by that user; removed afterwards."""
    base = Path(tempfile.mkdtemp(prefix="fsnorm-priority-", dir="/tmp"))
    try:
        for d in ("w/a", "w/b", "out"):
            (base / d).mkdir(parents=True)
        for p in (base, base / "w", base / "w/a", base / "w/b", base / "out"):
            os.chown(p, NOBODY, NOBODY)
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_unprivileged_watch_skips_the_default_quietly_and_warns_about_an_explicit_boost(public_tree: Path) -> None:
    tree = public_tree
    for args, warned in (([], False), (["--priority-boost", "4"], True)):
        proc, lines = _start([str(tree / "w"), *args], nobody=True)
        try:
            wait_for_watches(proc.pid, 3)
            assert _nices(proc.pid) == {0}
            os.rename(tree / "w/a", tree / "w/d")
            assert '"kind":"rename"' in lines.next()
            os.rename(tree / "w/d", tree / "w/a")
            _, err = stop_watch(proc, lines)
        finally:
            close_watch(proc, lines)
        assert err.count("priority boost of 4 not (fully) applied (nice -4 not set: Permission denied") == warned, err


@contextlib.contextmanager
def _watching(cmd: list[str]) -> Iterator[subprocess.Popen[str]]:
    """``cmd`` (an fsnorm command that watches ``tree``'s three directories) in a session of its own, for the
    block, once it watches; stopped cleanly (exit 0, no traceback) after it."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                            start_new_session=True)
    assert proc.stdout is not None
    lines = Lines(proc.stdout)
    try:
        wait_for_watches(proc.pid, 3)
        yield proc
        stop_watch(proc, lines)
    finally:
        close_watch(proc, lines)


@needs_groups
def test_watch_started_at_a_low_priority_keeps_it_by_default(tree: Path) -> None:
    """``nice -n 10 fsnorm watch``: the user asked for less; the default boost does not override it (an
    explicit --priority-boost still applies)."""
    for args, nice in (([], 10), (["--priority-boost", "4"], 6)):
        with _watching(["nice", "-n", "10", *FSNORM, "watch", str(tree / "w"), *args]) as proc:
            assert _nices(proc.pid) == {nice} and _group(proc.pid) == 0


@needs_groups
def test_capture_boosts_by_default_too(tree: Path) -> None:
    with _watching([*FSNORM, "capture", str(tree / "w"), "-o", str(tree / "s.fsncap")]) as proc:
        assert _nices(proc.pid) == {-DEFAULT_CLI_BOOST} and _group(proc.pid) == -DEFAULT_CLI_BOOST


@pytest.mark.parametrize(("value", "says"), [("-1", "0 (none) to 39"), ("40", "0 (none) to 39"),
                                             ("high", "not a number of nice levels")])
def test_watch_refuses_a_bad_boost_as_a_usage_error(tree: Path, value: str, says: str) -> None:
    res = subprocess.run([*FSNORM, "watch", str(tree / "w"), "--priority-boost", value], cwd=REPO,
                         capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 2 and says in res.stderr and "Traceback" not in res.stderr


def test_help_names_the_option_and_its_default() -> None:
    res = subprocess.run([*FSNORM, "watch", "--help"], cwd=REPO, capture_output=True, text=True, timeout=60,
                         check=True, env={**os.environ, "COLUMNS": "200"})
    assert "--priority-boost N" in res.stdout and f"default {DEFAULT_CLI_BOOST}, as auditd" in res.stdout
