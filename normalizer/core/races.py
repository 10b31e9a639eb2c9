"""Race statistics of a raw inotify stream: how rename halves fall across reads, streaming and bounded.

This is the one implementation behind both the pairing-race benchmark (benchmarks/scoring.py) and
``fsnorm stats``. It consumes reads in order (the read's time, whether the kernel queue was empty right after
it, its events) and keeps counters and bounded structures only:

* ``pairs``: MOVED_FROM/MOVED_TO pairs (same cookie, FROM first);
* ``between``: pairs with other events between the halves; ``between_hist`` how many (``{count: pairs}``),
  ``between_kinds`` what they were (from the reads holding the last :data:`RING` events: longer stretches count
  their last :data:`RING` events only, and ``between_kinds_truncated`` says how many pairs that was);
* ``split``: pairs whose halves came in different reads; ``split_drained``: of those, the ones where the queue
  was empty right after the read that delivered the FROM (the TO was not even queued yet; only these need a
  matcher to wait); ``gap_*``: time between the two reads, in microseconds (exact quantiles up to 65536 gaps,
  then within 1%);
* ``lost_at_window_ms``: drained splits with a gap above each window (what a matcher waiting that long would
  have reported as two one-sided renames: an upper bound, since a reader's gap includes its own wake-up time);
* orphans: halves without a partner, and how many lie within :data:`NEAR_OVERFLOW` events of an overflow. A
  FROM still unpaired after ``max_waiting`` later FROMs is counted an orphan then (a TO that still comes for it
  counts as an orphan TO), so a stream of lone FROMs cannot grow the table.

Pure code: no I/O, no clock.
"""

from __future__ import annotations

from collections import Counter, _count_elements, deque  # type: ignore[attr-defined]
from collections.abc import Iterable, Iterator, Sequence
from operator import itemgetter
from typing import Any

from . import raw
from .sketch import QuantileSketch

#: Windows (ms) for which ``fsnorm stats`` counts the split pairs a matcher with that window would lose.
WINDOWS_MS = (0.1, 1.0, 5.0, 20.0, 50.0)
#: An orphan half within this many events of an overflow counts as "around" it.
NEAR_OVERFLOW = 64
#: Events remembered (as the reads that hold them) for ``between_kinds``.
RING = 4096
#: ``between_hist`` keeps counts above this one in power-of-two classes (bounded number of keys).
BETWEEN_EXACT = 1024
#: Split gaps returned as samples (for histograms).
MAX_SAMPLES = 1000
#: FROMs waiting for their TO at most; the oldest beyond it is counted an orphan (about 300 bytes each).
MAX_WAITING = 16384
#: Distinct masks counted apart (then by kind name); overflow places kept.
MAX_MASKS = 256
MAX_PLACES = 100
_mask_of = itemgetter(1)
_OVERFLOW, _FROM = raw.IN_Q_OVERFLOW, raw.IN_MOVED_FROM
_INTERESTING = raw.IN_Q_OVERFLOW | raw.IN_MOVED_FROM | raw.IN_MOVED_TO

_KIND_BITS = ((raw.IN_CREATE, "create"), (raw.IN_DELETE, "delete"), (raw.IN_MODIFY, "modify"),
              (raw.IN_CLOSE_WRITE, "close_write"), (raw.IN_ATTRIB, "attrib"), (raw.IN_MOVED_FROM, "moved_from"),
              (raw.IN_MOVED_TO, "moved_to"), (raw.IN_MOVE_SELF, "move_self"), (raw.IN_DELETE_SELF, "delete_self"),
              (raw.IN_Q_OVERFLOW, "overflow"), (raw.IN_IGNORED, "ignored"))


def mask_name(mask: int) -> str:
    """The one kind name of an inotify mask (the first known bit, in a fixed order), else ``other``."""
    for bit, name in _KIND_BITS:
        if mask & bit:
            return name
    return "other"


