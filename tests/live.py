"""Helpers for tests against the real kernel: run a source until it is quiet, renameat2, sysctl overrides."""

from __future__ import annotations

import contextlib
import ctypes
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from normalizer.backends.base import LiveSource
from normalizer.backends.inotify import InotifySource
from normalizer.records import Rec

AT_FDCWD = -100
RENAME_EXCHANGE = 2
_libc = ctypes.CDLL(None, use_errno=True)
_renameat2 = _libc.renameat2
_renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]


def exchange(a: Path, b: Path) -> None:
    """renameat2(a, b, RENAME_EXCHANGE): swap two names atomically."""
    if _renameat2(AT_FDCWD, bytes(a), AT_FDCWD, bytes(b), RENAME_EXCHANGE) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def drain(source: InotifySource, *, quiet: float = 0.15, limit: float = 10.0) -> list[Rec]:
    """Read until nothing came for ``quiet`` seconds and nothing is pending in the matcher."""
    out: list[Rec] = []
    end = time.monotonic() + limit
    last = time.monotonic()
    while time.monotonic() < end:
        got = source.read(0.03)
        if got:
            out.extend(got)
            last = time.monotonic()
        elif time.monotonic() - last >= quiet and source.normalizer.matcher.next_deadline() is None:
            break
    return out


def read_until(source: LiveSource, path: Path, kind: str = "create", *, limit: float = 60.0) -> list[Rec]:
    """Read until the ``kind`` record of ``path`` came (everything the kernel queued before that event has
    been read); AssertionError if it does not within ``limit`` seconds (a bound against hanging, not a
    timing claim)."""
    out: list[Rec] = []
    want = os.fsencode(path)
    end = time.monotonic() + limit
    while time.monotonic() < end:
        got = source.read(0.05)
        out.extend(got)
        if any(r.kind == kind and r.path == want for r in got):
            return out
    raise AssertionError(f"no {kind} record of {path} within {limit} s")


def rel(root: Path, path: bytes) -> str:
    """A record path relative to the test's temp dir, "" for an absent side."""
    if not path:
        return ""
    return os.path.relpath(os.fsdecode(path), str(root))


def brief(root: Path, recs: list[Rec], *, kinds: tuple[str, ...] = ()) -> list[tuple[object, ...]]:
    """(kind, relpath[, reldst], flags), optionally only for some kinds."""
    out: list[tuple[object, ...]] = []
    for r in recs:
        if kinds and r.kind not in kinds:
            continue
        if r.kind == "rename":
            out.append(("rename", rel(root, r.path), rel(root, r.dst), tuple(str(f) for f in r.flags)))
        else:
            out.append((r.kind, rel(root, r.path), tuple(str(f) for f in r.flags)))
    return out


#: Held (flock) while a test has a kernel setting changed: the settings are the machine's, not the test run's.
SYSCTL_LOCK = Path("/run/lock/fsnorm-tests-sysctl.lock") if Path("/run/lock").is_dir() else \
    Path("/tmp/fsnorm-tests-sysctl.lock")
_sysctl_lock_held = 0
_sysctl_lock_file: IO[bytes] | None = None


@contextlib.contextmanager
def sysctl_lock() -> Iterator[None]:
    """One change of a kernel setting at a time on this machine, across processes; reentrant in a process (a
    counter, not per thread: the tests change settings from their main thread only).

    Two test runs side by side (a CI run and a developer's) each read the value they find and restore it: run B
    reading the 1,024 run A set would restore 1,024 after A restored the real value, and leave the machine at
    it. With the lock, B reads the value only once A has restored it. (A test that does not change a setting
    can still see the other run's change while it lasts: run the suite alone for numbers that mean something.)
    """
    import fcntl

    global _sysctl_lock_held, _sysctl_lock_file
    if _sysctl_lock_held == 0:
        f = open(SYSCTL_LOCK, "ab")  # noqa: SIM115 - held across the block, closed below
        try:
            fcntl.flock(f, fcntl.LOCK_EX)
        except BaseException:
            f.close()
            raise
        _sysctl_lock_file = f
    _sysctl_lock_held += 1
    try:
        yield
    finally:
        _sysctl_lock_held -= 1
        if _sysctl_lock_held == 0 and _sysctl_lock_file is not None:
            _sysctl_lock_file.close()  # releases the flock
            _sysctl_lock_file = None


