"""Faults, against the real kernel with real files: the watched root deleted, replaced or moved away; a subtree
made unreadable; a full filesystem under the capture; the inotify watch and instance limits; SIGTERM in the
middle of a storm; a consumer that stops reading during a storm."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from live import brief, drain, require_nobody, stop_process, sysctl, wait_for_watches

import normalizer
from benchmarks.soak import Ledger, load_stamps, rss_kib
from benchmarks.workloads import dirs
from normalizer.backends.inotify import InotifySource
from normalizer.capture.log import CaptureReader
from normalizer.capture.replay import replay
from normalizer.errors import SourceError, WatchLimitError
from normalizer.formats.jsonl import rec_to_json
from normalizer.records import Rec, record_from_json, record_to_json

REPO = Path(__file__).parent.parent
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for d in ("w/a", "w/b", "v/c", "out"):
        (tmp_path / d).mkdir(parents=True)
    return tmp_path


def open_source(*roots: Path, **options: object) -> InotifySource:
    source = InotifySource(list(roots), **options)  # type: ignore[arg-type]
    assert source.open() == []
    return source


# -- the watched root deleted, replaced, moved away --------------------------------------------------------


EXPECTED_RMTREE = [("delete", "w/a/f", ()),
                   ("delete_self", "w/a", ()), ("watch_end", "w/a", ()), ("delete", "w/a", ()),
                   ("delete_self", "w/b", ()), ("watch_end", "w/b", ()), ("delete", "w/b", ()),
                   ("delete_self", "w", ()), ("watch_end", "w", ())]


def test_root_deleted_ends_its_watches_and_the_other_root_goes_on(tree: Path) -> None:
    (tree / "w/a/f").write_text("x")
    with open_source(tree / "w", tree / "v") as src:
        (tree / "w/a/f").unlink()
        for d in ("w/a", "w/b", "w"):
            (tree / d).rmdir()
        recs = drain(src)
        assert [p for _, p in src.normalizer.table.items()] == [bytes(tree / "v"), bytes(tree / "v/c")]
        (tree / "v/c/g").write_text("y")
        recs += drain(src)
    got = brief(tree, recs, kinds=("delete", "delete_self", "watch_end", "create"))
    assert got == [*EXPECTED_RMTREE, ("create", "v/c/g", ())], got


def test_root_replaced_ends_the_old_watch_and_reports_nothing_under_a_stale_path(tree: Path) -> None:
    with open_source(tree / "w", tree / "v") as src:
        shutil.rmtree(tree / "w")
        (tree / "w").mkdir()  # a new directory at the same path: a different inode, not watched
        (tree / "w/new").write_text("x")
        recs = drain(src)
        (tree / "v/c/g").write_text("y")
        recs += drain(src)
        table = [p for _, p in src.normalizer.table.items()]
    kinds = brief(tree, recs)
    assert ("watch_end", "w", ()) in kinds
    assert not [k for k in kinds if k[1] == "w/new"], "nothing reported for the replacement's content"
    assert kinds[-3:] == [("create", "v/c/g", ()), ("modify", "v/c/g", ()), ("close_write", "v/c/g", ())]
    assert table == [bytes(tree / "v"), bytes(tree / "v/c")]
    watch_end = next(r for r in recs if r.kind == "watch_end" and r.path == bytes(tree / "w"))
    assert "deleted" in (watch_end.message or "")


def test_root_moved_into_the_other_root_is_a_move_in_watched_under_its_new_path(tree: Path) -> None:
    (tree / "w/a/f").write_text("x")
    with open_source(tree / "w", tree / "v") as src:
        os.rename(tree / "w", tree / "v/c/w2")
        recs = drain(src)
        (tree / "w").mkdir()  # the old path again: not watched
        (tree / "w/stale").write_text("s")
        (tree / "v/c/w2/a/late").write_text("l")
        recs += drain(src)
    got = brief(tree, recs, kinds=("rename", "move_self", "watch_end", "create"))
    assert got == [
        ("rename", "", "v/c/w2", ("unwatched",)),
        ("move_self", "w", ()), ("watch_end", "w", ()),
        ("create", "v/c/w2/a", ("synthesized",)), ("create", "v/c/w2/b", ("synthesized",)),
        ("create", "v/c/w2/a/f", ("synthesized",)),
        ("create", "v/c/w2/a/late", ()),
    ], got


# -- a subtree made unreadable while watched (as an unprivileged user) -------------------------------------


def as_nobody(*args: str, **kwargs: object) -> subprocess.Popen[str]:
    require_nobody()
    return subprocess.Popen(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable,
                             *args], env=ENV, text=True, **kwargs)  # type: ignore[call-overload]


def wait_for_output(path: Path, predicate: Callable[[list[str]], bool], timeout: float = 30.0) -> list[str]:
    """Until the JSON Lines a watcher writes to ``path`` satisfy ``predicate``; AssertionError after
    ``timeout`` seconds. Only complete lines are looked at."""
    end = time.monotonic() + timeout
    while True:
        text = path.read_text()
        lines = text.splitlines()[: text.count("\n")]
        if predicate(lines):
            return lines
        if time.monotonic() > end:
            raise AssertionError(f"the output did not reach the expected state within {timeout} s: {lines[-3:]}")
        time.sleep(0.02)


def has(kind: str, path: Path) -> Callable[[list[str]], bool]:
    def check(lines: list[str]) -> bool:
        return any((r["kind"], r["path"]) == (kind, str(path)) for r in map(json.loads, lines) if "path" in r)
    return check


def test_subtree_made_unreadable_gives_an_error_record_and_watching_goes_on(public_tmp: Path) -> None:
    root = public_tmp / "w"
    (root / "s").mkdir(parents=True)
    (root / "ok").mkdir()
    os.chmod(root / "ok", 0o777)
    out = public_tmp / "out.jsonl"
    with open(out, "w") as stdout:
        proc = as_nobody("-m", "normalizer", "watch", str(root), stdout=stdout, stderr=subprocess.PIPE)
    try:
        wait_for_watches(proc.pid, 3)
        os.chmod(root / "s", 0o000)  # the watch on s stays; nothing below it can be watched or listed now
        (root / "s/newdir").mkdir()
        (root / "s/newdir/inner").write_text("i")
        wait_for_output(out, has("error", root / "s/newdir"))  # the watch on newdir was tried and refused
        (root / "ok/g").write_text("g")
        os.chmod(root / "s", 0o755)
        (root / "s/newdir/after").write_text("a")  # newdir was never watched: not reported
        (root / "s/f").write_text("f")  # s is still watched; queued now, so read before the stop
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    got = [(r["kind"], os.path.relpath(r["path"], root)) for r in recs]
    chmod = [("attrib", "s")] * 2  # the parent's event and s's own
    assert got == [*chmod, ("create", "s/newdir"), ("error", "s/newdir"), ("create", "ok/g"), ("modify", "ok/g"),
                   ("close_write", "ok/g"), *chmod, ("create", "s/f"), ("modify", "s/f"), ("close_write", "s/f")], got
    assert "permission denied" in recs[3]["message"]


# -- a full filesystem under the capture -------------------------------------------------------------------


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[tuple[Path, int | None]]:
    """A directory on a 64 KiB tmpfs, or (if the machine refuses the mount) a plain directory and a 64 KiB
    RLIMIT_FSIZE for the subprocess writing into it."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True)
    if res.returncode != 0:
        yield mnt, 64 * 1024
        return
    try:
        yield mnt, None
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def limit(fsize: int | None) -> object:
    def apply() -> None:
        if fsize is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    return apply


