"""``fsnorm stats`` beside ``fsnorm replay``: read speed on the same capture file (ratio), and peak memory of
the statistics on millions of events (tracemalloc), which must not grow with the number of events.

    python -m benchmarks.bench_stats --quick          # make bench
    python -m benchmarks.bench_stats --events 10000000 --memory-events 10000000

The capture is the seeded synthetic stream of benchmarks/synthetic.py (storm-like mix, reads of 512 events)
written as a real capture file; both commands read it through the same reader and normalizer, stats adds its
figures on top. Memory is measured on streams generated read by read (nothing per event exists outside the
code measured): the statistics *and* the normalizer making the records, at two sizes.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

from benchmarks import synthetic
from normalizer.capture.log import CaptureHeader, CaptureWriter
from normalizer.capture.replay import normalizer_for, replay
from normalizer.capture.stats import CaptureStats, capture_stats
from normalizer.core import raw
from normalizer.formats import make_formatter


def write_capture(path: Path, n: int) -> None:
    with CaptureWriter(path, CaptureHeader(options={"window_ns": 20_000_000}, watches=synthetic.DIRS)) as w:
        for b in synthetic.batches(n):
            w.write(b)


def time_replay(path: Path) -> float:
    t = time.perf_counter()
    for _ in replay(path):
        pass
    return time.perf_counter() - t


def time_replay_json(path: Path) -> float:
    """What ``fsnorm replay`` does: the records, formatted as JSON lines (written to /dev/null)."""
    fmt = make_formatter("json")
    t = time.perf_counter()
    with open(os.devnull, "w") as out:
        write = out.write
        for rec in replay(path):
            write(fmt(rec) + "\n")
    return time.perf_counter() - t


def time_stats(path: Path) -> float:
    t = time.perf_counter()
    capture_stats(path)
    return time.perf_counter() - t


def stream(n: int, seed: int = 3) -> Iterator[raw.InotifyBatch]:
    """n events read by read, made as they are consumed: renames (some split across reads, some lone), noise,
    a read every 50 us and an overflow every 20,000 reads."""
    rng = random.Random(seed)
    cookie = 0
    t = 10**9
    done = reads = 0
    carry: list[raw.InotifyEvent] = []
    while done < n:
        t += 50_000
        events, carry = carry, []
        while len(events) < 512:
            cookie += 1
            wd_a, wd_b = rng.randrange(1, 9), rng.randrange(1, 9)
            x = rng.random()
            if x < 0.4:
                events += [(wd_a, raw.IN_MOVED_FROM, cookie, b"f%d" % cookie),
                           (wd_b, raw.IN_MOVED_TO, cookie, b"g%d" % cookie)]
            elif x < 0.41:
                events.append((wd_a, raw.IN_MOVED_FROM, cookie, b"f%d" % cookie))
                carry.append((wd_b, raw.IN_MOVED_TO, cookie, b"g%d" % cookie))
            else:
                events.append((wd_a, raw.IN_MODIFY, 0, b"n%d" % rng.randrange(1 << 20)))
        reads += 1
        if reads % 20_000 == 0:
            events.append((-1, raw.IN_Q_OVERFLOW, 0, b""))
        done += len(events)
        yield raw.InotifyBatch(t, rng.random() < 0.3, events, rng.randrange(1 << 16), 0)


def peak_memory(n: int) -> tuple[int, int, float]:
    """(peak traced bytes, events, seconds) of stats + normalizer over ``n`` generated events."""
    tracemalloc.start()
    t = time.perf_counter()
    try:
        stats = CaptureStats(CaptureHeader(watches=synthetic.DIRS))
        norm = normalizer_for({})
        for wd, path in synthetic.DIRS:
            norm.table.add(wd, path)
        for batch in stream(n):
            stats.feed(batch)
            stats.records_from(norm.feed(batch))
        stats.records_from(norm.close())
        res = stats.result()
        return tracemalloc.get_traced_memory()[1], res["volume"]["events"], time.perf_counter() - t
    finally:
        tracemalloc.stop()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="300k events for speed, 3M for memory (make bench)")
    p.add_argument("--events", type=int, default=1_000_000, help="events in the capture timed")
    p.add_argument("--memory-events", type=int, default=10_000_000, help="events for the memory measurement")
    p.add_argument("--repeat", type=int, default=3, help="timed runs of each (best kept)")
    a = p.parse_args(argv)
    n, m = (300_000, 3_000_000) if a.quick else (a.events, a.memory_events)
    with tempfile.TemporaryDirectory(prefix="fsnorm-bench-stats-") as tmp:
        path = Path(tmp) / "synthetic.fsncap"
        write_capture(path, n)
        size = os.path.getsize(path)
        replay_s, json_s, stats_s = [], [], []
        for _ in range(a.repeat):  # interleaved, so that a change of machine load hits all three
            replay_s.append(time_replay(path))
            json_s.append(time_replay_json(path))
            stats_s.append(time_stats(path))
    r, j, s = min(replay_s), min(json_s), min(stats_s)
    print(f"## fsnorm stats beside fsnorm replay ({n:,} events, {size / 2**20:.1f} MiB capture, best of {a.repeat})")
    print(f"replay (records only):       {n / r:>10,.0f} events/s  ({r:.2f} s)")
    print(f"replay + JSON (fsnorm replay): {n / j:>8,.0f} events/s  ({j:.2f} s)")
    print(f"stats:                       {n / s:>10,.0f} events/s  ({s:.2f} s)   "
          f"x{r / s:.2f} of replay's speed, x{j / s:.2f} of fsnorm replay's")
    small_n = max(m // 10, 1000)
    small, small_events, _ = peak_memory(small_n)
    big, big_events, secs = peak_memory(m)
    print(f"peak memory of stats + normalizer (tracemalloc): {small / 2**20:.2f} MiB at {small_events:,} events, "
          f"{big / 2**20:.2f} MiB at {big_events:,} events (x{big / small:.2f} for x{big_events / small_events:.0f} "
          f"the events; {secs:.0f} s traced)")


if __name__ == "__main__":
    main()
