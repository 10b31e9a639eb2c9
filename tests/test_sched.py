"""The scheduler slice fsnorm asks for (normalizer.backends.sched): set on the real kernel, read back with
``sched_getattr``, on the threads it belongs to and on no other.

The latency it buys is measured in ``make bench`` (the storm), never asserted here."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from live import Lines, wait_for_watches
from watchproc import FSNORM, REPO, close_watch, stop_watch, watching

import normalizer
from normalizer.api import make_source
from normalizer.backends import sched
from normalizer.backends.sched import DEFAULT_SLICE_US, SliceError, check_slice_us, request_slice, thread_slice_us
from normalizer.errors import SourceError

if thread_slice_us() is None:  # before Linux 6.6 the kernel neither keeps nor reports a slice
    pytest.skip("this kernel does not report scheduler slices (sched_getattr)", allow_module_level=True)


def in_thread(fn: Callable[[], object]) -> object:
    """``fn()`` in a fresh thread (its slice is its own: nothing here changes the test runner's thread)."""
    out: list[object] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            out.append(fn())
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=run)
    t.start()
    t.join(30)
    if errors:
        raise errors[0]
    return out[0]


def tids(pid: int) -> list[int]:
    return sorted(int(t) for t in os.listdir(f"/proc/{pid}/task"))


@pytest.fixture
def own_slice() -> Iterator[int | None]:
    """The test thread's slice, which must be the same after the test (fsnorm never changes its caller's)."""
    before = thread_slice_us()
    yield before
    assert thread_slice_us() == before


def test_a_slice_asked_for_is_the_slice_the_kernel_reports_for_that_thread_only(own_slice: int | None) -> None:
    def ask() -> tuple[int | None, int | None]:
        request_slice(700)
        return thread_slice_us(), thread_slice_us(threading.main_thread().native_id or 0)

    assert in_thread(ask) == (700, own_slice)


def test_a_thread_started_after_the_request_inherits_the_slice() -> None:
    def ask_then_start() -> object:
        request_slice(450)
        return in_thread(thread_slice_us)

    assert in_thread(ask_then_start) == 450


def test_zero_gives_the_thread_the_kernels_default_back() -> None:
    default = in_thread(thread_slice_us)

    def there_and_back() -> tuple[int | None, int | None]:
        request_slice(250)
        short = thread_slice_us()
        request_slice(0)
        return short, thread_slice_us()

    assert in_thread(there_and_back) == (250, default)


@pytest.mark.parametrize("us", [1, 99, 100_001, -5])
def test_a_slice_outside_the_kernels_bounds_is_refused_before_the_kernel_is_asked(us: int) -> None:
    with pytest.raises(ValueError, match="100-100000 microseconds"):
        check_slice_us(us)
    with pytest.raises(ValueError):
        request_slice(us)


def test_the_kernels_bounds_themselves_are_accepted() -> None:
    def both() -> tuple[int | None, int | None]:
        request_slice(sched.MIN_SLICE_US)
        low = thread_slice_us()
        request_slice(sched.MAX_SLICE_US)
        return low, thread_slice_us()

    assert in_thread(both) == (sched.MIN_SLICE_US, sched.MAX_SLICE_US)


def test_a_thread_under_the_idle_policy_is_left_alone_with_a_clear_error() -> None:
    def idle_then_ask() -> tuple[str, int]:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        try:
            request_slice(300)
        except SliceError as exc:
            return str(exc), os.sched_getscheduler(0)
        raise AssertionError("a SCHED_IDLE thread's slice was changed")

    message, policy = in_thread(idle_then_ask)  # type: ignore[misc]
    assert "policy" in message and policy == os.SCHED_IDLE


def test_a_refusal_by_the_kernel_is_a_slice_error_naming_the_errno() -> None:
    """The kernel refuses (EPERM): an unprivileged process asks for the slice of a thread of another user's
    process (pid 1's). Run in a child that drops root first."""
    code = ("import os; os.setgid(65534); os.setuid(65534)\n"
            "from normalizer.backends.sched import SliceError, request_slice\n"
            "try:\n    request_slice(300, 1)\nexcept SliceError as exc:\n    print(exc.errno, exc.strerror)\n"
            "else:\n    print('set')\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60,
                         check=False)
    assert res.returncode == 0 and res.stdout.strip() == "1 sched_setattr: Operation not permitted", res


def test_the_reset_on_fork_flag_is_kept() -> None:
    def flagged_then_ask() -> tuple[int, int | None]:
        os.sched_setscheduler(0, os.SCHED_OTHER | os.SCHED_RESET_ON_FORK, os.sched_param(0))
        request_slice(350)
        return os.sched_getscheduler(0), thread_slice_us()

    assert in_thread(flagged_then_ask) == (os.SCHED_OTHER | os.SCHED_RESET_ON_FORK, 350)


