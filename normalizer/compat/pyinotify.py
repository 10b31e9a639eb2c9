"""A drop-in for daemons written against pyinotify, backed by fsnorm's inotify source and matcher.

    from normalizer.compat import pyinotify      # was: import pyinotify

``WatchManager``, ``Notifier``, ``ThreadedNotifier``, ``ProcessEvent`` (with ``process_IN_*``, the
``process_IN_<FAMILY>`` fallback, ``process_default``, ``my_init`` and ``pevent`` chaining), ``Event``, the mask
constants and ``EventsCodes`` behave as pyinotify's; pyinotify itself is not needed. What fsnorm changes:

* every joined rename gives ``IN_MOVED_FROM`` then ``IN_MOVED_TO``, and the ``IN_MOVED_TO`` carries
  ``src_pathname`` (pyinotify sets it only when its own cookie table happened to hold the first half), the
  ``IN_MOVED_FROM`` carries ``dst_pathname``;
* a move across the tree's edge is explicit: the lone half has ``one_sided = True`` and ``flags`` says why
  (``unwatched``, ``timeout``, ``overflow``, ...: fsnorm's record flags); joined halves have ``one_sided =
  False``. pyinotify gives a lone ``IN_MOVED_FROM`` and later an ``IN_MOVE_SELF`` with a ``-unknown-path`` path;
  fsnorm stops watching a directory that left instead;
* an ``IN_Q_OVERFLOW`` event reaches ``process_IN_Q_OVERFLOW`` as in pyinotify, and with
  ``rescan_on_overflow`` (default) it is followed by what a walk of the tree found different, as ``IN_CREATE``,
  ``IN_DELETE`` and ``IN_MODIFY`` events with ``synthesized = True``;
* what the scan of a new directory finds is reported as ``IN_CREATE`` with ``synthesized = True`` (pyinotify
  synthesizes these too, with ``auto_add``).

One fsnorm source (one inotify fd) per ``add_watch`` path; ``rec=True`` or ``auto_add=True`` makes it recursive,
and then new directories are always watched (pyinotify follows them only with ``auto_add``). Not provided:
``AsyncNotifier``, ``TornadoAsyncNotifier``, ``AsyncioNotifier``, ``WatchManager.get_fd``, ``update_watch``,
``watch_transient_file``, ``daemonize``, ``read_freq``/``threshold`` (accepted, ignored). docs/watchdog-compat.md.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import select
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import IO, ClassVar

from ..backends.inotify import InotifySource
from ..core import raw
from ..errors import FsnormError
from ..records import Flag, Rec

log = logging.getLogger(__name__)

# -- constants (the same values as pyinotify's, which are the kernel's) ---------------------------------------

IN_ACCESS = raw.IN_ACCESS
IN_MODIFY = raw.IN_MODIFY
IN_ATTRIB = raw.IN_ATTRIB
IN_CLOSE_WRITE = raw.IN_CLOSE_WRITE
IN_CLOSE_NOWRITE = raw.IN_CLOSE_NOWRITE
IN_OPEN = raw.IN_OPEN
IN_MOVED_FROM = raw.IN_MOVED_FROM
IN_MOVED_TO = raw.IN_MOVED_TO
IN_CREATE = raw.IN_CREATE
IN_DELETE = raw.IN_DELETE
IN_DELETE_SELF = raw.IN_DELETE_SELF
IN_MOVE_SELF = raw.IN_MOVE_SELF
IN_UNMOUNT = raw.IN_UNMOUNT
IN_Q_OVERFLOW = raw.IN_Q_OVERFLOW
IN_IGNORED = raw.IN_IGNORED
IN_ONLYDIR = raw.IN_ONLYDIR
IN_DONT_FOLLOW = raw.IN_DONT_FOLLOW
IN_EXCL_UNLINK = raw.IN_EXCL_UNLINK
IN_MASK_ADD = raw.IN_MASK_ADD
IN_ISDIR = raw.IN_ISDIR
IN_ONESHOT = raw.IN_ONESHOT
IN_CLOSE = raw.IN_CLOSE
IN_MOVE = raw.IN_MOVE
ALL_EVENTS = raw.IN_ALL_EVENTS


class EventsCodes:
    """pyinotify's table of flag names and values."""

    FLAG_COLLECTIONS: ClassVar[dict[str, dict[str, int]]] = {
        "OP_FLAGS": {
            "IN_ACCESS": IN_ACCESS, "IN_MODIFY": IN_MODIFY, "IN_ATTRIB": IN_ATTRIB,
            "IN_CLOSE_WRITE": IN_CLOSE_WRITE, "IN_CLOSE_NOWRITE": IN_CLOSE_NOWRITE, "IN_OPEN": IN_OPEN,
            "IN_MOVED_FROM": IN_MOVED_FROM, "IN_MOVED_TO": IN_MOVED_TO, "IN_CREATE": IN_CREATE,
            "IN_DELETE": IN_DELETE, "IN_DELETE_SELF": IN_DELETE_SELF, "IN_MOVE_SELF": IN_MOVE_SELF,
        },
        "EVENT_FLAGS": {"IN_UNMOUNT": IN_UNMOUNT, "IN_Q_OVERFLOW": IN_Q_OVERFLOW, "IN_IGNORED": IN_IGNORED},
        "SPECIAL_FLAGS": {
            "IN_ONLYDIR": IN_ONLYDIR, "IN_DONT_FOLLOW": IN_DONT_FOLLOW, "IN_EXCL_UNLINK": IN_EXCL_UNLINK,
            "IN_MASK_ADD": IN_MASK_ADD, "IN_ISDIR": IN_ISDIR, "IN_ONESHOT": IN_ONESHOT,
        },
    }
    ALL_FLAGS: ClassVar[dict[str, int]] = {
        **{k: v for group in FLAG_COLLECTIONS.values() for k, v in group.items()}, "ALL_EVENTS": ALL_EVENTS}
    ALL_VALUES: ClassVar[dict[int, str]] = {v: k for k, v in ALL_FLAGS.items()}

    @staticmethod
    def maskname(mask: int) -> str:
        """``"IN_CREATE|IN_ISDIR"`` style name of an event mask (one event bit, as the kernel sends)."""
        if mask & IN_ISDIR:
            return f"{EventsCodes.ALL_VALUES[mask & ~IN_ISDIR]}|IN_ISDIR"
        return EventsCodes.ALL_VALUES[mask]


