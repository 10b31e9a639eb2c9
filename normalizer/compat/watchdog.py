"""A drop-in for ``watchdog.observers.Observer`` on Linux, backed by fsnorm's inotify source and matcher.

    from normalizer.compat.watchdog import Observer      # was: from watchdog.observers import Observer

Handlers receive watchdog's own event classes, in the order watchdog's inotify emitter queues them (the
parent-directory ``DirModifiedEvent`` after a create, delete, move or ``FileClosedEvent``; ``DirMovedEvent``
followed by synthetic moves for a moved directory's content; and so on). What changes is what fsnorm fixes:

* a rename is delivered the moment its second half is read: no 500 ms hold of every ``IN_MOVED_FROM``; a move
  out of the tree is delivered once the kernel queue has been seen empty for fsnorm's window (20 ms);
* a move out of the tree is ``FileDeletedEvent`` / ``DirDeletedEvent``, or ``FileMovedEvent(src, "")`` with
  ``generate_full_events=True``; a move in is ``FileCreatedEvent`` / ``DirCreatedEvent``, or
  ``FileMovedEvent("", dst)``, exactly as watchdog delivers them;
* a directory that leaves the tree stops being watched at once (watchdog keeps its watches and reports later
  events under the old, phantom path), and a moved root ends its watch with a delete instead of stale paths;
* a kernel queue overflow is a :class:`QueueOverflowEvent` (a ``DirModifiedEvent`` of the watched root, so
  ``on_modified`` sees it), followed by what a rescan of the tree found different (synthetic created, deleted
  and modified events): watchdog only logs it. docs/watchdog-compat.md has the whole mapping.

The emitter is a real :class:`watchdog.observers.api.EventEmitter` and the observer a
:class:`watchdog.observers.api.BaseObserver`, so scheduling, handlers, event filters and file watches behave as
in watchdog; watchdog itself must be installed (``pip install 'fsnorm[watchdog]'``).
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Iterator
from typing import Any

from watchdog.events import (
    DirAttribEvent,
    DirCreatedEvent,
    DirDeletedEvent,
    DirModifiedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileClosedNoWriteEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileOpenedEvent,
    FileSystemEvent,
    generate_sub_moved_events,
)
from watchdog.observers.api import (
    DEFAULT_EMITTER_TIMEOUT,
    DEFAULT_OBSERVER_TIMEOUT,
    BaseObserver,
    EventEmitter,
    EventQueue,
    ObservedWatch,
)

from ..backends.inotify import InotifySource
from ..core import raw
from ..errors import SourceError
from ..records import Flag, Rec

__all__ = [
    "FsnormEmitter",
    "FsnormFullEmitter",
    "InotifyObserver",
    "Observer",
    "QueueOverflowEvent",
    "WatchdogTranslator",
]

logger = logging.getLogger(__name__)

#: What watchdog's inotify emitter asks the kernel for (its WATCHDOG_ALL_EVENTS, less IN_DONT_FOLLOW, which
#: fsnorm adds to every watch below a root itself).
WATCHDOG_MASK = (raw.IN_MODIFY | raw.IN_ATTRIB | raw.IN_MOVED_FROM | raw.IN_MOVED_TO | raw.IN_CREATE
                 | raw.IN_DELETE | raw.IN_DELETE_SELF | raw.IN_MOVE_SELF | raw.IN_CLOSE_WRITE
                 | raw.IN_CLOSE_NOWRITE | raw.IN_OPEN)


class QueueOverflowEvent(DirModifiedEvent):
    """The kernel queue overflowed: events under ``src_path`` (the watched root) were lost.

    A ``DirModifiedEvent`` (so ``on_modified`` and ``on_any_event`` receive it, and code that rescans on a
    directory modification does the right thing), marked synthetic; test ``isinstance(event,
    QueueOverflowEvent)`` to tell it apart. With ``rescan_on_overflow`` (the default) the events that follow it
    are what a walk of the tree found different from what was known: synthetic created, deleted and modified
    events, and directories that appeared meanwhile are watched."""


#: The message fsnorm's rescan after an overflow puts on what it synthesizes (backends/inotify.py).
_RESCAN_MESSAGE = "rescan after overflow"


def _dirname(path: bytes) -> bytes:
    return os.path.dirname(path)


class WatchdogTranslator:
    """fsnorm records -> watchdog events, for one watch: watchdog's inotify emitter's mapping and order.

    ``root`` is the directory fsnorm watches (absolute); ``shown_root`` how the user named it (watchdog builds
    every path from the path as given, relative or not); ``as_bytes`` if the user gave bytes."""

    def __init__(self, root: bytes, shown_root: bytes, *, as_bytes: bool, recursive: bool,
                 full_events: bool) -> None:
        self.root = root
        self.shown_root = shown_root
        self.as_bytes = as_bytes
        self.recursive = recursive
        self.full_events = full_events
        #: Directories that arrived by a move from outside: what a scan finds in them is reported like
        #: watchdog's generate_sub_created_events (synthetic, without a parent DirModifiedEvent).
        self._moved_in: list[bytes] = []
        #: Set when the watched root itself went away (deleted, moved, unmounted): the emitter stops.
        self.root_gone = False

    # -- paths ---------------------------------------------------------------------------------------------

    def _show(self, path: bytes) -> bytes | str:
        if self.shown_root != self.root and (path == self.root or path.startswith(self.root + b"/")):
            path = self.shown_root + path[len(self.root):]
        return path if self.as_bytes else os.fsdecode(path)

    # -- the mapping -----------------------------------------------------------------------------------------

    def translate(self, rec: Rec) -> list[FileSystemEvent]:
        """The watchdog events for one record, in the order watchdog queues them (may be none)."""
        kind = rec.kind
        if kind == "rename":
            return self._rename(rec)
        handler = getattr(self, f"_on_{kind}", None)
        if handler is None:
            return []
        out: list[FileSystemEvent] = handler(rec)
        return out

    def _parent(self, path: bytes) -> DirModifiedEvent:
        return DirModifiedEvent(self._show(_dirname(path)))

    def _rename(self, rec: Rec) -> list[FileSystemEvent]:
        src, dst, is_dir = rec.path, rec.dst, rec.is_dir
        moved: type[FileSystemEvent] = DirMovedEvent if is_dir else FileMovedEvent
        if src and dst:
            out: list[FileSystemEvent] = [moved(self._show(src), self._show(dst)), self._parent(src),
                                          self._parent(dst)]
            if is_dir and self.recursive:
                out.extend(self._sub_moved(src, dst))
            return out
        if dst:  # moved in from outside the watched tree
            if self.full_events:
                first = moved("", self._show(dst))
            else:
                first = (DirCreatedEvent if is_dir else FileCreatedEvent)(self._show(dst))
            if is_dir and self.recursive:
                self._moved_in.append(dst)
            return [first, self._parent(dst)]
        # moved out of the watched tree
        if self.full_events:
            gone = moved(self._show(src), "")
        else:
            gone = (DirDeletedEvent if is_dir else FileDeletedEvent)(self._show(src))
        if src == self.root:
            self.root_gone = True
            return [gone]
        return [gone, self._parent(src)]

    def _sub_moved(self, src: bytes, dst: bytes) -> Iterator[FileSystemEvent]:
        """watchdog's synthetic moves for the content of a moved directory (a walk of the destination)."""
        yield from generate_sub_moved_events(self._show(src), self._show(dst))

    def end_batch(self) -> None:
        """The records of one read are translated: the scans of directories moved in are complete."""
        self._moved_in.clear()

    def _is_moved_in_content(self, path: bytes) -> bool:
        return any(path.startswith(top + b"/") for top in self._moved_in)

    def _on_create(self, rec: Rec) -> list[FileSystemEvent]:
        cls = DirCreatedEvent if rec.is_dir else FileCreatedEvent
        if Flag.SYNTHESIZED.value in rec.flags:
            if rec.message == _RESCAN_MESSAGE:
                return [cls(self._show(rec.path), is_synthetic=True)]
            if self._is_moved_in_content(rec.path):
                return [cls(self._show(rec.path), is_synthetic=True)]
        return [cls(self._show(rec.path)), self._parent(rec.path)]

    def _on_delete(self, rec: Rec) -> list[FileSystemEvent]:
        cls = DirDeletedEvent if rec.is_dir else FileDeletedEvent
        synthetic = Flag.SYNTHESIZED.value in rec.flags
        event = cls(self._show(rec.path), is_synthetic=synthetic)
        return [event] if synthetic else [event, self._parent(rec.path)]

    def _on_modify(self, rec: Rec) -> list[FileSystemEvent]:
        cls = DirModifiedEvent if rec.is_dir else FileModifiedEvent
        return [cls(self._show(rec.path), is_synthetic=Flag.SYNTHESIZED.value in rec.flags)]

    def _on_attrib(self, rec: Rec) -> list[FileSystemEvent]:
        return [(DirAttribEvent if rec.is_dir else FileAttribEvent)(self._show(rec.path))]

    def _on_open(self, rec: Rec) -> list[FileSystemEvent]:
        return [] if rec.is_dir else [FileOpenedEvent(self._show(rec.path))]

    def _on_close_write(self, rec: Rec) -> list[FileSystemEvent]:
        return [] if rec.is_dir else [FileClosedEvent(self._show(rec.path)), self._parent(rec.path)]

    def _on_close_nowrite(self, rec: Rec) -> list[FileSystemEvent]:
        return [] if rec.is_dir else [FileClosedNoWriteEvent(self._show(rec.path))]

    def _on_delete_self(self, rec: Rec) -> list[FileSystemEvent]:
        if rec.path != self.root:
            return []  # a subdirectory: its parent's delete event says it
        self.root_gone = True
        return [DirDeletedEvent(self._show(rec.path))]

    def _on_unmount(self, rec: Rec) -> list[FileSystemEvent]:
        return self._on_delete_self(rec)

    def _on_move_self(self, rec: Rec) -> list[FileSystemEvent]:
        if rec.path != self.root:
            return []  # a subdirectory: its parent's rename record says it
        # The watched root moved to a place nobody knows: fsnorm ends its watch (watchdog would go on
        # reporting events under the old path). Delivered like a move out of the tree.
        self.root_gone = True
        shown = self._show(rec.path)
        return [DirMovedEvent(shown, "") if self.full_events else DirDeletedEvent(shown)]

    def _on_overflow(self, rec: Rec) -> list[FileSystemEvent]:
        self._moved_in.clear()
        logger.warning("inotify queue overflowed below %r: events were lost; a QueueOverflowEvent is delivered",
                       self.root)
        return [QueueOverflowEvent(self._show(self.root), is_synthetic=True)]

    def _on_error(self, rec: Rec) -> list[FileSystemEvent]:
        logger.warning("fsnorm: %s: %s", os.fsdecode(rec.path), rec.message)
        return []

    def _on_unknown(self, rec: Rec) -> list[FileSystemEvent]:
        logger.warning("fsnorm: unexpected inotify event %r: %s", rec, rec.message)
        return []


