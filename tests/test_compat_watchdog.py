"""normalizer.compat.watchdog against the real kernel: what fsnorm does beyond watchdog's own suite
(tests/test_compat_watchdog_suite.py runs that one): overflow, phantom paths, a moved root, a directory filled
while it is being watched, relative paths, and the translation rules as properties."""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from live import sysctl
from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirModifiedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers.api import EventQueue, ObservedWatch

from normalizer.compat.watchdog import (
    FsnormEmitter,
    InotifyObserver,
    Observer,
    QueueOverflowEvent,
    WatchdogTranslator,
)
from normalizer.records import Rec


class Collect(FileSystemEventHandler):
    def __init__(self) -> None:
        self.q: queue.Queue[FileSystemEvent] = queue.Queue()

    def on_any_event(self, event: FileSystemEvent) -> None:
        self.q.put(event)

    def until(self, pred: Callable[[FileSystemEvent], bool], timeout: float = 5.0) -> list[FileSystemEvent]:
        """Every event up to and including the first that satisfies ``pred`` (fails on timeout)."""
        out: list[FileSystemEvent] = []
        end = time.monotonic() + timeout
        while True:
            try:
                event = self.q.get(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no matching event within {timeout} s; got {out}") from None
            out.append(event)
            if pred(event):
                return out


@pytest.fixture
def observed(tmp_path: Path) -> Iterator[Callable[..., Collect]]:
    observers: list[Observer] = []

    def start(path: str | bytes | None = None, **options: object) -> Collect:
        handler = Collect()
        observer = Observer(**options)  # type: ignore[arg-type]
        observer.schedule(handler, str(tmp_path) if path is None else path, recursive=True)
        observer.start()
        observers.append(observer)
        return handler

    yield start
    for observer in observers:
        observer.stop()
        observer.join(5)
        assert not observer.is_alive()


def test_inotify_observer_is_the_observer() -> None:
    assert InotifyObserver is Observer


def test_rename_inside_and_across_the_edge(tmp_path: Path, observed: Callable[..., Collect]) -> None:
    (tmp_path / "w").mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "w" / "a").write_text("a")
    (outside / "in").write_text("i")
    h = observed(str(tmp_path / "w"))
    os.rename(tmp_path / "w" / "a", tmp_path / "w" / "b")
    os.rename(tmp_path / "w" / "b", outside / "b")
    os.rename(outside / "in", tmp_path / "w" / "in")
    got = h.until(lambda e: isinstance(e, FileCreatedEvent) and e.src_path.endswith("/in"))
    w = str(tmp_path / "w")
    # The observer's EventQueue (watchdog's SkipRepeatsQueue) drops the second of two identical
    # DirModifiedEvents in a row, as with watchdog.
    assert got == [
        FileMovedEvent(f"{w}/a", f"{w}/b"), DirModifiedEvent(w),
        FileDeletedEvent(f"{w}/b"), DirModifiedEvent(w),
        FileCreatedEvent(f"{w}/in"),
    ]


def test_full_events_give_moves_with_an_empty_side(tmp_path: Path, observed: Callable[..., Collect]) -> None:
    (tmp_path / "w").mkdir()
    (tmp_path / "o").mkdir()
    (tmp_path / "w" / "a").write_text("a")
    h = observed(str(tmp_path / "w"), generate_full_events=True)
    os.rename(tmp_path / "w" / "a", tmp_path / "o" / "a")
    os.rename(tmp_path / "o" / "a", tmp_path / "w" / "back")
    got = h.until(lambda e: isinstance(e, FileMovedEvent) and e.src_path == "")
    w = str(tmp_path / "w")
    assert got == [FileMovedEvent(f"{w}/a", ""), DirModifiedEvent(w), FileMovedEvent("", f"{w}/back")]


def test_no_phantom_paths_after_a_directory_left(tmp_path: Path, observed: Callable[..., Collect]) -> None:
    """watchdog keeps the watches of a directory moved out and reports its later events under the old path;
    fsnorm stops watching it."""
    w, o = tmp_path / "w", tmp_path / "o"
    (w / "sub").mkdir(parents=True)
    o.mkdir()
    h = observed(str(w))
    os.rename(w / "sub", o / "sub")
    h.until(lambda e: isinstance(e, DirDeletedEvent))
    (o / "sub" / "late").write_text("x")  # in the moved-out directory
    (w / "sentinel").write_text("s")
    got = h.until(lambda e: isinstance(e, FileClosedEvent) and e.src_path.endswith("sentinel"))
    assert not [e for e in got if "/sub" in e.src_path], got


