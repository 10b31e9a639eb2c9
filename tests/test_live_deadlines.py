"""Deadlines of lone rename halves, live: the busy-queue window of both sources and the asyncio iterator.

The matcher releases a lone first half once everything the kernel queued up to ``window`` after its read has
been read, even while the queue never drains (the read backlog). Its unit tests feed made-up backlog numbers;
these run the real wiring: a move out of the tree while a writer keeps the queue busy and the consumer reads
only when enough is queued that no read can empty it. With ``max_wait`` at 60 s only the backlog logic can
release the half inside the test's bound, so the record must say ``timeout``: no timing is asserted.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from live import brief, sysctl

import normalizer
from normalizer import Record
from normalizer.backends.base import LiveSource
from normalizer.backends.fanotify import FanotifySource
from normalizer.backends.inotify import InotifySource
from normalizer.records import Rec

IS_ROOT = os.geteuid() == 0
MS = 1_000_000
#: The writer: creates and removes fresh names (no two events alike, so neither inotify coalescing nor
#: fanotify merging shrinks the queue) until its stop file appears or 60 s pass.
WRITER = """
import os, sys, time
d, stop = sys.argv[1], sys.argv[2]
end = time.monotonic() + 60
i = 0
print("started", flush=True)
while time.monotonic() < end:
    for _ in range(200):
        p = f"{d}/n{i}"
        os.mknod(p)
        os.unlink(p)
        i += 1
    if os.path.exists(stop):
        break
