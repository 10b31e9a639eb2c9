"""Recovery from a queue overflow (rescan, the default) on both backends, against the real kernel.

The scenario of issue 9, item 6: the reader is paused (the fd is not read) while mixed activity overflows a small
kernel queue: new directories with files, renames within and across directories, deletes of files and of a
populated directory, a directory renamed inside the tree, a populated directory moved in from outside and one
moved out. Then the tree is rebuilt from the records (tests/live.py ``rebuild``: the rules a consumer uses) and
compared with a walk of the real tree. With rescan: nothing missing, nothing phantom, and the directories that
appeared during the overflow are watched afterwards. Without it: the overflow is reported, and the rebuilt tree
is wrong (which is why rescan is the default).

The queue limit (``fs.inotify.max_queued_events`` / ``fs.fanotify.max_queued_events``, read when the fd is
created) is lowered for the creation and restored in ``finally``. Everything happens on a tmpfs of the test's
own, so that a fanotify filesystem mark counts only this test's events against the queue.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from live import drain, real_tree, rebuild, stop_process, sysctl, tree_diff

from normalizer.backends.base import LiveSource
from normalizer.backends.fanotify import FanotifySource
from normalizer.backends.inotify import InotifySource
from normalizer.capture.replay import replay
from normalizer.core import raw
from normalizer.formats.jsonl import rec_to_json
from normalizer.records import Rec

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (tmpfs mount, queue sysctls)")

#: (backend, fanotify mark mode)
BACKENDS = [("inotify", None), ("fanotify", "filesystem"), ("fanotify", "inode")]
QUEUE = 512
NEW_DIRS = 40


@pytest.fixture
def fs_root(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of the test's own holding ``w`` (watched) and ``out`` (not watched, same filesystem so that
    directories can be moved between them)."""
    top = tmp_path / "fs"
    top.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m,mode=0755", "fsnorm-rescan", str(top)], check=True)
    try:
        yield top
    finally:
        subprocess.run(["umount", "-l", str(top)], check=False)


def _open(backend: str, mode: str | None, root: Path, rescan: bool, capture: Path) -> LiveSource:
    source: LiveSource
    if backend == "inotify":
        with sysctl("fs.inotify.max_queued_events", QUEUE):
            # read_buffer=0 (both): no reader thread, so the paused consumer's queue overflows
            source = InotifySource([root], rescan=rescan, capture=capture, read_buffer=0)
            assert source.open() == []
    else:
        assert mode is not None
        with sysctl("fs.fanotify.max_queued_events", QUEUE):
            source = FanotifySource([root], mark_mode=mode, rescan=rescan, capture=capture,  # type: ignore[arg-type]
                                    read_buffer=0)
            assert source.open() == []
    return source


def _write(path: Path, text: str = "x") -> None:
    path.write_text(text)


def _populate(top: Path) -> None:
    """The tree before the watch starts."""
    w, out = top / "w", top / "out"
    for d in ("keep", "gone", "ren", "leaving/sub", "stays", "busy"):
        (w / d).mkdir(parents=True)
    for i in range(20):
        _write(w / f"keep/f{i}")
        _write(w / f"gone/g{i}")
        _write(w / f"ren/r{i}")
        _write(w / f"leaving/sub/l{i}")
        _write(w / f"stays/s{i}")
    (out / "incoming/deep/er").mkdir(parents=True)
    for i in range(15):
        _write(out / f"incoming/i{i}")
        _write(out / f"incoming/deep/er/e{i}")


