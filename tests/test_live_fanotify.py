"""The live fanotify source against the real kernel: real files, real renames, exact records.

The scenario tests run with both mark modes (a filesystem mark filtered to the tree, and inode marks on every
directory); most need root (filesystem marks, open_by_handle_at, sysctl) and skip otherwise. The unprivileged
inode-mark path runs as user ``nobody`` through ``setpriv``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from live import (
    brief,
    drain,
    exchange,
    real_tree,
    rebuild,
    require_nobody,
    storm_check,
    sysctl,
    tree_diff,
    wait_for_marks,
)

from benchmarks.workloads import dirs, expected_renames
from normalizer.backends import _fanotify_sys as fs
from normalizer.backends.fanotify import FanotifySource
from normalizer.backends.inotify import InotifySource
from normalizer.capture.replay import replay
from normalizer.core import raw
from normalizer.errors import SourceError
from normalizer.formats.jsonl import rec_to_json
from normalizer.records import Rec

IS_ROOT = os.geteuid() == 0
KERNEL = tuple(int(x) for x in re.findall(r"\d+", os.uname().release)[:2])
#: FAN_RENAME and FAN_REPORT_TARGET_FID, which the fanotify source needs, came in Linux 5.17.
pytestmark = pytest.mark.skipif(KERNEL < (5, 17), reason=f"needs Linux 5.17+ (this is {os.uname().release})")
needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root (filesystem marks, open_by_handle_at, sysctl)")
MODES = [pytest.param("filesystem", marks=needs_root), "inode"]
REPO = Path(__file__).resolve().parent.parent


def watch(tree: Path, mode: str, **options: object) -> FanotifySource:
    source = FanotifySource([tree / "w"], mark_mode=mode, **options)  # type: ignore[arg-type]
    assert source.open() == []
    assert source.mark_mode == mode
    return source


def touch(path: Path) -> None:
    """Create a file with one CREATE event (mknod: no open, so no CLOSE_WRITE to merge with)."""
    os.mknod(path)


def oid(path: Path) -> str:
    """The object_id fsnorm gives the file at ``path``: the hex of its fid."""
    return raw.fid_pack(*fs.path_handle_key(path)).hex()


# --- the scenarios -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_rename_within_and_across_directories(tree: Path, mode: str) -> None:
    touch(tree / "w/a/x")
    handle = oid(tree / "w/a/x")
    with watch(tree, mode) as src:
        os.rename(tree / "w/a/x", tree / "w/a/y")
        os.rename(tree / "w/a/y", tree / "w/b/z")
        recs = drain(src)
    assert brief(tree, recs) == [("rename", "w/a/x", "w/a/y", ()), ("rename", "w/a/y", "w/b/z", ())]
    for r in recs:
        assert (r.source, r.pid, r.object_id, r.cookie, r.mask, r.is_dir) == ("fanotify", os.getpid(), handle,
                                                                             None, fs.FAN_RENAME, False)


@pytest.mark.parametrize("mode", MODES)
def test_move_out_and_move_in_are_one_sided_at_once(tree: Path, mode: str) -> None:
    touch(tree / "w/a/x")
    touch(tree / "out/y")
    # No window involved: the kernel says it all. With a 60 s window and max_wait, a half that waited would
    # still be pending when drain() gives up (10 s), and its record would be missing.
    with watch(tree, mode, window_ns=60_000_000_000, max_wait_ns=60_000_000_000) as src:
        os.rename(tree / "w/a/x", tree / "out/x")
        os.rename(tree / "out/y", tree / "w/b/y")
        recs = drain(src)
        assert src.normalizer.matcher.pending == 0
    assert brief(tree, recs) == [("rename", "w/a/x", "", ("unwatched",)), ("rename", "", "w/b/y", ("unwatched",))]


@pytest.mark.parametrize("mode", MODES)
def test_directory_rename_then_activity_under_the_new_path(tree: Path, mode: str) -> None:
    (tree / "w/a/d/e").mkdir(parents=True)
    with watch(tree, mode) as src:
        os.rename(tree / "w/a/d", tree / "w/b/d2")
        touch(tree / "w/b/d2/e/f")
        recs = drain(src)
    assert brief(tree, recs) == [
        ("rename", "w/a/d", "w/b/d2", ()),
        ("move_self", "w/b/d2", ()),
        ("create", "w/b/d2/e/f", ()),
    ]
    assert recs[0].is_dir and recs[0].object_id == recs[1].object_id == oid(tree / "w/b/d2")


@pytest.mark.parametrize("mode", MODES)
def test_directory_moved_out_then_activity_in_it_gives_no_records(tree: Path, mode: str) -> None:
    (tree / "w/a/d/e").mkdir(parents=True)
    with watch(tree, mode) as src:
        os.rename(tree / "w/a/d", tree / "out/d")
        touch(tree / "out/d/e/f")
        (tree / "out/d/g").mkdir()
        recs = drain(src)
        assert src.normalizer.cache.paths() == [bytes(tree / p) for p in ("w", "w/a", "w/b")]
        dropped = src.normalizer.stats["dropped_outside"]
        touch(tree / "out/d/e/h")
        recs += drain(src)
        if mode == "inode":  # (a filesystem mark sees the whole filesystem: other processes' events too)
            # The marks of the moved-out directories were removed (as root): the kernel reports nothing there.
            assert src.normalizer.stats["dropped_outside"] == dropped
    assert brief(tree, recs) == [("rename", "w/a/d", "", ("unwatched",))]


@pytest.mark.parametrize("mode", MODES)
def test_directory_moved_in_with_content_is_watched_and_its_content_synthesized(tree: Path, mode: str) -> None:
    (tree / "out/pkg/src").mkdir(parents=True)
    (tree / "out/pkg/README").write_text("r")
    (tree / "out/pkg/src/main.py").write_text("m")
    with watch(tree, mode) as src:
        os.rename(tree / "out/pkg", tree / "w/b/pkg")
        recs = drain(src)
        touch(tree / "w/b/pkg/src/new.py")
        recs += drain(src)
    assert brief(tree, recs) == [
        ("rename", "", "w/b/pkg", ("unwatched",)),
        ("create", "w/b/pkg/README", ("synthesized",)),
        ("create", "w/b/pkg/src", ("synthesized",)),
        ("create", "w/b/pkg/src/main.py", ("synthesized",)),
        ("create", "w/b/pkg/src/new.py", ()),
    ]


@pytest.mark.parametrize("mode", MODES)
def test_directory_moved_in_over_an_empty_one_ends_the_replaced_one_by_its_handle(tree: Path, mode: str) -> None:
    """The directory moved in (a handle the cache never saw) displaces the empty one it replaces instead of
    forgetting it: the replaced one's own events (its merged ATTRIB|DELETE_SELF) end it at its path, as
    inotify's delete_self + watch_end do. Forgotten, its handle was unknown: inode marks gave them as
    ``unresolved`` records with a bare name (core/fanotify.py, ``_follow``)."""
    (tree / "w/b/e").mkdir()
    (tree / "out/pkg/src").mkdir(parents=True)
    (tree / "out/pkg/README").write_text("r")
    with watch(tree, mode) as src:
        os.rename(tree / "out/pkg", tree / "w/b/e")
        recs = drain(src)
        touch(tree / "w/b/e/src/new.py")
        recs += drain(src)
        assert sorted(src.normalizer.cache.paths()) == sorted(
            os.fsencode(tree / p) for p in ("w", "w/a", "w/b", "w/b/e", "w/b/e/src"))
    assert [r for r in recs if "unresolved" in r.flags] == []
    assert [b for b in brief(tree, recs) if b[0] != "attrib"] == [
        ("rename", "", "w/b/e", ("unwatched",)),
        ("delete_self", "w/b/e", ("merged",)),
        ("watch_end", "w/b/e", ()),
        ("create", "w/b/e/README", ("synthesized",)),
        ("create", "w/b/e/src", ("synthesized",)),
        ("create", "w/b/e/src/new.py", ()),
    ]

@pytest.mark.parametrize("mode", MODES)
def test_created_directory_is_watched_and_nothing_is_reported_twice(tree: Path, mode: str) -> None:
    with watch(tree, mode) as src:
        d = tree / "w/a/new"
        d.mkdir()
        for i in range(50):  # created while the source is not reading
            touch(d / f"f{i}")
        recs = drain(src)
        touch(d / "later")
        recs += drain(src)
    creates = [r for r in brief(tree, recs) if r[0] == "create"]
    paths = [c[1] for c in creates]
    assert paths[0] == "w/a/new"
    assert sorted(paths[1:-1]) == sorted(f"w/a/new/f{i}" for i in range(50))
    assert paths[-1] == "w/a/new/later"
    assert len(paths) == len(set(paths))
    # Inode marks find the 50 by the scan after marking; a filesystem mark sees them created.
    expected_flags = {("synthesized",)} if mode == "inode" else {()}
    assert {c[2] for c in creates[1:-1]} == expected_flags


@pytest.mark.parametrize("mode", MODES)
def test_rename_onto_an_existing_file(tree: Path, mode: str) -> None:
    (tree / "w/a/new").write_text("new")
    (tree / "w/b/old").write_text("old")
    with watch(tree, mode) as src:
        os.rename(tree / "w/a/new", tree / "w/b/old")
        recs = drain(src)
    assert brief(tree, recs) == [("rename", "w/a/new", "w/b/old", ())]


@pytest.mark.parametrize("mode", MODES)
def test_a_chain_of_renames_is_a_chain_of_records(tree: Path, mode: str) -> None:
    touch(tree / "w/a/a")
    with watch(tree, mode) as src:
        os.rename(tree / "w/a/a", tree / "w/a/b")
        os.rename(tree / "w/a/b", tree / "w/b/c")
        os.rename(tree / "w/b/c", tree / "w/a/d")
        recs = drain(src)
    assert brief(tree, recs) == [("rename", "w/a/a", "w/a/b", ()), ("rename", "w/a/b", "w/b/c", ()),
                                 ("rename", "w/b/c", "w/a/d", ())]


@pytest.mark.parametrize("mode", MODES)
def test_rename_exchange_is_two_renames(tree: Path, mode: str) -> None:
    touch(tree / "w/a/x")
    touch(tree / "w/b/y")
    ox, oy = oid(tree / "w/a/x"), oid(tree / "w/b/y")
    with watch(tree, mode) as src:
        exchange(tree / "w/a/x", tree / "w/b/y")
        recs = drain(src)
    assert brief(tree, recs) == [("rename", "w/a/x", "w/b/y", ()), ("rename", "w/b/y", "w/a/x", ())]
    assert [r.object_id for r in recs] == [ox, oy]


@pytest.mark.parametrize("mode", MODES)
def test_deleted_subdirectory_ends_its_watch_with_a_record(tree: Path, mode: str) -> None:
    (tree / "w/a/d").mkdir()
    with watch(tree, mode) as src:
        (tree / "w/a/d").rmdir()
        recs = drain(src)
        assert len(src.normalizer.cache) == 3
    assert brief(tree, recs) == [("delete_self", "w/a/d", ()), ("watch_end", "w/a/d", ()),
                                 ("delete", "w/a/d", ())]


@pytest.mark.parametrize("mode", MODES)
def test_vanished_root_and_root_moved_away(tree: Path, mode: str) -> None:
    with watch(tree, mode) as src:
        os.rename(tree / "w", tree / "out/w")
        touch(tree / "out/w/a/late")
        recs = drain(src)
        assert len(src.normalizer.cache) == 0
    assert brief(tree, recs) == [("move_self", "w", ()), ("watch_end", "w", ())]
    (tree / "w/a").mkdir(parents=True)
    with watch(tree, mode) as src:
        for d in ("w/a", "w"):
            (tree / d).rmdir()
        recs = drain(src)
        assert len(src.normalizer.cache) == 0
    assert brief(tree, recs) == [("delete_self", "w/a", ()), ("watch_end", "w/a", ()), ("delete", "w/a", ()),
                                 ("delete_self", "w", ()), ("watch_end", "w", ())]


@pytest.mark.parametrize("mode", MODES)
def test_merge_create_move_away_move_back_delete(tree: Path, mode: str) -> None:
    """Four operations on one name with no read in between: the kernel merges create and delete into one
    event (at the create's place); the two renames stay apart. Records say so. No reader thread
    (``read_buffer=0``): the kernel merges only while nothing reads."""
    with watch(tree, mode, read_buffer=0) as src:
        touch(tree / "w/a/m")
        os.rename(tree / "w/a/m", tree / "out/m")
        os.rename(tree / "out/m", tree / "w/a/m")
        (tree / "w/a/m").unlink()
        recs = drain(src)
    # The delete, merged into the create's event, happened after the file came back: it comes last (it came
    # second before, and a consumer kept an m that is gone).
    assert brief(tree, recs) == [
        ("create", "w/a/m", ("merged",)),
        ("rename", "w/a/m", "", ("unwatched",)),
        ("rename", "", "w/a/m", ("unwatched",)),
        ("delete", "w/a/m", ("merged",)),
    ]
    assert recs[0].mask == recs[3].mask == fs.FAN_CREATE | fs.FAN_DELETE
    assert len({r.object_id for r in recs}) == 1


def _append(path: Path) -> None:
    with open(path, "a") as f:
        f.write("x")


#: Bursts on one name, unread, in which the kernel merges a DELETE into an earlier event of the same name and
#: object (docs/fanotify.md, "Merged events"): each step is (operation, *paths below w/).
MERGED_DELETES: dict[str, list[tuple[str, ...]]] = {
    "write-mv-mv-rm": [("write", "a/f"), ("mv", "a/f", "a/g"), ("mv", "a/g", "a/f"), ("rm", "a/f")],
    "write-mv-rm": [("write", "a/f"), ("mv", "a/f", "a/g"), ("rm", "a/g")],
    "write-mv-touch-rm": [("write", "a/f"), ("mv", "a/f", "a/g"), ("touch", "a/f"), ("rm", "a/g")],
    "write-out-in-rm": [("write", "a/f"), ("mv", "a/f", "../out/f"), ("mv", "../out/f", "a/f"), ("rm", "a/f")],
    "two-files-one-name": [("write", "a/f"), ("mv", "a/f", "a/g"), ("touch", "a/f"), ("rm", "a/f"),
                           ("mv", "a/g", "a/f"), ("rm", "a/f")],
    "across-and-back": [("write", "a/f"), ("mv", "a/f", "b/f"), ("write", "b/f"), ("mv", "b/f", "a/f"),
                        ("rm", "a/f")],
    "then-dir-renamed": [("write", "a/f"), ("mv", "a/f", "a/g"), ("mv", "a/g", "a/f"), ("mv", "a", "c"),
                         ("rm", "c/f")],
    "dir-with-content": [("mkdir", "a/d"), ("touch", "a/d/g"), ("mv", "a/d/g", "a/d/h"), ("rm", "a/d/h"),
                         ("rmdir", "a/d")],
    "dir-renamed-and-back": [("mkdir", "a/d"), ("touch", "a/d/g"), ("mv", "a/d", "b/d"), ("mv", "b/d", "a/d"),
                             ("rm", "a/d/g"), ("rmdir", "a/d")],
}


def _step(w: Path, op: str, *paths: str) -> None:
    first = w / paths[0]
    if op == "write":
        _append(first)
    elif op == "touch":
        touch(first)
    elif op == "mkdir":
        first.mkdir()
    elif op == "mv":
        os.rename(first, w / paths[1])
    elif op == "rm":
        first.unlink()
    elif op == "rmdir":
        first.rmdir()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list(MERGED_DELETES))
def test_records_of_merged_deletes_rebuild_the_real_tree(tree: Path, mode: str, name: str) -> None:
    """The reader waits while one process works on one name (the kernel merges only unread events, and only
    those of one pid): the tree rebuilt from the records is the real one, and every record was true where it
    stands (tests/oracle.py: a rename's src exists, a delete's entry exists, nothing is created twice). Before
    the merged delete was placed after the later events of its object, ``write-mv-mv-rm`` gave ``delete f``
    before ``f -> g``, ``g -> f`` and a phantom ``f``."""
    from oracle import Rebuilder, walk

    w = tree / "w"
    (w / "a/f").write_text("0")
    initial = walk(w)
    with watch(tree, mode, read_buffer=0) as src:
        for step in MERGED_DELETES[name]:
            _step(w, *step)
        recs = drain(src)
    rebuilder = Rebuilder(w, initial)
    rebuilder.feed(recs)
    reading = rebuilder.readings[0]
    shown = [(r.kind, r.path, r.dst, r.flags) for r in recs]
    assert reading.problems == [], shown
    assert reading.tree == walk(w), shown
    if name not in ("write-mv-rm", "write-mv-touch-rm"):  # there no earlier event has the deleted name
        assert any(r.kind == "delete" and "merged" in r.flags for r in recs), shown


@pytest.mark.parametrize("mode", MODES)
def test_create_write_close_merge_into_flagged_records(tree: Path, mode: str) -> None:
    with watch(tree, mode, read_buffer=0) as src:  # no reader thread: the kernel merges while nothing reads
        (tree / "w/a/f").write_text("data")
        recs = drain(src)
    assert brief(tree, recs) == [("create", "w/a/f", ("merged",)), ("modify", "w/a/f", ("merged",)),
                                 ("close_write", "w/a/f", ("merged",))]


@pytest.mark.parametrize("mode", MODES)
def test_moved_from_and_moved_to_subscribed_too_give_no_duplicates(tree: Path, mode: str) -> None:
    touch(tree / "w/a/x")
    mask = FanotifySource([tree / "w"]).mask | fs.FAN_MOVED_FROM | fs.FAN_MOVED_TO
    with watch(tree, mode, mask=mask) as src:
        os.rename(tree / "w/a/x", tree / "w/b/y")
        os.rename(tree / "w/b/y", tree / "out/y")
        recs = drain(src)
        assert src.normalizer.stats["dropped_moves"] >= 2
    assert brief(tree, recs) == [("rename", "w/a/x", "w/b/y", ()), ("rename", "w/b/y", "", ("unwatched",))]


# --- without FAN_RENAME ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_without_fan_rename_the_halves_are_joined_by_handle(tree: Path, mode: str) -> None:
    """MOVED_FROM / MOVED_TO joined in the matcher by the child's handle. Each step is read before the next:
    without FAN_RENAME, unread halves of successive renames of one object merge (see the merge tests)."""
    touch(tree / "w/a/x")
    touch(tree / "w/b/p")
    touch(tree / "out/y")
    (tree / "w/a/d/e").mkdir(parents=True)
    steps = [
        lambda: os.rename(tree / "w/a/x", tree / "w/a/x2"),
        lambda: os.rename(tree / "w/a/x2", tree / "w/b/x3"),
        lambda: exchange(tree / "w/b/x3", tree / "w/b/p"),
        lambda: (os.rename(tree / "w/a/d", tree / "w/b/d2"), touch(tree / "w/b/d2/e/f")),
        lambda: os.rename(tree / "w/b/x3", tree / "out/x"),
        lambda: os.rename(tree / "out/y", tree / "w/b/y"),
    ]
    recs: list[Rec] = []
    with watch(tree, mode, use_rename=False) as src:
        assert not src.mask & fs.FAN_RENAME and src.mask & fs.FAN_MOVED_FROM
        for step in steps:
            step()
            recs += drain(src)
    # inotify's records, except that a filesystem mark sees the move out at once (its MOVED_TO lands outside)
    # where inode marks wait for the window, as inotify does.
    out_flag = "unwatched" if mode == "filesystem" else "timeout"
    assert brief(tree, recs) == [
        ("rename", "w/a/x", "w/a/x2", ()),
        ("rename", "w/a/x2", "w/b/x3", ()),
        ("rename", "w/b/x3", "w/b/p", ()),
        ("rename", "w/b/p", "w/b/x3", ()),
        ("rename", "w/a/d", "w/b/d2", ()),
        ("move_self", "w/b/d2", ()),
        ("create", "w/b/d2/e/f", ()),
        ("rename", "w/b/x3", "", (out_flag,)),
        ("rename", "", "w/b/y", ("unwatched",)),
    ]
    assert all(r.cookie is None and r.source == "fanotify" for r in recs)
    assert recs[0].mask == fs.FAN_MOVED_FROM | fs.FAN_MOVED_TO and recs[0].object_id == recs[1].object_id


@pytest.mark.parametrize("mode", MODES)
def test_without_fan_rename_unread_halves_merge_and_say_so(tree: Path, mode: str) -> None:
    touch(tree / "w/a/x")
    with watch(tree, mode, use_rename=False) as src:
        os.rename(tree / "w/a/x", tree / "w/a/y")
        os.rename(tree / "w/a/y", tree / "w/a/z")  # its MOVED_FROM merges into the unread MOVED_TO of y
        recs = drain(src)
    # Three events: FROM x, TO|FROM y (merged), TO z. The canonical order (moved_to before moved_from) joins
    # them back into the true history; the records still say that the kernel merged.
    assert brief(tree, recs) == [("rename", "w/a/x", "w/a/y", ("merged",)), ("rename", "w/a/y", "w/a/z",
                                                                             ("merged",))]


# --- the source itself -----------------------------------------------------------------------------------------


def test_missing_root_file_root_and_bad_mode_are_clear_errors(tree: Path) -> None:
    with pytest.raises(SourceError, match="no such directory"):
        FanotifySource([tree / "nope"]).open()
    (tree / "file").write_text("x")
    with FanotifySource([tree / "file"]) as src:  # a file root (tests/test_live_files.py)
        assert src.roots == [bytes(tree)] and src.watched_roots == [bytes(tree / "file")]
    with pytest.raises(SourceError, match=r"(?i)not a directory"):  # a path through a file
        FanotifySource([tree / "file" / "sub"]).open()
    with pytest.raises(SourceError, match="unknown mark mode"):
        FanotifySource([tree / "w"], mark_mode="mount")  # type: ignore[arg-type]


@needs_root
def test_auto_picks_the_filesystem_mark_as_root(tree: Path) -> None:
    with FanotifySource([tree / "w"]) as src:
        assert src.mark_mode == "filesystem"
        assert src.options["mark_mode"] == "filesystem"


@pytest.mark.parametrize("mode", MODES)
def test_capture_of_a_live_session_replays_to_the_same_records(tree: Path, mode: str) -> None:
    (tree / "w/a/d").mkdir()
    (tree / "out/pkg").mkdir()
    (tree / "out/pkg/file").write_text("x")
    cap = tree / "session.fsncap"
    with watch(tree, mode, capture=cap, read_buffer=0) as src:  # no reader thread: the merge below stays unread
        os.rename(tree / "w/a/d", tree / "w/b/d")
        touch(tree / "w/b/d/f")
        os.rename(tree / "out/pkg", tree / "w/a/pkg")
        touch(tree / "w/a/pkg/g")
        os.rename(tree / "w/b/d", tree / "out/d")
        (tree / "w/a/new").mkdir()
        (tree / "w/a/new/g").write_text("y")
        os.rename(tree / "w/a/new/g", tree / "w/a/new/h")
        (tree / "w/a/m").write_text("merged")  # CREATE|MODIFY|CLOSE_WRITE, unread: one event
        live = drain(src)
        live += src.close()
    replayed = list(replay(cap))
    assert [rec_to_json(r) for r in replayed] == [rec_to_json(r) for r in live]
    kinds = {r.kind for r in live}
    assert {"rename", "create", "move_self"} <= kinds
    assert any(r.dst == b"" for r in live if r.kind == "rename")
    assert any("merged" in r.flags for r in live)
    with open(cap, "rb") as f:
        header = json.loads(f.readline())
    assert (header["source"], header["version"], header["options"]["mark_mode"]) == ("fanotify", 3, mode)
    assert any(line.startswith(b'["H"') for line in cap.read_bytes().splitlines())
    # The capture file's own writes are not events (ignore mark): under a filesystem mark they would be read,
    # captured, written: a loop. Only its creation (before the mark could exist) may be there.
    own = [ev[0] for line in cap.read_bytes().splitlines() if line.startswith(b'["F"')
           for ev in json.loads(line)[3] for info in ev[2] if len(info) == 5 and info[4] == cap.name]
    assert all(mask == fs.FAN_CREATE for mask in own), [fs.describe_mask(m) for m in own]
    assert len(own) == (1 if mode == "filesystem" else 0)


# --- both sources on one workload ------------------------------------------------------------------------------


def _renames(root: Path, recs: list[Rec]) -> list[tuple[str, str]]:
    return [(b[1], b[2]) for b in brief(root, recs, kinds=("rename",))]  # type: ignore[misc]


@pytest.mark.parametrize("mode", MODES)
def test_both_sources_agree_on_renames_except_where_the_kernel_merged(tree: Path, mode: str) -> None:
    touch(tree / "w/a/x")
    touch(tree / "out/y")
    touch(tree / "w/b/p")
    (tree / "w/a/d/e").mkdir(parents=True)
    (tree / "w/a/old").write_text("o")
    ino = InotifySource([tree / "w"])
    # No reader thread for fanotify: the merge below needs the events unread in the kernel queue.
    fan = FanotifySource([tree / "w"], mark_mode=mode, read_buffer=0)  # type: ignore[arg-type]
    assert ino.open() == [] and fan.open() == []
    try:
        os.rename(tree / "w/a/x", tree / "w/a/x2")  # within
        os.rename(tree / "w/a/x2", tree / "w/b/x3")  # across
        os.rename(tree / "out/y", tree / "w/b/y")  # in
        os.rename(tree / "w/a/d", tree / "w/b/d")  # a directory with content
        touch(tree / "w/b/d/e/f")
        os.rename(tree / "w/b/d/e/f", tree / "w/b/d/e/g")  # below the renamed directory
        exchange(tree / "w/b/x3", tree / "w/b/p")  # RENAME_EXCHANGE
        os.rename(tree / "w/b/y", tree / "w/a/old")  # onto an existing file
        os.rename(tree / "w/b/p", tree / "out/p")  # out
        ino_recs, fan_recs = drain(ino), drain(fan)
        # The kernel merges identical unread fanotify events: x -> y, y -> x, x -> y reads as two FAN_RENAMEs
        # (inotify queues all six halves and reports three renames).
        for src_name, dst_name in (("x3", "y3"), ("y3", "x3"), ("x3", "y3")):
            os.rename(tree / "w/b" / src_name, tree / "w/b" / dst_name)
        ino_merge, fan_merge = drain(ino), drain(fan)
    finally:
        ino_recs_last, fan_recs_last = ino.close(), fan.close()
    assert ino_recs_last == [] and fan_recs_last == []
    expected = [("w/a/x", "w/a/x2"), ("w/a/x2", "w/b/x3"), ("", "w/b/y"), ("w/a/d", "w/b/d"),
                ("w/b/d/e/f", "w/b/d/e/g"), ("w/b/x3", "w/b/p"), ("w/b/p", "w/b/x3"), ("w/b/y", "w/a/old"),
                ("w/b/p", "")]
    assert _renames(tree, ino_recs) == _renames(tree, fan_recs) == expected
    # Flags differ only where fanotify knows more: the move out is "unwatched" at once, not after the window.
    flags = [(b[3], c[3]) for b, c in zip(brief(tree, ino_recs, kinds=("rename",)),
                                          brief(tree, fan_recs, kinds=("rename",)), strict=True)]
    assert flags == [((), ())] * 2 + [(("unwatched",), ("unwatched",))] + [((), ())] * 5 + \
        [(("timeout",), ("unwatched",))]
    assert _renames(tree, ino_merge) == [("w/b/x3", "w/b/y3"), ("w/b/y3", "w/b/x3"), ("w/b/x3", "w/b/y3")]
    assert _renames(tree, fan_merge) == [("w/b/x3", "w/b/y3"), ("w/b/y3", "w/b/x3")]


# --- storm and overflow ----------------------------------------------------------------------------------------


@pytest.fixture
def private_fs(tree: Path, request: pytest.FixtureRequest) -> Iterator[None]:
    """For the filesystem mark: ``tree/w`` on a tmpfs of its own, so that the mark (one per filesystem) sees
    this test's events only, not those of every other process writing to the machine's root filesystem
    (which would count against the queue and make the count of what it held inexact)."""
    if request.node.callspec.params["mode"] != "filesystem":
        yield
        return
    w = tree / "w"
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256m,mode=0755", "fsnorm-test", str(w)], check=True)
    try:
        for d in ("a", "b"):
            (w / d).mkdir()
        yield
    finally:
        subprocess.run(["umount", "-l", str(w)], check=False)


def _run_workload(root: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "benchmarks.workloads", *args], stdout=subprocess.PIPE,
                            text=True, cwd=REPO)


@pytest.mark.parametrize("mode", MODES)
def test_a_queue_longer_than_a_read_comes_in_several_reads_with_every_rename_joined(tree: Path, mode: str) -> None:
    """3,000 renames queued before the first read, several reads' worth (a FAN_RENAME event with two names is
    at least 80 bytes; a read takes at most DEFAULT_READ_SIZE): each read ends at an event boundary, and every
    rename is one joined record, in order, whichever read its event came in."""
    from normalizer.backends.fanotify import DEFAULT_READ_SIZE

    n = 3000
    touch(tree / "w/a/f0")
    names = [tree / f"w/{'ab'[k % 2]}/f{k}" for k in range(n + 1)]
    with watch(tree, mode) as src:
        for k in range(n):
            os.rename(names[k], names[k + 1])
        recs = drain(src)
        reads = src.stats["reads"]
    renames = [(r.path, r.dst, r.flags) for r in recs if r.kind == "rename"]
    assert renames == [(os.fsencode(names[k]), os.fsencode(names[k + 1]), ()) for k in range(n)]
    assert reads >= n * 80 // DEFAULT_READ_SIZE >= 3


@pytest.mark.parametrize("mode", MODES)
def test_storm_every_rename_exactly_once(tree: Path, mode: str) -> None:
    """4 threads renaming across 4 directories for 2 s while 2 threads create, write and delete."""
    storm_check(lambda: watch(tree, mode), tree / "w", "fs.fanotify.max_queued_events")


@pytest.mark.parametrize("rescan", [False, True])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.usefixtures("private_fs")
def test_forced_overflow_gives_an_overflow_record(tree: Path, mode: str, rescan: bool) -> None:
    """Queue limit 1024 at init, a burst of 4096 renames without reading: one overflow record, every rename
    queued before it reported exactly, and the source goes on afterwards. With rescan (the default) the
    overflow record is followed by the rescan's synthesized records, which bring the tree up to date."""
    if not IS_ROOT:
        pytest.skip("needs root to lower fs.fanotify.max_queued_events")
    root = tree / "w"
    for d in dirs(root, 4):
        d.mkdir()
    with sysctl("fs.fanotify.max_queued_events", 1024):  # no reader thread: nothing reads during the burst
        src = watch(tree, mode, rescan=rescan, read_buffer=0)  # (tests/test_live_reader.py: with one)
    start = real_tree(root)
    try:
        proc = _run_workload(root, "burst", str(root), "--threads", "4", "--renames", "1024")
        out, _ = proc.communicate(timeout=120)
        recs = drain(src)
        touch(root / "d0/after")
        recs += drain(src)
    finally:
        recs += src.close()
    truth = json.loads(out)
    expected = expected_renames(root, truth["renames"], truth["dirs"])
    assert sum(truth["renames"]) == 4096
    assert [r.kind for r in recs].count("overflow") == 1
    renames = [r for r in recs if r.kind == "rename"]
    got = [(os.fsdecode(r.path), os.fsdecode(r.dst)) for r in renames]
    assert set(got) <= expected and len(got) == len(set(got)), "nothing wrong, nothing twice"
    assert all(r.flags == () for r in renames)
    # The queue held 1024 events before the overflow: the renames among them, and a few others (the workload
    # creating its 4 files; under the filesystem mark, their MOVE_SELFs, merged to one per file while unread).
    assert 1024 - 16 <= len(got) < 1024
    cut = recs.index(next(r for r in recs if r.kind == "overflow"))
    assert brief(tree, recs[-1:]) == [("create", "w/d0/after", ())]
    if not rescan:
        assert cut == len(recs) - 2
    else:
        rescanned = recs[cut + 1:-1]
        assert rescanned and all(r.flags == ("synthesized",) and r.message == "rescan after overflow"
                                 for r in rescanned)
        # The tree rebuilt from the records is the real one.
        assert tree_diff(real_tree(root), rebuild(start, recs)) == ([], [])


