"""A reader thread between a kernel fd and the normalizer: the kernel queue is drained while Python is busy.

Without it, the thread that runs the normalizer also reads the fd: during a garbage-collection pause, a
consumer's burst or the matcher's own work nothing reads, and the kernel queue (16,384 events by default)
fills and overflows within tens of milliseconds of a storm. :class:`BufferedReader` runs one thread that
only polls the fd and copies what ``read()`` returns into a bounded user-space buffer of *chunks*; the
consumer (``LiveSource.read``) takes chunks in order and parses and feeds them as if it had read them itself.

What a chunk carries is exactly what a direct read knows (:data:`Chunk`): the monotonic time of the read, the
wall time just before it, what FIONREAD said right after it, and the bytes. So the stream items built from a
chunk, and therefore captures and replay, are the same whether the buffer is in between or not: a batch's
``drained`` / ``backlog`` still describe the *kernel* queue at the read, which is what the matcher's read
barriers need (everything queued before ``t`` lies in this chunk or the kernel backlog seen then).

**The bound.** The buffer holds at most ``capacity`` bytes of raw events. When it is full the thread stops
reading: the kernel queue, itself bounded, fills behind it and the kernel reports the loss with its own
overflow event, at its exact place in the stream, which becomes the ``overflow`` record (halves around it
flagged) as without the buffer. Nothing is dropped in user space, memory never grows past the bound, and a
capture still holds exactly what the kernel gave.

**A backstop, not a middleman.** A consumer that keeps up reads the fd itself: ``take`` with nothing buffered
reads it right there (under the lock, so in order), and the thread leaves queued events alone while the
consumer can still take them. It reads once the consumer is behind: a chunk of its own still waits (then at
most once a millisecond), a quarter of a full kernel queue is queued, or events have waited 100 ms. So when
fsnorm keeps up it reads exactly as without the thread (fresh reads, the kernel's own batches, nothing that
changes what a drained read means); when Python stalls, the queue is drained long before it can overflow.

**The source's own actions** (a watch added, a directory scanned, a handle resolved) happen when the consumer
gets to them, while later reads may already wait in the buffer: LiveSource gives such items the time of the
read they follow and feeds a read made before its last action as not drained (``_in_stream_order``).

**"The queue was seen empty at T"** (a ``Tick``, what lets a lone half's window expire) needs the kernel queue
*and* the buffer empty with no read in flight: :meth:`BufferedReader.idle_at` checks all three under the lock
the thread holds from its ``read()`` to the append, so a read cannot hide between the two.

**Batches**: a read made while the chunk before it is still in the buffer (not taken yet) joins it, up to
``read_size`` bytes (the read takes only what fills that chunk, if that leaves room for a whole event). A
storm is read a few events at a time; once the consumer has fallen behind for a moment, it then takes what
waited as a few large batches (one parse, one feed, one pass of the per-read work each) instead of one small
chunk per read of the thread, which kept it behind until the storm ended
(benchmarks/results/reader-batches.md). The joined chunk is what a single read at the last read's time would
have returned (the reads are consecutive pieces of the kernel's stream: nothing is read elsewhere between
them, nothing is dropped in between), so the core is fed a stream that a direct reader could have been fed
(tests/test_reader_batches.py holds the core to it):

* ``t_ns`` is the last read's: every event in the chunk had been read by then. Events get a later time than
  the read that really took them: a lone half's window starts later (it waits a little longer, never less),
  records carry the later time.
* ``backlog`` (and so ``drained``) is the last read's FIONREAD: everything queued before ``t_ns`` is in this
  chunk or in that backlog, which is exactly what follows the chunk in the stream. "The queue was seen empty"
  after an earlier read inside the chunk is not claimed: a lone half or a fanotify merge window may wait
  until the next barrier, but no drain that did not happen is ever claimed (matcher read barriers,
  docs/architecture.md).
* ``nbytes`` is the sum: the matcher's read position counts the stream's bytes.
* The wall time is the first read's: the rescan after an overflow reports files changed since then, looking
  back further, never less far.
* Losses stay at their place: the kernel's overflow event is part of the bytes. The buffer's bound loses
  nothing in user space (the thread stops reading; the kernel queue overflows behind it and reports it with
  its own event), so a join never spans a gap.
* A capture records the batch as it was fed, so replay gives the live records.

**Waking the consumer**: an eventfd, readable exactly while the buffer holds a chunk (or the thread stopped
on an error): set by the thread when it appends to an empty buffer, cleared by the consumer when it takes the
last chunk, both under the lock.

Two implementations of one protocol, chosen by :func:`make_reader`:

* :class:`CBufferedReader`, the C extension ``_ringreader`` (built by ``pip install`` from
  ``_ringreader.c`` where a compiler is present; setup.py): a pthread that never takes the GIL, so the kernel
  queue is drained even during a garbage-collection pause or while the consumer computes;
* :class:`BufferedReader`, a Python thread, the fallback where the extension is not built: ``poll``,
  ``readv`` and FIONREAD release the GIL, but after each the thread waits for it again (up to the switch
  interval, 5 ms, while the consumer computes; the whole of a GC pause). ``FSNORM_READER=python`` forces it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import termios
import threading
import time
from array import array
from collections import deque
from typing import Literal, Protocol, TypeAlias

try:
    from . import _ringreader
except ImportError:  # not built (no compiler at install time): the Python thread
    _ringreader = None  # type: ignore[assignment]

#: One read: ``(t_ns, wall_before, backlog, data)``: CLOCK_MONOTONIC right after the read, wall time just
#: before it, FIONREAD right after it (the fd's own unit: bytes for inotify, 24 per event for fanotify) and the
#: bytes the kernel returned.
Chunk: TypeAlias = tuple[int, float, int, bytes]

#: The most a chunk holds with :func:`make_reader` (reads joined, or one read): about 2,000 inotify events, a
#: few milliseconds of the consumer's work. A consumer that is behind takes them one feed each; a larger
#: chunk would only hold back the records of its first events until its last ones are done (the per-read
#: cost is already spread over thousands of events: benchmarks/README.md, "Where the CPU goes").
MAX_CHUNK = 64 << 10
#: Default bound of the buffer: 16 MiB, several times a full default kernel queue (16,384 events: about
#: 0.5 MiB of inotify events with short names, 2-3 MiB of fanotify FAN_RENAME events with two names).
DEFAULT_READ_BUFFER = 16 << 20
#: The smallest buffer accepted (besides 0, no reader thread): room for a few reads.
MIN_READ_BUFFER = 64 << 10
#: The thread reads only when at least this much room is left (a fanotify read needs room for a whole event
#: with two handles and two names, an inotify read 272 bytes).
_MIN_ROOM = 4096
#: The thread leaves queued events to a consumer that keeps up (``take`` reads the fd itself when nothing is
#: buffered) and reads only once the consumer is behind: a chunk still buffered, at least ``backstop`` queued
#: in the kernel (FIONREAD's unit; LiveSource passes a quarter of a full queue), or events waiting for
#: _BACKSTOP_S.
DEFAULT_BACKSTOP = 64 * 1024
_BACKSTOP_S = 0.1
#: While a chunk waits (the consumer is behind), the thread reads at most this often unless ``backstop`` is
#: queued: a storm joins the waiting chunk a millisecond's events at a time, not a read (and a wake-up of the
#: thread) per few events, CPU that the consumer it waits for would lack.
_BEHIND_PACING_S = 0.001


def fionread(fd: int) -> int:
    """FIONREAD on ``fd``: what the kernel still has queued, in the fd's unit."""
    buf = array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, buf, True)
    return buf[0]


