"""Matcher and replay throughput on a synthetic stream, with pyinotify's and watchdog's pairing code on the very
same events in the same run.

What is measured (best of ``repeat`` runs, one core, no I/O except where said):

* ``matcher``: raw inotify events -> records (path resolution, pairing, ordering), fsnorm's light ``Rec``,
  counted per feed and let go (``matcher, all kept``: every record kept in one list, the measure before
  2026-12-02);
* ``matcher+json``: the same plus each feed's JSON Lines through the CLI's writer (what ``fsnorm
  watch``/``replay`` print);
* ``pydantic``: building the public pydantic model per record and dumping it to JSON (why the hot path does
  not build models);
* ``replay e2e``: a capture file on disk (plain and gzip) -> reader -> matcher -> JSON lines into a null sink,
  as ``fsnorm replay`` runs (its ``emit`` and collector settings);
* ``fsnorm replay`` CLI: the command, stdout to /dev/null, wall time including interpreter start;
* peers: pyinotify 0.9.6 ``Notifier.process_events`` (its own cookie pairing into ``src_pathname``) and
  watchdog 7.1 ``InotifyMoveEventGrouper`` (its cookie pairing; delay set to 0 so nothing sleeps) on the same
  events. Neither pairs across reads with a window or keeps order the way fsnorm does; the ratio is about
  cost per event only.

    python -m benchmarks.bench_matcher [--events N] [--repeat K]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import gzip
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from benchmarks.synthetic import DIRS, batches
from normalizer.capture.log import CaptureHeader, CaptureWriter
from normalizer.capture.replay import replay_chunks
from normalizer.core import raw
from normalizer.core.inotify import InotifyNormalizer
from normalizer.formats.jsonl import rec_to_json
from normalizer.records import Rec


def _best(fn: Callable[[], int], repeat: int) -> tuple[float, int]:
    """(best seconds, what fn returned) over ``repeat`` runs."""
    best, result = float("inf"), 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def _normalizer() -> InotifyNormalizer:
    n = InotifyNormalizer()
    for wd, path in DIRS:
        n.feed(raw.WatchAdded(0, wd, path))
    return n


def run_matcher(stream: list[raw.InotifyBatch]) -> list[Rec]:
    """Every record of ``stream``, kept in one list (for the measures that need the records afterwards)."""
    n = _normalizer()
    out: list[Rec] = []
    for b in stream:
        out += n.feed_batch(b)
    out += n.close()
    return out


def count_matcher(stream: list[raw.InotifyBatch]) -> int:
    """The ``matcher`` measure: the records of ``stream``, counted a feed at a time and let go, as every consumer
    does (the CLI writes them, the iterator hands them on, replay encodes them per chunk).

    Until 2026-12-02 the measure was :func:`run_matcher`, which keeps all of them: a million live records, and
    the cyclic collector traversing the growing list at every full collection, were then about 80% of the time
    (658 ns per event kept, 133 ns counted, compiled, same machine; benchmarks/README.md, "Replay and matcher
    measures")."""
    n = _normalizer()
    count = 0
    for b in stream:
        count += len(n.feed_batch(b))
    return count + len(n.close())


@contextlib.contextmanager
def _cli_process() -> Iterator[None]:
    """The collector and the allocator as ``fsnorm replay`` sets them (``cli.tuning.tune_process``); the
    collector restored afterwards, so the other measures of the same process run with Python's defaults, as a
    library user's do. The allocator's thresholds cannot be read back, so they stay set once set: bench_hotpath
    and :func:`main` measure the matcher alone first; in :func:`main` the record encoders and the peers, measured
    after the CLI measures, run with them too."""
    from normalizer.cli.tuning import tune_process

    thresholds = gc.get_threshold()
    tune_process()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def run_matcher_json(stream: list[raw.InotifyBatch]) -> int:
    """The ``matcher+json`` measure: each feed's records through the CLI's JSON Lines writer (``Output.encode``,
    the C writer where built), as ``fsnorm watch`` writes them, with its collector settings (until 2026-12-02:
    ``rec_to_json`` per record in an interpreted loop, Python's default collector)."""
    from normalizer.cli.formatting import build_output

    encode = build_output(argparse.Namespace(format="json")).encode
    n = _normalizer()
    size = 0
    with _cli_process():
        for b in stream:
            size += len(encode(n.feed_batch(b)))
    return size + len(encode(n.close()))


def run_pyinotify(stream: list[raw.InotifyBatch]) -> int:
    import pyinotify  # type: ignore[import-untyped]

    class Count(pyinotify.ProcessEvent):  # type: ignore[misc]
        n = 0

        def process_default(self, event: Any) -> None:
            Count.n += 1

    wm = pyinotify.WatchManager()
    proc = Count()
    for wd, path in DIRS:
        wm._wmd[wd] = pyinotify.Watch(wd, os.fsdecode(path), pyinotify.ALL_EVENTS, proc, False, lambda p: False)
    notifier = pyinotify.Notifier(wm, default_proc_fun=proc)
    try:
        for b in stream:
            notifier._eventq.extend(pyinotify._RawEvent(wd, mask, cookie, name.decode("utf-8", "replace"))
                                    for wd, mask, cookie, name in b.events)
            notifier.process_events()
    finally:
        wm.close()
    return Count.n


def run_watchdog(stream: list[raw.InotifyBatch]) -> int:
    from watchdog.observers.inotify_c import InotifyEvent
    from watchdog.observers.inotify_move_event_grouper import InotifyMoveEventGrouper, PathedInotifyEvent

    paths = dict(DIRS)
    grouper = InotifyMoveEventGrouper()
    grouper._queue.delay = 0  # no sleeping: measure the pairing work only
    queue = grouper._queue._queue
    n = 0
    for b in stream:
        for wd, mask, cookie, name in b.events:
            ev = InotifyEvent(wd, mask, cookie, name)
            grouper.put_event(PathedInotifyEvent(ev, paths[wd] + b"/" + name))
        while queue:
            grouper.read_event()
            n += 1
    grouper.close()
    return n


def _write_capture(stream: list[raw.InotifyBatch], path: Path) -> None:
    with CaptureWriter(path, CaptureHeader(watches=list(DIRS))) as w:
        for b in stream:
            w.write(b)


class _Counter:
    """A null binary sink that counts what is written (``emit`` writes to stdout's buffer)."""

    def __init__(self) -> None:
        self.size = 0

    def write(self, data: bytes) -> int:
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        pass


def run_replay_json(path: Path) -> int:
    """What ``fsnorm replay`` does minus the write to stdout: ``replay_chunks`` -> ``cli.main.emit`` (1024-record
    chunks through ``Output.encode``, the C writer where built), with the command's collector settings."""
    from normalizer.cli.formatting import build_output
    from normalizer.cli.main import emit

    output = build_output(argparse.Namespace(format="json"))
    sink = _Counter()
    with _cli_process():
        emit(replay_chunks(path), output, sink)  # type: ignore[arg-type]
    return sink.size


def main(quick: bool = True, events: int | None = None, repeat: int | None = None) -> dict[str, Any]:
    n_events = events or 1_000_000
    reps = repeat or (2 if quick else 5)
    stream = batches(n_events)
    results: dict[str, Any] = {"events": n_events, "repeat": reps, "python": platform.python_version(),
                               "implementation": sys.executable}
    rates: dict[str, float] = {}

    t, recs = _best(lambda: count_matcher(stream), reps)
    rates["fsnorm matcher"] = n_events / t
    results["records"] = recs
    t, _ = _best(lambda: len(run_matcher(stream)), reps)
    rates["fsnorm matcher, all kept"] = n_events / t
    t, _ = _best(lambda: run_matcher_json(stream), reps)
    rates["fsnorm matcher+json"] = n_events / t
    sample = run_matcher(stream)[:100_000]
    from benchmarks.bench_records import pydantic_model  # the public pydantic model per record, as before Record

    t, _ = _best(lambda: sum(len(pydantic_model(r).model_dump_json()) for r in sample), 1)
    results["pydantic_records_per_s"] = len(sample) / t
    t, _ = _best(lambda: sum(len(rec_to_json(r)) for r in sample), 1)
    results["fast_json_records_per_s"] = len(sample) / t

    with tempfile.TemporaryDirectory() as tmp:
        plain, gz = Path(tmp) / "s.fsncap", Path(tmp) / "s.fsncap.gz"
        _write_capture(stream, plain)
        _write_capture(stream, gz)
        results["capture_bytes"] = {"plain": plain.stat().st_size, "gzip": gz.stat().st_size}
        t, _ = _best(lambda: run_replay_json(plain), reps)
        rates["fsnorm replay e2e (plain)"] = n_events / t
        t, _ = _best(lambda: run_replay_json(gz), reps)
        rates["fsnorm replay e2e (gzip)"] = n_events / t
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "normalizer", "replay", str(plain)], stdout=subprocess.DEVNULL,
                       check=True)
        rates["fsnorm replay CLI (wall)"] = n_events / (time.perf_counter() - t0)
        with gzip.open(gz, "rb") as f:
            results["capture_lines"] = sum(1 for _ in f)

    peer_events = min(n_events, 200_000)  # the peers are slow; measure on a prefix, report per event
    peer_stream = batches(peer_events)
    for name, fn in (("pyinotify process_events", run_pyinotify), ("watchdog move grouper", run_watchdog)):
        try:
            t, _ = _best(lambda fn=fn: fn(peer_stream), 1)  # type: ignore[misc]
            rates[name] = peer_events / t
        except Exception as exc:  # a peer's internals changed: say so, keep the rest of the report
            results.setdefault("peer_errors", {})[name] = repr(exc)
    results["events_per_s"] = rates
    _print(results)
    results["hot_path"] = _hot_path(n_events, quick)
    return results


