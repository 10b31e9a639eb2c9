"""The embedding API: a blocking iterator, an asyncio iterator, and a callback runner for daemons.

All three pull from the kernel only when the consumer wants more, so a slow consumer leaves events in the
kernel queue (bounded by ``fs.inotify.max_queued_events``), not in our memory; if the queue overflows, the
consumer gets the ``overflow`` record. Each stops cleanly: rename halves still pending are flushed as one-sided
``shutdown`` records, and nothing read from the kernel is lost.

    with normalizer.watch(["/srv/data"]) as stream:
        for record in stream:          # normalizer.Record[str]: paths are str, as the root was given
            ...

    async with normalizer.awatch(["/srv/data"]) as stream:
        async for record in stream:
            ...

    runner = normalizer.run_in_thread(["/srv/data"], callback)
    ...
    runner.stop()

A root may be a directory tree, a single directory (``recursive=False``) or a file (followed by its path:
an atomic save is one ``rename`` onto it, flagged ``replaced``); with ``missing_ok=True`` a root that does not
exist yet is waited for. Roots change while running with ``stream.add(path)`` / ``stream.remove(path)``
(thread-safe; they return once the watch is in place or gone) and are listed by ``stream.roots``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from typing import Generic, Literal, TypedDict, TypeVar, Unpack, overload

from .backends.fanotify import (
    FANOTIFY_READ_BUFFER,
    FanotifySource,
    SourceMarkMode,
    mask_from_inotify,
    unavailable_reason,
)
from .backends.inotify import EVENT_BITS, InotifySource
from .backends.priority import DEFAULT_BOOST
from .backends.reader import DEFAULT_READ_BUFFER
from .backends.sched import DEFAULT_SLICE_US
from .core import raw
from .core.matcher import DEFAULT_MAX_PENDING, DEFAULT_MAX_WAIT_NS, DEFAULT_WINDOW_NS
from .errors import SourceError
from .record import Record, from_rec, from_rec_str
from .records import Rec

PathLike = str | bytes | os.PathLike[str] | os.PathLike[bytes]
#: Roots given as text: records carry ``str`` paths.
StrPath = str | os.PathLike[str]
#: Roots given as bytes: records carry ``bytes`` paths.
BytesPath = bytes | os.PathLike[bytes]
#: The record type a stream yields: :class:`~normalizer.Record` (``Record[str]`` or ``Record[bytes]``), or
#: the internal :class:`~normalizer.records.Rec` (``raw_records=True``).
R = TypeVar("R")
Backend = Literal["inotify", "fanotify", "auto"]
LiveSource = InotifySource | FanotifySource


class WatchOptions(TypedDict, total=False):
    """The keyword options of :func:`watch`, :func:`awatch`, :func:`run_in_thread` and :func:`make_source`.

    A misspelled option is a ``TypeError`` at the call (and a mypy error before it)."""

    #: ``"inotify"`` (default), ``"fanotify"``, or ``"auto"`` (fanotify where this kernel and process can run
    #: it: Linux 5.17+; else inotify).
    backend: Backend
    #: How long a lone rename half waits for its partner once the queue was seen empty (default 20 ms).
    window_ms: float
    #: How long a lone half waits at most, even while the queue never drains (default 1000 ms).
    max_wait_ms: float
    #: Rename halves kept waiting at most; beyond it the oldest becomes one-sided (``evicted``).
    max_pending: int
    #: False: emit each record as soon as it is final instead of behind an unresolved half (default True).
    strict_order: bool
    #: The record kinds to report (``{"create", "rename", ...}``; default: all but open/access/close_nowrite).
    #: The bits fsnorm needs to keep its tables right are watched regardless.
    events: Iterable[str] | None
    #: Shell globs: only report paths matching one (name or full path).
    include: Sequence[str | bytes]
    #: Shell globs: neither watch nor report paths matching one.
    exclude: Sequence[str | bytes]
    #: Recover from a queue overflow by walking the tree (default True; README "Overflow and rescan").
    rescan: bool
    #: Also write the raw events to this capture log.
    capture: str | os.PathLike[str] | None
    #: fanotify only: ``"auto"`` (filesystem mark as root, else inode marks), ``"filesystem"`` or ``"inode"``.
    mark_mode: SourceMarkMode
    #: fanotify only: join renames with FAN_RENAME (default True) rather than by the moved object's handle.
    use_rename: bool
    #: False: each directory root with its direct entries only -- a subdirectory's creation, deletion and
    #: renames are reported, its content is not (inotifywait without ``-r``). Default True. File roots are
    #: always just the file.
    recursive: bool
    #: True: a root that does not exist is not an error: its nearest existing ancestor is watched until it
    #: appears (created or moved into place); then it is reported and watched with its content, and if it
    #: disappears again, the same in reverse. Default False.
    missing_ok: bool
    #: Bytes of raw events a reader thread may hold while the consumer is busy (at least 64 KiB; default
    #: 16 MiB with inotify, 0 with fanotify); 0: no reader thread, the consumer reads the kernel fd itself
    #: (README "The reader thread").
    read_buffer: int
    #: A scheduler slice for fsnorm's reader thread, in microseconds (100-100,000; default 0: the kernel's):
    #: a short slice lets it be picked sooner when it wakes on a busy machine, without a larger share of the
    #: CPU (Linux 6.6+; README "Scheduler slice"). Your own threads are left alone
    #: (``normalizer.backends.sched.request_slice`` tunes one).
    sched_slice_us: int
    #: Raise the whole process and its session's scheduling group by this many nice levels while the stream
    #: is open, given back at close (threads started meanwhile keep it; streams in one process share one
    #: boost) (0-39; default 0: your process's priority is yours). A daemon whose job is
    #: the stream should ask for 4, as ``fsnorm watch`` does by default: on a busy machine the records then
    #: wait milliseconds instead of tens (README "Priority boost"; needs CAP_SYS_NICE or RLIMIT_NICE; what was
    #: not applied is in ``stream.source.priority.error``).
    priority_boost: int


def mask_for_events(events: Iterable[str]) -> int:
    """The inotify-style event mask for record kinds; :class:`SourceError` names an unknown kind."""
    if isinstance(events, str | bytes):
        raise SourceError(f"events must be a collection of kinds, e.g. {{'create', 'rename'}}, not {events!r}")
    mask = 0
    for kind in events:
        bits = EVENT_BITS.get(kind)
        if bits is None:
            raise SourceError(f"unknown event kind {kind!r} (known: {', '.join(EVENT_BITS)})")
        mask |= bits
    return mask


def make_source(
    paths: Sequence[PathLike],
    *,
    backend: Backend = "inotify",
    window_ms: float | None = None,
    max_wait_ms: float | None = None,
    max_pending: int = DEFAULT_MAX_PENDING,
    strict_order: bool = True,
    events: Iterable[str] | None = None,
    include: Sequence[str | bytes] = (),
    exclude: Sequence[str | bytes] = (),
    rescan: bool = True,
    capture: str | os.PathLike[str] | None = None,
    mark_mode: SourceMarkMode | None = None,
    use_rename: bool | None = None,
    recursive: bool = True,
    missing_ok: bool = False,
    read_buffer: int | None = None,
    sched_slice_us: int = DEFAULT_SLICE_US,
    priority_boost: int = DEFAULT_BOOST,
) -> LiveSource:
    """The live source for the options (see :class:`WatchOptions`). fanotify-only options with
    ``backend="inotify"`` are an error; with ``"auto"`` they apply when fanotify is chosen."""
    window_ns = DEFAULT_WINDOW_NS if window_ms is None else _ms_to_ns("window_ms", window_ms)
    max_wait_ns = DEFAULT_MAX_WAIT_NS if max_wait_ms is None else _ms_to_ns("max_wait_ms", max_wait_ms)
    mask = None if events is None else mask_for_events(events)
    if backend == "auto":
        backend = "fanotify" if unavailable_reason() is None else "inotify"
    elif backend == "inotify" and (mark_mode is not None or use_rename is not None):
        raise SourceError("mark_mode and use_rename are fanotify options: use backend='fanotify' or 'auto'")
    if backend == "fanotify":
        rename = True if use_rename is None else use_rename
        return FanotifySource(
            list(paths), mask=None if mask is None else mask_from_inotify(mask, use_rename=rename),
            mark_mode=mark_mode or "auto", use_rename=rename, window_ns=window_ns, max_wait_ns=max_wait_ns,
            max_pending=max_pending, strict_order=strict_order, include=include, exclude=exclude, rescan=rescan,
            capture=capture, recursive=recursive, missing_ok=missing_ok,
            read_buffer=FANOTIFY_READ_BUFFER if read_buffer is None else read_buffer, sched_slice_us=sched_slice_us,
            priority_boost=priority_boost)
    if backend == "inotify":
        return InotifySource(
            list(paths), mask=raw.DEFAULT_INOTIFY_MASK if mask is None else mask, window_ns=window_ns,
            max_wait_ns=max_wait_ns, max_pending=max_pending, strict_order=strict_order, include=include,
            exclude=exclude, rescan=rescan, capture=capture, recursive=recursive, missing_ok=missing_ok,
            read_buffer=DEFAULT_READ_BUFFER if read_buffer is None else read_buffer, sched_slice_us=sched_slice_us,
            priority_boost=priority_boost)
    raise SourceError(f"unknown backend {backend!r} (use 'inotify', 'fanotify' or 'auto')")


def _ms_to_ns(name: str, ms: float) -> int:
    if not ms >= 0:  # also refuses NaN
        raise SourceError(f"{name} must be >= 0 (milliseconds), not {ms!r}")
    return int(ms * 1_000_000)


def _paths(paths: PathLike | Sequence[PathLike]) -> Sequence[PathLike]:
    return [paths] if isinstance(paths, str | bytes | os.PathLike) else paths


def _bytes_roots(paths: Sequence[PathLike]) -> bool:
    """True when the roots are bytes. As the standard library does it: ``bytes`` roots give ``bytes`` paths,
    ``str``/``PathLike[str]`` roots give ``str`` (``os.fsdecode``); a mix is an error."""
    types = {type(os.fspath(p)) for p in paths}
    if types == {bytes}:
        return True
    if types <= {str}:
        return False
    raise SourceError("give the roots all as str (or PathLike[str]) or all as bytes: records carry the same type")


class Stream(Generic[R]):
    """A running watch: iterate it for records. Thread-safe :meth:`stop`; use as a context manager.

    ``convert`` turns each final core record into what the stream yields (:func:`~normalizer.record.from_rec`
    or :func:`~normalizer.record.from_rec_str` for :class:`~normalizer.Record`; the identity for
    ``raw_records=True``)."""

    def __init__(self, source: LiveSource, convert: Callable[[Rec], R], *, str_paths: bool = False) -> None:
        self.source = source
        #: The roots were given as str: :attr:`roots` gives them back as str (``os.fsdecode``), like the records.
        self._str_paths = str_paths
        self._convert: Callable[[Rec], R] = convert
        self._ready: deque[Rec] = deque()
        self._stop = threading.Event()
        self._opened = False
        self._finished = False

    def __enter__(self) -> Stream[R]:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        if not self._opened:
            self._ready.extend(self.source.open())
            self._opened = True

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` (or :meth:`close`) was called."""
        return self._stop.is_set()

    # -- roots that change while running -----------------------------------------------------------------

    @property
    def roots(self) -> list[str] | list[bytes]:
        """The roots watched now (absolute paths, as given or added), in the order they came: ``str`` when the
        stream's roots were given as ``str`` (as its records' paths are), else ``bytes``."""
        roots = self.source.watched_roots
        return [os.fsdecode(r) for r in roots] if self._str_paths else roots

    def add(self, path: PathLike, *, recursive: bool = True, scan: bool = False, missing_ok: bool = False) -> None:
        """Watch ``path`` too: a directory tree, a single directory (``recursive=False``) or a file. Thread-safe;
        returns once the watch is in place, so nothing that happens there afterwards is missed. ``scan``: report
        what it holds now as ``synthesized`` creates. ``missing_ok``: if it does not exist, wait for it (see
        :class:`WatchOptions`). A path inside a root already watched, or watched twice, never gives a record
        twice. Raises :class:`SourceError` if it cannot be watched."""
        self.source.add_root(path, recursive=recursive, scan=scan, missing_ok=missing_ok)

    def remove(self, path: PathLike) -> None:
        """Stop watching the root ``path``. Thread-safe; the stream then gives a ``watch_end`` record for it and
        no record under it after that (even for events the kernel had queued already), except what another
        root covers: removing a root inside another keeps the outer one whole."""
        self.source.remove_root(path)

    def stop(self) -> None:
        """Ask the stream to end: the iterator yields what is pending, then stops. Safe from any thread and
        from signal handlers."""
        self._stop.set()
        self.source.wake()

    def close(self) -> list[R]:
        """Stop and release the fd. Returns records not yet consumed (pending halves flushed as one-sided)."""
        self._stop.set()
        rest = list(self._ready)
        self._ready.clear()
        rest.extend(self.source.close())
        self._finished = True
        return [self._convert(r) for r in rest]

    def read(self, timeout: float | None = None) -> list[R]:
        """The records available within ``timeout`` seconds (possibly none), for callers with their own loop."""
        self.open()
        if self._ready:
            out = list(self._ready)
            self._ready.clear()
        else:
            out = self.source.read(timeout)
        return [self._convert(r) for r in out]

    def __iter__(self) -> Iterator[R]:
        self.open()
        ready = self._ready
        convert, popleft = self._convert, ready.popleft
        while True:
            while ready:
                yield convert(popleft())
            if self._stop.is_set() or self._finished:
                break
            ready.extend(self.source.read(None))
        for rec in self.source.close():
            yield convert(rec)
        self._finished = True