# -- errors ------------------------------------------------------------------------------------------------


class PyinotifyError(FsnormError):
    """Base of this module's errors (pyinotify's name)."""


class WatchManagerError(PyinotifyError):
    """``add_watch`` / ``rm_watch`` failed with ``quiet=False``; ``wmd`` holds what was done before."""

    def __init__(self, msg: str, wmd: dict[str, int] | dict[int, bool]) -> None:
        super().__init__(msg)
        self.wmd = wmd


class NotifierError(PyinotifyError):
    """A notifier was used in a way it does not support (e.g. ``daemonize``)."""


class ProcessEventError(PyinotifyError):
    """An event whose mask names no single known event."""


# -- events and handlers -----------------------------------------------------------------------------------


class Event:
    """One event, with pyinotify's attributes: ``wd``, ``mask``, ``maskname``, ``path`` (the directory of the
    watch that saw it), ``name`` (``""`` for an event about the watched directory itself), ``pathname``,
    ``dir``, ``cookie`` (moves); ``src_pathname`` on the ``IN_MOVED_TO`` of every joined rename.

    fsnorm's additions: ``one_sided`` (moves: the other half will never come), ``dst_pathname`` (the
    ``IN_MOVED_FROM`` of a joined rename), ``flags`` (fsnorm's record flags) and ``synthesized`` (made by a scan,
    not read from the kernel)."""

    src_pathname: str
    dst_pathname: str

    def __init__(self, *, wd: int, mask: int, path: str, name: str, dir: bool, cookie: int = 0,
                 flags: tuple[str, ...] = ()) -> None:
        self.wd = wd
        self.mask = mask
        self.maskname = EventsCodes.maskname(mask)
        self.path = path
        self.name = name
        self.pathname = os.path.join(path, name) if name else path
        self.dir = dir
        self.cookie = cookie
        self.flags = flags
        self.synthesized = Flag.SYNTHESIZED.value in flags
        self.one_sided = False

    def __repr__(self) -> str:
        fields = " ".join(f"{k}={hex(v) if k == 'mask' else repr(v)}" for k, v in sorted(vars(self).items()))
        return f"<Event {fields}>"