@contextlib.contextmanager
def sysctl(name: str, value: int) -> Iterator[int]:
    """Set /proc/sys/<name> for the block and restore it in finally, holding :func:`sysctl_lock` meanwhile.
    Yields the original value."""
    path = Path("/proc/sys") / name.replace(".", "/")
    with sysctl_lock():
        original = int(path.read_text())
        path.write_text(str(value))
        try:
            yield original
        finally:
            path.write_text(str(original))


def storm_check(make_source: Callable[[], LiveSource], root: Path, queue_sysctl: str) -> None:
    """Run the storm workload (4 threads renaming across root/d0..d3 for 2 s, 2 threads creating, writing and
    deleting) against a source and assert: no overflow, every rename reported exactly once, joined, with its
    exact paths, no wrong join.

    The kernel queue is raised while the source is created (restored in finally; the limit is read at init):
    this checks pairing under storm interleavings, which an overflow on a loaded CI machine would mask.
    Keeping up with this storm with the default queue is a target measured by `make bench`; overflow handling
    has its own tests. Records are kept as compact tuples, as a consumer keeps what it needs: holding half a
    million record objects makes CPython's full GC passes long (~100 ms measured)."""
    import json
    import subprocess
    import sys

    from benchmarks.workloads import dirs, expected_renames

    for d in dirs(root, 4):
        d.mkdir()

    def compact(recs: list[Rec]) -> list[tuple[str, bytes, bytes, tuple[str, ...]]]:
        return [(r.kind, r.path, r.dst, r.flags) for r in recs]

    with sysctl(queue_sysctl, 1 << 20):
        source = make_source()
    with source as src:
        proc = subprocess.Popen([sys.executable, "-m", "benchmarks.workloads", "storm", str(root), "--seconds", "2",
                                 "--threads", "4", "--noise", "2"], stdout=subprocess.PIPE, text=True,
                                cwd=Path(__file__).parent.parent)
        seen = []
        while proc.poll() is None:
            seen.extend(compact(src.read(0.05)))
        seen.extend(compact(drain(src)))
        out, _ = proc.communicate()
    truth = json.loads(out)
    expected = expected_renames(root, truth["renames"], truth["dirs"])
    renames = [r for r in seen if r[0] == "rename"]
    got = [(os.fsdecode(src_), os.fsdecode(dst)) for _, src_, dst, _ in renames]
    assert not [r for r in seen if r[0] == "overflow"], "no overflow"
    assert len(got) == len(set(got)), "no rename reported twice"
    assert [r for r in renames if r[3]] == [], "no one-sided or flagged rename under storm"
    assert set(got) == expected, "every rename joined, exactly, no wrong join"
    assert all(n > 0 for n in truth["renames"]), "every storm thread renamed (how many: make bench)"


_NOBODY: list[str | None] = []


def require_nobody() -> None:
    """Skip (with the reason) unless this checkout can be run as user ``nobody`` through setpriv: the
    unprivileged tests need the interpreter and the package readable by everyone, which a checkout in a
    private directory is not."""
    import shutil
    import subprocess
    import sys

    import pytest

    if not _NOBODY:
        repo = Path(__file__).parent.parent
        reason: str | None = None
        if shutil.which("setpriv") is None:
            reason = "setpriv is not installed"
        else:
            res = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable,
                                  "-c", "import normalizer"], capture_output=True, text=True, timeout=60,
                                 env={**os.environ, "PYTHONPATH": str(repo)}, cwd="/")
            if res.returncode != 0:
                reason = f"this checkout cannot be run as user nobody: {res.stderr.strip().splitlines()[-1:]}"
        _NOBODY.append(reason)
    if _NOBODY[0] is not None:
        pytest.skip(_NOBODY[0])


def _fdinfo_count(pid: int, needle: str) -> int:
    n = 0
    for info in Path(f"/proc/{pid}/fdinfo").glob("*"):
        with contextlib.suppress(OSError):
            n += info.read_text().count(needle)
    return n


