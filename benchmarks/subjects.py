"""The subjects under test. Each runs in its own process and watches before the workload starts:

    python -m benchmarks.subjects NAME ROOT OUT --sentinel NAME [--window-ms MS]

Each writes what reached *user code* to OUT, stamped with CLOCK_MONOTONIC at the moment user code got it, and
holds nothing in memory (a daemon would act on each record and drop it):

* ``tsv``: one line per record, ``t_ns<TAB>kind<TAB>src<TAB>dst<TAB>flags`` (see :class:`benchmarks.model.Record`);
* ``jsonl``: fsnorm's own JSON Lines exactly as ``fsnorm watch`` printed them, each chunk read from its stdout
  preceded by a line ``#t_ns``;
* ``rawdump``: the raw reader's reads, each a header ``<qqi`` (t_ns, bytes still queued after the read
  (FIONREAD), length) and the bytes the kernel returned; the watch table goes to OUT.wds.json.

Protocol with the harness, one line each on stdout: ``ready`` once the subject delivered the create of its own
probe file (its watches are in place); ``end`` once it delivered the create of a file ROOT/SENTINEL* (everything
the kernel queued before it has reached user code: every subject here keeps the kernel's order; the harness
creates SENTINEL-1, -2, ... until one arrives, since one created while the queue is full is lost in the
overflow); ``stats {json}`` at exit. SIGTERM stops it; SIGSTOP/SIGCONT of its process group stall it (burst workload).
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import io
import json
import logging
import os
import resource
import select
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, ClassVar

from normalizer.core import raw as rawbits

#: Header of one read in a ``rawdump`` file: t_ns, bytes still queued after the read, length of the data.
RAW_HEADER = struct.Struct("<qqi")
#: inotify mask used by the raw reader and pyinotify: fsnorm's default (no opens, no reads).
MASK = rawbits.DEFAULT_INOTIFY_MASK
_WATCH_FLAGS = rawbits.IN_ONLYDIR | rawbits.IN_DONT_FOLLOW | rawbits.IN_EXCL_UNLINK
_PROBE = ".fsbench-probe-"


def max_queued_events() -> int | None:
    try:
        return int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    except (OSError, ValueError):
        return None


class Control:
    """What a subject shares with its control thread: the probe and sentinel names, and the stop flag."""

    def __init__(self, root: str, sentinel: str) -> None:
        self.root = root
        self.probe_prefix = os.path.join(root, f"{_PROBE}{os.getpid()}-")
        self.probe_name = f"{_PROBE}{os.getpid()}-".encode()
        self.sentinel_path = os.path.join(root, sentinel)
        self.sentinel_name = sentinel.encode()
        self.ready = threading.Event()
        self.ended = threading.Event()
        self.stopping = False
        #: Set by a subject: interrupts its loop (called from the SIGTERM handler).
        self.wake: Callable[[], None] | None = None
        self._print_lock = threading.Lock()

    def saw_create(self, path: str) -> None:
        """A create reached user code (path-based subjects)."""
        if path.startswith(self.sentinel_path):
            self.ended.set()
        elif not self.ready.is_set() and path.startswith(self.probe_prefix):
            self.ready.set()

    def saw_bytes(self, data: bytes | bytearray, end: int | None = None) -> None:
        """Bytes reached user code (chunk-based subjects): look for the probe and sentinel names in them."""
        n = len(data) if end is None else end
        if not self.ready.is_set() and data.find(self.probe_name, 0, n) >= 0:
            self.ready.set()
        if data.find(self.sentinel_name, 0, n) >= 0:
            self.ended.set()

    def say(self, line: str) -> None:
        with self._print_lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def stop(self) -> None:
        self.stopping = True
        if self.wake is not None:
            self.wake()


def _control(ctl: Control, timeout: float = 30.0) -> None:
    """Create probe files until one is seen (watches set up in another thread may not exist yet)."""
    deadline = time.monotonic() + timeout
    attempt = 0
    while not ctl.ready.is_set():
        if time.monotonic() > deadline or ctl.stopping:
            ctl.say("error probe file never reported")
            return
        path = f"{ctl.probe_prefix}{attempt}"
        with contextlib.suppress(OSError):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))
        attempt += 1
        ctl.ready.wait(0.5)
    ctl.say("ready")
    ctl.ended.wait()
    ctl.say("end")


_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def _stopper(ctl: Control) -> None:
    """Wait for SIGTERM/SIGINT (blocked in every thread) and stop the subject from this thread.

    Not a Python signal handler: CPython runs those in the main thread at the next bytecode, and a signal that
    lands just before the main thread enters poll() without a timeout (fsnorm's iterator does) is only handled
    when poll returns, i.e. possibly never. ``Stream.stop()`` from another thread wakes the poll for sure."""
    signal.sigwait(_STOP_SIGNALS)
    ctl.stop()


def _unblock_stop_signals() -> None:
    """In a child (preexec_fn): the blocked signal mask is inherited across exec; give it its SIGTERM back."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)


def _tsv_writer(out: IO[str]) -> Callable[[str, str, str, str], None]:
    write = out.write
    mono = time.monotonic_ns

    def emit(kind: str, src: str, dst: str, flags: str) -> None:
        write(f"{mono()}\t{kind}\t{src}\t{dst}\t{flags}\n")

    return emit


def _tsv_writer_read(out: IO[str]) -> Callable[[str, str, str, str, int], None]:
    """Like :func:`_tsv_writer`, with a sixth column: when the watcher read the event (fsnorm's ``t_ns``), which
    splits the latency at that read (benchmarks.scoring, ``lat_joined_read``)."""
    write = out.write
    mono = time.monotonic_ns

    def emit(kind: str, src: str, dst: str, flags: str, read_ns: int) -> None:
        write(f"{mono()}\t{kind}\t{src}\t{dst}\t{flags}\t{read_ns}\n")

    return emit


def _tsv_writer_at(out: IO[str]) -> Callable[[int, str, str, str, str], None]:
    """Like :func:`_tsv_writer`, with the stamp given: for a child's output, every line of one read of its
    stdout gets the time of that read (what ``fsnorm watch``'s chunks get), not the time this process finished
    parsing the lines before it."""
    write = out.write

    def emit(t: int, kind: str, src: str, dst: str, flags: str) -> None:
        write(f"{t}\t{kind}\t{src}\t{dst}\t{flags}\n")

    return emit


def vm_hwm_kib(pid: int | str = "self") -> int | None:
    """Peak RSS (VmHWM) of a live process. Not ``ru_maxrss``: Linux carries that across execve, so a child
    forked from a big harness would report the harness's size."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return None


# --- subjects ---------------------------------------------------------------------------------------------


class Subject:
    name: ClassVar[str]
    description: ClassVar[str]
    fmt: ClassVar[str] = "tsv"
    #: How long the subject holds events by design (watchdog: a lone MOVED_FROM, and everything behind it);
    #: the throughput trials do not count it as backlog.
    hold_s: ClassVar[float] = 0.05
    #: The watcher is a child process (its CPU time is RUSAGE_CHILDREN's, not the subject process's own).
    in_child: ClassVar[bool] = False

    def __init__(self, window_ms: float | None = None) -> None:
        self.window_ms = window_ms
        #: The watcher's pid when it is a child; its CPU seconds when the session ended (before the stop).
        self.child_pid: int | None = None
        self.cpu_end: float | None = None
        #: The watcher's threads' scheduler counters (:meth:`sched_now`) when the session ended.
        self.sched_end: tuple[float, float, int] | None = None

    def cpu_now(self) -> float | None:
        """CPU seconds (user + system) the watcher has used so far: the child's (/proc) or this process's."""
        if not self.in_child:
            ru = resource.getrusage(resource.RUSAGE_SELF)
            return ru.ru_utime + ru.ru_stime
        if self.child_pid is None:
            return None
        try:
            fields = Path(f"/proc/{self.child_pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def sched_now(self) -> tuple[float, float, int] | None:
        """The scheduler's counters of the watcher's threads so far, summed (``/proc/PID/task/*/schedstat``,
        the child's or this process's): seconds on a CPU, seconds *runnable but waiting* for one (the run
        queue), and how many times a thread was put on a CPU. None where the kernel does not keep them.

        The wait is what a loaded machine adds to every delay the subject reports: a watcher that is runnable
        but not running reads nothing and delivers nothing. It tells a tail that the watcher's own work
        makes from one that the other threads on the machine make (benchmarks/README.md, "The storm's tail")."""
        pid = self.child_pid if self.in_child else os.getpid()
        if pid is None:
            return None
        run = wait = slices = seen = 0
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            return None
        for tid in tids:
            try:
                fields = Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()
            except OSError:
                continue  # a thread that ended meanwhile (or no schedstat at all: CONFIG_SCHED_INFO)
            run, wait, slices, seen = run + int(fields[0]), wait + int(fields[1]), slices + int(fields[2]), seen + 1
        return (run / 1e9, wait / 1e9, slices) if seen else None

    @classmethod
    def unavailable(cls) -> str | None:
        """None when the subject can run here, else why not."""
        return None

    def run(self, ctl: Control, out_path: Path) -> dict[str, Any]:
        raise NotImplementedError


class RawSubject(Subject):
    """Baseline: one inotify fd (fsnorm's InotifyFD), no pairing, no tree following; dumps every read."""

    name = "raw"
    description = "raw inotify reader, no pairing (baseline; also the race statistics)"
    fmt = "rawdump"

    def run(self, ctl: Control, out_path: Path) -> dict[str, Any]:
        from normalizer.backends._inotify_sys import DEFAULT_READ_BUFSIZE, InotifyFD

        ino = InotifyFD()
        wds: dict[int, str] = {}
        for dirpath, _dirs, _files in os.walk(ctl.root):
            with contextlib.suppress(OSError):
                wds[ino.add_watch(dirpath, MASK | _WATCH_FLAGS)] = dirpath
        Path(f"{out_path}.wds.json").write_text(json.dumps(wds))
        fd = ino.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        buf = bytearray(DEFAULT_READ_BUFSIZE)
        view = memoryview(buf)
        pack = RAW_HEADER.pack
        mono = time.monotonic_ns
        reads = nbytes = 0
        with open(out_path, "wb", buffering=1 << 20) as out:
            write = out.write
            while not ctl.stopping:
                if not poller.poll(50):
                    continue
                while True:
                    try:
                        n = os.readv(fd, (view,))
                    except BlockingIOError:
                        break
                    t = mono()
                    pending = ino.pending_bytes()
                    write(pack(t, pending, n))
                    write(view[:n])
                    ctl.saw_bytes(buf, n)
                    reads += 1
                    nbytes += n
                    if not pending:
                        break
        ino.close()
        return {"reads": reads, "bytes": nbytes, "watches": len(wds)}


class ChildSubject(Subject):
    """A watcher run as a child process whose stdout this process reads (its CPU time is the child's)."""

    in_child = True

    def pump(self, ctl: Control, cmd: list[str], out_path: Path,
             on_data: Callable[[bytes, int], None]) -> dict[str, Any]:
        """Run ``cmd`` (stderr to OUT.stderr) and hand each read of its stdout, with the CLOCK_MONOTONIC stamp
        taken right after the read, to ``on_data`` until EOF; SIGTERM it once the session stops (its peak RSS
        and CPU time taken just before), and read on to EOF for what it prints as it exits."""
        with open(f"{out_path}.stderr", "wb") as err:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, bufsize=0,
                                    preexec_fn=_unblock_stop_signals)
        self.child_pid = proc.pid
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        child_hwm: int | None = None
        signalled = False
        mono = time.monotonic_ns
        while True:
            if ctl.stopping and not signalled:
                child_hwm = vm_hwm_kib(proc.pid)
                self.cpu_end = self.cpu_now()
                self.sched_end = self.sched_now()
                proc.send_signal(signal.SIGTERM)
                signalled = True
            if not poller.poll(50):
                if proc.poll() is not None and not signalled:
                    break  # died on its own; EOF comes next
                continue
            data = os.read(fd, 1 << 20)
            if not data:
                break
            on_data(data, mono())
        code = proc.wait()
        proc.stdout.close()
        return {"child_rss_kib": child_hwm, "child_exit": code}


class FsnormCli(ChildSubject):
    """fsnorm as a daemon would run it: ``fsnorm watch ROOT`` in a subprocess, JSON Lines read from its stdout."""

    name = "fsnorm"
    description = "fsnorm (inotify): `fsnorm watch` subprocess, JSON Lines read from its stdout"
    fmt = "jsonl"
    extra: ClassVar[list[str]] = []

    def command(self, root: str) -> list[str]:
        cmd = [sys.executable, "-m", "normalizer", "watch", root, *self.extra]
        if self.window_ms is not None:
            cmd += ["--window", f"{self.window_ms}"]
        return cmd

    def run(self, ctl: Control, out_path: Path) -> dict[str, Any]:
        tail = b""
        chunks = nbytes = 0
        with open(out_path, "wb", buffering=1 << 20) as out:

            def on_data(data: bytes, t: int) -> None:  # whole lines, each chunk behind its stamp
                nonlocal tail, chunks, nbytes
                if tail:
                    data = tail + data
                cut = data.rfind(b"\n") + 1
                tail = data[cut:]
                if cut:
                    out.write(b"#%d\n" % t)
                    out.write(data[:cut])
                    ctl.saw_bytes(data, cut)
                    chunks += 1
                    nbytes += cut

            child = self.pump(ctl, self.command(ctl.root), out_path, on_data)
        stderr = Path(f"{out_path}.stderr").read_text(errors="replace").strip()
        return {"chunks": chunks, "bytes": nbytes, **child, "child_stderr": stderr[-500:]}


class FsnormDirect(FsnormCli):
    """``fsnorm watch --read-buffer 0``: no reader thread, the consumer reads the kernel fd itself (fsnorm
    before the reader thread), for an A/B of the reader thread in one run."""

    name = "fsnorm-direct"
    description = "fsnorm (inotify), no reader thread: `fsnorm watch --read-buffer 0`"
    extra: ClassVar[list[str]] = ["--read-buffer", "0"]

    @classmethod
    def unavailable(cls) -> str | None:
        try:
            from normalizer.backends import reader  # noqa: F401
        except ImportError:
            return "this fsnorm has no reader thread (nor --read-buffer)"
        return None


class FsnormNoBoost(FsnormCli):
    """``fsnorm watch --priority-boost 0``: fsnorm at the priority it was started with, beside the default
    (which raises its session by 4 nice levels, normalizer.backends.priority), for an A/B in one run."""

    name = "fsnorm-noboost"
    description = "fsnorm (inotify) without its default priority boost: `fsnorm watch --priority-boost 0`"
    extra: ClassVar[list[str]] = ["--priority-boost", "0"]

    @classmethod
    def unavailable(cls) -> str | None:
        try:
            from normalizer.backends import priority  # noqa: F401
        except ImportError:
            return "this fsnorm has no priority boost (nor --priority-boost)"
        return None


def _has_fanotify() -> str | None:
    try:
        import normalizer.backends.fanotify  # noqa: F401
    except ImportError as exc:
        return f"normalizer.backends.fanotify is not importable ({exc})"
    return None


def _cli_has_backend() -> bool:
    from normalizer.cli.main import build_parser

    try:
        with contextlib.redirect_stderr(io.StringIO()):
            build_parser().parse_args(["watch", "/", "--backend", "fanotify"])
    except SystemExit:
        return False
    return True


class FsnormFanotify(FsnormCli):
    """fsnorm's fanotify backend: ``fsnorm watch --backend fanotify`` when the CLI has it, else the
    FanotifySource driven directly (open/read/close, as the CLI does)."""

    name = "fsnorm-fanotify"
    description = "fsnorm (fanotify backend)"
    extra: ClassVar[list[str]] = ["--backend", "fanotify"]

    @classmethod
    def unavailable(cls) -> str | None:
        return _has_fanotify()

    def run(self, ctl: Control, out_path: Path) -> dict[str, Any]:
        if _cli_has_backend():
            stats = super().run(ctl, out_path)
            stats["via"] = "cli"
            return stats
        stats = _run_source(ctl, out_path, self.window_ms)
        stats["in_child"] = False
        stats["via"] = "FanotifySource"
        stats["fmt"] = "tsv"
        return stats


def _run_source(ctl: Control, out_path: Path, window_ms: float | None) -> dict[str, Any]:
    from normalizer.backends.fanotify import FanotifySource

    options: dict[str, Any] = {}
    if window_ms is not None:
        options["window_ns"] = int(window_ms * 1_000_000)
    source = FanotifySource([ctl.root], **options)
    n = 0
    with open(out_path, "w", buffering=1 << 20, errors="surrogateescape") as out:
        emit = _tsv_writer(out)

        def emit_all(recs: list[Any]) -> None:
            nonlocal n
            for r in recs:
                n += 1
                if r.kind == "rename":
                    emit("rename", os.fsdecode(r.path), os.fsdecode(r.dst), ",".join(r.flags))
                else:
                    path = os.fsdecode(r.path)
                    emit(r.kind, path, "", ",".join(r.flags))
                    if r.kind == "create":
                        ctl.saw_create(path)

        emit_all(source.open())
        ctl.wake = getattr(source, "wake", None)
        while not ctl.stopping:
            emit_all(source.read(0.05))
        emit_all(source.close())
    return {"records": n}


class FsnormApi(Subject):
    """fsnorm's Python API: ``normalizer.watch(root)`` iterated in-process, public records (``normalizer.Record``)."""

    name = "fsnorm-api"
    description = "fsnorm (inotify): Python API iterator, public records"
    #: Options given to ``normalizer.watch`` besides the window.
    api_options: ClassVar[dict[str, Any]] = {}

    def run(self, ctl: Control, out_path: Path) -> dict[str, Any]:
        import normalizer

        options: dict[str, Any] = dict(self.api_options)
        if self.window_ms is not None:
            options["window_ms"] = self.window_ms
        stream = normalizer.watch([ctl.root], **options)
        ctl.wake = stream.stop
        n = 0
        with open(out_path, "w", buffering=1 << 20, errors="surrogateescape") as out, stream:
            emit = _tsv_writer_read(out)
            fsdecode = os.fsdecode
            if ctl.stopping:
                stream.stop()
            for rec in stream:
                n += 1
                flags = ",".join((rec.reason, *rec.flags) if rec.reason else rec.flags)
                if rec.kind == "rename":
                    emit("rename", fsdecode(rec.src or ""), fsdecode(rec.dst or ""), flags, rec.t_ns)
                else:
                    path = fsdecode(rec.path)
                    emit(rec.kind, path, "", flags, rec.t_ns)
                    if rec.kind == "create":
                        ctl.saw_create(path)
        return {"records": n}


class FsnormApiBoost(FsnormApi):
    """The iterator as a daemon built on it would run it: ``normalizer.watch(root, priority_boost=4)`` (the
    library leaves its host's priority alone unless asked; README "Priority boost")."""

    name = "fsnorm-api-boost"
    description = "fsnorm (inotify): Python API iterator with priority_boost=4"
    api_options: ClassVar[dict[str, Any]] = {"priority_boost": 4}

    @classmethod
    def unavailable(cls) -> str | None:
        return FsnormNoBoost.unavailable()


_WATCHDOG_KINDS = {"created": "create", "deleted": "delete", "modified": "modify", "closed": "close_write",
                   "closed_no_write": "close_nowrite", "opened": "open"}


class _Counter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.overflows = 0

    def emit(self, record: logging.LogRecord) -> None:
        # One overflow logs "Inotify queue overflowed; filesystem events were lost" once (observers/inotify_c.py),
        # then "...; reconciling recursive watches below ..." once per watch: count the first kind only.
        message = record.getMessage().lower()
        if "overflow" in message and "lost" in message:
            self.overflows += 1


class Watchdog(Subject):
    """watchdog's InotifyObserver with a handler that sees every event (``dispatch``)."""

    name = "watchdog"
    description = "watchdog 7.x InotifyObserver (default)"
    full_events: ClassVar[bool] = False
    hold_s = 0.55

    @classmethod
    def unavailable(cls) -> str | None:
        try:
            import watchdog.observers.inotify  # noqa: F401
        except ImportError as exc:
            return f"watchdog is not installed ({exc})"
        return None

    def run(self, ctl: Control, out_path: Path) -> dict[str, Any]:
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers.inotify import InotifyObserver

        counter = _Counter()
        logging.getLogger("watchdog").addHandler(counter)
        n = 0
        with open(out_path, "w", buffering=1 << 20, errors="surrogateescape") as out:
            emit = _tsv_writer(out)
            fsdecode = os.fsdecode

            class Handler(FileSystemEventHandler):
                def dispatch(self, event: FileSystemEvent) -> None:
                    nonlocal n
                    n += 1
                    kind = event.event_type
                    if kind == "moved":
                        emit("rename", fsdecode(event.src_path), fsdecode(event.dest_path), "")
                    else:
                        path = fsdecode(event.src_path)
                        emit(_WATCHDOG_KINDS.get(kind, kind), path, "", "dir" if event.is_directory else "")
                        if kind == "created":
                            ctl.saw_create(path)

            observer = InotifyObserver(generate_full_events=self.full_events)
            observer.schedule(Handler(), ctl.root, recursive=True)
            observer.start()
            while not ctl.stopping:
                time.sleep(0.05)
            observer.stop()
            observer.join()
        return {"records": n, "overflows_logged": counter.overflows}


class WatchdogFull(Watchdog):
    name = "watchdog-full"
    description = "watchdog 7.x InotifyObserver(generate_full_events=True)"
    full_events = True


class Pyinotify(Subject):
    """pyinotify's Notifier with its own cookie pairing (``src_pathname`` on the MOVED_TO)."""

    name = "pyinotify"
    description = "pyinotify 0.9.6 Notifier, its src_pathname pairing"

    @classmethod
    def unavailable(cls) -> str | None:
        try:
            import pyinotify  # noqa: F401
        except ImportError as exc:
            return f"pyinotify is not installed ({exc})"
        return None

    def run(self, ctl: Control, out_path: Path) -> dict[str, Any]:
        import pyinotify

        logging.getLogger("pyinotify").setLevel(logging.ERROR)
        n = 0
        names = {rawbits.IN_CREATE: "create", rawbits.IN_DELETE: "delete", rawbits.IN_MODIFY: "modify",
                 rawbits.IN_CLOSE_WRITE: "close_write", rawbits.IN_ATTRIB: "attrib",
                 rawbits.IN_DELETE_SELF: "delete_self", rawbits.IN_MOVE_SELF: "move_self",
                 rawbits.IN_IGNORED: "watch_end"}
        with open(out_path, "w", buffering=1 << 20, errors="surrogateescape") as out:
            emit = _tsv_writer(out)

            class Handler(pyinotify.ProcessEvent):  # type: ignore[misc]
                def process_IN_Q_OVERFLOW(self, event: Any) -> None:
                    nonlocal n
                    n += 1
                    emit("overflow", "", "", "")

                def process_default(self, event: Any) -> None:
                    nonlocal n
                    n += 1
                    mask = event.mask
                    path = getattr(event, "pathname", "")
                    if mask & rawbits.IN_MOVED_FROM:
                        emit("from", path, "", "")
                    elif mask & rawbits.IN_MOVED_TO:
                        src = getattr(event, "src_pathname", None)
                        if src:
                            emit("rename", src, path, "")
                        else:
                            emit("to", "", path, "")
                    else:
                        kind = next((v for k, v in names.items() if mask & k), "other")
                        emit(kind, path, "", "")
                        if kind == "create":
                            ctl.saw_create(path)

            wm = pyinotify.WatchManager()
            notifier = pyinotify.Notifier(wm, Handler())
            wm.add_watch(ctl.root, MASK, rec=True, auto_add=True)
            while not ctl.stopping:
                if notifier.check_events(50):
                    notifier.read_events()
                    notifier.process_events()
            notifier.stop()
        return {"records": n}


_INOTIFYWAIT_EVENTS = "modify,attrib,close_write,moved_from,moved_to,create,delete,delete_self,move_self"


class Inotifywait(ChildSubject):
    """The C reference: ``inotifywait -m -r`` (inotify-tools) with fsnorm's default events, one line per event
    read from its stdout. It does not pair renames (its halves count as ``from`` / ``to``): it is in the tables
    for its CPU time per event, what a C reader with a printf per event costs."""

    name = "inotifywait"
    description = "inotifywait -m -r (inotify-tools, C): raw events, no pairing (CPU reference)"

    @classmethod
    def unavailable(cls) -> str | None:
        return None if shutil.which("inotifywait") else "inotifywait is not installed (apt-get install inotify-tools)"

    def run(self, ctl: Control, out_path: Path) -> dict[str, Any]:
        cmd = ["inotifywait", "-m", "-r", "-q", "-e", _INOTIFYWAIT_EVENTS, "--format", "%e|%w%f", ctl.root]
        tail = b""
        n = 0
        with open(out_path, "w", buffering=1 << 20, errors="surrogateescape") as out:
            emit = _tsv_writer_at(out)

            def on_data(data: bytes, t: int) -> None:  # every line of a read stamped with the read's time
                nonlocal tail, n
                data = tail + data
                lines = data.split(b"\n")
                tail = lines.pop()
                for line in lines:
                    n += 1
                    events, _, path = line.partition(b"|")
                    p = os.fsdecode(path)
                    first = events.split(b",")[0].decode()
                    kind = {"MOVED_FROM": "from", "MOVED_TO": "to", "Q_OVERFLOW": "overflow"}.get(first, first.lower())
                    if kind == "from":
                        emit(t, "from", p, "", "")
                    elif kind == "to":
                        emit(t, "to", "", p, "")
                    else:
                        emit(t, kind, p, "", "")
                        if kind == "create":
                            ctl.saw_create(p)

            child = self.pump(ctl, cmd, out_path, on_data)
        return {"records": n, **child}


SUBJECTS: dict[str, type[Subject]] = {cls.name: cls for cls in (
    FsnormCli, FsnormDirect, FsnormNoBoost, FsnormApi, FsnormApiBoost, FsnormFanotify, Watchdog, WatchdogFull,
    Pyinotify, RawSubject, Inotifywait)}


def availability() -> dict[str, str | None]:
    """Subject name -> None (available) or why it is not. Imports the peers, so call it in a child process
    or accept the import cost."""
    return {name: cls.unavailable() for name, cls in SUBJECTS.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("subject", choices=sorted(SUBJECTS))
    p.add_argument("root")
    p.add_argument("out", type=Path)
    p.add_argument("--sentinel", required=True, help="name of the file, in ROOT, that ends the session")
    p.add_argument("--window-ms", type=float, help="fsnorm subjects: one-sided move window")
    a = p.parse_args(argv)
    cls = SUBJECTS[a.subject]
    ctl = Control(os.path.realpath(a.root), a.sentinel)
    why = cls.unavailable()
    if why:
        ctl.say(f"error {why}")
        return 2
    signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)  # before any thread starts: all inherit it
    threading.Thread(target=_stopper, args=(ctl,), daemon=True, name="stopper").start()
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # the harness asks for stacks before giving up
    queued = max_queued_events()
    threading.Thread(target=_control, args=(ctl,), daemon=True, name="control").start()
    t0 = time.monotonic()
    subject = cls(a.window_ms)
    cpu_ready: list[float | None] = []
    sched_ready: list[tuple[float, float, int] | None] = []

    def at_ready() -> None:  # the CPU the watcher had used when it was ready (start-up, the initial walk)
        ctl.ready.wait()
        cpu_ready.append(subject.cpu_now())
        sched_ready.append(subject.sched_now())

    threading.Thread(target=at_ready, daemon=True, name="cpu-at-ready").start()
    try:
        stats = subject.run(ctl, a.out)
    except Exception as exc:
        ctl.say(f"error {type(exc).__name__}: {exc}")
        raise
    stats.setdefault("fmt", cls.fmt)
    # CPU seconds of the watcher: the child (fsnorm watch, inotifywait) or this process (in-process subjects,
    # their writing of the TSV output included). ``cpu_s``: from ready (start-up and the initial walk left
    # out) to the end of the session; ``cpu_total_s``: the whole process, start-up and shutdown included.
    in_child = stats.pop("in_child", cls.in_child)
    ru = resource.getrusage(resource.RUSAGE_CHILDREN if in_child else resource.RUSAGE_SELF)
    stats["cpu_total_s"] = ru.ru_utime + ru.ru_stime
    end = subject.cpu_end if subject.cpu_end is not None else subject.cpu_now()
    start = cpu_ready[0] if cpu_ready else None
    stats["cpu_s"] = end - start if end is not None and start is not None else None
    # The same span for the scheduler's counters: seconds the watcher's threads were runnable but waited for a
    # CPU, and how often one was put on a CPU (None where the kernel keeps no schedstat).
    s_end = subject.sched_end if subject.sched_end is not None else subject.sched_now()
    s_start = sched_ready[0] if sched_ready else None
    if s_end is not None and s_start is not None:
        stats["runq_wait_s"] = s_end[1] - s_start[1]
        stats["timeslices"] = s_end[2] - s_start[2]
    stats.update(subject=cls.name, rss_kib=vm_hwm_kib(), max_queued_events=queued, wall_s=time.monotonic() - t0,
                 ready=ctl.ready.is_set(), ended=ctl.ended.is_set())
    ctl.say("stats " + json.dumps(stats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
