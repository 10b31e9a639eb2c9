"""The matching rules, one test each, through the sans-IO normalizer (no kernel: these are pure functions of
the event sequence; tests/test_live_inotify.py runs the same rules against real renames)."""

from __future__ import annotations

import pytest
from helpers import MS, batch, brief, ev, frm, norm_with, to

from normalizer.core import raw
from normalizer.core.matcher import Half, Matcher
from normalizer.records import Rec

A, B = b"/w/a", b"/w/b"


def two_dirs(**options: object):  # type: ignore[no-untyped-def]
    return norm_with((1, A), (2, B), **options)


def test_pair_in_one_read_is_one_record() -> None:
    n = two_dirs()
    out = n.feed(batch(0, frm(1, 7, b"x"), to(2, 7, b"y")))
    assert brief(out) == [("rename", b"/w/a/x", b"/w/b/y", [])]
    assert out[0].cookie == 7
    assert out[0].mask == raw.IN_MOVED_FROM | raw.IN_MOVED_TO


def test_pair_split_across_reads_is_joined_when_the_second_half_comes() -> None:
    n = two_dirs()
    assert n.feed(batch(0, frm(1, 7, b"x"), drained=True)) == []
    out = n.feed(batch(0.01, to(2, 7, b"y")))
    assert brief(out) == [("rename", b"/w/a/x", b"/w/b/y", [])]


def test_first_half_alone_times_out_only_after_a_drained_read_past_the_window() -> None:
    n = two_dirs(window_ns=20 * MS)
    n.feed(batch(0, frm(1, 7, b"x")))
    assert n.feed(raw.Tick(19 * MS)) == []
    # Not drained: the second half may still be in the kernel queue, however late it is.
    assert n.feed(batch(50, ev(1, raw.IN_MODIFY, b"m"), drained=False)) == []
    out = n.feed(raw.Tick(50 * MS))
    assert brief(out) == [("rename", b"/w/a/x", b"", ["timeout"]), ("modify", b"/w/a/m", [])]


def test_max_wait_expires_even_when_the_queue_never_drains() -> None:
    n = two_dirs(window_ns=20 * MS, max_wait_ns=100 * MS)
    n.feed(batch(0, frm(1, 7, b"x"), drained=False))
    assert n.feed(batch(99, ev(1, raw.IN_MODIFY, b"m"), drained=False)) == []
    out = n.feed(batch(100, ev(1, raw.IN_MODIFY, b"n"), drained=False))
    assert brief(out) == [("rename", b"/w/a/x", b"", ["timeout"]), ("modify", b"/w/a/m", []),
                          ("modify", b"/w/a/n", [])]


def test_second_half_alone_is_one_sided_at_once() -> None:
    n = two_dirs()
    out = n.feed(batch(0, to(2, 9, b"y"), drained=False))
    assert brief(out) == [("rename", b"", b"/w/b/y", ["unwatched"])]


def test_strict_order_holds_later_records_and_the_pair_takes_its_first_halfs_place() -> None:
    n = two_dirs()
    out = n.feed(batch(0, ev(1, raw.IN_CREATE, b"c0"), frm(1, 7, b"x"), ev(1, raw.IN_MODIFY, b"m"),
                       drained=False))
    assert brief(out) == [("create", b"/w/a/c0", [])]
    out = n.feed(batch(1, ev(1, raw.IN_ATTRIB, b"n"), to(2, 7, b"y"), ev(2, raw.IN_DELETE, b"d")))
    assert brief(out) == [("rename", b"/w/a/x", b"/w/b/y", []), ("modify", b"/w/a/m", []),
                          ("attrib", b"/w/a/n", []), ("delete", b"/w/b/d", [])]


