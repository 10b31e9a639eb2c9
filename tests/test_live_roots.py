"""Roots added and removed while a stream runs (Stream.add / remove / roots, the async and Runner forms),
against the real kernel on both backends (backends/roots.py, normalizer.core.roots)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from live import brief
from test_live_files import BACKENDS, opts, settle

import normalizer
from normalizer.api import Stream
from normalizer.errors import SourceError
from normalizer.records import Rec

__all__ = ["BACKENDS", "opts"]  # the backends and their fixture, shared with test_live_files


def watch(paths: list[Path], opts: dict[str, Any], **more: Any) -> Stream[Rec]:
    return normalizer.watch([str(p) for p in paths], raw_records=True, **opts, **more)


def test_add_while_another_thread_reads_misses_nothing_created_after_it_returns(
        tmp_path: Path, opts: dict[str, Any]) -> None:
    """A writer creates numbered files in a new directory all along; ``add`` is called from the test thread
    while a Runner thread reads. Every file created after ``add`` returned is reported (earlier ones may
    or may not be: they were made before the watch)."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    got: list[Rec] = []
    runner = normalizer.run_in_thread([str(a)], got.append, raw_records=True, **opts,
                                      events=["create", "delete", "rename"])
    stop = threading.Event()
    made = [0]

    def writer() -> None:
        while not stop.is_set() and made[0] < 20000:
            (b / f"f{made[0]}").write_text("")
            made[0] += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        time.sleep(0.05)
        runner.add(str(b))
        after = made[0] + 1  # f<made> may be being created right now, before the watch
        assert runner.roots == [bytes(a), bytes(b)]
        time.sleep(0.2)
        stop.set()
        thread.join()
        (a / "marker").write_text("")
        deadline = time.monotonic() + 10
        while not any(r.path == bytes(a / "marker") for r in got) and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        stop.set()
        runner.stop(10)
    assert runner.error is None
    created = {r.path for r in got if r.kind == "create"}
    assert made[0] > after  # the writer went on after add returned
    missing = [i for i in range(after, made[0]) if bytes(b / f"f{i}") not in created]
    assert missing == []
    assert len([r for r in got if r.kind == "create"]) == len(created)  # nothing twice


def test_add_with_scan_reports_the_content_and_a_file_root_can_be_added(
        tmp_path: Path, opts: dict[str, Any]) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    (b / "sub").mkdir(parents=True)
    (b / "sub" / "x").write_text("")
    conf = tmp_path / "conf"
    conf.write_text("")
    with watch([a], opts, events=["create", "delete", "rename"]) as stream:
        stream.add(b, scan=True)
        stream.add(conf)
        with pytest.raises(SourceError, match="no such file"):
            stream.add(tmp_path / "nope")
        (b / "sub" / "y").write_text("")
        (tmp_path / "t").write_text("")
        os.replace(tmp_path / "t", conf)
        recs = settle(stream)
        assert stream.roots == [bytes(a), bytes(b), bytes(conf)]
    assert brief(tmp_path, recs) == [
        ("create", "b/sub", ("synthesized",)),
        ("create", "b/sub/x", ("synthesized",)),
        ("create", "b/sub/y", ()),
        ("rename", "t", "conf", ("replaced",)),
    ]


def test_remove_while_its_events_are_still_queued(tmp_path: Path, opts: dict[str, Any]) -> None:
    """Events queued in the kernel for a root, not read yet, when it is removed: a ``watch_end`` for the
    root and no record under it; the other root goes on."""
    a, b = tmp_path / "a", tmp_path / "b"
    (a / "deep").mkdir(parents=True)
    b.mkdir()
    with watch([a, b], opts, events=["create", "delete", "rename"]) as stream:
        for i in range(200):
            (a / "deep" / f"q{i}").write_text("")
            (a / f"r{i}").write_text("")
        os.rename(a / "r0", b / "r0")  # a rename half under the removed root
        stream.remove(a)
        assert stream.roots == [bytes(b)]
        (a / "late").write_text("")
        (b / "x").write_text("")
        recs = settle(stream)
    # The move from a to b happened before the removal but was read after it: its side in b, still
    # watched, is reported; its side in a is not.
    assert brief(tmp_path, recs) == [
        ("watch_end", "a", ()),
        ("rename", "", "b/r0", ("unwatched",)),
        ("create", "b/x", ()),
    ]
    with pytest.raises(SourceError, match="not a watched root"):
        stream.remove(a)


def test_overlapping_roots_give_each_record_once_and_removing_the_inner_keeps_the_outer(
        tmp_path: Path, opts: dict[str, Any]) -> None:
    t = tmp_path / "t"
    inner = t / "in"
    inner.mkdir(parents=True)
    with watch([t, inner, t], opts, events=["create", "delete", "rename"]) as stream:
        assert stream.roots == [bytes(t), bytes(inner)]
        stream.add(inner)  # added twice
        stream.add(inner, recursive=False)
        (inner / "x").write_text("")
        (inner / "d").mkdir()
        (inner / "d" / "y").write_text("")
        first = settle(stream)
        stream.remove(inner)
        (inner / "d" / "z").write_text("")
        os.rename(inner / "x", t / "x2")
        second = settle(stream)
        stream.remove(t)
        (inner / "after").write_text("")
        third = settle(stream)
    # (y may be found by the scan of the new directory d before its own create is read: "synthesized")
    assert [r[:2] for r in brief(tmp_path, first)] == [("create", "t/in/x"), ("create", "t/in/d"),
                                                       ("create", "t/in/d/y")]
    assert brief(tmp_path, second) == [("watch_end", "t/in", ()), ("create", "t/in/d/z", ()),
                                       ("rename", "t/in/x", "t/x2", ())]
    assert brief(tmp_path, third) == [("watch_end", "t", ())]


