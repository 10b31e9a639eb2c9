"""The reader thread (normalizer.backends.reader) on the real kernel, both backends.

* a consumer that stalls with a tiny buffer: the thread stops at the bound, the kernel queue fills behind it
  and overflows; the ``overflow`` record comes at its place (after exactly what the buffer and the kernel queue
  held, nothing after it but what happened once the queue had room again), halves around it flagged;
* a consumer that pauses 2 s during a storm of about 50,000 events with a kernel queue of 1024: the buffer
  holds what the queue could not, every rename is joined, no overflow;
* a lone rename half still expires by its window (``timeout``, not ``max_wait``) with the buffer in between:
  the "queue seen empty" signal goes through the buffer;
* a capture taken with the buffer replays to the same records;
* the BufferedReader itself: the bound, the eventfd, errors, stop.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from live import brief, drain, sysctl

from benchmarks.workloads import dirs, expected_renames
from normalizer.backends import reader as reader_mod
from normalizer.backends.base import LiveSource
from normalizer.backends.fanotify import FanotifySource
from normalizer.backends.inotify import InotifySource
from normalizer.backends.reader import DEFAULT_READ_BUFFER, MIN_READ_BUFFER, BufferedReader, CBufferedReader, Reader
from normalizer.capture.replay import replay
from normalizer.errors import SourceError
from normalizer.formats.jsonl import rec_to_json
from normalizer.records import Rec

IS_ROOT = os.geteuid() == 0
MS = 1_000_000
BACKENDS = ("inotify", "fanotify")
QUEUE_SYSCTL = {"inotify": "fs.inotify.max_queued_events", "fanotify": "fs.fanotify.max_queued_events"}

pytestmark = pytest.mark.skipif(not IS_ROOT, reason="needs root (sysctls; fanotify filesystem marks)")


@pytest.fixture(params=["c", "python"])
def kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both reader threads: the C one (skipped where it is not built) and the Python one."""
    if request.param == "c" and reader_mod._ringreader is None:
        pytest.skip("the C reader thread is not built (normalizer/backends/_ringreader.c)")
    monkeypatch.setenv("FSNORM_READER", request.param)
    assert reader_mod.reader_kind() == request.param
    return str(request.param)


def new_reader(kind: str, fd: int, capacity: int, read_size: int = 256 << 10) -> Reader:
    if kind == "c":
        return CBufferedReader(fd, capacity=capacity, read_size=read_size)
    return BufferedReader(fd, capacity=capacity, read_size=read_size)


def make(backend: str, root: Path, **options: object) -> LiveSource:
    if backend == "inotify":
        return InotifySource([root], **options)  # type: ignore[arg-type]
    # Inode marks: only the tree's own events reach the queue (a filesystem mark would queue the whole
    # filesystem's, other processes' included, and make the queue's contents depend on them).
    options.setdefault("read_buffer", DEFAULT_READ_BUFFER)  # fanotify's default is no thread: these test it
    return FanotifySource([root], mark_mode="inode", **options)  # type: ignore[arg-type]


def workload(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "benchmarks.workloads", *args], stdout=subprocess.PIPE,
                            text=True, cwd=Path(__file__).parent.parent)


def pairs(recs: list[Rec]) -> list[tuple[str, str]]:
    return [(os.fsdecode(r.path), os.fsdecode(r.dst)) for r in recs if r.kind == "rename" and r.path and r.dst]


