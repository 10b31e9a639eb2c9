"""What every live source shares: the lifecycle, waiting, waking, the capture, and a clean close.

A live source owns a kernel fd and a sans-IO normalizer. :class:`LiveSource` does everything that is not about
the kernel interface itself:

* ``open``: check the roots, create the wake pipe, let the subclass create its fd and walk the tree, start the
  capture, feed what the walk produced;
* ``read``: wait (poll) until the fd is readable, a one-sided move's deadline passes, or :meth:`wake` is called;
  let the subclass read once; if nothing was queued, advance the clock (a ``Tick``);
* the reader thread (``read_buffer`` > 0, the default; :mod:`.reader`): a thread drains the kernel fd into a
  bounded buffer of chunks while Python is busy; ``read`` then polls the buffer and the subclass takes its
  read from it (:meth:`_next_chunk`): the bytes, time and FIONREAD a direct read would have seen (reads the
  thread joined while their chunk waited are one such read, at the last one's time: reader.py, "Batches");
* feeding: every stream item goes to the normalizer and, if capturing, to the capture. A capture that cannot be
  written (disk full, file-size limit) is stopped with an ``error`` record; watching goes on;
* ``close``: read what the kernel had queued when asked to stop (nothing that happened before the stop is
  lost), flush pending rename halves as ``shutdown`` records, close the capture with its end marker.

* recovery from an overflow (``rescan``, on by default): a shadow of the tree is kept from the records
  (:class:`~normalizer.core.shadow.ShadowTree`); after a read that brought an ``overflow`` record, the tree is
  walked, every directory in it watched (marked) and known to the normalizer, what differs from the shadow is
  reported as ``synthesized`` records, and directories that left are forgotten (:meth:`_rescan`).

Subclasses implement :meth:`_open_kernel`, :meth:`_read_once`, :meth:`_queued`, :meth:`_close_kernel`,
:meth:`_capture_header`, and for the rescan :meth:`_rescan_dir` and :meth:`_rescan_forget`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import select
import stat
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from ..capture.log import CaptureHeader, CaptureWriter
from ..core import raw
from ..core.actions import Action, Fed, Rescan, Resolve, Unwatch, WakeAt, Watch
from ..core.filters import PathFilter
from ..core.matcher import DEFAULT_MAX_PENDING, DEFAULT_MAX_WAIT_NS, DEFAULT_WINDOW_NS, MatcherSettings
from ..core.shadow import ShadowTree
from ..core.tree import join
from ..errors import CaptureError, SourceError
from ..records import Flag, Rec
from .priority import DEFAULT_BOOST, PriorityBoost, boost_priority, check_boost
from .reader import DEFAULT_READ_BUFFER, MIN_READ_BUFFER, Chunk, Reader, fionread, make_reader, read_chunk
from .roots import RootControl
from .sched import DEFAULT_SLICE_US, SliceError, check_slice_us, request_slice

PathArg = str | bytes | os.PathLike[str] | os.PathLike[bytes]


@dataclasses.dataclass(slots=True)
class Walked:
    """What :meth:`LiveSource._rescan_walk` found below its tops."""

    #: Every entry listed (not excluded): path -> is_dir.
    current: dict[bytes, bool] = dataclasses.field(default_factory=dict)
    #: The directories listed (the tops included).
    dirs: set[bytes] = dataclasses.field(default_factory=set)
    #: Directories that could not be watched or listed: what is known below them stays as it was.
    unlisted: list[bytes] = dataclasses.field(default_factory=list)
    #: Files whose mtime is not older than the walk's ``modified_since`` (none without it).
    modified: list[bytes] = dataclasses.field(default_factory=list)


def abspath(path: PathArg) -> bytes:
    return os.path.abspath(os.fsencode(path))


def check_root(root: bytes) -> None:
    """Raise SourceError saying exactly why ``root`` cannot be watched, if it cannot."""
    try:
        st = os.stat(root)
    except FileNotFoundError:
        raise SourceError(f"cannot watch {os.fsdecode(root)}: no such directory") from None
    except PermissionError:
        raise SourceError(f"cannot watch {os.fsdecode(root)}: permission denied (a directory above it is not "
                          "searchable by this user)") from None
    except OSError as exc:
        raise SourceError(f"cannot watch {os.fsdecode(root)}: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise SourceError(f"cannot watch {os.fsdecode(root)}: not a directory")


class _Normalizer(Protocol):
    @property
    def matcher(self) -> Any: ...

    def feed(self, item: Any) -> Fed: ...

    def close(self) -> list[Rec]: ...


def check_read_buffer(size: int) -> None:
    """SourceError unless ``size`` is 0 (no reader thread) or at least MIN_READ_BUFFER bytes."""
    if size != 0 and size < MIN_READ_BUFFER:
        raise SourceError(f"read_buffer must be 0 (no reader thread) or at least {MIN_READ_BUFFER} bytes "
                          f"({MIN_READ_BUFFER // 1024} KiB), got {size}")


def matcher_settings(settings: MatcherSettings) -> MatcherSettings:
    """All four matcher settings, defaults filled in and ``max_wait_ns`` raised to ``window_ns`` if below it
    (the one place this is clamped): what a source passes to its normalizer and records in its capture."""
    window_ns = settings.get("window_ns", DEFAULT_WINDOW_NS)
    return MatcherSettings(window_ns=window_ns,
                           max_wait_ns=max(settings.get("max_wait_ns", DEFAULT_MAX_WAIT_NS), window_ns),
                           max_pending=settings.get("max_pending", DEFAULT_MAX_PENDING),
                           strict_order=settings.get("strict_order", True))


class LiveSource(RootControl):
    """The shared machinery of the inotify and fanotify sources (module docstring)."""

    source_kind = ""
    #: How long close() may spend reading what was queued before it was called.
    CLOSE_DRAIN_SECONDS = 5.0
    #: The longest a read() blocks: it may return [] after this even with no timeout given.
    MAX_POLL_SECONDS = 1.0
    #: Read pacing: a read that comes less than this after the previous one first waits for the rest of it
    #: (only when the caller allows a wait: not ``read(0)``). Under a storm the kernel queue is read about once
    #: a millisecond, a hundred events or more at a time, instead of as soon as each few events arrive: the
    #: per-read work (poll, read, FIONREAD, the feed, the write of the records) is what a storm of small reads
    #: spends its CPU on (benchmarks/README.md, "Where the CPU goes"). A lone event after a quiet spell is read
    #: at once; the delay is at most this, far below the kernel queue's slack (16,384 events) and the window.
    READ_PACING_NS = 1_000_000

    normalizer: _Normalizer
    #: False: each directory root alone with its direct entries (set before ``__init__`` runs).
    recursive: bool = True

    def __init__(self, roots: Sequence[PathArg], *, path_filter: PathFilter,
                 capture: str | os.PathLike[str] | None, rescan: bool = True,
                 read_buffer: int = DEFAULT_READ_BUFFER, sched_slice_us: int = DEFAULT_SLICE_US,
                 priority_boost: int = DEFAULT_BOOST) -> None:
        if not roots:
            raise SourceError("no directory to watch")
        check_read_buffer(read_buffer)
        try:
            check_slice_us(sched_slice_us)
        except ValueError as exc:
            raise SourceError(f"sched_slice_us: {exc}") from None
        try:
            check_boost(priority_boost)
        except ValueError as exc:
            raise SourceError(f"priority_boost: {exc}") from None
        #: Nice levels to raise the process and its session group by while open (normalizer.backends.priority),
        #: and what that did (None until open, and with 0).
        self.priority_boost = priority_boost
        self.priority: PriorityBoost | None = None
        #: Bytes the reader thread may hold (0: no thread, the consumer reads the fd itself).
        self.read_buffer = read_buffer
        #: The scheduler slice the reader thread asks for, in microseconds (0: the kernel's default;
        #: normalizer.backends.sched), and why the kernel refused it, if it did (the thread runs on with the
        #: default slice).
        self.sched_slice_us = sched_slice_us
        self.sched_slice_error: str | None = None
        self._reader: Reader | None = None
        #: The time of the last read (or Tick) fed: the stream's clock (_in_stream_order).
        self._stream_t = 0
        #: The time of the source's last own item (watch, notice, resolution): reads before it are not drained.
        self._action_t = 0
        self._direct_view: memoryview | None = None
        self._init_roots(roots)  # self.scope (the roots as given) and self.roots (directories watched at the top)
        self.rescan = rescan
        #: What the tree holds, kept from the records, for the rescan after an overflow (only with ``rescan``).
        self._shadow: ShadowTree | None = ShadowTree(self.roots) if rescan else None
        #: Wall time taken just before the previous read: files changed since then are reported as ``modify``
        #: by a rescan (their events may have been lost).
        self._last_read_wall = time.time()
        self.filter = path_filter
        path_filter.scope = self.scope
        self._capture_path = capture
        self._capture: CaptureWriter | None = None
        #: Why the capture stopped, if it did (the watch went on without it).
        self.capture_error: str | None = None
        self._poll = select.poll()
        self._wake_r, self._wake_w = -1, -1
        self._opened = False
        self.closed = False
        #: Counters for monitoring: reads, events read, records emitted, overflows, watch errors (subclasses
        #: add their own).
        self.stats: dict[str, int] = {"reads": 0, "events": 0, "records": 0, "overflows": 0, "watch_errors": 0}
        #: Announce every listing with a ``scan`` notice (set when open/access/close_nowrite are watched: the
        #: normalizer then drops the events of fsnorm's own listings, normalizer.core.ownscan).
        self.announce_scans = False
        #: When to feed a Tick if nothing is read (the last WakeAt action; None: no deadline).
        self._wake_at: int | None = None
        #: CLOCK_MONOTONIC of the end of the last read that found events, and what the kernel still held after
        #: it (read pacing, :meth:`_pace`).
        self._last_read_ns = 0
        self._last_backlog = 0

    @property
    def wake_at(self) -> int | None:
        """``CLOCK_MONOTONIC`` ns at which the source must be read even if the kernel says nothing (a lone
        rename half's deadline: the core's last ``WakeAt`` action), or None. What a caller's own event loop
        waits for, instead of asking the matcher."""
        return self._wake_at

    # -- for subclasses ------------------------------------------------------------------------------------

    def fileno(self) -> int:
        """The kernel fd (ValueError if the source is not open)."""
        raise NotImplementedError

    #: Bytes one read takes at most (subclasses set it).
    _read_size: int

    def _open_kernel(self) -> list[raw.AnyStreamItem]:
        """Create the kernel fd, register it with ``self._poll``, mark/watch the roots. Returns the items the
        initial walk produced (fed after the capture starts)."""
        raise NotImplementedError

    def _capture_header(self) -> CaptureHeader:
        raise NotImplementedError

    def _read_once(self) -> list[Rec] | None:
        """One non-blocking read, fed through :meth:`_feed`: the records, or None if nothing was queued.
        Sets ``self._last_consumed`` to what the read took, in the unit of :meth:`_queued`."""
        raise NotImplementedError

    def _queued(self) -> int:
        """How much is queued in the kernel now (FIONREAD), in the unit of ``_last_consumed``."""
        raise NotImplementedError

    def _close_kernel(self) -> None:
        raise NotImplementedError

    def _before_capture(self, path: bytes) -> None:
        """Called with the capture's path before the writer opens it (fanotify ignores its own writes)."""

    # -- lifecycle -----------------------------------------------------------------------------------------

    def open(self) -> list[Rec]:
        """Create the fd and watch every root recursively. Returns records about directories that could not
        be watched (``error``); raises SourceError (or a subclass) if watching is impossible. Opening an open
        source does nothing (and returns no records)."""
        if self.closed:
            raise SourceError("source is closed")
        if self._opened:
            return []
        for root in self.roots:
            check_root(root)
        if self.priority_boost and self.priority is None:
            # Before the reader thread starts (it inherits the nice value of the thread that starts it).
            self.priority = boost_priority(self.priority_boost)
        try:
            self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            self._poll.register(self._wake_r, select.POLLIN)
            items = self._open_kernel()
            if self._capture_path is not None:
                self._before_capture(os.fsencode(self._capture_path))
                self._capture = CaptureWriter(self._capture_path, self._capture_header())
        except BaseException:
            self._close_fds()
            self._restore_priority()
            self.priority = None  # a later open() boosts again
            raise
        self._opened = True
        self._last_consumed = 0
        out = self._feed_all(items)
        self._start_reader()
        return out

    def __enter__(self) -> LiveSource:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ready_fds(self) -> tuple[int, ...]:
        """The fds to poll (or give to an event loop) for "a read may have records": the kernel fd, and the
        reader thread's eventfd (readable while it holds a chunk) when there is one."""
        return (self.fileno(),) if self._reader is None else (self.fileno(), self._reader.fileno())

    def wakeup_fd(self) -> int:
        """The write end of the wake pipe, for ``signal.set_wakeup_fd``: a signal then interrupts a blocked
        :meth:`read` even when it arrives just before the poll (a plain Python handler would only run after)."""
        if self._wake_w < 0:
            raise SourceError("source is not open")
        return self._wake_w

    def wake(self) -> None:
        """Make a :meth:`read` blocked in another thread return now (used by ``stop``). Thread-safe, and safe
        from a signal handler."""
        if self._wake_w >= 0:
            with contextlib.suppress(BlockingIOError, OSError):
                os.write(self._wake_w, b"\0")

    def close(self, reason: str = "closed") -> list[Rec]:
        """Stop watching. Returns the last records: what the kernel had queued when close was called (read
        now, so nothing that happened before the stop is lost), then pending halves flushed as one-sided
        ``shutdown`` records. Never raises for the capture: a failure there is an ``error`` record."""
        if self.closed:
            return []
        out: list[Rec] = []
        if self._opened:
            out.extend(self._read_queued())
        self.closed = True
        out.extend(self.filter.apply(self.normalizer.close()))
        out.extend(self._closing_notes())
        if self._capture is not None:
            try:
                self._capture.close(reason)
            except CaptureError as exc:
                out.append(self._capture_failed(exc))
        self._close_fds()
        self._restore_priority()
        self.stats["records"] += len(out)
        return out

    def _restore_priority(self) -> None:
        """Give back the boost open() took (what is still as it left it: PriorityBoost.restore)."""
        if self.priority is not None:
            self.priority.restore()

    def _closing_notes(self) -> list[Rec]:
        """Records that say what close left undone (after the flushed halves, before the capture closes)."""
        return []

    def _read_queued(self) -> list[Rec]:
        """Read everything that is queued now (and only that: a busy queue does not keep close waiting)."""
        out: list[Rec] = []
        end = time.monotonic() + self.CLOSE_DRAIN_SECONDS
        reader = self._reader
        if reader is not None:  # what the thread read before the stop, then the kernel's queue directly
            reader.stop()
            while reader.buffered and time.monotonic() < end:
                got = self._read_once()
                if got is None:
                    break
                out.extend(got)
            self._drop_reader()
        target = self._queued()
        consumed = 0
        while consumed < target and time.monotonic() < end:
            got = self._read_once()
            if got is None:
                break
            out.extend(got)
            consumed += self._last_consumed
        return out

    def _close_fds(self) -> None:
        self._drop_reader()  # the thread reads the kernel fd: it goes first
        self._close_kernel()
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = -1

    # -- reading -------------------------------------------------------------------------------------------

    def read(self, timeout: float | None = None) -> list[Rec]:
        """:meth:`_read_unlocked`, between the root changes asked meanwhile (backends/roots.py)."""
        with self._loop_lock:
            out = self._take_requests()
            out.extend(self._read_unlocked(timeout))
            out.extend(self._take_requests())
            return out

    def _read_unlocked(self, timeout: float | None = None) -> list[Rec]:
        """Wait up to ``timeout`` seconds (None: until something happens, but at most MAX_POLL_SECONDS) for
        events; return the records that are final now. Returns early, possibly with no records, when a
        one-sided move's deadline passes or :meth:`wake` is called."""
        if not self._opened or self.closed:
            raise SourceError("source is not open" if not self._opened else "source is closed")
        ready = False
        for rfd, _ in self._poll.poll(self._wait_ms(timeout)):
            if rfd == self._wake_r:
                self._drain_wake()
                ready = False
                break  # a wake (stop, a request): read now, no pacing
            ready = True
        if ready and timeout != 0:
            self._pace()
        out = self._read_once()
        if out is not None:
            self._last_read_ns = time.monotonic_ns()
            return out
        if self._wake_at is not None:
            t = self._idle_at()
            if t is not None:  # the clock advanced with an empty queue
                return self._feed(raw.Tick(t))
        return []

    def _pace(self) -> None:
        """Wait until READ_PACING_NS after the previous read, if that read left nothing behind (the kernel queue
        was empty after it and the reader thread holds nothing): a consumer that is behind reads at once."""
        if self._last_backlog or (self._reader is not None and self._reader.buffered):
            return
        wait = self._last_read_ns + self.READ_PACING_NS - time.monotonic_ns()
        if wait > 0:
            time.sleep(wait / 1e9)

    # -- the reader thread and the reads (module docstring; normalizer.backends.reader) -------------------

    def _start_reader(self) -> None:
        """Start the reader thread (with ``read_buffer``): ``read`` polls its buffer instead of the fd."""
        if not self.read_buffer:
            return
        fd = self.fileno()
        reader = make_reader(fd, capacity=self.read_buffer, read_size=self._read_size, backstop=self._backstop(),
                             name=f"fsnorm-{self.source_kind}-reader")
        # Both stay polled: the kernel fd (a consumer that keeps up reads it itself) and the thread's buffer.
        self._poll.register(reader.fileno(), select.POLLIN)
        self._reader = reader
        reader.start()
        self._request_slice(reader)
        self._boost_reader(reader)

    def _request_slice(self, reader: Reader) -> None:
        """Give the reader thread a short scheduler slice (normalizer.backends.sched): once the consumer is
        behind, it drains the kernel queue soon after it is woken, even when every CPU is busy."""
        tid = reader.native_id
        if not self.sched_slice_us or tid is None:
            return
        try:
            request_slice(self.sched_slice_us, tid)
        except SliceError as exc:
            self.sched_slice_error = f"{exc.strerror}; the reader thread keeps the kernel's default slice"

    def _boost_reader(self, reader: Reader) -> None:
        """Give the reader thread the boosted nice value: a thread inherits it from the one that starts it,
        except under SCHED_RESET_ON_FORK (systemd units often carry it), which resets a negative nice to 0."""
        boost, tid = self.priority, reader.native_id
        if boost is None or not boost.threads or tid is None:
            return
        with contextlib.suppress(OSError):
            if os.getpriority(os.PRIO_PROCESS, tid) > boost.nice:
                os.setpriority(os.PRIO_PROCESS, tid, boost.nice)

    def _backstop(self) -> int:
        """A quarter of a full kernel queue in FIONREAD's unit (inotify: bytes, at least 16 an event; fanotify:
        24 an event), from the queue limit this fd got at its creation: the reader thread reads once that much
        waits (the consumer is behind), long before the queue overflows."""
        try:
            with open(f"/proc/sys/fs/{self.source_kind}/max_queued_events") as f:
                limit = int(f.read())
        except (OSError, ValueError):
            limit = 16384
        return max(1, limit * (16 if self.source_kind == "inotify" else 24) // 4)

    def _drop_reader(self) -> None:
        """Stop the thread and release its buffer; the fd is polled and read directly again."""
        reader, self._reader = self._reader, None
        if reader is None:
            return
        self.stats["read_buffer_peak"] = reader.peak
        self.stats["read_buffer_full"] = reader.full
        self._poll.unregister(reader.fileno())
        reader.close()

    def _next_chunk(self) -> Chunk | None:
        """The next read, ``(t_ns, wall_before, backlog, data)``: from the reader thread's buffer, or one
        non-blocking read of the fd without it. None if nothing is there. SourceError if reading failed."""
        reader = self._reader
        try:
            if reader is not None:
                chunk = reader.take()
                if reader.peak > self.stats.get("read_buffer_peak", 0):
                    self.stats["read_buffer_peak"] = reader.peak
                    self.stats["read_buffer_full"] = reader.full
            else:
                view = self._direct_view
                if view is None or len(view) != self._read_size:
                    view = self._direct_view = memoryview(bytearray(self._read_size))
                chunk = read_chunk(self.fileno(), view)
            if chunk is not None:
                self._last_backlog = chunk[2]
            return chunk
        except OSError as exc:
            raise SourceError(f"reading the {self.source_kind} fd failed: {exc.strerror or exc}") from exc

    def _idle_at(self) -> int | None:
        """The time now if everything queued so far has been consumed (the kernel queue and the reader's
        buffer are empty), else None: what a ``Tick`` may say."""
        if self._reader is not None:
            return self._reader.idle_at()
        t = time.monotonic_ns()
        return t if fionread(self.fileno()) == 0 else None

    def _wait_ms(self, timeout: float | None) -> int:
        """How long to poll: the caller's timeout, shortened to the next deadline, and never longer than
        MAX_POLL_SECONDS, so that a stop requested from a Python signal handler that ran late (a signal just
        before poll) is seen within that time even without ``set_wakeup_fd``."""
        deadline = self._wake_at
        wait = self.MAX_POLL_SECONDS if timeout is None else min(timeout, self.MAX_POLL_SECONDS)
        if deadline is not None:
            wait = min(wait, max(0.0, (deadline - time.monotonic_ns()) / 1e9))
        return int(wait * 1000 + 0.999)

    def _drain_wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_r, 4096):
                pass

    # -- feeding (every item goes to the capture, then to the normalizer) ----------------------------------

    def _feed(self, item: raw.AnyStreamItem) -> list[Rec]:
        if self._reader is not None:
            item = self._in_stream_order(item)
        failed: Rec | None = None
        if self._capture is not None:
            try:
                self._capture.write(item)
            except CaptureError as exc:
                failed = self._capture_failed(exc)
        recs = self.normalizer.feed(item)
        self.stats["overflows"] = self.normalizer.matcher.overflows
        self._observe(recs)
        out = self.filter.apply(recs)
        if failed is not None:
            out.insert(0, failed)
        self.stats["records"] += len(out)
        if recs.actions:
            out.extend(self._carry_out(recs.actions))
        return out

    def _in_stream_order(self, item: raw.AnyStreamItem) -> raw.AnyStreamItem:
        """With the reader thread, the source's own items (watches, resolved handles, notices) are made while
        later reads already wait in the buffer, stamped before the source made them. Such an item takes the time
        of the read it follows, so the stream's times never go back (a capture's reader checks that). Never
        later than its own time: a read's time stays what it was (its barrier claims "everything queued
        before t was read", which a later stamp would overstate)."""
        if isinstance(item, raw.InotifyBatch | raw.FanotifyBatch):
            self._stream_t = item.t_ns
            if item.drained and item.t_ns < self._action_t:
                # Read before the source's last own action (a scan, a watch, a resolution) was made: "the queue
                # was empty at t" says nothing about what that action caused, which the normalizers take a
                # drained read to say (own scans seen, merge windows closed). The barrier (backlog 0) still
                # tells the matcher everything queued before t was read.
                item.drained = False
            return item
        if isinstance(item, raw.Tick):
            self._stream_t = item.t_ns
            return item
        self._action_t = max(self._action_t, item.t_ns)
        if item.t_ns > self._stream_t > 0:
            return dataclasses.replace(item, t_ns=self._stream_t)
        return item

    def _carry_out(self, actions: tuple[Action, ...]) -> list[Rec]:
        """Do what a feed asked, in its order; the records of the walks of new directories. This is the only
        place a source acts on the normalizer's behalf (normalizer.core.actions)."""
        out: list[Rec] = []
        for action in actions:
            if isinstance(action, WakeAt):
                self._wake_at = action.t_ns
            elif isinstance(action, Unwatch):
                self._unwatch(action.key)
            elif isinstance(action, Rescan):
                out.extend(self._rescan_below(action))
            elif isinstance(action, Resolve):
                out.extend(self._feed(self._answer(action)))
            elif self.scope.recursive_at(action.path):
                items: list[raw.AnyStreamItem] = []
                self._watch_new(action, items)
                out.extend(self._feed_all(items))
        return out

    def _unwatch(self, key: int | bytes) -> None:
        """Carry out ``Unwatch(key)``: stop watching a directory that left the tree."""
        raise NotImplementedError

    def _watch_new(self, action: Watch, items: list[raw.AnyStreamItem]) -> None:
        """Carry out ``Watch``: watch the new directory and all below it, appending the items that tell
        the normalizer (watches, synthesized creates, errors)."""
        raise NotImplementedError

    def _answer(self, action: Resolve) -> raw.AnyStreamItem:
        """Carry out ``Resolve``: the item that answers it (fanotify: a ``HandleResolved``)."""
        raise NotImplementedError

    def _rescan_below(self, action: Rescan) -> list[Rec]:
        """Carry out ``Rescan``: list the subtree again and report what differs from the shadow (the fanotify
        source; without a shadow, ``rescan=False``, the ``rescan`` record that came with the action is all the
        consumer gets). The inotify source carries out a feed's Rescans together instead (its ``_relist``)."""
        raise NotImplementedError

    def _observe(self, recs: list[Rec]) -> None:
        """See every record (before filtering): the shadow of the tree follows them."""
        if self._shadow is not None:
            self._shadow.apply(recs)

    def _feed_all(self, items: Sequence[raw.AnyStreamItem]) -> list[Rec]:
        out: list[Rec] = []
        for item in items:
            out.extend(self._feed(item))
        return out

    def _capture_failed(self, exc: CaptureError) -> Rec:
        """Stop capturing (without writing to the broken file again); the record that says so."""
        assert self._capture is not None
        name = self._capture.name
        self._capture.abort()
        self._capture = None
        self.capture_error = f"{exc.reason}; the capture is valid up to its last complete line"
        return Rec.note("error", os.fsencode(name), False, time.monotonic_ns(), 0,
                        message=f"{self.capture_error}; watching goes on without it", source=self.source_kind)

    def _scan(self, path: bytes, *, synthesize: bool,
              items: list[raw.AnyStreamItem]) -> list[tuple[bytes, bool]] | None:
        """List a directory whose watch (mark) exists already, so nothing created meanwhile is missed.

        Returns its entries as (path, is_dir), sorted; with ``synthesize``, appends a ``synthesized`` create
        for each (not excluded) entry to ``items``. None if it cannot be listed (gone: its parent's events tell
        the story; unreadable: an ``error`` record)."""
        if self.announce_scans:
            items.append(raw.SourceNotice(time.monotonic_ns(), "scan", path, True))
        try:
            with os.scandir(path) as entries:
                found = sorted((os.fsencode(e.name), e.is_dir(follow_symlinks=False)) for e in entries)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except PermissionError:
            self._error(items, path, "permission denied listing this directory: its content is not reported "
                        "until it changes")
            return None
        except OSError as exc:
            self._error(items, path, f"cannot list this directory: {exc.strerror} (errno {exc.errno}); its "
                        "content is not reported until it changes")
            return None
        children = [(join(path, name), is_dir) for name, is_dir in found]
        if self._shadow is not None and not synthesize:  # the initial walk (synthesized creates are observed)
            for child, is_dir in children:
                if not self.filter.excluded(child):
                    self._shadow.add(child, is_dir)
        if synthesize:
            t = time.monotonic_ns()
            items.extend(raw.SourceNotice(t, "create", child, is_dir, (Flag.SYNTHESIZED.value,))
                         for child, is_dir in children if not self.filter.excluded(child))
        return children

    def _error(self, items: list[raw.AnyStreamItem], path: bytes, message: str) -> None:
        """A directory that could not be watched: an ``error`` record at its place in the stream."""
        self.stats["watch_errors"] += 1
        items.append(raw.SourceNotice(time.monotonic_ns(), "error", path, True, (), message))

    # -- recovery from an overflow (rescan) ----------------------------------------------------------------

    def _recover(self, overflows_before: int, before_read_wall: float) -> list[Rec]:
        """Called by :meth:`_read_once` after a read was fed (and the tree followed): rescan if the read
        brought an overflow. ``before_read_wall`` is the wall time taken just before this read."""
        out: list[Rec] = []
        if self._shadow is not None and self.stats["overflows"] > overflows_before:
            out = self._rescan(self._last_read_wall)
        self._last_read_wall = before_read_wall
        return out

    def _rescan_dir(self, path: bytes, items: list[raw.AnyStreamItem]) -> bool:
        """Make sure the directory ``path``, found by the rescan walk, is watched (marked) and known to the
        normalizer, appending the items that tell it. False: it cannot be watched; it is not listed, and what
        the shadow knows below it stays as it was."""
        raise NotImplementedError

    def _rescan_forget(self, gone: Callable[[bytes], bool], items: list[raw.AnyStreamItem]) -> None:
        """Forget (unwatch) every directory the normalizer knows at a path for which ``gone(path)`` is true
        (the walk did not find it, and it is not below a directory that could not be listed), appending the
        items that tell it."""
        raise NotImplementedError

    def _rescan_walk(self, tops: Sequence[bytes], items: list[raw.AnyStreamItem], *,
                     modified_since: float | None = None) -> Walked:
        """The rescan's walk, below each of ``tops`` (watched already): every directory found is watched
        (:meth:`_rescan_dir`; one that cannot be is not listed), its listing announced (a ``scan`` notice, so
        its own open/access/close are not reported) and listed. One walk for the overflow's rescan, a
        ``Rescan``'s and inotify's relisting, with or without the shadow's diff after it.

        ``modified_since``: each file is also stat'ed and those whose mtime is not older are in ``modified``
        (the overflow's rescan: events about them may have been lost); None, no stat per file (a relisting:
        no event was lost, what was written came as records)."""
        walked = Walked()
        current, dirs, unlisted, modified = walked.current, walked.dirs, walked.unlisted, walked.modified
        stat_files = modified_since is not None
        recent = modified_since if modified_since is not None else 0.0
        for root in tops:
            stack = [root]
            while stack:
                path = stack.pop()
                if path != root and not self._rescan_dir(path, items):
                    unlisted.append(path)
                    continue
                dirs.add(path)
                if self.announce_scans:  # the listing's own open/access/close are not reported (as in _scan)
                    items.append(raw.SourceNotice(time.monotonic_ns(), "scan", path, True))
                try:
                    with os.scandir(path) as entries:
                        for entry in entries:
                            child = join(path, os.fsencode(entry.name))
                            if self.filter.excluded(child):
                                continue
                            is_dir = entry.is_dir(follow_symlinks=False)
                            current[child] = is_dir
                            if is_dir:
                                if self.scope.recursive_at(child):
                                    stack.append(child)
                            elif stat_files and self._mtime(entry) >= recent:
                                modified.append(child)
                except (FileNotFoundError, NotADirectoryError):
                    continue  # gone meanwhile: its parent's events (queued now) tell the story
                except OSError as exc:  # unreadable: what is known below it stays as it was
                    self._error(items, path, f"cannot list this directory after an overflow: {exc.strerror} "
                                f"(errno {exc.errno}); changes below it may be missing")
                    unlisted.append(path)
        return walked

    def _rescan(self, since_wall: float, tops: Sequence[bytes] | None = None,
                why: str = "rescan after overflow") -> list[Rec]:
        """After an overflow: walk the tree, watch what appeared, forget what left, and report what differs
        from the shadow tree as ``synthesized`` records: deletes (deepest first), creates (parents first), then
        ``modify`` for files whose mtime is not older than ``since_wall`` (the last read before the overflow;
        1 s of slack for coarse timestamps). The shadow then holds what the walk found.

        ``tops``: only what is below these directories (a :class:`~normalizer.core.actions.Rescan`), the
        records carrying ``why``."""
        assert self._shadow is not None
        below = None if tops is None else tuple(top + b"/" for top in tops)
        items: list[raw.AnyStreamItem] = []
        walked = self._rescan_walk(self.roots if tops is None else tops, items,
                                   modified_since=None if since_wall == float("inf") else since_wall - 1.0)
        current, unlisted, modified = walked.current, walked.unlisted, walked.modified
        dirs = set(self.roots) | walked.dirs
        unknown = tuple(top + b"/" for top in unlisted)

        def gone(path: bytes) -> bool:
            return path not in dirs and path not in unlisted and not path.startswith(unknown) and \
                (below is None or path.startswith(below))

        self._rescan_forget(gone, items)
        # What the walk tells the normalizer goes in before the shadow is read: a directory it learns may be
        # one whose place was uncertain (fanotify), and its answer moves it there with a synthesized rename
        # and rescans its subtree at once (a nested Rescan), which changes the shadow. A diff against the
        # shadow as it was before would then delete what that rename already moved and create again what
        # that rescan already reported (an overflow meeting a held-back subtree).
        out = self._feed_all(items)
        items = []
        old = self._shadow.snapshot(tops)  # with tops, only their subtrees
        if unknown:  # keep what the shadow knew below a directory that could not be listed
            current.update((p, d) for p, d in old.items() if p.startswith(unknown))
        t = time.monotonic_ns()
        flags = (Flag.SYNTHESIZED.value,)
        changed = {p for p in old.keys() & current.keys() if old[p] != current[p]}
        for path in sorted((old.keys() - current.keys()) | changed, reverse=True):
            items.append(raw.SourceNotice(t, "delete", path, old[path], flags, why))
        for path in sorted((current.keys() - old.keys()) | changed):
            items.append(raw.SourceNotice(t, "create", path, current[path], flags, why))
        for path in sorted(modified):
            if path in old and path not in changed:
                items.append(raw.SourceNotice(t, "modify", path, False, flags, why))
        counter = "rescans" if tops is None else "rescans_below"
        self.stats[counter] = self.stats.get(counter, 0) + 1
        # The synthesized records are observed like any other: applied to the shadow, they make it what the
        # walk found (and a consumer's tree, rebuilt from the records, too).
        out.extend(self._feed_all(items))
        return out

    @staticmethod
    def _mtime(entry: os.DirEntry[bytes]) -> float:
        try:
            return entry.stat(follow_symlinks=False).st_mtime
        except OSError:
            return 0.0  # gone meanwhile: its delete is queued
