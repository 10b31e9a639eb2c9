"""The live loop of ``fsnorm watch`` without the kernel: CPU per event by read size, and where it goes.

A real :class:`~normalizer.backends.inotify.InotifySource` is opened on a temp tree (8 directories: real
watches, real poll, the shadow tree, the filter, the stats) and fed synthetic reads
(``benchmarks/synthetic.py``'s storm-like mix, packed as the kernel packs ``struct inotify_event``) through
its ``_next_chunk`` hook, ``batch`` events per read; its records are formatted by the CLI's ``Output`` (JSON
Lines) and written to ``/dev/null`` with ``write_all``, as ``fsnorm watch`` does. So everything the watch loop
does per read and per event is measured except the kernel's read itself and the reader thread.

``--stages`` measures, on the same reads, the loop cut after each stage (parse only; + normalizer feed; +
shadow, filter and stats, i.e. ``LiveSource._feed``; + ``read``'s locking, poll and requests; + JSON; +
write), so the differences give each stage's cost per event. ``--instructions`` counts CPU instructions per
event of each stage under valgrind's callgrind instead of CPU time (independent of the machine's load; slow:
use ``--events 20000``). ``--profile`` runs cProfile over the whole loop
(meaningful for the pure path, ``FSNORM_PURE=1``: compiled functions are invisible to it).

    .venv/bin/python -m benchmarks.bench_liveloop [--events 200000] [--batch 1,4,16,64,512] [--stages]
    .venv/bin/python -m benchmarks.bench_liveloop --instructions --events 20000 --batch 8,64 [--pure]
"""

from __future__ import annotations

import argparse
import os
import re
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from benchmarks.synthetic import events as synthetic_events
from normalizer.backends.inotify import InotifySource
from normalizer.backends.reader import Chunk

REPO = Path(__file__).resolve().parent.parent
_HEADER = struct.Struct("iIII")


def pack(events: list[tuple[int, int, int, bytes]]) -> bytes:
    """``struct inotify_event`` records as the kernel writes them (names NUL-padded to 16 bytes)."""
    out = bytearray()
    for wd, mask, cookie, name in events:
        ln = 0 if not name else (len(name) + 16) // 16 * 16
        out += _HEADER.pack(wd, mask, cookie, ln)
        out += name.ljust(ln, b"\0")
    return bytes(out)