def _activity(top: Path) -> None:
    """Mixed activity, far more events than the queue holds. It starts with 700 files written in a watched
    directory (one event each for fanotify, which merges a file's create, modify and close_write while unread;
    three for inotify), so that the queue (512) is full before the rest: what follows is lost in the overflow.
    (Files created in a directory nobody watches yet queue no event at all under inotify.)"""
    w, out = top / "w", top / "out"
    for i in range(700):
        _write(w / f"busy/b{i}")
    for i in range(0, 700, 2):
        (w / f"busy/b{i}").unlink()
    for n in range(NEW_DIRS):  # new directories with files (and a nested one)
        d = w / f"new{n}/inner"
        d.mkdir(parents=True)
        for i in range(25):
            _write(d / f"n{i}")
    for i in range(20):  # renames within and across directories
        os.rename(w / f"ren/r{i}", w / (f"ren/r{i}.moved" if i % 2 else f"keep/r{i}.across"))
    for i in range(0, 20, 3):  # file deletes
        (w / f"keep/f{i}").unlink()
    shutil.rmtree(w / "gone")  # a populated directory deleted
    os.rename(w / "stays", w / "new3/stays-renamed")  # a populated directory renamed inside the tree
    os.rename(out / "incoming", w / "keep/incoming")  # a populated directory moved in
    os.rename(w / "leaving", out / "leaving")  # a populated directory moved out
    os.rename(w / "ren", out / "ren-old")  # a directory moved out and replaced by a new one of the same name
    (w / "ren").mkdir()
    _write(w / "ren/fresh")
    for i in range(5):  # files written after all that
        _write(w / f"keep/f{i * 3 + 1}", "changed")


def _run(top: Path, backend: str, mode: str | None, rescan: bool) -> tuple[list[Rec], dict[bytes, bool]]:
    """Populate, watch, overflow while not reading, then read. Returns the records and the tree at the start."""
    _populate(top)
    w = top / "w"
    start = real_tree(w)
    source = _open(backend, mode, w, rescan, top.parent / "session.fsncap")
    try:
        _activity(top)
        recs = drain(source)
        # After the overflow, a directory created during it and the one moved in are watched.
        _write(w / "new7/inner/after")
        _write(w / "keep/incoming/deep/er/after")
        _write(w / "new3/stays-renamed/after")  # renamed during the overflow: known under its new path
        _write(top / "out/leaving/sub/after")  # moved out during the overflow: not reported
        _write(top / "out/ren-old/after")  # replaced during the overflow: not reported
        _write(w / "ren/after")  # the new directory of that name: reported under its path
        recs += drain(source)
    finally:
        recs += source.close()
    return recs, start


def _report(label: str, real: dict[bytes, bool], missing: list[bytes], phantom: list[bytes]) -> None:
    print(f"\n{label}: {len(real)} entries in the real tree, {len(missing)} missing, {len(phantom)} phantom")


@pytest.mark.parametrize(("backend", "mode"), BACKENDS)
def test_overflow_with_rescan_rebuilds_the_tree_exactly(fs_root: Path, backend: str, mode: str | None) -> None:
    recs, start = _run(fs_root, backend, mode, rescan=True)
    w = fs_root / "w"
    real = real_tree(w)
    missing, phantom = tree_diff(real, rebuild(start, recs))
    _report(f"{backend}/{mode} rescan", real, missing, phantom)
    kinds = [r.kind for r in recs]
    assert "overflow" in kinds
    assert any("synthesized" in r.flags for r in recs[kinds.index("overflow"):])
    assert (missing, phantom) == ([], [])
    # The rescan's items (watches, handles, synthesized records) are in the capture: replay gives the same.
    assert [rec_to_json(r) for r in replay(fs_root.parent / "session.fsncap")] == [rec_to_json(r) for r in recs]
    # The activity after the overflow was reported by the kernel, not found by a scan: the directories that
    # appeared during the overflow are watched (marked) and their paths known.
    plain = {(r.kind, r.path) for r in recs if "synthesized" not in r.flags}
    assert ("create", os.fsencode(w / "new7/inner/after")) in plain
    assert ("create", os.fsencode(w / "keep/incoming/deep/er/after")) in plain
    assert ("create", os.fsencode(w / "new3/stays-renamed/after")) in plain
    assert ("create", os.fsencode(w / "ren/after")) in plain
    assert not [r for r in recs if r.path.endswith((b"/sub/after", b"/ren-old/after")) or r.path == b"after"]
    # After the overflow, the directory that left appears only in the rescan's deletes.
    gone = os.fsencode(w / "leaving")
    assert not [r for r in recs[kinds.index("overflow"):] if (r.path == gone or r.path.startswith(gone + b"/"))
                and not (r.kind == "delete" and "synthesized" in r.flags)]