def fill(root: Path, proc: subprocess.Popen[str], count: int = 3000) -> None:
    for i in range(count):
        (root / f"file-{i:05d}").touch()
        if proc.poll() is not None:
            return
        if i % 100 == 99:
            time.sleep(0.01)


def test_capture_on_a_full_filesystem_is_a_clear_error_and_valid_to_its_last_complete_record(
        tree: Path, small_fs: tuple[Path, int | None]) -> None:
    """`fsnorm capture` (whose only job is the capture) stops with one clear line and exit 1; what it wrote
    is a valid capture up to its last complete line, and replays."""
    mnt, fsize = small_fs
    cap = mnt / "c.fsncap"
    proc = subprocess.Popen([sys.executable, "-m", "normalizer", "capture", str(tree / "w"), "-o", str(cap)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
                            preexec_fn=limit(fsize))  # type: ignore[arg-type]
    try:
        wait_for_watches(proc.pid, 3)
        fill(tree / "w/a", proc)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 1 and out == ""
    assert "Traceback" not in err
    assert err.strip().splitlines()[0] == (
        f"fsnorm: error: cannot write capture {cap}: "
        + ("No space left on device" if fsize is None else "File too large")
        + "; the capture is valid up to its last complete line")
    with CaptureReader(cap) as reader:
        items = list(reader)
    # Events, not items: read pacing (LiveSource.READ_PACING_NS) makes a storm's reads, so its items, fewer.
    assert sum(len(getattr(i, "events", ())) for i in items) > 100
    assert [i.message.split(" ")[0] for i in reader.issues] in (["truncated", "no"], ["no"])
    replayed = [rec_to_json(r) for r in replay(cap)]
    assert sum(json.loads(line)["kind"] == "create" for line in replayed) > 100


def test_watch_goes_on_when_the_capture_filesystem_fills_up(tree: Path, small_fs: tuple[Path, int | None]) -> None:
    mnt, fsize = small_fs
    script = textwrap.dedent(f"""
        import json, os, sys, time
        sys.path.insert(0, {str(REPO / "tests")!r})
        from live import drain
        from normalizer.backends.inotify import InotifySource
        src = InotifySource([{str(tree / "w")!r}], capture={str(mnt / "c.fsncap")!r})
        src.open()
        recs = []
        for i in range(1500):
            open({str(tree / "w/a")!r} + "/file-%05d" % i, "w").close()
            if i % 50 == 49:
                recs += drain(src, quiet=0.02)
        recs += drain(src)
        recs += src.close()
        print(json.dumps([[r.kind, os.fsdecode(r.path), r.message] for r in recs]))
    """)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=ENV, timeout=120,
                         preexec_fn=limit(fsize))  # type: ignore[arg-type]
    assert res.returncode == 0, res.stderr[-2000:]
    recs = json.loads(res.stdout)
    errors = [r for r in recs if r[0] == "error"]
    assert len(errors) == 1 and "capture" in errors[0][2]
    creates = [os.path.basename(p) for k, p, _ in recs if k == "create"]
    assert creates == [f"file-{i:05d}" for i in range(1500)], "every file reported, before and after the error"


