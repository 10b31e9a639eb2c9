"""Micro-benchmark of the low-level inotify reader (normalizer/backends/_inotify_sys.py).

Plain script, prints numbers, asserts nothing about timing:

    .venv/bin/python benchmarks/bench_inotify_parse.py [--events 1000000] [--seconds 1.0] [--no-pyinotify]

Sections:
  1. parse throughput of ``parse_events`` on a synthetic 1,000,000-event buffer (one call, and in 256 KiB
     chunks as real reads deliver them);
  2. the same chunks pushed through a pipe and read back: fsnorm (readv + parse) against pyinotify's
     ``Notifier.read_events`` (FIONREAD + read + its own parse into _RawEvent objects), as a ratio;
  3. the read-strategy choice inside ``InotifyFD.read_events``: ``os.read`` of a fresh 256 KiB buffer against
     ``os.readv`` into a reused bytearray, on a real inotify fd;
  4. live read throughput: a subprocess renames files in a watched directory for ``--seconds`` while this
     process reads; and the same workload read through pyinotify (read_events + process_events), end to end.
"""

from __future__ import annotations

import argparse
import fcntl
import gc
import os
import random
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from normalizer.backends._inotify_sys import (
    DEFAULT_READ_BUFSIZE,
    InotifyFD,
    pack_events,
    parse_events,
)
from normalizer.core import raw

# Names as they appear in real trees (all valid UTF-8, so pyinotify can decode them too), plus empty names
# for events on the watched object itself.
NAMES = [
    b"",
    b"a.txt",
    b"main.py",
    b".main.py.swp",
    b"4913",
    b"index.lock",
    b"report-2024-final (1).docx",
    "ünïcødé-файл.txt".encode(),
    b"node_modules",
    b"IMG_20240101_123456.jpg",
    b"x" * 60,
    b"build.ninja.tmp.1234",
]
MASKS = [raw.IN_CREATE, raw.IN_MODIFY, raw.IN_CLOSE_WRITE, raw.IN_MOVED_FROM, raw.IN_MOVED_TO, raw.IN_DELETE]


def synthetic_events(n: int, seed: int = 1) -> list[raw.InotifyEvent]:
    rnd = random.Random(seed)
    out: list[raw.InotifyEvent] = []
    for _ in range(n):
        name = rnd.choice(NAMES)
        mask = rnd.choice(MASKS) if name else raw.IN_MOVE_SELF
        cookie = rnd.randrange(1, 1 << 32) if mask & raw.IN_MOVE else 0
        out.append((rnd.randrange(1, 500), mask, cookie, name))
    return out


def chunked(buf: bytes, limit: int) -> list[bytes]:
    """Split at record boundaries into pieces of at most ``limit`` bytes, as consecutive reads would."""
    chunks: list[bytes] = []
    off = 0
    n = len(buf)
    while off < n:
        end = off
        while end < n:
            ln = int.from_bytes(buf[end + 12 : end + 16], "little")
            if end + 16 + ln - off > limit:
                break
            end += 16 + ln
        chunks.append(buf[off:end])
        off = end
    return chunks


def best_of(repeat: int, fn: Callable[[], int]) -> tuple[float, int]:
    """(best wall time, count returned) over ``repeat`` runs."""
    best = float("inf")
    count = 0
    for _ in range(repeat):
        gc.collect()
        t = time.perf_counter()
        count = fn()
        best = min(best, time.perf_counter() - t)
    return best, count


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds / 1e6:6.3f} M events/s ({seconds * 1e3:8.1f} ms for {count:,})"


# --- 1. pure parse ----------------------------------------------------------------------------------------


def bench_parse(buf: bytes, chunks: list[bytes], expected: int, repeat: int) -> float:
    print("\n[1] parse_events on a synthetic buffer")
    t, n = best_of(repeat, lambda: len(parse_events(buf)))
    assert n == expected
    print(f"  one call, {len(buf) / 1e6:.1f} MB     : {rate(n, t)}")

    def in_chunks() -> int:
        return sum(len(parse_events(c)) for c in chunks)

    t, n = best_of(repeat, in_chunks)
    assert n == expected
    print(f"  {len(chunks)} chunks of <=256 KiB : {rate(n, t)}")
    return n / t


# --- 2. through a pipe: fsnorm vs pyinotify ---------------------------------------------------------------


def _pipe(capacity: int) -> tuple[int, int]:
    r, w = os.pipe()
    fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, capacity)
    return r, w


