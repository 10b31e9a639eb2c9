"""Race statistics of a raw inotify stream: how rename halves fall across reads, streaming and bounded.

This is the one implementation behind both the pairing-race benchmark (benchmarks/scoring.py) and
``fsnorm stats``. It consumes reads in order (the read's time, whether the kernel queue was empty right after
it, its events) and keeps counters and bounded structures only:

* ``pairs``: MOVED_FROM/MOVED_TO pairs (same cookie, FROM first);
* ``between``: pairs with other events between the halves; ``between_hist`` how many (``{count: pairs}``),
  ``between_kinds`` what they were (from a ring of the last :data:`RING` event masks: longer stretches count
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

from collections import Counter, deque
from collections.abc import Iterable, Sequence
from typing import Any

from . import raw
from .sketch import QuantileSketch

#: Windows (ms) for which ``fsnorm stats`` counts the split pairs a matcher with that window would lose.
WINDOWS_MS = (0.1, 1.0, 5.0, 20.0, 50.0)
#: An orphan half within this many events of an overflow counts as "around" it.
NEAR_OVERFLOW = 64
#: Event masks remembered for ``between_kinds`` (a power of two).
RING = 4096
#: ``between_hist`` keeps counts above this one in power-of-two classes (bounded number of keys).
BETWEEN_EXACT = 1024
#: Split gaps returned as samples (for histograms).
MAX_SAMPLES = 1000

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


class _From:
    """A MOVED_FROM waiting for its TO (mutable: the near-overflow mark can come after it was orphaned)."""

    __slots__ = ("drained", "near", "orphaned", "pos", "read", "t_ns")

    def __init__(self, pos: int, read: int, t_ns: int, drained: bool) -> None:
        self.pos = pos
        self.read = read
        self.t_ns = t_ns
        self.drained = drained
        self.near = False
        self.orphaned = False


class RaceCounter:
    """Feed reads with :meth:`feed_read`; :meth:`result` gives the statistics (callable at any time)."""

    def __init__(self, *, windows_ms: Sequence[float] = WINDOWS_MS, max_waiting: int = 65536,
                 exact_limit: int = 65536) -> None:
        self.windows_ms = tuple(windows_ms)
        self.max_waiting = max_waiting
        self.pos = 0
        self.reads = 0
        self.pairs = 0
        self._ring = [0] * RING
        self._waiting: dict[int, _From] = {}
        self._recent: deque[_From] = deque()  # FROMs of the last NEAR_OVERFLOW events
        self._last_overflow: int | None = None
        self.between_hist: Counter[int] = Counter()
        self.between_kinds: Counter[str] = Counter()
        self.between_kinds_truncated = 0
        self.gaps = QuantileSketch(exact_limit=exact_limit)
        self.gaps_drained = QuantileSketch(exact_limit=exact_limit)
        self.lost = [0] * len(self.windows_ms)
        self._window_ns = [w * 1e6 for w in self.windows_ms]
        self.overflows = 0
        self.orphan_from = self.orphan_from_near = 0
        self.orphan_to = self.orphan_to_near = 0

    def feed_read(self, t_ns: int, drained: bool, events: Iterable[raw.InotifyEvent]) -> None:
        """One read() of the stream: its time, whether the queue was empty right after it, its events."""
        ri = self.reads
        self.reads += 1
        ring = self._ring
        pos = self.pos
        interesting = raw.IN_Q_OVERFLOW | raw.IN_MOVED_FROM | raw.IN_MOVED_TO
        for _wd, mask, cookie, _name in events:
            ring[pos & (RING - 1)] = mask
            if mask & interesting:
                self.pos = pos
                if mask & raw.IN_Q_OVERFLOW:
                    self._overflow(pos)
                elif mask & raw.IN_MOVED_FROM:
                    self._from(pos, cookie, ri, t_ns, drained)
                else:
                    self._to(pos, cookie, ri, t_ns)
            pos += 1
        self.pos = pos

    def _from(self, pos: int, cookie: int, ri: int, t_ns: int, drained: bool) -> None:
        waiting = self._waiting
        old = waiting.pop(cookie, None)
        if old is not None:
            self._orphan(old)
        elif len(waiting) >= self.max_waiting:
            self._orphan(waiting.pop(next(iter(waiting))))
        entry = _From(pos, ri, t_ns, drained)
        waiting[cookie] = entry
        recent = self._recent
        while recent and pos - recent[0].pos > NEAR_OVERFLOW:
            recent.popleft()
        recent.append(entry)

    def _orphan(self, entry: _From) -> None:
        entry.orphaned = True
        self.orphan_from += 1
        if entry.near:
            self.orphan_from_near += 1

    def _overflow(self, pos: int) -> None:
        self.overflows += 1
        self._last_overflow = pos
        for entry in self._recent:
            if not entry.near and 0 < pos - entry.pos <= NEAR_OVERFLOW:
                entry.near = True
                if entry.orphaned:
                    self.orphan_from_near += 1

    def _to(self, pos: int, cookie: int, ri: int, t_ns: int) -> None:
        w = self._waiting.pop(cookie, None)
        if w is None:
            self.orphan_to += 1
            if self._last_overflow is not None and 0 < pos - self._last_overflow <= NEAR_OVERFLOW:
                self.orphan_to_near += 1
            return
        self.pairs += 1
        between = pos - w.pos - 1
        self.between_hist[between if between <= BETWEEN_EXACT else 1 << (between.bit_length() - 1)] += 1
        if between:
            if between >= RING:
                self.between_kinds_truncated += 1
            ring = self._ring
            start = max(w.pos + 1, pos - RING + 1)
            self.between_kinds.update(mask_name(ring[p & (RING - 1)]) for p in range(start, pos))
        if ri != w.read:
            gap = max(0, t_ns - w.t_ns)
            self.gaps.add(gap)
            if w.drained:
                self.gaps_drained.add(gap)
                for i, limit in enumerate(self._window_ns):
                    if gap > limit:
                        self.lost[i] += 1

    def result(self) -> dict[str, Any]:
        """The statistics so far (the FROMs still waiting count as orphans, without being consumed)."""
        pairs = self.pairs
        hist = self.between_hist
        with_between = pairs - hist.get(0, 0)
        waiting = list(self._waiting.values())
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
            "orphan_from_near_overflow": self.orphan_from_near + sum(1 for w in waiting if w.near),
            "orphan_to": self.orphan_to, "orphan_to_near_overflow": self.orphan_to_near,
        }


def _gap_summary(sketch: QuantileSketch) -> dict[str, float | None]:
    def us(v: float | None) -> float | None:
        return None if v is None else v / 1e3

    return {"p50": us(sketch.quantile(50)), "p90": us(sketch.quantile(90)), "p99": us(sketch.quantile(99)),
            "max": us(None if sketch.max is None else float(sketch.max))}


def race_stats(reads: Iterable[tuple[int, bool, Iterable[raw.InotifyEvent]]],
               windows_ms: Sequence[float] = WINDOWS_MS) -> dict[str, Any]:
    """Race statistics of a whole stream of ``(t_ns, drained, events)`` reads."""
    counter = RaceCounter(windows_ms=windows_ms)
    for t_ns, drained, events in reads:
        counter.feed_read(t_ns, drained, events)
    return counter.result()