def wait_for_watches(pid: int, count: int, timeout: float = 30.0) -> None:
    """Until process ``pid`` holds ``count`` inotify watches (its fdinfo says so); AssertionError after
    ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while _fdinfo_count(pid, "inotify wd:") < count:
        if time.monotonic() > end:
            raise AssertionError(f"process {pid} did not set {count} inotify watches within {timeout} s")
        time.sleep(0.02)


def stop_process(proc: subprocess.Popen[str] | subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """SIGSTOP ``proc`` and return once every thread of it is stopped (state ``T`` in /proc): the signal is
    delivered asynchronously, and a watcher's reader thread that is woken by the test's first events before
    the stop lands would read them (a queue meant to overflow at 16 events then takes 17). AssertionError
    after ``timeout`` seconds."""
    import signal

    proc.send_signal(signal.SIGSTOP)
    end = time.monotonic() + timeout
    while True:
        states = set()
        for task in Path(f"/proc/{proc.pid}/task").iterdir():
            with contextlib.suppress(OSError):
                states.add(task.joinpath("stat").read_text().rsplit(")", 1)[1].split()[0])
        if states <= {"T", "t"}:
            return
        assert time.monotonic() < end, f"process {proc.pid} not stopped after {timeout} s (states {states})"
        time.sleep(0.001)


def wait_for_marks(pid: int, count: int, timeout: float = 30.0) -> None:
    """Until process ``pid`` holds ``count`` fanotify marks (inode, mount or filesystem: fdinfo has one
    ``fanotify ... mflags:`` line per mark); AssertionError after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while _fdinfo_count(pid, "mflags:") < count:
        if time.monotonic() > end:
            raise AssertionError(f"process {pid} did not set {count} fanotify marks within {timeout} s")
        time.sleep(0.02)


class Lines:
    """The stdout lines of a subprocess, read by a thread, so a test can wait for the next one with a bound
    (a bare ``readline()`` waits until the suite's timeout when the line never comes)."""

    def __init__(self, stream: IO[str]) -> None:
        import queue
        import threading

        self._queue: queue.Queue[str | None] = queue.Queue()
        self._stream = stream
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for line in self._stream:
            self._queue.put(line)
        self._queue.put(None)

    def next(self, timeout: float = 30.0) -> str:
        """The next line; AssertionError if none comes within ``timeout`` seconds or the stream ended."""
        import queue

        try:
            line = self._queue.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no line within {timeout} s") from None
        assert line is not None, "the stream ended"
        return line

    def ended(self, timeout: float) -> bool:
        """Whether the reader thread saw the end of the stream within ``timeout`` seconds (then the stream may be
        closed without pulling it from under the thread)."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def rest(self, timeout: float = 30.0) -> list[str]:
        """Every remaining line, once the stream has ended (the process closed its stdout)."""
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"the stream did not end within {timeout} s"
        out = []
        while (line := self._queue.get_nowait()) is not None:
            out.append(line)
        return out


def real_tree(root: Path) -> dict[bytes, bool]:
    """Everything below ``root`` (not following symlinks), as absolute path -> is_dir."""
    out: dict[bytes, bool] = {}
    stack = [os.fsencode(root)]
    while stack:
        top = stack.pop()
        with os.scandir(top) as entries:
            for entry in entries:
                path = os.path.join(top, entry.name)
                is_dir = entry.is_dir(follow_symlinks=False)
                out[path] = is_dir
                if is_dir:
                    stack.append(path)
    return out


def rebuild(start: dict[bytes, bool], recs: list[Rec]) -> dict[bytes, bool]:
    """The tree a consumer rebuilds from the records, starting from ``start`` (path -> is_dir): a create adds;
    a delete removes (with everything below); a two-sided rename moves the subtree, replacing what was at the
    destination; a source-only rename removes; a destination-only rename, or a two-sided one whose source is
    not known, adds the destination (keeping what is known below it). The rules of the shadow tree
    (normalizer/core/shadow.py) and of README "Overflow and rescan"."""
    tree = dict(start)

    def drop(path: bytes) -> dict[bytes, bool]:
        below = {p: d for p, d in tree.items() if p == path or p.startswith(path + b"/")}
        for p in below:
            del tree[p]
        return below

    for r in recs:
        if r.kind == "create":
            tree[r.path] = r.is_dir
        elif r.kind == "delete":
            drop(r.path)
        elif r.kind == "rename":
            moved = drop(r.path) if r.path and r.path in tree else {}
            if r.path and not moved:
                drop(r.path)
            if r.dst:
                if moved:
                    drop(r.dst)
                tree[r.dst] = r.is_dir
                for p, d in moved.items():
                    if p != r.path:
                        tree[r.dst + p[len(r.path):]] = d
    return tree


def tree_diff(real: dict[bytes, bool], rebuilt: dict[bytes, bool]) -> tuple[list[bytes], list[bytes]]:
    """(missing: in the real tree, not in the rebuilt one or with another type; phantom: the reverse)."""
    missing = sorted(p for p, d in real.items() if rebuilt.get(p) != d)
    phantom = sorted(p for p, d in rebuilt.items() if real.get(p) != d)
    return missing, phantom