def _identity(rec: Rec) -> Rec:
    return rec


@overload
def watch(paths: StrPath | Sequence[StrPath], *, raw_records: Literal[False] = False,
          **options: Unpack[WatchOptions]) -> Stream[Record[str]]: ...
@overload
def watch(paths: BytesPath | Sequence[BytesPath], *, raw_records: Literal[False] = False,
          **options: Unpack[WatchOptions]) -> Stream[Record[bytes]]: ...
@overload
def watch(paths: PathLike | Sequence[PathLike], *, raw_records: Literal[True],
          **options: Unpack[WatchOptions]) -> Stream[Rec]: ...
def watch(paths: PathLike | Sequence[PathLike], *, raw_records: bool = False,
          **options: Unpack[WatchOptions]) -> Stream[Record[str]] | Stream[Record[bytes]] | Stream[Rec]:
    """Watch directory trees (options: :class:`WatchOptions`), yielding :class:`~normalizer.Record` with
    ``str`` paths when the roots are ``str``/``PathLike[str]`` and ``bytes`` paths when they are ``bytes``.

    ``raw_records=True`` is internal (fsnorm's own tools and tests): it yields the core's mutable
    :class:`~normalizer.records.Rec`, which is not a stable API."""
    roots = _paths(paths)
    as_bytes = _bytes_roots(roots)
    source = make_source(roots, **options)
    if raw_records:
        return Stream(source, _identity)
    return Stream(source, from_rec) if as_bytes else Stream(source, from_rec_str, str_paths=True)