@pytest.mark.parametrize(("backend", "mode"), BACKENDS)
def test_overflow_without_rescan_is_reported_not_repaired(fs_root: Path, backend: str, mode: str | None) -> None:
    recs, start = _run(fs_root, backend, mode, rescan=False)
    real = real_tree(fs_root / "w")
    missing, phantom = tree_diff(real, rebuild(start, recs))
    _report(f"{backend}/{mode} no rescan", real, missing, phantom)
    kinds = [r.kind for r in recs]
    assert kinds.count("overflow") >= 1, "the loss is reported"
    assert not [r for r in recs if "synthesized" in r.flags and r.message == "rescan after overflow"]
    # What the overflow swallowed stays lost: the tree rebuilt from the records lacks what was created after
    # the queue filled (the last directories' files, the moved-in directory's content).
    assert missing
    assert os.fsencode(fs_root / f"w/new{NEW_DIRS - 1}/inner/n24") in missing


def test_rescan_is_the_default_and_no_rescan_turns_it_off(tmp_path: Path) -> None:
    """CLI and API: on unless asked otherwise; ``--rescan`` (once needed to turn it on) is a no-op alias."""
    from normalizer.api import make_source
    from normalizer.cli.main import _source_options, build_parser

    parse = build_parser().parse_args
    assert parse(["watch", str(tmp_path)]).rescan is True
    assert parse(["watch", str(tmp_path), "--rescan"]).rescan is True
    assert parse(["watch", str(tmp_path), "--no-rescan"]).rescan is False
    assert _source_options(parse(["capture", str(tmp_path), "-o", "x", "--no-rescan"]))["rescan"] is False
    for backend in ("inotify", "fanotify", "auto"):
        assert make_source([tmp_path], backend=backend).rescan is True  # type: ignore[arg-type]
        assert make_source([tmp_path], backend=backend, rescan=False).rescan is False  # type: ignore[arg-type]
    assert isinstance(make_source([tmp_path], backend="auto", rescan=True), FanotifySource)  # no inotify fallback
    # The bits the shadow needs are watched even when --events leaves them out; the report is still filtered.
    from normalizer.backends.inotify import mask_from_kinds
    from normalizer.core import raw

    src = InotifySource([tmp_path], mask=mask_from_kinds("attrib"))
    assert src.mask & raw.IN_DELETE and src.filter.kinds is not None and "delete" not in src.filter.kinds
    assert not InotifySource([tmp_path], mask=mask_from_kinds("attrib"), rescan=False).mask & raw.IN_DELETE


