"""The bounded summaries behind ``fsnorm stats`` (normalizer.core.sketch, normalizer.core.races): exact while
small, within their stated error beyond, and the race counter equal to the list-based reference."""

from __future__ import annotations

from collections import Counter

from helpers import frm, to
from hypothesis import given, settings
from hypothesis import strategies as st
from race_oracle import Read
from race_oracle import race_stats as oracle_race_stats

from normalizer.core import raw
from normalizer.core.races import RaceCounter, race_stats
from normalizer.core.sketch import QuantileSketch, TimeSeries, TopK, nearest_rank

VALUES = st.lists(st.integers(min_value=0, max_value=10**12), min_size=1, max_size=300)
QS = (0, 1, 25, 50, 90, 99, 100)


@given(VALUES)
@settings(max_examples=150, deadline=None)
def test_quantiles_are_exact_below_the_limit(values: list[int]) -> None:
    s = QuantileSketch()
    for v in values:
        s.add(v)
    ordered = sorted(values)
    assert s.exact and (s.n, s.min, s.max) == (len(values), ordered[0], ordered[-1])
    for q in QS:
        assert s.quantile(q) == nearest_rank(ordered, q)


@given(VALUES)
@settings(max_examples=150, deadline=None)
def test_quantiles_stay_within_one_percent_past_the_limit(values: list[int]) -> None:
    s = QuantileSketch(exact_limit=4)
    for v in values:
        s.add(v)
    ordered = sorted(values)
    assert (s.n, s.min, s.max) == (len(values), ordered[0], ordered[-1])
    for q in QS:
        want = nearest_rank(ordered, q)
        got = s.quantile(q)
        assert got is not None and abs(got - want) <= 0.01 * want + 1e-6, (q, got, want)


def test_quantile_zeros_counted_in_bulk_and_samples() -> None:
    s = QuantileSketch()
    s.add(0, 98)
    s.add(5)
    s.add(7)
    assert (s.n, s.quantile(50), s.quantile(99), s.quantile(100)) == (100, 0.0, 5.0, 7.0)
    assert s.samples(1000) == [0.0] * 98 + [5.0, 7.0]
    assert s.histogram([0, 1, 6, 10]) == [98, 1, 1]
    assert QuantileSketch().quantile(50) is None and QuantileSketch().samples() == []


@given(st.lists(st.integers(min_value=0, max_value=40), max_size=400), st.integers(min_value=1, max_value=12))
@settings(max_examples=200, deadline=None)
def test_top_k_counts_are_low_by_at_most_the_error(keys: list[int], capacity: int) -> None:
    top: TopK[int] = TopK(capacity)
    for k in keys:
        top.add(k)
    true = Counter(keys)
    assert top.total == len(keys) and len(top.counts) <= capacity
    assert top.error <= len(keys) // (capacity + 1)
    for k, n in true.items():
        kept = top.counts.get(k, 0)
        assert kept <= n <= kept + top.error
    if len(true) <= capacity:
        assert top.error == 0 and top.counts == dict(true)


@given(st.lists(st.tuples(st.integers(min_value=0, max_value=10**11), st.integers(min_value=0, max_value=9),
                          st.integers(min_value=0, max_value=1000), st.integers(min_value=0, max_value=2)),
                max_size=200))
@settings(max_examples=150, deadline=None)
def test_time_series_keeps_totals_and_maxima(points: list[tuple[int, int, int, int]]) -> None:
    ts = TimeSeries(bins=8, width_ns=1000)
    for t, n, g, m in sorted(points):
        ts.add(t, n, gauge=g, mark=m)
    assert len(ts.counts) == 8
    assert sum(ts.counts) == sum(p[1] for p in points)
    assert sum(ts.marks) == sum(p[3] for p in points)
    assert max(ts.gauge) == max((p[2] for p in points), default=0)
    if points:
        span = max(p[0] for p in points) - min(p[0] for p in points)
        assert span < ts.width_ns * ts.bins


_EVENT = st.one_of(
    st.builds(lambda c: frm(1, c, b"a"), st.integers(min_value=1, max_value=12)),
    st.builds(lambda c: to(2, c, b"b"), st.integers(min_value=1, max_value=12)),
    st.just((-1, raw.IN_Q_OVERFLOW, 0, b"")),
    st.sampled_from([(1, raw.IN_CREATE, 0, b"n"), (1, raw.IN_MODIFY, 0, b"m"), (2, raw.IN_ATTRIB, 0, b"x")]),
)
_READS = st.lists(st.tuples(st.integers(min_value=0, max_value=5 * 10**7), st.sampled_from([0, 16]),
                            st.lists(_EVENT, max_size=25)), max_size=30)


@given(_READS)
@settings(max_examples=200, deadline=None)
def test_race_counter_equals_the_list_based_reference(spec: list[tuple[int, int, list[raw.InotifyEvent]]]) -> None:
    t = 0
    reads = []
    for dt, pending, events in spec:
        t += dt
        reads.append(Read(t, pending, events))
    want = oracle_race_stats(reads)
    got = race_stats((r.t_ns, r.pending == 0, r.events) for r in reads)
    assert {k: got[k] for k in want} == want


def test_race_counter_bounds_its_table_of_waiting_halves() -> None:
    """Lone FROMs beyond max_waiting are counted orphans at once; a late TO for one is an orphan TO."""
    rc = RaceCounter(max_waiting=3)
    rc.feed_read(1, True, [frm(1, c, b"a") for c in range(1, 6)])
    assert len(rc._waiting) == 3 and rc.orphan_from == 2
    rc.feed_read(2, True, [to(2, 1, b"b"), to(2, 5, b"b")])
    res = rc.result()
    assert (res["pairs"], res["orphan_to"], res["orphan_from"]) == (1, 1, 4)