# --- unprivileged ------------------------------------------------------------------------------------------------


def _as_nobody(script: str) -> subprocess.CompletedProcess[str]:
    require_nobody()  # skips, saying why, without setpriv or when nobody cannot read this checkout
    setpriv = shutil.which("setpriv")
    assert setpriv is not None
    return subprocess.run([setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable, "-c",
                           script], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'tests'}"})


@needs_root
def test_unprivileged_inode_marks_as_nobody(public_tmp: Path) -> None:
    root, out = public_tmp / "w", public_tmp / "out"
    for d in (root / "a", root / "b", out):
        d.mkdir(parents=True)
    (root / "secret").mkdir(mode=0o700)
    for d in (root, root / "a", root / "b", out):
        os.chmod(d, 0o777)
    script = textwrap.dedent(f"""
        import json, os
        from live import drain
        from normalizer.errors import CapabilityError
        from normalizer.backends.fanotify import FanotifySource
        root, out = {str(root)!r}, {str(out)!r}
        try:
            FanotifySource([root], mark_mode="filesystem").open()
        except CapabilityError as exc:
            print(json.dumps(["refused", exc.capability, str(exc)]))
        src = FanotifySource([root])
        for r in src.open():
            print(json.dumps(["open", r.kind, os.fsdecode(r.path), r.message]))
        print(json.dumps(["mode", src.mark_mode, os.getpid()]))
        os.mknod(root + "/a/x")
        os.rename(root + "/a/x", root + "/a/y")
        os.rename(root + "/a/y", root + "/b/z")
        os.rename(root + "/b/z", out + "/z")
        os.rename(out + "/z", root + "/b/back")
        os.mkdir(root + "/a/new")
        os.mknod(root + "/a/new/f")
        recs = drain(src)
        os.rename(root + "/a/new/f", root + "/a/new/g")
        recs += drain(src) + src.close()
        for r in recs:
            print(json.dumps(["rec", r.kind, os.fsdecode(r.path), os.fsdecode(r.dst), list(r.flags), r.pid]))
    """)
    res = _as_nobody(script)  # skips (saying why) only if this checkout cannot be run as nobody at all
    assert res.returncode == 0, res.stderr  # Linux 5.13+ allows unprivileged inode marks: a refusal is a bug
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    assert lines[0][:2] == ["refused", "CAP_SYS_ADMIN"] and "inode" in lines[0][2]
    assert lines[1] == ["open", "error", str(root / "secret"), "permission denied: this directory and everything "
                        "below it is not watched"]
    assert lines[2][:2] == ["mode", "inode"]
    pid = lines[2][2]
    r = str(root)
    assert [tuple(x[1:]) for x in lines[3:]] == [
        ("create", f"{r}/a/x", "", [], pid),
        ("rename", f"{r}/a/x", f"{r}/a/y", [], pid),
        ("rename", f"{r}/a/y", f"{r}/b/z", [], pid),
        ("rename", f"{r}/b/z", "", ["unwatched"], pid),
        ("rename", "", f"{r}/b/back", ["unwatched"], pid),
        ("create", f"{r}/a/new", "", [], pid),
        ("create", f"{r}/a/new/f", "", ["synthesized"], None),
        ("rename", f"{r}/a/new/f", f"{r}/a/new/g", [], pid),
    ]