class RaceCounter:
    """Feed reads with :meth:`feed_read`; :meth:`result` gives the statistics (callable at any time)."""

    def __init__(self, *, windows_ms: Sequence[float] = WINDOWS_MS, max_waiting: int = MAX_WAITING,
                 exact_limit: int = 65536) -> None:
        self.windows_ms = tuple(windows_ms)
        self.max_waiting = max_waiting
        self.pos = 0
        self.reads = 0
        self.pairs = 0
        #: Events by exact mask (at most MAX_MASKS masks; further ones counted by kind name in ``kinds_other``).
        self.masks: dict[int, int] = {}
        self.kinds_other: Counter[str] = Counter()
        #: The first MAX_PLACES overflows: (event index, read time).
        self.overflow_at: list[tuple[int, int]] = []
        # The last reads, holding at least the last RING events (for the kinds of events between two halves).
        self._recent_reads: deque[tuple[int, Sequence[raw.InotifyEvent]]] = deque()
        self._recent_events = 0
        # cookie -> (FROM's event index, read index, read time, queue drained after that read), in index order.
        self._waiting: dict[int, tuple[int, int, int, bool]] = {}
        self._near: set[int] = set()  # indexes of waiting FROMs that an overflow followed closely
        self._orphans_recent: deque[int] = deque()  # orphaned FROMs an overflow may still follow closely
        self._last_overflow: int | None = None
        self.between_hist: dict[int, int] = {}
        self.between_kinds: Counter[str] = Counter()
        self.between_kinds_truncated = 0
        self.gaps = QuantileSketch(exact_limit=exact_limit)
        self.gaps_drained = QuantileSketch(exact_limit=exact_limit)
        self.lost = [0] * len(self.windows_ms)
        self._window_ns = [w * 1e6 for w in self.windows_ms]
        self.overflows = 0
        self.orphan_from = self.orphan_from_near = 0
        self.orphan_to = self.orphan_to_near = 0

    def feed_read(self, t_ns: int, drained: bool, events: Sequence[raw.InotifyEvent]) -> int:
        """One read() of the stream: its time, whether the queue was empty right after it, its events.
        Returns how many overflow events it held.

        Hot path (every event of a capture goes through it): masks are counted in C
        (``collections._count_elements``), and the Python loop does one test per event; a pair whose halves
        are adjacent in one read costs two dict operations and no call."""
        ri = self.reads
        self.reads += 1
        base = self.pos
        masks = self.masks
        _count_elements(masks, map(_mask_of, events))
        if len(masks) > MAX_MASKS:
            self._fold_masks()
        recent = self._recent_reads
        recent.append((base, events))
        self._recent_events += len(events)
        while self._recent_events - len(recent[0][1]) >= RING:
            self._recent_events -= len(recent.popleft()[1])
        waiting = self._waiting
        max_waiting = self.max_waiting
        overflows = self.overflows
        adjacent = 0
        pos = base - 1
        for _wd, mask, cookie, _name in events:
            pos += 1
            if not mask & _INTERESTING:
                continue
            if mask & _OVERFLOW:
                self._overflow(pos, t_ns)
            elif mask & _FROM:
                old = waiting.pop(cookie, None)
                if old is not None:
                    self._orphan(old[0], pos)
                elif len(waiting) >= max_waiting:
                    self._orphan(waiting.pop(next(iter(waiting)))[0], pos)
                waiting[cookie] = (pos, ri, t_ns, drained)
            else:
                w = waiting.pop(cookie, None)
                if w is None:
                    self._orphan_to(pos)
                elif w[0] == pos - 1 and w[1] == ri and not self._near:
                    adjacent += 1
                else:
                    self._pair(w, pos, ri, t_ns)
        self.pos = base + len(events)
        if adjacent:
            self.pairs += adjacent
            self.between_hist[0] = self.between_hist.get(0, 0) + adjacent
        return self.overflows - overflows

    def _fold_masks(self) -> None:
        """Too many distinct masks (a damaged or hostile capture): count them by kind name from now on."""
        for mask, n in self.masks.items():
            self.kinds_other[mask_name(mask)] += n
        self.masks.clear()

    def _masks_between(self, start: int, end: int) -> Iterator[int]:
        """The masks of the events at indexes [start, end) still in the recent reads."""
        for base, events in self._recent_reads:
            if base + len(events) <= start:
                continue
            if base >= end:
                break
            for i in range(max(start - base, 0), min(end - base, len(events))):
                yield events[i][1]

    def _orphan(self, from_pos: int, now: int) -> None:
        """A FROM that will get no TO (its cookie came again, or the table is full)."""
        self.orphan_from += 1
        if from_pos in self._near:
            self._near.discard(from_pos)
            self.orphan_from_near += 1
            return
        recent = self._orphans_recent
        while recent and now - recent[0] >= NEAR_OVERFLOW:
            recent.popleft()
        if now - from_pos < NEAR_OVERFLOW:
            recent.append(from_pos)

    def _overflow(self, pos: int, t_ns: int) -> None:
        self.overflows += 1
        self._last_overflow = pos
        if len(self.overflow_at) < MAX_PLACES:
            self.overflow_at.append((pos, t_ns))
        for from_pos, _r, _t, _d in reversed(self._waiting.values()):
            if pos - from_pos > NEAR_OVERFLOW:
                break
            self._near.add(from_pos)
        recent = self._orphans_recent
        if recent:
            near = [p for p in recent if 0 < pos - p <= NEAR_OVERFLOW]
            self.orphan_from_near += len(near)
            self._orphans_recent = deque(p for p in recent if p not in near)

    def _orphan_to(self, pos: int) -> None:
        self.orphan_to += 1
        if self._last_overflow is not None and 0 < pos - self._last_overflow <= NEAR_OVERFLOW:
            self.orphan_to_near += 1

    def _pair(self, w: tuple[int, int, int, bool], pos: int, ri: int, t_ns: int) -> None:
        from_pos, from_read, from_t, from_drained = w
        self._near.discard(from_pos)
        self.pairs += 1
        between = pos - from_pos - 1
        key = between if between <= BETWEEN_EXACT else 1 << (between.bit_length() - 1)
        self.between_hist[key] = self.between_hist.get(key, 0) + 1
        if between:
            if between >= RING:
                self.between_kinds_truncated += 1
            start = max(from_pos + 1, pos - RING + 1)
            self.between_kinds.update(mask_name(m) for m in self._masks_between(start, pos))
        if ri != from_read:
            gap = max(0, t_ns - from_t)
            self.gaps.add(gap)
            if from_drained:
                self.gaps_drained.add(gap)
                for i, limit in enumerate(self._window_ns):
                    if gap > limit:
                        self.lost[i] += 1

    def kinds(self) -> Counter[str]:
        """Events by kind name."""
        out = Counter(self.kinds_other)
        for mask, n in self.masks.items():
            out[mask_name(mask)] += n
        return out

    def result(self) -> dict[str, Any]:
        """The statistics so far (the FROMs still waiting count as orphans, without being consumed)."""
        pairs = self.pairs
        hist = self.between_hist
        with_between = pairs - hist.get(0, 0)
        waiting = list(self._waiting.values())
        near = self._near
        split, drained = self.gaps.n, self.gaps_drained.n
        return {
            "events": self.pos, "reads": self.reads, "pairs": pairs,
            "between": with_between, "between_share": with_between / pairs if pairs else 0.0,
            "between_max": max((k for k in hist if k), default=0),
            "between_hist": {str(k): v for k, v in sorted(hist.items()) if k},
            "between_kinds": dict(self.between_kinds.most_common()),
            "between_kinds_truncated": self.between_kinds_truncated,
            "split": split, "split_share": split / pairs if pairs else 0.0,
            "split_drained": drained, "split_drained_share": drained / pairs if pairs else 0.0,
            "gap_us": _gap_summary(self.gaps), "gap_drained_us": _gap_summary(self.gaps_drained),
            "gap_drained_samples_us": [g / 1e3 for g in self.gaps_drained.samples(MAX_SAMPLES)],
            "gap_exact": self.gaps.exact and self.gaps_drained.exact,
            "lost_at_window_ms": {f"{w:g}": n for w, n in zip(self.windows_ms, self.lost, strict=True)},
            "overflows": self.overflows,
            "orphan_from": self.orphan_from + len(waiting),
            "orphan_from_near_overflow": self.orphan_from_near + sum(1 for w in waiting if w[0] in near),
            "orphan_to": self.orphan_to, "orphan_to_near_overflow": self.orphan_to_near,
        }


def _gap_summary(sketch: QuantileSketch) -> dict[str, float | None]:
    def us(v: float | None) -> float | None:
        return None if v is None else v / 1e3

    return {"p50": us(sketch.quantile(50)), "p90": us(sketch.quantile(90)), "p99": us(sketch.quantile(99)),
            "max": us(None if sketch.max is None else float(sketch.max))}


def race_stats(reads: Iterable[tuple[int, bool, Sequence[raw.InotifyEvent]]],
               windows_ms: Sequence[float] = WINDOWS_MS) -> dict[str, Any]:
    """Race statistics of a whole stream of ``(t_ns, drained, events)`` reads."""
    counter = RaceCounter(windows_ms=windows_ms)
    for t_ns, drained, events in reads:
        counter.feed_read(t_ns, drained, events)
    return counter.result()