# --- beyond the bound: an overflow at its place ---------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_stalled_consumer_with_a_tiny_buffer_gets_the_overflow_at_its_place(tree: Path, backend: str,
                                                                            kind: str) -> None:
    """A 64 KiB buffer and a kernel queue of 1024 events; 4096 renames while the consumer reads nothing. The
    thread fills the buffer and stops (never more than the bound); the kernel queue fills and overflows. Every
    rename is exact and in each thread's order, nothing is reported twice, nothing is missing except at an
    overflow record, lone halves say why, the create made afterwards comes last."""
    root = tree / "w"
    for d in dirs(root, 4):
        d.mkdir()
    with sysctl(QUEUE_SYSCTL[backend], 1024):
        # max_wait 60 s: a half whose partner the overflow dropped waits until the overflow record is read
        # (seconds later: the consumer stalls), not until max_wait says "timeout".
        src = make(backend, root, rescan=False, read_buffer=MIN_READ_BUFFER, max_wait_ns=60_000 * MS)
        src.open()
    try:
        out, _ = workload("burst", str(root), "--threads", "4", "--renames", "1024").communicate(timeout=120)
        reader = src._reader
        assert reader is not None and reader.running
        assert reader.full >= 1, "the thread found the buffer full"
        assert reader.peak <= MIN_READ_BUFFER, "never more than the bound"
        recs = drain(src)
        os.mknod(root / "d0/after")  # one CREATE: the source goes on after the overflow
        recs += drain(src)
    finally:
        recs += src.close()
    truth = json.loads(out)
    expected = expected_renames(root, truth["renames"], truth["dirs"])
    # The last record is the create made after the burst; before it, the kernel's stream with its overflows
    # (one each time the queue filled: the thread may have read some of it before the buffer was full, and
    # the queue filled again behind a first overflow).
    assert brief(tree, recs[-1:]) == [("create", "w/d0/after", ())]
    cuts = [i for i, r in enumerate(recs) if r.kind == "overflow"]
    assert cuts, "the kernel queue overflowed behind the full buffer"
    joined = pairs(recs)
    assert set(joined) <= expected and len(joined) == len(set(joined)), "nothing wrong, nothing twice"
    # Each renaming thread's renames are a chain t{i}_0 -> t{i}_1 -> ...: before the first overflow the joined
    # ones are a prefix of it, and between two overflows a run without gaps (nothing is lost but at an
    # overflow); across overflows the chain only moves forward.
    bounds = [0, *cuts, len(recs) - 1]
    for i in range(4):
        last = 0
        for seg, (a, b) in enumerate(itertools.pairwise(bounds)):
            ks = [int(dst.rsplit("_", 1)[1]) for _, dst in pairs(recs[a:b])
                  if os.path.basename(dst).startswith(f"t{i}_")]
            if ks:
                assert ks == list(range(ks[0], ks[0] + len(ks))), f"thread {i}: no gap inside segment {seg}"
                assert ks[0] == 1 if seg == 0 else ks[0] > last, f"thread {i}: in order across overflows"
                last = ks[-1]
    # A lone half is one whose partner an overflow dropped, and says so. The kernel has one overflow event per
    # queue: while it is still queued, later drops add none, so a first half queued after it whose partner
    # was dropped has no overflow after it and ends by its window ("timeout"): only after an overflow.
    for i, r in enumerate(recs):
        if r.kind == "rename" and not (r.path and r.dst):
            if not r.path:
                assert "after_overflow" in r.flags, r
            elif i < cuts[0]:
                assert r.flags == ("overflow",), r
            else:
                assert r.flags in (("overflow",), ("timeout",)), r
    assert all(r.flags == () for r in recs if r.kind == "rename" and r.path and r.dst)
    assert src.stats["read_buffer_full"] >= 1 and 0 < src.stats["read_buffer_peak"] <= MIN_READ_BUFFER