@needs_root
def test_handles_resolve_before_the_batch_and_a_gone_directory_is_an_unresolved_record(tree: Path) -> None:
    """The resolution path with the real kernel: a handle the cache does not know is resolved with
    open_by_handle_at (inside, outside, gone), and an event in a directory that is gone gives a record
    flagged ``unresolved`` (inode marks), not a crash."""
    (tree / "w/a/gone").mkdir()
    (tree / "w/a/late").mkdir()
    gone = raw.fid_pack(*fs.path_handle_key(tree / "w/a/gone"))
    late = raw.fid_pack(*fs.path_handle_key(tree / "w/a/late"))
    outside = raw.fid_pack(*fs.path_handle_key(tree / "out"))
    (tree / "w/a/gone").rmdir()
    with watch(tree, "inode") as src:
        src.normalizer.cache.remove(late)  # as if its walk had missed it
        items = [src._resolve(key) for key in (gone, late, outside)]
        assert [(i.status, i.path) for i in items] == [("stale", None), ("ok", bytes(tree / "w/a/late")),
                                                       ("outside", None)]
        for item in items:
            assert src.normalizer.feed(item) == []
        events = [(fs.FAN_CREATE, 1, gone, b"f", None, b"", None, ()),
                  (fs.FAN_CREATE, 1, late, b"g", None, b"", None, ())]
        recs = src.normalizer.feed(raw.FanotifyBatch(1, True, events))
    assert brief(tree, recs[1:]) == [("create", "w/a/late/g", ())]
    assert (recs[0].kind, recs[0].path, recs[0].flags) == ("create", b"f", ("unresolved",))
    assert gone.hex() in (recs[0].message or "") and "stale" in (recs[0].message or "")


