"""Bounded summaries of unbounded streams: quantiles, heavy hitters, a downsampled time series.

``fsnorm stats`` reads captures of any length (hours of a production host, tens of millions of events) and must
not keep anything per event. Each structure here has a fixed upper bound on its memory, stays *exact* while the
stream is small (so tests and the benchmarks' short runs get exact numbers), and degrades to a documented
approximation beyond that:

* :class:`QuantileSketch`: exact values up to ``exact_limit``, then logarithmic buckets (relative error
  ``rel_error``, like DDSketch); min, max and n always exact.
* :class:`TopK`: Misra-Gries heavy hitters with ``capacity`` counters; exact while there are at most
  ``capacity`` distinct keys, else every count is low by at most :attr:`TopK.error`.
* :class:`TimeSeries`: at most ``bins`` bins; the bin width doubles (pairs of bins merge) when time runs past
  the last one.

Pure code: no I/O, no clock.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


def nearest_rank(sorted_values: list[int] | list[float], q: float) -> float:
    """Nearest-rank percentile of sorted values: the smallest value with at least q% at or below it."""
    if not sorted_values:
        raise ValueError("no values")
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return float(sorted_values[min(rank, len(sorted_values)) - 1])


class QuantileSketch:
    """Quantiles of non-negative integers in bounded memory (see the module docstring).

    Zeros are counted apart (an idle second, an empty queue), so adding many of them costs nothing."""

    __slots__ = ("_buckets", "_exact", "_gamma_log", "exact_limit", "max", "min", "n", "rel_error", "zeros")

    def __init__(self, *, exact_limit: int = 65536, rel_error: float = 0.01) -> None:
        self.exact_limit = exact_limit
        self.rel_error = rel_error
        self._gamma_log = math.log((1 + rel_error) / (1 - rel_error))
        self._exact: array[int] | None = array("q")
        self._buckets: dict[int, int] = {}
        self.zeros = 0
        self.n = 0
        self.min: int | None = None
        self.max: int | None = None

    @property
    def exact(self) -> bool:
        """True while every value is kept (quantiles are exact)."""
        return self._exact is not None

    def add(self, value: int, count: int = 1) -> None:
        if value < 0:
            raise ValueError(f"values must be >= 0, got {value}")
        if count <= 0:
            return
        self.n += count
        if self.min is None or value < self.min:
            self.min = value
        if self.max is None or value > self.max:
            self.max = value
        if value == 0:
            self.zeros += count
            return
        exact = self._exact
        if exact is not None:
            if len(exact) + count <= self.exact_limit:
                exact.extend([value] * count)
                return
            self._fold()
        key = math.ceil(math.log(value) / self._gamma_log)
        self._buckets[key] = self._buckets.get(key, 0) + count

    def _fold(self) -> None:
        """Move the exact values into buckets (once, when there are too many to keep)."""
        exact, self._exact = self._exact, None
        for v in exact or ():
            key = math.ceil(math.log(v) / self._gamma_log)
            self._buckets[key] = self._buckets.get(key, 0) + 1

    def _bucket_value(self, key: int) -> float:
        gamma = math.exp(self._gamma_log)
        return 2 * gamma**key / (gamma + 1)

    def quantile(self, q: float) -> float | None:
        """Nearest-rank q-th percentile (0..100); None without values."""
        if not self.n:
            return None
        rank = max(1, math.ceil(q / 100 * self.n))
        if rank <= self.zeros:
            return 0.0
        rank -= self.zeros
        if self._exact is not None:
            return float(sorted(self._exact)[rank - 1])
        seen = 0
        for key in sorted(self._buckets):
            seen += self._buckets[key]
            if seen >= rank:
                lo, hi = float(self.min or 0), float(self.max or 0)
                return min(max(self._bucket_value(key), lo), hi)
        return float(self.max or 0)

    def samples(self, limit: int = 1000) -> list[float]:
        """At most ``limit`` values spread evenly over the distribution: every value while exact and few,
        else evenly spaced quantiles (for histograms)."""
        if not self.n:
            return []
        if self._exact is not None and self.n <= limit:
            return [0.0] * self.zeros + [float(v) for v in sorted(self._exact)]
        if limit < 2:
            return [float(self.max or 0)]
        out = []
        for i in range(limit):
            v = self.quantile(100 * i / (limit - 1))
            out.append(0.0 if v is None else v)
        return out

    def histogram(self, edges: list[float]) -> list[int]:
        """How many values fall in each ``[edges[i], edges[i+1])`` (the last bin includes its upper edge);
        approximate (by bucket) once the sketch stopped being exact."""
        counts = [0] * (len(edges) - 1)

        def put(v: float, c: int) -> None:
            for i in range(len(counts)):
                if edges[i] <= v < edges[i + 1] or (i == len(counts) - 1 and v == edges[-1]):
                    counts[i] += c
                    return

        if self.zeros:
            put(0.0, self.zeros)
        if self._exact is not None:
            for v in self._exact:
                put(float(v), 1)
        else:
            for key, c in self._buckets.items():
                put(self._bucket_value(key), c)
        return counts

    def summary(self, scale: float = 1.0) -> dict[str, float | int | bool | None]:
        """n, p50, p90, p99 and max divided by ``scale``; ``exact`` says whether the quantiles are exact."""

        def s(v: float | int | None) -> float | None:
            return None if v is None else v / scale

        return {"n": self.n, "p50": s(self.quantile(50)), "p90": s(self.quantile(90)),
                "p99": s(self.quantile(99)), "max": s(self.max), "exact": self.exact}


class TopK(Generic[K]):
    """The most frequent keys of a stream in ``capacity`` counters (Misra-Gries).

    A key's kept count is at most :attr:`error` below its true count; while the stream had at most ``capacity``
    distinct keys, ``error`` is 0 and every count is exact. Adding is amortized O(1): a full table is swept
    only after it absorbed ``capacity`` increments."""

    __slots__ = ("capacity", "counts", "error", "total")

    def __init__(self, capacity: int = 1024) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self.counts: dict[K, int] = {}
        self.error = 0
        self.total = 0

    def add(self, key: K, n: int = 1) -> None:
        self.total += n
        counts = self.counts
        if key in counts:
            counts[key] += n
        elif len(counts) < self.capacity:
            counts[key] = n
        else:
            self._evict(key, n)

    def _evict(self, key: K, n: int) -> None:
        """A new key and a full table: take ``d`` from every count (and the new key's), drop the zeros."""
        counts = self.counts
        d = min(n, min(counts.values()))
        self.error += d
        self.counts = counts = {k: c - d for k, c in counts.items() if c > d}
        if n > d:
            counts[key] = n - d

    def top(self, k: int) -> list[tuple[K, int]]:
        """The ``k`` largest kept counts, largest first (ties in the order of the keys' text)."""
        return sorted(self.counts.items(), key=lambda kv: (-kv[1], str(kv[0])))[:k]


class TimeSeries:
    """Per-bin event counts, the maximum of a gauge, and marks (overflows) over time, in at most ``bins``
    bins. Time is relative to the first timestamp; a timestamp earlier than that counts in bin 0."""

    __slots__ = ("bins", "counts", "gauge", "marks", "start_ns", "width_ns")

    def __init__(self, *, bins: int = 1024, width_ns: int = 10_000_000) -> None:
        if bins < 2 or bins % 2:
            raise ValueError("bins must be an even number >= 2")
        self.bins = bins
        self.width_ns = width_ns
        self.start_ns: int | None = None
        self.counts = [0] * bins
        self.gauge = [0] * bins
        self.marks = [0] * bins

    def _index(self, t_ns: int) -> int:
        if self.start_ns is None:
            self.start_ns = t_ns
        i = max(0, t_ns - self.start_ns) // self.width_ns
        while i >= self.bins:
            self._halve()
            i = max(0, t_ns - self.start_ns) // self.width_ns
        return i

    def _halve(self) -> None:
        h = self.bins // 2
        c, g, m = self.counts, self.gauge, self.marks
        self.counts = [c[2 * i] + c[2 * i + 1] for i in range(h)] + [0] * h
        self.marks = [m[2 * i] + m[2 * i + 1] for i in range(h)] + [0] * h
        self.gauge = [max(g[2 * i], g[2 * i + 1]) for i in range(h)] + [0] * h
        self.width_ns *= 2

    def add(self, t_ns: int, count: int = 0, *, gauge: int | None = None, mark: int = 0) -> None:
        i = self._index(t_ns)
        self.counts[i] += count
        if gauge is not None and gauge > self.gauge[i]:
            self.gauge[i] = gauge
        self.marks[i] += mark

    def used(self) -> int:
        """Bins up to the last non-empty one."""
        for i in range(self.bins - 1, -1, -1):
            if self.counts[i] or self.gauge[i] or self.marks[i]:
                return i + 1
        return 0

    def to_json(self) -> dict[str, float | list[int]]:
        n = self.used()
        return {"bin_s": self.width_ns / 1e9, "events": self.counts[:n], "backlog_max": self.gauge[:n],
                "overflows": self.marks[:n]}