# --- a paused consumer loses nothing while the buffer has room ------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_consumer_paused_2s_while_50k_events_happen_loses_nothing(tree: Path, backend: str, kind: str) -> None:
    """The default kernel queue (16,384 events, set for the test: other tests lower it) and the default
    buffer. 25,000 renames (50,000 inotify events, 25,000 FAN_RENAME) happen while the consumer sleeps 2 s:
    more than the kernel queue holds, so without the reader thread they would overflow it. Afterwards every
    rename is joined, none twice, no overflow, and the buffer held more than the kernel queue could."""
    root = tree / "w"
    for d in dirs(root, 4):
        d.mkdir()
    with sysctl(QUEUE_SYSCTL[backend], 16384):
        src = make(backend, root)
        src.open()
    seen: list[tuple[str, bytes, bytes, tuple[str, ...]]] = []
    try:
        proc = workload("burst", str(root), "--threads", "2", "--renames", "12500")
        time.sleep(2.0)  # the consumer's pause
        while proc.poll() is None:
            seen.extend((r.kind, r.path, r.dst, r.flags) for r in src.read(0.05))
        seen.extend((r.kind, r.path, r.dst, r.flags) for r in drain(src))
        out, _ = proc.communicate(timeout=60)
        peak = src.stats.get("read_buffer_peak", 0)
    finally:
        seen.extend((r.kind, r.path, r.dst, r.flags) for r in src.close())
    truth = json.loads(out)
    expected = expected_renames(root, truth["renames"], truth["dirs"])
    assert sum(truth["renames"]) == 25_000
    assert not [r for r in seen if r[0] == "overflow"], "no overflow"
    renames = [r for r in seen if r[0] == "rename"]
    got = [(os.fsdecode(s), os.fsdecode(d)) for _, s, d, _ in renames]
    assert [r for r in renames if r[3]] == [], "no one-sided or flagged rename"
    assert len(got) == len(set(got)) and set(got) == expected, "every rename joined exactly once"
    assert peak > 16384 * 24, f"the buffer held more than the kernel queue could (peak {peak} bytes)"


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_storm_buffered_while_the_consumer_sleeps_is_taken_in_few_feeds(tree: Path, backend: str,
                                                                          kind: str) -> None:
    """The consumer sleeps while 8,000 renames happen; the thread reads them, many reads of a few events each
    (the reads that left the queue empty included). They are joined while they wait: the consumer then takes
    them in about (bytes buffered) / read_size feeds, not one feed per read of the thread, and every rename is
    joined, none twice, none flagged, no overflow."""
    root = tree / "w"
    for d in dirs(root, 4):
        d.mkdir()
    read_size = 64 << 10
    with sysctl(QUEUE_SYSCTL[backend], 16384):
        src = make(backend, root, read_size=read_size)
        src.open()
    seen: list[Rec] = []
    try:
        out, _ = workload("burst", str(root), "--threads", "2", "--renames", "4000").communicate(timeout=120)
        reader = src._reader
        assert reader is not None
        end = time.monotonic() + 10  # the thread leaves a short queue to the consumer for up to 100 ms
        while time.monotonic() < end and src._queued() > reader.buffered:
            time.sleep(0.05)
        buffered, thread_reads = reader.buffered, getattr(reader, "reads", 0)
        feeds_before = src.stats["reads"]
        seen += drain(src)
        feeds = src.stats["reads"] - feeds_before
    finally:
        seen += src.close()
    truth = json.loads(out)
    expected = expected_renames(root, truth["renames"], truth["dirs"])
    assert buffered > 4 * read_size, f"the storm waited in the buffer ({buffered} bytes)"
    # A chunk is closed only when the next read would not fit in read_size (less than _MIN_ROOM left): each but
    # the last holds more than read_size - 4096 bytes.
    assert feeds <= buffered // (read_size - 4096) + 2, (feeds, buffered, thread_reads)
    assert not [r for r in seen if r.kind == "overflow"], "no overflow"
    renames = [r for r in seen if r.kind == "rename"]
    assert [r for r in renames if r.flags] == [], "no one-sided or flagged rename"
    got = pairs(renames)
    assert len(got) == len(set(got)) and set(got) == expected, "every rename joined exactly once"


# --- the read barrier goes through the buffer -----------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_lone_half_expires_by_its_window_with_the_buffer(tree: Path, backend: str, kind: str) -> None:
    """A move out of the tree, nothing else: with max_wait at 60 s, only "the queue was seen empty" (through
    the buffer: empty buffer, no read in flight, empty kernel queue) can release the half inside the bound, so
    the record says ``timeout``. fanotify: inode marks without FAN_RENAME (the kernel omits the side outside
    the tree, so a MOVED_FROM waits for a partner)."""
    (tree / "w/a/x").write_text("1")
    options: dict[str, object] = {"window_ns": 20 * MS, "max_wait_ns": 60_000 * MS}
    if backend == "inotify":
        src: LiveSource = InotifySource([tree / "w"], **options)  # type: ignore[arg-type]
    else:
        src = FanotifySource([tree / "w"], mark_mode="inode", use_rename=False, read_buffer=DEFAULT_READ_BUFFER,
                             **options)  # type: ignore[arg-type]
    with src:
        assert src._reader is not None and src.ready_fds() == (src.fileno(), src._reader.fileno())
        os.rename(tree / "w/a/x", tree / "out/x")
        recs: list[Rec] = []
        end = time.monotonic() + 20
        while time.monotonic() < end and not any(r.kind == "rename" for r in recs):
            recs += src.read(0.5)
    assert brief(tree, recs, kinds=("rename",)) == [("rename", "w/a/x", "", ("timeout",))]