class FsnormEmitter(EventEmitter):
    """A watchdog emitter whose events come from an fsnorm :class:`~normalizer.backends.inotify.InotifySource`.

    The kernel watches are added in :meth:`on_thread_start` (so ``start()`` raises ``FileNotFoundError`` for a
    missing directory, as watchdog's does); the emitter thread reads, translates and queues; ``stop()`` wakes
    it, and the thread closes the source, queueing what the kernel still had (pending halves as moves out)."""

    full_events = False

    def __init__(self, event_queue: EventQueue, watch: ObservedWatch, *,
                 timeout: float = DEFAULT_EMITTER_TIMEOUT,
                 event_filter: list[type[FileSystemEvent]] | None = None,
                 window_ms: float = 20.0, rescan_on_overflow: bool = True,
                 full_events: bool | None = None) -> None:
        super().__init__(event_queue, watch, timeout=timeout, event_filter=event_filter)
        if full_events is not None:
            self.full_events = full_events
        self._window_ns = int(window_ms * 1_000_000)
        self._rescan = rescan_on_overflow
        self._source: InotifySource | None = None
        self._translator: WatchdogTranslator | None = None

    def on_thread_start(self) -> None:
        given = os.fsencode(self.watch.path)
        root = os.path.abspath(given)
        # read_buffer=0: this emitter thread is the reader, as in watchdog (events wait in the kernel queue).
        source = InotifySource([root], mask=WATCHDOG_MASK, window_ns=self._window_ns,
                               recursive=self.watch.is_recursive, rescan=self._rescan, read_buffer=0)
        try:
            first = source.open()
        except SourceError:
            _raise_os_error(root)
            raise
        shown = given.rstrip(b"/") or given
        self._translator = WatchdogTranslator(root, shown, as_bytes=isinstance(self.watch.path, bytes),
                                              recursive=self.watch.is_recursive, full_events=self.full_events)
        self._source = source
        self._deliver(first)

    def on_thread_stop(self) -> None:
        source = self._source  # read once: the emitter thread may be clearing it
        if source is not None:
            source.wake()

    def run(self) -> None:
        try:
            while self.should_keep_running():
                self.queue_events(self.timeout)
        finally:
            source, self._source = self._source, None
            if source is not None:
                self._deliver(source.close())

    def queue_events(self, timeout: float) -> None:
        source = self._source
        if source is None:
            return
        self._deliver(source.read(timeout))

    def _deliver(self, recs: list[Rec]) -> None:
        translator = self._translator
        if translator is None:
            return
        for rec in recs:
            for event in translator.translate(rec):
                self.queue_event(event)
            if translator.root_gone and not self.stopped_event.is_set():
                self.stop()
        translator.end_batch()


