"""The live inotify source: one inotify fd for the whole tree, read directly, records out.

It owns the I/O that the sans-IO :class:`~normalizer.core.inotify.InotifyNormalizer` must not do:

* reading the fd (ctypes binding in ``_inotify_sys``; pyinotify is not used on the read path: its parser
  builds a Python object per event and its own cookie pairing would be the one we replace), with the read's
  monotonic time and whether the kernel queue was empty right after it (FIONREAD);
* adding watches for directories that appear (created, or moved in) *before* scanning them, so nothing
  created in between is missed, and reporting what the scan finds as ``synthesized`` creates (the normalizer
  drops the kernel's own CREATE for a name the scan already reported, so nothing is reported twice);
* removing the kernel watches of directories that left the tree;
* writing every stream item to the capture, so that replay feeds the normalizer exactly what it got live
  (with the lifecycle, waiting and closing shared with the fanotify source in :mod:`.base`).

Errors that concern one directory (permission denied, the watch limit) become ``error`` records and watching
goes on; errors that make watching impossible (a root that does not exist) raise
:class:`~normalizer.errors.SourceError` from :meth:`InotifySource.open`.
"""

from __future__ import annotations

import os
import select
import time
from collections.abc import Sequence
from typing import Any

from ..capture.log import CaptureHeader
from ..core import raw
from ..core.filters import PathFilter
from ..core.inotify import InotifyNormalizer
from ..core.matcher import DEFAULT_MAX_PENDING, DEFAULT_MAX_WAIT_NS, DEFAULT_WINDOW_NS
from ..core.shadow import ShadowTree
from ..core.tree import join
from ..errors import SourceError, WatchLimitError
from ..records import Flag, Rec
from ._inotify_sys import DEFAULT_READ_BUFSIZE, MIN_READ_BUFSIZE, InotifyFD
from .base import LiveSource, PathArg

#: Flags added to every watch: directories only, never through a symlink, no events for unlinked children.
_WATCH_FLAGS = raw.IN_ONLYDIR | raw.IN_DONT_FOLLOW | raw.IN_EXCL_UNLINK
#: Bits the table upkeep needs whatever the user asked for.
_REQUIRED_MASK = raw.IN_MOVED_FROM | raw.IN_MOVED_TO | raw.IN_CREATE | raw.IN_DELETE_SELF | raw.IN_MOVE_SELF


#: Event kinds a user can ask for (``--events``), and their inotify bits. ``rename`` asks for both halves.
EVENT_BITS: dict[str, int] = {
    "access": raw.IN_ACCESS,
    "modify": raw.IN_MODIFY,
    "attrib": raw.IN_ATTRIB,
    "close_write": raw.IN_CLOSE_WRITE,
    "close_nowrite": raw.IN_CLOSE_NOWRITE,
    "open": raw.IN_OPEN,
    "rename": raw.IN_MOVED_FROM | raw.IN_MOVED_TO,
    "create": raw.IN_CREATE,
    "delete": raw.IN_DELETE,
    "delete_self": raw.IN_DELETE_SELF,
    "move_self": raw.IN_MOVE_SELF,
}


def kinds_of_mask(mask: int) -> list[str]:
    """The record kinds a mask asks for (the inverse of :func:`mask_from_kinds`)."""
    return [kind for kind, bits in EVENT_BITS.items() if mask & bits]


def mask_from_kinds(kinds: str) -> int:
    """``"create,delete,rename"`` -> an inotify mask. ValueError names an unknown kind."""
    mask = 0
    for kind in (k.strip() for k in kinds.split(",") if k.strip()):
        if kind not in EVENT_BITS:
            raise ValueError(f"unknown event kind {kind!r} (known: {', '.join(EVENT_BITS)})")
        mask |= EVENT_BITS[kind]
    return mask


