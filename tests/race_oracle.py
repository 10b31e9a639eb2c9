"""The list-based race statistics the benchmark used before they became streaming (normalizer.core.races):
kept as the reference the streaming code is checked against. It keeps every event's mask and every gap, so
it is only for tests; ``reads`` are ``(t_ns, pending, events)`` with pending 0 meaning "queue drained"."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from normalizer.core import raw

WINDOWS_MS = (0.1, 1.0, 5.0, 20.0, 50.0)
NEAR_OVERFLOW = 64
MAX_SAMPLES = 1000


class Read(NamedTuple):
    t_ns: int
    pending: int
    events: list[raw.InotifyEvent]


def percentile(sorted_values: Sequence[float], q: float) -> float:
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return float(sorted_values[min(rank, len(sorted_values)) - 1])


def _samples(sorted_values: list[int], limit: int = MAX_SAMPLES) -> list[int]:
    if len(sorted_values) <= limit:
        return sorted_values
    step = (len(sorted_values) - 1) / (limit - 1)
    return [sorted_values[round(i * step)] for i in range(limit)]


def _mask_name(mask: int) -> str:
    for bit, name in ((raw.IN_CREATE, "create"), (raw.IN_DELETE, "delete"), (raw.IN_MODIFY, "modify"),
                      (raw.IN_CLOSE_WRITE, "close_write"), (raw.IN_ATTRIB, "attrib"),
                      (raw.IN_MOVED_FROM, "moved_from"), (raw.IN_MOVED_TO, "moved_to"),
                      (raw.IN_MOVE_SELF, "move_self"), (raw.IN_DELETE_SELF, "delete_self"),
                      (raw.IN_Q_OVERFLOW, "overflow"), (raw.IN_IGNORED, "ignored")):
        if mask & bit:
            return name
    return "other"


def race_stats(reads: Iterable[Read], windows_ms: Sequence[float] = WINDOWS_MS) -> dict[str, Any]:
    """Race statistics of one raw inotify stream (reads in order).

    * ``pairs``: MOVED_FROM/MOVED_TO pairs (same cookie, FROM first);
    * ``between``: pairs with other events between the halves, ``between_hist`` how many (``{count: pairs}``),
      ``between_kinds`` what they were;
    * ``split``: pairs whose halves came in different reads; ``split_drained``: of those, the ones where the
      queue was empty right after the read that delivered the FROM (FIONREAD 0: the TO was not even queued
      yet; only these need a matcher to wait); ``gap_*``: time between the two reads, in microseconds;
    * ``lost_at_window_ms``: drained splits with a gap above each window (what a matcher waiting that long
      would have reported as two one-sided renames: an upper bound, since the reader's gap includes its own
      wake-up time);
    * orphans: halves without a partner, and how many of them lie within NEAR_OVERFLOW events of an overflow.
    """
    pos = 0
    masks: list[int] = []
    waiting: dict[int, tuple[int, int, int, bool]] = {}  # cookie -> (pos, read index, read t, drained)
    pairs = 0
    between_hist: Counter[int] = Counter()
    between_kinds: Counter[str] = Counter()
    gaps: list[int] = []
    gaps_drained: list[int] = []
    orphan_from: list[int] = []
    orphan_to: list[int] = []
    overflow_pos: list[int] = []
    nreads = 0
    for ri, read in enumerate(reads):
        nreads += 1
        drained = read.pending == 0
        for _wd, mask, cookie, _name in read.events:
            masks.append(mask)
            if mask & raw.IN_Q_OVERFLOW:
                overflow_pos.append(pos)
            elif mask & raw.IN_MOVED_FROM:
                old = waiting.get(cookie)
                if old is not None:
                    orphan_from.append(old[0])
                waiting[cookie] = (pos, ri, read.t_ns, drained)
            elif mask & raw.IN_MOVED_TO:
                w = waiting.pop(cookie, None)
                if w is None:
                    orphan_to.append(pos)
                else:
                    pairs += 1
                    between = pos - w[0] - 1
                    between_hist[between] += 1
                    if between:
                        between_kinds.update(_mask_name(m) for m in masks[w[0] + 1:pos])
                    if ri != w[1]:
                        gap = read.t_ns - w[2]
                        gaps.append(gap)
                        if w[3]:
                            gaps_drained.append(gap)
            pos += 1
    orphan_from.extend(w[0] for w in waiting.values())

    def near(positions: list[int], before: bool) -> int:
        n = 0
        for p in positions:
            if before:
                n += any(0 < o - p <= NEAR_OVERFLOW for o in overflow_pos)
            else:
                n += any(0 < p - o <= NEAR_OVERFLOW for o in overflow_pos)
        return n

    gaps.sort()
    gaps_drained.sort()
    with_between = pairs - between_hist.get(0, 0)
    return {
        "events": pos, "reads": nreads, "pairs": pairs,
        "between": with_between, "between_share": with_between / pairs if pairs else 0.0,
        "between_max": max((k for k in between_hist if k), default=0),
        "between_hist": {str(k): v for k, v in sorted(between_hist.items()) if k},
        "between_kinds": dict(between_kinds.most_common()),
        "split": len(gaps), "split_share": len(gaps) / pairs if pairs else 0.0,
        "split_drained": len(gaps_drained), "split_drained_share": len(gaps_drained) / pairs if pairs else 0.0,
        "gap_us": _gap_summary(gaps), "gap_drained_us": _gap_summary(gaps_drained),
        "gap_drained_samples_us": [g / 1e3 for g in _samples(gaps_drained)],
        "lost_at_window_ms": {f"{w:g}": sum(1 for g in gaps_drained if g > w * 1e6) for w in windows_ms},
        "overflows": len(overflow_pos),
        "orphan_from": len(orphan_from), "orphan_from_near_overflow": near(orphan_from, before=True),
        "orphan_to": len(orphan_to), "orphan_to_near_overflow": near(orphan_to, before=False),
    }


def _gap_summary(sorted_ns: list[int]) -> dict[str, float | None]:
    if not sorted_ns:
        return {"p50": None, "p90": None, "p99": None, "max": None}
    return {"p50": percentile(sorted_ns, 50) / 1e3, "p90": percentile(sorted_ns, 90) / 1e3,
            "p99": percentile(sorted_ns, 99) / 1e3, "max": sorted_ns[-1] / 1e3}


def _gap_summary(sorted_ns: list[int]) -> dict[str, float | None]:
    if not sorted_ns:
        return {"p50": None, "p90": None, "p99": None, "max": None}
    return {"p50": percentile(sorted_ns, 50) / 1e3, "p90": percentile(sorted_ns, 90) / 1e3,
            "p99": percentile(sorted_ns, 99) / 1e3, "max": sorted_ns[-1] / 1e3}
