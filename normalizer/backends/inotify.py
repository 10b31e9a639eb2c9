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
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Unpack

from ..capture.log import CaptureHeader
from ..core import raw
from ..core.actions import Action, Rescan, Watch
from ..core.filters import EVENT_BITS, PathFilter, kinds_of_mask, mask_from_kinds, reported_kinds
from ..core.inotify import InotifyNormalizer
from ..core.matcher import MatcherSettings
from ..errors import SourceError, WatchLimitError
from ..records import Rec
from ._inotify_sys import DEFAULT_READ_BUFSIZE, MIN_READ_BUFSIZE, InotifyFD, _parse
from .base import LiveSource, PathArg, matcher_settings
from .priority import DEFAULT_BOOST
from .reader import DEFAULT_READ_BUFFER
from .sched import DEFAULT_SLICE_US

#: Flags added to every watch: directories only, never through a symlink, no events for unlinked children.
_WATCH_FLAGS = raw.IN_ONLYDIR | raw.IN_DONT_FOLLOW | raw.IN_EXCL_UNLINK
#: Bits the table upkeep needs whatever the user asked for.
_REQUIRED_MASK = raw.IN_MOVED_FROM | raw.IN_MOVED_TO | raw.IN_CREATE | raw.IN_DELETE_SELF | raw.IN_MOVE_SELF
#: Bits the shadow tree of the rescan needs besides (deletes; ``--events`` still filters what is reported).
_SHADOW_MASK = raw.IN_DELETE
#: Re-exported: the kinds of ``--events`` live in :mod:`normalizer.core.filters` (shared with fanotify).
__all__ = ["EVENT_BITS", "InotifySource", "kinds_of_mask", "mask_from_kinds"]


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
        include: Sequence[str | bytes] = (),
        exclude: Sequence[str | bytes] = (),
        capture: str | os.PathLike[str] | None = None,
        rescan: bool = True,
        read_size: int = DEFAULT_READ_BUFSIZE,
        recursive: bool = True,
        missing_ok: bool = False,
        read_buffer: int = DEFAULT_READ_BUFFER,
        sched_slice_us: int = DEFAULT_SLICE_US,
        priority_boost: int = DEFAULT_BOOST,
        **settings: Unpack[MatcherSettings],
    ) -> None:
        if not MIN_READ_BUFSIZE <= read_size <= 4 << 20:
            raise SourceError(f"read_size must be between {MIN_READ_BUFSIZE} bytes and 4 MiB")
        required = _REQUIRED_MASK | (_SHADOW_MASK if rescan else 0)
        kinds = reported_kinds(mask, required)
        #: False: watch each directory root alone (its direct entries), never a directory below it
        #: (watchdog's ``recursive=False``, pyinotify's ``rec=False``, inotifywait without ``-r``).
        self.recursive = recursive
        #: True: a root that does not exist yet is waited for (backends/roots.py).
        self.missing_ok = missing_ok
        super().__init__(roots, path_filter=PathFilter(include, exclude, kinds), capture=capture, rescan=rescan,
                         read_buffer=read_buffer, sched_slice_us=sched_slice_us,
                         priority_boost=priority_boost)
        self.mask = (mask | required) & raw.IN_ALL_EVENTS
        self.announce_scans = bool(self.mask & (raw.IN_OPEN | raw.IN_ACCESS | raw.IN_CLOSE_NOWRITE))
        matcher = matcher_settings(settings)
        self.options: dict[str, Any] = {
            **matcher,
            "mask": self.mask,
            "kinds": None if kinds is None else sorted(kinds),
            "roots": [os.fsdecode(r) for r in self.roots],
            "include": self.filter.include,
            "exclude": self.filter.exclude,
            "rescan": rescan,
        }
        scope = self.filter.scope_options()
        if scope is not None:
            self.options["scope"] = scope
        self.normalizer = InotifyNormalizer(**matcher)
        self._read_size = read_size
        #: wds the current rescan (re-)added: a directory renamed during the overflow keeps its wd.
        self._rescanned_wds: set[int] = set()
        self._displaced_wds: set[int] = set()
        #: Watches of new directories still settling (core/inotify.py ``_settling``), as [bytes still to read
        #: of what was queued when the watch was added, wd]: each read takes its bytes off; at 0 the events
        #: that could have given the watched path to another directory have all been read.
        self._settling: list[list[int]] = []
        #: Places to list again (path -> why) once the matcher holds nothing back (``_relist_when_idle``).
        self._relist_due: dict[bytes, str] = {}
        #: The last places listed again (``_relist``; for tests and monitoring).
        self.relisted: deque[bytes] = deque(maxlen=64)
        self._relisting = False
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
        """Bytes not consumed yet: in the kernel queue and in the reader thread's buffer."""
        if self._fd is None or self._fd.closed:
            return 0
        return self._fd.pending_bytes() + (0 if self._reader is None else self._reader.buffered)

    def _close_kernel(self) -> None:
        if self._fd is not None:
            self._fd.close()

    def _read_once(self) -> list[Rec] | None:
        chunk = self._next_chunk()
        if chunk is None:
            return None
        t, before_read, backlog, data = chunk
        n = len(data)
        events = _parse(data, n)
        self._last_consumed = n
        self.stats["reads"] += 1
        self.stats["events"] += len(events)
        overflows = self.stats["overflows"]
        settled = self._settled(n) if self._settling else None
        out = self._feed(raw.InotifyBatch(t, backlog == 0, events, backlog, n))
        out.extend(self._recover(overflows, before_read))
        if settled:
            out.extend(self._carry_out(self.normalizer.settle(settled).actions))
        if self.normalizer.settled_early:
            self.stats["settled_early"] = self.normalizer.settled_early
        return out

    def _settled(self, n: int) -> list[int]:
        """Take a read of ``n`` bytes off what each settling watch waits for; the wds it completes (this read's
        events are still checked: the settling ends after its feed)."""
        done: list[int] = []
        for entry in self._settling:
            entry[0] -= n
            if entry[0] <= 0:
                done.append(entry[1])
        if done:
            self._settling = [entry for entry in self._settling if entry[0] > 0]
        return done

    # -- keeping the watches in step with the tree (the normalizer's actions) --------------------------------

    def _unwatch(self, key: int | bytes) -> None:
        assert self._fd is not None and isinstance(key, int)
        self._fd.rm_watch(key)

    def _watch_new(self, action: Watch, items: list[raw.AnyStreamItem]) -> None:
        self._watch_tree(action.path, synthesize=True, items=items, is_root=False)

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
            if synthesize and path == top and not is_root and not known:
                # inotify resolved ``top`` just now: what was queued then may have given it to another
                # directory (core/inotify.py ``_settling``); those events are read once this much has been.
                self._settling.append([self._queued(), wd])
            if known:
                # The kernel gave back a wd we hold: this inode was watched all along (a watched directory
                # renamed onto the new one's name before we got to it), so its content came as records and a
                # scan would report it a second time. (wds are allocated cyclically, never reused at once.)
                continue
            children = self._scan(path, synthesize=synthesize, items=items)
            if children is None:
                continue
            recursive_at = self.scope.recursive_at
            stack.extend(child for child, is_dir in reversed(children) if is_dir and recursive_at(child))

    def _carry_out(self, actions: tuple[Action, ...]) -> list[Rec]:
        """LiveSource's, with the ``Rescan`` actions (new directories' paths rebound by events queued at their
        watch: core/inotify.py ``_settling``) carried out together, last: one walk re-adds every watch in them
        first, so a wd the kernel gives back at one top is not taken for one displaced at another."""
        rescans = [a for a in actions if isinstance(a, Rescan)]
        out = super()._carry_out(tuple(a for a in actions if not isinstance(a, Rescan)) if rescans else actions)
        if any(entry[0] <= 0 for entry in self._settling):
            # Nothing was queued when these were watched (the common case): they settle at once.
            rescans.extend(a for a in self.normalizer.settle(self._settled(0)).actions if isinstance(a, Rescan))
        self._relist_due.update((a.path, a.why) for a in rescans)
        if self._relist_due:
            out.extend(self._relist_when_idle())
        return out

    def _feed(self, item: raw.AnyStreamItem) -> list[Rec]:
        """LiveSource's, then a relisting that waited for the matcher, if it is idle now."""
        out = super()._feed(item)
        if self._relist_due:
            out.extend(self._relist_when_idle())
        return out

    def _relist_when_idle(self) -> list[Rec]:
        """Carry out the relisting asked for, unless the matcher still holds a rename half or records behind
        one: the shadow, which the relisting diffs against, follows the records given so far, and the held
        ones come before the relisting's (found by tests/test_oracle.py: a one-sided rename waiting for its
        deadline held the records after it, and the relisting reported again what they said). Tried again
        after every feed (a read, or the Tick that releases them)."""
        matcher = self.normalizer.matcher
        if self._relisting or matcher.pending_table or matcher.held_queue:
            return []
        due = self._relist_due
        self._relist_due = {}
        self._relisting = True
        try:
            return self._relist(list(due), next(iter(due.values())))
        finally:
            self._relisting = False

    def _relist(self, paths: list[bytes], why: str) -> list[Rec]:
        """List these subtrees again and watch each directory in them where it is now (inotify_add_watch gives
        back the wd an inode has: the table moves it), then, with a shadow, report what differs from the
        records as ``synthesized`` records (the overflow's rescan, restricted to them). Each starts at the
        nearest directory the records have (a path they do not have but the disk does, its parent), so what
        is reported below it has a directory to go in; a path neither has (a rename's source) is skipped. The
        synthesized records carry ``why`` as their message (no ``rescan`` record: a source notice of that kind
        would need a new capture format version). Without a shadow only the watches are put right."""
        shadow = self._shadow
        tops: list[bytes] = []
        for path in sorted(paths):
            if not self._under_a_root(path):
                continue  # its root was removed while the relisting waited: nothing of it is watched now
            if shadow is not None and not shadow.has_dir(path) and not os.path.lexists(path):
                continue  # nothing there in the records nor now (a rename's source): nothing to put right
            while shadow is not None and path not in self.roots and not shadow.has_dir(path):
                path = path.rpartition(b"/")[0] or b"/"  # ends at its root, which the shadow always has
            if not any(path == top or path.startswith(top.rstrip(b"/") + b"/") for top in tops):
                tops = [top for top in tops if not top.startswith(path.rstrip(b"/") + b"/")]
                tops.append(path)
        items: list[raw.AnyStreamItem] = []
        listed: list[bytes] = []
        for top in tops:
            if top in self.roots or self._rescan_dir(top, items):
                listed.append(top)
                if shadow is None:  # the rescan's walk re-adds the watches below; without it, the walk alone
                    self._rescan_walk([top], items)
        self.stats["relists"] = self.stats.get("relists", 0) + 1
        self.relisted.extend(listed)
        out = self._feed_all(items)
        if shadow is not None and listed:
            # No ``modify`` records: no event was lost, what was written came as records.
            out.extend(self._rescan(float("inf"), listed, why))
        else:
            items = []
            self._rescan_forget(lambda _path: False, items)
            out.extend(self._feed_all(items))
        return out

    def _under_a_root(self, path: bytes) -> bool:
        return any(path == root or path.startswith(root.rstrip(b"/") + b"/") for root in self.roots)

    def _closing_notes(self) -> list[Rec]:
        """A relisting still due at close (it waits for the matcher, which held a rename half until the end):
        an ``error`` record for each place, since the records below it may not match the tree."""
        due, self._relist_due = self._relist_due, {}
        t = time.monotonic_ns()
        return [Rec.note("error", path, True, t, 0, source="inotify",
                         message=f"closed before this directory could be listed again: the records below it "
                         f"may not match the tree ({why})") for path, why in sorted(due.items())]

    # -- roots added and removed while running (backends/roots.py) -----------------------------------------

    def _watch_top(self, top: bytes, *, synthesize: bool, items: list[raw.AnyStreamItem]) -> None:
        self._watch_tree(top, synthesize=synthesize, items=items, is_root=True)

    def _forget_unneeded(self, items: list[raw.AnyStreamItem]) -> None:
        """Remove the watches no root needs: a WatchRemoved item each (the normalizer then drops what is still
        queued for them, and their IN_IGNORED)."""
        fd = self._fd
        assert fd is not None
        t = time.monotonic_ns()
        for wd, path in self.normalizer.table.items():
            if not self.scope.needed(path):
                items.append(raw.WatchRemoved(t, wd))
                fd.rm_watch(wd)

    # -- the rescan after an overflow (the walk is LiveSource._rescan_walk, the diff LiveSource._rescan) ----

    def _rescan_dir(self, path: bytes, items: list[raw.AnyStreamItem]) -> bool:
        """Watch a directory the walk found. Every directory is asked (one cheap syscall each): inotify gives
        one wd per inode, so a directory renamed during the overflow gets its own wd back (the WatchAdded
        moves it), and one replaced by a new directory of the same name gets a new wd (the old one is removed
        at the end unless the walk finds it elsewhere)."""
        fd = self._fd
        assert fd is not None
        old = self.normalizer.table.key(path)
        try:
            wd = fd.add_watch(path, self.mask | _WATCH_FLAGS)
        except (FileNotFoundError, NotADirectoryError):
            return False  # gone meanwhile: its parent's events tell the story
        except (OSError, WatchLimitError) as exc:
            self._error(items, path, f"not watched after an overflow: {exc}")
            return False
        self._rescanned_wds.add(wd)
        if wd != old:
            if old is not None:
                self._displaced_wds.add(old)
            items.append(raw.WatchAdded(time.monotonic_ns(), wd, path))
        return True

    def _rescan_forget(self, gone: Callable[[bytes], bool], items: list[raw.AnyStreamItem]) -> None:
        """Remove the watches of directories that are gone or moved out: those the table still has at a path
        the walk did not find, and those displaced by a new directory of the same name, unless the walk
        re-added them at another path."""
        fd = self._fd
        assert fd is not None
        t = time.monotonic_ns()
        stale = {wd for wd, path in self.normalizer.table.items() if gone(path)} | self._displaced_wds
        for wd in sorted(stale - self._rescanned_wds):
            items.append(raw.WatchRemoved(t, wd))
            fd.rm_watch(wd)
        self._rescanned_wds.clear()
        self._displaced_wds.clear()
