"""normalizer.compat.pyinotify against the real kernel, with handlers written the way pyinotify's own examples
write them (tutorial_notifier.py, tutorial_threadednotifier.py, loop.py, chain.py: ProcessEvent subclasses with
process_IN_* methods and my_init, Notifier.loop with a callback, the check/read/process loop)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from live import sysctl

from normalizer.compat import pyinotify
from normalizer.records import Rec


class EventHandler(pyinotify.ProcessEvent):
    """As in pyinotify's examples: one method per event, state set up in my_init."""

    def my_init(self, **kwargs: object) -> None:
        self.seen: list[tuple[str, ...]] = []
        self.events: list[pyinotify.Event] = []

    def process_IN_CREATE(self, event: pyinotify.Event) -> None:
        self.seen.append(("create", event.pathname))
        self.events.append(event)

    def process_IN_DELETE(self, event: pyinotify.Event) -> None:
        self.seen.append(("delete", event.pathname))
        self.events.append(event)

    def process_IN_MOVED_FROM(self, event: pyinotify.Event) -> None:
        self.seen.append(("from", event.pathname))
        self.events.append(event)

    def process_IN_MOVED_TO(self, event: pyinotify.Event) -> None:
        self.seen.append(("to", getattr(event, "src_pathname", ""), event.pathname))
        self.events.append(event)

    def process_default(self, event: pyinotify.Event) -> None:
        self.seen.append((event.maskname, event.pathname))
        self.events.append(event)


MASK = pyinotify.IN_DELETE | pyinotify.IN_CREATE | pyinotify.IN_MOVED_TO | pyinotify.IN_MOVED_FROM


def _loop_until(notifier: pyinotify.Notifier, handler: EventHandler, done: tuple[str, ...],
                timeout: float = 10.0) -> None:
    """Notifier.loop with a callback that ends it, as pyinotify's loop.py example does."""
    end = time.monotonic() + timeout

    def callback(n: pyinotify.Notifier) -> bool:
        return done in handler.seen or time.monotonic() > end

    notifier.loop(callback=callback)
    assert done in handler.seen, handler.seen


def test_tutorial_notifier_recursive_with_new_directories(tmp_path: Path) -> None:
    wm = pyinotify.WatchManager()
    handler = EventHandler()
    notifier = pyinotify.Notifier(wm, handler, timeout=100)
    (tmp_path / "old").mkdir()
    wdd = wm.add_watch(str(tmp_path), MASK, rec=True, auto_add=True)
    assert set(wdd) == {str(tmp_path), str(tmp_path / "old")} and all(wd > 0 for wd in wdd.values())
    (tmp_path / "new" / "deep").mkdir(parents=True)
    (tmp_path / "new" / "deep" / "f").write_text("x")
    (tmp_path / "old" / "g").write_text("y")
    (tmp_path / "old" / "g").unlink()
    (tmp_path / "end").write_text("")
    _loop_until(notifier, handler, ("create", str(tmp_path / "end")))
    t = str(tmp_path)
    # What the scan of the new directory found comes after the read that revealed it (synthesized); the
    # kernel's own events keep their order.
    scanned = [(e.pathname, e.dir) for e in handler.events if e.synthesized]
    assert scanned == [(f"{t}/new/deep", True), (f"{t}/new/deep/f", False)]
    kernel = [s for s, e in zip(handler.seen, handler.events, strict=True) if not e.synthesized]
    assert kernel == [("create", f"{t}/new"), ("create", f"{t}/old/g"), ("delete", f"{t}/old/g"),
                      ("create", f"{t}/end")]
    assert wm.get_wd(t) == wdd[t] and wm.get_path(wdd[t]) == t


