"""From fanotify stream items to records: directory handles to paths, FAN_RENAME, merged masks, the matcher.

:class:`FanotifyNormalizer` is the fanotify twin of :class:`~normalizer.core.inotify.InotifyNormalizer`: sans-IO,
fed the same :mod:`normalizer.core.raw` items live and in replay, so a replayed capture gives the records the live
session gave. What it knows about fanotify (DESIGN.md, tests/test_fanotify_sys.py):

* **Directory handles, not watch descriptors.** Every event names its directory by a file handle (a *fid*,
  see :func:`normalizer.core.raw.fid_pack`). A cache maps the fid of every directory in the watched tree to its
  path. It is filled by the source's walk (``HandleResolved`` items), by the events themselves (a created or
  moved-in directory's own fid comes with the event, thanks to FAN_REPORT_TARGET_FID) and, for a handle it
  has never seen, by a ``HandleResolved`` item the live source produced with ``open_by_handle_at`` when the
  feed of the batch asked for it with a ``Resolve`` action (the batch is held until answered; answers fed
  before their batch, as capture version 2 has them, leave nothing to ask). It is kept current by the rename
  records themselves: a directory renamed inside the tree moves its whole subtree in the cache, found by its
  own handle, never as what the cache holds at the source path (after an exchange's first half, the other
  side); one the cache never learned, renamed onto a known one, displaces that one instead of forgetting it
  (:meth:`FanotifyNormalizer._follow`).
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
* **A merged DELETE goes after the later events of its object** (:class:`_LateDelete`). Only unread events
  merge, so a merged bit happened between the event's position and the read that delivered it: the event's
  *merge window* is everything queued before that read (that read; the ``backlog`` it left, read next; all of
  it once the queue is seen empty). ``echo x >> f; mv f a; mv a f; rm f`` unread is one
  ``MODIFY|CLOSE_WRITE|DELETE`` event *before* the two FAN_RENAMEs (which never merge with other events); at
  its canonical place, ``delete f`` would precede ``f -> a``, whose source would then not exist. A deleted
  object was at the event's name when deleted and does nothing afterwards, so the delete is held and placed
  right after the last event of the window that concerns its object (its renames, its other events; for a
  directory also the events inside it and its DELETE_SELF), at its canonical place if none does; it is placed
  at once, where it stands, when an event needs its name for another object (a create, a rename onto it) or
  its directory gone (rmdir, a directory renamed over it, DELETE_SELF) while the records still have the object
  there; and before an overflow. Records already returned are never taken back: a delete whose window goes on
  past the read that brought it (the queue not empty after it) comes with the next feed, at its start or after
  its object's events there (its window ends when the backlog is read, a Tick comes, or ``max_wait_ns`` has
  passed). It is named where its directory was at its place, keeps ``merged`` and its mask, and is held back
  (``stats["held_back"]``) if its directory's place was uncertain there (the rescan reports the entry gone) or
  came into the tree with that read (its walk after the read lists what it holds).
  ``stats["deletes_moved"]`` counts those not given at their canonical place. The other bits stay at the
  oldest position: which of them happened first is unknown, and the name held that object there. A CREATE
  merged late needs a hard link back to a name the file had (not handled). Not with ``use_rename=False``
  (records may wait in the matcher behind a half): the canonical order is kept there.
* **A directory renamed back and forth before fsnorm reads** (``w0 -> w0b``, ``w0b -> w0``, ``w0 -> w0b``
  by one process): the kernel merges the second ``w0 -> w0b`` into the first, unread one, and nothing in
  the stream shows it. Every event below that directory after that carries its handle, and the path fsnorm
  would give it is the cache's guess. So within a *window* (the merge window of the read that brought the
  rename from that place: the read and the ``backlog`` it left, or, if the source did not say, the events
  until the queue is seen empty; only those can have merged into it), a directory renamed back to a place it
  left is *uncertain*: that rename and
  its later ones are flagged ``merged`` (each may stand for several), and what happens below it is treated
  like an overflow of that subtree: held back (``stats["held_back"]``), never given a guessed or bare path;
  a rename across its edge keeps its certain side only (``unwatched``). An event in a certain directory that
  names the uncertain one by its handle (its delete, its next rename) says where it was then: a
  ``synthesized`` + ``merged`` rename first moves it there if the records put it elsewhere. Once the queue is
  seen empty, the source resolves the directory's handle (``open_by_handle_at``: its place now) and, if the
  queue is still empty after that (so no rename came between), feeds it as a ``HandleResolved``: the cache
  moves the subtree there, a ``synthesized`` + ``merged`` rename record says where the directory went if
  that differs from the last record, a ``rescan`` record names it, and the feed returns a
  :class:`~normalizer.core.actions.Rescan` action: the source lists the subtree and reports what differs
  from what the records said (the held-back events' net effect) as synthesized records. An answer fed
  while events queued before the last read are still unread (the read's ``backlog``: the source confirmed
  the place late, against the next read) makes the directory *settle*: those events are held back below it
  too when they come, as they may precede a rename of it that the kernel merged into an event that read
  delivered (the answer's path was not true for them), and the rescan's listing, made after them, says what
  they did (tests/data/fanotify-away-noise.fsncap.gz). Why a rescan and
  not a better guess: nothing in the stream says which events below the directory vanished into earlier
  ones, so no ordering of what was read can be trusted; a listing can. The first rename of the cycle (read
  before the cycle showed) cannot be flagged. A *merged* DELETE_SELF of a directory stands where its first
  bit (a MOVE_SELF, say) happened: the directory is forgotten at its parent's DELETE, in its place.
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
  (``stats["dropped_outside"]``) and the feed returns an ``Unwatch(fid)`` action for each, so the source can
  remove their marks (:mod:`normalizer.core.actions`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from operator import itemgetter
from typing import Literal, Unpack

from mypy_extensions import mypyc_attr

from ..records import Flag, Rec
from . import raw
from .actions import Fed, Resolve, Watch
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
from .matcher import Half, MatcherSettings
from .ownscan import SCAN_BITS
from .rec import DirKey
from .tree import DirCache

MarkMode = Literal["inode", "filesystem"]
_DIR = itemgetter(2)
_DIR2 = itemgetter(4)

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
#: Bits that keep an event out of the quick drop of events outside the tree (_dropped_outside): a directory's
#: (it may be learned), an overflow, renames and their halves, bits fsnorm does not know.
_NOT_PLAIN = ~_EVENT_BITS | FAN_ONDIR | FAN_Q_OVERFLOW | FAN_RENAME | FAN_MOVED_FROM | FAN_MOVED_TO
_MOVE_ONLY = frozenset({FAN_MOVED_FROM, FAN_MOVED_TO, FAN_MOVED_FROM | FAN_ONDIR, FAN_MOVED_TO | FAN_ONDIR})
#: Directory-creating masks whose object handle a later event of the same batch may use as its directory.
_LEARNS = FAN_CREATE | FAN_RENAME | FAN_MOVED_TO
#: Bound of the caches of handles known to be outside the tree / unresolvable (filesystem marks see the
#: whole filesystem; least recently learned first out).
_NEGATIVE_CACHE = 65_536
#: Merged DELETEs held at most (a queue never seen empty); beyond it the oldest is placed.
_MAX_LATE = 4096


class FanRec(Rec):
    """A record from fanotify: ``source`` is ``"fanotify"``, ``pid`` / ``object_id`` set in the constructor.

    It adds no slot of its own and sets every inherited one (see :class:`~normalizer.core.rec.Rec`: compiled
    code reads them from the struct). It sets them itself rather than calling ``Rec.__init__``, which would set
    ``source``, ``pid``, ``object_id`` and ``cookie`` only to have them overwritten here: one constructor call
    per fanotify record, on the hot path. A slot added to ``Rec`` must be added here too
    (tests/test_fanotify_normalize.py checks every slot is set)."""

    __slots__ = ()

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
        dir_key: DirKey = None,
        dst_dir_key: DirKey = None,
    ) -> None:
        self.dir_key = dir_key
        self.dst_dir_key = dst_dir_key
        self.kind = kind
        self.path = path
        self.dst = dst
        self.is_dir = is_dir
        self.t_ns = t_ns
        self.mask = mask
        self.cookie = None
        self.flags = flags
        self.source = "fanotify"
        self.pid = pid
        self.object_id = object_id
        self.message = None


class FanHalf(Half):
    """A MOVED_FROM waiting for its MOVED_TO (``use_rename=False``), keyed by the moved object's handle.

    A half of a merged event starts with the ``merged`` flag and the matcher adds the reason it became
    one-sided, in :class:`~normalizer.records.Flag` order (``matcher.ordered_flags``)."""

    __slots__ = ()

    def __init__(self, path: bytes, is_dir: bool, t_ns: int, mask: int, key: bytes, pid: int,
                 object_id: str) -> None:
        super().__init__(path, is_dir, t_ns, mask, None, key)
        self.source = "fanotify"
        self.pid = pid
        self.object_id = object_id


class _LateDelete:
    """The DELETE of a merged event, held until its place is known (module docstring, "A merged DELETE").

    ``anchor`` is the index, in the records of the current feed, after which it goes (0: before them all, once
    a feed ended without placing it); ``first`` is where the canonical order put it (-1 once that feed is
    over); ``here`` says whether the records still have its object at ``(d, name)``; ``left`` counts the events
    of its window still to come after the read that brought it (-1 until that read's end, None if the source
    did not say: then the queue must be seen empty); ``lost``: its directory's place was uncertain at its
    anchor (it is held back like the events there: the rescan reports the entry gone)."""

    __slots__ = ("anchor", "d", "first", "here", "left", "lost", "name", "obj", "rec")

    def __init__(self, rec: FanRec, obj: bytes, d: bytes, name: bytes, anchor: int) -> None:
        self.rec = rec
        self.obj = obj
        self.d = d
        self.name = name
        self.anchor = anchor
        self.first = anchor
        self.here = True
        self.left: int | None = -1
        self.lost = False


def _mirrors(a: Rec, b: Rec) -> bool:
    """True if ``b`` is the second rename of a RENAME_EXCHANGE whose first is ``a``."""
    return a.kind == "rename" and b.kind == "rename" and bool(a.path) and a.path == b.dst and a.dst == b.path


def _parent(path: bytes) -> bytes:
    return path.rstrip(b"/").rpartition(b"/")[0] or b"/"


@mypyc_attr(allow_interpreted_subclasses=True)
class FanotifyNormalizer(NormalizerBase):
    """Turns fanotify stream items into records. One instance per fanotify group.

    Compiled with the hot path (mypyc, setup.py); Python subclasses are allowed: the tests hold the hot loop's
    shortcuts to the slow path they skip by overriding one method (tests/test_fanotify_normalize.py).

    ``mark_mode`` says how the source marked the tree (it decides what an unknown, unresolvable handle means,
    see the module docstring); ``path_filter`` is the session's include/exclude filter (an excluded directory
    is outside the tree: with a filesystem mark its events arrive and must be dropped).
    """

    def __init__(
        self,
        *,
        use_rename: bool = True,
        mark_mode: MarkMode = "inode",
        path_filter: PathFilter | None = None,
        own_pid: int | None = None,
        **settings: Unpack[MatcherSettings],
    ) -> None:
        super().__init__(settings)
        self.cache = DirCache()
        #: Entries a scan reported (synthesized creates) whose kernel CREATE may still be queued, as (parent
        #: directory's handle, name): that CREATE is dropped, as the record exists already. Valid until the
        #: queue was seen empty once. Keyed by handle, never by path (as inotify's ``_scanned``, by wd): a
        #: directory exchanged (RENAME_EXCHANGE) with the scanned one takes its path, and the CREATE of the
        #: same name there is new (tests/test_truth.py, a new directory exchanged before the queue emptied).
        self._synthesized: set[tuple[bytes, bytes]] = set()
        #: fsnorm's own pid: the open/access/close_nowrite of its announced directory listings are dropped
        #: (core/ownscan.py); None: nothing is dropped.
        self.own_pid = own_pid
        self.use_rename = use_rename
        self.mark_mode: MarkMode = mark_mode
        self.filter = path_filter or PathFilter()
        #: Directories that left the tree (moved out, root moved away): their events are expected, dropped.
        self._retired: set[bytes] = set()
        #: Handles resolved to a place outside the tree, and handles that could not be resolved (with why).
        self._outside: OrderedDict[bytes, None] = OrderedDict()
        self._unresolved: OrderedDict[bytes, str] = OrderedDict()
        #: Directories that appeared (key, moved_in) during the current feed (NormalizerBase._act).
        self._new_dirs: list[tuple[bytes, bool]] = []
        self._retire_requests: list[bytes] = []
        #: Handles of the directories moved in during the current batch (filesystem mark: the kernel reports
        #: what happens in them at once, while the source's scan after the batch reports what they hold then;
        #: see _in_fresh), and the last one-sided record of something moved out of one, or out of an uncertain
        #: directory, during the batch (a RENAME_EXCHANGE across such an edge puts its mirror before it:
        #: _push_left).
        self._fresh: list[bytes] = []
        self._fresh_out: Rec | None = None
        #: Filesystem mark: directories moved in from outside whose MOVE_SELF (which follows) is not reported.
        self._arrived: set[bytes] = set()
        #: Directories renamed in the current window: fid -> the paths they left, each with the end of the merge
        #: window of the read that brought the rename (module docstring), and the directories whose place is
        #: uncertain until resolved again.
        self._left: dict[bytes, dict[bytes, int | None]] = {}
        #: Events processed before the current batch, and the end of the current batch's merge window in that
        #: count (its events, then the ``backlog`` it left; None if the source did not say: until the queue is
        #: seen empty). A rename read after that cannot have been merged into one of this batch.
        self._events_done = 0
        self._batch_start = 0
        self._batch_window: int | None = None
        #: The stream position of the event being processed (set before every event that may reach _cycle).
        self._event_at = 0
        self._uncertain: dict[bytes, None] = {}
        #: Directories placed again by an answer that came while events queued before the last read were still
        #: unread (:meth:`_placed_again`): below them, those events are held back like an uncertain
        #: directory's. ``_stale_left`` counts them (the last read's ``backlog``; 0 when none is settling);
        #: ``_backlog`` is the last read's backlog (0 once the queue was seen empty, or if the source did not
        #: say: an answer is then taken for all the events after it, as a source that resolves only while the
        #: queue is empty feeds it).
        self._settling: dict[bytes, None] = {}
        self._stale_left = 0
        self._backlog = 0
        #: A batch that named directory handles never seen, held until each was answered (``Resolve``), and
        #: the handles still unanswered.
        self._held: raw.FanotifyBatch | None = None
        self._awaiting: dict[bytes, None] = {}
        #: Paths a Rescan below an uncertain directory reported deleted: until the queue was seen empty, the
        #: kernel's events on them (or below them) were queued before the listing and repeat what it said.
        self._gone: set[bytes] = set()
        #: Merged DELETEs not placed yet (module docstring), by object; by (directory, name), for the events
        #: that need that name free; by directory, for the events that need it empty.
        self._late: dict[bytes, _LateDelete] = {}
        self._late_names: dict[tuple[bytes, bytes], list[_LateDelete]] = {}
        self._late_in: dict[bytes, list[_LateDelete]] = {}
        #: The time of the item being fed: a delete given with a later feed than its read's takes it, so that
        #: the records' times never go back.
        self._late_t = 0
        #: Counters a caller may report (all dropped on purpose; see the module docstring).
        self.stats: dict[str, int] = {
            "dropped_moves": 0,
            "dropped_renames": 0,
            "dropped_self": 0,
            "dropped_outside": 0,
            "dropped_unresolved": 0,
            "unresolved_records": 0,
            "merged_events": 0,
            "dropped_tmpfile": 0,
            "dropped_fresh": 0,
            "held_back": 0,
            "dropped_rescanned": 0,
            "deletes_moved": 0,
        }

    # -- what the source must act on -----------------------------------------------------------------------

    def needed_handles(self, events: Sequence[raw.FanotifyEvent]) -> list[bytes]:
        """Directory fids in ``events`` the normalizer knows nothing about, in order of first use: a batch
        naming any is held and each is asked for with a ``Resolve`` action (:meth:`feed`).

        A directory created or moved in earlier in the same batch is not listed: the event that brought it
        gives its path as it was then (resolving it now would give its *current* path)."""
        known = self.cache.prefix_by_key
        outside, retired, unresolved = self._outside, self._retired, self._unresolved
        # The common batch names only directories known to be in the tree, or known to be outside it (a
        # filesystem mark on a busy filesystem): found in C (set differences, about 40 ns per event) before
        # the per-event walk below (about 250 ns per event).
        unknown = (set(map(_DIR, events)) | set(map(_DIR2, events))) - known.keys() - {None}
        if not unknown or not (unknown - outside.keys() - retired - unresolved.keys()):
            return []
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

    def _watches(self) -> Iterator[Watch]:
        """Directories that appeared during the feed, as current paths: created (``moved_in`` False: empty
        when created; inode marks must mark them, then scan what was created before the mark) or moved in from
        outside (True: their content must be scanned either way). Unlike inotify's (parent wd, name), a
        directory is known by its own fid, so its path is looked up directly. None is asked for at or below a
        directory whose place is uncertain: its path is a guess, and its Rescan lists (and marks) it all."""
        path_of = self.cache.path
        uncertain = self._uncertain
        late = self._late  # a directory whose merged delete is held is gone already: nothing to watch
        watches = list(self._unique((path, moved_in) for key, moved_in in self._new_dirs
                                    if (path := path_of(key)) is not None and key not in late
                                    and not ((uncertain or self._settling) and self._is_uncertain(path + b"/"))))
        if len(watches) > 1:
            # One below another whose walk lists (and marks) it: the walk covers it, and listing it first
            # would report its content before the directory itself (a directory moved in, then into another
            # one moved in by the same read; corpus fanotify-98f081283674).
            tops = [w.path + b"/" for w in watches if w.moved_in or self.mark_mode == "inode"]
            watches = [w for w in watches if not any(w.path.startswith(top) for top in tops)]
        return iter(watches)

    def uncertain_dirs(self) -> list[bytes]:
        """Directory fids whose place is uncertain (module docstring): once the queue was seen empty, the
        source resolves each and feeds the ``HandleResolved`` if the queue is still empty after that."""
        return list(self._uncertain)

    # -- feeding -------------------------------------------------------------------------------------------

    def feed(self, item: raw.AnyStreamItem) -> Fed:
        """Feed one stream item; return the records that are final now, in order, with the actions the source
        must carry out (:mod:`.actions`).

        A batch naming directory handles the normalizer never saw returns no records and a ``Resolve`` per
        handle; it is processed when the last answer (``HandleResolved``) is fed, and its records come with
        that feed. Anything else fed meanwhile (a capture cut short, a source that does not resolve) first
        processes it with what is known. Answers fed *before* their batch (capture version 2) leave nothing
        to ask: the same records either way."""
        if self._held is not None:
            if isinstance(item, raw.HandleResolved) and item.fid in self._awaiting:
                out = Fed()
                self._answer(item, out)
                del self._awaiting[item.fid]
                self._act(out)
                return self._joined(out, self._release()) if not self._awaiting else out
            return self._joined(self._release(), self.feed(item))
        if isinstance(item, raw.FanotifyBatch):
            return self.feed_batch(item)
        out = Fed()
        m = self.matcher
        if isinstance(item, raw.HandleResolved):
            self._answer(item, out)
        elif isinstance(item, raw.SourceNotice) and item.kind == "scan":
            if self.own_pid is not None:
                self.own_scans.expect(item.path)
        elif isinstance(item, raw.Tick):
            if self._late:
                self._late_t = item.t_ns
                self._late_flush(out)  # the queue was empty: every merge window is closed
            self._synthesized.clear()
            self._gone.clear()
            self.own_scans.clear()
            self._left.clear()
            self._backlog = 0
            if self._settling:
                self._settled()
            m.begin(item.t_ns)
            m.advance(item.t_ns, out)
        elif isinstance(item, raw.SourceNotice):
            m.begin(item.t_ns)
            if item.kind == "create" and Flag.SYNTHESIZED in item.flags:
                self._known_to_scan(item.path)
                self.tmpfiles.appeared(item.path, item.path.rpartition(b"/")[2])
            elif item.kind == "delete" and item.message == self._why_rescan:
                self._gone.add(item.path)
            if self._late_names and item.kind == "create":
                parent = self.cache.key(_parent(item.path))
                if parent is not None:
                    self._name_taken(self._late_names.get((parent, item.path.rpartition(b"/")[2])), None, out)
            rec = Rec.note(item.kind, item.path, item.is_dir, item.t_ns, 0, flags=item.flags,
                           message=item.message or None, source="fanotify")
            rec.dir_key = self.cache.key(_parent(item.path))
            m.push(rec, out)
            m.end(item.t_ns, False, out)
        # inotify items (InotifyBatch, WatchAdded, WatchRemoved) cannot occur in a fanotify stream: ignored.
        return self._wake(self._act(out))

    def _answer(self, item: raw.HandleResolved, out: Fed) -> None:
        if item.fid in self._uncertain:
            self._placed_again(item, out)
        else:
            self._resolved(item)

    def _release(self) -> Fed:
        """Process the held batch with what is known now (an unanswered handle stays unknown)."""
        batch, self._held = self._held, None
        self._awaiting.clear()
        return Fed() if batch is None else self._process(batch)

    @staticmethod
    def _joined(first: Fed, then: Fed) -> Fed:
        first.extend(then)
        if then.actions:
            first.actions = first.actions + then.actions
        return first

    def close(self) -> list[Rec]:
        out: list[Rec] = list(self._release()) if self._held is not None else []
        if self._late:
            self._late_flush(out)
        return out + super().close()

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

    def feed_batch(self, batch: raw.FanotifyBatch) -> Fed:
        """One read's events: held, with a ``Resolve`` per directory handle never seen (see :meth:`feed`), or
        processed now."""
        need = self.needed_handles(batch.events)
        if not need:
            return self._process(batch)
        self._held = batch
        self._awaiting = dict.fromkeys(need)
        out = Fed()
        out.actions = tuple(Resolve(key) for key in need)
        return out

    def _process(self, batch: raw.FanotifyBatch) -> Fed:
        """The hot loop: one read's events. Plain file renames and single-bit file events are inlined;
        everything else (directories, merged masks, unknown handles, overflow) goes to ``_slow``."""
        out = Fed()
        t = batch.t_ns
        m = self.matcher
        m.begin(t)
        self._batch_start = self._events_done
        self._events_done += len(batch.events)
        self._batch_window = None if batch.backlog is None else self._events_done + batch.backlog
        if self._fresh:
            self._fresh.clear()
        self._fresh_out = None
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
        uncertain = self._uncertain
        gone = self._gone
        late = self._late
        self._late_t = t
        settling = self._settling
        # While a directory settles: 1 + the events still to come that were queued before its answer (0: none),
        # counted down here; the first event after them ends it.
        stale = self._stale_left + 1 if settling else 0
        if not settling and self._stale_left:
            self._stale_left = 0  # its directories left the tree or were deleted meanwhile
        at = self._batch_start - 1
        for ev in batch.events:
            mask, pid, d, nm, d2, nm2, obj, _extra = ev
            at += 1
            if stale:
                stale -= 1
                if not stale:
                    self._settled()
            if late or fresh or uncertain or gone or settling:
                self._event_at = at  # (the fast path below never reaches _cycle)
            if late and self._concerns_late(ev):
                self._late_event(ev, t, out)
                continue
            if fresh and self._in_fresh(ev, t, out):
                continue
            if uncertain or gone or settling:
                slow(ev, t, out)
                continue
            if mask == rename_bit:
                if use_rename:
                    p1 = prefixes.get(d)
                    p2 = prefixes.get(d2)
                    if p1 is not None and p2 is not None and obj is not None:
                        rec = FanRec("rename", p1 + nm, False, t, mask, p2 + nm2, (), pid, obj.hex())
                        if synthesized and d is not None:  # a scanned name moved away: a new one is new
                            self._seen_by_scan(rename_bit, d, nm)
                        rec.dir_key, rec.dst_dir_key = d, d2
                        if nm2[:1] == b"#":  # a real "#<digits>" name (a src one stays known: harmless)
                            self.tmpfiles.appeared(rec.dst, nm2)
                        if held:
                            push(rec, out)
                        else:
                            append(rec)
                        continue
                    if p1 is None and p2 is None and self._dropped_outside(d, d2):
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
                        if synthesized and self._seen_by_scan(mask, d, nm):
                            continue
                        if nm[0] == 35 and self._tmpfile(mask, path, nm):  # b"#"
                            continue
                        rec = FanRec(kind, path, False, t, mask, b"", (), pid, None if obj is None else obj.hex())
                        rec.dir_key = d
                        if held:
                            push(rec, out)
                        else:
                            append(rec)
                        continue
                elif use_rename and mask in move_only:
                    stats["dropped_moves"] += 1
                    continue
                if mask and d not in prefixes and not mask & _NOT_PLAIN and self._dropped_outside(d, None, mask):
                    continue
            self._event_at = at
            slow(ev, t, out)
        if late:
            self._late_end(batch, out)
        if stale:
            if stale == 1:
                self._settled()
            else:
                self._stale_left = stale - 1
        if batch.drained:
            synthesized.clear()
            gone.clear()
            self.own_scans.clear()
            self._left.clear()
            if settling:
                self._settled()
        self._backlog = 0 if batch.drained or batch.backlog is None else batch.backlog
        m.end(t, batch.drained, out, backlog=batch.backlog, consumed=len(batch.events))
        return self._wake(self._act(out) if self._new_dirs or self._retire_requests or self._rescan_requests
                          else out)

    def _concerns_late(self, ev: raw.FanotifyEvent) -> bool:
        """True if a held merged DELETE must be placed around this event (:meth:`_late_before`,
        :meth:`_late_after`: its object, its directory or its name; a directory's event; an overflow). Any other
        event leaves every held delete where it is and takes the hot loop: under a storm a delete is nearly
        always held (the queue is never seen empty), and sending every event through :meth:`_late_event` cost
        most of the normalizer's time (benchmarks/README.md, "The fanotify backend")."""
        mask, _pid, d, nm, d2, nm2, obj, _ = ev
        late = self._late
        return bool(mask & (FAN_ONDIR | FAN_Q_OVERFLOW) or obj in late or d in late or d2 in late
                    or (mask & FAN_CREATE and (d, nm) in self._late_names)
                    or (mask & FAN_RENAME and (d2, nm2) in self._late_names))

    def _dropped_outside(self, d: bytes | None, d2: bytes | None, mask: int = 0) -> bool:
        """True (and counted as ``_slow`` counts it) if an event whose directories are not in the cache is
        dropped: each is outside the tree (or retired), or, under a filesystem mark, unknown (an unresolvable
        handle there is outside). ``mask``: a file event's bits (one drop per bit, as ``_event`` counts them;
        0 for a plain file FAN_RENAME: one drop). What a filesystem mark on a busy filesystem sends most."""
        outside, retired = self._outside, self._retired
        fs_mark = self.mark_mode == "filesystem"
        for key in (d, d2):
            if key is not None and not (fs_mark or key in outside or key in retired):
                return False  # unresolved: the slow path gives its record
        if mask:
            bits = mask & _EVENT_BITS
            n = bin(bits).count("1")
            if n > 1:
                self.stats["merged_events"] += 1
            self.stats["dropped_outside" if d in retired or d in outside else "dropped_unresolved"] += n
        else:
            self.stats["dropped_outside" if self.mark_mode == "inode" or d in outside or d in retired
                       else "dropped_unresolved"] += 1
        return True

    def _is_gone(self, path: bytes) -> bool:
        return path in self._gone or any(path.startswith(g + b"/") for g in self._gone)

    def _repeats_rescan(self, bit: int, path: bytes) -> bool:
        """True if this event is on a path (or below one) a rescan reported deleted after it was queued: it
        repeats what the rescan said (drop it). A create there is new: the path is no longer gone."""
        if bit == FAN_CREATE:
            self._gone.discard(path)
            return False
        if not self._is_gone(path):
            return False
        self.stats["dropped_rescanned"] += 1
        return True

    def _known_to_scan(self, path: bytes) -> None:
        """A scan reported ``path``: the kernel's CREATE of it, if one is queued, is dropped (``_synthesized``,
        by its directory's handle and its name; nothing if that directory is not in the cache: no event can
        name it by a handle then)."""
        parent = self.cache.key(_parent(path))
        if parent is not None:
            self._synthesized.add((parent, path.rstrip(b"/").rpartition(b"/")[2]))

    def _seen_by_scan(self, mask: int, d: bytes, name: bytes) -> bool:
        """True if this is the kernel's CREATE for an entry a scan already reported (drop it); a delete or
        move away of such an entry (directory handle ``d``, ``name``) ends that, so a later CREATE is
        reported."""
        synthesized = self._synthesized
        key = (d, name)
        if key not in synthesized:
            return False
        if mask & FAN_CREATE:
            synthesized.discard(key)
            return True
        if mask & (FAN_DELETE | FAN_MOVED_FROM | FAN_RENAME):
            synthesized.discard(key)
        return False

    def _tmpfile(self, bit: int, path: bytes, name: bytes) -> bool:
        """True if this (non-directory) event is on an unnamed O_TMPFILE file's "#<inode>" name (drop it);
        creates and deletes keep the set of real names of that form (:mod:`.tmpfile`)."""
        tmp = self.tmpfiles
        if bit == FAN_CREATE:
            tmp.appeared(path, name)
            return False
        if bit == FAN_DELETE:
            tmp.gone(path)
            return False
        if tmp.drop(path, name):
            self.stats["dropped_tmpfile"] += 1
            return True
        return False

    def _tmpfile_renamed(self, src: bytes, dst: bytes, dst_name: bytes) -> None:
        if src:
            self.tmpfiles.gone(src)
        if dst:
            self.tmpfiles.appeared(dst, dst_name)

    def _under_fresh(self, path: bytes) -> bool:
        return self._below_any(self._fresh, path)

    def _below_any(self, keys: Iterable[bytes], path: bytes) -> bool:
        """True if ``path`` lies below (or, given with its trailing "/", is) a cached directory of ``keys``."""
        prefixes = self.cache.prefix_by_key
        for key in keys:
            top = prefixes.get(key)
            if top is not None and path.startswith(top):
                return True
        return False

    def _in_fresh(self, ev: raw.FanotifyEvent, t: int, out: list[Rec]) -> bool:
        """Handle an event below a directory that came in earlier in this batch (True: handled).

        The source scans such a directory after the batch and reports what it holds *then* as synthesized
        creates. A filesystem mark already reported, in this batch, what happened inside it meanwhile: renames
        and deletes of entries nobody was told about yet. Those records would name a ``src`` the consumer never
        saw (found by tests/test_oracle.py), so below such a directory the scan tells the story: events there
        are dropped, and a rename across its edge becomes one-sided (moved out of it: the destination side
        only; moved into it: the source side only, the scan reports it at its new place)."""
        mask, pid, d, nm, d2, nm2, obj, _ = ev
        if d is None or mask & FAN_Q_OVERFLOW or nm in (b"", b"."):
            return False
        prefixes = self.cache.prefix_by_key
        p1 = prefixes.get(d)
        src = None if p1 is None else p1 + nm
        src_in = src is not None and self._under_fresh(src)
        if not mask & FAN_RENAME or not self.use_rename:
            if not src_in or mask & _MOVES:
                return False
            self.stats["dropped_fresh"] += 1
            if mask & FAN_ONDIR and mask & FAN_DELETE and obj is not None:
                self.cache.remove(obj)
            return True
        p2 = None if d2 is None else prefixes.get(d2)
        dst = None if p2 is None else p2 + nm2
        dst_in = dst is not None and self._under_fresh(dst)
        if not src_in and not dst_in:
            return False
        is_dir = bool(mask & FAN_ONDIR)
        if (self._uncertain or self._settling) and ((src_in and p2 is not None and self._is_uncertain(p2))
                                or (dst_in and p1 is not None and self._is_uncertain(p1))):
            # Between a directory that came in with this read (its content not reported yet: its walk after
            # the read reports it) and one whose place is uncertain (held back: its rescan reports it): no
            # side of it was ever told, so nothing is (corpus fanotify-4d15307ce133). The cache follows.
            self.stats["held_back"] += 1
            if is_dir and src is not None and dst is not None:
                self._follow(obj, src, dst)
            return True
        if src_in and dst_in:
            self.stats["dropped_fresh"] += 1
            if is_dir and src is not None and dst is not None:
                self._follow(obj, src, dst)
            return True
        oid = None if obj is None else obj.hex()
        if src_in:  # out of the fresh directory into a known one: it appears at dst
            rec = FanRec("rename", b"", is_dir, t, mask, dst or b"", (Flag.UNWATCHED,), pid, oid)
            rec.dst_dir_key = d2
            rec.message = "moved out of a directory that came into the tree in the same read (not reported yet)"
            self.matcher.push(rec, out)
            self._fresh_out = rec
            if is_dir and obj is not None and dst:  # its content was not reported either: scan it there
                if src is not None:
                    self._follow(obj, src, dst)
                self._dir_arrived(obj, dst, moved_in=True)
            return True
        if src is None:  # from outside (or an unknown directory) into the fresh one: the scan reports it
            self.stats["dropped_fresh"] += 1
            return True
        # Moved into the fresh directory: gone from src; the scan reports it at its new place.
        if self._synthesized:
            self._seen_by_scan(FAN_RENAME, d, nm)
        rec = FanRec("rename", src, is_dir, t, mask, b"", (Flag.UNWATCHED,), pid, oid)
        rec.dir_key = d
        rec.message = "moved into a directory that came into the tree in the same read: its scan reports it"
        self._push_left(rec, out)
        if is_dir and dst is not None:
            # The one that went in is learned by the fresh directory's walk if the cache did not know it.
            self._follow(obj, src, dst)
        return True

    def _push_left(self, rec: FanRec, out: list[Rec]) -> None:
        """Push the one-sided record of an object that left ``rec.path`` for a directory whose content a
        listing tells (one that came in with this read, or an uncertain one). If the last one-sided record of
        this batch brought another object to that path (out of such a directory), this is the second half of
        a RENAME_EXCHANGE across the edge: the object that was at the path left before the other one took its
        place, so it is told first (in kernel order the two would cancel out). Not the same object moving on
        (corpus fanotify-3ad44ee7efec: out of the fresh directory by an exchange, then back into it by a
        rename). The first half's own MOVE_SELF may stand between the two, merged with the directory's later
        events (its move_self|delete_self and watch_end records, which do not change the tree's shape:
        tests/oracle.py and core/shadow.py pair an exchange's renames the same way; corpus
        fanotify-8e9733e753bc). Across an uncertain directory's edge too (corpus fanotify-c2a86b164d48)."""
        last = self._fresh_out
        src = rec.path
        if last is not None and last.dst == src and last.object_id != rec.object_id:
            at = len(out)
            while at and out[at - 1] is not last and out[at - 1].kind not in ("rename", "create", "delete") \
                    and out[at - 1].path == src:
                at -= 1
            if at and out[at - 1] is last:
                out.insert(at - 1, rec)
                return
        self.matcher.push(rec, out)

    # -- a merged DELETE, placed after the later events of its object (module docstring) -------------------

    def _hold_delete(self, rec: FanRec, obj: bytes, d: bytes, name: bytes, out: list[Rec]) -> None:
        """Hold the DELETE record of a merged event until its window shows where it goes."""
        old = self._late.get(obj)
        if old is not None:  # the same object deleted twice (hard links): the first one is placed now
            self._place(old, out)
        h = _LateDelete(rec, obj, d, name, len(out))
        self._late[obj] = h
        self._late_names.setdefault((d, name), []).append(h)
        self._late_in.setdefault(d, []).append(h)
        if len(self._late) > _MAX_LATE:
            self._place(next(iter(self._late.values())), out)

    def _late_event(self, ev: raw.FanotifyEvent, t: int, out: list[Rec]) -> None:
        """One event while merged DELETEs are held: those it must follow or come after are placed first, then
        it is processed, then those it concerns move after it."""
        self._late_before(ev, out)
        mask = ev[0]
        if ev[2] is None and not mask & (FAN_ONDIR | FAN_Q_OVERFLOW | FAN_RENAME):
            self.stats["dropped_self"] += 1  # a non-directory's own event, as in the hot loop
        elif not (self._fresh and self._in_fresh(ev, t, out)):
            self._slow(ev, t, out)
        if self._late:
            self._late_after(ev, out)

    def _late_before(self, ev: raw.FanotifyEvent, out: list[Rec]) -> None:
        """Place the held deletes this event must come after: its name is taken by another object (a create,
        a rename onto it) while the records still have the deleted object there; its directory goes (an rmdir,
        its DELETE_SELF, unmerged; a directory renamed over it: it was empty then); an overflow (what follows is
        lost)."""
        mask, _pid, d, nm, d2, nm2, obj, _ = ev
        if mask & FAN_Q_OVERFLOW:
            self._late_flush(out)
            return
        names = self._late_names
        if mask & FAN_CREATE and d is not None:
            self._name_taken(names.get((d, nm)), obj, out)
        if mask & FAN_RENAME and d2 is not None:
            self._name_taken(names.get((d2, nm2)), obj, out)
        inside = self._late_in
        if not inside or not mask & FAN_ONDIR:
            return
        # Not a merged DELETE or DELETE_SELF: it stands where its first bit happened, not where the directory
        # went (a merged DELETE of it is held itself, and placed after those inside it).
        bits = mask & _EVENT_BITS
        if bits == FAN_DELETE and obj is not None and obj in inside:
            self._place_in(obj, out)
        if bits == FAN_DELETE_SELF and d is not None and d in inside:
            self._place_in(d, out)
        if mask & FAN_RENAME and d2 is not None and (p2 := self.cache.prefix_by_key.get(d2)) is not None:
            victim = self.cache.key(p2 + nm2)
            if victim is not None and victim != obj and victim in inside:
                self._place_in(victim, out)

    def _name_taken(self, held: list[_LateDelete] | None, obj: bytes | None, out: list[Rec]) -> None:
        for h in list(held or ()):
            if h.obj != obj and h.here:
                self._place(h, out)

    def _place_in(self, d: bytes, out: list[Rec]) -> None:
        for h in list(self._late_in.get(d, ())):
            self._place(h, out)

    def _late_after(self, ev: raw.FanotifyEvent, out: list[Rec]) -> None:
        """A held delete of this event's object, or of the directory it happened in, goes after it, named
        where its directory is now."""
        mask, _pid, d, _nm, d2, nm2, obj, _ = ev
        late = self._late
        here = len(out)
        if obj is not None and (h := late.get(obj)) is not None:
            h.anchor = here
            if mask & FAN_RENAME:
                h.here = d2 == h.d and nm2 == h.name
            self._late_path(h)
        for key in (d, d2):
            if key is not None and key != obj and (h := late.get(key)) is not None:
                h.anchor = here
                self._late_path(h)

    def _late_path(self, h: _LateDelete) -> None:
        """Name a held delete where its directory is at its anchor; if that place is uncertain, it will be
        held back like the events there (the rescan of that directory reports the file gone). Likewise at or
        below a directory that came into the tree with this read: the records have not told what it holds (its
        walk after the read does, the file gone), and its events are dropped (:meth:`_in_fresh`). Named there,
        the delete removed an entry the records never had (corpus fanotify-9ef9d90f48e7: the file's own
        DELETE_SELF anchored it after its directory moved out of an uncertain one, to be listed where it went)."""
        prefix = self.cache.prefix_by_key.get(h.d)
        h.lost = prefix is None or (bool(self._uncertain or self._settling) and self._is_uncertain(prefix)) \
            or (bool(self._fresh) and self._under_fresh(prefix))
        if prefix is not None and not h.lost:
            h.rec.path = prefix + h.name

    def _late_end(self, batch: raw.FanotifyBatch, out: list[Rec]) -> None:
        """The end of a read: place the held deletes whose window is over (everything queued before the read
        that brought them has been read: the queue was empty, or its backlog then is consumed; or they waited
        ``max_wait_ns``); the others wait for the next feed, before whose records they go unless an event
        there moves them."""
        n = len(batch.events)
        over = batch.drained or batch.backlog == 0
        max_wait = self.matcher.max_wait_ns
        due: list[_LateDelete] = []
        for h in self._late.values():
            if h.left == -1:
                h.left = batch.backlog
            elif h.left is not None:
                h.left -= n
            if over or (h.left is not None and h.left <= 0) or batch.t_ns - h.rec.t_ns > max_wait:
                due.append(h)
        if due:
            self._place_all(due, out)
        for h in self._late.values():
            h.anchor = 0
            h.first = -1  # not given with the read that brought it: moved, wherever it goes
            self._late_path(h)

    def _late_flush(self, out: list[Rec]) -> None:
        if self._late:
            self._place_all(list(self._late.values()), out)

    def _place_all(self, due: list[_LateDelete], out: list[Rec]) -> None:
        """:meth:`_place` each of ``due``, in order. When none of the held deletes is a directory's and no
        mirrored pair of renames (an exchange) surrounds an anchor, one pass gives what placing them one by one
        gives: each goes right before the record at its anchor, those with the same anchor in their order
        (each insertion moves the later anchors at or after it). One by one costs a pass over every held delete
        per insertion: quadratic, under a storm that holds thousands. The deletes still held afterwards are not
        moved along: both callers leave none (a flush) or reset their anchors (the end of a read)."""
        n = len(out)
        if any(h.rec.is_dir for h in self._late.values()) or any(
                h.anchor > n or (0 < h.anchor < n and _mirrors(out[h.anchor - 1], out[h.anchor])) for h in due):
            for h in due:
                self._place(h, out)  # (a directory's delete places those inside it first: skipped then)
            return
        late, names, inside = self._late, self._late_names, self._late_in
        t = self._late_t
        placed: list[tuple[int, FanRec]] = []
        for h in due:
            del late[h.obj]
            same = names[(h.d, h.name)]
            same.remove(h)
            if not same:
                del names[(h.d, h.name)]
            there = inside[h.d]
            there.remove(h)
            if not there:
                del inside[h.d]
            if h.lost:
                self.stats["held_back"] += 1
                continue
            if h.first == -1 and t > h.rec.t_ns:
                h.rec.t_ns = t
            if h.anchor != h.first:
                self.stats["deletes_moved"] += 1
            placed.append((h.anchor, h.rec))
        if not placed:
            return
        placed.sort(key=itemgetter(0))  # stable: the same anchor keeps the order of ``due``
        merged: list[Rec] = []
        i = 0
        for anchor, rec in placed:
            if anchor > i:
                merged.extend(out[i:anchor])
                i = anchor
            merged.append(rec)
        merged.extend(out[i:])
        out[:] = merged

    def _place(self, h: _LateDelete, out: list[Rec]) -> None:
        """Put a held delete at its anchor in ``out`` (after the held deletes inside it, for a directory) and
        do what its directory's delete does to the cache."""
        if self._late.get(h.obj) is not h:
            return
        if h.rec.is_dir and h.obj in self._late_in:
            self._place_in(h.obj, out)
        del self._late[h.obj]
        self._late_names[(h.d, h.name)].remove(h)
        if not self._late_names[(h.d, h.name)]:
            del self._late_names[(h.d, h.name)]
        self._late_in[h.d].remove(h)
        if not self._late_in[h.d]:
            del self._late_in[h.d]
        if h.rec.is_dir:
            self.cache.remove(h.obj)
            if h.obj in self._uncertain or h.obj in self._settling:
                self._uncertain.pop(h.obj, None)
                self._settling.pop(h.obj, None)
                self.cache.remove_below(h.rec.path)
        if h.lost:
            self.stats["held_back"] += 1
            return
        i = min(h.anchor, len(out))
        if 0 < i < len(out) and _mirrors(out[i - 1], out[i]):
            i += 1  # never between the two renames of an exchange
        if h.first == -1 and self._late_t > h.rec.t_ns:
            h.rec.t_ns = self._late_t
        out.insert(i, h.rec)
        if i != h.first:
            self.stats["deletes_moved"] += 1
        for other in self._late.values():
            if other.first >= i:
                other.first += 1
            if other.anchor >= i:
                other.anchor += 1
            elif other.obj == h.d:
                other.anchor = i + 1  # the directory's own delete comes after what was deleted in it

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
        if self._uncertain or self._settling:
            if self._is_uncertain(prefix):
                self._held_back(bit, nm, is_dir, obj, prefix)
                return
            if obj is not None and obj in self._uncertain and nm not in (b".", b""):
                self._where_it_was(obj, prefix + nm, t, out)
        if nm in (b".", b""):  # an event on the directory ``d`` itself
            path = prefix[:-1] if len(prefix) > 1 else prefix
            oid = d.hex()
            if bit == FAN_MOVE_SELF:
                self._move_self(d, path, t, mask, pid, merged, out)
            elif bit & SCAN_BITS and pid == self.own_pid and self.own_scans.expected and \
                    self.own_scans.own(bit, path):
                return  # fsnorm's own listing of the directory
            elif bit == FAN_DELETE_SELF:
                m.push(FanRec("delete_self", path, True, t, mask, b"", merged, pid, oid), out)
                end = FanRec("watch_end", path, True, t, mask, b"", (), pid, oid)
                end.message = "watch ended: the directory was deleted"
                m.push(end, out)
                if not merged or self.cache.key(_parent(path)) is None:
                    # Merged (with its MOVE_SELF, say), the event stands where the first of its bits happened,
                    # and the directory may have been renamed after that: its parent's DELETE, which comes in
                    # its place, forgets it (forgetting it here left what is below it at a stale path).
                    self.cache.remove(d)
            else:
                m.push(FanRec(kind, path, is_dir, t, mask, b"", merged, pid, oid), out)
            return
        path = prefix + nm
        if not is_dir and nm[:1] == b"#" and self._tmpfile(bit, path, nm):
            return
        if self._gone and self._repeats_rescan(bit, path):
            return
        if bit == FAN_CREATE:
            if self._synthesized and self._seen_by_scan(FAN_CREATE, d, nm):
                return
        elif bit == FAN_DELETE and self._synthesized:
            self._seen_by_scan(FAN_DELETE, d, nm)
        rec = FanRec(kind, path, is_dir, t, mask, b"", merged, pid, oid)
        rec.dir_key = d
        if bit == FAN_DELETE and merged and obj is not None and self.use_rename:
            self._hold_delete(rec, obj, d, nm, out)
            return
        m.push(rec, out)
        if is_dir and obj is not None:
            if bit == FAN_CREATE:
                self._dir_arrived(obj, path, moved_in=False)
            elif bit == FAN_DELETE:
                self.cache.remove(obj)
                if obj in self._uncertain or obj in self._settling:
                    self._uncertain.pop(obj, None)
                    self._settling.pop(obj, None)
                    self.cache.remove_below(path)

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
        cached_src, cached_dst = src, dst  # the cache's view, which the upkeep below follows
        if self._uncertain or self._settling:
            src_held = bool(src) and d is not None and self._is_uncertain(self.cache.prefix_by_key[d])
            dst_held = bool(dst) and d2 is not None and self._is_uncertain(self.cache.prefix_by_key[d2])
            if src_held or dst_held:
                self._rename_held_back(ev, t, merged, src if not src_held else b"", dst if not dst_held else b"",
                                       cached_src, cached_dst, out)
                return
            if src and obj is not None and obj in self._uncertain:
                self._where_it_was(obj, src, t, out)
                cached_src = src
        arrived = False
        if self._gone and src and self._is_gone(src):
            # Its source was reported deleted by a rescan that came after this rename: what it says about the
            # source is said; its destination too if the rescan reported it (or it left the tree). Else it
            # arrives at its destination (a directory is listed there, as one moved in).
            self.stats["dropped_rescanned"] += 1
            src = b""
            if not dst or (d2, nm2) in self._synthesized:
                if is_dir and obj is not None:
                    self._dir_moved(obj, cached_src, cached_dst)
                return
            arrived = True
        if is_dir and obj is not None and cached_src and cached_dst and self._cycle(obj, cached_src, cached_dst) \
                and Flag.MERGED not in merged:
            merged = (*merged, Flag.MERGED)
        if not src and not dst and why_src is None and why_dst is None:
            # Entirely outside the tree (filesystem mark) or unresolvable there.
            self.stats["dropped_outside" if self.mark_mode == "inode" or d in self._outside or d in self._retired
                       else "dropped_unresolved"] += 1
            return
        unwatched = (not src and why_src is None) or (not dst and why_dst is None)
        unresolved = why_src is not None or why_dst is not None
        flags = ((Flag.UNWATCHED,) if unwatched else ()) + merged + ((Flag.UNRESOLVED,) if unresolved else ())
        rec = FanRec("rename", src, is_dir, t, mask, dst, flags, pid, None if obj is None else obj.hex())
        rec.dir_key, rec.dst_dir_key = (d if src else None), (d2 if dst else None)
        if unresolved:
            rec.message = "could not resolve " + "; ".join(
                f"{side} {why}" for side, why in (("source", why_src), ("destination", why_dst)) if why)
            self.stats["unresolved_records"] += 1
        if self._synthesized and src and d is not None:
            self._seen_by_scan(FAN_RENAME, d, nm)
        if not is_dir and (nm[:1] == b"#" or nm2[:1] == b"#"):
            self._tmpfile_renamed(src, dst, nm2)
        self.matcher.push(rec, out)
        if is_dir and obj is not None:
            self._dir_moved(obj, cached_src, cached_dst)
            if arrived and dst:
                self._dir_arrived(obj, dst, moved_in=True)

    # -- directories renamed back and forth (module docstring) --------------------------------------------

    _why_uncertain = "renamed back and forth by events the kernel may have merged"

    def _cycle(self, key: bytes, src: bytes, dst: bytes) -> bool:
        """Note a directory rename of this window; True if the directory is (now) uncertain: it went back to
        a place it left within the merge window of the read that brought that earlier rename, or was
        uncertain already.

        Only an unread event absorbs a later identical one, so a rename hidden in the earlier one (``dst ->
        ... -> src`` again) happened before the read that delivered it, and this rename back, which came before
        the hidden one, was queued before that read too: it is in that read or in the backlog it left. A
        rename back read after that window is no cycle the kernel can have hidden. Not the events since the
        queue was last seen empty: under a filesystem mark on a busy filesystem the queue is never empty, and
        every exchange of two directories repeated promptly, each read long before the next one, made them
        uncertain and held back what happened in them (tests/test_truth.py, under load)."""
        start = self._event_at
        if len(self._left) > _NEGATIVE_CACHE:  # a long window: forget the moves whose windows are over
            self._left = {k: live for k, places in self._left.items()
                          if (live := {p: end for p, end in places.items() if end is None or end > start})}
            if len(self._left) > _NEGATIVE_CACHE:
                self._left.clear()
        left = self._left.setdefault(key, {})
        if key not in self._uncertain and dst in left:
            end = left[dst]  # this rename's position is ``start``: queued before that read if below ``end``
            if end is None or end > start:
                self._uncertain[key] = None
        window = self._batch_window
        prev = left.get(src, 0)
        left[src] = None if window is None or prev is None else max(window, prev)
        return key in self._uncertain

    def _is_uncertain(self, prefix: bytes) -> bool:
        """True if the directory with this cached ``path + "/"`` is, or is below, an uncertain directory. One
        that a rename replaced (displaced in the cache, gone: it was empty) no longer covers its old path, where
        another directory is now (corpus fanotify-2ada66068d1e: ``mkdir d1/a`` in the d1 that replaced it was
        held back and never reported)."""
        cache = self.cache
        prefixes = cache.prefix_by_key
        for keys in (self._uncertain, self._settling):
            for key in keys:
                top = prefixes.get(key)
                if top is not None and prefix.startswith(top) and cache.key(top[:-1] or b"/") == key:
                    return True
        return False

    def _held_back(self, bit: int, nm: bytes, is_dir: bool, obj: bytes | None, prefix: bytes) -> None:
        """An event below a directory whose place is uncertain: not reported (where it happened cannot be
        known; the rescan after the directory is placed says what is there). The cache still follows the
        directories created and deleted there, so that events below them are known to be held back too; a
        directory created there gets no ``Watch`` (its path is a guess): the rescan marks and lists it."""
        self.stats["held_back"] += 1
        if not is_dir or obj is None or nm in (b".", b""):
            # The uncertain directory's own DELETE_SELF (or one below it) is not acted on: its parent's DELETE
            # forgets it in its place (a merged DELETE_SELF stands where an earlier bit happened).
            return
        if bit == FAN_CREATE:
            path = prefix + nm
            if self._excluded(path):
                self._mark_outside(obj)
            else:
                self._retired.discard(obj)
                self._outside.pop(obj, None)
                self.cache.add(obj, path)
        elif bit == FAN_DELETE:
            self.cache.remove(obj)

    def _rename_held_back(self, ev: raw.FanotifyEvent, t: int, merged: tuple[str, ...], src: bytes, dst: bytes,
                          cached_src: bytes, cached_dst: bytes, out: list[Rec]) -> None:
        """A rename with a side below an uncertain directory (that side is ``b""`` here). Only the certain
        side is reported, as a one-sided rename (flag ``unwatched``, with a message): moved out of the uncertain
        subtree, it appears at ``dst`` (a directory is watched and listed there, like one moved in); moved
        into it, it is gone from ``src`` (the rescan reports it where it is). Both sides uncertain: nothing is
        reported. The cache follows the move either way."""
        mask, pid, d, nm, _d2, nm2, obj, _ = ev
        is_dir = bool(mask & FAN_ONDIR)
        self.stats["held_back"] += 1
        oid = None if obj is None else obj.hex()
        if dst:
            rec = FanRec("rename", b"", is_dir, t, mask, dst, (Flag.UNWATCHED, *merged), pid, oid)
            rec.message = f"moved out of a directory whose place is uncertain ({self._why_uncertain}): its " \
                "rescan reports what left"
            if not is_dir and nm2[:1] == b"#":
                self.tmpfiles.appeared(dst, nm2)
            self.matcher.push(rec, out)
            self._fresh_out = rec
        elif src:
            if self._synthesized and d is not None:
                self._seen_by_scan(FAN_RENAME, d, nm)
            rec = FanRec("rename", src, is_dir, t, mask, b"", (Flag.UNWATCHED, *merged), pid, oid)
            rec.message = f"moved into a directory whose place is uncertain ({self._why_uncertain}): its " \
                "rescan reports it there"
            self._push_left(rec, out)
        if not is_dir or obj is None:
            return
        cache = self.cache
        if cached_src and cached_dst:
            if not self._follow(obj, cached_src, cached_dst):
                cache.arrive(obj, cached_dst)  # never learned: known there now (listed there, or by the rescan)
            if dst:
                self._dir_arrived(obj, dst, moved_in=True)  # its content was not reported: list it there
        elif cached_src:
            self._retire(cached_src, obj)  # left the tree from below the uncertain directory
        elif cached_dst and not self._excluded(cached_dst):
            self._retired.discard(obj)
            self._outside.pop(obj, None)
            cache.arrive(obj, cached_dst)  # moved in from outside: the rescan marks and lists it

    def _where_it_was(self, key: bytes, path: bytes, t: int, out: list[Rec]) -> None:
        """An event in a certain directory names the uncertain directory ``key`` at ``path``: that is where it
        was then. If the records so far put it elsewhere (a rename of it merged away), a ``synthesized`` +
        ``merged`` rename says where it went, before the event's own record."""
        old = self.cache.path(key)
        if old is None or old == path:
            return
        rec = FanRec("rename", old, True, t, 0, path, (Flag.MERGED, Flag.SYNTHESIZED), None, key.hex())
        rec.message = "where the directory was at the next event naming it: its renames were merged by the kernel"
        self.matcher.push(rec, out)
        self.cache.move(old, path, key)

    def _placed_again(self, item: raw.HandleResolved, out: list[Rec]) -> None:
        """An uncertain directory resolved while the queue was empty: where it is now is where it was at the
        last event read. Move its subtree there (a synthesized rename says so if that is news), then a
        ``rescan`` record and a :class:`~.actions.Rescan` action: the events held back below it are replaced by
        what a listing finds, diffed against what the records said (other uncertain directories below it are
        covered by the same rescan). One placed while it is below another uncertain directory is covered by
        that one's rescan: it only moves in the cache (its path there may be one the records never had: the
        renames inside the other one were held back; corpus fanotify-2ec8fcccaddb, where its rescan listed
        entries under a directory the records did not have)."""
        key = item.fid
        del self._uncertain[key]
        old = self.cache.path(key)
        new = item.path if item.status == "ok" and item.path is not None and not self._excluded(item.path) \
            else b""
        if old is None or item.status not in ("ok", "outside"):
            # Gone (stale, deleted): a directory is deleted empty, by an rmdir or a rename onto it, and the
            # record of either was given in its place (the parent's DELETE, the rename that replaced it).
            self._resolved(item)
            return
        if new and self._uncertain and self._is_uncertain(new.rpartition(b"/")[0] + b"/"):
            self.stats["held_back"] += 1
            self.cache.move(old, new, key)
            return
        m = self.matcher
        m.begin(item.t_ns)
        if old != new:
            flags = ((Flag.UNWATCHED,) if not new else ()) + (Flag.MERGED, Flag.SYNTHESIZED)
            rec = FanRec("rename", old, True, item.t_ns, 0, new, flags, None, key.hex())
            rec.message = f"where the directory is now: its renames were merged by the kernel ({item.status})"
            m.push(rec, out)
            if new:
                self.cache.move(old, new, key)
            else:
                self._retire(old, key)
        if new:
            below = new + b"/"
            for other in [k for k, _ in self._uncertain.items()
                          if (p := self.cache.path(k)) is not None and p.startswith(below)]:
                del self._uncertain[other]
            note = Rec.note("rescan", new, True, item.t_ns, 0, flags=(Flag.SYNTHESIZED,),
                            message=self._why_rescan, source="fanotify")
            m.push(note, out)
            self._rescan_requests.append((new, self._why_rescan))
            if self._backlog:
                # Events queued before the last read are still unread: some may precede a rename of this
                # directory that the kernel merged into an event that read delivered (the answer's path was not
                # true for them), and the rescan's listing, made after them, says what they did. Held back
                # below it until they are read (tests/data/fanotify-away-noise.fsncap.gz).
                self._settling[key] = None
                self._stale_left = max(self._backlog, self._stale_left)
        m.end(item.t_ns, False, out)

    _why_rescan = "rescan of a directory renamed back and forth before fsnorm read (the kernel may have " \
        "merged its events): what happened below it is reported as found now"

    def _settled(self) -> None:
        """The events queued before the answers of the settling directories are read (or the queue was seen
        empty): what happens below them is reported again."""
        self._settling.clear()
        self._stale_left = 0

    def _follow(self, obj: bytes | None, src: bytes, dst: bytes) -> bool:
        """The cache's part of the rename of a directory from ``src`` to ``dst`` (its sides' paths in the cache):
        the directory moves there with what is below it, found by its handle ``obj`` wherever the cache has it
        (the subtree that the first half of an exchange displaced, moved by the second half). What the cache
        holds at ``src`` moves only if it is that directory. If it is another one, the renamed directory was
        never learned (it came in with a directory not listed yet, or from below an uncertain one) and the
        other one is the exchange's other side, which took that place with the first half: it stays (corpus
        fanotify-c504c54a1a54: moved away, an uncertain directory was then forgotten and never rescanned;
        fanotify-00b5f85b8e28: a directory taken below an uncertain one, never listed; fanotify-bbee3941fc44).
        False if the directory was not known (the caller places it, with ``DirCache.arrive``: what the cache
        has at ``dst`` is displaced, not forgotten, for the same reason). Without a handle, the path is all
        there is."""
        cache = self.cache
        if obj is None:
            if cache.key(src) is not None:
                cache.move(src, dst)
            return False
        old = cache.path(obj)
        if old is None:
            return False
        cache.move(old, dst, obj)
        if cache.path(obj) != dst:
            cache.add(obj, dst)
        return True

    def _dir_moved(self, key: bytes, src: bytes, dst: bytes) -> None:
        """Keep the cache in step with a directory rename (either side may be outside the tree): a directory
        the cache did not know is listed where it went, like one moved in."""
        if dst and self._excluded(dst):
            dst = b""
        if src and dst:
            if not self._follow(key, src, dst):
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
        if moved_in:
            self.cache.arrive(key, path)  # what the cache has there moves on by its key, or ends (_follow)
        else:
            self.cache.add(key, path)
        self._new_dirs.append((key, moved_in))
        if moved_in:
            self._fresh.append(key)
            if self.mark_mode == "filesystem":
                self._arrived.add(key)

    def _retire(self, path: bytes, key: bytes | None = None) -> None:
        """The directory ``key`` (or, without a handle, what the cache has at ``path``) left the tree with its
        subtree: forgotten, its events dropped. By its handle, as :meth:`_follow` moves it: after the first
        half of an exchange across the tree's edge, ``path`` holds the directory that came in."""
        gone = self.cache.remove_below(path) if key is None else self.cache.remove_subtree(key)
        if key is not None and key not in gone:
            gone.append(key)
        if self._uncertain or self._settling:
            for k in gone:
                self._uncertain.pop(k, None)
                self._settling.pop(k, None)
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
            self._seen_by_scan(FAN_MOVED_FROM, d, nm)
        if obj is None:
            # No handle to join by (a kernel without FAN_REPORT_TARGET_FID): one-sided when the window ends.
            obj = b"nokey:%d:%d" % (t, id(ev))
        half = FanHalf(path, is_dir, t, mask, obj, pid, obj.hex())
        half.dir_key = d
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
        rec.dst_dir_key = d
        if not isinstance(rec, FanHalf):  # not joined: a new record from the matcher, one-sided
            rec.source = "fanotify"
            rec.pid = pid
            rec.object_id = oid
        if merged and Flag.MERGED not in rec.flags:
            rec.flags = (*rec.flags, Flag.MERGED)
        if is_dir and obj is not None:
            self._dir_moved(obj, rec.path, path)
