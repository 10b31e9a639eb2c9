"""Joined reads (the reader thread's batches, normalizer.backends.reader "Batches") against the sans-IO core.

The reader thread joins reads made while its last chunk waits untaken into that chunk: the last read's time
and FIONREAD, the bytes concatenated. These properties hold the core to what the reader's docstring claims of
such a batch, on random kernel-like streams (rename halves interleaved, halves dropped, an overflow now and
then) cut into reads at random points with honest FIONREADs, then joined along random runs of reads:

* records never depend on the cut: with windows too long to end during the stream, the joined stream gives
  the same records, in the same order, as the reads one by one and as the whole stream read at once; each
  record's time is never earlier than with the reads one by one;
* with a real window, a joined stream never gives up on a half sooner: every rename joined with the reads
  one by one is joined too (a joined batch only gives up barriers, never claims one), and nothing is joined
  wrongly.
"""

from __future__ import annotations

import itertools
import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from test_properties import DIRS, build, ops_strategy

from normalizer.backends._inotify_sys import _parse
from normalizer.core import raw
from normalizer.core.inotify import InotifyNormalizer
from normalizer.records import Rec

MS = 1_000_000
NEVER = 10**15  # a window no stream here reaches


def encode(event: raw.InotifyEvent) -> bytes:
    """One ``struct inotify_event`` as the kernel writes it (name NUL-padded to a multiple of 16)."""
    wd, mask, cookie, name = event
    padded = name + b"\0" * (16 - len(name) % 16) if name else b""
    return struct.pack("iIII", wd, mask, cookie, len(padded)) + padded


#: A read: (t_ns, backlog, data).
Read = tuple[int, int, bytes]


def reads_of(events: list[raw.InotifyEvent], cuts: list[int], ahead: list[int], gaps: list[int]) -> list[Read]:
    """The stream cut into reads at ``cuts``, with increasing times and honest FIONREADs: after each read,
    what had arrived but was not read (the next ``ahead`` events, never past the end, never fewer than the
    read before left)."""
    blobs = [encode(e) for e in events]
    bounds = [0, *sorted({c for c in cuts if 0 < c < len(events)}), len(events)]
    out: list[Read] = []
    t = 1_000 * MS
    arrived = 0
    for i, (lo, hi) in enumerate(itertools.pairwise(bounds)):
        t += gaps[i % len(gaps)] * MS
        arrived = min(len(events), max(arrived, hi + ahead[i % len(ahead)]))
        out.append((t, sum(len(b) for b in blobs[hi:arrived]), b"".join(blobs[lo:hi])))
    return out


def joined(reads: list[Read], join: list[bool]) -> list[Read]:
    """Runs of consecutive reads joined as the reader thread joins them: the last read's time and backlog, the
    bytes concatenated (``join[i]``: read i+1 joins read i's chunk)."""
    out: list[Read] = []
    for i, read in enumerate(reads):
        if out and join[(i - 1) % len(join)]:
            t, backlog, data = read
            out[-1] = (t, backlog, out[-1][2] + data)
        else:
            out.append(read)
    return out


def feed(reads: list[Read], window_ns: int, strict: bool) -> list[Rec]:
    """The records of ``reads``; halves end by the window only (max_wait never), i.e. by the read barriers."""
    n = InotifyNormalizer(window_ns=window_ns, max_wait_ns=NEVER, strict_order=strict)
    for wd, path in DIRS.items():
        n.feed(raw.WatchAdded(0, wd, path))
    out: list[Rec] = []
    for t, backlog, data in reads:
        out += n.feed(raw.InotifyBatch(t, backlog == 0, _parse(data, len(data)), backlog, len(data)))
    out += n.close()
    return out


def shape(recs: list[Rec]) -> list[tuple[object, ...]]:
    return [(r.kind, r.path, r.dst, r.is_dir, r.flags, r.cookie) for r in recs]


def pairs(recs: list[Rec]) -> set[tuple[bytes, bytes, int | None]]:
    return {(r.path, r.dst, r.cookie) for r in recs if r.kind == "rename" and r.path and r.dst}


