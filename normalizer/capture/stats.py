"""Statistics of a capture: volume, pairing races, queue pressure, hot directories (``fsnorm stats``).

:class:`CaptureStats` is fed the capture's stream items (:mod:`normalizer.core.raw`) and the records replay makes
of them, in order, and keeps counters and bounded structures only (:mod:`normalizer.core.sketch`): a capture of
ten million events costs no more memory than one of ten thousand. The race figures are those of the pairing-race
benchmark, computed by the same code (:mod:`normalizer.core.races`). :func:`capture_stats` runs it over a file
with :func:`~normalizer.capture.replay.replay_reader`, so the records are exactly replay's.

A damaged capture is read as far as it can be: the result says whether the capture ended cleanly, lists the
issues (the first :data:`MAX_ISSUES`) and, when reading stopped early, where.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import IO, Any

from ..core import raw
from ..core.fanotify_abi import FAN_MOVED_FROM, FAN_MOVED_TO, FAN_Q_OVERFLOW, FAN_RENAME
from ..core.races import MAX_WAITING, WINDOWS_MS, RaceCounter, mask_name
from ..core.sketch import QuantileSketch, TimeSeries, TopK
from ..records import Flag, Rec, path_to_json
from .log import CaptureHeader, CaptureIssue, CaptureReader
from .replay import replay_reader

#: Issues listed in the result (all are counted).
MAX_ISSUES = 20
#: Overflows whose place is listed (all are counted).
MAX_OVERFLOW_PLACES = 100
#: Directories listed per ranking.
TOP = 10
#: Distinct event masks counted apart before further ones are counted by kind name directly.
_MAX_MASKS = 256
#: Why a rename record is one-sided (the flags that say so, in :class:`~normalizer.records.Flag` order).
ONE_SIDED_REASONS = (Flag.UNWATCHED, Flag.TIMEOUT, Flag.OVERFLOW, Flag.EVICTED, Flag.COOKIE_REUSED, Flag.SHUTDOWN)
_FAN_KINDS = ((FAN_RENAME, "rename"), (0x100, "create"), (0x200, "delete"), (0x2, "modify"), (0x8, "close_write"),
              (0x4, "attrib"), (FAN_MOVED_FROM, "moved_from"), (FAN_MOVED_TO, "moved_to"), (0x800, "move_self"),
              (0x400, "delete_self"), (FAN_Q_OVERFLOW, "overflow"), (0x1, "access"), (0x20, "open"),
              (0x10, "close_nowrite"))
_NS = 1_000_000_000


def fan_mask_name(mask: int) -> str:
    """The one kind name of a fanotify mask (FAN_RENAME first), else ``other``."""
    for bit, name in _FAN_KINDS:
        if mask & bit:
            return name
    return "other"


def _named(top: list[tuple[bytes, int]]) -> list[tuple[str, int]]:
    """Directories as text (exact when UTF-8, readable otherwise); b"" is the root."""
    return [(path_to_json(d or b"/")[0], n) for d, n in top]


class CaptureStats:
    """Accumulates the statistics of one capture: :meth:`feed` every stream item, :meth:`record` every record
    replay makes, then :meth:`result`. ``exact_limit`` (values kept exactly per quantile sketch),
    ``top_capacity`` (counters per directory ranking) and ``max_waiting`` (rename halves waiting for their
    partner) bound the memory; ``bins`` the time series."""

    def __init__(self, header: CaptureHeader, *, name: str = "", windows_ms: Sequence[float] = WINDOWS_MS,
                 bins: int = 1024, top_capacity: int = 1024, exact_limit: int = 65536,
                 max_waiting: int = MAX_WAITING) -> None:
        self.header = header
        self.name = name
        self.inotify = header.source == "inotify"
        self.races = RaceCounter(windows_ms=windows_ms, exact_limit=exact_limit, max_waiting=max_waiting) \
            if self.inotify else None
        self.items: Counter[str] = Counter()
        self.events = 0
        self.reads = 0
        self.reads_not_drained = 0
        self._masks: dict[int, int] = {}
        self._kinds_direct: Counter[str] = Counter()
        self.first_t: int | None = None
        self.last_t = 0
        self._sec = 0
        self._sec_count = 0
        self.per_second = QuantileSketch(exact_limit=exact_limit)
        self.series = TimeSeries(bins=bins)
        self.backlog = QuantileSketch(exact_limit=exact_limit)
        self.overflows = 0
        self.overflow_places: list[dict[str, float | int]] = []
        self.fan_renames = 0
        # records
        self.records = 0
        self.record_kinds: dict[str, int] = {}
        self.renames = self.joined = self.one_sided = self.after_overflow = self.merged = 0
        self.after_overflow_records = self.merged_records = 0
        self.reasons: Counter[str] = Counter()
        self.top_events: TopK[bytes] = TopK(top_capacity)
        self.top_renames: TopK[bytes] = TopK(top_capacity)
        self._done = False

    # -- items --------------------------------------------------------------------------------------------

    def feed(self, item: raw.AnyStreamItem) -> None:
        t = item.t_ns
        if self.first_t is None:
            self.first_t = t
        if t > self.last_t:
            self.last_t = t
        if isinstance(item, raw.InotifyBatch | raw.FanotifyBatch):
            self._batch(item)
        else:
            self.items[type(item).__name__] += 1

    def _batch(self, item: raw.InotifyBatch | raw.FanotifyBatch) -> None:
        self.items[type(item).__name__] += 1
        n = len(item.events)
        first = self.events
        self.events += n
        self.reads += 1
        if not item.drained:
            self.reads_not_drained += 1
        races = self.races
        if races is not None and isinstance(item, raw.InotifyBatch):
            # The race counter walks every event anyway: it counts the masks and notes the overflows.
            placed = len(races.overflow_at)
            overflows = races.feed_read(item.t_ns, item.drained, item.events)
            if overflows:
                for pos, t in races.overflow_at[placed:]:
                    self._overflow_at(t, pos, item.backlog)
                self.overflows += overflows
        else:
            fan_masks = [ev[0] for ev in item.events]
            overflows = self._count_masks(fan_masks, item, first)
            self.fan_renames += sum(1 for m in fan_masks if m & FAN_RENAME)
        self._per_second(item.t_ns, n)
        if item.backlog is not None:
            self.backlog.add(item.backlog)
        self.series.add(item.t_ns, n, gauge=item.backlog, mark=overflows)

    def _count_masks(self, batch_masks: list[int], item: raw.InotifyBatch | raw.FanotifyBatch, first: int) -> int:
        """Count the masks of one read by value; return how many overflows it held (and note where)."""
        masks = self._masks
        overflows = 0
        for i, mask in enumerate(batch_masks):
            if mask in masks:
                masks[mask] += 1
            elif len(masks) < _MAX_MASKS:
                masks[mask] = 1
            else:
                self._kinds_direct[self._mask_name(mask)] += 1
            if mask & raw.IN_Q_OVERFLOW:  # == FAN_Q_OVERFLOW
                overflows += 1
                self.overflows += 1
                self._overflow_at(item.t_ns, first + i, item.backlog)
        return overflows

    def _mask_name(self, mask: int) -> str:
        return mask_name(mask) if self.inotify else fan_mask_name(mask)

    def _overflow_at(self, t_ns: int, index: int, backlog: int | None) -> None:
        if len(self.overflow_places) < MAX_OVERFLOW_PLACES:
            place: dict[str, float | int] = {"t_s": (t_ns - (self.first_t or t_ns)) / 1e9, "event": index}
            if backlog is not None:
                place["backlog"] = backlog
            self.overflow_places.append(place)

    def _per_second(self, t_ns: int, n: int) -> None:
        sec = (t_ns - (self.first_t or t_ns)) // _NS
        if sec > self._sec:
            self.per_second.add(self._sec_count)
            self.per_second.add(0, sec - self._sec - 1)
            self._sec, self._sec_count = sec, 0
        self._sec_count += n

    # -- records ------------------------------------------------------------------------------------------

    def record(self, rec: Rec) -> None:
        self.records_from((rec,))

    def records_from(self, records: Iterable[Rec]) -> int:
        """Take every record of an iterable; returns how many.

        Hot path (one pass per record): a plain record costs a kind count and its directory's count, a joined
        rename without flags two directories' counts in both rankings; the rest takes the slower branch."""
        n = joined = hits_e = hits_r = 0
        kinds = self.record_kinds
        top_e, top_r = self.top_events, self.top_renames
        ce, cr = top_e.counts, top_r.counts  # counted here while the key is known; TopK.add otherwise
        # Hot loop (benchmarks/bench_stats.py): the rename and single-path branches below repeat the same
        # count-or-add steps inline on purpose; a helper would add a call per record.
        for rec in records:
            n += 1
            kind = rec.kind
            if kind in kinds:
                kinds[kind] += 1
            else:
                kinds[kind] = 1
            if rec.flags:
                self._special(rec)
                ce, cr = top_e.counts, top_r.counts
                continue
            path = rec.path
            if kind == "rename":
                dst = rec.dst
                if not (path and dst):
                    self._special(rec)
                    ce, cr = top_e.counts, top_r.counts
                    continue
                joined += 1
                a, b = path.rpartition(b"/")[0], dst.rpartition(b"/")[0]
                for d in (a, b) if b != a else (a,):
                    if d in cr:
                        cr[d] += 1
                        hits_r += 1
                    else:
                        top_r.add(d)
                        cr = top_r.counts
                    if d in ce:
                        ce[d] += 1
                        hits_e += 1
                    else:
                        top_e.add(d)
                        ce = top_e.counts
            elif path:
                d = path.rpartition(b"/")[0]
                if d in ce:
                    ce[d] += 1
                    hits_e += 1
                else:
                    top_e.add(d)
                    ce = top_e.counts
        top_e.total += hits_e
        top_r.total += hits_r
        self.records += n
        self.joined += joined
        self.renames += joined
        return n

    def _special(self, rec: Rec) -> None:
        """A rename or a flagged record."""
        flags = rec.flags
        if Flag.AFTER_OVERFLOW in flags:
            self.after_overflow_records += 1
        if Flag.MERGED in flags:
            self.merged_records += 1
        if rec.kind != "rename":
            if rec.path:
                self.top_events.add(rec.path.rpartition(b"/")[0])
            return
        self.renames += 1
        src, dst = rec.path, rec.dst
        if src and dst:
            self.joined += 1
        else:
            self.one_sided += 1
            reasons = [f for f in ONE_SIDED_REASONS if f in flags]
            self.reasons[str(reasons[0]) if reasons else "none"] += 1
        if Flag.AFTER_OVERFLOW in flags:
            self.after_overflow += 1
        if Flag.MERGED in flags:
            self.merged += 1
        a = src.rpartition(b"/")[0] if src else None
        b = dst.rpartition(b"/")[0] if dst else None
        for d in (a, b if b != a else None):
            if d is not None:
                self.top_renames.add(d)
                self.top_events.add(d)

    # -- result -------------------------------------------------------------------------------------------

    def _finish(self) -> None:
        if not self._done and self.reads:
            self.per_second.add(self._sec_count)
        self._done = True

    def result(self, *, issues: Sequence[CaptureIssue] = (), ended_cleanly: bool = True) -> dict[str, Any]:
        """Everything, as a JSON-ready dict (see docs/stats.md)."""
        self._finish()
        kinds: Counter[str] = Counter(self._kinds_direct)
        for mask, n in self._masks.items():
            kinds[self._mask_name(mask)] += n
        if self.races is not None:
            kinds.update(self.races.kinds())
        duration = (self.last_t - self.first_t) / 1e9 if self.first_t is not None else 0.0
        stopped = None
        if not ended_cleanly and issues:
            last = issues[-1]
            stopped = {"line": last.line, "offset": last.offset, "message": last.message}
        h = self.header
        ps = self.per_second
        backlog = self.backlog.summary()
        return {
            "capture": self.name, "source": h.source, "host": h.host, "kernel": h.kernel, "created": h.created,
            "window_ms": int(h.options.get("window_ns", 20_000_000)) / 1e6,
            "read": {"complete": ended_cleanly and not issues, "ended_cleanly": ended_cleanly,
                     "issues": len(issues), "issue_list": [str(i) for i in issues[:MAX_ISSUES]],
                     "stopped_at": stopped, "items": dict(self.items)},
            "volume": {
                "events": self.events, "reads": self.reads, "records": self.records, "duration_s": duration,
                "events_per_s_mean": self.events / duration if duration > 0 else None,
                "events_per_s_peak": ps.max, "events_per_s_p99": ps.quantile(99), "seconds": ps.n,
                "event_kinds": dict(kinds.most_common()),
                "record_kinds": dict(Counter(self.record_kinds).most_common()),
                "renames": {"records": self.renames, "joined": self.joined, "one_sided": self.one_sided,
                            "one_sided_by_reason": dict(self.reasons.most_common()),
                            "after_overflow": self.after_overflow, "merged": self.merged,
                            "kernel_paired": self.fan_renames if not self.inotify else None},
                "records_after_overflow": self.after_overflow_records, "records_merged": self.merged_records,
            },
            "races": self.races.result() if self.races is not None else None,
            "queue": {
                "backlog_unit": "bytes" if self.inotify else "events",
                "backlog_max": backlog["max"], "backlog_p99": backlog["p99"], "backlog_p50": backlog["p50"],
                "backlog_reads": backlog["n"], "reads_not_drained": self.reads_not_drained,
                "overflows": self.overflows, "overflow_at": self.overflow_places,
                "one_sided_by_overflow": self.reasons.get(str(Flag.OVERFLOW), 0),
                "after_overflow": self.after_overflow_records,
            },
            "top_dirs": {"by_events": _named(self.top_events.top(TOP)),
                         "by_renames": _named(self.top_renames.top(TOP)),
                         "max_undercount": max(self.top_events.error, self.top_renames.error)},
            "series": self.series.to_json(),
        }


