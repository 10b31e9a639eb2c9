"""Scoring: what a subject delivered against what the workload did, and the race statistics of a raw stream.

Pure functions on :mod:`benchmarks.model` values; no I/O, no clock. The race statistics are
:mod:`normalizer.core.races` (shared with ``fsnorm stats``). Results are plain JSON-ready dicts.

Every rename the workload issued falls in exactly one category (checked in this order):

* ``joined``: one record with both exact paths (a rename both of whose sides are in the watched tree);
* ``one_sided``: a rename with one side outside the tree, reported as one rename record (or a bare half)
  carrying the visible side's exact path and nothing for the other;
* ``wrong``: a rename record joined this rename's source or destination with a path it did not go to/come from;
* ``split``: reported, but not as one record: two halves, a delete and a create, or only one of those;
* ``missed``: nothing at all about it.

``stray_halves`` counts bare halves left over for renames that were also reported some other way (pyinotify
delivers the MOVED_FROM, then the MOVED_TO with ``src_pathname``: the first is a record its user cannot
classify when it arrives). Latency is the receive time of the record minus the time taken right before the
rename syscall; the *stall* of a workload is the longest such delay of its markers (unrelated creates).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict, deque
from collections.abc import Iterable, Sequence
from typing import Any

from benchmarks.model import Read, Record, Truth
from normalizer.core import races

CATEGORIES = ("joined", "one_sided", "split", "wrong", "missed")
#: Quantiles stored for latency CDFs (0, 2.5, ..., 100 %).
CDF_POINTS = 41
#: Windows (ms) for which the race statistics count the split pairs a matcher with that window would lose.
WINDOWS_MS = (0.0, 0.1, 1.0, 5.0, 20.0)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values: the smallest value with at least q% at or below it."""
    if not sorted_values:
        raise ValueError("no values")
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return float(sorted_values[min(rank, len(sorted_values)) - 1])


def summarize_ns(values_ns: Iterable[int]) -> dict[str, Any]:
    """n, p50, p99 and max in milliseconds (None without values)."""
    vals = sorted(values_ns)
    if not vals:
        return {"n": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}
    return {"n": len(vals), "p50_ms": percentile(vals, 50) / 1e6, "p99_ms": percentile(vals, 99) / 1e6,
            "max_ms": vals[-1] / 1e6}


def cdf_ms(values_ns: Iterable[int], points: int = CDF_POINTS) -> list[float]:
    """``points`` evenly spaced quantiles (0..100 %, nearest rank) in milliseconds; [] without values."""
    vals = sorted(values_ns)
    if not vals:
        return []
    return [percentile(vals, 100 * i / (points - 1)) / 1e6 for i in range(points)]


def _pop(index: dict[str, deque[int]], key: str) -> int | None:
    q = index.get(key)
    if q:
        return q.popleft()
    return None


def _new_row() -> dict[str, Any]:
    row: dict[str, Any] = {"issued": 0, "expected_both": 0, "expected_one_sided": 0}
    row.update(dict.fromkeys(CATEGORIES, 0))
    row.update(stray_halves=0, markers=0, markers_seen=0)
    return row