@pytest.mark.parametrize("backend", ["inotify", "fanotify"])
def test_cli_default_recovers_from_an_overflow_while_stopped(fs_root: Path, backend: str) -> None:
    """As a new user runs it: ``fsnorm watch`` with no option but the backend, stopped (SIGSTOP) while the
    activity overflows its queue, continued, then stopped with SIGTERM: the tree rebuilt from its JSON Lines is
    the real tree."""
    import json
    import signal
    import sys
    import time

    from normalizer.records import record_from_json

    _populate(fs_root)
    w = fs_root / "w"
    start = real_tree(w)
    cap = fs_root.parent / "cli.fsncap"
    out = fs_root.parent / "cli.jsonl"
    queue = "fs.inotify.max_queued_events" if backend == "inotify" else "fs.fanotify.max_queued_events"
    with open(out, "wb") as stdout, sysctl(queue, QUEUE):
        proc = subprocess.Popen([sys.executable, "-m", "normalizer", "watch", "--backend", backend, str(w),
                                 "--capture", str(cap)], stdout=stdout, stderr=subprocess.PIPE,
                                cwd=Path(__file__).resolve().parent.parent)
        deadline = time.monotonic() + 30  # the capture header is written once the watches exist
        while time.monotonic() < deadline and not (cap.exists() and cap.read_bytes().count(b"\n") >= 1):
            time.sleep(0.05)
    try:
        stop_process(proc)
        _activity(fs_root)
        proc.send_signal(signal.SIGCONT)
        time.sleep(2.0)  # reads, overflow, rescan
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    recs = []
    for line in out.read_text().splitlines():
        model = record_from_json(line)
        path = (model.src or b"") if model.kind == "rename" else model.path
        flags = ((model.reason,) if model.reason else ()) + tuple(model.flags)
        recs.append(Rec(model.kind, path, model.is_dir, model.t_ns, model.mask, None, model.dst or b"", flags))
        assert json.loads(line)["source"] == backend
    real = real_tree(w)
    missing, phantom = tree_diff(real, rebuild(start, recs))
    _report(f"CLI {backend}", real, missing, phantom)
    assert "overflow" in [r.kind for r in recs]
    assert (missing, phantom) == ([], [])



# --- an overflow meeting a directory whose place is uncertain (fanotify, issue 9 item 3) ----------------------


class _Poke(LiveSource):
    """Writes one file in the tree right after the source fed the item that brought an overflow: a real event
    then waits in the queue when the source asks whether it is empty, so a fanotify directory whose place is
    uncertain is not placed before the overflow's rescan (what a busy filesystem did once under load; here at
    the exact moment, so the test is deterministic)."""

    poke: Path | None = None

    def _feed(self, item: raw.AnyStreamItem) -> list[Rec]:
        out = super()._feed(item)
        if self.poke is not None and self.stats["overflows"]:
            _write(self.poke)
            self.poke = None
        return out


class _PokedFanotify(_Poke, FanotifySource):
    """With ``split``, the first read takes only that many bytes (the kernel returns whole events), so the
    directory's place is resolved while the rest of the queue, overflow included, still waits."""

    split = 0

    def _read_once(self) -> list[Rec] | None:
        if not self.split:
            return super()._read_once()
        full, self._read_size, self.split = self._read_size, self.split, 0  # a direct read (read_buffer=0)
        try:
            return super()._read_once()
        finally:
            self._read_size = full


class _PokedInotify(_Poke, InotifySource):
    pass