class InotifySource(LiveSource):
    """Watches directory trees with one inotify fd and produces records.

    Use :meth:`open` (or the context manager), then call :meth:`read` in a loop, then :meth:`close`, which
    returns the last records (what was queued when it was called, then pending rename halves flushed as
    one-sided ``shutdown`` records).
    """

    source_kind = "inotify"
    normalizer: InotifyNormalizer

    def __init__(
        self,
        roots: Sequence[PathArg],
        *,
        mask: int = raw.DEFAULT_INOTIFY_MASK,
        window_ns: int = DEFAULT_WINDOW_NS,
        max_wait_ns: int = DEFAULT_MAX_WAIT_NS,
        max_pending: int = DEFAULT_MAX_PENDING,
        strict_order: bool = True,
        include: Sequence[str | bytes] = (),
        exclude: Sequence[str | bytes] = (),
        capture: str | os.PathLike[str] | None = None,
        rescan: bool = False,
        read_size: int = DEFAULT_READ_BUFSIZE,
    ) -> None:
        if not MIN_READ_BUFSIZE <= read_size <= 4 << 20:
            raise SourceError(f"read_size must be between {MIN_READ_BUFSIZE} bytes and 4 MiB")
        kinds = None if mask & _REQUIRED_MASK == _REQUIRED_MASK else kinds_of_mask(mask)
        super().__init__(roots, path_filter=PathFilter(include, exclude, kinds), capture=capture)
        self.mask = (mask | _REQUIRED_MASK) & raw.IN_ALL_EVENTS
        self.options: dict[str, Any] = {
            "window_ns": window_ns,
            "max_wait_ns": max(max_wait_ns, window_ns),
            "max_pending": max_pending,
            "strict_order": strict_order,
            "mask": self.mask,
            "kinds": None if kinds is None else sorted(kinds),
            "roots": [os.fsdecode(r) for r in self.roots],
            "include": self.filter.include,
            "exclude": self.filter.exclude,
            "rescan": rescan,
        }
        self.normalizer = InotifyNormalizer(window_ns=window_ns, max_wait_ns=max(max_wait_ns, window_ns),
                                            max_pending=max_pending, strict_order=strict_order)
        self._read_size = read_size
        #: What the tree holds, kept from the records, for the rescan after an overflow (only with ``rescan``).
        self._shadow: ShadowTree | None = ShadowTree() if rescan else None
        self._last_read_wall = time.time()
        self._fd: InotifyFD | None = None

    def fileno(self) -> int:
        if self._fd is None:
            raise ValueError("source is not open")
        return self._fd.fileno()

    # -- the kernel side (LiveSource hooks) ----------------------------------------------------------------

    def _open_kernel(self) -> list[raw.AnyStreamItem]:
        self._fd = InotifyFD()
        self._poll.register(self._fd.fileno(), select.POLLIN)
        items: list[raw.AnyStreamItem] = []
        for root in self.roots:
            self._watch_tree(root, synthesize=False, items=items, is_root=True)
        # The initial table goes into the capture header, not as items.
        for item in items:
            if isinstance(item, raw.WatchAdded):
                self.normalizer.feed(item)
        return [i for i in items if not isinstance(i, raw.WatchAdded)]

    def _capture_header(self) -> CaptureHeader:
        return CaptureHeader(source="inotify", options=self.options, watches=self.normalizer.table.items())

    def _queued(self) -> int:
        return 0 if self._fd is None else self._fd.pending_bytes()

    def _close_kernel(self) -> None:
        if self._fd is not None:
            self._fd.close()

    def _read_once(self) -> list[Rec] | None:
        fd = self._fd
        assert fd is not None
        before_read = time.time()
        events = fd.read_events(self._read_size)
        if not events:
            return None
        t = time.monotonic_ns()
        backlog = fd.pending_bytes()
        self._last_consumed = fd.last_read_bytes
        self.stats["reads"] += 1
        self.stats["events"] += len(events)
        overflows = self.stats["overflows"]
        out = self._feed(raw.InotifyBatch(t, backlog == 0, events, backlog, fd.last_read_bytes))
        out.extend(self._follow_tree())
        if self._shadow is not None and self.stats["overflows"] > overflows:
            out.extend(self._rescan(self._last_read_wall))
        self._last_read_wall = before_read
        return out

    def _observe(self, recs: list[Rec]) -> None:
        if self._shadow is not None:
            self._shadow.apply(recs)

    # -- keeping the watches in step with the tree ---------------------------------------------------------

    def _follow_tree(self) -> list[Rec]:
        norm = self.normalizer
        fd = self._fd
        assert fd is not None
        for wd in norm.take_retired_wds():
            fd.rm_watch(wd)
        out: list[Rec] = []
        for path in norm.take_new_dirs():
            items: list[raw.AnyStreamItem] = []
            self._watch_tree(path, synthesize=True, items=items, is_root=False)
            out.extend(self._feed_all(items))
        return out

    def _watch_tree(self, top: bytes, *, synthesize: bool, items: list[raw.AnyStreamItem], is_root: bool) -> None:
        """Watch ``top`` and every directory below it; list what each contains (after its watch exists).

        Appends WatchAdded items, synthesized creates (if ``synthesize``) and error notices to ``items``."""
        fd = self._fd
        assert fd is not None
        stack = [top]
        while stack:
            path = stack.pop()
            if self.filter.excluded(path) and not (is_root and path == top):
                continue
            flags = _WATCH_FLAGS if path != top or not is_root else raw.IN_ONLYDIR
            try:
                wd = fd.add_watch(path, self.mask | flags)
            except (FileNotFoundError, NotADirectoryError):
                if is_root and path == top:
                    raise SourceError(f"cannot watch {os.fsdecode(path)}: no such directory") from None
                continue  # gone already: its parent's DELETE / MOVED_FROM tells the story
            except PermissionError as exc:
                if is_root and path == top:
                    raise SourceError(f"cannot watch {os.fsdecode(path)}: permission denied") from exc
                self._error(items, path, "permission denied: this directory and everything below it is "
                            "not watched")
                continue
            except WatchLimitError as exc:
                if is_root and path == top:
                    raise
                self._error(items, path, f"not watched: {exc}")
                continue
            except OSError as exc:  # ENAMETOOLONG (deeper than PATH_MAX), ELOOP, EIO, ...
                if is_root and path == top:
                    raise SourceError(f"cannot watch {os.fsdecode(path)}: {exc.strerror}") from None
                self._error(items, path, f"not watched: {exc.strerror} (errno {exc.errno})")
                continue
            known = synthesize and wd in self.normalizer.table
            items.append(raw.WatchAdded(time.monotonic_ns(), wd, path))
            if known:
                # The kernel gave back a wd we hold: this inode was watched all along (a watched directory
                # renamed onto the new one's name before we got to it), so its content came as records and a
                # scan would report it a second time. (wds are allocated cyclically, never reused at once.)
                continue
            children = self._scan(path, synthesize=synthesize, items=items)
            if children is None:
                continue
            if self._shadow is not None and not synthesize:
                for child, is_dir in children:
                    self._shadow.add(child, is_dir)
            stack.extend(child for child, is_dir in reversed(children) if is_dir)

    def _rescan(self, since_wall: float) -> list[Rec]:
        """After an overflow: walk the tree, watch directories that appeared, and report what differs from
        the shadow tree as ``synthesized`` records (files changed since ``since_wall`` as ``modify``)."""
        assert self._shadow is not None and self._fd is not None
        items: list[raw.AnyStreamItem] = []
        current: dict[bytes, bool] = {}
        modified: list[bytes] = []
        table = self.normalizer.table
        for root in self.roots:
            stack = [root]
            while stack:
                path = stack.pop()
                if path != root and table.key(path) is None:
                    try:
                        wd = self._fd.add_watch(path, self.mask | _WATCH_FLAGS)
                    except (FileNotFoundError, NotADirectoryError):
                        continue
                    except (OSError, WatchLimitError) as exc:
                        self._error(items, path, f"not watched after rescan: {exc}")
                        continue
                    items.append(raw.WatchAdded(time.monotonic_ns(), wd, path))
                try:
                    with os.scandir(path) as entries:
                        for entry in entries:
                            child = join(path, os.fsencode(entry.name))
                            if self.filter.excluded(child):
                                continue
                            is_dir = entry.is_dir(follow_symlinks=False)
                            current[child] = is_dir
                            if is_dir:
                                stack.append(child)
                            elif entry.stat(follow_symlinks=False).st_mtime >= since_wall - 1.0:
                                modified.append(child)
                except OSError:  # gone, unreadable or too deep: what is known of it stays as it was
                    continue
        old = self._shadow.snapshot()
        t = time.monotonic_ns()
        flags = (Flag.SYNTHESIZED.value,)
        why = "rescan after overflow"
        changed = {p for p in old.keys() & current.keys() if old[p] != current[p]}
        for path in sorted((old.keys() - current.keys()) | changed, reverse=True):
            items.append(raw.SourceNotice(t, "delete", path, old[path], flags, why))
        for path in sorted((current.keys() - old.keys()) | changed):
            items.append(raw.SourceNotice(t, "create", path, current[path], flags, why))
        for path in sorted(modified):
            if path in old and path not in changed:
                items.append(raw.SourceNotice(t, "modify", path, False, flags, why))
        for wd, path in table.items():
            if path not in current and path not in self.roots:
                items.append(raw.WatchRemoved(t, wd))
                self._fd.rm_watch(wd)
        self._shadow.replace(current)
        self.stats["rescans"] = self.stats.get("rescans", 0) + 1
        return self._feed_all(items)
