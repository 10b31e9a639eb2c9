"""Property tests of the matcher: rename scripts interleaved, halves dropped, reads split at random.

Each generated script is turned into a kernel-like event sequence: a rename's ``MOVED_FROM`` comes before its
``MOVED_TO``, other events (and other renames' halves) may fall between them, a half whose directory is not
watched is absent, and some delivered halves are dropped (as an overflow would). The sequence is cut into reads
at random points, with random drained flags and read times inside one window, and clock ticks past the window
only where no pair straddles (as the kernel guarantees: halves are queued microseconds apart).

Properties: every pair whose halves were both delivered is joined exactly once with its exact paths; no wrong
join; every lone half is a one-sided record of the right side; every other event is one record; in strict
mode records leave in kernel order (a joined rename at its first half's place).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from normalizer.core import raw
from normalizer.core.inotify import InotifyNormalizer
from normalizer.records import Rec

DIRS = {1: b"/w/d1", 2: b"/w/d2", 3: b"/w/d3"}
WINDOW = 20_000_000


@dataclass
class Op:
    kind: str  # "rename" or "noise"
    src_wd: int  # 0 = unwatched
    dst_wd: int
    gap: int  # how far (in slots) the second half trails the first
    drop_from: bool
    drop_to: bool


rarely = st.integers(0, 4).map(lambda x: x == 0)  # a delivered half is dropped 1 time in 5
ops_strategy = st.lists(
    st.one_of(
        st.builds(Op, st.just("rename"), st.integers(0, 3), st.integers(0, 3), st.integers(1, 25),
                  rarely, rarely),
        st.builds(Op, st.just("noise"), st.integers(1, 3), st.just(0), st.just(0), st.just(False),
                  st.just(False)),
    ),
    min_size=1,
    max_size=60,
)


def build(ops: list[Op], base_cookie: int) -> tuple[list[tuple[int, raw.InotifyEvent, int]], dict[int, int]]:
    """(position, event, op index) sorted by position, and the cookie of each rename op."""
    placed: list[tuple[int, int, raw.InotifyEvent, int]] = []
    cookies: dict[int, int] = {}
    for i, op in enumerate(ops):
        pos = i * 10
        if op.kind == "noise":
            placed.append((pos, 0, (op.src_wd, raw.IN_MODIFY, 0, b"n%d" % i), i))
            continue
        cookie = (base_cookie + i) % 2**32
        cookies[i] = cookie
        if op.src_wd and not op.drop_from:
            placed.append((pos, 0, (op.src_wd, raw.IN_MOVED_FROM, cookie, b"s%d" % i), i))
        if op.dst_wd and not op.drop_to:
            placed.append((pos + op.gap, 1, (op.dst_wd, raw.IN_MOVED_TO, cookie, b"t%d" % i), i))
    placed.sort(key=lambda p: (p[0], p[1]))
    return [(pos, event, i) for pos, _, event, i in placed], cookies


@settings(max_examples=400, deadline=None)
@given(
    ops=ops_strategy,
    base_cookie=st.sampled_from([0, 1, 2**32 - 30, 12345]),
    cuts=st.lists(st.integers(0, 200), max_size=30),
    drained_bits=st.lists(st.booleans(), min_size=1, max_size=40),
    ticks=st.booleans(),
    strict=st.booleans(),
)
def test_matcher_properties(ops: list[Op], base_cookie: int, cuts: list[int], drained_bits: list[bool],
                            ticks: bool, strict: bool) -> None:
    stream, cookies = build(ops, base_cookie)
    n = InotifyNormalizer(window_ns=WINDOW, strict_order=strict)
    for wd, path in DIRS.items():
        n.feed(raw.WatchAdded(0, wd, path))

    # Where a tick past the window is safe: no delivered pair has its first half before and second after.
    open_until = 0
    safe = set()
    for k, (pos, event, _) in enumerate(stream):
        if pos >= open_until:
            safe.add(k)
        if event[1] == raw.IN_MOVED_FROM:
            op = ops[pos // 10]
            if op.dst_wd and not op.drop_to:
                open_until = max(open_until, pos + op.gap + 1)
    cut_points = sorted({c for c in cuts if 0 < c < len(stream)} | ({k for k in safe if k % 3 == 0} if ticks
                                                                     else set()))
    bounds = [0, *cut_points, len(stream)]
    out: list[Rec] = []
    t = 1_000_000
    for b, (lo, hi) in enumerate(itertools.pairwise(bounds)):
        t += 1000 * (b % 7)
        drained = drained_bits[b % len(drained_bits)]
        out += n.feed(raw.InotifyBatch(t, drained, [ev for _, ev, _ in stream[lo:hi]]))
        if ticks and hi in safe:
            t += WINDOW + 1
            out += n.feed(raw.Tick(t))
    out += n.close()

    # Expected records, keyed by op index, and the stream index of each op's first delivered event.
    first_index: dict[int, int] = {}
    delivered: dict[int, set[int]] = {}
    for k, (_, event, i) in enumerate(stream):
        first_index.setdefault(i, k)
        delivered.setdefault(i, set()).add(event[1])

    seen: dict[int, Rec] = {}
    order: list[int] = []
    for rec in out:
        if rec.kind == "modify":
            i = int(rec.path.rsplit(b"/n", 1)[1])
            assert rec.path == DIRS[ops[i].src_wd] + b"/n%d" % i
        else:
            assert rec.kind == "rename", rec
            name = (rec.path or rec.dst).rsplit(b"/", 1)[1]
            i = int(name[1:])
            op = ops[i]
            assert rec.cookie == cookies[i]
            halves = delivered[i]
            if halves == {raw.IN_MOVED_FROM, raw.IN_MOVED_TO}:
                assert (rec.path, rec.dst, rec.flags) == (DIRS[op.src_wd] + b"/s%d" % i,
                                                          DIRS[op.dst_wd] + b"/t%d" % i, ())
            elif halves == {raw.IN_MOVED_FROM}:
                assert rec.path == DIRS[op.src_wd] + b"/s%d" % i and rec.dst == b""
                assert rec.flags in (("timeout",), ("shutdown",))
            else:
                assert rec.path == b"" and rec.dst == DIRS[op.dst_wd] + b"/t%d" % i
                assert rec.flags == ("unwatched",)
        assert i not in seen, f"op {i} reported twice"
        seen[i] = rec
        order.append(first_index[i])
    assert set(seen) == set(delivered), "every op with a delivered event gives exactly one record"
    if strict:
        assert order == sorted(order), "strict mode keeps kernel order"
