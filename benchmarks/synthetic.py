"""A seeded synthetic inotify stream for throughput benchmarks (and the tests that check them on a tiny size).

The mix follows what the storm workload produces: ``rename_share`` of the events are rename halves (pairs
across 8 directories, about 1% with another event between the halves and about 0.3% with the halves in two
reads), the rest creates, writes, attribute changes, closes and deletes. Reads hold ``batch`` events.
"""

from __future__ import annotations

import random

from normalizer.core import raw

DIRS = [(wd, b"/bench/dir%d" % wd) for wd in range(1, 9)]
_NOISE = [raw.IN_CREATE, raw.IN_MODIFY, raw.IN_CLOSE_WRITE, raw.IN_ATTRIB, raw.IN_DELETE]


def events(n: int, *, rename_share: float = 0.4, seed: int = 1) -> list[raw.InotifyEvent]:
    rng = random.Random(seed)
    out: list[raw.InotifyEvent] = []
    cookie = 1000
    while len(out) < n:
        if rng.random() < rename_share:
            cookie += 1
            src, dst = rng.randrange(1, 9), rng.randrange(1, 9)
            out.append((src, raw.IN_MOVED_FROM, cookie, b"f%d" % rng.randrange(100000)))
            if rng.random() < 0.01:
                out.append((rng.randrange(1, 9), raw.IN_MODIFY, 0, b"between"))
            out.append((dst, raw.IN_MOVED_TO, cookie, b"g%d" % rng.randrange(100000)))
        else:
            out.append((rng.randrange(1, 9), rng.choice(_NOISE), 0, b"n%d" % rng.randrange(100000)))
    return out[:n]


def batches(n: int, *, batch: int = 512, rename_share: float = 0.4, seed: int = 1) -> list[raw.InotifyBatch]:
    """The stream cut into reads of ``batch`` events, 1 us apart, the queue drained after every 8th read."""
    evs = events(n, rename_share=rename_share, seed=seed)
    return [raw.InotifyBatch(1_000_000 + i * 1000, i % 8 == 7, evs[i * batch:(i + 1) * batch])
            for i in range((len(evs) + batch - 1) // batch)]
