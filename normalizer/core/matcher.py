"""The sans-IO rename matcher: joins the two halves of a rename and keeps the kernel's order.

No I/O and no clock of its own (the h11 way): a caller feeds records already resolved to paths, with the time
of the read that delivered them and whether the kernel queue was empty after it, and gets records back.

Rules (README "Matching rules" explains the why):

* A first half (``MOVED_FROM``) waits under its key (the inotify cookie; for fanotify without FAN_RENAME, the
  moved object's handle). The record it becomes keeps the first half's place in the output.
* The second half with a waiting key completes it: the joined rename leaves at once (if nothing older waits).
* A second half with no waiting key is a one-sided rename (empty src) at once.
* A waiting half with no partner becomes one-sided (empty dst) once everything the kernel queued up to
  ``window_ns`` after its read has been read (the queue was seen empty then, or the backlog seen then has been
  consumed) and the partner was not in it; or ``max_wait_ns`` after its read in any case; or on overflow, on
  cookie reuse, when the pending table is full (oldest first) and on close.
* Strict order (default): every record waits behind the oldest unresolved half. Relaxed order emits each record
  as soon as it is final.

Hot path note: :meth:`Matcher.push` and :meth:`Matcher.push_half` are called once per kernel event. They stay
flat, bind attributes to locals and avoid sorted-container work per event: deadlines are registered once per
*batch* (all halves of one read share a read time), in a ``SortedList`` keyed by read time.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from typing import TypedDict

from mypy_extensions import mypyc_attr
from sortedcontainers import SortedList

from ..records import DirKey, Flag, Rec

#: Default window for a one-sided move, in ns. See README "Choosing the window": the worst split gap measured
#: between halves of one rename under storm is 3.7 ms; 20 ms is 5x that and 25x below watchdog's 0.5 s.
DEFAULT_WINDOW_NS = 20_000_000
#: A half never waits longer than this, even while the queue never drains (a reader that far behind has
#: overflowed with the default queue size long before).
DEFAULT_MAX_WAIT_NS = 1_000_000_000
#: Pending halves kept at most; beyond it the oldest becomes one-sided (``evicted``).
DEFAULT_MAX_PENDING = 65_536
#: Records held behind an unresolved half at most (strict order); beyond it the oldest half is evicted.
DEFAULT_MAX_HELD = 262_144
#: Read barriers kept at most (one per read with a backlog; they are consumed within a few reads).
_MAX_BARRIERS = 4096
#: Flags are kept in :class:`Flag` order (a fanotify half may carry ``merged`` before its reason comes).
_FLAG_RANK = {str(flag): i for i, flag in enumerate(Flag)}


def ordered_flags(flags: tuple[str, ...]) -> tuple[str, ...]:
    """``flags`` in :class:`~normalizer.records.Flag` order (unknown ones last, in their order)."""
    if len(flags) < 2:
        return flags
    return tuple(sorted(flags, key=lambda f: _FLAG_RANK.get(str(f), len(_FLAG_RANK))))


@mypyc_attr(allow_interpreted_subclasses=True)
class Half(Rec):
    """A rename record still missing a side. ``waiting`` turns False once it is final."""

    __slots__ = ("key", "waiting")

    def __init__(self, path: bytes, is_dir: bool, t_ns: int, mask: int, cookie: int | None, key: Hashable,
                 dir_key: DirKey = None) -> None:
        # Spelled out instead of calling Rec.__init__: this runs once per rename in the hot loop.
        self.dir_key = dir_key
        self.dst_dir_key = None
        self.kind = "rename"
        self.path = path
        self.dst = b""
        self.is_dir = is_dir
        self.t_ns = t_ns
        self.mask = mask
        self.cookie = cookie
        self.flags = ()
        self.source = "inotify"
        self.pid = None
        self.object_id = None
        self.message = None
        self.key = key
        self.waiting = True


class MatcherSettings(TypedDict, total=False):
    """The matcher settings a normalizer passes through unchanged (missing ones take the matcher's defaults),
    so they are written down once, here, instead of in every constructor on the way."""

    window_ns: int
    max_wait_ns: int
    max_pending: int
    strict_order: bool


class Matcher:
    """Joins rename halves by key; see the module docstring for the rules."""

    def __init__(
        self,
        *,
        window_ns: int = DEFAULT_WINDOW_NS,
        max_wait_ns: int = DEFAULT_MAX_WAIT_NS,
        max_pending: int = DEFAULT_MAX_PENDING,
        max_held: int = DEFAULT_MAX_HELD,
        strict_order: bool = True,
    ) -> None:
        if window_ns < 0 or max_wait_ns < window_ns:
            raise ValueError("need 0 <= window_ns <= max_wait_ns")
        if max_pending < 1 or max_held < 1:
            raise ValueError("max_pending and max_held must be at least 1")
        self.window_ns = window_ns
        self.max_wait_ns = max_wait_ns
        self.max_pending = max_pending
        self.max_held = max_held
        self.strict_order = strict_order
        self._pending: dict[Hashable, Half] = {}
        #: The pending table itself, read (never written) by the normalizer's hot loop.
        self.pending_table = self._pending
        self._held: deque[Rec] = deque()
        #: The held queue itself, for the normalizer's hot loop: while it is empty a final record needs no
        #: ``push`` call and goes straight to the output.
        self.held_queue = self._held
        self._deadlines: SortedList = SortedList()  # (read t_ns, seq, [Half, ...]) per batch
        self._seq = 0
        self._batch_halves: list[Half] = []
        self._batch_t = 0
        self._overflow_t: int | None = None
        #: Read-position bookkeeping (see _note_read): bytes consumed, (time, position) barriers, safe time.
        self._read_pos = 0
        self._barriers: deque[tuple[int, int]] = deque()
        self._safe_t = 0
        #: Overflow records seen so far.
        self.overflows = 0
        #: High-water mark of the pending table (reported by benchmarks and the soak).
        self.pending_high_water = 0

    # -- state a caller may look at ------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Halves waiting for their partner."""
        return len(self._pending)

    @property
    def held(self) -> int:
        """Records held behind an unresolved half (strict order)."""
        return len(self._held)

    @property
    def after_overflow(self) -> bool:
        return self._overflow_t is not None

    def is_waiting(self, key: Hashable) -> bool:
        return key in self._pending

    def next_deadline(self) -> int | None:
        """The earliest time at which :meth:`advance` (with the queue empty) can resolve something."""
        if self._overflow_t is not None:
            return self._overflow_t + self.window_ns
        # Entries whose halves are all final can never expire anything: drop them from the front as they are
        # found (as _evict_oldest does). Called after every feed, this keeps the call O(1) amortized: reads of
        # a few events each leave one entry per rename split between two reads, which used to be scanned
        # again on every read until its window passed (quadratic under a storm; bench_liveloop).
        deadlines = self._deadlines
        while deadlines:
            t, _, halves = deadlines[0]
            for h in halves:
                if h.waiting:
                    return int(t) + self.window_ns
            deadlines.pop(0)
        return None

    # -- feeding -------------------------------------------------------------------------------------------

    def begin(self, t_ns: int) -> None:
        """Start a batch: every record pushed until :meth:`end` was delivered by one read at ``t_ns``."""
        self._batch_t = t_ns
        self._batch_halves = []

    def push(self, rec: Rec, out: list[Rec]) -> None:
        """A record that is final as it is (anything but a rename half)."""
        if self._held:
            self._held.append(rec)
            if len(self._held) > self.max_held:
                self._evict_head(out)
        else:
            out.append(rec)

    def push_from(self, half: Half, out: list[Rec]) -> None:
        """A first half (``MOVED_FROM``): wait for its partner under ``half.key``."""
        pending = self._pending
        key = half.key
        old = pending.get(key)
        if old is not None:
            self._finish(old, Flag.COOKIE_REUSED, out)
        pending[key] = half
        self._batch_halves.append(half)
        if self.strict_order:
            self._held.append(half)
        n = len(pending)
        if n > self.max_pending:
            self._evict_oldest(out)
            n -= 1
        if n > self.pending_high_water:
            self.pending_high_water = n

    def push_to(self, key: Hashable, path: bytes, is_dir: bool, t_ns: int, mask: int, cookie: int | None,
                out: list[Rec]) -> Rec:
        """A second half (``MOVED_TO``) of ``path``. Returns the record it completed or became."""
        half = self._pending.pop(key, None)
        if half is None:
            flags = (Flag.UNWATCHED, Flag.AFTER_OVERFLOW) if self._overflow_t is not None else (Flag.UNWATCHED,)
            rec = Rec("rename", b"", is_dir, t_ns, mask, cookie, path, flags)
            self.push(rec, out)
            return rec
        half.dst = path
        half.mask |= mask
        half.waiting = False
        if self.strict_order:
            self._flush_head(out)
        else:
            out.append(half)
        return half

    def end(self, t_ns: int, drained: bool, out: list[Rec], *, backlog: int | None = None,
            consumed: int = 0) -> None:
        """End the batch begun at ``t_ns``; register its halves' deadline and expire what is due.

        ``drained``: the kernel queue was empty right after the read. ``backlog`` (optional) is how much was
        still queued then and ``consumed`` how much this read took, in one unit (bytes for inotify): with them
        the matcher learns when everything queued before ``t_ns`` has been read even while the queue never
        drains, so a lone half's window is not stretched by a busy queue."""
        if self._batch_halves:
            self._seq += 1
            self._deadlines.add((self._batch_t, self._seq, self._batch_halves))
            self._batch_halves = []
        self._expire(self._note_read(t_ns, drained, backlog, consumed), t_ns, out)

    def overflow(self, rec: Rec, out: list[Rec]) -> None:
        """The kernel queue overflowed: every waiting half is one-sided now; then the overflow record."""
        for half in list(self._pending.values()):
            self._finish(half, Flag.OVERFLOW, out)
        self.push(rec, out)
        self._overflow_t = self._batch_t
        self.overflows += 1

    def resolve(self, key: Hashable, reason: str, out: list[Rec]) -> Rec | None:
        """Make the half waiting under ``key`` one-sided now (the caller knows its partner will not come)."""
        half = self._pending.get(key)
        if half is None:
            return None
        self._finish(half, reason, out)
        return half

    def advance(self, now_ns: int, out: list[Rec], drained: bool = True) -> None:
        """The clock moved to ``now_ns`` with no event read; ``drained`` says the kernel queue was empty."""
        self._expire(self._note_read(now_ns, drained, None, 0), now_ns, out)

    def close(self, out: list[Rec]) -> None:
        """The stream ends: every waiting half is one-sided (``shutdown``), and everything held leaves."""
        for half in list(self._pending.values()):
            self._finish(half, Flag.SHUTDOWN, out)
        self._flush_head(out)
        self._deadlines.clear()
        self._overflow_t = None

    # -- internals -----------------------------------------------------------------------------------------

    def _finish(self, half: Half, reason: str, out: list[Rec]) -> None:
        """Make a waiting half final as a one-sided rename (dst empty)."""
        del self._pending[half.key]
        half.waiting = False
        half.flags = ordered_flags((*half.flags, reason)) if half.flags else (reason,)
        if self.strict_order:
            self._flush_head(out)
        else:
            out.append(half)

    def _flush_head(self, out: list[Rec]) -> None:
        held = self._held
        while held:
            if held[0].waiting:
                return
            out.append(held.popleft())

    def _note_read(self, t_ns: int, drained: bool, backlog: int | None, consumed: int) -> int:
        """Advance the read position; return the latest time before which every queued event has been read.

        After a read at time t with B still queued, everything queued before t lies within the next B of the
        stream: once the read position passes that barrier, t is safe. A drained read makes t safe at once."""
        self._read_pos += consumed
        barriers = self._barriers
        if drained:
            barriers.clear()
            self._safe_t = max(self._safe_t, t_ns)
        else:
            pos = self._read_pos
            while barriers and barriers[0][1] <= pos:
                self._safe_t = max(self._safe_t, barriers.popleft()[0])
            if backlog is not None:
                if len(barriers) >= _MAX_BARRIERS:  # nonsense input (a corrupt capture): keep the newest
                    barriers.popleft()
                barriers.append((t_ns, pos + backlog))
        return self._safe_t

    def _expire(self, safe_t: int, now: int, out: list[Rec]) -> None:
        """Expire halves whose window passed by ``safe_t`` (everything queued before it was read) or whose
        ``max_wait`` passed by ``now``."""
        window, max_wait = self.window_ns, self.max_wait_ns
        deadlines = self._deadlines
        while deadlines:
            t, _, halves = deadlines[0]
            if t + window > safe_t and t + max_wait > now:
                break
            deadlines.pop(0)
            for half in halves:
                if half.waiting:
                    self._finish(half, Flag.TIMEOUT, out)
        overflow_t = self._overflow_t
        if overflow_t is not None and (overflow_t + window <= safe_t or overflow_t + max_wait <= now):
            self._overflow_t = None

    def _evict_oldest(self, out: list[Rec]) -> None:
        deadlines = self._deadlines
        while deadlines:  # entries whose halves are all final are useless: drop them on the way
            for half in deadlines[0][2]:
                if half.waiting:
                    self._finish(half, Flag.EVICTED, out)
                    return
            deadlines.pop(0)
        for half in self._batch_halves:
            if half.waiting:
                self._finish(half, Flag.EVICTED, out)
                return

    def _evict_head(self, out: list[Rec]) -> None:
        head = self._held[0]
        if isinstance(head, Half) and head.waiting:  # always true: a final head would have left
            self._finish(head, Flag.EVICTED, out)