def score(truth: Truth, records: Iterable[Record]) -> dict[str, Any]:
    """Score one session. Returns ``{"workloads": {label: row}, "session": {...}}``; a row has the category
    counts, ``lat_joined`` / ``lat_one_sided`` / ``lat_markers`` summaries, ``lat_split`` (a rename reported as
    two separate halves, both seen: from the rename to the later half; what a reader that does not pair, such as
    inotifywait, takes to deliver both sides), ``lat_joined_read`` (from the rename to the watcher's own read of
    it, for the joined renames whose record says when that was: fsnorm's ``t_ns``), ``stall_ms`` and CDF
    quantiles;
    the session has the record counts (overflow, after it, wrong joins, duplicates) and the same latency
    summaries and CDFs over all workloads together."""
    joined: dict[tuple[str, str], deque[int]] = defaultdict(deque)
    #: The watcher's own read time of each joined rename, where its output has one (same order as ``joined``).
    joined_read: dict[tuple[str, str], deque[int]] = defaultdict(deque)
    froms: dict[str, deque[int]] = defaultdict(deque)
    tos: dict[str, deque[int]] = defaultdict(deque)
    creates: dict[str, deque[int]] = defaultdict(deque)
    deletes: dict[str, deque[int]] = defaultdict(deque)
    total = overflows = after_overflow = corrupt = 0
    first_overflow: int | None = None
    last_t = 0
    for r in records:
        total += 1
        last_t = max(last_t, r.t_ns)
        if first_overflow is not None:
            after_overflow += 1
        kind = r.kind
        if kind == "rename":
            if r.src and r.dst:
                joined[(r.src, r.dst)].append(r.t_ns)
                if r.read_ns is not None:
                    joined_read[(r.src, r.dst)].append(r.read_ns)
            elif r.src:
                froms[r.src].append(r.t_ns)
            elif r.dst:
                tos[r.dst].append(r.t_ns)
        elif kind == "from":
            froms[r.src].append(r.t_ns)
        elif kind == "to":
            tos[r.dst].append(r.t_ns)
        elif kind == "create":
            creates[r.src].append(r.t_ns)
        elif kind == "delete":
            deletes[r.src].append(r.t_ns)
        elif kind == "overflow":
            overflows += 1
            if first_overflow is None:
                first_overflow = r.t_ns
        elif kind == "corrupt":
            corrupt += 1

    truth_pairs = Counter((g.src, g.dst) for g in truth.renames if g.src and g.dst)
    truth_srcs = {g.src for g in truth.renames if g.src}
    truth_dsts = {g.dst for g in truth.renames if g.dst}
    wrong_src: set[str] = set()
    wrong_dst: set[str] = set()
    wrong_records = duplicates = 0
    for (src, dst), q in joined.items():
        expected = truth_pairs.get((src, dst), 0)
        if expected:
            duplicates += max(0, len(q) - expected)
        elif src in truth_srcs or dst in truth_dsts:
            wrong_records += len(q)
            wrong_src.add(src)
            wrong_dst.add(dst)

    rows: dict[str, dict[str, Any]] = {}
    lat: dict[str, dict[str, list[int]]] = {}

    def row_of(label: str) -> tuple[dict[str, Any], dict[str, list[int]]]:
        if label not in rows:
            rows[label] = _new_row()
            lat[label] = {"joined": [], "one_sided": [], "markers": [], "split": [], "joined_read": []}
        return rows[label], lat[label]

    side_owner: dict[tuple[str, str], str] = {}
    for g in truth.renames:
        row, lats = row_of(g.workload)
        row["issued"] += 1
        if g.src:
            side_owner.setdefault(("from", g.src), g.workload)
        if g.dst:
            side_owner.setdefault(("to", g.dst), g.workload)
        if g.src and g.dst:
            row["expected_both"] += 1
            hit = joined.get((g.src, g.dst))
            if hit:
                row["joined"] += 1
                lats["joined"].append(hit.popleft() - g.t_ns)
                read = joined_read.get((g.src, g.dst))
                if read:
                    lats["joined_read"].append(read.popleft() - g.t_ns)
            elif g.src in wrong_src or g.dst in wrong_dst:
                row["wrong"] += 1
            else:
                a = _pop(froms, g.src)
                if a is None:
                    a = _pop(deletes, g.src)
                b = _pop(tos, g.dst)
                if b is None:
                    b = _pop(creates, g.dst)
                row["split" if a is not None or b is not None else "missed"] += 1
                if a is not None and b is not None:  # both sides delivered apart: when the later one came
                    lats["split"].append(max(a, b) - g.t_ns)
            continue
        row["expected_one_sided"] += 1
        side, halves, plain, wrong = ((g.src, froms, deletes, wrong_src) if g.src
                                      else (g.dst, tos, creates, wrong_dst))
        t = _pop(halves, side)
        if t is not None:
            row["one_sided"] += 1
            lats["one_sided"].append(t - g.t_ns)
        elif side in wrong:
            row["wrong"] += 1
        elif _pop(plain, side) is not None:
            row["split"] += 1
        else:
            row["missed"] += 1

    for (which, path), label in side_owner.items():
        left = (froms if which == "from" else tos).get(path)
        if left:
            rows[label]["stray_halves"] += len(left)

    for m in truth.markers:
        row, lats = row_of(m.workload)
        row["markers"] += 1
        t = _pop(creates, m.path)
        if t is not None:
            row["markers_seen"] += 1
            lats["markers"].append(t - m.t_ns)

    for label, row in rows.items():
        lats = lat[label]
        row["lat_joined"] = summarize_ns(lats["joined"])
        row["lat_one_sided"] = summarize_ns(lats["one_sided"])
        row["lat_markers"] = summarize_ns(lats["markers"])
        row["lat_split"] = summarize_ns(lats["split"])
        row["lat_joined_read"] = summarize_ns(lats["joined_read"])
        row["stall_ms"] = row["lat_markers"]["max_ms"]
        row["cdf_joined_ms"] = cdf_ms(lats["joined"])
        row["cdf_one_sided_ms"] = cdf_ms(lats["one_sided"])
    every = {key: [v for lats in lat.values() for v in lats[key]] for key in ("joined", "one_sided", "markers")}
    session = {"records": total, "overflow_records": overflows, "records_after_overflow": after_overflow,
               "wrong_join_records": wrong_records, "duplicate_records": duplicates, "corrupt_lines": corrupt,
               "lat_joined": summarize_ns(every["joined"]), "lat_one_sided": summarize_ns(every["one_sided"]),
               "lat_markers": summarize_ns(every["markers"]), "cdf_joined_ms": cdf_ms(every["joined"]),
               "cdf_one_sided_ms": cdf_ms(every["one_sided"])}
    return {"workloads": rows, "session": session}