def make_chunks(wds: list[int], n: int, batch: int) -> list[Chunk]:
    """``n`` synthetic events on the watches ``wds`` in reads of ``batch``, 5 us apart (a storm of 200,000
    events/s); every 8th read drains the queue."""
    evs = [(wds[(wd - 1) % len(wds)], mask, cookie, name) for wd, mask, cookie, name in synthetic_events(n)]
    chunks: list[Chunk] = []
    for i in range(0, len(evs), batch):
        data = pack(evs[i:i + batch])
        chunks.append((1_000_000 + i * 5000, 0.0, 0 if (i // batch) % 8 == 7 else 4096, data))
    return chunks


def open_source(root: Path) -> InotifySource:
    for d in range(8):
        (root / f"dir{d}").mkdir(parents=True, exist_ok=True)
    src = InotifySource([root], read_buffer=0)
    src.open()
    return src


def _wds(src: InotifySource, root: Path) -> list[int]:
    table = src.normalizer.table
    return [wd for wd, path in table.items() if path != os.fsencode(root)]


def run(root: Path, n: int, batch: int, stage: str) -> float:
    """CPU seconds for ``n`` events in reads of ``batch`` through the loop cut after ``stage``."""
    from normalizer.backends._inotify_sys import _parse
    from normalizer.cli.formatting import build_output
    from normalizer.core import raw
    from normalizer.sinks.fd import write_all

    src = open_source(root)
    chunks = make_chunks(_wds(src, root), n, batch)
    it: Iterator[Chunk] = iter(chunks)
    src._next_chunk = lambda: next(it, None)  # type: ignore[method-assign]
    output = build_output(argparse.Namespace(format="json"))  # what `fsnorm watch` writes with
    null = os.open(os.devnull, os.O_WRONLY)
    norm = src.normalizer
    steps: dict[str, Callable[[], None]] = {}

    def parse() -> None:
        for _t, _w, _b, data in chunks:
            _parse(data, len(data))

    def feed() -> None:
        for t, _w, backlog, data in chunks:
            norm.feed(raw.InotifyBatch(t, backlog == 0, _parse(data, len(data)), backlog, len(data)))

    def feed_live() -> None:
        while src._read_once() is not None:
            pass

    def read() -> None:
        for _ in chunks:
            src.read(0)

    def json() -> None:
        for _ in chunks:
            output.encode(src.read(0))

    def write() -> None:
        for _ in chunks:
            recs = src.read(0)
            if recs:
                write_all(null, output.encode(recs))

    steps.update(none=lambda: None, parse=parse, feed=feed, live=feed_live, read=read, json=json, write=write)
    try:
        t0 = time.process_time()
        steps[stage]()
        return time.process_time() - t0
    finally:
        src.close()
        os.close(null)


STAGES = ("parse", "feed", "live", "read", "json", "write")
LABELS = {
    "parse": "parse (bytes -> event tuples)",
    "feed": "+ normalizer feed (path table, matcher, records)",
    "live": "+ LiveSource._feed/_read_once (stream order, shadow tree, filter, stats, batch object, recover)",
    "read": "+ read(): loop lock, requests, poll, wait",
    "json": "+ JSON Lines (Output.encode)",
    "write": "+ write(2) to /dev/null",
}


def _work(stage: str, n: int, batch: int) -> None:
    """One run in a child (under callgrind): the setup always, the loop up to ``stage`` (``none``: no loop)."""
    with tempfile.TemporaryDirectory(prefix="fsnorm-liveloop-") as tmp:
        run(Path(tmp) / "w", n, batch, stage)


def instructions(stage: str, n: int, batch: int, pure: bool) -> int:
    """CPU instructions of one child run under valgrind's callgrind (load-independent)."""
    env = {k: v for k, v in os.environ.items() if k != "FSNORM_PURE"}
    if pure:
        env["FSNORM_PURE"] = "1"
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    code = f"from benchmarks.bench_liveloop import _work\n_work({stage!r}, {n}, {batch})"
    res = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, "-c",
                          code], cwd=REPO, env=env, check=True, capture_output=True, text=True)
    match = re.search(r"refs:\s+([\d,]+)", res.stderr)
    assert match is not None, res.stderr[-500:]
    return int(match.group(1).replace(",", ""))


def instruction_table(n: int, batches: list[int], pure: bool) -> str:
    """Instructions per event of each stage (its loop's count minus the setup-only run's, over ``n``)."""
    lines = [f"CPU instructions per event (callgrind, {n:,} events, {'pure' if pure else 'compiled'} path; each "
             "row is the whole loop up to that stage, the differences are the stages)",
             "| stage | " + " | ".join(f"{b}/read" for b in batches) + " |", "|---|" + "---:|" * len(batches)]
    base = {b: instructions("none", n, b, pure) for b in batches}
    for stage in STAGES:
        cells = [f"{(instructions(stage, n, b, pure) - base[b]) / n:,.0f}" for b in batches]
        lines.append(f"| {LABELS[stage]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--batch", default="1,4,16,64,512")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--stages", action="store_true", help="cut the loop after each stage (see the docstring)")
    ap.add_argument("--profile", action="store_true", help="cProfile the whole loop at the first batch size")
    ap.add_argument("--instructions", action="store_true",
                    help="instructions per event of each stage under callgrind instead of CPU time (slow: use "
                    "--events 20000)")
    ap.add_argument("--pure", action="store_true", help="with --instructions: the pure path (FSNORM_PURE=1)")
    args = ap.parse_args(argv)
    if args.instructions:
        print(instruction_table(args.events, [int(b) for b in args.batch.split(",")], args.pure))
        return 0
    from normalizer import _compiled

    batches = [int(b) for b in args.batch.split(",")]
    stages = STAGES if args.stages else ("write",)
    print(f"{_compiled.status()}; load average {os.getloadavg()[0]:.1f}; {args.events:,} events, best of "
          f"{args.repeat}; CPU us per event")
    print("| stage | " + " | ".join(f"{b}/read" for b in batches) + " |")
    print("|---|" + "---:|" * len(batches))
    with tempfile.TemporaryDirectory(prefix="fsnorm-liveloop-") as tmp:
        if args.profile:
            import cProfile
            import pstats

            prof = cProfile.Profile()
            prof.enable()
            run(Path(tmp) / "p", args.events, batches[0], "write")
            prof.disable()
            pstats.Stats(prof, stream=sys.stdout).sort_stats("tottime").print_stats(30)
            return 0
        for stage in stages:
            cells = []
            for b in batches:
                best = min(run(Path(tmp) / f"{stage}{b}-{r}", args.events, b, stage) for r in range(args.repeat))
                cells.append(f"{best / args.events * 1e6:.2f}")
            print(f"| {LABELS[stage]} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