class AsyncStream(Generic[R]):
    """The asyncio form of :class:`Stream`: the source's ready fds (the kernel fd, and the reader thread's
    buffer) are registered with the event loop (``add_reader``), so no thread of its own is used; deadlines of
    one-sided moves are honoured with loop timers."""

    def __init__(self, stream: Stream[R]) -> None:
        self._stream: Stream[R] = stream
        self._wakeup: asyncio.Event | None = None
        #: The fd registered with the loop while an iteration runs (removed before the fd is closed).
        self._reader: tuple[asyncio.AbstractEventLoop, tuple[int, ...]] | None = None

    async def __aenter__(self) -> AsyncStream[R]:
        self._stream.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Close off the loop: the close reads what the kernel has queued (up to
        ``LiveSource.CLOSE_DRAIN_SECONDS``) and flushes pending halves, which must not stall other tasks."""
        await self.aclose()

    async def aclose(self) -> list[R]:
        """Stop and release the fd without blocking the event loop (the close runs in the default executor).
        Returns the records not yet consumed, like :meth:`Stream.close`."""
        self._remove_reader()
        return await asyncio.get_running_loop().run_in_executor(None, self._stream.close)

    def _remove_reader(self) -> None:
        if self._reader is not None:
            loop, fds = self._reader
            self._reader = None
            for fd in fds:
                loop.remove_reader(fd)

    def stop(self) -> None:
        self._stream.stop()
        if self._wakeup is not None:
            self._wakeup.set()

    @property
    def roots(self) -> list[str] | list[bytes]:
        """The roots watched now (:attr:`Stream.roots`)."""
        return self._stream.roots

    async def add(self, path: PathLike, *, recursive: bool = True, scan: bool = False,
                  missing_ok: bool = False) -> None:
        """:meth:`Stream.add` without blocking the event loop (a scan may take a while)."""
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: self._stream.add(path, recursive=recursive, scan=scan, missing_ok=missing_ok))
        if self._wakeup is not None:
            self._wakeup.set()

    async def remove(self, path: PathLike) -> None:
        """:meth:`Stream.remove` without blocking the event loop."""
        await asyncio.get_running_loop().run_in_executor(None, self._stream.remove, path)
        if self._wakeup is not None:
            self._wakeup.set()

    async def __aiter__(self) -> AsyncIterator[R]:
        stream = self._stream
        source = stream.source
        stream.open()
        loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        wakeup = self._wakeup
        ready = source.ready_fds()  # the kernel fd, and the reader thread's buffer
        for fd in ready:
            loop.add_reader(fd, wakeup.set)
        self._reader = (loop, ready)
        try:
            while True:
                for rec in stream.read(0):
                    yield rec
                if stream.stopping:
                    break
                deadline = source.wake_at
                timeout = None if deadline is None else max(0.0, (deadline - time.monotonic_ns()) / 1e9)
                wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wakeup.wait(), timeout)
        finally:
            self._remove_reader()
        for rec in await loop.run_in_executor(None, stream.close):
            yield rec


@overload
def awatch(paths: StrPath | Sequence[StrPath], *, raw_records: Literal[False] = False,
           **options: Unpack[WatchOptions]) -> AsyncStream[Record[str]]: ...
@overload
def awatch(paths: BytesPath | Sequence[BytesPath], *, raw_records: Literal[False] = False,
           **options: Unpack[WatchOptions]) -> AsyncStream[Record[bytes]]: ...
@overload
def awatch(paths: PathLike | Sequence[PathLike], *, raw_records: Literal[True],
           **options: Unpack[WatchOptions]) -> AsyncStream[Rec]: ...
def awatch(paths: PathLike | Sequence[PathLike], *, raw_records: bool = False, **options: Unpack[WatchOptions]
           ) -> AsyncStream[Record[str]] | AsyncStream[Record[bytes]] | AsyncStream[Rec]:
    """Like :func:`watch`, for ``async with`` / ``async for``."""
    return AsyncStream(watch(paths, raw_records=raw_records, **options))  # type: ignore[call-overload]


class Runner(Generic[R]):
    """Runs a stream in a daemon thread and calls ``callback(record)`` for each record, in order."""

    def __init__(self, stream: Stream[R], callback: Callable[[R], object],
                 on_error: Callable[[BaseException], object] | None = None) -> None:
        self.stream: Stream[R] = stream
        self.callback: Callable[[R], object] = callback
        self.on_error = on_error
        self.error: BaseException | None = None
        stream.open()  # errors about the roots surface here, in the caller's thread
        self._thread = threading.Thread(target=self._run, name="fsnorm-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for rec in self.stream:
                self.callback(rec)
        except BaseException as exc:  # reported, not swallowed: the daemon decides what to do
            self.error = exc
            self.stream.close()
            if self.on_error is not None:
                self.on_error(exc)

    def stop(self, timeout: float | None = None) -> None:
        """Stop, deliver the last records to the callback, and wait for the thread."""
        self.stream.stop()
        self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    @property
    def roots(self) -> list[str] | list[bytes]:
        """The roots watched now (:attr:`Stream.roots`)."""
        return self.stream.roots

    def add(self, path: PathLike, *, recursive: bool = True, scan: bool = False, missing_ok: bool = False) -> None:
        """:meth:`Stream.add`: returns once the watch is in place; its records go to the callback."""
        self.stream.add(path, recursive=recursive, scan=scan, missing_ok=missing_ok)

    def remove(self, path: PathLike) -> None:
        """:meth:`Stream.remove`: returns once the watch is gone; the callback gets the ``watch_end``."""
        self.stream.remove(path)


@overload
def run_in_thread(paths: StrPath | Sequence[StrPath], callback: Callable[[Record[str]], object], *,
                  on_error: Callable[[BaseException], object] | None = None, raw_records: Literal[False] = False,
                  **options: Unpack[WatchOptions]) -> Runner[Record[str]]: ...
@overload
def run_in_thread(paths: BytesPath | Sequence[BytesPath], callback: Callable[[Record[bytes]], object], *,
                  on_error: Callable[[BaseException], object] | None = None, raw_records: Literal[False] = False,
                  **options: Unpack[WatchOptions]) -> Runner[Record[bytes]]: ...
@overload
def run_in_thread(paths: PathLike | Sequence[PathLike], callback: Callable[[Rec], object], *,
                  on_error: Callable[[BaseException], object] | None = None, raw_records: Literal[True],
                  **options: Unpack[WatchOptions]) -> Runner[Rec]: ...
def run_in_thread(paths: PathLike | Sequence[PathLike],
                  callback: Callable[[Record[str]], object] | Callable[[Record[bytes]], object]
                  | Callable[[Rec], object], *,
                  on_error: Callable[[BaseException], object] | None = None, raw_records: bool = False,
                  **options: Unpack[WatchOptions]) -> Runner[Record[str]] | Runner[Record[bytes]] | Runner[Rec]:
    """Watch in a background thread, calling ``callback`` per record, in order. Returns a :class:`Runner`."""
    stream = watch(paths, raw_records=raw_records, **options)  # type: ignore[call-overload]
    return Runner(stream, callback, on_error)