# -- the inotify watch and instance limits -----------------------------------------------------------------


def _user_inotify(what: str) -> int:
    """This user's inotify instances (``"instances"``) or watches, from /proc (every process is root's here)."""
    total = 0
    for fd in Path("/proc").glob("[0-9]*/fd/*"):
        with contextlib.suppress(OSError):
            if os.readlink(fd) == "anon_inode:inotify":
                if what == "instances":
                    total += 1
                else:
                    info = Path(str(fd).replace("/fd/", "/fdinfo/"))
                    total += info.read_text().count("inotify wd:")
    return total


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_instance_limit_reached_is_a_typed_error_naming_the_sysctl(tree: Path) -> None:
    fds = _open_fds()
    with sysctl("fs.inotify.max_user_instances", _user_inotify("instances")):
        with pytest.raises(WatchLimitError) as err:
            normalizer.watch(tree / "w").open()
        res = subprocess.run([sys.executable, "-m", "normalizer", "watch", str(tree / "w")], capture_output=True,
                             text=True, timeout=30, env=ENV)
    assert err.value.sysctl == "fs.inotify.max_user_instances"
    assert "fs.inotify.max_user_instances" in str(err.value)
    assert _open_fds() == fds, "no fd leaked by the failed open"
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert res.stderr.startswith("fsnorm: error: inotify instance limit reached")
    with open_source(tree / "w") as src:  # restored: watching works again
        (tree / "w/a/f").touch()
        assert ("create", "w/a/f", ()) in brief(tree, drain(src))