#: No single event is larger: inotify's is at most 16 + NAME_MAX + 1 = 272 bytes, fanotify's with FAN_RENAME's
#: two names and directory handles (MAX_HANDLE_SZ 128 each) and the object's own about 1 KiB.
LARGEST_EVENT = 4096


def read_chunk(fd: int, view: memoryview) -> Chunk | None:
    """One non-blocking read of ``fd`` into ``view``: the chunk, or None if nothing was queued. OSError for
    anything but EAGAIN.

    Both kernels refuse a read whose buffer cannot hold the *next* event whole (EINVAL) instead of returning
    part of it: with a ``view`` smaller than :data:`LARGEST_EVENT` (a small ``read_size``, which the tests use
    to cut a stream into reads of one event), one long name queued by anyone under a filesystem mark would
    stop the watch. The read is then made into a buffer any event fits in."""
    wall = time.time()
    try:
        n = os.readv(fd, (view,))
    except BlockingIOError:
        return None
    except OSError as exc:
        if exc.errno != errno.EINVAL or len(view) >= LARGEST_EVENT:
            raise
        view = memoryview(bytearray(LARGEST_EVENT))
        try:
            n = os.readv(fd, (view,))
        except BlockingIOError:
            return None
    if not n:
        return None
    t = time.monotonic_ns()
    return (t, wall, fionread(fd), bytes(view[:n]))