class _ProcessEvent:
    def __call__(self, event: Event) -> bool | None:
        """Dispatch: ``process_<MASKNAME>``, then ``process_IN_<FAMILY>``, then ``process_default``."""
        stripped = event.mask & ~IN_ISDIR
        maskname = EventsCodes.ALL_VALUES.get(stripped)
        if maskname is None:
            raise ProcessEventError(f"Unknown mask 0x{stripped:08x}")
        meth = getattr(self, "process_" + maskname, None)
        if meth is None:
            meth = getattr(self, "process_IN_" + maskname.split("_")[1], None)
        if meth is None:
            meth = self.process_default
        result: bool | None = meth(event)
        return result

    def process_default(self, event: Event) -> bool | None:
        return None


class ProcessEvent(_ProcessEvent):
    """Subclass and define ``process_IN_CREATE(self, event)`` etc. and/or ``process_default``; initialise in
    ``my_init(**kwargs)``; ``pevent`` is called first, and a true result stops the chain (pyinotify's rules)."""

    pevent: Callable[[Event], bool | None] | None = None

    def __init__(self, pevent: Callable[[Event], bool | None] | None = None, **kwargs: object) -> None:
        self.pevent = pevent
        self.my_init(**kwargs)

    def my_init(self, **kwargs: object) -> None:
        """Override to take the keyword arguments given to the constructor."""

    def __call__(self, event: Event) -> bool | None:
        if self.pevent is not None and self.pevent(event):
            return None
        return _ProcessEvent.__call__(self, event)

    def nested_pevent(self) -> Callable[[Event], bool | None] | None:
        return self.pevent

    def process_IN_Q_OVERFLOW(self, event: Event) -> bool | None:
        """By default, a warning (as pyinotify); override to act on it."""
        log.warning("Event queue overflowed.")
        return None


class PrintAllEvents(ProcessEvent):
    """Writes every event's representation to ``out`` (stdout): the default ``default_proc_fun``."""

    _out: IO[str]

    def my_init(self, **kwargs: object) -> None:
        out = kwargs.get("out")
        self._out = out if out is not None else sys.stdout  # type: ignore[assignment]

    def process_default(self, event: Event) -> bool | None:
        self._out.write(f"{event!r}\n")
        self._out.flush()
        return None


ProcFun = Callable[[Event], object]


# -- the watch manager ---------------------------------------------------------------------------------------


class Watch:
    """One ``add_watch`` path: its public wd, mask, handler and the fsnorm source that watches it."""

    def __init__(self, wd: int, path: str, mask: int, proc_fun: ProcFun | None, auto_add: bool,
                 exclude_filter: Callable[[str], bool], source: InotifySource) -> None:
        self.wd = wd
        self.path = path
        self.mask = mask
        self.proc_fun = proc_fun
        self.auto_add = auto_add
        self.exclude_filter = exclude_filter
        self.dir = True
        self.source = source
        #: Directories below the root the user stopped watching (rm_watch of a subdirectory's wd).
        self.removed: set[str] = set()
        #: Records the source gave when it opened (errors about directories it could not watch), not yet read.
        self.pending: list[Rec] = []

    def __repr__(self) -> str:
        return f"<Watch wd={self.wd} path={self.path!r} mask={self.mask:#x} auto_add={self.auto_add}>"