def _hot_path(n_events: int, quick: bool) -> dict[str, Any]:
    """The compiled hot path against the pure-Python one, same run (benchmarks/bench_hotpath.py)."""
    from benchmarks.bench_hotpath import compare, render

    hot = compare(min(n_events, 300_000), rounds=1 if quick else 2)
    print(render(hot))
    return hot


def _print(results: dict[str, Any]) -> None:
    rates = results["events_per_s"]
    base = rates["fsnorm matcher"]
    print(f"\nMatcher throughput: {results['events']:,} synthetic events (40% rename halves), best of "
          f"{results['repeat']}, {results['python']}")
    print(f"{'subject':<30} {'events/s':>12} {'vs fsnorm matcher':>18}")
    for name, rate in rates.items():
        print(f"{name:<30} {rate:>12,.0f} {rate / base:>17.2f}x")
    print(f"record -> JSON: fast writer {results['fast_json_records_per_s']:,.0f}/s, pydantic model "
          f"{results['pydantic_records_per_s']:,.0f}/s "
          f"({results['fast_json_records_per_s'] / results['pydantic_records_per_s']:.1f}x)")
    caps = results["capture_bytes"]
    print(f"capture size: {caps['plain'] / results['events']:.1f} B/event plain, "
          f"{caps['gzip'] / results['events']:.1f} B/event gzip")
    for name, err in results.get("peer_errors", {}).items():
        print(f"peer {name} failed: {err}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=None)
    p.add_argument("--repeat", type=int, default=None)
    p.add_argument("--full", action="store_true")
    a = p.parse_args()
    main(quick=not a.full, events=a.events, repeat=a.repeat)