class Reader(Protocol):
    """What LiveSource needs of a reader thread (both implementations)."""

    @property
    def buffered(self) -> int: ...
    @property
    def peak(self) -> int: ...
    @property
    def full(self) -> int: ...
    @property
    def running(self) -> bool: ...
    @property
    def native_id(self) -> int | None: ...
    def start(self) -> None: ...
    def fileno(self) -> int: ...
    def take(self) -> Chunk | None: ...
    def idle_at(self) -> int | None: ...
    def stop(self) -> None: ...
    def close(self) -> None: ...
    def buffered_data(self) -> list[bytes]: ...


ReaderKind = Literal["c", "python"]


def reader_kind() -> ReaderKind:
    """``"c"`` when the C reader thread is built (and ``FSNORM_READER`` does not say ``python``)."""
    if _ringreader is None or os.environ.get("FSNORM_READER", "").lower() == "python":
        return "python"
    return "c"


def make_reader(fd: int, *, capacity: int = DEFAULT_READ_BUFFER, read_size: int = 256 << 10,
                backstop: int = DEFAULT_BACKSTOP, name: str = "fsnorm-reader") -> Reader:
    """The reader thread for ``fd``: the C one where built, else the Python one (:func:`reader_kind`). Its reads
    and chunks hold at most ``read_size`` bytes, and never more than :data:`MAX_CHUNK`."""
    read_size = min(read_size, MAX_CHUNK)
    if reader_kind() == "c":
        return CBufferedReader(fd, capacity=capacity, read_size=read_size, backstop=backstop)
    return BufferedReader(fd, capacity=capacity, read_size=read_size, backstop=backstop, name=name)


def _check_capacity(capacity: int) -> None:
    if capacity < MIN_READ_BUFFER:
        raise ValueError(f"read buffer of {capacity} bytes is below the minimum of {MIN_READ_BUFFER}")


class CBufferedReader:
    """The C reader thread (``_ringreader.Reader``, a pthread without the GIL), same protocol as
    :class:`BufferedReader`; the read error is raised by :meth:`take` as OSError."""

    def __init__(self, fd: int, *, capacity: int = DEFAULT_READ_BUFFER, read_size: int = 256 << 10,
                 backstop: int = DEFAULT_BACKSTOP) -> None:
        _check_capacity(capacity)
        if _ringreader is None:
            raise ImportError("the C reader thread (normalizer.backends._ringreader) is not built")
        self.fd = fd
        self._r = _ringreader.Reader(fd, capacity, max(_MIN_ROOM, min(read_size, capacity)), backstop)
        self.start, self.stop, self.close = self._r.start, self._r.stop, self._r.close
        self.take, self.idle_at, self.fileno = self._r.take, self._r.idle_at, self._r.fileno
        self.buffered_data = self._r.buffered_data

    @property
    def buffered(self) -> int:
        return self._r.stats()[0]

    @property
    def peak(self) -> int:
        return self._r.stats()[1]

    @property
    def reads(self) -> int:
        return self._r.stats()[2]

    @property
    def full(self) -> int:
        return self._r.stats()[3]

    @property
    def running(self) -> bool:
        return bool(self._r.stats()[4])

    @property
    def native_id(self) -> int | None:
        """The thread's kernel id once started (its scheduler slice is set by it: normalizer.backends.sched)."""
        return self._r.native_id()