# --- replay equals live -------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_capture_with_the_buffer_replays_to_the_same_records(tree: Path, backend: str, kind: str) -> None:
    """A storm read through the buffer, with a pause (so chunks queue up in it), new directories (watched or
    resolved while later reads wait in the buffer) and a move out of the tree (a lone half, released by a
    Tick): the capture replays to exactly the live records, with no issue (strict: the stream's times never
    go back, though the source's own items are made after reads that are already buffered)."""
    root = tree / "w"
    for d in dirs(root, 4):
        d.mkdir()
    (root / "a/x").write_text("1")
    cap = tree / "cap.fsncap"
    live: list[Rec] = []
    with make(backend, root, capture=str(cap), window_ns=20 * MS) as src:
        proc = workload("storm", str(root), "--seconds", "1", "--threads", "2", "--noise", "1")
        time.sleep(0.3)
        for i in range(20):
            (root / f"d{i % 4}/new{i}/sub").mkdir(parents=True)
            (root / f"d{i % 4}/new{i}/sub/f").write_text("f")
        time.sleep(0.2)
        os.rename(root / "a/x", tree / "out/x")
        while proc.poll() is None:
            live += src.read(0.05)
        live += drain(src)
        proc.communicate(timeout=60)
        live += src.close()
    assert any(r.kind == "rename" and r.path and r.dst for r in live)
    assert any(r.kind == "rename" and not r.dst for r in live), "the move out is there, one-sided"
    replayed = list(replay(cap, strict=True))
    assert [rec_to_json(r) for r in replayed] == [rec_to_json(r) for r in live]


# --- options ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, MIN_READ_BUFFER - 1, -5])
def test_read_buffer_below_the_minimum_is_a_source_error(tree: Path, size: int) -> None:
    with pytest.raises(SourceError, match="read_buffer"):
        InotifySource([tree / "w"], read_buffer=size)


def test_read_buffer_zero_reads_the_kernel_fd_directly(tree: Path) -> None:
    with InotifySource([tree / "w"], read_buffer=0) as src:
        assert src._reader is None and src.ready_fds() == (src.fileno(),)
        (tree / "w/a/f").write_text("x")
        recs = drain(src)
    assert ("create", "w/a/f", ()) in brief(tree, recs)