def test_readme_check_read_process_loop_and_family_dispatch(tmp_path: Path) -> None:
    """pyinotify's README loop, and process_IN_CLOSE catching IN_CLOSE_WRITE (the family fallback)."""

    class Closer(pyinotify.ProcessEvent):
        def my_init(self, **kwargs: object) -> None:
            self.closed: list[str] = []
            self.other: list[str] = []

        def process_IN_CLOSE(self, event: pyinotify.Event) -> None:
            self.closed.append(event.maskname + " " + event.name)

        def process_default(self, event: pyinotify.Event) -> None:
            self.other.append(event.maskname)

    wm = pyinotify.WatchManager()
    handler = Closer()
    notifier = pyinotify.Notifier(wm, handler)
    wm.add_watch(str(tmp_path), pyinotify.IN_CLOSE_WRITE | pyinotify.IN_MODIFY)
    (tmp_path / "a").write_text("data")
    end = time.monotonic() + 10
    while not handler.closed and time.monotonic() < end:
        notifier.process_events()
        if notifier.check_events(timeout=100):
            notifier.read_events()
    notifier.process_events()
    notifier.stop()
    assert handler.closed == ["IN_CLOSE_WRITE a"]
    assert handler.other == ["IN_MODIFY"]  # the create, open, ... were not asked for


def test_threaded_notifier_every_joined_rename_has_src_pathname(tmp_path: Path) -> None:
    """200 renames across two watched directories: each is IN_MOVED_FROM then IN_MOVED_TO with src_pathname
    (and the from side knows its destination)."""
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
    for i in range(200):
        (tmp_path / "a" / f"f{i}").write_text("")
    wm = pyinotify.WatchManager()
    handler = EventHandler()
    notifier = pyinotify.ThreadedNotifier(wm, handler)
    notifier.start()
    try:
        wm.add_watch(str(tmp_path), MASK, rec=True)
        for i in range(200):
            os.rename(tmp_path / "a" / f"f{i}", tmp_path / "b" / f"g{i}")
        (tmp_path / "end").write_text("")
        end = time.monotonic() + 10
        while ("create", str(tmp_path / "end")) not in handler.seen and time.monotonic() < end:
            time.sleep(0.02)
    finally:
        notifier.stop()
    tos = [e for e in handler.events if e.mask & pyinotify.IN_MOVED_TO]
    froms = [e for e in handler.events if e.mask & pyinotify.IN_MOVED_FROM]
    assert [(e.src_pathname, e.pathname) for e in tos] == [
        (str(tmp_path / "a" / f"f{i}"), str(tmp_path / "b" / f"g{i}")) for i in range(200)]
    assert [e.dst_pathname for e in froms] == [e.pathname for e in tos]
    assert not any(e.one_sided for e in tos + froms)
    assert all(f.cookie == t.cookie and f.cookie for f, t in zip(froms, tos, strict=True))


def test_one_sided_moves_are_explicit(tmp_path: Path) -> None:
    w, out = tmp_path / "w", tmp_path / "out"
    w.mkdir()
    out.mkdir()
    (w / "leaves").write_text("")
    (out / "arrives").write_text("")
    (w / "dir").mkdir()
    wm = pyinotify.WatchManager()
    handler = EventHandler()
    notifier = pyinotify.Notifier(wm, handler, timeout=50)
    wm.add_watch(str(w), MASK | pyinotify.IN_MOVE_SELF, rec=True, auto_add=True)
    os.rename(w / "leaves", out / "leaves")
    os.rename(out / "arrives", w / "arrives")
    os.rename(w / "dir", out / "dir")
    (w / "end").write_text("")
    _loop_until(notifier, handler, ("create", str(w / "end")))
    notifier.stop()
    by_path = {e.pathname: e for e in handler.events}
    leaves, arrives, gone = by_path[str(w / "leaves")], by_path[str(w / "arrives")], by_path[str(w / "dir")]
    assert leaves.maskname == "IN_MOVED_FROM" and leaves.one_sided and "timeout" in leaves.flags
    assert not hasattr(leaves, "dst_pathname")
    assert arrives.maskname == "IN_MOVED_TO" and arrives.one_sided and "unwatched" in arrives.flags
    assert not hasattr(arrives, "src_pathname")
    assert gone.maskname == "IN_MOVED_FROM|IN_ISDIR" and gone.one_sided and "unwatched" in gone.flags
    # pyinotify would follow with IN_MOVE_SELF on a '...-unknown-path' path; fsnorm stopped watching it.
    assert not [e for e in handler.events if "unknown-path" in e.path or e.maskname.startswith("IN_MOVE_SELF")]


