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

import os
import stat
import threading
import time
from collections.abc import Callable, Sequence

from ..core import raw
from ..core.roots import RootKind, RootSet, parent_of
from ..core.shadow import ShadowTree
from ..errors import SourceError
from ..records import Rec

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
    _shadow: ShadowTree | None
    recursive: bool
    _opened: bool
    closed: bool

    #: How often a caller waiting for its request checks whether the reader went away (seconds).
    REQUEST_POLL_SECONDS = 0.05

    def _init_roots(self, roots: Sequence[PathArg]) -> None:
        """Classify the roots and set ``scope`` and ``roots`` (the directories watched at the top)."""
        paths = list(dict.fromkeys(os.path.abspath(os.fsencode(r)) for r in roots))
        self.scope = RootSet(classify(p, self.recursive) for p in paths)
        self.roots = self.scope.top_dirs()
        self._loop_lock = threading.Lock()
        self._requests: list[_Request] = []
        self._request_items: list[raw.AnyStreamItem] = []

    # -- the public side -----------------------------------------------------------------------------------

    @property
    def watched_roots(self) -> list[bytes]:
        """The roots watched now, as given (absolute), in the order they were added."""
        return list(self.scope.roots)

    def add_root(self, path: PathArg, *, recursive: bool = True, scan: bool = False) -> None:
        """Watch ``path`` too (a directory tree, one directory with ``recursive=False``, or a file). Returns
        once its watch is in place: nothing that happens there afterwards is missed. ``scan``: report what it
        holds now as ``synthesized`` creates. Raises :class:`SourceError` if it cannot be watched."""
        root = os.path.abspath(os.fsencode(path))
        self._request(lambda: self._add_now(root, recursive, scan))

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
                self._request_items.extend(req.run())
            except BaseException as exc:  # handed to the caller waiting for it
                req.error = exc
            req.done.set()

    def _take_requests(self) -> list[Rec]:
        """Called by ``read`` with the loop lock held: carry out what is queued, feed the items it produced."""
        if self._requests:
            self._run_requests_locked()
        if not self._request_items:
            return []
        items, self._request_items = self._request_items, []
        return self._feed_all(items)

    def wake(self) -> None:
        raise NotImplementedError

    def _feed_all(self, items: Sequence[raw.AnyStreamItem]) -> list[Rec]:
        raise NotImplementedError

    # -- the changes (in the reading thread, or with the loop lock held) -----------------------------------

    def _add_now(self, root: bytes, recursive: bool, scan: bool) -> list[raw.AnyStreamItem]:
        path, kind, present = classify(root, recursive)
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
        if self._opened:
            self._forget_unneeded(items)
        items.append(raw.SourceNotice(time.monotonic_ns(), "watch_end", root, kind != "file", (),
                                      "root removed from the watch"))
        return items

    def _drop_top_dirs(self) -> None:
        keep = set(self.scope.top_dirs())
        for top in [t for t in self.roots if t not in keep]:
            self.roots.remove(top)
            self._roots_changed(top, added=False)

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
