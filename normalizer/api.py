"""The embedding API: a blocking iterator, an asyncio iterator, and a callback runner for daemons.

All three pull from the kernel only when the consumer wants more, so a slow consumer leaves events in the
kernel queue (bounded by ``fs.inotify.max_queued_events``), not in our memory; if the queue overflows, the
consumer gets the ``overflow`` record. Each stops cleanly: rename halves still pending are flushed as one-sided
``shutdown`` records, and nothing read from the kernel is lost.

    with normalizer.watch(["/srv/data"]) as stream:
        for record in stream:          # RenameRecord | EventRecord
            ...

    async with normalizer.awatch(["/srv/data"]) as stream:
        async for record in stream:
            ...

    runner = normalizer.run_in_thread(["/srv/data"], callback)
    ...
    runner.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any, Literal

from .backends.fanotify import FanotifySource, mask_from_inotify, unavailable_reason
from .backends.inotify import InotifySource
from .errors import SourceError
from .records import EventRecord, Rec, RenameRecord, to_model

PathLike = str | bytes | os.PathLike[str] | os.PathLike[bytes]
Record = RenameRecord | EventRecord
Backend = Literal["inotify", "fanotify", "auto"]
LiveSource = InotifySource | FanotifySource
#: Options only the fanotify source takes (dropped when ``auto`` falls back to inotify).
_FANOTIFY_ONLY = ("mark_mode", "use_rename")


def make_source(paths: Sequence[PathLike], backend: Backend = "inotify", **options: Any) -> LiveSource:
    """The live source for ``backend``: ``"inotify"``, ``"fanotify"``, or ``"auto"`` (fanotify where this
    kernel and process can run it: Linux 5.17+, else inotify). ``window_ms`` is accepted for ``window_ns``;
    ``mask`` is an inotify event mask for either backend. ``rescan`` (default True, both backends): recover
    from a queue overflow by walking the tree and reporting the differences (README, "Overflow and rescan")."""
    window_ms = options.pop("window_ms", None)
    if window_ms is not None:
        options["window_ns"] = int(window_ms * 1_000_000)
    if backend == "auto":
        backend = "fanotify" if unavailable_reason() is None else "inotify"
    if backend == "fanotify":
        if options.get("mask") is not None:
            options["mask"] = mask_from_inotify(options["mask"], use_rename=options.get("use_rename", True))
        return FanotifySource(list(paths), **options)
    if backend == "inotify":
        for key in _FANOTIFY_ONLY:
            options.pop(key, None)
        return InotifySource(list(paths), **options)
    raise SourceError(f"unknown backend {backend!r} (use 'inotify', 'fanotify' or 'auto')")


class Stream:
    """A running watch: iterate it for records. Thread-safe :meth:`stop`; use as a context manager."""

    def __init__(self, source: LiveSource, *, raw_records: bool = False) -> None:
        self.source = source
        self._raw = raw_records
        self._ready: deque[Rec] = deque()
        self._stop = threading.Event()
        self._opened = False
        self._finished = False

    def __enter__(self) -> Stream:
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

    def stop(self) -> None:
        """Ask the stream to end: the iterator yields what is pending, then stops. Safe from any thread and
        from signal handlers."""
        self._stop.set()
        self.source.wake()

    def close(self) -> list[Record]:
        """Stop and release the fd. Returns records not yet consumed (pending halves flushed as one-sided)."""
        self._stop.set()
        rest = list(self._ready)
        self._ready.clear()
        rest.extend(self.source.close())
        self._finished = True
        return [self._convert(r) for r in rest]

    def _convert(self, rec: Rec) -> Any:
        return rec if self._raw else to_model(rec)

    def read(self, timeout: float | None = None) -> list[Any]:
        """The records available within ``timeout`` seconds (possibly none), for callers with their own loop."""
        self.open()
        if self._ready:
            out = list(self._ready)
            self._ready.clear()
        else:
            out = self.source.read(timeout)
        return [self._convert(r) for r in out]

    def __iter__(self) -> Iterator[Any]:
        self.open()
        ready = self._ready
        while True:
            while ready:
                yield self._convert(ready.popleft())
            if self._stop.is_set() or self._finished:
                break
            ready.extend(self.source.read(None))
        for rec in self.source.close():
            yield self._convert(rec)
        self._finished = True


def watch(paths: PathLike | Sequence[PathLike], *, backend: Backend = "inotify", raw_records: bool = False,
          **options: Any) -> Stream:
    """Watch directory trees. ``options``: ``window_ms`` (one-sided move window), ``strict_order``,
    ``mask``, ``include``, ``exclude``, ``capture`` (path of a capture log to write), ``max_pending``,
    ``rescan`` (default True: after a queue overflow, walk the tree and report what changed as ``synthesized``
    records; False saves the shadow tree's memory, about 95 bytes per watched entry); with
    ``backend="fanotify"`` (or ``"auto"`` on Linux 5.17+) also ``mark_mode`` and ``use_rename``
    (docs/fanotify.md).

    Records are :class:`RenameRecord` / :class:`EventRecord`; ``raw_records=True`` yields the light internal
    :class:`~normalizer.records.Rec` instead (what the CLI uses: no pydantic cost per record)."""
    if isinstance(paths, str | bytes | os.PathLike):
        paths = [paths]
    return Stream(make_source(paths, backend, **options), raw_records=raw_records)


class AsyncStream:
    """The asyncio form of :class:`Stream`: the inotify fd is registered with the event loop (``add_reader``),
    so no thread is used; deadlines of one-sided moves are honoured with loop timers."""

    def __init__(self, stream: Stream) -> None:
        self._stream = stream
        self._wakeup: asyncio.Event | None = None
        #: The fd registered with the loop while an iteration runs (removed before the fd is closed).
        self._reader: tuple[asyncio.AbstractEventLoop, int] | None = None

    async def __aenter__(self) -> AsyncStream:
        self._stream.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Close off the loop: the close reads what the kernel has queued (up to
        ``LiveSource.CLOSE_DRAIN_SECONDS``) and flushes pending halves, which must not stall other tasks."""
        await self.aclose()

    async def aclose(self) -> list[Any]:
        """Stop and release the fd without blocking the event loop (the close runs in the default executor).
        Returns the records not yet consumed, like :meth:`Stream.close`."""
        self._remove_reader()
        return await asyncio.get_running_loop().run_in_executor(None, self._stream.close)

    def _remove_reader(self) -> None:
        if self._reader is not None:
            loop, fd = self._reader
            self._reader = None
            loop.remove_reader(fd)

    def stop(self) -> None:
        self._stream.stop()
        if self._wakeup is not None:
            self._wakeup.set()

    async def __aiter__(self) -> AsyncIterator[Any]:
        stream = self._stream
        source = stream.source
        stream.open()
        loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        wakeup = self._wakeup
        loop.add_reader(source.fileno(), wakeup.set)
        self._reader = (loop, source.fileno())
        try:
            while True:
                for rec in stream.read(0):
                    yield rec
                if stream.stopping:
                    break
                deadline = source.normalizer.matcher.next_deadline()
                timeout = None if deadline is None else max(0.0, (deadline - time.monotonic_ns()) / 1e9)
                wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wakeup.wait(), timeout)
        finally:
            self._remove_reader()
        for rec in await loop.run_in_executor(None, stream.close):
            yield rec


def awatch(paths: PathLike | Sequence[PathLike], **options: Any) -> AsyncStream:
    """Like :func:`watch`, for ``async with`` / ``async for``."""
    return AsyncStream(watch(paths, **options))


class Runner:
    """Runs a stream in a daemon thread and calls ``callback(record)`` for each record, in order."""

    def __init__(self, stream: Stream, callback: Callable[[Any], object],
                 on_error: Callable[[BaseException], object] | None = None) -> None:
        self.stream = stream
        self.callback = callback
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


def run_in_thread(paths: PathLike | Sequence[PathLike], callback: Callable[[Any], object], *,
                  on_error: Callable[[BaseException], object] | None = None, **options: Any) -> Runner:
    """Watch in a background thread, calling ``callback`` per record. Returns a :class:`Runner`."""
    return Runner(watch(paths, **options), callback, on_error)