def test_the_nice_value_is_kept() -> None:
    def nice_then_ask() -> tuple[int, int | None]:
        os.setpriority(os.PRIO_PROCESS, 0, 7)  # this thread only (Linux)
        request_slice(300)
        return os.getpriority(os.PRIO_PROCESS, 0), thread_slice_us()

    assert in_thread(nice_then_ask) == (7, 300)


# -- the library: the reader thread only ----------------------------------------------------------------------


@pytest.mark.parametrize("reader", ["c", "python"])
def test_the_reader_thread_gets_the_slice_and_the_callers_thread_keeps_its_own(
        tree: Path, reader: str, own_slice: int | None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FSNORM_READER", reader)
    before = set(tids(os.getpid()))
    source = make_source([tree / "w"], sched_slice_us=900)
    try:
        source.open()
        assert source._reader is not None
        tid = source._reader.native_id
        assert tid is not None and tid not in before and tid in tids(os.getpid())
        assert thread_slice_us(tid) == 900
        assert source.sched_slice_error is None
    finally:
        source.close()


def test_by_default_and_with_zero_the_reader_thread_keeps_the_kernels_slice(tree: Path,
                                                                            own_slice: int | None) -> None:
    assert DEFAULT_SLICE_US == 0
    for option, expected in ((None, own_slice), (0, own_slice)):
        source = make_source([tree / "w"]) if option is None else make_source([tree / "w"], sched_slice_us=option)
        try:
            source.open()
            assert source._reader is not None and source._reader.native_id is not None
            assert thread_slice_us(source._reader.native_id) == expected
        finally:
            source.close()


def test_the_stream_still_reports_with_the_slice(tree: Path, own_slice: int | None) -> None:
    with normalizer.watch(tree / "w", sched_slice_us=150) as stream:
        os.rename(tree / "w/a", tree / "w/c")
        got = next(iter(stream))
    assert (got.kind, got.src, got.dst) == ("rename", str(tree / "w/a"), str(tree / "w/c"))


@pytest.mark.parametrize("bad", [50, 200_000, -1])
def test_the_library_refuses_a_slice_out_of_bounds_with_a_source_error(tree: Path, bad: int) -> None:
    with pytest.raises(SourceError, match="sched_slice_us"):
        make_source([tree / "w"], sched_slice_us=bad)


# -- the CLI: its whole process -------------------------------------------------------------------------------


def test_watch_gives_every_thread_of_its_process_the_slice_asked_for(tree: Path) -> None:
    with watching([str(tree / "w"), "--sched-slice", "400"], 3) as (proc, lines):
        threads = tids(proc.pid)
        assert len(threads) >= 2  # the loop and the reader thread
        assert {tid: thread_slice_us(tid) for tid in threads} == dict.fromkeys(threads, 400)
        os.rename(tree / "w/a", tree / "w/d")
        assert '"kind":"rename"' in lines.next()
        _, err = stop_watch(proc, lines)
    assert "slice" not in err


def test_watch_keeps_the_kernels_slice_by_default_and_with_zero(tree: Path) -> None:
    default = in_thread(thread_slice_us)
    for args, expected in (([], default), (["--sched-slice", "0"], default)):
        with watching([str(tree / "w"), *args], 3) as (proc, lines):
            assert {thread_slice_us(t) for t in tids(proc.pid)} == {expected}
            stop_watch(proc, lines)


@pytest.mark.parametrize(("value", "says"), [("50", "100-100000 microseconds"), ("fast", "not a number")])
def test_watch_refuses_a_bad_slice_as_a_usage_error(tree: Path, value: str, says: str) -> None:
    res = subprocess.run([*FSNORM, "watch", str(tree / "w"), "--sched-slice", value], cwd=REPO,
                         capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 2 and says in res.stderr and "Traceback" not in res.stderr


def test_watch_under_a_policy_without_slices_says_so_once_and_goes_on_watching(tree: Path) -> None:
    """``chrt --idle``: the kernel has no slice for SCHED_IDLE; fsnorm warns and watches as before."""
    cmd = ["chrt", "--idle", "0", *FSNORM, "watch", str(tree / "w"), "--sched-slice", "300"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    assert proc.stdout is not None
    lines = Lines(proc.stdout)
    try:
        wait_for_watches(proc.pid, 3)
        os.rename(tree / "w/a", tree / "w/e")
        assert '"kind":"rename"' in lines.next()
        _, err = stop_watch(proc, lines)
    finally:
        close_watch(proc, lines)
    assert err.count("scheduler slice of 300 us not set") == 1, err


def test_help_names_the_option_and_its_default() -> None:
    res = subprocess.run([*FSNORM, "watch", "--help"], cwd=REPO, capture_output=True, text=True, timeout=60,
                         check=True, env={**os.environ, "COLUMNS": "200"})
    assert "--sched-slice USEC" in res.stdout and f"default {DEFAULT_SLICE_US}: the kernel's" in res.stdout


def test_the_module_imports_ctypes_only_when_a_slice_is_asked_for() -> None:
    code = "import sys, normalizer; assert 'ctypes' not in sys.modules, 'ctypes imported'"
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)
