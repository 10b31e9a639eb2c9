"""Delivery latency of the watchdog drop-in beside watchdog itself, same machine, same run.

    python -m benchmarks.bench_compat [--trials N]

For each observer (``normalizer.compat.watchdog.Observer`` and ``watchdog.observers.inotify.InotifyObserver``)
and each case, a handler timestamps the event; the latency is from just before the ``rename(2)`` to the
handler call:

* ``rename``: a file renamed inside the watched tree -> ``FileMovedEvent``;
* ``move out``: a file moved to an unwatched directory -> ``FileDeletedEvent``;
* ``move in``: a file moved in from an unwatched directory -> ``FileCreatedEvent``.

Prints p50 / p95 / max per observer and the ratio watchdog / fsnorm. A measurement, never an assertion.
"""

from __future__ import annotations

import argparse
import os
import queue
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from watchdog.events import FileCreatedEvent, FileDeletedEvent, FileMovedEvent, FileSystemEvent
from watchdog.events import FileSystemEventHandler as Handler
from watchdog.observers.api import BaseObserver
from watchdog.observers.inotify import InotifyObserver

from normalizer.compat.watchdog import Observer as FsnormObserver


class _Stamp(Handler):
    def __init__(self) -> None:
        self.q: queue.Queue[tuple[float, FileSystemEvent]] = queue.Queue()

    def on_any_event(self, event: FileSystemEvent) -> None:
        self.q.put((time.monotonic(), event))

    def wait(self, want: Callable[[FileSystemEvent], bool], timeout: float = 5.0) -> float:
        end = time.monotonic() + timeout
        while True:
            t, event = self.q.get(timeout=max(0.001, end - time.monotonic()))
            if want(event):
                return t


def _run(make: Callable[[], BaseObserver], trials: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"rename": [], "move out": [], "move in": []}
    with tempfile.TemporaryDirectory(prefix="fsnorm-bench-compat-") as tmp:
        w, outside = Path(tmp, "w"), Path(tmp, "out")
        w.mkdir()
        outside.mkdir()
        for i in range(trials):
            (w / f"a{i}").write_text("")
            (w / f"c{i}").write_text("")
            (outside / f"in{i}").write_text("")
        handler = _Stamp()
        observer = make()
        observer.schedule(handler, str(w), recursive=True)
        observer.start()
        try:
            for i in range(trials):
                a, b, c, inn = str(w / f"a{i}"), str(w / f"b{i}"), str(w / f"c{i}"), str(w / f"in{i}")
                t0 = time.monotonic()
                os.rename(a, b)
                out["rename"].append(handler.wait(lambda e, a=a: isinstance(e, FileMovedEvent)
                                                  and e.src_path == a) - t0)
                t0 = time.monotonic()
                os.rename(c, outside / f"c{i}")
                out["move out"].append(handler.wait(lambda e, c=c: isinstance(e, FileDeletedEvent)
                                                    and e.src_path == c) - t0)
                t0 = time.monotonic()
                os.rename(outside / f"in{i}", inn)
                out["move in"].append(handler.wait(lambda e, inn=inn: isinstance(e, FileCreatedEvent)
                                                   and e.src_path == inn) - t0)
        finally:
            observer.stop()
            observer.join()
    return out


def _ms(xs: list[float], q: float) -> float:
    return 1000 * (statistics.quantiles(xs, n=100)[int(q) - 1] if q < 100 else max(xs))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=30, help="renames per case and observer (default 30)")
    args = parser.parse_args(argv)
    results = {"fsnorm compat Observer": _run(FsnormObserver, args.trials),
               "watchdog InotifyObserver": _run(InotifyObserver, args.trials)}
    print(f"delivery latency, ms ({args.trials} trials each; rename(2) -> handler call)")
    print("| case | observer | p50 | p95 | max | p50 ratio watchdog / fsnorm |")
    print("|---|---|---|---|---|---|")
    ours = results["fsnorm compat Observer"]
    for case in ("rename", "move out", "move in"):
        for name, res in results.items():
            xs = res[case]
            ratio = statistics.median(xs) / statistics.median(ours[case])
            print(f"| {case} | {name} | {_ms(xs, 50):.2f} | {_ms(xs, 95):.2f} | {_ms(xs, 100):.2f} | "
                  f"{ratio:.1f}x |")


if __name__ == "__main__":
    main()