def test_relaxed_order_does_not_hold() -> None:
    n = two_dirs(strict_order=False)
    out = n.feed(batch(0, frm(1, 7, b"x"), ev(1, raw.IN_MODIFY, b"m"), drained=False))
    assert brief(out) == [("modify", b"/w/a/m", [])]
    out = n.feed(batch(1, to(2, 7, b"y")))
    assert brief(out) == [("rename", b"/w/a/x", b"/w/b/y", [])]


def test_overflow_flushes_pending_and_flags_orphans_after_it() -> None:
    n = two_dirs(window_ns=20 * MS)
    out = n.feed(batch(0, frm(1, 7, b"x"), ev(-1, raw.IN_Q_OVERFLOW), to(2, 8, b"y"), drained=True))
    assert brief(out) == [("rename", b"/w/a/x", b"", ["overflow"]), ("overflow", b"", []),
                          ("rename", b"", b"/w/b/y", ["unwatched", "after_overflow"])]
    # The after-overflow state ends once the queue was seen empty a window later.
    n.feed(raw.Tick(25 * MS))
    out = n.feed(batch(30, to(2, 9, b"z")))
    assert brief(out) == [("rename", b"", b"/w/b/z", ["unwatched"])]


def test_pending_table_is_bounded_and_evictions_are_records() -> None:
    n = two_dirs(max_pending=2)
    out = n.feed(batch(0, frm(1, 1, b"p"), frm(1, 2, b"q"), frm(1, 3, b"r"), drained=False))
    assert brief(out) == [("rename", b"/w/a/p", b"", ["evicted"])]
    assert n.matcher.pending == 2
    out = n.feed(batch(1, to(2, 2, b"q2"), to(2, 3, b"r2"), to(2, 1, b"p2")))
    assert brief(out) == [("rename", b"/w/a/q", b"/w/b/q2", []), ("rename", b"/w/a/r", b"/w/b/r2", []),
                          ("rename", b"", b"/w/b/p2", ["unwatched"])]


def test_held_queue_is_bounded() -> None:
    m = Matcher(max_held=3)
    out: list[Rec] = []
    m.begin(0)
    m.push_from(Half(b"/a", False, 0, raw.IN_MOVED_FROM, 1, 1), out)
    for i in range(3):
        m.push(Rec("modify", b"/m%d" % i, False, 0, raw.IN_MODIFY), out)
    assert [r.path for r in out] == [b"/a", b"/m0", b"/m1", b"/m2"]
    assert out[0].flags == ("evicted",)


def test_cookie_reuse_finishes_the_older_half() -> None:
    n = two_dirs()
    out = n.feed(batch(0, frm(1, 5, b"old"), frm(1, 5, b"new"), to(2, 5, b"dst")))
    assert brief(out) == [("rename", b"/w/a/old", b"", ["cookie_reused"]),
                          ("rename", b"/w/a/new", b"/w/b/dst", [])]


@pytest.mark.parametrize("cookie", [0, 1, 2**32 - 1])
def test_any_cookie_value_pairs_including_zero_and_the_wrap(cookie: int) -> None:
    n = two_dirs()
    out = n.feed(batch(0, frm(1, cookie, b"x"), to(2, cookie, b"y"), frm(1, (cookie + 1) % 2**32, b"u"),
                       to(1, (cookie + 1) % 2**32, b"v")))
    assert brief(out) == [("rename", b"/w/a/x", b"/w/b/y", []), ("rename", b"/w/a/u", b"/w/a/v", [])]


def test_second_half_before_first_is_two_one_sided_records() -> None:
    n = two_dirs()
    out = n.feed(batch(0, to(2, 4, b"y"), frm(1, 4, b"x")))
    assert brief(out) == [("rename", b"", b"/w/b/y", ["unwatched"])]
    assert brief(n.close()) == [("rename", b"/w/a/x", b"", ["shutdown"])]


def test_close_flushes_everything_in_order() -> None:
    n = two_dirs()
    n.feed(batch(0, frm(1, 1, b"x"), ev(1, raw.IN_MODIFY, b"m"), drained=False))
    assert brief(n.close()) == [("rename", b"/w/a/x", b"", ["shutdown"]), ("modify", b"/w/a/m", [])]