# --- the backend choice: API and CLI ---------------------------------------------------------------------------


def test_api_backend_choice(tree: Path) -> None:
    from normalizer import watch
    from normalizer.api import make_source

    with watch(tree / "w", backend="fanotify", raw_records=True, mark_mode="inode") as stream:
        assert isinstance(stream.source, FanotifySource) and stream.source.mark_mode == "inode"
        touch(tree / "w/a/x")
        os.rename(tree / "w/a/x", tree / "w/b/y")
        got: list[Rec] = []
        deadline = time.monotonic() + 10
        while len(got) < 2 and time.monotonic() < deadline:
            got += stream.read(0.1)
    assert brief(tree, got) == [("create", "w/a/x", ()), ("rename", "w/a/x", "w/b/y", ())]
    assert got[1].source == "fanotify"
    assert isinstance(make_source([tree / "w"], backend="auto"), FanotifySource)  # this kernel has FAN_RENAME
    # Rescan is the default on both backends: auto no longer falls back to inotify for it.
    assert isinstance(make_source([tree / "w"], backend="auto", rescan=True), FanotifySource)
    assert make_source([tree / "w"], backend="auto").rescan is True
    assert make_source([tree / "w"], backend="fanotify", rescan=False).rescan is False
    # fanotify-only options where the backend is inotify are a clear error, not silently dropped.
    with pytest.raises(SourceError, match="mark_mode and use_rename are fanotify options"):
        make_source([tree / "w"], backend="inotify", mark_mode="inode")
    # Event kinds mean the same on fanotify; the rename halves become FAN_RENAME.
    fan = make_source([tree / "w"], backend="fanotify", events={"modify", "rename"})
    assert isinstance(fan, FanotifySource)
    assert fan.mask & (fs.FAN_MODIFY | fs.FAN_RENAME) and not fan.mask & (fs.FAN_MOVED_FROM | fs.FAN_MOVED_TO)