def test_moved_root_ends_with_a_delete(tmp_path: Path) -> None:
    (tmp_path / "w").mkdir()
    handler = Collect()
    observer = Observer()
    observer.schedule(handler, str(tmp_path / "w"), recursive=True)
    observer.start()
    try:
        os.rename(tmp_path / "w", tmp_path / "w2")
        got = handler.until(lambda e: isinstance(e, DirDeletedEvent))
        assert got == [DirDeletedEvent(str(tmp_path / "w"))]
        (emitter,) = observer.emitters
        emitter.join(5)
        assert not emitter.is_alive()
    finally:
        observer.stop()
        observer.join(5)


def test_directory_filled_while_watched(tmp_path: Path, observed: Callable[..., Collect]) -> None:
    """A directory created while a writer fills it: every file is reported created exactly once (the watch is
    added before the scan, and the kernel's CREATE for what the scan found is dropped)."""
    h = observed()
    names = [f"f{i:03d}" for i in range(200)]

    def writer() -> None:
        (tmp_path / "new" / "deep").mkdir(parents=True)
        for n in names:
            (tmp_path / "new" / "deep" / n).write_text(n)
        (tmp_path / "done").write_text("")

    t = threading.Thread(target=writer)
    t.start()
    got = h.until(lambda e: isinstance(e, FileCreatedEvent) and e.src_path.endswith("/done"), timeout=20)
    t.join()
    created = [e.src_path for e in got if isinstance(e, FileCreatedEvent)]
    deep = str(tmp_path / "new" / "deep")
    assert sorted(p for p in created if p.startswith(deep + "/")) == [f"{deep}/{n}" for n in names]
    assert [e for e in got if isinstance(e, DirCreatedEvent)] == [
        DirCreatedEvent(str(tmp_path / "new")), DirCreatedEvent(deep)]


def test_relative_and_bytes_paths_are_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           observed: Callable[..., Collect]) -> None:
    (tmp_path / "rel").mkdir()
    monkeypatch.chdir(tmp_path)
    h = observed("rel")
    hb = observed(os.fsencode(tmp_path / "rel"))
    os.rename(tmp_path / "rel", tmp_path / "rel")  # no-op; then a real change
    (tmp_path / "rel" / "x").mkdir()
    assert h.until(lambda e: True) == [DirCreatedEvent("rel/x")]
    assert hb.until(lambda e: True) == [DirCreatedEvent(os.fsencode(tmp_path / "rel" / "x"))]


class _StallingQueue(EventQueue):
    """An event queue whose first put blocks until released: the emitter thread stops reading the kernel."""

    def __init__(self) -> None:
        super().__init__()
        self.stalled = threading.Event()
        self.release = threading.Event()

    def put(self, item: object, block: bool = True, timeout: float | None = None) -> None:
        if not self.stalled.is_set():
            self.stalled.set()
            self.release.wait(30)
        super().put(item, block, timeout)


def test_overflow_is_an_event_followed_by_the_rescan(tmp_path: Path) -> None:
    w = tmp_path / "w"
    w.mkdir()
    (w / "gone").write_text("g")
    events = _StallingQueue()
    watch = ObservedWatch(str(w), recursive=True)
    with sysctl("fs.inotify.max_queued_events", 64):
        emitter = FsnormEmitter(events, watch)
        emitter.start()
    try:
        (w / "first").write_text("")
        assert events.stalled.wait(5)
        for i in range(60):  # 3 events each: the 64-event queue overflows while the emitter is stalled
            (w / f"c{i}").write_text("")
            (w / f"c{i}").unlink()
        (w / "gone").unlink()
        (w / "newdir").mkdir()
        (w / "made").write_text("m")
        events.release.set()
        got: list[FileSystemEvent] = []
        while not any(isinstance(e, QueueOverflowEvent) for e in got):
            got.append(events.get(timeout=5)[0])
        cut = len(got)
        end = time.monotonic() + 3
        while time.monotonic() < end:
            try:
                got.append(events.get(timeout=0.5)[0])
            except queue.Empty:
                break
        (w / "newdir" / "late").write_text("")  # the rescan watched the directory made during the overflow
        while True:
            event = events.get(timeout=5)[0]
            got.append(event)
            if isinstance(event, FileCreatedEvent) and event.src_path.endswith("late"):
                break
    finally:
        events.release.set()
        emitter.stop()
        emitter.join(5)
    overflow = got[cut - 1]
    assert overflow == QueueOverflowEvent(str(w), is_synthetic=True)
    assert isinstance(overflow, DirModifiedEvent) and overflow.event_type == "modified"
    after = got[cut:]
    assert FileDeletedEvent(str(w / "gone"), is_synthetic=True) in after
    assert FileCreatedEvent(str(w / "made"), is_synthetic=True) in after
    assert DirCreatedEvent(str(w / "newdir"), is_synthetic=True) in after
    assert FileCreatedEvent(str(w / "newdir" / "late")) in after


