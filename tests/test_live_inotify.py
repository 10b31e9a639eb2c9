"""The live inotify source against the real kernel: real files, real renames, exact records."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from live import brief, drain, exchange, require_nobody, storm_check, sysctl

from benchmarks.workloads import dirs, expected_renames
from normalizer.backends._inotify_sys import InotifyFD
from normalizer.backends.inotify import InotifySource
from normalizer.capture.replay import replay
from normalizer.core import raw
from normalizer.errors import SourceError
from normalizer.formats.jsonl import rec_to_json

RENAMES = ("rename",)


def watch(tree: Path, **options: object) -> InotifySource:
    source = InotifySource([tree / "w"], **options)  # type: ignore[arg-type]
    assert source.open() == []
    return source


def test_rename_within_and_across_directories(tree: Path) -> None:
    (tree / "w/a/x").write_text("1")
    # A second, raw inotify fd sees the same renames: the kernel's cookies, to compare the records' with.
    with InotifyFD() as ino, watch(tree) as src:
        for d in ("w/a", "w/b"):
            ino.add_watch(tree / d, raw.IN_MOVE)
        os.rename(tree / "w/a/x", tree / "w/a/y")
        os.rename(tree / "w/a/y", tree / "w/b/z")
        recs = drain(src)
        halves = ino.read_events()
    assert brief(tree, recs) == [("rename", "w/a/x", "w/a/y", ()), ("rename", "w/a/y", "w/b/z", ())]
    assert [(mask, name) for _, mask, _, name in halves] == [
        (raw.IN_MOVED_FROM, b"x"), (raw.IN_MOVED_TO, b"y"), (raw.IN_MOVED_FROM, b"y"), (raw.IN_MOVED_TO, b"z")]
    kernel = [cookie for _, _, cookie, _ in halves]
    assert kernel[0] == kernel[1] and kernel[2] == kernel[3] and kernel[0] != kernel[2]
    assert [r.cookie for r in recs] == [kernel[0], kernel[2]]
    assert [r.mask for r in recs] == [raw.IN_MOVED_FROM | raw.IN_MOVED_TO] * 2


def test_move_out_and_move_in_are_one_sided(tree: Path) -> None:
    (tree / "w/a/x").write_text("1")
    (tree / "out/y").write_text("2")
    with watch(tree, window_ns=20_000_000) as src:
        os.rename(tree / "w/a/x", tree / "out/x")
        os.rename(tree / "out/y", tree / "w/b/y")
        recs = drain(src)
    assert brief(tree, recs) == [("rename", "w/a/x", "", ("timeout",)), ("rename", "", "w/b/y", ("unwatched",))]


def test_directory_rename_then_activity_under_the_new_path(tree: Path) -> None:
    (tree / "w/a/d/e").mkdir(parents=True)
    with watch(tree) as src:
        os.rename(tree / "w/a/d", tree / "w/b/d2")
        (tree / "w/b/d2/e/f").write_text("x")
        recs = drain(src)
    assert brief(tree, recs, kinds=("rename", "create", "move_self")) == [
        ("rename", "w/a/d", "w/b/d2", ()),
        ("move_self", "w/b/d2", ()),
        ("create", "w/b/d2/e/f", ()),
    ]
    assert recs[0].is_dir


def test_directory_moved_out_then_activity_in_it_gives_no_records(tree: Path) -> None:
    (tree / "w/a/d/e").mkdir(parents=True)
    with watch(tree) as src:
        os.rename(tree / "w/a/d", tree / "out/d")
        (tree / "out/d/e/f").write_text("x")
        (tree / "out/d/g").mkdir()
        recs = drain(src)
        assert len(src.normalizer.table) == 3  # w, w/a, w/b: the moved-out watches are gone
    assert brief(tree, recs) == [("rename", "w/a/d", "", ("unwatched",))]


def test_directory_moved_in_with_content_is_watched_and_its_content_synthesized(tree: Path) -> None:
    (tree / "out/pkg/src").mkdir(parents=True)
    (tree / "out/pkg/README").write_text("r")
    (tree / "out/pkg/src/main.py").write_text("m")
    with watch(tree) as src:
        os.rename(tree / "out/pkg", tree / "w/b/pkg")
        recs = drain(src)
        (tree / "w/b/pkg/src/new.py").write_text("n")
        recs += drain(src)
    assert brief(tree, recs, kinds=("rename", "create")) == [
        ("rename", "", "w/b/pkg", ("unwatched",)),
        ("create", "w/b/pkg/README", ("synthesized",)),
        ("create", "w/b/pkg/src", ("synthesized",)),
        ("create", "w/b/pkg/src/main.py", ("synthesized",)),
        ("create", "w/b/pkg/src/new.py", ()),
    ]


def test_created_directory_is_watched_and_nothing_is_reported_twice(tree: Path) -> None:
    with watch(tree) as src:
        d = tree / "w/a/new"
        d.mkdir()
        for i in range(50):  # created while the source is not reading: found by the scan, not twice
            (d / f"f{i}").write_text("x")
        recs = drain(src)
        (d / "later").write_text("y")
        recs += drain(src)
    creates = [r for r in brief(tree, recs) if r[0] == "create"]
    paths = [c[1] for c in creates]
    assert paths[0] == "w/a/new"
    assert sorted(paths[1:-1]) == sorted(f"w/a/new/f{i}" for i in range(50))
    assert paths[-1] == "w/a/new/later"
    assert len(paths) == len(set(paths))


def test_rename_onto_an_existing_file(tree: Path) -> None:
    (tree / "w/a/new").write_text("new")
    (tree / "w/b/old").write_text("old")
    with watch(tree) as src:
        os.rename(tree / "w/a/new", tree / "w/b/old")
        recs = drain(src)
    assert brief(tree, recs) == [("rename", "w/a/new", "w/b/old", ())]


def test_a_chain_of_renames_is_a_chain_of_records(tree: Path) -> None:
    (tree / "w/a/a").write_text("1")
    with watch(tree) as src:
        os.rename(tree / "w/a/a", tree / "w/a/b")
        os.rename(tree / "w/a/b", tree / "w/b/c")
        os.rename(tree / "w/b/c", tree / "w/a/d")
        recs = drain(src)
    assert brief(tree, recs) == [("rename", "w/a/a", "w/a/b", ()), ("rename", "w/a/b", "w/b/c", ()),
                                 ("rename", "w/b/c", "w/a/d", ())]


def test_rename_exchange_is_two_joined_renames(tree: Path) -> None:
    (tree / "w/a/x").write_text("1")
    (tree / "w/b/y").write_text("2")
    with watch(tree) as src:
        exchange(tree / "w/a/x", tree / "w/b/y")
        recs = drain(src)
    assert brief(tree, recs) == [("rename", "w/a/x", "w/b/y", ()), ("rename", "w/b/y", "w/a/x", ())]
    assert recs[0].cookie != recs[1].cookie


def test_deleted_subdirectory_ends_its_watch_with_a_record(tree: Path) -> None:
    (tree / "w/a/d").mkdir()
    with watch(tree) as src:
        (tree / "w/a/d").rmdir()
        recs = drain(src)
        assert len(src.normalizer.table) == 3
    assert brief(tree, recs) == [("delete_self", "w/a/d", ()), ("watch_end", "w/a/d", ()),
                                 ("delete", "w/a/d", ())]


def test_vanished_root_ends_cleanly_with_records(tree: Path) -> None:
    with watch(tree) as src:
        for d in ("w/a", "w/b", "w"):
            (tree / d).rmdir()
        recs = drain(src)
        assert len(src.normalizer.table) == 0
    kinds = [r[0] for r in brief(tree, recs)]
    assert kinds.count("watch_end") == 3 and kinds[-1] == "watch_end"


def test_root_moved_away_ends_its_watches(tree: Path) -> None:
    with watch(tree) as src:
        os.rename(tree / "w", tree / "out/w")
        (tree / "out/w/a/late").write_text("x")
        recs = drain(src)
        assert len(src.normalizer.table) == 0
    assert brief(tree, recs) == [("move_self", "w", ()), ("watch_end", "w", ())]


def test_missing_root_and_file_root_are_clear_errors(tree: Path) -> None:
    with pytest.raises(SourceError, match="no such directory"):
        InotifySource([tree / "nope"]).open()
    (tree / "file").write_text("x")
    with InotifySource([tree / "file"]) as src:  # a file root (tests/test_live_files.py)
        assert src.roots == [bytes(tree)] and src.watched_roots == [bytes(tree / "file")]
    with pytest.raises(SourceError, match=r"(?i)not a directory"):  # a path through a file
        InotifySource([tree / "file" / "sub"]).open()


def test_unsearchable_root_says_permission_denied(public_tmp: Path) -> None:
    require_nobody()
    (public_tmp / "locked/w").mkdir(parents=True)
    os.chmod(public_tmp / "locked", 0o700)
    script = (f"from normalizer.backends.inotify import InotifySource\n"
              f"InotifySource([{str(public_tmp / 'locked/w')!r}]).open()")
    res = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable, "-c",
                          script], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)})
    assert "permission denied" in res.stderr and "SourceError" in res.stderr


def test_watch_limit_reached_is_an_error_record_and_watching_goes_on(tree: Path) -> None:
    with watch(tree) as src:
        # The limit is per user, across all instances: set it to what this user holds now, plus one.
        with sysctl("fs.inotify.max_user_watches", _user_watches() + 1):
            (tree / "w/a/one").mkdir()
            (tree / "w/a/two").mkdir()
            recs = drain(src)
        assert len(src.normalizer.table) == 4  # w, a, b and one
        (tree / "w/a/one/f").write_text("x")
        recs += drain(src)
    errors = [r for r in recs if r.kind == "error"]
    assert len(errors) == 1 and "fs.inotify.max_user_watches" in (errors[0].message or "")
    assert errors[0].path == bytes(tree / "w/a/two")
    assert ("create", "w/a/one/f", ()) in brief(tree, recs)


def _user_watches() -> int:
    """inotify watches held by this user now (every 'inotify wd:' line in /proc/*/fdinfo)."""
    total = 0
    for info in Path("/proc").glob("[0-9]*/fdinfo/*"):
        try:
            total += info.read_text().count("inotify wd:")
        except OSError:
            continue
    return total


def test_permission_denied_subdirectory_is_skipped_with_a_record(public_tmp: Path) -> None:
    """As an unprivileged user: a subdirectory it cannot read is reported, the rest is watched."""
    require_nobody()
    root = public_tmp / "w"
    (root / "ok").mkdir(parents=True)
    (root / "secret").mkdir()
    os.chmod(root / "secret", 0o700)
    for p in (root, root / "ok"):
        os.chmod(p, 0o777)
    script = textwrap.dedent(f"""
        import os, sys, time
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from live import drain
        from normalizer.backends.inotify import InotifySource
        src = InotifySource([{str(root)!r}])
        for r in src.open():
            print(r.kind, os.fsdecode(r.path), r.message)
        open({str(root / "ok" / "f")!r}, "w").close()
        for r in drain(src):
            print(r.kind, os.fsdecode(r.path))
        src.close()
    """)
    res = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable, "-c",
                          script], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)})
    assert res.returncode == 0, res.stderr  # require_nobody() above checked that setpriv works here
    lines = res.stdout.splitlines()
    assert lines[0].startswith(f"error {root / 'secret'} permission denied")
    assert f"create {root / 'ok' / 'f'}" in lines


def test_capture_of_a_live_session_replays_to_the_same_records(tree: Path) -> None:
    (tree / "w/a/d").mkdir()
    (tree / "out/pkg").mkdir()
    (tree / "out/pkg/file").write_text("x")
    cap = tree / "session.fsncap"
    with watch(tree, capture=cap) as src:
        os.rename(tree / "w/a/d", tree / "w/b/d")
        (tree / "w/b/d/f").write_text("x")
        os.rename(tree / "out/pkg", tree / "w/a/pkg")
        os.rename(tree / "w/b/d", tree / "out/d")
        (tree / "w/a/new").mkdir()
        (tree / "w/a/new/g").write_text("y")
        live = drain(src)
        live += src.close()
    replayed = list(replay(cap))
    assert [rec_to_json(r) for r in replayed] == [rec_to_json(r) for r in live]
    kinds = {r.kind for r in live}
    assert {"rename", "create", "move_self"} <= kinds
    assert any("synthesized" in r.flags for r in live) and any(r.dst == b"" for r in live if r.kind == "rename")


def _run_workload(root: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "benchmarks.workloads", *args], stdout=subprocess.PIPE,
                            text=True, cwd=Path(__file__).parent.parent)


def test_storm_every_rename_joined_exactly_once(tree: Path) -> None:
    """4 threads renaming across 4 directories for 2 s while 2 threads create, write and delete."""
    storm_check(lambda: watch(tree), tree / "w", "fs.inotify.max_queued_events")


def test_forced_overflow_gives_an_overflow_record_and_no_wrong_join(tree: Path) -> None:
    """Queue limit 1024 at init, a burst of 4096 renames without reading: an overflow record, lone halves
    flagged, no wrong join, no crash. Without rescan, so that what follows the overflow is only what the kernel
    queued (tests/test_rescan.py covers the recovery, on by default)."""
    root = tree / "w"
    for d in dirs(root, 4):
        d.mkdir()
    with sysctl("fs.inotify.max_queued_events", 1024):  # no reader thread: nothing reads during the burst
        src = watch(tree, rescan=False, read_buffer=0)  # (tests/test_live_reader.py: with one)
    try:
        proc = _run_workload(root, "burst", str(root), "--threads", "4", "--renames", "1024")
        out, _ = proc.communicate(timeout=120)
        recs = drain(src)
        os.mknod(root / "d0/after")  # one CREATE, no CLOSE_WRITE: the source goes on after the overflow
        recs += drain(src)
    finally:
        recs += src.close()
    truth = json.loads(out)
    expected = expected_renames(root, truth["renames"], truth["dirs"])
    assert sum(truth["renames"]) == 4096
    # Exactly one overflow, and then only the create made after it: the queue stayed full (nothing was read
    # during the burst), so nothing the burst did after the overflow reached the queue.
    assert [r.kind for r in recs].count("overflow") == 1
    cut = [r.kind for r in recs].index("overflow")
    assert brief(tree, recs[cut + 1:]) == [("create", "w/d0/after", ())]
    before = recs[:cut]
    renames = [r for r in before if r.kind == "rename"]
    joined = [(os.fsdecode(r.path), os.fsdecode(r.dst)) for r in renames if r.path and r.dst]
    assert set(joined) <= expected and len(joined) == len(set(joined)), "nothing wrong, nothing twice"
    assert all(r.flags == () for r in renames if r.path and r.dst)
    # A lone half is a first half whose partner the overflow dropped: at most one per renaming thread, and it
    # says so. A second half without its first cannot be queued (the queue never had room again).
    lone = [r for r in renames if not (r.path and r.dst)]
    assert all(r.path and not r.dst and r.flags == ("overflow",) for r in lone), lone
    assert len(lone) <= 4
    assert {os.fsdecode(r.path) for r in lone} <= {src for src, _ in expected} - {src for src, _ in joined}
    # The queue held exactly 1024 events before the overflow record (inotify counts the overflow beyond the
    # limit): two per joined rename, one per lone half, one per other record (each renaming thread's
    # create and close_write of its first file).
    others = [r for r in before if r.kind != "rename"]
    assert {r.kind for r in others} <= {"create", "close_write"} and len(others) <= 8
    assert 2 * len(joined) + len(lone) + len(others) == 1024


def test_rescan_after_overflow_reports_exactly_the_differences(tree: Path) -> None:
    w = tree / "w"
    (w / "a/gone").write_text("g")
    (w / "a/mod").write_text("m")
    (w / "a/keep").write_text("k")
    os.utime(w / "a/keep", (1_000_000, 1_000_000))  # old: not reported as possibly modified
    (w / "b/old/deep").mkdir(parents=True)
    (w / "b/old/deep/f").write_text("f")
    with sysctl("fs.inotify.max_queued_events", 64):
        src = InotifySource([w], rescan=True, read_buffer=0)  # no reader thread: nothing reads
        src.open()
    try:
        for i in range(40):  # churn that fills the queue: 3 events each
            (w / f"a/c{i}").write_text("")
            (w / f"a/c{i}").unlink()
        (w / "a/gone").unlink()
        (w / "a/new").write_text("n")
        (w / "b/newdir/inner").mkdir(parents=True)
        shutil.rmtree(w / "b/old")
        (w / "a/mod").write_text("changed")
        recs = drain(src)
        (w / "b/newdir/inner/late").write_text("l")  # the rescan watched the new directories
        recs += drain(src)
    finally:
        src.close()
    got = brief(tree, recs)
    cut = [r[0] for r in got].index("overflow")
    before, after = got[:cut], got[cut + 1:]
    # Churn files whose create was read before the overflow but whose delete was lost.
    leftovers = set()
    for kind, path, *_ in before:
        if isinstance(path, str) and path.startswith("w/a/c"):
            (leftovers.add if kind == "create" else leftovers.discard if kind == "delete" else id)(path)
    syn = ("synthesized",)
    deletes = sorted({"w/b/old/deep/f", "w/b/old/deep", "w/b/old", "w/a/gone"} | leftovers, reverse=True)
    expected = ([("delete", p, syn) for p in deletes]
                + [("create", p, syn) for p in ("w/a/new", "w/b/newdir", "w/b/newdir/inner")]
                + [("modify", "w/a/mod", syn)])
    assert [r for r in after if r[2] == syn] == expected
    assert ("create", "w/b/newdir/inner/late", ()) in after  # the rescan watched the new directories


def test_event_mask_limits_the_records_but_not_the_table_upkeep(tree: Path) -> None:
    from normalizer.backends.inotify import mask_from_kinds

    with watch(tree, mask=mask_from_kinds("rename")) as src:
        (tree / "w/a/d").mkdir()  # not reported (create not asked for), but watched
        recs = drain(src)
        (tree / "w/a/d/f").write_text("x")
        os.rename(tree / "w/a/d/f", tree / "w/b/g")
        recs += drain(src)
    assert brief(tree, recs) == [("rename", "w/a/d/f", "w/b/g", ())]
    with pytest.raises(ValueError, match="unknown event kind 'bogus'"):
        mask_from_kinds("create,bogus")


def test_include_and_exclude_filters(tree: Path) -> None:
    (tree / "w/cache").mkdir()
    with watch(tree, include=["*.txt"], exclude=["cache", "*.tmp"]) as src:
        (tree / "w/a/keep.txt").write_text("x")
        (tree / "w/a/skip.log").write_text("x")
        (tree / "w/a/x.tmp").write_text("x")
        (tree / "w/cache/inner.txt").write_text("x")  # not watched at all
        os.rename(tree / "w/a/x.tmp", tree / "w/a/x.txt")  # passes: one side matches
        recs = drain(src)
        assert src.normalizer.table.key(bytes(tree / "w/cache")) is None
    assert brief(tree, recs, kinds=("create", "rename")) == [("create", "w/a/keep.txt", ()),
                                                              ("rename", "w/a/x.tmp", "w/a/x.txt", ())]
