"""Output format throughput: records/s of each ``--format`` on the synthetic stream of bench_matcher, in process
and through ``fsnorm replay`` (wall time, stdout to /dev/null), as ratios to fsnorm's own JSON Lines writer.

No peer formats fsnorm's records, so the baseline is fsnorm's ``json`` format in the same run (inotifywait,
the template format's model, cannot be fed a synthetic stream). Run: ``python -m benchmarks.bench_formats``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.bench_matcher import _write_capture, batches, run_matcher
from normalizer.formats import FormatContext, WallClock, make_formatter

FORMATS = ["json", "text", "ecs", "ocsf", "%w%f %e", "%T %e %w%f -> %W%F"]


def main(events: int = 300_000, repeat: int = 3) -> None:
    stream = batches(events)
    recs = run_matcher(stream)
    ctx = FormatContext(host="bench", clock=WallClock(0), timefmt="%F %T")
    rates: dict[str, float] = {}
    for spec in FORMATS:
        fmt = make_formatter(spec, ctx)
        best = min(_timed(lambda fmt=fmt: sum(len(fmt(r)) for r in recs)) for _ in range(repeat))  # type: ignore[misc]
        rates[spec] = len(recs) / best
    cli: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        cap = Path(tmp) / "s.fsncap"
        _write_capture(stream, cap)
        for spec in FORMATS:
            extra = ["--timefmt", "%F %T"] if "%T" in spec else []
            t = min(_timed(lambda spec=spec, extra=extra: subprocess.run(  # type: ignore[misc]
                [sys.executable, "-m", "normalizer", "replay", str(cap), "--format", spec, *extra],
                stdout=subprocess.DEVNULL, check=True)) for _ in range(repeat))
            cli[spec] = events / t
    print(f"{events:,} events -> {len(recs):,} records; best of {repeat}")
    print(f"{'format':24s} {'records/s':>12s} {'vs json':>8s} {'replay CLI events/s':>20s} {'vs json':>8s}")
    for spec in FORMATS:
        print(f"{spec:24s} {rates[spec]:12,.0f} {rates[spec] / rates['json']:7.2f}x {cli[spec]:20,.0f} "
              f"{cli[spec] / cli['json']:7.2f}x")


def _timed(fn: object) -> float:
    t0 = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - t0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    main(args.events, args.repeat)