class WatchManager:
    """pyinotify's ``WatchManager``: ``add_watch``, ``rm_watch``, ``get_wd``, ``get_path``, ``watches``,
    ``close``. Every directory gets a public wd (the values ``add_watch`` returns and events carry)."""

    def __init__(self, exclude_filter: Callable[[str], bool] = lambda path: False, *,
                 window_ms: float = 20.0, rescan_on_overflow: bool = True) -> None:
        self._exclude_filter = exclude_filter
        self._window_ns = int(window_ms * 1_000_000)
        self._rescan = rescan_on_overflow
        self._lock = threading.RLock()
        self._roots: dict[int, Watch] = {}
        self._closing: list[Watch] = []
        self._wd_by_path: dict[str, int] = {}
        self._path_by_wd: dict[int, str] = {}
        self._next_wd = 1
        self.ignore_events = False
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    # -- wds -----------------------------------------------------------------------------------------------

    def _wd(self, path: str) -> int:
        """The public wd of a directory path (allocated on first use, kept across renames of nothing)."""
        with self._lock:
            wd = self._wd_by_path.get(path)
            if wd is None:
                wd = self._wd_by_path[path] = self._next_wd
                self._path_by_wd[wd] = path
                self._next_wd += 1
            return wd

    def get_wd(self, path: str) -> int | None:
        return self._wd_by_path.get(os.path.normpath(os.path.abspath(path)))

    def get_path(self, wd: int) -> str | None:
        return self._path_by_wd.get(wd)

    def get_watch(self, wd: int) -> Watch | None:
        """The ``add_watch`` entry a wd belongs to (its root, for a subdirectory's wd)."""
        path = self._path_by_wd.get(wd)
        return None if path is None else self._root_of(path)

    @property
    def watches(self) -> dict[int, Watch]:
        """The ``add_watch`` roots by wd."""
        return dict(self._roots)

    def _root_of(self, path: str) -> Watch | None:
        best: Watch | None = None
        for watch in self._roots.values():
            if (path == watch.path or path.startswith(watch.path.rstrip("/") + "/")) and (
                    best is None or len(watch.path) > len(best.path)):
                best = watch
        return best

    # -- adding and removing -------------------------------------------------------------------------------

    def add_watch(self, path: str | list[str], mask: int, proc_fun: ProcFun | None = None, rec: bool = False,
                  auto_add: bool = False, do_glob: bool = False, quiet: bool = True,
                  exclude_filter: Callable[[str], bool] | None = None) -> dict[str, int]:
        """Watch ``path`` (or each of a list; shell patterns with ``do_glob``). Returns ``{path: wd}`` for every
        directory now watched; a negative wd for one that could not be (``quiet=False``: WatchManagerError)."""
        out: dict[str, int] = {}
        flt = exclude_filter or self._exclude_filter
        for given in [path] if isinstance(path, str) else path:
            for one in (glob.glob(given) if do_glob else [given]):
                self._add_one(os.path.normpath(os.path.abspath(one)), mask, proc_fun, rec or auto_add,
                              auto_add, flt, quiet, out)
        self._wake()
        return out

    def _add_one(self, root: str, mask: int, proc_fun: ProcFun | None, recursive: bool, auto_add: bool,
                 flt: Callable[[str], bool], quiet: bool, out: dict[str, int]) -> None:
        if flt(root):
            out[root] = -2
            return
        with self._lock:
            if root in self._wd_by_path and self._wd_by_path[root] in self._roots:
                return  # already watched: pyinotify leaves it out of the result
        # read_buffer=0: the Notifier reads, as in pyinotify (events wait in the kernel queue until it does).
        source = InotifySource([root], mask=(mask & ALL_EVENTS) | raw.DEFAULT_INOTIFY_MASK,
                               window_ns=self._window_ns, recursive=recursive, rescan=self._rescan,
                               read_buffer=0)
        try:
            first = source.open()
        except (FsnormError, OSError) as exc:
            out[root] = -1
            if not quiet:
                raise WatchManagerError(f"add_watch: cannot watch {root}: {exc}", out) from exc
            log.error("add_watch: cannot watch %s: %s", root, exc)
            return
        with self._lock:
            watch = Watch(self._wd(root), root, mask, proc_fun, auto_add, flt, source)
            self._roots[watch.wd] = watch
            for _, dir_path in source.normalizer.table.items():
                shown = os.fsdecode(dir_path)
                out[shown] = self._wd(shown)
            watch.pending = first

    def rm_watch(self, wd: int | list[int], rec: bool = False, quiet: bool = True) -> dict[int, bool]:
        """Stop watching. A root's wd closes its fsnorm source (with the notifier's next read); a
        subdirectory's wd stops events from that directory (and, with ``rec``, everything below it)."""
        out: dict[int, bool] = {}
        for one in [wd] if isinstance(wd, int) else wd:
            with self._lock:
                path = self._path_by_wd.get(one)
                root = None if path is None else self._root_of(path)
                if path is None or root is None:
                    out[one] = False
                    if not quiet:
                        raise WatchManagerError(f"rm_watch: cannot remove WD={one}: unknown", out)
                    log.error("rm_watch: cannot remove WD=%d: unknown", one)
                    continue
                if path == root.path:
                    del self._roots[root.wd]
                    self._closing.append(root)
                else:
                    root.removed.add(path + ("/" if rec else ""))
                out[one] = True
        self._wake()
        return out

    def close(self) -> None:
        """Stop every watch and release the fds (what was pending is dropped: call the notifier's ``stop``
        first to have it delivered)."""
        with self._lock:
            watches = list(self._roots.values()) + self._closing
            self._roots.clear()
            self._closing.clear()
        for watch in watches:
            watch.source.close()
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = -1

    def _wake(self) -> None:
        if self._wake_w >= 0:
            with contextlib.suppress(BlockingIOError, OSError):
                os.write(self._wake_w, b"\0")

    def _drain_wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            while os.read(self._wake_r, 4096):
                pass

    # -- records -> events ---------------------------------------------------------------------------------

    def _events(self, watch: Watch, recs: Iterable[Rec]) -> list[tuple[Watch, Event]]:
        out: list[tuple[Watch, Event]] = []
        for rec in recs:
            for event in self._translate(rec):
                if self._wanted(watch, event):
                    out.append((watch, event))
        return out

    def _wanted(self, watch: Watch, event: Event) -> bool:
        bit = event.mask & ~IN_ISDIR
        if bit not in (IN_Q_OVERFLOW, IN_IGNORED) and not bit & watch.mask:
            return False
        if event.path and event.path != watch.path and watch.exclude_filter(event.path):
            return False  # pyinotify would not watch this directory
        return not any(event.path == r or (r.endswith("/") and event.path.startswith(r)) or event.path + "/" == r
                       for r in watch.removed)

    def _translate(self, rec: Rec) -> list[Event]:
        kind = rec.kind
        isdir = IN_ISDIR if rec.is_dir else 0
        if kind == "rename":
            return self._rename(rec, isdir)
        if kind == "overflow":
            return [Event(wd=-1, mask=IN_Q_OVERFLOW, path="", name="", dir=False, flags=rec.flags)]
        if kind in ("error", "unknown"):
            log.warning("fsnorm: %s: %s", os.fsdecode(rec.path), rec.message)
            return []
        self_kinds = {"delete_self": IN_DELETE_SELF, "move_self": IN_MOVE_SELF, "watch_end": IN_IGNORED,
                      "unmount": IN_UNMOUNT}
        path = os.fsdecode(rec.path)
        if kind in self_kinds:
            return [Event(wd=self._wd(path), mask=self_kinds[kind], path=path, name="", dir=True, flags=rec.flags)]
        bit = EventsCodes.ALL_FLAGS.get("IN_" + kind.upper())
        if bit is None:
            log.warning("fsnorm: record kind %s has no inotify event", kind)
            return []
        head, name = os.path.split(path)
        return [Event(wd=self._wd(head), mask=bit | isdir, path=head, name=name, dir=bool(isdir),
                      flags=rec.flags)]

    def _rename(self, rec: Rec, isdir: int) -> list[Event]:
        out: list[Event] = []
        src, dst = os.fsdecode(rec.path), os.fsdecode(rec.dst)
        one_sided = not (src and dst)
        cookie = rec.cookie or 0
        if src:
            head, name = os.path.split(src)
            first = Event(wd=self._wd(head), mask=IN_MOVED_FROM | isdir, path=head, name=name, dir=bool(isdir),
                          cookie=cookie, flags=rec.flags)
            first.one_sided = one_sided
            if dst:
                first.dst_pathname = dst
            out.append(first)
        if dst:
            head, name = os.path.split(dst)
            second = Event(wd=self._wd(head), mask=IN_MOVED_TO | isdir, path=head, name=name, dir=bool(isdir),
                           cookie=cookie, flags=rec.flags)
            second.one_sided = one_sided
            if src:
                second.src_pathname = src
            out.append(second)
        return out


