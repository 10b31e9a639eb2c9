"""From inotify stream items to records: path resolution, the watch table's upkeep, and the matcher.

:class:`InotifyNormalizer` is sans-IO like the matcher it drives: the live source and replay both feed it the
same :mod:`normalizer.core.raw` stream items in the same order, which is why a replayed capture gives the records the
live session gave.

What it adds to the matcher is the inotify-specific knowledge of DESIGN.md:

* a wd means a directory path, which changes when the directory (or one above it) is renamed: a joined
  directory rename rewrites the table at the ``MOVED_TO``, so later events resolve under the new path;
* ``MOVE_SELF`` on a directory whose ``MOVED_FROM`` still waits proves that the directory left the watched set
  (the kernel queues ``MOVE_SELF`` after ``MOVED_TO``): the rename is one-sided at once, the directory's
  watches are retired, and nothing below it is reported again;
* a directory created or moved in must be watched by the source: the feed returns a ``Watch`` action for it,
  resolved against the table as it is *after* the batch, so a rename later in the same read is taken into
  account; a directory that left gives an ``Unwatch(wd)`` per watch below it (:mod:`.actions`);
* ``IN_IGNORED`` ends a watch with a ``watch_end`` record (unless fsnorm removed the watch itself).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Unpack

from ..records import Flag, Rec
from . import raw
from .actions import Fed, Rescan, Watch
from .base import NormalizerBase
from .matcher import Half, MatcherSettings
from .ownscan import SCAN_BITS
from .rec import DirKey
from .tree import WatchTable, join

#: Single event bit -> record kind, for the bits that are plain one-path records.
_KIND_BY_BIT: dict[int, str] = {
    raw.IN_ACCESS: "access",
    raw.IN_MODIFY: "modify",
    raw.IN_ATTRIB: "attrib",
    raw.IN_CLOSE_WRITE: "close_write",
    raw.IN_CLOSE_NOWRITE: "close_nowrite",
    raw.IN_OPEN: "open",
    raw.IN_CREATE: "create",
    raw.IN_DELETE: "delete",
    raw.IN_DELETE_SELF: "delete_self",
    raw.IN_UNMOUNT: "unmount",
}
#: Canonical order in which the bits of a mask with several are turned into records (kernel bit order).
_BIT_ORDER = sorted([*_KIND_BY_BIT, raw.IN_MOVED_FROM, raw.IN_MOVED_TO, raw.IN_MOVE_SELF, raw.IN_IGNORED,
                     raw.IN_Q_OVERFLOW])
_KNOWN_BITS = raw.IN_DELIVERED_BITS



def _at_and_above(path: bytes) -> list[bytes]:
    """``path`` (without a trailing slash) and every directory above it, up to ``/``."""
    path = path.rstrip(b"/") or b"/"
    out = [path]
    while path != b"/":
        path = path.rpartition(b"/")[0] or b"/"
        out.append(path)
    return out

class InotifyNormalizer(NormalizerBase):
    """Turns inotify stream items into records. One instance per inotify fd (cookies are per system, but
    only one fd's halves can be told apart)."""

    def __init__(self, **settings: Unpack[MatcherSettings]) -> None:
        super().__init__(settings)
        self.table = WatchTable()
        #: wds fsnorm removed on purpose; their IN_IGNORED and late events are expected and dropped.
        self._retired: set[int] = set()
        #: Directory MOVED_FROM halves by cookie, and by old path (for MOVE_SELF).
        self._dir_from: dict[int, bytes] = {}
        self._dir_from_by_path: dict[bytes, int] = {}
        #: Directories created or moved in during the current feed, as (parent wd, name) (NormalizerBase._act).
        self._new_dirs: list[tuple[int, bytes]] = []
        #: Directories created or moved in during the current feed, not watched yet, and those of them a move
        #: landed on (-> where that move came from), each as (parent wd, name): a path would go stale when a
        #: directory above is renamed in the same feed (tests/corpus/oracle/inotify-b5fcc23218ee.json: a
        #: directory moved in to d2/e/a, d2/e -> d1, then d0 <-> d1/a). The table does not know them, so the
        #: second half of a RENAME_EXCHANGE of one with a watched directory moves *it*, not the watched one
        #: (found by tests/test_oracle.py: mkdir -p d2/a/p/q, then d1 <-> d2/a, before fsnorm read the create).
        self._unwatched_new: set[tuple[DirKey, bytes]] = set()
        self._unwatched_displaced: dict[tuple[DirKey, bytes], tuple[DirKey, bytes]] = {}
        #: Directories fsnorm asked to watch (Watch actions, by path) and, once watched, *fresh* ones (by wd):
        #: watched and scanned while the queue may still hold events from between the watch and the listing.
        #: An entry that was there at the watch and gone at the listing was never reported, so its events (a
        #: delete, a close, a move away: its MOVED_TO, if any, is then a move in) are dropped
        #: (``dropped_prescan``): the scan is what the consumer was told. Names the scan reported or the kernel
        #: created since are ``_fresh_known``, as (wd, name). Cleared when the queue was seen empty. (Found by
        #: tests/test_oracle_tools.py: git writes tmp_obj_* in a new objects/xx directory and unlinks it right
        #: away.) Keyed by wd, not path: a fresh directory renamed or exchanged (RENAME_EXCHANGE) stays fresh
        #: under its new path, and the directory that took its old path is not (tests/corpus/oracle/
        #: inotify-beec74b35425.json: mkdir b, read, b <-> d2, rm -r b/e: the DELETE of e was dropped).
        self._watch_asked: set[bytes] = set()
        #: Entries a scan reported (synthesized creates) whose kernel CREATE may still be queued, as (parent
        #: wd, name): that CREATE is dropped. Not by path (as fanotify's ``_synthesized``, by handle): a
        #: directory exchanged with the one scanned would have its CREATE of the same name dropped
        #: (tests/corpus/oracle/inotify-5aee4958484a.json).
        self._scanned: set[tuple[int, bytes]] = set()
        self._fresh: set[int] = set()
        self._fresh_known: set[tuple[int, bytes]] = set()
        #: Directories fsnorm asked to watch and got a wd the table did not hold, by wd -> the path given to
        #: inotify_add_watch, *settling* until the events queued at that call are read (the source says when,
        #: :meth:`settle`; or a drained read). inotify resolved that path when called, and the directory it found
        #: there is the one watched and listed; events still queued may have given that path (or one above
        #: it) to another directory by then (a RENAME_EXCHANGE, a rename over it, a rename of its parent and a
        #: mkdir), and the records would then place that listing and that watch where the created directory
        #: went (tests/corpus/oracle/inotify-1c3d1bd6deff.json). Such an event, read while the watch settles,
        #: is noted in ``_unsettled`` (the places it named, as (parent wd, name), both sides of a rename); when
        #: the watch has settled they are listed again (``Rescan`` actions), which puts the watches right and
        #: reports what the records got wrong as ``synthesized`` records. Keyed by wd: the path is what the
        #: kernel resolved, not where the records now have the directory.
        self._settling: dict[int, bytes] = {}
        #: The settling wds by every path at or above the one asked for: what a directory event at a path
        #: concerns is one lookup (``_rebound``), not a scan of every settling watch (up to 4,096 while the
        #: consumer is behind an untar's or a checkout's mkdirs).
        self._settling_at: dict[bytes, set[int]] = {}
        self._unsettled: dict[int, set[tuple[int, bytes]]] = {}
        #: Watches settled early by the bound on ``_settling`` (events read later could not be checked for
        #: them): a counter the source reports (``stats["settled_early"]``).
        self.settled_early = 0
        self.dropped_prescan = 0
        self._retire_requests: list[int] = []
        #: Counters a caller may report: events for retired watches (expected, dropped by design).
        self.retired_events = 0

    # -- what the source must act on -----------------------------------------------------------------------

    def _watches(self) -> Iterator[Watch]:
        """Directories that appeared (created or moved in) during the feed, as current paths; never
        ``moved_in`` (inotify has no filesystem mark: every new directory is watched, then listed)."""
        table = self.table
        watches = list(self._unique((join(parent, name), False) for wd, name in self._new_dirs
                                    if (parent := table.path(wd)) is not None))
        self._watch_asked.update(w.path for w in watches)
        return iter(watches)

    # -- feeding -------------------------------------------------------------------------------------------

    def feed(self, item: raw.AnyStreamItem) -> Fed:
        """Feed one stream item; return the records that are final now, in order, with the actions the source
        must carry out (:mod:`.actions`). Items of a fanotify stream (which a capture reader never yields for
        an inotify capture) change nothing."""
        if isinstance(item, raw.InotifyBatch):
            return self.feed_batch(item)
        out = Fed()
        if isinstance(item, raw.SourceNotice) and item.kind == "scan":
            # Its events come on its own watch, and on its parent's when that is watched.
            parent = item.path.rstrip(b"/").rpartition(b"/")[0] or b"/"
            self.own_scans.expect(item.path, 2 if self.table.key(parent) is not None else 1)
            return out
        m = self.matcher
        m.begin(item.t_ns)
        if isinstance(item, raw.WatchAdded):
            known = item.wd in self.table
            self.table.add(item.wd, item.path)
            self._retired.discard(item.wd)
            self._note_watch(item.wd, item.path, known)
        elif isinstance(item, raw.WatchRemoved):
            self.table.remove(item.wd)
            self._retired.add(item.wd)
        elif isinstance(item, raw.Tick):
            self._scanned.clear()
            self.own_scans.clear()
            m.advance(item.t_ns, out)
            return self._wake(out)
        elif isinstance(item, raw.SourceNotice):
            if item.kind == "create" and Flag.SYNTHESIZED in item.flags:
                self._known_to_scan(item.path)
                self.tmpfiles.appeared(item.path, item.path.rpartition(b"/")[2])
            rec = Rec.note(item.kind, item.path, item.is_dir, item.t_ns, 0, flags=item.flags,
                           message=item.message or None)
            rec.dir_key = self.table.key(item.path.rstrip(b"/").rpartition(b"/")[0] or b"/")
            m.push(rec, out)
        m.end(item.t_ns, False, out)
        return self._wake(out)

    def feed_batch(self, batch: raw.InotifyBatch) -> Fed:
        """The hot loop: one read's events. Common cases are inlined; the rest go to ``_slow``.

        Hot path note: almost every rename arrives as MOVED_FROM immediately followed by its MOVED_TO in the
        same read. A file's MOVED_FROM is therefore kept in local variables for one event (``pf_*``, a
        one-slot lookahead, as notify-rs does); if the next event completes it, the joined record is built
        directly, without the matcher's pending table, held queue and deadlines. Anything else hands the
        first half to the matcher first, so the rules (and the order) are exactly those of the slow path.
        This halves the cost of a rename (benchmarks/bench_matcher.py).
        """
        out = Fed()
        t = batch.t_ns
        m = self.matcher
        m.begin(t)
        prefixes = self.table.prefix_by_key
        push = m.push
        held = m.held_queue
        pending = m.pending_table
        append = out.append
        moved_from, moved_to = raw.IN_MOVED_FROM, raw.IN_MOVED_TO
        isdir_bit = raw.IN_ISDIR
        kinds = _KIND_BY_BIT
        scanned = self._scanned
        fresh = self._fresh
        tmpfiles = self.tmpfiles
        own = self.own_scans.expected
        pf_path: bytes | None = None  # the lookahead slot: a file MOVED_FROM not yet given to the matcher
        pf_mask = pf_cookie = pf_wd = 0
        for wd, mask, cookie, name in batch.events:
            prefix = prefixes.get(wd)
            bit = mask & ~isdir_bit
            if pf_path is not None:
                if bit == moved_to and cookie == pf_cookie and prefix is not None and name and mask == bit:
                    rec = Rec("rename", pf_path, False, t, pf_mask | mask, cookie, prefix + name, (), pf_wd, wd)
                    if fresh and wd in fresh:
                        self._fresh_known.add((wd, name))
                    if name[0] == 35:  # b"#"
                        tmpfiles.appeared(rec.dst, name)
                    if held:
                        push(rec, out)
                    else:
                        append(rec)
                    pf_path = None
                    continue
                m.push_from(Half(pf_path, False, t, pf_mask, pf_cookie, pf_cookie, pf_wd), out)
                pf_path = None
            if prefix is None or not name:
                self._slow(wd, mask, cookie, name, t, out)
                continue
            if bit == moved_from:
                if fresh and wd in fresh and self._vanished_before_scan(bit, wd, name):
                    continue  # never reported: its MOVED_TO, if any, is a move in (one-sided)
                if scanned:
                    scanned.discard((wd, name))
                if name[0] == 35:
                    tmpfiles.gone(prefix + name)
                if mask == bit and cookie not in pending:
                    pf_path, pf_mask, pf_cookie, pf_wd = prefix + name, mask, cookie, wd
                    continue
                is_dir = mask & isdir_bit != 0
                m.push_from(Half(prefix + name, is_dir, t, mask, cookie, cookie, wd), out)
                if is_dir:
                    self._dir_left(cookie, prefix + name, wd, name)
            elif bit == moved_to:
                is_dir = mask & isdir_bit != 0
                if fresh and wd in fresh:
                    self._fresh_known.add((wd, name))
                rec = m.push_to(cookie, prefix + name, is_dir, t, mask, cookie, out)
                rec.dst_dir_key = wd
                if is_dir:
                    self._dir_arrived(rec, wd, name)
                elif name[0] == 35:
                    tmpfiles.appeared(prefix + name, name)
            else:
                kind = kinds.get(bit)
                if kind is None or (scanned and self._seen_by_scan(bit, wd, name)):
                    if kind is None:
                        self._slow(wd, mask, cookie, name, t, out)
                    continue
                is_dir = mask & isdir_bit != 0
                if fresh and wd in fresh and self._vanished_before_scan(bit, wd, name):
                    continue
                if name[0] == 35 and not is_dir and self._tmpfile(bit, prefix + name, name):
                    continue
                if own and bit & SCAN_BITS and self.own_scans.own(bit, prefix + name):
                    continue
                if held:
                    push(Rec(kind, prefix + name, is_dir, t, mask, None, b"", (), wd), out)
                else:
                    append(Rec(kind, prefix + name, is_dir, t, mask, None, b"", (), wd))
                if is_dir and bit == raw.IN_CREATE:
                    self._new_dirs.append((wd, name))
                    self._unwatched_new.add((wd, name))
                    if self._settling:
                        self._rebound(prefix + name, (wd, name))
        if pf_path is not None:
            m.push_from(Half(pf_path, False, t, pf_mask, pf_cookie, pf_cookie, pf_wd), out)
        if batch.drained:
            scanned.clear()
            if self._settling:
                self._settle(list(self._settling))
            if fresh:
                fresh.clear()
                self._fresh_known.clear()
            self._watch_asked.clear()
            if own:
                self.own_scans.clear()
        m.end(t, batch.drained, out, backlog=batch.backlog, consumed=batch.nbytes)
        if self._unwatched_new or self._unwatched_displaced:
            self._unwatched_new.clear()
            self._unwatched_displaced.clear()
        return self._wake(self._act(out) if self._new_dirs or self._retire_requests or self._rescan_requests
                          else out)

    # -- a new directory's path given to another directory by events still queued at its watch -------------

    _why_relist = "listed again: events queued when fsnorm watched a new directory by its path gave that path " \
        "(or one above it) to another directory; what the records got wrong is reported as found now"

    def settle(self, wds: list[int]) -> Fed:
        """The events queued when fsnorm watched these directories (``_settling``) have all been read: the
        ``Rescan`` actions for what they may have got wrong (none if no event rebound a watched path). Called
        by the live source, which counts what was queued at each watch; a drained read settles every watch
        (replay: the actions are not carried out)."""
        out = Fed()
        self._settle(wds)
        if self._rescan_requests:
            out.actions = tuple(Rescan(path, why) for path, why in self._rescan_requests)
            self._rescan_requests.clear()
        return out

    def _settle(self, wds: list[int]) -> None:
        """End these watches' settling; ask for the places their ``_unsettled`` events named to be listed
        again, at their current paths, outermost only."""
        places: set[tuple[int, bytes]] = set()
        for wd in wds:
            asked = self._settling.pop(wd, None)
            if asked is not None:
                places |= self._unsettled.pop(wd, set())
                for at in _at_and_above(asked):
                    those = self._settling_at.get(at)
                    if those is not None:
                        those.discard(wd)
                        if not those:
                            del self._settling_at[at]
        if not places:
            return
        paths = sorted({join(parent, name) for wd, name in places if (parent := self.table.path(wd)) is not None})
        tops: list[bytes] = []
        for path in paths:  # sorted: an enclosing path comes before what is below it (not always just before:
            # "d", "d.bak", "d/x" sort so), hence every top is checked
            if not any(path.startswith(top.rstrip(b"/") + b"/") for top in tops):
                tops.append(path)
        self._rescan_requests.extend((top, self._why_relist) for top in tops)

    def _rebound(self, path: bytes, *places: tuple[int, bytes]) -> None:
        """A directory appeared at ``path`` (created, or a rename's either side): if that is the path a settling
        watch was asked for, or one above it, note ``places`` (``_settling``)."""
        for wd in self._settling_at.get(path.rstrip(b"/") or b"/", ()):
            self._unsettled.setdefault(wd, set()).update(places)

    def _note_watch(self, wd: int, path: bytes, known: bool) -> None:
        """A watch was added: it is fresh if fsnorm asked for it, or if it lies in a fresh directory (the
        scan of a new directory watches what it finds below); unless the kernel gave back a wd the table
        holds (``known``): that directory was watched all along, the source does not scan it again, and its
        events are the story (a watched directory exchanged with a new one before fsnorm read the arrival:
        tests/test_truth.py)."""
        asked = path in self._watch_asked
        if asked:
            self._watch_asked.discard(path)
        if not known and (asked or self._parent_key(path) in self._fresh):
            self._fresh.add(wd)
        if asked and not known:
            if len(self._settling) >= 4096:
                # Bounded: replay never settles by count (nor does a queue that stays full), only a drained
                # read; the oldest settle now (live: listed again now if an event rebound them).
                self.settled_early += 2048
                self._settle(list(self._settling)[:2048])
            self._settling[wd] = path
            for at in _at_and_above(path):
                self._settling_at.setdefault(at, set()).add(wd)

    def _parent_key(self, path: bytes) -> int | None:
        """The wd of the directory that holds ``path`` (None if it is not watched)."""
        return self.table.key(path.rstrip(b"/").rpartition(b"/")[0] or b"/")

    def _known_to_scan(self, path: bytes) -> None:
        """A scan reported ``path``: the kernel's CREATE of it, if one is queued, is dropped (``_scanned``),
        and if its directory is fresh, its events are reported (see ``_fresh``)."""
        wd = self._parent_key(path)
        if wd is None:
            return
        key = (wd, path.rstrip(b"/").rpartition(b"/")[2])
        self._scanned.add(key)
        if wd in self._fresh:
            self._fresh_known.add(key)

    def _vanished_before_scan(self, bit: int, wd: int, name: bytes) -> bool:
        """True for an event on an entry of a fresh directory that its scan did not report and the kernel did
        not create since (see ``_fresh``): drop it."""
        if bit == raw.IN_CREATE:
            self._fresh_known.add((wd, name))
            return False
        if (wd, name) in self._fresh_known:
            return False
        self.dropped_prescan += 1
        return True

    def _seen_by_scan(self, bit: int, wd: int, name: bytes) -> bool:
        """True if this event is the kernel's CREATE for an entry a scan already reported (drop it). A delete
        (here) or move away (in the hot loop) of such an entry ends that, so a later CREATE is reported."""
        scanned = self._scanned
        key = (wd, name)
        if key not in scanned:
            return False
        if bit == raw.IN_CREATE:
            scanned.discard(key)
            return True
        if bit == raw.IN_DELETE:
            scanned.discard(key)
        return False

    def _dropped(self, bit: int, path: bytes, name: bytes, is_dir: bool) -> bool:
        """True if a plain event is not reported: an unnamed tmpfile's, or of fsnorm's own listing."""
        if not is_dir and name[:1] == b"#" and self._tmpfile(bit, path, name):
            return True
        return bool(self.own_scans.expected) and bit & SCAN_BITS != 0 and self.own_scans.own(bit, path)

    def _tmpfile(self, bit: int, path: bytes, name: bytes) -> bool:
        """True if this event is on an unnamed O_TMPFILE file's "#<inode>" name (drop it); a create or delete
        of a real name of that form keeps the table of real ones (see :mod:`.tmpfile`)."""
        if bit == raw.IN_CREATE:
            self.tmpfiles.appeared(path, name)
            return False
        if bit == raw.IN_DELETE:
            self.tmpfiles.gone(path)
            return False
        return self.tmpfiles.drop(path, name)

    # -- the less common cases -----------------------------------------------------------------------------

    def _dir_left(self, cookie: int, path: bytes, wd: int, name: bytes) -> None:
        """A directory MOVED_FROM: remember it until its MOVED_TO or its MOVE_SELF says where it went. Only a
        watched directory gets a MOVE_SELF: one the table does not know (created or moved in during this
        read, not watched yet) is no longer at its place, and no MOVE_SELF of whatever lands there later may
        be taken for its own (``mkdir b; mv b out; mv d2 b`` in one read: d2's MOVE_SELF, at path b, ended
        d2's watches as if d2 had left; tests/corpus/oracle/inotify-d69cbecee9ee.json)."""
        if len(self._dir_from) >= 4096:
            self._prune_dir_from()
        self._dir_from[cookie] = path
        if self.table.key(path) is not None:
            self._dir_from_by_path[path] = cookie
        else:
            self._unwatched_new.discard((wd, name))

    def _prune_dir_from(self) -> None:
        """Forget directory first halves that are final and never saw a MOVE_SELF (unwatched directories)."""
        for cookie, path in list(self._dir_from.items()):
            if not self.matcher.is_waiting(cookie):
                del self._dir_from[cookie]
                if self._dir_from_by_path.get(path) == cookie:
                    del self._dir_from_by_path[path]

    def _dir_arrived(self, rec: Rec, wd: int, name: bytes) -> None:
        """A directory MOVED_TO: move its watches if it came from inside the tree, else watch it anew."""
        src, dst = rec.path, rec.dst
        here = (wd, name)
        if self._settling:
            src_key = rec.dir_key
            if src and isinstance(src_key, int):
                self._rebound(dst, here, (src_key, src.rpartition(b"/")[2]))
                self._rebound(src, here, (src_key, src.rpartition(b"/")[2]))
            else:
                self._rebound(dst, here)
        if src and rec.cookie is not None:
            old = self._dir_from.pop(rec.cookie, None)
            if old is not None and self._dir_from_by_path.get(old) == rec.cookie:
                del self._dir_from_by_path[old]
            came = (rec.dir_key, src.rpartition(b"/")[2])
            if self._unwatched_displaced.get(came) == here:
                # The second half of an exchange with a directory not watched yet: that one moves (to dst).
                del self._unwatched_displaced[came]
                self._unwatched_new.add(here)
                self._new_dirs.append(here)
                return
            if self.table.key(src) is not None:
                if here in self._unwatched_new:
                    self._unwatched_new.discard(here)
                    self._unwatched_displaced[here] = came
                self.table.move(src, dst)
                return
            self._unwatched_new.discard(came)
        self._unwatched_new.add(here)
        self._new_dirs.append(here)

    def _slow(self, wd: int, mask: int, cookie: int, name: bytes, t: int, out: list[Rec]) -> None:
        m = self.matcher
        if mask & raw.IN_Q_OVERFLOW:
            m.overflow(Rec("overflow", b"", False, t, mask), out)
            return
        path = self.table.path(wd)
        if path is None:
            self._unknown_wd(wd, mask, cookie, name, t, out)
            return
        bits = mask & ~raw.IN_ISDIR
        unknown = mask & ~_KNOWN_BITS
        if unknown or bits & (bits - 1):
            self._split(wd, mask, cookie, name, t, out)
            return
        is_dir = mask & raw.IN_ISDIR != 0
        full = join(path, name)
        if bits == raw.IN_MOVED_FROM:
            m.push_from(Half(full, is_dir, t, mask, cookie, cookie, wd), out)
            self.tmpfiles.gone(full)
            if is_dir:
                self._dir_left(cookie, full, wd, name)
        elif bits == raw.IN_MOVED_TO:
            if self._fresh and wd in self._fresh:
                self._fresh_known.add((wd, name))
            rec = m.push_to(cookie, full, is_dir, t, mask, cookie, out)
            rec.dst_dir_key = wd
            if is_dir:
                self._dir_arrived(rec, wd, name)
            else:
                self.tmpfiles.appeared(full, name)
        elif bits == raw.IN_MOVE_SELF:
            self._move_self(wd, path, mask, t, out)
        elif bits == raw.IN_IGNORED:
            self.table.remove(wd)
            m.push(Rec.note("watch_end", path, True, t, mask, message="watch ended (IN_IGNORED): the directory "
                       "was deleted, unmounted or its watch removed"), out)
        elif bits == 0:
            m.push(Rec.note("unknown", full, is_dir, t, mask, cookie=cookie or None,
                            message="event with no event bit"), out)
        elif not self._dropped(bits, full, name, is_dir):
            m.push(Rec(_KIND_BY_BIT[bits], full, is_dir, t, mask, None, b"", (), wd), out)

    def _move_self(self, wd: int, path: bytes, mask: int, t: int, out: list[Rec]) -> None:
        """MOVE_SELF of a watched directory. If its MOVED_FROM is still waiting, it left the watched set."""
        m = self.matcher
        cookie = self._dir_from_by_path.pop(path, None)
        if cookie is not None:
            self._dir_from.pop(cookie, None)
            m.resolve(cookie, Flag.UNWATCHED, out)
            self._retire(path)
            return
        parent = path.rstrip(b"/").rpartition(b"/")[0] or b"/"
        m.push(Rec("move_self", path, True, t, mask), out)
        if self.table.key(parent) is None:
            # A root moved, to a place we cannot know: everything below it would be reported under a stale
            # path. End its watches with a record saying so.
            m.push(Rec.note("watch_end", path, True, t, mask, message="watched root moved away; its watches "
                       "were removed"), out)
            self._retire(path)

    def _retire(self, path: bytes) -> None:
        gone = self.table.remove_below(path)
        self._retired.update(gone)
        self._retire_requests.extend(gone)

    def _unknown_wd(self, wd: int, mask: int, cookie: int, name: bytes, t: int, out: list[Rec]) -> None:
        if wd in self._retired:
            if mask & raw.IN_IGNORED:
                self._retired.discard(wd)
            elif mask & raw.IN_MOVED_TO:
                # Moved into a directory that left the tree: its first half's rename ends outside.
                self.matcher.resolve(cookie, Flag.UNWATCHED, out)
            self.retired_events += 1
            return
        self.matcher.push(Rec.note("unknown", name, bool(mask & raw.IN_ISDIR), t, mask, cookie=cookie or None,
                                   flags=(Flag.UNRESOLVED,),
                              message=f"event for unknown watch descriptor {wd}; path is the bare name"), out)

    def _split(self, wd: int, mask: int, cookie: int, name: bytes, t: int, out: list[Rec]) -> None:
        """A mask the kernel never sends for one inotify event (several event bits, or unknown bits).

        Each known bit becomes its own record, in kernel bit order; unknown bits give one ``unknown`` record
        that carries the whole mask. Nothing is dropped."""
        isdir = mask & raw.IN_ISDIR
        for bit in _BIT_ORDER:
            if mask & bit:
                self._slow(wd, bit | isdir, cookie, name, t, out)
        unknown = mask & ~_KNOWN_BITS
        if unknown:
            path = self.table.path(wd) or b""
            self.matcher.push(Rec.note("unknown", join(path, name), bool(isdir), t, mask, cookie=cookie or None,
                                       flags=(Flag.UNKNOWN_MASK,),
                                  message=f"unknown mask bits {unknown:#x}"), out)