"""


@pytest.fixture
def writer(tree: Path) -> Iterator[Callable[[], subprocess.Popen[str]]]:
    stop = tree / "stop-writer"
    procs: list[subprocess.Popen[str]] = []

    def start() -> subprocess.Popen[str]:
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tree / "w/b"), str(stop)],
                                stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "started"
        return proc

    yield start
    stop.touch()
    for proc in procs:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def read_while_busy(src: LiveSource, min_queued: int, *, bound: float = 20.0) -> list[Rec]:
    """Read, but only when at least ``min_queued`` (the source's unit) is queued, which is more than one read
    takes: no read ever sees the queue empty. Until the lone half is released, or ``bound`` seconds (then the
    caller's check fails: the half is still waiting)."""
    out: list[Rec] = []
    end = time.monotonic() + bound
    while time.monotonic() < end:
        fill_end = time.monotonic() + 10
        while src._queued() < min_queued:
            assert time.monotonic() < fill_end, "the writer stopped filling the queue"
            time.sleep(0.0005)
        got = src.read(0)
        assert src._queued() > 0, "the read emptied the queue: the busy-queue case was not reached"
        out += got
        if any(r.kind == "rename" for r in got):
            break
    return out


def _check(tree: Path, recs: list[Rec]) -> None:
    assert not [r for r in recs if r.kind == "overflow"]
    assert brief(tree, recs, kinds=("rename",)) == [("rename", "w/a/x", "", ("timeout",))]


def test_inotify_busy_queue_releases_a_lone_half_as_timeout(tree: Path, writer: Callable[[], object]) -> None:
    (tree / "w/a/x").write_text("1")
    with sysctl("fs.inotify.max_queued_events", 1 << 20):  # the writer may outpace the reader for a while
        src = InotifySource([tree / "w"], window_ns=20 * MS, max_wait_ns=60_000 * MS, read_size=4096)
    with src:
        os.rename(tree / "w/a/x", tree / "out/x")
        writer()
        recs = read_while_busy(src, 64 * 1024)  # bytes; one read takes at most 4 KiB
    _check(tree, recs)


@pytest.mark.skipif(not IS_ROOT, reason="needs root to raise fs.fanotify.max_queued_events")
def test_fanotify_without_fan_rename_busy_queue_releases_a_lone_half_as_timeout(
        tree: Path, writer: Callable[[], object]) -> None:
    """Inode marks: the kernel omits the side outside the tree, so the MOVED_FROM waits for a partner."""
    (tree / "w/a/x").write_text("1")
    with sysctl("fs.fanotify.max_queued_events", 1 << 20):
        src = FanotifySource([tree / "w"], mark_mode="inode", use_rename=False, window_ns=20 * MS,
                             max_wait_ns=60_000 * MS, read_size=4096)
    with src:
        assert src.open() == [] and src.mark_mode == "inode"
        os.rename(tree / "w/a/x", tree / "out/x")
        writer()
        recs = read_while_busy(src, 2000)  # events; one read of 4 KiB takes a few dozen
    _check(tree, recs)


# --- awatch --------------------------------------------------------------------------------------------------


def test_awatch_yields_timeout_for_a_move_out_without_stop(tree: Path) -> None:
    """The loop timer set from the matcher's next deadline releases the half: nothing calls stop() first."""
    (tree / "w/a/x").write_text("1")

    async def main() -> list[Record[str]]:
        out: list[Record[str]] = []
        async with normalizer.awatch(tree / "w", window_ms=20) as stream:
            asyncio.get_running_loop().call_soon(os.rename, tree / "w/a/x", tree / "out/x")
            async for rec in stream:
                if rec.kind == "rename":
                    out.append(rec)
                    stream.stop()
        return out

    got = asyncio.run(asyncio.wait_for(main(), 20))
    assert [(r.src, r.dst, r.reason) for r in got] == [(str(tree / "w/a/x"), None, "timeout")]


def test_awatch_stop_flushes_a_pending_half_as_shutdown(tree: Path) -> None:
    (tree / "w/a/x").write_text("1")
    (tree / "w/a/gone").write_text("2")

    async def main() -> tuple[list[Record[str]], int]:
        out: list[Record[str]] = []
        pending_at_stop = -1
        async with normalizer.awatch(tree / "w", window_ms=60_000) as stream:
            def work() -> None:
                os.rename(tree / "w/a/x", tree / "w/b/y")
                os.rename(tree / "w/a/gone", tree / "out/gone")  # its partner never comes; 60 s window

            asyncio.get_running_loop().call_soon(work)
            async for rec in stream:
                if rec.kind == "rename":
                    out.append(rec)
                    if rec.mode == "both":
                        pending_at_stop = stream._stream.source.normalizer.matcher.pending
                        stream.stop()
        return out, pending_at_stop

    got, pending_at_stop = asyncio.run(asyncio.wait_for(main(), 20))
    assert pending_at_stop == 1  # both renames came in one read: the lone half was waiting at stop()
    assert [(r.src, r.dst, r.reason) for r in got] == [
        (str(tree / "w/a/x"), str(tree / "w/b/y"), None),
        (str(tree / "w/a/gone"), None, "shutdown"),
    ]


def test_awatch_exit_drains_without_blocking_the_event_loop(tree: Path) -> None:
    """``async with`` exit reads what is queued (thousands of events here) and flushes pending halves: that
    runs off the loop, so another task keeps running meanwhile. A ticker that is always ready runs as soon as
    the exiting task waits for anything; if the exit blocked the loop, it could not run until the exit ended."""
    async def main() -> tuple[int, int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        stream = normalizer.awatch(tree / "w")
        async with stream:
            for i in range(3000):
                os.mknod(tree / f"w/a/f{i}")
            task = asyncio.create_task(ticker())
            await asyncio.sleep(0)
            before = ticks
        during = ticks - before
        task.cancel()
        assert stream._stream.source.closed
        return before, during

    before, during = asyncio.run(asyncio.wait_for(main(), 30))
    assert before >= 1 and during >= 1, (before, during)


def test_awatch_exit_after_break_unregisters_the_fd_before_closing_it(tree: Path) -> None:
    """Leaving ``async for`` early leaves the async generator suspended (its ``finally`` runs later, if
    ever); the exit must take the fd off the loop itself, or the loop would poll a closed (or reused) fd."""
    async def main() -> tuple[str, bool]:
        loop = asyncio.get_running_loop()
        async with normalizer.awatch(tree / "w") as stream:
            loop.call_soon(os.mknod, tree / "w/a/f")
            records = stream.__aiter__()  # kept alive: its finally does not run before the exit
            kind = (await records.__anext__()).kind
            fd = stream._stream.source.fileno()
        registered = loop.remove_reader(fd)  # False: nothing was registered for it any more
        await records.aclose()
        return kind, registered

    assert asyncio.run(asyncio.wait_for(main(), 20)) == ("create", False)