streams = st.fixed_dictionaries({
    "ops": ops_strategy,
    "overflow_at": st.none() | st.integers(0, 100),
    "cuts": st.lists(st.integers(0, 200), max_size=40),
    "ahead": st.lists(st.integers(0, 6), min_size=1, max_size=10),
    "gaps": st.lists(st.integers(0, 30), min_size=1, max_size=10),
    "join": st.lists(st.booleans(), min_size=1, max_size=40),
    "strict": st.booleans(),
})


def make(case: dict[str, object]) -> tuple[list[Read], list[Read], list[raw.InotifyEvent]]:
    stream, _ = build(case["ops"], 1000)  # type: ignore[arg-type]
    events = [event for _, event, _ in stream]
    at = case["overflow_at"]
    if isinstance(at, int) and at <= len(events):
        events.insert(at, (-1, raw.IN_Q_OVERFLOW, 0, b""))
    split = reads_of(events, case["cuts"], case["ahead"], case["gaps"])  # type: ignore[arg-type]
    return split, joined(split, case["join"]), events  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(case=streams)
def test_joined_reads_give_the_records_of_the_reads_one_by_one(case: dict[str, object]) -> None:
    split, merged, _ = make(case)
    strict = bool(case["strict"])
    assert b"".join(r[2] for r in merged) == b"".join(r[2] for r in split)
    one_by_one = feed(split, NEVER, strict)
    together = feed(merged, NEVER, strict)
    assert shape(together) == shape(one_by_one)
    assert shape(feed([(split[-1][0], 0, b"".join(r[2] for r in split))] if split else [], NEVER, strict)) \
        == shape(one_by_one), "the whole stream in one read"
    assert all(a.t_ns >= b.t_ns for a, b in zip(together, one_by_one, strict=True)), "never an earlier time"


@settings(max_examples=300, deadline=None)
@given(case=streams)
def test_joined_reads_never_give_up_on_a_half_sooner(case: dict[str, object]) -> None:
    split, merged, _ = make(case)
    strict = bool(case["strict"])
    one_by_one = pairs(feed(split, 20 * MS, strict))
    together = pairs(feed(merged, 20 * MS, strict))
    assert one_by_one <= together, "a rename joined read by read is joined in the joined stream"
    for src, dst, cookie in together:  # op i renames s{i} to t{i} with cookie 1000 + i
        assert cookie is not None and src.rsplit(b"/s", 1)[1] == dst.rsplit(b"/t", 1)[1] == b"%d" % (cookie - 1000)


def test_a_join_claims_only_its_last_reads_barrier() -> None:
    """The case the properties guard, spelled out: ``MOVED_FROM`` read alone; a read that left the queue empty;
    30 ms later a read that left the ``MOVED_TO`` queued. Joined, the two later reads must keep the last one's
    backlog: with the first one's (empty), the batch would say "the queue was empty at 30 ms" and the half, 30
    ms old, would end as ``timeout`` although its partner was already queued."""
    src, dst, noise = (1, raw.IN_MOVED_FROM, 7, b"s"), (2, raw.IN_MOVED_TO, 7, b"t"), (3, raw.IN_MODIFY, 0, b"n")
    split: list[Read] = [(1 * MS, 0, encode(src)), (5 * MS, 0, encode(noise)),
                         (31 * MS, len(encode(dst)), encode(noise)), (32 * MS, 0, encode(dst))]
    merged = joined(split, [False, True, False])
    assert [len(r[2]) for r in merged] == [32, 64, 32] and merged[1][1] == len(encode(dst))
    for reads in (split, merged):
        assert pairs(feed(reads, 20 * MS, True)) == {(b"/w/d1/s", b"/w/d2/t", 7)}
    wrong = [*merged[:1], (31 * MS, 0, merged[1][2]), *merged[2:]]  # the first read's backlog: a false drain
    assert pairs(feed(wrong, 20 * MS, True)) == set()