class FsnormFullEmitter(FsnormEmitter):
    """``generate_full_events=True``: a move across the tree's edge is a moved event with ``""`` as the
    missing side, as watchdog's InotifyFullEmitter delivers it."""

    full_events = True


def _raise_os_error(root: bytes) -> None:
    """Raise the OSError watchdog raises for a root that cannot be watched (FileNotFoundError, ...)."""
    os.stat(root)
    if not os.path.isdir(root):
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), os.fsdecode(root))


class Observer(BaseObserver):
    """watchdog's ``Observer`` API (``schedule``, ``unschedule``, ``unschedule_all``, ``start``, ``stop``,
    ``join``, ``is_alive``, handlers, ``event_filter``) with fsnorm underneath.

    ``generate_full_events``: as in watchdog's InotifyObserver. fsnorm's own options: ``window_ms`` (how long a
    lone ``IN_MOVED_FROM`` waits, once the queue was seen empty, before it is a move out of the tree) and
    ``rescan_on_overflow`` (after a :class:`QueueOverflowEvent`, walk the tree and deliver what changed)."""

    def __init__(self, *, timeout: float = DEFAULT_OBSERVER_TIMEOUT, generate_full_events: bool = False,
                 window_ms: float = 20.0, rescan_on_overflow: bool = True) -> None:
        emitter = FsnormFullEmitter if generate_full_events else FsnormEmitter
        options: dict[str, Any] = {"window_ms": window_ms, "rescan_on_overflow": rescan_on_overflow}
        super().__init__(emitter, timeout=timeout, **options)


#: watchdog exports the Linux observer under this name too.
InotifyObserver = Observer
