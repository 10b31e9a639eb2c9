"""The roots of a live source: what each given path is (file or directory), and adding or removing roots
while the source runs.

:class:`RootControl` is mixed into :class:`~normalizer.backends.base.LiveSource`. The record filter the roots
imply is sans-IO (:class:`normalizer.core.roots.RootSet`); what is here is the I/O: a ``stat`` to tell a file
from a directory, and the requests that change the roots.

Changing the roots must happen in the thread that reads the kernel fd, between two reads, so that the watch
table, the normalizer and the record filter change at one place in the stream. :meth:`RootControl.add_root`
and :meth:`RootControl.remove_root` are thread-safe and return once the change is done: if no read is running
(the caller is the reading thread itself, or nothing reads), the change is made at once under the loop lock;
otherwise it is queued, the read is woken, and the reader makes it before it reads again. Their records (a
``scan``'s synthesized creates, the ``watch_end`` of a removed root) come out of the next :meth:`read`.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
import time
from collections.abc import Callable, Sequence

from ..core import raw
from ..core.roots import RootKind, RootSet, parent_of
from ..core.shadow import ShadowTree
from ..errors import SourceError
from ..records import Flag, Rec

PathArg = str | bytes | os.PathLike[str] | os.PathLike[bytes]


def classify(path: bytes, recursive: bool) -> tuple[bytes, RootKind, bool]:
    """(path, kind, present) for a root: a directory is a ``tree`` (``dir`` if not ``recursive``), anything
    else that exists is a ``file``. A path that cannot be stat'ed is taken as a directory: opening the source
    then says why it cannot be watched."""
    try:
        st = os.stat(path)
    except OSError:
        return path, "tree" if recursive else "dir", False
    if stat.S_ISDIR(st.st_mode):
        return path, "tree" if recursive else "dir", True
    return path, "file", True


def nearest_dir(path: bytes) -> bytes:
    """The nearest existing directory above ``path`` (``/`` at worst)."""
    p = parent_of(path)
    while p != b"/" and not os.path.isdir(p):
        p = parent_of(p)
    return p


class _Request:
    __slots__ = ("done", "error", "run")

    def __init__(self, run: Callable[[], list[raw.AnyStreamItem]]) -> None:
        self.run = run
        self.done = threading.Event()
        self.error: BaseException | None = None


class RootControl:
    """Roots added and removed while running (module docstring). Backends implement :meth:`_watch_top` and
    :meth:`_forget_unneeded`."""

    scope: RootSet
    roots: list[bytes]
    #: True: a root that does not exist is watched through its nearest existing ancestor until it appears
    #: (set before ``__init__`` runs, like ``recursive``).
    missing_ok: bool = False
    #: How many times one look at a waiting root may move its guard before giving up until the next event.
    MAX_DESCENT = 256
    _shadow: ShadowTree | None
    recursive: bool
    _opened: bool
    closed: bool

    #: How often a caller waiting for its request checks whether the reader went away (seconds).
    REQUEST_POLL_SECONDS = 0.05

    def _init_roots(self, roots: Sequence[PathArg]) -> None:
        """Classify the roots and set ``scope`` and ``roots`` (the directories watched at the top)."""
        paths = list(dict.fromkeys(os.path.abspath(os.fsencode(r)) for r in roots))
        classified = [classify(p, self.recursive) for p in paths]
        self.scope = RootSet(c for c in classified if c[2] or not self.missing_ok)
        for path, kind, present in classified:
            if not present and self.missing_ok:
                self.scope.add_waiting(path, kind, nearest_dir(path))
                self.scope.wakeups.add(path)  # looked at again at the first read: it may be there by then
        self.roots = self.scope.top_dirs()
        self._loop_lock = threading.Lock()
        self._requests: list[_Request] = []
        self._request_items: list[raw.AnyStreamItem] = []

    # -- the public side -----------------------------------------------------------------------------------

    @property
    def watched_roots(self) -> list[bytes]:
        """The roots watched now, as given (absolute), in the order they were added."""
        return list(self.scope.roots)

    def add_root(self, path: PathArg, *, recursive: bool = True, scan: bool = False,
                 missing_ok: bool = False) -> None:
        """Watch ``path`` too (a directory tree, one directory with ``recursive=False``, or a file). Returns
        once its watch is in place: nothing that happens there afterwards is missed. ``scan``: report what it
        holds now as ``synthesized`` creates. ``missing_ok``: if it does not exist, wait for it (as the
        source's ``missing_ok``). Raises :class:`SourceError` if it cannot be watched."""
        root = os.path.abspath(os.fsencode(path))
        self._request(lambda: self._add_now(root, recursive, scan, missing_ok))

    def remove_root(self, path: PathArg) -> None:
        """Stop watching the root ``path``: a ``watch_end`` record for it, and no record under it after that
        (other roots that cover a path keep reporting it). Raises :class:`SourceError` if it is not a root."""
        root = os.path.abspath(os.fsencode(path))
        if root not in self.scope.roots:
            raise SourceError(f"not a watched root: {os.fsdecode(root)}")
        self._request(lambda: self._remove_now(root))

    # -- requests ------------------------------------------------------------------------------------------

    def _request(self, run: Callable[[], list[raw.AnyStreamItem]]) -> None:
        if self.closed:
            raise SourceError("source is closed")
        req = _Request(run)
        self._requests.append(req)
        self.wake()
        while True:
            # Nobody reads (or the reader is between reads): carry it out here, under the loop lock.
            if self._loop_lock.acquire(blocking=False):
                try:
                    self._run_requests_locked()
                finally:
                    self._loop_lock.release()
            if req.done.wait(self.REQUEST_POLL_SECONDS):
                break
        if req.error is not None:
            raise req.error

    def _run_requests_locked(self) -> None:
        """Carry out the queued requests (the loop lock is held); their items wait for the next read."""
        while self._requests:
            req = self._requests.pop(0)
            try:
                if self.closed:
                    raise SourceError("source is closed")
                self._request_items.extend(req.run())
            except BaseException as exc:  # handed to the caller waiting for it
                req.error = exc
            req.done.set()

    def _take_requests(self) -> list[Rec]:
        """Called by ``read`` with the loop lock held: carry out what is queued, look again at the waiting
        roots the last records concerned, feed the items all this produced."""
        if self._requests:
            self._run_requests_locked()
        if self.scope.wakeups and self._opened:
            self._request_items.extend(self._settle())
        if not self._request_items:
            return []
        items, self._request_items = self._request_items, []
        return self._feed_all(items)

    def wake(self) -> None:
        raise NotImplementedError

    def _feed_all(self, items: Sequence[raw.AnyStreamItem]) -> list[Rec]:
        raise NotImplementedError

    # -- the changes (in the reading thread, or with the loop lock held) -----------------------------------

    def _add_now(self, root: bytes, recursive: bool, scan: bool, missing_ok: bool) -> list[raw.AnyStreamItem]:
        path, kind, present = classify(root, recursive)
        if not present and missing_ok:
            self.scope.add_waiting(path, kind, nearest_dir(path))
            self.scope.wakeups.add(path)
            return self._settle() if self._opened else []
        if not present:
            raise SourceError(f"cannot watch {os.fsdecode(root)}: no such file or directory")
        top = parent_of(path) if kind == "file" else path
        self.scope.add(path, kind, present)
        if top not in self.roots:
            self.roots.append(top)
            self._roots_changed(top, added=True)
        items: list[raw.AnyStreamItem] = []
        if not self._opened:
            return items
        try:
            self._watch_top(top, synthesize=scan, items=items)
        except BaseException:
            self.scope.remove(path)
            self._drop_top_dirs()
            raise
        return items

    def _remove_now(self, root: bytes) -> list[raw.AnyStreamItem]:
        kind = self.scope.remove(root)
        if kind is None:
            raise SourceError(f"not a watched root: {os.fsdecode(root)}")
        items: list[raw.AnyStreamItem] = []
        self._drop_top_dirs()
        if not self._opened:
            return items  # never watched: nothing ends
        self._forget_unneeded(items)
        items.append(raw.SourceNotice(time.monotonic_ns(), "watch_end", root, kind != "file", (),
                                      "root removed from the watch"))
        return items

    def _drop_top_dirs(self) -> None:
        keep = set(self.scope.top_dirs())
        for top in [t for t in self.roots if t not in keep]:
            self.roots.remove(top)
            self._roots_changed(top, added=False)

    def _sync_top_dirs(self) -> None:
        self._drop_top_dirs()
        for top in self.scope.top_dirs():
            if top not in self.roots:
                self.roots.append(top)
                self._roots_changed(top, added=True)

    # -- roots that may be missing ---------------------------------------------------------------------------

    def _settle(self) -> list[raw.AnyStreamItem]:
        """Look again at the roots in ``scope.wakeups``; then unwatch what no root needs any more."""
        items: list[raw.AnyStreamItem] = []
        for root in self.scope.take_wakeups():
            self._place(root, items)
        self._sync_top_dirs()
        self._forget_unneeded(items)
        return items

    def _place(self, root: bytes, items: list[raw.AnyStreamItem]) -> None:
        """Watch ``root`` if it exists now (reporting its appearance, unless a record did, and its content),
        else its nearest existing ancestor. The watch comes before the look that decides: a component that
        appears meanwhile is seen by the next round (or by the scan)."""
        scope = self.scope
        if root not in scope.roots:
            return  # removed meanwhile
        if root not in scope.waiting:  # a live root whose watch ended: it is looked for again from scratch
            scope.wait(root, nearest_dir(root))
        for _ in range(self.MAX_DESCENT):
            try:
                st = os.stat(root)
            except OSError:
                st = None
            if st is not None:
                is_dir = stat.S_ISDIR(st.st_mode)
                announced = scope.appeared(root, is_dir)
                self._sync_top_dirs()
                if not announced:
                    items.append(raw.SourceNotice(time.monotonic_ns(), "create", root, is_dir,
                                                  (Flag.SYNTHESIZED.value,), "watched root appeared"))
                try:
                    self._watch_top(root if is_dir else parent_of(root), synthesize=is_dir, items=items)
                except (SourceError, OSError):
                    scope.wait(root, nearest_dir(root))  # gone again already: look again
                    continue
                return
            guard = nearest_dir(root)
            if scope.guards.get(root) == guard and guard in self.roots:
                return
            scope.wait(root, guard)
            self._sync_top_dirs()
            with contextlib.suppress(SourceError, OSError):  # gone meanwhile: the next round finds the one above
                self._watch_top(guard, synthesize=False, items=items)
            # The next round returns if nothing changed; a component that appeared before the guard's watch
            # existed (no event for it) is found by it.

    # -- backend hooks -------------------------------------------------------------------------------------

    def _roots_changed(self, top: bytes, *, added: bool) -> None:
        """``top`` was added to or removed from ``roots``: the shadow tree of the rescan follows (a backend
        with lookups by root extends this)."""
        if self._shadow is not None:
            if added:
                self._shadow.add_root(top)
            else:
                self._shadow.remove_root(top)

    def _watch_top(self, top: bytes, *, synthesize: bool, items: list[raw.AnyStreamItem]) -> None:
        """Watch (mark) the directory ``top`` of a root added while running, and below it as the roots say."""
        raise NotImplementedError

    def _forget_unneeded(self, items: list[raw.AnyStreamItem]) -> None:
        """Unwatch (unmark) every directory no root needs any more (``scope.needed``), appending the items
        that tell the normalizer."""
        raise NotImplementedError