def test_watch_limit_reached_at_the_root_is_a_typed_error_and_inside_the_tree_an_error_record(tree: Path) -> None:
    fds = _open_fds()
    for i in range(3):
        (tree / f"w/b/sub{i}").mkdir()
    with sysctl("fs.inotify.max_user_watches", _user_inotify("watches")), pytest.raises(WatchLimitError) as err:
        InotifySource([tree / "w"]).open()
    assert err.value.sysctl == "fs.inotify.max_user_watches" and "max_user_watches" in str(err.value)
    assert _open_fds() == fds
    # Room for exactly the root and a: b and its subdirectories are reported, the rest is watched.
    with sysctl("fs.inotify.max_user_watches", _user_inotify("watches") + 2):
        src = InotifySource([tree / "w"])
        first = src.open()
    try:
        assert [(r.kind, os.path.relpath(os.fsdecode(r.path), tree)) for r in first] == [("error", "w/b")]
        assert "fs.inotify.max_user_watches" in (first[0].message or "")
        (tree / "w/a/f").touch()
        recs = drain(src)
    finally:
        src.close()
    assert ("create", "w/a/f", ()) in brief(tree, recs)


# -- SIGTERM in the middle of a storm ----------------------------------------------------------------------


def storm(root: Path, seconds: float, *, threads: int = 4, noise: int = 2, gt: Path | None = None
          ) -> subprocess.Popen[str]:
    for d in dirs(root, 4):
        d.mkdir(exist_ok=True)
    extra = ["--gt", str(gt)] if gt else []
    return subprocess.Popen([sys.executable, "-m", "benchmarks.workloads", "storm", str(root), "--seconds",
                             str(seconds), "--threads", str(threads), "--noise", str(noise), "--announce", *extra],
                            stdout=subprocess.PIPE, text=True, cwd=REPO)


def test_sigterm_during_a_storm_flushes_pending_halves_and_closes_the_capture(tree: Path) -> None:
    root = tree / "w"
    for d in dirs(root, 4):
        d.mkdir()
    (root / "a/leaving").write_text("x")
    cap = tree / "storm.fsncap.gz"
    out = tree / "out.jsonl"
    # A 60 s window and relaxed order: the half of a move out of the tree stays pending until SIGTERM while the
    # storm's records flow. A queue big enough for the CLI (JSON to a file) to ride out the storm: an overflow
    # would end the pending half itself (flag "overflow"), which is not what this test is about.
    with open(out, "w") as stdout, sysctl("fs.inotify.max_queued_events", 1 << 20):
        watcher = subprocess.Popen([sys.executable, "-m", "normalizer", "watch", str(root), "--capture", str(cap),
                                    "--window", "60000", "--relaxed-order"], stdout=stdout, stderr=subprocess.PIPE,
                                   text=True, env=ENV)
        wait_for_watches(watcher.pid, 7)
    try:
        os.rename(root / "a/leaving", tree / "out/leaving")  # queued before any storm event
        work = storm(root, 3.0)
        assert work.stdout is not None and work.stdout.readline().strip() == "started"
        # Stop in the middle of the storm, once its records flow (relaxed order: the half holds none back).
        wait_for_output(out, lambda lines: sum('"kind":"rename"' in x for x in lines) >= 1000)
        assert work.poll() is None, "the storm was still running at SIGTERM"
        watcher.send_signal(signal.SIGTERM)
        _, err = watcher.communicate(timeout=30)
        truth = json.loads(work.communicate(timeout=30)[0])
    finally:
        watcher.kill()
    assert watcher.returncode == 0, err
    assert "Traceback" not in err and err.startswith("fsnorm: stopped:")
    printed = out.read_text().splitlines()
    recs = [record_from_json(line) for line in printed]
    leaving = [r for r in recs if r.kind == "rename" and r.src == bytes(root / "a/leaving")]
    assert [(r.dst, r.reason) for r in leaving] == [(None, "shutdown")]
    with CaptureReader(cap) as reader:
        list(reader)
    assert reader.ended_cleanly and reader.issues == []
    assert [rec_to_json(r) for r in replay(cap)] == printed
    ledger = Ledger(os.fsencode(root), 4)
    for line in printed:
        ledger.add(_rec(line))
    assert ledger.wrong == [] and ledger.duplicates == 0
    assert 1000 <= ledger.joined < sum(truth["renames"])  # stopped mid-storm; the rate is measured by make bench