class _Pending:
    """A chunk in :class:`BufferedReader`'s buffer, not taken yet: later reads join it (module docstring,
    "Batches"). The parts are joined once, when it is taken (bytes concatenated per read would copy the chunk
    again for each of the small reads of a storm)."""

    __slots__ = ("backlog", "parts", "size", "t_ns", "wall")

    def __init__(self, t_ns: int, wall: float, backlog: int, data: bytes) -> None:
        self.t_ns, self.wall, self.backlog = t_ns, wall, backlog
        self.parts = [data]
        self.size = len(data)

    def join(self, t_ns: int, backlog: int, data: bytes) -> None:
        """A later read joins: its time and FIONREAD are the chunk's now (the first read's wall time stays)."""
        self.t_ns, self.backlog = t_ns, backlog
        self.parts.append(data)
        self.size += len(data)

    def chunk(self) -> Chunk:
        data = self.parts[0] if len(self.parts) == 1 else b"".join(self.parts)
        return (self.t_ns, self.wall, self.backlog, data)


class BufferedReader:
    """One thread reading ``fd`` into a buffer of at most ``capacity`` bytes (module docstring).

    :meth:`start` once; the consumer polls :meth:`fileno` and calls :meth:`take` (in order, from one thread),
    :meth:`idle_at` when it wants a ``Tick``; :meth:`stop` joins the thread (what is buffered stays takeable).
    The fd stays the caller's: it is never closed here, and must stay open until :meth:`stop` returned."""

    def __init__(self, fd: int, *, capacity: int = DEFAULT_READ_BUFFER, read_size: int = 256 << 10,
                 backstop: int = DEFAULT_BACKSTOP, name: str = "fsnorm-reader") -> None:
        _check_capacity(capacity)
        self.fd = fd
        self.capacity = capacity
        self.read_size = min(read_size, capacity)
        self.backstop = max(1, backstop)
        self._chunks: deque[_Pending] = deque()
        self._lock = threading.Lock()
        #: Signalled when the consumer took a chunk (room) or stop was asked.
        self._room = threading.Condition(self._lock)
        self._notify = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._stop_r, self._stop_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = False
        self._inline: memoryview | None = None
        #: time.monotonic() of the thread's last read (its pacing while behind).
        self._last_read = 0.0
        #: Why the thread stopped reading, raised by take() once the chunks before it are taken.
        self.error: OSError | None = None
        #: Bytes buffered now, the most ever buffered, chunks read, and how often the thread found the buffer
        #: full (each time, the kernel queue had to hold what came next).
        self._buffered = 0
        self.peak = 0
        self.reads = 0
        self.full = 0

    # -- the consumer's side ---------------------------------------------------------------------------------

    @property
    def buffered(self) -> int:
        """Bytes buffered now, read under the lock the thread holds from its read to the append: a count taken
        after the kernel's (FIONREAD) never misses bytes the thread took from the kernel but had not appended
        yet (the sources' ``_queued``), as the C reader's ``stats()`` does under its mutex."""
        with self._lock:
            return self._buffered

    def start(self) -> None:
        if not self._started:
            self._started = True
            self._thread.start()

    def fileno(self) -> int:
        """Readable while a chunk (or an error) waits: poll it instead of the kernel fd."""
        return self._notify

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    @property
    def native_id(self) -> int | None:
        return self._thread.native_id

    def take(self) -> Chunk | None:
        """The oldest chunk; with nothing buffered, a read of the fd made here (under the lock, so in order: a
        consumer that keeps up reads as fresh as without the thread); None if nothing is queued. Raises the
        thread's OSError once every chunk read before it was taken."""
        with self._lock:
            chunks = self._chunks
            if not chunks and self.error is None:
                if self._inline is None:
                    self._inline = memoryview(bytearray(self.read_size))
                got = read_chunk(self.fd, self._inline)
                if got is not None:
                    self.reads += 1
                return got
            if chunks:
                pending = chunks.popleft()
                self._buffered -= pending.size
                if not chunks and self.error is None:
                    self._clear_notify()
                self._room.notify()
                return pending.chunk()
            error = self.error
        if error is not None:
            raise error
        return None

    def idle_at(self) -> int | None:
        """The monotonic time now if nothing is buffered, no read is in flight and the kernel queue is empty
        (a ``Tick`` at that time is honest); else None."""
        with self._lock:
            if self._chunks or self.error is not None:
                return None
            t = time.monotonic_ns()
            return t if fionread(self.fd) == 0 else None

    def stop(self) -> None:
        """Stop the thread and wait for it; what it buffered can still be taken. Idempotent. Closes the
        reader's own fds only after the thread is gone (the kernel fd stays open)."""
        if self._stop_w < 0:
            return
        with self._lock:
            self._stopping = True
            self._room.notify_all()
        with contextlib.suppress(OSError):
            os.write(self._stop_w, b"\0")
        if self._started:
            self._thread.join()
        for fd in (self._stop_r, self._stop_w):
            os.close(fd)
        self._stop_r = self._stop_w = -1

    def close(self) -> None:
        """Stop, drop what is buffered, close the eventfd."""
        self.stop()
        with self._lock:
            self._chunks.clear()
            self._buffered = 0
        if self._notify >= 0:
            os.close(self._notify)
            self._notify = -1

    def buffered_data(self) -> list[bytes]:
        """A snapshot of the buffered chunks' bytes, oldest first (to count the events they hold)."""
        with self._lock:
            return [c.chunk()[3] for c in self._chunks]

    # -- the thread ------------------------------------------------------------------------------------------

    def _backstop(self) -> bool:
        """Events are queued: wait while the consumer can still take them itself. True: read now."""
        first = time.monotonic()
        stop = select.poll()
        stop.register(self._stop_r, select.POLLIN)
        while True:
            with self._lock:
                if self._stopping:
                    return False
                behind = bool(self._chunks)
            try:
                queued = fionread(self.fd)
            except OSError:
                return True  # an fd without FIONREAD: read, and report what read says
            if not queued:
                return False
            now = time.monotonic()
            if queued >= self.backstop or now - first >= _BACKSTOP_S or \
                    (behind and now - self._last_read >= _BEHIND_PACING_S):
                return True
            if stop.poll(1):
                return False

    def _clear_notify(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(self._notify)

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        poller.register(self._stop_r, select.POLLIN)
        buf = bytearray(self.read_size)
        view = memoryview(buf)
        chunks = self._chunks
        lock, room = self._lock, self._room
        while True:
            with lock:
                if self.capacity - self._buffered < _MIN_ROOM and not self._stopping:
                    self.full += 1
                    while self.capacity - self._buffered < _MIN_ROOM and not self._stopping:
                        room.wait()
                if self._stopping:
                    return
                size = min(self.read_size, self.capacity - self._buffered)
            try:
                ready = poller.poll()
            except InterruptedError:  # pragma: no cover - PEP 475 retries poll
                continue
            if any(fd == self._stop_r for fd, _ in ready):
                return
            if not self._backstop():
                continue
            with lock:
                if self._stopping:
                    return
                if chunks and _MIN_ROOM <= self.read_size - chunks[-1].size < size:  # fill the waiting chunk
                    size = self.read_size - chunks[-1].size
                try:
                    chunk = read_chunk(self.fd, view[:size])
                except OSError as exc:
                    self.error = exc
                    os.eventfd_write(self._notify, 1)
                    return
                if chunk is None:
                    continue
                t, wall, backlog, data = chunk
                self._last_read = t / 1e9
                if chunks and chunks[-1].size + len(data) <= self.read_size:  # joins the tail (docstring)
                    chunks[-1].join(t, backlog, data)
                else:
                    if not chunks:
                        os.eventfd_write(self._notify, 1)
                    chunks.append(_Pending(t, wall, backlog, data))
                self._buffered += len(data)
                self.reads += 1
                if self._buffered > self.peak:
                    self.peak = self._buffered