def rename_units(records: Iterable[Record]) -> dict[str, int]:
    """Counts for throughput trials (no ground truth per rename): joined renames, bare halves, overflows, and
    records the kernel merged from several events (fanotify; flag ``merged``)."""
    joined = halves = overflows = total = merged = 0
    for r in records:
        total += 1
        if r.flags and "merged" in r.flags.split(","):
            merged += 1
        if r.kind == "rename":
            if r.src and r.dst:
                joined += 1
            else:
                halves += 1
        elif r.kind in ("from", "to"):
            halves += 1
        elif r.kind == "overflow":
            overflows += 1
    return {"records": total, "joined": joined, "halves": halves, "overflows": overflows, "merged": merged}


def race_stats(reads: Iterable[Read], windows_ms: Sequence[float] = WINDOWS_MS) -> dict[str, Any]:
    """Race statistics of one raw inotify stream (reads in order): normalizer.core.races, the same code
    ``fsnorm stats`` runs on a capture (its docstring lists the figures)."""
    return races.race_stats(((r.t_ns, r.pending == 0, r.events) for r in reads), windows_ms)


def merge_race(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Totals over several race_stats results (for the window justification)."""
    pairs = sum(r["pairs"] for r in runs)
    samples = sorted(s for r in runs for s in r["gap_drained_samples_us"])
    keys = runs[0]["lost_at_window_ms"].keys() if runs else ()
    return {
        "runs": len(runs), "pairs": pairs,
        "between": sum(r["between"] for r in runs),
        "between_max": max((r["between_max"] for r in runs), default=0),
        "split": sum(r["split"] for r in runs),
        "split_drained": sum(r["split_drained"] for r in runs),
        "gap_drained_max_us": max((r["gap_drained_us"]["max"] or 0.0 for r in runs), default=0.0),
        "gap_max_us": max((r["gap_us"]["max"] or 0.0 for r in runs), default=0.0),
        "gap_drained_p99_us": percentile(samples, 99) if samples else None,
        "lost_at_window_ms": {k: sum(r["lost_at_window_ms"][k] for r in runs) for k in keys},
    }