def test_missing_root_raises_file_not_found(tmp_path: Path) -> None:
    observer = Observer()
    observer.schedule(Collect(), str(tmp_path / "nope"), recursive=True)
    with pytest.raises(FileNotFoundError):
        observer.start()
    assert not observer.emitters


# -- the translation rules, as properties --------------------------------------------------------------------

_names = st.binary(min_size=1, max_size=12).filter(lambda b: b"/" not in b and b"\0" not in b
                                                   and b not in (b".", b".."))
_dirs = st.lists(_names, min_size=0, max_size=3).map(lambda parts: b"/r" + b"".join(b"/" + p for p in parts))


@settings(max_examples=200, deadline=None)
@given(src_dir=_dirs, src=_names, dst_dir=_dirs, dst=_names, side=st.sampled_from(["both", "from", "to"]),
       full=st.booleans(), as_bytes=st.booleans())
def test_file_rename_rules(src_dir: bytes, src: bytes, dst_dir: bytes, dst: bytes, side: str, full: bool,
                           as_bytes: bool) -> None:
    """Any file rename record gives watchdog's events: the move (or its one-sided form) first, then the
    DirModifiedEvent of each known side's directory, with paths decoded exactly as watchdog decodes them."""
    a, b = src_dir + b"/" + src, dst_dir + b"/" + dst
    rec = Rec("rename", a if side != "to" else b"", False, 0, 0xC0, 7, b if side != "from" else b"")
    tr = WatchdogTranslator(b"/r", b"/r", as_bytes=as_bytes, recursive=True, full_events=full)
    got = tr.translate(rec)

    def show(p: bytes) -> bytes | str:
        return p if as_bytes else os.fsdecode(p)

    if side == "both":
        assert got == [FileMovedEvent(show(a), show(b)), DirModifiedEvent(show(src_dir)),
                       DirModifiedEvent(show(dst_dir))]
    elif side == "from":
        first = FileMovedEvent(show(a), "") if full else FileDeletedEvent(show(a))
        assert got == [first, DirModifiedEvent(show(src_dir))]
    else:
        first = FileMovedEvent("", show(b)) if full else FileCreatedEvent(show(b))
        assert got == [first, DirModifiedEvent(show(dst_dir))]
    for event in got:
        for p in (event.src_path, event.dest_path):
            assert p == "" or (os.fsencode(p) if isinstance(p, str) else p).startswith(b"/r")


@settings(max_examples=100, deadline=None)
@given(kind=st.sampled_from(["create", "delete", "modify", "attrib", "open", "close_write", "close_nowrite"]),
       is_dir=st.booleans(), name=_names)
def test_path_record_rules(kind: str, is_dir: bool, name: bytes) -> None:
    """Parent DirModifiedEvent exactly after create, delete and close_write; directories' open/close dropped."""
    path = b"/r/d/" + name
    got = WatchdogTranslator(b"/r", b"/r", as_bytes=False, recursive=True,
                             full_events=False).translate(Rec(kind, path, is_dir, 0, 0))
    if is_dir and kind in ("open", "close_write", "close_nowrite"):
        assert got == []
        return
    assert got[0].src_path == os.fsdecode(path) and got[0].is_directory == is_dir
    parent = [DirModifiedEvent("/r/d")] if kind in ("create", "delete", "close_write") else []
    assert got[1:] == parent
    if kind == "modify":
        assert type(got[0]) is (DirModifiedEvent if is_dir else FileModifiedEvent)