def test_cli_watch_with_the_fanotify_backend(tree: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "normalizer", "watch", "--backend", "fanotify",
                             str(tree / "w")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        wait_for_marks(proc.pid, 1 if IS_ROOT else 3)  # auto: one filesystem mark as root, else w, w/a, w/b
        touch(tree / "w/a/x")
        os.rename(tree / "w/a/x", tree / "w/b/y")  # queued now: the stop reads it before closing
    finally:
        proc.send_signal(2)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [(x["kind"], x.get("src", x.get("path")), x.get("dst"), x["source"]) for x in lines] == [
        ("create", str(tree / "w/a/x"), None, "fanotify"),
        ("rename", str(tree / "w/a/x"), str(tree / "w/b/y"), "fanotify"),
    ]
    assert lines[1]["pid"] == os.getpid() and lines[1]["cookie"] is None and lines[1]["object_id"]
    bad = subprocess.run([sys.executable, "-m", "normalizer", "watch", "--backend", "fanotify",
                          str(tree / "missing")], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert bad.returncode == 1 and "no such directory" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize("mode", MODES)
def test_a_directory_moved_in_then_exchanged_in_a_later_read_is_listed_where_it_went(tree: Path, mode: str) -> None:
    """A directory with content moved in, then exchanged with a file, unread; reads so small that the move-in
    and the exchange come in different reads (what a busy filesystem mark does with other processes' events).
    The directory's walk after the first read found the file at its path; it is listed after the read that
    moved it, where it went (corpus fanotify-23a6add877d1: its content was missing)."""
    from oracle import Rebuilder, walk

    w = tree / "w"
    (tree / "out/m/sub").mkdir(parents=True)
    (tree / "out/m/one").write_text("1")
    (tree / "out/m/sub/two").write_text("2")
    (w / "a/f").write_text("f")
    initial = walk(w)
    with watch(tree, mode, read_size=160) as src:
        os.rename(tree / "out/m", w / "a/m")
        exchange(w / "a/m", w / "a/f")
        recs = drain(src)
        reads = src.stats["reads"]
    rebuilder = Rebuilder(w, initial)
    rebuilder.feed(recs)
    shown = brief(tree, recs)
    assert reads >= 3, shown  # one event per read
    assert rebuilder.readings[0].problems == [], shown
    assert rebuilder.readings[0].tree == walk(w), shown
    assert walk(w)["a/f/sub/two"] is False