def test_add_and_remove_from_asyncio(tmp_path: Path, opts: dict[str, Any]) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()

    async def main() -> list[Rec]:
        got: list[Rec] = []
        async with normalizer.awatch([str(a)], raw_records=True, **opts, events=["create"]) as stream:
            async def consume() -> None:
                async for rec in stream:
                    got.append(rec)
            task = asyncio.create_task(consume())
            await asyncio.sleep(0.05)
            await stream.add(str(b))
            assert stream.roots == [bytes(a), bytes(b)]
            (b / "x").write_text("")
            await asyncio.sleep(0.3)
            await stream.remove(str(a))
            (a / "y").write_text("")
            (b / "z").write_text("")
            await asyncio.sleep(0.3)
            stream.stop()
            await task
        return got

    got = asyncio.run(main())
    assert brief(tmp_path, got) == [("create", "b/x", ()), ("watch_end", "a", ()), ("create", "b/z", ())]


def test_add_before_open_and_after_close(tmp_path: Path, opts: dict[str, Any]) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    stream = watch([a], opts, events=["create"])
    stream.add(b)  # not open yet: it is one of the roots the open watches
    stream.remove(a)
    with stream:
        assert stream.roots == [bytes(b)]
        (a / "x").write_text("")
        (b / "y").write_text("")
        recs = settle(stream)
    assert brief(tmp_path, recs) == [("create", "b/y", ())]
    with pytest.raises(SourceError, match="closed"):
        stream.add(a)


def test_removed_then_added_again(tmp_path: Path, opts: dict[str, Any]) -> None:
    """The kernel watches (marks) of a removed root are gone and its directories forgotten; adding it again
    watches it anew, and a rename from it into another root is joined again."""
    a, b = tmp_path / "a", tmp_path / "b"
    (a / "sub").mkdir(parents=True)
    b.mkdir()
    with watch([a, b], opts, events=["create", "rename"]) as stream:
        stream.remove(a)
        (a / "sub" / "x").write_text("")
        gone = settle(stream)
        stream.add(a)
        (a / "sub" / "y").write_text("")
        os.rename(a / "sub" / "y", b / "y")
        back = settle(stream)
    assert brief(tmp_path, gone) == [("watch_end", "a", ())]
    assert brief(tmp_path, back) == [("create", "a/sub/y", ()), ("rename", "a/sub/y", "b/y", ())]


def test_runner_remove_delivers_the_watch_end_to_the_callback(tmp_path: Path, opts: dict[str, Any]) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    got: list[Rec] = []
    runner = normalizer.run_in_thread([str(a), str(b)], got.append, raw_records=True, **opts, events=["create"])
    try:
        runner.remove(str(a))
        assert runner.roots == [bytes(b)]
        (a / "x").write_text("")
        (b / "y").write_text("")
        deadline = time.monotonic() + 10
        while len(got) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        runner.stop(10)
    assert brief(tmp_path, got) == [("watch_end", "a", ()), ("create", "b/y", ())]


def test_roots_come_back_in_the_type_the_records_use(tmp_path: Path, opts: dict[str, Any]) -> None:
    """The standard library's convention holds for ``roots`` as for the records' paths: str roots give str
    (an undecodable name kept by surrogate escapes), bytes roots give bytes, and an added root follows."""
    a = tmp_path / "a"
    odd = os.fsdecode(bytes(tmp_path) + b"/odd-\xff")
    a.mkdir()
    os.mkdir(odd)
    with normalizer.watch([str(a)], **opts) as stream:
        stream.add(odd)
        assert stream.roots == [str(a), odd]
        (a / "f").write_text("")
        record = next(iter(stream))
        assert record.path == str(a / "f") and isinstance(stream.roots[0], type(record.path))
    with normalizer.watch([bytes(a)], **opts) as bstream:
        bstream.add(os.fsencode(odd))
        assert bstream.roots == [bytes(a), os.fsencode(odd)]


def test_async_stream_and_runner_add_a_missing_root(tmp_path: Path, opts: dict[str, Any]) -> None:
    """``missing_ok`` reaches the root from the async and Runner forms too: the root is waited for, then its
    creation is reported."""
    a = tmp_path / "a"
    a.mkdir()
    later = tmp_path / "later"

    async def main() -> list[str]:
        async with normalizer.awatch([str(a)], **opts, events=["create"]) as stream:
            await stream.add(str(later), missing_ok=True)
            later.mkdir()
            (later / "f").write_text("")
            got: list[str] = []
            async for record in stream:
                got.append(record.path)
                if record.path == str(later / "f"):
                    break
            return got

    assert str(later / "f") in asyncio.run(asyncio.wait_for(main(), 20))
    got: list[Any] = []
    runner = normalizer.run_in_thread([str(a)], got.append, **opts, events=["create"])
    try:
        runner.add(str(tmp_path / "later2"), missing_ok=True)
        (tmp_path / "later2").mkdir()
        deadline = time.monotonic() + 10
        while not any(r.path == str(tmp_path / "later2") for r in got) and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        runner.stop()
    assert any(r.path == str(tmp_path / "later2") for r in got)