def bench_pipe(chunks: list[bytes], expected: int, repeat: int, with_pyinotify: bool) -> None:
    print("\n[2] the same 256 KiB chunks written to a pipe and read back + parsed (write not timed)")
    r, w = _pipe(1 << 20)
    buf = bytearray(DEFAULT_READ_BUFSIZE)
    view = memoryview(buf)

    def fsnorm() -> int:
        total = 0
        elapsed = 0.0
        for c in chunks:
            os.write(w, c)
            t = time.perf_counter()
            n = os.readv(r, (view,))
            total += len(parse_events(bytes(view[:n])))
            elapsed += time.perf_counter() - t
        fsnorm.elapsed = elapsed  # type: ignore[attr-defined]
        return total

    ours = []
    for _ in range(repeat):
        n = fsnorm()
        assert n == expected
        ours.append(fsnorm.elapsed)  # type: ignore[attr-defined]
    t_ours = min(ours)
    print(f"  fsnorm   readv + parse_events           : {rate(expected, t_ours)}")
    if not with_pyinotify:
        return
    try:
        import pyinotify
    except ImportError:
        print("  pyinotify not installed: skipped")
        return
    wm = pyinotify.WatchManager()
    notifier = pyinotify.Notifier(wm)
    real_fd = notifier._fd
    notifier._fd = r  # read_events() only needs FIONREAD + read() on it: a pipe supports both
    theirs = []
    try:
        for _ in range(1):  # ~20x slower than ours: one run is enough for a ratio
            gc.collect()
            total = 0
            elapsed = 0.0
            for c in chunks:
                os.write(w, c)
                t = time.perf_counter()
                notifier.read_events()
                elapsed += time.perf_counter() - t
                total += len(notifier._eventq)
                notifier._eventq.clear()
            assert total == expected, total
            theirs.append(elapsed)
    finally:
        notifier._fd = real_fd
        notifier.stop()
        os.close(r)
        os.close(w)
    t_theirs = min(theirs)
    print(f"  pyinotify Notifier.read_events          : {rate(expected, t_theirs)}")
    print(f"  ratio fsnorm / pyinotify                : {t_theirs / t_ours:5.1f}x faster")


# --- 3. read strategy -------------------------------------------------------------------------------------


def bench_read_strategy(tmp: Path, label: str) -> None:
    print(f"  {label}:")
    d = tmp / f"rs-{os.getpid()}"
    d.mkdir()
    bufsize = DEFAULT_READ_BUFSIZE
    buf = bytearray(bufsize)
    view = memoryview(buf)
    with InotifyFD() as ino:
        ino.add_watch(bytes(d), raw.IN_MODIFY | raw.IN_ATTRIB)
        fd = os.open(d / "f", os.O_WRONLY | os.O_CREAT, 0o644)
        try:

            def plain_read() -> bytes:
                return os.read(ino.fileno(), bufsize)

            def readv_copy() -> bytes:
                n = os.readv(ino.fileno(), (view,))
                return bytes(view[:n])

            for name, fn in (("os.read(fd, 256 KiB)", plain_read), ("os.readv + bytes copy", readv_copy)):
                # small reads: one event queued per read (the common case for an idle tree)
                rounds = 5000
                total = 0.0
                for _ in range(rounds):
                    os.write(fd, b"x")
                    t = time.perf_counter()
                    got = fn()
                    total += time.perf_counter() - t
                    assert len(got) == 32  # one header + b"f" padded to 16
                small = total / rounds * 1e6
                # full reads: ~8000 queued events (alternating kinds, so none coalesce)
                rounds = 20
                total = 0.0
                for _ in range(rounds):
                    for _ in range(4000):
                        os.write(fd, b"x")
                        os.fchmod(fd, 0o644)
                    t = time.perf_counter()
                    got = fn()
                    total += time.perf_counter() - t
                    while ino.read_events():
                        pass
                big = total / rounds * 1e6
                print(f"    {name:24s}: {small:6.1f} us per 1-event read, {big:8.1f} us per 256 KiB read")
            # a full read through the real API: kernel copy-out + bytes copy + parse
            total = 0.0
            count = 0
            for _ in range(20):
                for _ in range(4000):
                    os.write(fd, b"x")
                    os.fchmod(fd, 0o644)
                t = time.perf_counter()
                count += len(ino.read_events())
                total += time.perf_counter() - t
            print(f"    InotifyFD.read_events() on full 256 KiB reads: {rate(count, total)}")
            t = time.perf_counter()
            for _ in range(20000):
                ino.pending_bytes()
            print(f"    pending_bytes() (FIONREAD): {(time.perf_counter() - t) / 20000 * 1e6:6.2f} us per call")
        finally:
            os.close(fd)


# --- 4. live workload -------------------------------------------------------------------------------------

RENAMER = r"""
import os, sys, time
d, seconds = sys.argv[1].encode(), float(sys.argv[2])
os.chdir(d)
names = [(b"a%d" % i, b"b%d" % i) for i in range(64)]
for a, _ in names:
    open(a, "wb").close()
sys.stdout.write("ready\n"); sys.stdout.flush()
sys.stdin.readline()
n = 0
rename = os.rename
end = time.monotonic() + seconds
while time.monotonic() < end:
    for a, b in names:
        rename(a, b)
    for a, b in names:
        rename(b, a)
    n += 128
sys.stdout.write(f"{n}\n"); sys.stdout.flush()
"""