def test_overflow_reaches_process_in_q_overflow_then_the_rescan(tmp_path: Path) -> None:
    class Handler(EventHandler):
        def process_IN_Q_OVERFLOW(self, event: pyinotify.Event) -> None:
            self.seen.append(("overflow",))
            self.events.append(event)

    (tmp_path / "gone").write_text("")
    with sysctl("fs.inotify.max_queued_events", 64):
        wm = pyinotify.WatchManager()
        handler = Handler()
        notifier = pyinotify.Notifier(wm, handler, timeout=50)
        wm.add_watch(str(tmp_path), MASK)
    for i in range(60):  # nobody reads: the 64-event queue overflows
        (tmp_path / f"c{i}").write_text("")
        (tmp_path / f"c{i}").unlink()
    (tmp_path / "gone").unlink()
    (tmp_path / "made").write_text("")

    def after_overflow() -> list[pyinotify.Event]:
        if ("overflow",) not in handler.seen:
            return []
        return handler.events[handler.seen.index(("overflow",)) + 1:]

    end = time.monotonic() + 5
    while time.monotonic() < end and not any(e.pathname == str(tmp_path / "made") for e in after_overflow()):
        notifier.process_events()
        if notifier.check_events(timeout=50):
            notifier.read_events()
    notifier.process_events()
    notifier.stop()
    overflow = handler.events[handler.seen.index(("overflow",))]
    assert overflow.mask == pyinotify.IN_Q_OVERFLOW and overflow.wd == -1
    synthesized = {(e.maskname, e.pathname) for e in after_overflow() if e.synthesized}
    assert ("IN_CREATE", str(tmp_path / "made")) in synthesized
    assert ("IN_DELETE", str(tmp_path / "gone")) in synthesized


