"""From fanotify stream items to records: directory handles to paths, FAN_RENAME, merged masks, the matcher.

:class:`FanotifyNormalizer` is the fanotify twin of :class:`~normalizer.core.inotify.InotifyNormalizer`: sans-IO,
fed the same :mod:`normalizer.core.raw` items live and in replay, so a replayed capture gives the records the live
session gave. What it knows about fanotify (DESIGN.md, tests/test_fanotify_sys.py):

* **Directory handles, not watch descriptors.** Every event names its directory by a file handle (a *fid*,
  see :func:`normalizer.core.raw.fid_pack`). A cache maps the fid of every directory in the watched tree to its
  path. It is filled by the source's walk (``HandleResolved`` items), by the events themselves (a created or
  moved-in directory's own fid comes with the event, thanks to FAN_REPORT_TARGET_FID) and, for a handle it
  has never seen, by a ``HandleResolved`` item the live source produced with ``open_by_handle_at`` *before*
  feeding the batch (:meth:`FanotifyNormalizer.needed_handles` lists them). It is kept current by the rename
  records themselves: a directory renamed inside the tree moves its whole subtree in the cache.
* **FAN_RENAME is the record.** One FAN_RENAME event becomes one ``rename`` record: old and new directory +
  name, either omitted when its directory is not watched (flag ``unwatched``, path ``""``). No cookie, no
  window, no matcher state. MOVED_FROM / MOVED_TO of the same rename(2) carry nothing FAN_RENAME does not, so
  with ``use_rename=True`` they are dropped (counted in ``stats["dropped_moves"]``): the source does not even
  subscribe to them, but a user mask or a capture may hold them, and they never give a second record.
* **Without FAN_RENAME** (``use_rename=False``: kernels before 5.17, or by choice) MOVED_FROM / MOVED_TO go to
  the windowed :class:`~normalizer.core.matcher.Matcher` like inotify's halves, keyed by the moved object's own
  handle instead of a cookie, with the same window, deadline, drained and order rules.
* **Merged masks.** fanotify merges an unread event with a later one of the same pid, type and info records,
  even when not adjacent, ORing the masks and keeping the oldest position. An event with several event bits
  becomes one record per bit, all at that position, each flagged ``merged`` (and each carrying the whole raw
  mask), in this canonical order (:data:`MERGE_ORDER`)::

      create, moved_to, rename, open, access, modify, attrib, close_nowrite, close_write,
      moved_from, delete, move_self, delete_self

  i.e. the life of one name: it appears, is used, goes; then the directory's own events. It is the true order
  for the common bursts (create-write-close-delete; create then rename away) and a plausible one otherwise;
  the flag says that the history is not exact. A merge of two *identical* events (``mv x y; mv y x; mv x y``
  read as two FAN_RENAMEs) leaves no trace in the mask and cannot be flagged: no event stream can tell it
  from two renames.
* **Events without a directory.** With a filesystem mark the kernel also reports a file's own MOVE_SELF,
  DELETE_SELF and link-count ATTRIB, with the file's handle only. inotify's directory watches never report
  them, the rename / delete records already say it all, and there is no path to give them: they are dropped
  (``stats["dropped_self"]``).
* **Unresolvable handles** (ESTALE: the directory is gone; no CAP_DAC_READ_SEARCH; ...) give the event's
  record with the bare name as path (``""`` for a rename side), flag ``unresolved`` and the handle in the
  message. With a filesystem mark, a handle never seen and not resolvable is a directory outside the tree in
  all but pathological cases (every directory inside is known from the walk or its own create/move event), so
  those events are dropped and counted (``stats["dropped_unresolved"]``) instead of leaking unrelated paths.
* **Directories leaving the tree** (moved out, or outside the roots) are *retired*: their events are dropped
  (``stats["dropped_outside"]``) and :meth:`take_retired` lists them so the source can remove their marks.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Literal

from ..records import Flag, Rec
from . import raw
from .base import NormalizerBase
from .fanotify_abi import (
    FAN_ACCESS,
    FAN_ATTRIB,
    FAN_CLOSE_NOWRITE,
    FAN_CLOSE_WRITE,
    FAN_CREATE,
    FAN_DELETE,
    FAN_DELETE_SELF,
    FAN_MODIFY,
    FAN_MOVE_SELF,
    FAN_MOVED_FROM,
    FAN_MOVED_TO,
    FAN_ONDIR,
    FAN_OPEN,
    FAN_Q_OVERFLOW,
    FAN_RENAME,
)
from .filters import PathFilter
from .matcher import DEFAULT_MAX_PENDING, DEFAULT_MAX_WAIT_NS, DEFAULT_WINDOW_NS, Half, Matcher
from .tree import DirCache

MarkMode = Literal["inode", "filesystem"]

#: Event bit -> record kind for the bits that are one-path records.
_KIND_BY_BIT: dict[int, str] = {
    FAN_CREATE: "create",
    FAN_DELETE: "delete",
    FAN_MODIFY: "modify",
    FAN_ATTRIB: "attrib",
    FAN_CLOSE_WRITE: "close_write",
    FAN_CLOSE_NOWRITE: "close_nowrite",
    FAN_OPEN: "open",
    FAN_ACCESS: "access",
    FAN_MOVE_SELF: "move_self",
    FAN_DELETE_SELF: "delete_self",
}
#: The canonical order of the records of a merged mask (module docstring).
MERGE_ORDER: tuple[int, ...] = (
    FAN_CREATE,
    FAN_MOVED_TO,
    FAN_RENAME,
    FAN_OPEN,
    FAN_ACCESS,
    FAN_MODIFY,
    FAN_ATTRIB,
    FAN_CLOSE_NOWRITE,
    FAN_CLOSE_WRITE,
    FAN_MOVED_FROM,
    FAN_DELETE,
    FAN_MOVE_SELF,
    FAN_DELETE_SELF,
)
_EVENT_BITS = 0
for _bit in MERGE_ORDER:
    _EVENT_BITS |= _bit
_KNOWN_BITS = _EVENT_BITS | FAN_ONDIR | FAN_Q_OVERFLOW
_MOVES = FAN_MOVED_FROM | FAN_MOVED_TO
#: Masks the hot loop turns into a record directly: one event bit, not a directory.
_FAST_KINDS: dict[int, str] = {
    bit: kind for bit, kind in _KIND_BY_BIT.items() if bit not in (FAN_MOVE_SELF, FAN_DELETE_SELF)
}
_MOVE_ONLY = frozenset({FAN_MOVED_FROM, FAN_MOVED_TO, FAN_MOVED_FROM | FAN_ONDIR, FAN_MOVED_TO | FAN_ONDIR})
#: Directory-creating masks whose object handle a later event of the same batch may use as its directory.
_LEARNS = FAN_CREATE | FAN_RENAME | FAN_MOVED_TO
#: Bound of the caches of handles known to be outside the tree / unresolvable (filesystem marks see the
#: whole filesystem; least recently learned first out).
_NEGATIVE_CACHE = 65_536


class FanRec(Rec):
    """A record from fanotify: ``source`` is ``"fanotify"`` and ``pid`` / ``object_id`` are slots.

    Hot path note: every fanotify record has a pid and (nearly always) an object handle, so they are slots
    here, set in the constructor, rather than :meth:`Rec.note`'s per-instance dict entries (0.37 vs 0.72 us per
    record measured)."""

    __slots__ = ("object_id", "pid")

    source = "fanotify"

    def __init__(
        self,
        kind: str,
        path: bytes,
        is_dir: bool,
        t_ns: int,
        mask: int,
        dst: bytes = b"",
        flags: tuple[str, ...] = (),
        pid: int | None = None,
        object_id: str | None = None,
    ) -> None:
        self.kind = kind
        self.path = path
        self.dst = dst
        self.is_dir = is_dir
        self.t_ns = t_ns
        self.mask = mask
        self.cookie = None
        self.flags = flags
        self.pid = pid
        self.object_id = object_id


_FLAG_RANK = {str(flag): i for i, flag in enumerate(Flag)}


class FanHalf(Half):
    """A MOVED_FROM waiting for its MOVED_TO (``use_rename=False``), keyed by the moved object's handle.

    A half of a merged event starts with the ``merged`` flag and the matcher appends the reason it became
    one-sided; ``flags`` keeps them in :class:`~normalizer.records.Flag` order."""

    __slots__ = ("_flags", "object_id", "pid")

    source = "fanotify"

    def __init__(self, path: bytes, is_dir: bool, t_ns: int, mask: int, key: bytes, pid: int,
                 object_id: str) -> None:
        super().__init__(path, is_dir, t_ns, mask, None, key)
        self.pid = pid
        self.object_id = object_id

    @property
    def flags(self) -> tuple[str, ...]:
        return self._flags

    @flags.setter
    def flags(self, value: tuple[str, ...]) -> None:
        self._flags = tuple(sorted(value, key=lambda f: _FLAG_RANK.get(str(f), len(_FLAG_RANK))))


def _parent(path: bytes) -> bytes:
    return path.rstrip(b"/").rpartition(b"/")[0] or b"/"


class FanotifyNormalizer(NormalizerBase):
    """Turns fanotify stream items into records. One instance per fanotify group.

    ``mark_mode`` says how the source marked the tree (it decides what an unknown, unresolvable handle means,
    see the module docstring); ``path_filter`` is the session's include/exclude filter (an excluded directory
    is outside the tree: with a filesystem mark its events arrive and must be dropped).
    """

    def __init__(
        self,
        *,
        window_ns: int = DEFAULT_WINDOW_NS,
        max_wait_ns: int = DEFAULT_MAX_WAIT_NS,
        max_pending: int = DEFAULT_MAX_PENDING,
        strict_order: bool = True,
        use_rename: bool = True,
        mark_mode: MarkMode = "inode",
        path_filter: PathFilter | None = None,
    ) -> None:
        self.cache = DirCache()
        self.matcher = Matcher(
            window_ns=window_ns, max_wait_ns=max_wait_ns, max_pending=max_pending, strict_order=strict_order
        )
        self.use_rename = use_rename
        self.mark_mode: MarkMode = mark_mode
        self.filter = path_filter or PathFilter()
        #: Directories that left the tree (moved out, root moved away): their events are expected, dropped.
        self._retired: set[bytes] = set()
        #: Handles resolved to a place outside the tree, and handles that could not be resolved (with why).
        self._outside: OrderedDict[bytes, None] = OrderedDict()
        self._unresolved: OrderedDict[bytes, str] = OrderedDict()
        #: Directories that appeared (key, moved_in) since the last take_new_dirs().
        self._new_dirs: list[tuple[bytes, bool]] = []
        self._retire_requests: list[bytes] = []
        #: Paths a scan reported (synthesized creates) whose kernel CREATE may still be queued (see
        #: InotifyNormalizer): dropped until the queue was seen empty.
        self._synthesized: set[bytes] = set()
        #: Paths of directories moved in during the current batch (filesystem mark: the kernel reports what is
        #: created in them at once, and the source's scan after the batch finds it too), and the kernel creates
        #: under them: a synthesized create for one of those is dropped.
        self._fresh: list[bytes] = []
        self._kernel_created: set[bytes] = set()
        #: Filesystem mark: directories moved in from outside whose MOVE_SELF (which follows) is not reported.
        self._arrived: set[bytes] = set()
        #: Counters a caller may report (all dropped on purpose; see the module docstring).
        self.stats: dict[str, int] = {
            "dropped_moves": 0,
            "dropped_renames": 0,
            "dropped_self": 0,
            "dropped_outside": 0,
            "dropped_unresolved": 0,
            "unresolved_records": 0,
            "merged_events": 0,
        }

    # -- what the source must act on -----------------------------------------------------------------------

    def needed_handles(self, events: Iterable[raw.FanotifyEvent]) -> list[bytes]:
        """Directory fids in ``events`` the normalizer knows nothing about, in order of first use: the live
        source resolves them (``open_by_handle_at``) and feeds a ``HandleResolved`` for each before the batch.

        A directory created or moved in earlier in the same batch is not listed: the event that brought it
        gives its path as it was then (resolving it now would give its *current* path)."""
        known = self.cache.prefix_by_key
        outside, retired, unresolved = self._outside, self._retired, self._unresolved
        learned: set[bytes] = set()
        need: dict[bytes, None] = {}
        for mask, _pid, d, _nm, d2, _nm2, obj, _extra in events:
            if d is not None and d not in known and d not in outside and d not in retired and \
                    d not in unresolved and d not in learned:
                need[d] = None
            if d2 is not None and d2 not in known and d2 not in outside and d2 not in retired and \
                    d2 not in unresolved and d2 not in learned:
                need[d2] = None
            if mask & FAN_ONDIR and obj is not None and mask & _LEARNS:
                learned.add(obj)
        return list(need)

    def take_new_dirs(self) -> list[tuple[bytes, bool]]:
        """Directories that appeared since the last call, as ``(current path, moved_in)``: created
        (``moved_in`` False: empty when created; inode marks must mark them, then scan what was created before
        the mark) or moved in from outside (True: their content must be scanned either way)."""
        out: list[tuple[bytes, bool]] = []
        seen: set[bytes] = set()
        for key, moved_in in self._new_dirs:
            path = self.cache.path(key)
            if path is not None and path not in seen:
                seen.add(path)
                out.append((path, moved_in))
        self._new_dirs.clear()
        return out

    def take_retired(self) -> list[bytes]:
        """Directory fids that left the tree since the last call (the source may remove their marks)."""
        out = self._retire_requests
        self._retire_requests = []
        return out

    # -- feeding -------------------------------------------------------------------------------------------

    def feed(self, item: raw.AnyStreamItem) -> list[Rec]:
        """Feed one stream item; return the records that are final now, in order."""
        if isinstance(item, raw.FanotifyBatch):
            return self.feed_batch(item)
        out: list[Rec] = []
        m = self.matcher
        if isinstance(item, raw.HandleResolved):
            self._resolved(item)
        elif isinstance(item, raw.Tick):
            self._synthesized.clear()
            m.begin(item.t_ns)
            m.advance(item.t_ns, out)
        elif isinstance(item, raw.SourceNotice):
            m.begin(item.t_ns)
            if item.kind == "create" and Flag.SYNTHESIZED in item.flags:
                if item.path in self._kernel_created:
                    return out  # the kernel reported it already (filesystem mark, directory moved in)
                self._synthesized.add(item.path)
            m.push(Rec.note(item.kind, item.path, item.is_dir, item.t_ns, 0, flags=item.flags,
                            message=item.message or None, source="fanotify"), out)
            m.end(item.t_ns, False, out)
        # inotify items (InotifyBatch, WatchAdded, WatchRemoved) cannot occur in a fanotify stream: ignored.
        return out

    def _resolved(self, item: raw.HandleResolved) -> None:
        key = item.fid
        self._outside.pop(key, None)
        self._unresolved.pop(key, None)
        if item.status == "ok" and item.path is not None and not self._excluded(item.path):
            self._retired.discard(key)
            self.cache.add(key, item.path)
        elif item.status in ("ok", "outside"):
            self.cache.remove(key)  # a known directory found outside the tree (the rescan after an overflow)
            self._mark_outside(key)
        else:
            self.cache.remove(key)
            self._unresolved[key] = item.status
            if len(self._unresolved) > _NEGATIVE_CACHE:
                self._unresolved.popitem(last=False)

    def _mark_outside(self, key: bytes) -> None:
        self._outside[key] = None
        if len(self._outside) > _NEGATIVE_CACHE:
            self._outside.popitem(last=False)

    def _excluded(self, path: bytes) -> bool:
        return self.filter.excluded(path)

    def feed_batch(self, batch: raw.FanotifyBatch) -> list[Rec]:
        """The hot loop: one read's events. Plain file renames and single-bit file events are inlined;
        everything else (directories, merged masks, unknown handles, overflow) goes to ``_slow``."""
        out: list[Rec] = []
        t = batch.t_ns
        m = self.matcher
        m.begin(t)
        if self._fresh:
            self._fresh.clear()
            self._kernel_created.clear()
        prefixes = self.cache.prefix_by_key
        push = m.push
        held = m.held_queue
        append = out.append
        kinds = _FAST_KINDS
        synthesized = self._synthesized
        use_rename = self.use_rename
        rename_bit = FAN_RENAME
        move_only = _MOVE_ONLY
        ondir = FAN_ONDIR
        slow = self._slow
        stats = self.stats
        fresh = self._fresh
        for ev in batch.events:
            mask, pid, d, nm, d2, nm2, obj, _extra = ev
            if mask == rename_bit:
                if use_rename:
                    p1 = prefixes.get(d)
                    p2 = prefixes.get(d2)
                    if p1 is not None and p2 is not None and obj is not None:
                        rec = FanRec("rename", p1 + nm, False, t, mask, p2 + nm2, (), pid, obj.hex())
                        if held:
                            push(rec, out)
                        else:
                            append(rec)
                        continue
            elif d is None:
                if not mask & ondir and not mask & FAN_Q_OVERFLOW:
                    stats["dropped_self"] += 1  # a non-directory's own event (filesystem mark)
                    continue
            else:
                kind = kinds.get(mask)
                if kind is not None:
                    p = prefixes.get(d)
                    if p is not None and nm:
                        path = p + nm
                        if synthesized and self._seen_by_scan(mask, path):
                            continue
                        rec = FanRec(kind, path, False, t, mask, b"", (), pid, None if obj is None else obj.hex())
                        if held:
                            push(rec, out)
                        else:
                            append(rec)
                        if fresh and mask == FAN_CREATE:
                            self._note_fresh_create(path)
                        continue
                elif use_rename and mask in move_only:
                    stats["dropped_moves"] += 1
                    continue
            slow(ev, t, out)
        if batch.drained:
            synthesized.clear()
        m.end(t, batch.drained, out, backlog=batch.backlog, consumed=len(batch.events))
        return out

    def _seen_by_scan(self, mask: int, path: bytes) -> bool:
        """True if this is the kernel's CREATE for an entry a scan already reported (drop it); a delete or
        move away of such a path ends that, so a later CREATE is reported."""
        synthesized = self._synthesized
        if path not in synthesized:
            return False
        if mask & FAN_CREATE:
            synthesized.discard(path)
            return True
        if mask & (FAN_DELETE | FAN_MOVED_FROM | FAN_RENAME):
            synthesized.discard(path)
        return False

    def _note_fresh_create(self, path: bytes) -> None:
        for top in self._fresh:
            if path.startswith(top + b"/"):
                self._kernel_created.add(path)
                return

    # -- the less common cases -----------------------------------------------------------------------------

    def _slow(self, ev: raw.FanotifyEvent, t: int, out: list[Rec]) -> None:
        mask = ev[0]
        if mask & FAN_Q_OVERFLOW:
            self.matcher.overflow(FanRec("overflow", b"", False, t, mask), out)
            return
        bits = mask & _EVENT_BITS
        merged: tuple[str, ...] = ()
        if bits & (bits - 1):
            merged = (Flag.MERGED,)
            self.stats["merged_events"] += 1
        for bit in MERGE_ORDER:
            if bits & bit:
                self._event(bit, ev, t, merged, out)
        unknown = mask & ~_KNOWN_BITS
        if unknown or not bits:
            _, pid, d, nm, _, _, obj, _ = ev
            prefix = self.cache.prefix_by_key.get(d)
            if prefix is None:
                path = b"" if nm == b"." else nm
            elif nm in (b"", b"."):
                path = prefix[:-1] if len(prefix) > 1 else prefix
            else:
                path = prefix + nm
            rec = FanRec("unknown", path, bool(mask & FAN_ONDIR), t, mask, b"",
                         (Flag.UNKNOWN_MASK,) if unknown else (), pid, None if obj is None else obj.hex())
            rec.message = f"unknown mask bits {unknown:#x}" if unknown else "event with no event bit"
            self.matcher.push(rec, out)

    def _event(self, bit: int, ev: raw.FanotifyEvent, t: int, merged: tuple[str, ...], out: list[Rec]) -> None:
        mask, pid, d, nm, _d2, _nm2, obj, _extra = ev
        if bit == FAN_RENAME:
            if self.use_rename:
                self._rename(ev, t, merged, out)
            else:
                self.stats["dropped_renames"] += 1
            return
        if bit & _MOVES:
            if self.use_rename:
                self.stats["dropped_moves"] += 1
            elif bit == FAN_MOVED_FROM:
                self._moved_from(ev, t, merged, out)
            else:
                self._moved_to(ev, t, merged, out)
            return
        if d is None:
            self.stats["dropped_self"] += 1  # no directory info: a non-directory's own event
            return
        is_dir = bool(mask & FAN_ONDIR)
        oid = None if obj is None else obj.hex()
        kind = _KIND_BY_BIT[bit]
        prefix = self.cache.prefix_by_key.get(d)
        if prefix is None:
            self._unplaced(kind, d, nm, is_dir, t, mask, pid, obj, merged, out)
            return
        m = self.matcher
        if nm in (b".", b""):  # an event on the directory ``d`` itself
            path = prefix[:-1] if len(prefix) > 1 else prefix
            oid = d.hex()
            if bit == FAN_MOVE_SELF:
                self._move_self(d, path, t, mask, pid, merged, out)
            elif bit == FAN_DELETE_SELF:
                m.push(FanRec("delete_self", path, True, t, mask, b"", merged, pid, oid), out)
                end = FanRec("watch_end", path, True, t, mask, b"", (), pid, oid)
                end.message = "watch ended: the directory was deleted"
                m.push(end, out)
                self.cache.remove(d)
            else:
                m.push(FanRec(kind, path, is_dir, t, mask, b"", merged, pid, oid), out)
            return
        path = prefix + nm
        if bit == FAN_CREATE:
            if self._synthesized and self._seen_by_scan(FAN_CREATE, path):
                return
            if self._fresh:
                self._note_fresh_create(path)
        elif bit == FAN_DELETE and self._synthesized:
            self._seen_by_scan(FAN_DELETE, path)
        m.push(FanRec(kind, path, is_dir, t, mask, b"", merged, pid, oid), out)
        if is_dir and obj is not None:
            if bit == FAN_CREATE:
                self._dir_arrived(obj, path, moved_in=False)
            elif bit == FAN_DELETE:
                self.cache.remove(obj)

    def _unplaced(self, kind: str, d: bytes, nm: bytes, is_dir: bool, t: int, mask: int, pid: int,
                  obj: bytes | None, merged: tuple[str, ...], out: list[Rec]) -> None:
        """An event in a directory that is not in the cache: outside the tree (dropped) or unresolvable."""
        if is_dir and kind == "create" and obj is not None and d in self._outside:
            self._mark_outside(obj)  # a directory created outside the tree is outside too
        if not self._report_unresolved(d):
            return
        status = self._unresolved.get(d, "never resolved")
        name = b"" if nm == b"." else nm
        if kind == "rename":
            rec = FanRec(kind, b"", is_dir, t, mask, b"", (*merged, Flag.UNRESOLVED), pid,
                         None if obj is None else obj.hex())
            rec.message = f"directory handle {d.hex()} could not be resolved ({status}); name {name!r}"
        else:
            rec = FanRec(kind, name, is_dir, t, mask, b"", (*merged, Flag.UNRESOLVED), pid,
                         None if obj is None else obj.hex())
            rec.message = f"directory handle {d.hex()} could not be resolved ({status}); path is the bare name"
        self.stats["unresolved_records"] += 1
        self.matcher.push(rec, out)

    def _report_unresolved(self, d: bytes, count: bool = True) -> bool:
        """True if an event in unknown directory ``d`` deserves an ``unresolved`` record; if not, it is
        dropped (counted, with ``count``)."""
        if d in self._retired or d in self._outside:
            if count:
                self.stats["dropped_outside"] += 1
            return False
        if self.mark_mode == "filesystem":
            if count:
                self.stats["dropped_unresolved"] += 1
            return False
        return True

    def _side(self, d: bytes | None, nm: bytes) -> tuple[bytes, str | None]:
        """One side of a FAN_RENAME: (path or b"", None if placed/unwatched or the unresolved message)."""
        if d is None:
            return b"", None  # the kernel omitted it: not watched
        prefix = self.cache.prefix_by_key.get(d)
        if prefix is not None:
            return prefix + nm, None
        if not self._report_unresolved(d, count=False):
            return b"", None
        status = self._unresolved.get(d, "never resolved")
        return b"", f"directory handle {d.hex()} ({status}), name {nm!r}"

    def _rename(self, ev: raw.FanotifyEvent, t: int, merged: tuple[str, ...], out: list[Rec]) -> None:
        mask, pid, d, nm, d2, nm2, obj, _ = ev
        is_dir = bool(mask & FAN_ONDIR)
        src, why_src = self._side(d, nm)
        dst, why_dst = self._side(d2, nm2)
        if not src and not dst and why_src is None and why_dst is None:
            # Entirely outside the tree (filesystem mark) or unresolvable there.
            self.stats["dropped_outside" if self.mark_mode == "inode" or d in self._outside or d in self._retired
                       else "dropped_unresolved"] += 1
            return
        unwatched = (not src and why_src is None) or (not dst and why_dst is None)
        unresolved = why_src is not None or why_dst is not None
        flags = ((Flag.UNWATCHED,) if unwatched else ()) + merged + ((Flag.UNRESOLVED,) if unresolved else ())
        rec = FanRec("rename", src, is_dir, t, mask, dst, flags, pid, None if obj is None else obj.hex())
        if unresolved:
            rec.message = "could not resolve " + "; ".join(
                f"{side} {why}" for side, why in (("source", why_src), ("destination", why_dst)) if why)
            self.stats["unresolved_records"] += 1
        if self._synthesized and src:
            self._seen_by_scan(FAN_RENAME, src)
        self.matcher.push(rec, out)
        if is_dir and obj is not None:
            self._dir_moved(obj, src, dst)

    def _dir_moved(self, key: bytes, src: bytes, dst: bytes) -> None:
        """Keep the cache in step with a directory rename (either side may be outside the tree)."""
        cache = self.cache
        if dst and self._excluded(dst):
            dst = b""
        if src and dst:
            if cache.key(src) is not None:
                cache.move(src, dst)
                if cache.path(key) != dst:
                    cache.add(key, dst)
            else:
                self._dir_arrived(key, dst, moved_in=True)
        elif src:
            self._retire(src, key)
        elif dst:
            self._dir_arrived(key, dst, moved_in=True)

    def _dir_arrived(self, key: bytes, path: bytes, *, moved_in: bool) -> None:
        if self._excluded(path):
            self._mark_outside(key)
            return
        self._retired.discard(key)
        self._outside.pop(key, None)
        self._unresolved.pop(key, None)
        self.cache.add(key, path)
        self._new_dirs.append((key, moved_in))
        if moved_in:
            self._fresh.append(path)
            if self.mark_mode == "filesystem":
                self._arrived.add(key)

    def _retire(self, path: bytes, key: bytes | None = None) -> None:
        gone = self.cache.remove_below(path)
        if key is not None and key not in gone:
            gone.append(key)
        self._retired.update(gone)
        self._retire_requests.extend(gone)

    def _move_self(self, d: bytes, path: bytes, t: int, mask: int, pid: int, merged: tuple[str, ...],
                   out: list[Rec]) -> None:
        """MOVE_SELF of a directory of the tree (the rename, if any, was applied already)."""
        m = self.matcher
        if d in self._arrived:
            # Filesystem mark: the MOVE_SELF of a directory that just came in from outside. inotify cannot see
            # it (the directory is not watched yet), and the rename record said it all.
            self._arrived.discard(d)
            return
        if not self.use_rename and m.is_waiting(d):
            # Its own MOVED_FROM still waits and its MOVED_TO did not come: it left the tree (inode marks).
            m.resolve(d, Flag.UNWATCHED, out)
            self._retire(path, d)
            return
        oid = d.hex()
        m.push(FanRec("move_self", path, True, t, mask, b"", merged, pid, oid), out)
        if self.cache.key(_parent(path)) is None:
            end = FanRec("watch_end", path, True, t, mask, b"", (), pid, oid)
            end.message = "watched root moved away; its watches were removed"
            m.push(end, out)
            self._retire(path, d)

    # -- without FAN_RENAME: the halves --------------------------------------------------------------------

    def _moved_from(self, ev: raw.FanotifyEvent, t: int, merged: tuple[str, ...], out: list[Rec]) -> None:
        mask, pid, d, nm, _, _, obj, _ = ev
        is_dir = bool(mask & FAN_ONDIR)
        prefix = self.cache.prefix_by_key.get(d)
        if prefix is None or d is None:
            if d is not None:
                self._unplaced("rename", d, nm, is_dir, t, mask, pid, obj, merged, out)
            return  # moved from outside: its MOVED_TO (if inside) is one-sided
        path = prefix + nm
        if self._synthesized:
            self._seen_by_scan(FAN_MOVED_FROM, path)
        if obj is None:
            # No handle to join by (a kernel without FAN_REPORT_TARGET_FID): one-sided when the window ends.
            obj = b"nokey:%d:%d" % (t, id(ev))
        half = FanHalf(path, is_dir, t, mask, obj, pid, obj.hex())
        if merged:
            half.flags = merged
        self.matcher.push_from(half, out)

    def _moved_to(self, ev: raw.FanotifyEvent, t: int, merged: tuple[str, ...], out: list[Rec]) -> None:
        mask, pid, d, nm, _, _, obj, _ = ev
        is_dir = bool(mask & FAN_ONDIR)
        m = self.matcher
        prefix = self.cache.prefix_by_key.get(d)
        if prefix is None or d is None:
            # Moved to a directory outside the tree (filesystem mark) or not resolvable: a first half waiting
            # for it is one-sided now (its path stays exact); with none waiting, an unresolvable directory
            # still gives a record saying so.
            half = None if obj is None else m.resolve(obj, Flag.UNWATCHED, out)
            if half is not None:
                if is_dir:
                    self._retire(half.path, obj)
            elif d is not None:
                self._unplaced("rename", d, nm, is_dir, t, mask, pid, obj, merged, out)
            return
        path = prefix + nm
        oid = None if obj is None else obj.hex()
        rec = m.push_to(obj, path, is_dir, t, mask, None, out)
        if not isinstance(rec, FanHalf):  # not joined: a new record from the matcher, one-sided
            rec.source = "fanotify"
            rec.pid = pid
            rec.object_id = oid
        if merged and Flag.MERGED not in rec.flags:
            rec.flags = (*rec.flags, Flag.MERGED)
        if is_dir and obj is not None:
            self._dir_moved(obj, rec.path, path)