def test_dir_rename_walks_the_destination(tmp_path: Path) -> None:
    """A joined directory rename in a recursive watch adds watchdog's synthetic moves of its content."""
    (tmp_path / "new" / "sub").mkdir(parents=True)
    (tmp_path / "new" / "sub" / "f").write_text("")
    root = os.fsencode(tmp_path)
    tr = WatchdogTranslator(root, root, as_bytes=False, recursive=True, full_events=False)
    got = tr.translate(Rec("rename", root + b"/old", True, 0, 0xC0, 1, root + b"/new"))
    t = str(tmp_path)
    assert got == [DirMovedEvent(f"{t}/old", f"{t}/new"), DirModifiedEvent(t), DirModifiedEvent(t),
                   DirMovedEvent(f"{t}/old/sub", f"{t}/new/sub", is_synthetic=True),
                   FileMovedEvent(f"{t}/old/sub/f", f"{t}/new/sub/f", is_synthetic=True)]
    flat = WatchdogTranslator(root, root, as_bytes=False, recursive=False, full_events=False)
    assert len(flat.translate(Rec("rename", root + b"/old", True, 0, 0xC0, 1, root + b"/new"))) == 3


def test_source_non_recursive(tmp_path: Path) -> None:
    """InotifySource(recursive=False), which watchdog's recursive=False uses: the root alone is watched; a
    directory created or moved in is not, and nothing below it is reported or synthesized."""
    from live import drain

    from normalizer.backends.inotify import InotifySource

    (tmp_path / "old").mkdir()
    (tmp_path / "elsewhere" / "moved").mkdir(parents=True)
    (tmp_path / "elsewhere" / "moved" / "inner").write_text("")
    (tmp_path / "w").mkdir()
    os.rename(tmp_path / "old", tmp_path / "w" / "old")
    src = InotifySource([tmp_path / "w"], recursive=False)
    src.open()
    try:
        assert [p for _, p in src.normalizer.table.items()] == [os.fsencode(tmp_path / "w")]
        (tmp_path / "w" / "old" / "a").write_text("")
        (tmp_path / "w" / "new").mkdir()
        (tmp_path / "w" / "new" / "b").write_text("")
        os.rename(tmp_path / "elsewhere" / "moved", tmp_path / "w" / "moved")
        (tmp_path / "w" / "top").write_text("")
        recs = drain(src)
        assert [p for _, p in src.normalizer.table.items()] == [os.fsencode(tmp_path / "w")]
    finally:
        recs += src.close()
    paths = {os.path.relpath(os.fsdecode(r.dst or r.path), tmp_path) for r in recs}
    assert paths == {"w/new", "w/moved", "w/top"}


def test_source_non_recursive_rescan_stays_at_the_root(tmp_path: Path) -> None:
    """After an overflow, the rescan of a non-recursive watch lists the root only: nothing below a
    subdirectory is reported or watched, and a subdirectory is never taken for a modified file."""
    from live import drain

    from normalizer.backends.inotify import InotifySource

    w = tmp_path / "w"
    (w / "sub").mkdir(parents=True)
    (w / "sub" / "deep").write_text("")
    with sysctl("fs.inotify.max_queued_events", 64):
        src = InotifySource([w], recursive=False, rescan=True, read_buffer=0)  # no reader thread: nothing reads
        src.open()
    try:
        for i in range(60):
            (w / f"c{i}").write_text("")
            (w / f"c{i}").unlink()
        (w / "sub" / "below").write_text("")
        (w / "newdir").mkdir()
        (w / "newdir" / "x").write_text("")
        os.utime(w / "sub")
        recs = drain(src)
        table = [p for _, p in src.normalizer.table.items()]
    finally:
        recs += src.close()
    assert table == [os.fsencode(w)]
    kinds = [r.kind for r in recs]
    assert "overflow" in kinds
    after = recs[kinds.index("overflow") + 1:]
    assert not [r for r in recs if b"/sub/" in r.path or b"/newdir/" in r.path], recs
    assert not [r for r in after if r.kind == "modify" and r.is_dir is False and r.path.endswith(b"/sub")]
    assert any(r.kind == "create" and r.path == os.fsencode(w / "newdir") and r.is_dir for r in after)