@pytest.mark.parametrize("how", ["placed-first", "placed-later", "split-read"])
@pytest.mark.parametrize(("backend", "mode"), BACKENDS)
def test_overflow_after_a_directory_renamed_away_and_back_rebuilds_the_tree_exactly(fs_root: Path, backend: str,
                                                                                   mode: str | None,
                                                                                   how: str) -> None:
    """``w0 -> w0b`` and back again and again with a file renamed inside each time (the kernel merges the
    repeated renames, so the directory's place is uncertain once read), ending away at ``w0b``; then 700 files
    written overflow the queue (512); then, lost in the overflow, more changes inside ``w0b``. All of it is read
    at once (one large read). ``placed-first``: the queue is empty after that read, so the directory is placed
    (a synthesized rename to ``w0b``, a rescan of its subtree) before the overflow's rescan. ``placed-later``:
    an event lands right after that read, so the overflow's rescan finds the directory at ``w0b`` while the
    records put it at ``w0``; learning it there places it again (the synthesized rename and the subtree's
    rescan) in the middle of the overflow's rescan, whose diff must be taken after that. Either way the tree
    rebuilt from the records (tests/oracle.py: it accepts the overflow record itself, but every synthesized
    record after it only if true) is the real tree. ``placed-later`` failed before the fix the way test_truth's
    ``+noise`` variant once did under load: synthesized deletes of ``w0/...`` and creates of ``w0b/...`` that
    the consumer had already been told about. Lost with the overflow too: a directory below ``w0b`` deleted,
    one moved up out of it (both known to the cache below the uncertain directory; with inode marks the one
    moved out was once unmarked by the subtree's rescan, its later events lost), one created. inotify (no
    merging of renames, nothing uncertain) must give the true tree through the same overflow too. Last, lost as
    well, ``w0b -> w0c``. ``split-read``: the first read takes only part of the queue (the cycle), so the
    directory is resolved while the overflow still waits in the queue; that answer must not be taken for the
    events before the overflow (it did: renames ``w0c/f20 -> w0c/f21`` ... of a directory then at ``w0``)."""
    from oracle import Rebuilder, compare, walk

    w = fs_root / "w"
    (w / "w0").mkdir(parents=True)
    (w / "noise").mkdir()
    (w / "w0/f0").write_text("f")
    for d in ("gone", "leaves/deep"):
        (w / "w0" / d).mkdir(parents=True)
        _write(w / "w0" / d / "x")
    initial = walk(w)
    capture = fs_root.parent / "uncertain.fsncap"
    src: _Poke
    if backend == "inotify":
        with sysctl("fs.inotify.max_queued_events", QUEUE):
            src = _PokedInotify([w], capture=capture, read_size=1 << 21, read_buffer=0)
            assert src.open() == []
    else:
        with sysctl("fs.fanotify.max_queued_events", QUEUE):
            src = _PokedFanotify([w], mark_mode=mode, capture=capture,  # type: ignore[arg-type]
                                 read_size=1 << 21, read_buffer=0)
            assert src.open() == []
        src.split = 3000 if how == "split-read" else 0
    if how == "placed-later":
        src.poke = w / "noise/poke"
    recs: list[Rec] = []
    try:
        n, at = 0, "w0"
        for _ in range(41):  # ends away, at w0b
            away = "w0b" if at == "w0" else "w0"
            os.rename(w / at, w / away)
            at = away
            os.rename(w / at / f"f{n}", w / at / f"f{n + 1}")
            n += 1
        assert at == "w0b"
        for i in range(700):
            _write(w / f"noise/b{i}")
        os.rename(w / f"w0b/f{n}", w / "w0b/last")  # lost in the overflow: the rescan finds them
        shutil.rmtree(w / "w0b/gone")
        os.rename(w / "w0b/leaves", w / "left")
        (w / "w0b/sub").mkdir()
        _write(w / "w0b/sub/deep")
        _write(w / "w0b/new")
        os.rename(w / "w0b", w / "w0c")
        recs += drain(src)
        while getattr(src.normalizer, "uncertain_dirs", list)():
            recs += drain(src)
        _write(w / "w0c/sub/after")  # watched (marked) after the rescan
        _write(w / "left/deep/after")  # known under its new path
        recs += drain(src)
        stats = {**src.stats, **getattr(src.normalizer, "stats", {})}
    finally:
        recs += src.close()
    kinds = [r.kind for r in recs]
    shown = [(r.kind, os.fsdecode(r.path), os.fsdecode(r.dst), r.flags) for r in recs if r.kind != "create"
             or not r.path.startswith(os.fsencode(w / "noise"))]
    assert "overflow" in kinds, (shown, stats)
    if backend == "fanotify":
        assert stats["held_back"] > 0 and "rescan" in kinds, (shown, stats)  # the directory was uncertain
    assert src.poke is None, "the poke was written"
    rebuilder = Rebuilder(w, initial)
    rebuilder.feed(recs)
    (reading,) = rebuilder.readings
    missing, phantom, wrong_type = compare(reading.tree, walk(w))
    assert (missing, phantom, wrong_type, reading.problems) == ([], [], [], []), (shown, stats)
    plain = {(r.kind, r.path) for r in recs if "synthesized" not in r.flags}
    assert ("create", os.fsencode(w / "w0c/sub/after")) in plain, shown
    assert ("create", os.fsencode(w / "left/deep/after")) in plain, shown
    assert [rec_to_json(r) for r in replay(capture)] == [rec_to_json(r) for r in recs], "replay gives the same"