def _start_renamer(d: Path, seconds: float) -> subprocess.Popen[str]:
    p = subprocess.Popen(
        [sys.executable, "-c", RENAMER, str(d), str(seconds)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert p.stdout is not None and p.stdout.readline() == "ready\n"
    return p


def _go(p: subprocess.Popen[str]) -> None:
    assert p.stdin is not None
    p.stdin.write("go\n")
    p.stdin.flush()


def _finish(p: subprocess.Popen[str]) -> int:
    assert p.stdout is not None
    renames = int(p.stdout.readline())
    p.wait()
    return renames


def bench_live_fsnorm(tmp: Path, seconds: float) -> None:
    d = tmp / "live"
    d.mkdir()
    with InotifyFD() as ino:
        ino.add_watch(bytes(d), raw.DEFAULT_INOTIFY_MASK)
        p = _start_renamer(d, seconds)
        ino.read_events()  # the renamer's creates
        poller = select.poll()
        poller.register(ino.fileno(), select.POLLIN)
        events = overflows = reads = unpaired = 0
        pending_from: dict[int, bytes] = {}
        t0 = time.perf_counter()
        cpu0 = time.process_time()
        t_last = t0
        _go(p)
        while True:
            if not poller.poll(50):
                if p.poll() is not None and ino.pending_bytes() == 0:
                    break
                continue
            batch = ino.read_events()
            reads += 1
            t_last = time.perf_counter()
            events += len(batch)
            for wd, mask, cookie, name in batch:  # a minimal consumer: pair halves by cookie
                if mask & raw.IN_MOVED_FROM:
                    pending_from[cookie] = name
                elif mask & raw.IN_MOVED_TO:
                    if pending_from.pop(cookie, None) is None:
                        unpaired += 1
                elif wd == -1:
                    overflows += 1
        cpu = time.process_time() - cpu0
        renames = _finish(p)
    elapsed = t_last - t0
    print(
        f"  fsnorm    : {events / elapsed / 1e6:6.3f} M events/s read ({events:,} events in {reads:,} reads, "
        f"{elapsed:.2f} s; renamer did {renames:,} renames = {2 * renames:,} events; overflows {overflows}, "
        f"unpaired TOs {unpaired}, FROMs left {len(pending_from)}); reader CPU {cpu:.2f} s = "
        f"{cpu / max(events, 1) * 1e6:.2f} us/event incl. poll + syscalls"
    )


def bench_live_pyinotify(tmp: Path, seconds: float) -> None:
    try:
        import pyinotify
    except ImportError:
        print("  pyinotify not installed: skipped")
        return
    d = tmp / "live-pyinotify"
    d.mkdir()
    counts = {"events": 0, "overflows": 0}

    class Count(pyinotify.ProcessEvent):  # type: ignore[misc]
        def process_default(self, event: object) -> None:
            counts["events"] += 1

        def process_IN_Q_OVERFLOW(self, event: object) -> None:
            counts["overflows"] += 1

    wm = pyinotify.WatchManager()
    notifier = pyinotify.Notifier(wm, Count())
    wm.add_watch(str(d), raw.DEFAULT_INOTIFY_MASK)
    p = _start_renamer(d, seconds)
    if notifier.check_events(100):
        notifier.read_events()
        notifier.process_events()
    counts["events"] = 0
    t0 = time.perf_counter()
    t_last = t0
    reads = 0
    _go(p)
    while True:
        if not notifier.check_events(50):
            if p.poll() is not None:
                break
            continue
        notifier.read_events()
        notifier.process_events()
        reads += 1
        t_last = time.perf_counter()
    renames = _finish(p)
    notifier.stop()
    elapsed = t_last - t0
    n = counts["events"]
    print(
        f"  pyinotify : {n / elapsed / 1e6:6.3f} M events/s read+processed ({n:,} events in {reads:,} reads, "
        f"{elapsed:.2f} s; renamer did {renames:,} renames = {2 * renames:,} events; "
        f"overflows {counts['overflows']})"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-pyinotify", action="store_true")
    ap.add_argument("--read-strategy-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.read_strategy_only:
        with tempfile.TemporaryDirectory(prefix="fsnorm-bench-") as tmp:
            bench_read_strategy(Path(tmp), "fresh process")
        return
    print(
        f"Python {sys.version.split()[0]} ({sys.implementation.name}), Linux {os.uname().release}, "
        f"{os.cpu_count()} CPUs"
    )

    events = synthetic_events(args.events)
    buf = pack_events(events)
    chunks = chunked(buf, DEFAULT_READ_BUFSIZE)
    assert parse_events(buf) == events
    bench_parse(buf, chunks, len(events), args.repeat)
    bench_pipe(chunks, len(events), args.repeat, not args.no_pyinotify)
    del events, buf, chunks
    print("\n[3] read strategy on a real inotify fd (why InotifyFD.read_events uses readv into a bytearray)")
    sys.stdout.flush()
    subprocess.run([sys.executable, __file__, "--read-strategy-only"], check=True)
    with tempfile.TemporaryDirectory(prefix="fsnorm-bench-") as tmp:
        bench_read_strategy(
            Path(tmp), "this process, after sections 1-2 freed big buffers (glibc raised its mmap threshold)"
        )
        print(f"\n[4] live: a subprocess renames 64 files back and forth in one watched dir for {args.seconds} s")
        bench_live_fsnorm(Path(tmp), args.seconds)
        if not args.no_pyinotify:
            bench_live_pyinotify(Path(tmp), args.seconds)


if __name__ == "__main__":
    main()