def capture_stats(
    source: str | os.PathLike[str] | IO[bytes],
    *,
    name: str | None = None,
    windows_ms: Sequence[float] = WINDOWS_MS,
    window_ns: int | None = None,
    on_issue: Callable[[CaptureIssue], None] | None = None,
    on_item: Callable[[raw.AnyStreamItem], None] | None = None,
) -> dict[str, Any]:
    """The statistics of one capture file (see :class:`CaptureStats`). ``window_ns`` overrides the capture's
    window for the records (as ``fsnorm replay --window``). A bad header raises
    :class:`~normalizer.errors.CaptureError`; damage further on is reported in the result."""
    label = name if name is not None else (os.fsdecode(source) if isinstance(source, str | os.PathLike)
                                           else str(getattr(source, "name", "<stream>")))
    with CaptureReader(source, on_issue=on_issue) as reader:
        stats = CaptureStats(reader.header, name=label, windows_ms=windows_ms)
        feed = stats.feed
        if on_item is None:
            see: Callable[[raw.AnyStreamItem], None] = feed
        else:
            def see(item: raw.AnyStreamItem) -> None:
                feed(item)
                on_item(item)
        stats.records_from(replay_reader(reader, window_ns=window_ns, on_item=see))
        result = stats.result(issues=reader.issues, ended_cleanly=reader.ended_cleanly)
    if window_ns is not None:
        result["window_ms"] = window_ns / 1e6  # the window the records were made with
    return result