def test_events_queued_before_sigterm_are_reported(tree: Path) -> None:
    out = tree / "out.jsonl"
    with open(out, "w") as stdout:
        watcher = subprocess.Popen([sys.executable, "-m", "normalizer", "watch", str(tree / "w")], stdout=stdout,
                                   stderr=subprocess.PIPE, text=True, env=ENV)
    names = [f"file-{i:05d}-" + "x" * 40 for i in range(5000)]  # 10,000 events: more than one read's worth
    try:
        wait_for_watches(watcher.pid, 3)
        stop_process(watcher)
        for name in names:
            (tree / "w/a" / name).touch()
        watcher.send_signal(signal.SIGTERM)
        watcher.send_signal(signal.SIGCONT)
        _, err = watcher.communicate(timeout=30)
    finally:
        watcher.kill()
    assert watcher.returncode == 0, err
    creates = [os.path.basename(json.loads(line)["path"]) for line in out.read_text().splitlines()
               if json.loads(line)["kind"] == "create"]
    assert creates == names


def _rec(line: str) -> Rec:
    model = record_from_json(line)
    if model.kind == "rename":
        return Rec("rename", model.src or b"", model.is_dir, model.t_ns, model.mask, model.cookie,
                   model.dst or b"", ((model.reason,) if model.reason else ()) + tuple(model.flags))
    return Rec(model.kind, model.path, model.is_dir, model.t_ns, model.mask, flags=tuple(model.flags))  # type: ignore[union-attr]


# -- a consumer that stops reading during a storm ----------------------------------------------------------


def test_consumer_pausing_during_a_storm_bounded_memory_overflow_record_and_recovery(tree: Path) -> None:
    root = tree / "w"
    for d in dirs(root, 4):
        d.mkdir()
    ledger = Ledger(os.fsencode(root), 4)
    # No reader thread: the consumer's pause is the kernel queue's (tests/test_live_reader.py: with one).
    with normalizer.watch(root, raw_records=True, read_buffer=0) as stream:
        work = storm(root, 4.0, threads=2, noise=1, gt=tree / "gt.json")
        assert work.stdout is not None and work.stdout.readline().strip() == "started"
        rss = [rss_kib()]
        end = time.monotonic() + 1.0
        for rec in stream.read(0.05):
            ledger.add(rec)
        while time.monotonic() < end:
            for rec in stream.read(0.05):
                ledger.add(rec)
        rss.append(rss_kib())
        # The consumer stops reading: events stay in the kernel queue until it is full (overflowed). Full: at
        # least 16 bytes an event (a nameless one) and, while the storm goes on, no byte more for 0.5 s (the
        # kernel drops what comes after the overflow event). The byte count alone said full at half the queue
        # with 32-byte events, and reading resumed before any overflow (make test, once).
        least = 16 * int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
        end = time.monotonic() + 60
        queued, since = stream.source._queued(), time.monotonic()
        while queued < least or time.monotonic() - since < 0.5:
            assert time.monotonic() < end and work.poll() is None, "the storm did not fill the queue"
            time.sleep(0.02)
            now = stream.source._queued()
            if now != queued:
                queued, since = now, time.monotonic()
        rss.append(rss_kib())
        before = ledger.joined
        while work.poll() is None:
            for rec in stream.read(0.05):
                ledger.add(rec)
            rss.append(rss_kib())
        for rec in drain(stream.source):
            ledger.add(rec)
        for rec in stream.close():
            ledger.add(to_rec(rec))
        work.communicate(timeout=30)
    report = ledger.account(*load_stamps(tree / "gt.json"))
    assert len(ledger.overflow_at) >= 1, "the pause overflowed the queue"
    assert ledger.joined > before, "joined renames again after the overflow"  # how fast: make bench (burst)
    assert report["unaccounted"] == 0 and report["wrong"] == 0 and report["duplicates"] == 0, report
    assert report["lost_in_overflow"] > 0 and report["joined"] + report["one_sided"] + report["lost_in_overflow"] \
        == report["renames"]
    assert max(rss) - rss[0] < 32 * 1024, f"RSS grew from {rss[0]} to {max(rss)} KiB"
    assert rss[2] - rss[1] < 1024, "not reading costs no memory"


def to_rec(rec: object) -> Rec:
    return rec if isinstance(rec, Rec) else _rec(record_to_json(rec))  # type: ignore[arg-type]


def test_stop_source_error_is_typed(tree: Path) -> None:
    src = open_source(tree / "w")
    src.close()
    with pytest.raises(SourceError, match="closed"):
        src.read(0)