def test_cli_read_buffer_option(tree: Path) -> None:
    """``fsnorm watch --read-buffer 64K`` watches (and prints what happens); a bad size is a usage error."""
    bad = subprocess.run([sys.executable, "-m", "normalizer", "watch", str(tree / "w"), "--read-buffer", "lots"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "not a size" in bad.stderr
    small = subprocess.run([sys.executable, "-m", "normalizer", "watch", str(tree / "w"), "--read-buffer", "1K"],
                           capture_output=True, text=True, timeout=60)
    assert small.returncode != 0 and "read_buffer must be 0" in small.stderr
    proc = subprocess.Popen([sys.executable, "-m", "normalizer", "watch", str(tree / "w"), "--read-buffer", "64K"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        end = time.monotonic() + 30
        k = 0
        assert proc.stdout is not None
        os.set_blocking(proc.stdout.fileno(), False)
        text = ""
        while time.monotonic() < end and '"kind":"create"' not in text.replace(" ", ""):
            (tree / f"w/a/f{k}").write_text("x")  # until the watcher is up and prints one
            k += 1
            time.sleep(0.1)
            with contextlib.suppress(TypeError):  # nothing yet (a non-blocking text read)
                text += proc.stdout.read() or ""
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    assert '"kind":"create"' in text.replace(" ", "")


# --- the BufferedReader alone, on a pipe ------------------------------------------------------------------


def test_buffered_reader_bound_order_notify_and_idle(kind: str) -> None:
    """On a pipe: chunks come in order, the eventfd is readable exactly while a chunk waits, the thread stops
    at the bound (and resumes when a chunk is taken), idle_at only with nothing buffered and nothing queued."""
    import select

    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    reader = new_reader(kind, r, MIN_READ_BUFFER, 8192)
    poller = select.poll()
    poller.register(reader.fileno(), select.POLLIN)
    try:
        reader.start()
        assert reader.idle_at() is not None and poller.poll(0) == []
        sent = bytes(range(256)) * 1024  # 256 KiB: four times the bound
        view = memoryview(sent)
        written = 0
        end = time.monotonic() + 10
        while time.monotonic() < end and (reader.buffered < MIN_READ_BUFFER - 8192 or written < 128 << 10):
            try:
                written += os.write(w, view[written:written + 4096])
            except BlockingIOError:
                time.sleep(0.01)
        time.sleep(0.1)
        assert reader.full >= 1 and reader.buffered <= MIN_READ_BUFFER
        assert poller.poll(0) != [] and reader.idle_at() is None
        got = b""
        while len(got) < written or written < len(sent):
            if written < len(sent):
                with contextlib.suppress(BlockingIOError):
                    written += os.write(w, view[written:written + 4096])
            chunk = reader.take()
            if chunk is None:
                assert poller.poll(100) != [] or written > len(got)
                continue
            t_ns, wall, _backlog, data = chunk
            assert t_ns > 0 and wall > 0
            got += data
        assert got == sent, "every byte, in order"
        assert reader.peak <= MIN_READ_BUFFER
        assert reader.take() is None and poller.poll(0) == [], "no chunk, eventfd cleared"
        assert reader.idle_at() is not None
    finally:
        reader.close()
        os.close(r)
        os.close(w)
    assert not reader.running


def test_buffered_reader_error_comes_after_the_chunks_before_it(kind: str) -> None:
    """A read error (EISDIR: the fd is a directory's) stops the thread; take() raises it once the chunks read
    before it are taken (here none)."""
    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    reader = new_reader(kind, fd, MIN_READ_BUFFER)
    try:
        reader.start()
        end = time.monotonic() + 10
        while reader.running and time.monotonic() < end:
            time.sleep(0.01)
        with pytest.raises(OSError):
            reader.take()
    finally:
        reader.close()
        os.close(fd)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(writes=st.lists(st.integers(1, 20_000), min_size=1, max_size=40),
       takes=st.lists(st.booleans(), min_size=1, max_size=40),
       capacity=st.sampled_from([MIN_READ_BUFFER, MIN_READ_BUFFER + 4097, 1 << 20]),
       read_size=st.sampled_from([4096, 5000, 256 << 10]))
def test_buffered_reader_every_byte_once_in_order_within_the_bound(
        kind: str, writes: list[int], takes: list[bool], capacity: int, read_size: int) -> None:
    """Whatever the write sizes, the read size, the bound and when the consumer takes: the chunks are the
    bytes written, once, in order, and the buffer never held more than the bound. Each chunk (reads joined or
    not) holds at most ``read_size`` bytes, comes later than the one before, and its barrier is honest: every
    byte written before its time is in it, before it, or in its backlog (a join never claims a drain that did
    not happen)."""
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    reader = new_reader(kind, r, capacity, read_size)
    sent = bytearray()
    got = bytearray()
    written: list[tuple[int, int]] = []  # (monotonic ns once a write returned, bytes written by then)
    chunks: list[tuple[int, int, int]] = []  # (t_ns, bytes taken up to its end, backlog)

    def take() -> bool:
        chunk = reader.take()
        if chunk is None:
            return False
        assert 0 < len(chunk[3]) <= read_size
        got.extend(chunk[3])
        chunks.append((chunk[0], len(got), chunk[2]))
        return True

    try:
        reader.start()
        for i, size in enumerate(writes):
            data = bytes([i % 251]) * size
            view = memoryview(data)
            off = 0
            while off < size:
                try:
                    off += os.write(w, view[off:])
                    written.append((time.monotonic_ns(), len(sent) + off))
                except BlockingIOError:  # the pipe is full: the buffer is full too, or the thread is behind
                    if not take():
                        time.sleep(0.001)
            sent += data
            if takes[i % len(takes)]:
                take()
        end = time.monotonic() + 10
        while len(got) < len(sent) and time.monotonic() < end:
            if not take():
                time.sleep(0.001)
        assert bytes(got) == bytes(sent)
        assert reader.peak <= capacity and reader.buffered == 0
    finally:
        reader.close()
        os.close(r)
        os.close(w)
    assert all(a[0] < b[0] for a, b in itertools.pairwise(chunks)), "chunk times increase"
    for t_ns, upto, backlog in chunks:
        before = max((n for t_w, n in written if t_w < t_ns), default=0)
        assert before <= upto + backlog, "everything written before the chunk's time is in it or its backlog"


def test_a_joined_chunk_has_the_time_and_backlog_of_its_last_read(kind: str) -> None:
    """On a pipe: 100 bytes read alone (the pipe then empty), then 300 KiB written while that chunk waits. The
    next read fills the waiting chunk up to read_size and joins it: one chunk of read_size bytes with the later
    read's time and FIONREAD (what that read left in the pipe), not the first read's empty queue; the first
    read's wall time."""
    import fcntl

    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, 1 << 20)
    read_size = 256 << 10
    reader = (CBufferedReader(r, capacity=1 << 20, read_size=read_size, backstop=1) if kind == "c"
              else BufferedReader(r, capacity=1 << 20, read_size=read_size, backstop=1))
    try:
        reader.start()
        wall0 = time.time()
        os.write(w, b"a" * 100)
        end = time.monotonic() + 10
        while reader.buffered < 100 and time.monotonic() < end:
            time.sleep(0.001)
        t_first = time.monotonic_ns()  # the first read was made before this
        os.write(w, b"b" * (300 << 10))
        while reader.buffered < read_size and time.monotonic() < end:
            time.sleep(0.001)
        time.sleep(0.05)  # a further read, if the thread made one, would start a chunk of its own
        t_ns, wall, backlog, data = reader.take()  # type: ignore[misc]
        assert data == b"a" * 100 + b"b" * (read_size - 100), "the second read filled the first chunk"
        assert t_ns > t_first and wall0 <= wall < wall0 + 5
        assert backlog == (300 << 10) - (read_size - 100), "the backlog the second read left"
        rest = reader.take()
        assert rest is not None and rest[3] == b"b" * backlog and rest[2] == 0
    finally:
        reader.close()
        os.close(r)
        os.close(w)


def test_buffered_fanotify_events_are_counted_exactly() -> None:
    """fanotify's ``_queued`` counts the events in the reader's buffer by their lengths, not bytes // 24: an
    upper bound never let an uncertain directory be placed while the thread buffered (backends/fanotify.py)."""
    from normalizer.backends.fanotify import _count_events

    def event(length: int) -> bytes:
        return length.to_bytes(4, "little") + bytes(length - 4)

    data = event(24) + event(40) + event(56) + event(24)
    assert len(data) // 24 == 6 and _count_events(data) == 4
    assert _count_events(b"") == 0
    assert _count_events(data + (3).to_bytes(4, "little") + bytes(20)) == 4  # a corrupt tail is not counted


@pytest.mark.parametrize("mode", ["inode", "filesystem"])
def test_a_read_smaller_than_the_next_event_is_made_again_into_a_buffer_it_fits(tree: Path, mode: str) -> None:
    """The kernel refuses (EINVAL) a read whose buffer cannot hold the next event; with 160-byte reads a rename
    between two 250-byte names (one FAN_RENAME event of about 700 bytes) must still be read, not end the watch
    (under a filesystem mark, anyone's long name on the filesystem would)."""
    old, new = "o" * 250, "n" * 250
    (tree / "w/a" / old).write_text("x")
    src = FanotifySource([tree / "w"], mark_mode=mode, read_size=160, read_buffer=0)  # type: ignore[arg-type]
    try:
        assert src.open() == []
        os.rename(tree / "w/a" / old, tree / "w/b" / new)
        os.mknod(tree / "w/a/short")
        recs = drain(src)
    finally:
        src.close()
    got = [(r.kind, r.path, r.dst) for r in recs if r.kind in ("rename", "create")]
    w = os.fsencode(tree / "w")
    assert got == [("rename", w + b"/a/" + old.encode(), w + b"/b/" + new.encode()),
                   ("create", w + b"/a/short", b"")], brief(tree, recs)


def test_the_python_readers_count_waits_for_a_read_in_flight_to_be_appended() -> None:
    """The thread holds its lock from ``read()`` to the append: ``buffered`` read meanwhile would miss bytes
    that left the kernel queue, and a source's ``_queued`` (FIONREAD, then the buffer) would undercount, so
    an inotify watch could settle before its queued events were read (found by review). The count is taken
    under that lock: it waits for the append."""
    import threading

    r, w = os.pipe2(os.O_NONBLOCK)
    reader = BufferedReader(r, capacity=MIN_READ_BUFFER)
    try:
        got: list[int] = []
        with reader._lock:  # a read in flight
            counter = threading.Thread(target=lambda: got.append(reader.buffered))
            counter.start()
            counter.join(0.2)
            assert counter.is_alive() and not got  # waits for the lock
            reader._buffered = 7  # the append
        counter.join(10)
        assert got == [7]
    finally:
        reader.close()
        os.close(r)
        os.close(w)