# -- notifiers -----------------------------------------------------------------------------------------------


class Notifier:
    """pyinotify's ``Notifier``: ``check_events`` (poll), ``read_events`` (read into the queue),
    ``process_events`` (call the handlers), ``loop``, ``stop``. ``timeout`` is in milliseconds, as in pyinotify."""

    def __init__(self, watch_manager: WatchManager, default_proc_fun: ProcFun | None = None, read_freq: int = 0,
                 threshold: int = 0, timeout: int | None = None) -> None:
        self._watch_manager = watch_manager
        self._default_proc_fun: ProcFun = default_proc_fun if default_proc_fun is not None else PrintAllEvents()
        self._timeout = timeout
        self._eventq: deque[tuple[Watch, Event]] = deque()
        self._coalesce = False
        self._stopped = False

    def proc_fun(self) -> ProcFun:
        return self._default_proc_fun

    def coalesce_events(self, coalesce: bool = True) -> None:
        """Drop events identical (wd, mask, cookie, name) to one already queued in the same batch."""
        self._coalesce = coalesce

    def check_events(self, timeout: int | None = None) -> bool:
        """Wait up to ``timeout`` ms (None: the notifier's, None: forever) until events can be read, or a lone
        rename half's window ends; True if :meth:`read_events` has something to do."""
        wm = self._watch_manager
        if timeout is None:
            timeout = self._timeout
        poller = select.poll()
        poller.register(wm._wake_r, select.POLLIN)
        with wm._lock:
            watches = list(wm._roots.values())
            if wm._closing or any(w.pending for w in watches):
                return True
        deadline: int | None = None
        for watch in watches:
            poller.register(watch.source.fileno(), select.POLLIN)
            d = watch.source.wake_at
            if d is not None and (deadline is None or d < deadline):
                deadline = d
        wait = -1 if timeout is None else timeout
        if deadline is not None:
            until = max(0, int((deadline - time.monotonic_ns()) / 1e6 + 0.999))
            wait = until if wait < 0 else min(wait, until)
        ready = poller.poll(wait)
        if any(fd == wm._wake_r for fd, _ in ready):
            wm._drain_wake()
        if any(fd != wm._wake_r for fd, _ in ready):
            return True
        return deadline is not None and time.monotonic_ns() >= deadline

    def read_events(self) -> None:
        """Read what each watch's source has (records that are final now) into the event queue."""
        wm = self._watch_manager
        with wm._lock:
            watches = list(wm._roots.values())
            closing, wm._closing = wm._closing, []
        batch: list[tuple[Watch, Event]] = []
        for watch in watches:
            first, watch.pending = watch.pending, []
            batch.extend(wm._events(watch, first))
            batch.extend(wm._events(watch, watch.source.read(0)))
        for watch in closing:
            batch.extend(wm._events(watch, watch.source.close()))
        if self._coalesce:
            seen: set[tuple[int, int, int, str]] = set()
            for item in batch:
                key = (item[1].wd, item[1].mask, item[1].cookie, item[1].name)
                if key not in seen:
                    seen.add(key)
                    self._eventq.append(item)
        else:
            self._eventq.extend(batch)

    def process_events(self) -> None:
        """Call each queued event's handler: the watch's ``proc_fun``, else the notifier's default."""
        while self._eventq:
            watch, event = self._eventq.popleft()
            if self._watch_manager.ignore_events:
                continue
            (watch.proc_fun or self._default_proc_fun)(event)

    def loop(self, callback: Callable[[Notifier], object] | None = None, daemonize: bool = False,
             **args: object) -> None:
        """Read and process until ``callback(self)`` returns True or KeyboardInterrupt; then :meth:`stop`."""
        if daemonize:
            raise NotifierError("daemonize is not supported by fsnorm's pyinotify drop-in: run the loop in a "
                                "service manager instead")
        while True:
            try:
                self.process_events()
                if callback is not None and callback(self) is True:
                    break
                if self.check_events():
                    self.read_events()
            except KeyboardInterrupt:
                break
        self.stop()

    def stop(self) -> None:
        """Close every watch of the manager; what the kernel still had (and pending halves, as one-sided moves)
        is delivered to the handlers first."""
        if self._stopped:
            return
        self._stopped = True
        wm = self._watch_manager
        with wm._lock:
            watches = list(wm._roots.values()) + wm._closing
            wm._roots.clear()
            wm._closing = []
        for watch in watches:
            self._eventq.extend(wm._events(watch, watch.pending))
            self._eventq.extend(wm._events(watch, watch.source.close()))
        self.process_events()
        wm.close()


class ThreadedNotifier(threading.Thread, Notifier):
    """A :class:`Notifier` in its own thread: ``start()``, then ``stop()`` (which joins it)."""

    def __init__(self, watch_manager: WatchManager, default_proc_fun: ProcFun | None = None, read_freq: int = 0,
                 threshold: int = 0, timeout: int | None = None) -> None:
        threading.Thread.__init__(self, name="fsnorm-pyinotify")
        Notifier.__init__(self, watch_manager, default_proc_fun, read_freq, threshold, timeout)
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()
        self._watch_manager._wake()
        if self.is_alive():
            threading.Thread.join(self)
        Notifier.stop(self)

    def loop(self, callback: Callable[[Notifier], object] | None = None, daemonize: bool = False,
             **args: object) -> None:
        while not self._stop_event.is_set():
            self.process_events()
            if self.check_events(timeout=1000 if self._timeout is None else self._timeout):
                self.read_events()
        self.process_events()

    def run(self) -> None:
        self.loop()