def test_rm_watch_and_missing_paths(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    wm = pyinotify.WatchManager()
    handler = EventHandler()
    notifier = pyinotify.Notifier(wm, handler, timeout=50)
    wdd = wm.add_watch(str(tmp_path), MASK, rec=True)
    assert wm.rm_watch(wdd[str(tmp_path / "sub")]) == {wdd[str(tmp_path / "sub")]: True}
    (tmp_path / "sub" / "quiet").write_text("")
    (tmp_path / "loud").write_text("")
    _loop_until(notifier, handler, ("create", str(tmp_path / "loud")))
    assert ("create", str(tmp_path / "sub" / "quiet")) not in handler.seen
    assert wm.add_watch(str(tmp_path / "nope"), MASK) == {str(tmp_path / "nope"): -1}
    with pytest.raises(pyinotify.WatchManagerError):
        wm.add_watch(str(tmp_path / "nope"), MASK, quiet=False)
    assert wm.rm_watch(12345) == {12345: False}


def test_threaded_notifier_rm_watch_of_a_root_while_running(tmp_path: Path) -> None:
    wm = pyinotify.WatchManager()
    handler = EventHandler()
    notifier = pyinotify.ThreadedNotifier(wm, handler)
    notifier.start()
    try:
        wdd = wm.add_watch(str(tmp_path), MASK)
        (watch,) = wm.watches.values()
        (tmp_path / "before").write_text("")
        assert wm.rm_watch(wdd[str(tmp_path)]) == {wdd[str(tmp_path)]: True}
        deadline = time.monotonic() + 5
        while not watch.source.closed and time.monotonic() < deadline:  # the notifier thread closes it
            time.sleep(0.01)
        assert watch.source.closed
        (tmp_path / "after").write_text("")
        time.sleep(0.2)
    finally:
        notifier.stop()
    assert not notifier.is_alive()
    assert ("create", str(tmp_path / "before")) in handler.seen
    assert ("create", str(tmp_path / "after")) not in handler.seen


def test_pevent_chaining_and_unknown_mask() -> None:
    calls: list[str] = []

    class Stop(pyinotify.ProcessEvent):
        def process_default(self, event: pyinotify.Event) -> bool:
            calls.append("first")
            return True  # stop the chain

    class Second(pyinotify.ProcessEvent):
        def process_default(self, event: pyinotify.Event) -> None:
            calls.append("second")

    event = pyinotify.Event(wd=1, mask=pyinotify.IN_CREATE, path="/x", name="y", dir=False)
    Second(Stop())(event)
    assert calls == ["first"]
    Second()(event)
    assert calls == ["first", "second"]
    event.mask = 0x3  # two bits: no single event
    with pytest.raises(pyinotify.ProcessEventError):
        Second()(event)


def test_constants_match_pyinotify() -> None:
    real = pytest.importorskip("pyinotify")
    assert pyinotify.EventsCodes.ALL_FLAGS == real.EventsCodes.ALL_FLAGS
    for name, value in real.EventsCodes.ALL_FLAGS.items():
        assert getattr(pyinotify, name) == value
    for mask in (pyinotify.IN_CREATE, pyinotify.IN_MOVED_TO | pyinotify.IN_ISDIR, pyinotify.IN_Q_OVERFLOW):
        assert pyinotify.EventsCodes.maskname(mask) == real.EventsCodes.maskname(mask)


_names = st.binary(min_size=1, max_size=10).filter(lambda b: b"/" not in b and b"\0" not in b
                                                   and b not in (b".", b".."))


@settings(max_examples=200, deadline=None)
@given(a=_names, b=_names, side=st.sampled_from(["both", "from", "to"]), is_dir=st.booleans())
def test_rename_records_become_pyinotify_events(a: bytes, b: bytes, side: str, is_dir: bool) -> None:
    """Any rename record: FROM before TO, src_pathname exactly when joined, one_sided exactly when not, and
    every name (even not UTF-8) comes back to its bytes with os.fsencode."""
    src, dst = b"/r/d1/" + a, b"/r/d2/" + b
    rec = Rec("rename", src if side != "to" else b"", is_dir, 0, 0xC0, 9, dst if side != "from" else b"",
              ("timeout",) if side != "both" else ())
    wm = pyinotify.WatchManager()
    try:
        events = wm._translate(rec)
    finally:
        wm.close()
    isdir = pyinotify.IN_ISDIR if is_dir else 0
    expect = ([pyinotify.IN_MOVED_FROM | isdir] if side != "to" else []) + (
        [pyinotify.IN_MOVED_TO | isdir] if side != "from" else [])
    assert [e.mask for e in events] == expect
    assert all(e.one_sided == (side != "both") and e.cookie == 9 and e.dir == is_dir for e in events)
    for e in events:
        assert os.fsencode(e.pathname) in (src, dst)
        assert os.fsencode(os.path.join(e.path, e.name)) == os.fsencode(e.pathname)
    to = [e for e in events if e.mask & pyinotify.IN_MOVED_TO]
    if side == "both":
        assert os.fsencode(to[0].src_pathname) == src
    else:
        assert not any(hasattr(e, "src_pathname") for e in to)


def test_src_pathname_without_asking_for_moved_from(tmp_path: Path) -> None:
    """Only IN_MOVED_TO in the mask: pyinotify cannot tell where a file came from then; fsnorm still can."""
    (tmp_path / "a").write_text("")
    wm = pyinotify.WatchManager()
    handler = EventHandler()
    notifier = pyinotify.Notifier(wm, handler, timeout=50)
    wm.add_watch(str(tmp_path), pyinotify.IN_MOVED_TO | pyinotify.IN_CREATE)
    os.rename(tmp_path / "a", tmp_path / "b")
    (tmp_path / "end").write_text("")
    _loop_until(notifier, handler, ("create", str(tmp_path / "end")))
    assert handler.seen == [("to", str(tmp_path / "a"), str(tmp_path / "b")), ("create", str(tmp_path / "end"))]