def test_matcher_rejects_bad_settings() -> None:
    with pytest.raises(ValueError):
        Matcher(window_ns=10, max_wait_ns=5)
    with pytest.raises(ValueError):
        Matcher(max_pending=0)


def test_next_deadline_reports_when_advance_can_resolve() -> None:
    n = two_dirs(window_ns=20 * MS)
    assert n.matcher.next_deadline() is None
    n.feed(batch(5, frm(1, 1, b"x"), drained=False))
    assert n.matcher.next_deadline() == 25 * MS
    n.feed(batch(6, to(2, 1, b"y")))
    assert n.matcher.next_deadline() is None


def test_next_deadline_stays_cheap_with_many_renames_split_between_reads() -> None:
    """Reads of one event each (a storm read as fast as it comes): every rename's halves are in two reads and
    leave a deadline entry behind, within the window. ``next_deadline`` (called after every feed) forgets the
    entries whose halves are final instead of scanning them all again on every read (it was quadratic), and
    still gives the deadline of the oldest half that waits."""
    n = two_dirs(window_ns=20 * MS)
    for i in range(2000):
        t = 1 + i * 0.001  # 2 us apart: all within one window
        n.feed(batch(t, frm(1, i + 1, b"x%d" % i), drained=False))
        assert n.matcher.next_deadline() == int(t * MS) + 20 * MS
        n.feed(batch(t + 0.0005, to(2, i + 1, b"y%d" % i), drained=False))
        assert n.matcher.next_deadline() is None
        assert len(n.matcher._deadlines) == 0
    n.feed(batch(3, frm(1, 9999, b"lone"), drained=False))
    n.feed(batch(3.001, to(2, 5, b"other"), drained=False))  # a move in: the lone half still waits
    assert n.matcher.next_deadline() == 23 * MS

def test_a_busy_queue_does_not_stretch_the_window_once_the_backlog_is_read() -> None:
    """The queue never drains, but the backlog seen after each read is consumed by the next ones: once what
    was queued up to a window after the first half has been read, the half is one-sided."""
    m = Matcher(window_ns=20 * MS, max_wait_ns=1000 * MS)
    out: list[Rec] = []
    m.begin(0)
    m.push_from(Half(b"/a/x", False, 0, raw.IN_MOVED_FROM, 1, 1), out)
    m.push(Rec("modify", b"/a/m", False, 0, raw.IN_MODIFY), out)
    m.end(0, False, out, backlog=100, consumed=50)  # barrier: time 0 is safe at position 150
    m.begin(25 * MS)
    m.end(25 * MS, False, out, backlog=80, consumed=100)  # position 150: time 0 safe; barrier 25 ms at 230
    assert out == []  # 0 + 20 ms > 0: not yet
    m.begin(30 * MS)
    m.end(30 * MS, False, out, backlog=500, consumed=79)  # position 229: not yet
    assert out == []
    m.begin(31 * MS)
    m.end(31 * MS, False, out, backlog=500, consumed=1)  # position 230: 25 ms is safe, >= 0 + 20 ms
    assert [(r.path, r.flags) for r in out] == [(b"/a/x", ("timeout",)), (b"/a/m", ())]


def test_without_backlog_figures_a_busy_queue_waits_for_max_wait() -> None:
    m = Matcher(window_ns=20 * MS, max_wait_ns=100 * MS)
    out: list[Rec] = []
    m.begin(0)
    m.push_from(Half(b"/a/x", False, 0, raw.IN_MOVED_FROM, 1, 1), out)
    m.end(0, False, out)
    m.begin(99 * MS)
    m.end(99 * MS, False, out)
    assert out == []
    m.begin(100 * MS)
    m.end(100 * MS, False, out)
    assert [r.flags for r in out] == [("timeout",)]
