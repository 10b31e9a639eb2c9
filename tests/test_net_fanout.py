"""50 concurrent subscribers with different filters, real sockets and kernel: each gets exactly its records."""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
from pathlib import Path
from typing import Any

from netproc import Collector, Server, quiet

from normalizer.net import wire
from normalizer.remote import subscribe

DIRS = 5


def workload(data: Path, rounds: int) -> int:
    """Creates, writes, renames within and across directories, deletes; returns the renames done."""
    renames = 0
    for i in range(rounds):
        d, e = data / f"d{i % DIRS}", data / f"d{(i + 1) % DIRS}"
        (d / f"f{i}").write_text("x")
        os.rename(d / f"f{i}", d / f"g{i}")
        os.rename(d / f"g{i}", e / f"h{i}")
        renames += 2
        if i % 3 == 0:
            os.unlink(e / f"h{i}")
    return renames


def wants(path: str | None, kinds: frozenset[str] | None, rec: Any) -> bool:
    """The subscription filter, restated independently of the server's code."""
    if rec.kind in wire.STREAM_KINDS:
        return True
    if kinds is not None and rec.kind not in kinds:
        return False
    if path is None:
        return True
    sides = [rec.src, rec.dst] if rec.kind == "rename" else [rec.path]
    p = path.encode()
    return any(s == p or s.startswith(p + b"/") for s in sides if s)


def test_fifty_subscribers_each_get_exactly_their_records(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for i in range(DIRS):
        (data / f"d{i}").mkdir(parents=True)
    srv = Server(tmp_path / "s.sock", [str(data)])
    paths = [None, "data", "data/d0", "data/d1", "data/d2", "data/d3", "data/d4", "data/none"]
    kind_sets: list[frozenset[str] | None] = [None, frozenset({"rename"}), frozenset({"create", "delete"}),
                                             frozenset({"close_write", "modify"})]
    filters = list(itertools.islice(itertools.cycle(itertools.product(paths, kind_sets)), 50))
    reference = Collector(srv.addr)
    blocking = [Collector(srv.addr, path=p or "", events=k) for p, k in filters[:25]]
    # The other 25 use the asyncio iterator, all on one event loop in a thread.
    got_async: list[list[Any]] = [[] for _ in filters[25:]]
    started = threading.Barrier(2)

    async def one(i: int, path: str | None, kinds: frozenset[str] | None) -> None:
        async for rec in subscribe(srv.addr, path=path or "", events=kinds):
            got_async[i].append(rec)

    async def all_async() -> None:
        tasks = [asyncio.create_task(one(i, p, k)) for i, (p, k) in enumerate(filters[25:])]
        await asyncio.sleep(1.0)  # let all 25 finish the handshake
        started.wait()
        await asyncio.gather(*tasks)

    loop_thread = threading.Thread(target=asyncio.run, args=(all_async(),), daemon=True)
    loop_thread.start()
    started.wait(30)
    try:
        renames = workload(data, 150)
        quiet(reference)
    finally:
        assert srv.stop() == 0
    loop_thread.join(60)
    assert not loop_thread.is_alive()
    ref = reference.join()
    assert sum(1 for r in ref if r.kind == "rename") == renames  # the server saw every rename, paired
    assert all(not r.flags and r.reason is None for r in ref if r.kind == "rename")
    results = [c.join() for c in blocking] + got_async
    for (path, kinds), got in zip(filters, results, strict=True):
        expected = [r.seq for r in ref if wants(path, kinds, r)]
        assert [r.seq for r in got] == expected, (path, kinds)
        assert got == [r for r in ref if wants(path, kinds, r)]
    assert any(len(got) == 0 or all(r.kind in wire.STREAM_KINDS for r in got) for got in results)  # data/none
