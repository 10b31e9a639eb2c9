"""Single-file roots and non-recursive directory roots, against the real kernel, on both backends (inotify,
fanotify with a filesystem mark, fanotify with inode marks): normalizer.core.roots and the sources' roots."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from live import brief, wait_for_watches

import normalizer
from normalizer.api import Stream
from normalizer.backends.fanotify import unavailable_reason
from normalizer.records import Rec, record_from_json

BACKENDS = [
    pytest.param({"backend": "inotify"}, id="inotify"),
    pytest.param({"backend": "fanotify", "mark_mode": "filesystem"}, id="fanotify-fs"),
    pytest.param({"backend": "fanotify", "mark_mode": "inode"}, id="fanotify-inode"),
]


@pytest.fixture(params=BACKENDS)
def opts(request: pytest.FixtureRequest) -> dict[str, Any]:
    options: dict[str, Any] = request.param
    if options["backend"] == "fanotify" and unavailable_reason() is not None:
        pytest.skip(f"fanotify unavailable: {unavailable_reason()}")
    return options


def settle(stream: Stream[Rec], *, quiet: float = 0.2, limit: float = 10.0) -> list[Rec]:
    """Read until nothing came for ``quiet`` seconds and no rename half is pending."""
    out: list[Rec] = []
    end = time.monotonic() + limit
    last = time.monotonic()
    while time.monotonic() < end:
        got = stream.read(0.03)
        if got:
            out.extend(got)
            last = time.monotonic()
        elif time.monotonic() - last >= quiet and stream.source.normalizer.matcher.next_deadline() is None:
            break
    return out


def squeeze(items: list[tuple[object, ...]]) -> list[tuple[object, ...]]:
    """Consecutive repeats collapsed, flags dropped (fanotify merges what inotify repeats, and flags it)."""
    out: list[tuple[object, ...]] = []
    for item in items:
        core = item[:-1]
        if not out or out[-1] != core:
            out.append(core)
    return out


def watch(paths: list[Path], opts: dict[str, Any], **more: Any) -> Stream[Rec]:
    return normalizer.watch([str(p) for p in paths], raw_records=True, **opts, **more)


# -- single files --------------------------------------------------------------------------------------------


def test_atomic_save_with_os_replace_is_one_replaced_rename_and_the_watch_goes_on(
        tmp_path: Path, opts: dict[str, Any]) -> None:
    conf = tmp_path / "app.conf"
    conf.write_text("v1")
    with watch([conf], opts) as stream:
        tmp = tmp_path / ".app.conf.tmp"
        tmp.write_text("v2")
        os.replace(tmp, conf)
        with conf.open("a") as f:  # the new file is the one watched now
            f.write("more")
        recs = settle(stream)
    got = brief(tmp_path, recs)
    renames = [r for r in got if r[0] == "rename"]
    assert renames == [("rename", ".app.conf.tmp", "app.conf", ("replaced",))]
    assert got[0] == renames[0]  # nothing about the temporary file before it
    assert squeeze(got[1:]) == [("modify", "app.conf"), ("close_write", "app.conf")]


def test_delete_then_create_and_move_away_then_back(tmp_path: Path, opts: dict[str, Any]) -> None:
    conf = tmp_path / "f"
    conf.write_text("1")
    with watch([conf], opts, events=["create", "delete", "rename"]) as stream:
        conf.unlink()
        conf.write_text("2")
        os.rename(conf, tmp_path / "elsewhere")
        (tmp_path / "elsewhere").write_text("not watched any more")
        (tmp_path / "x").write_text("3")
        os.rename(tmp_path / "x", conf)  # something appears at the path again: no file was there
        recs = settle(stream)
    assert brief(tmp_path, recs) == [
        ("delete", "f", ()),
        ("create", "f", ()),
        ("rename", "f", "", ("unwatched",)),
        ("rename", "x", "f", ()),
    ]


def test_a_rename_onto_a_watched_file_from_another_directory_is_one_sided(tmp_path: Path, opts: dict[str, Any]) -> None:
    """A file root given while it exists, deleted, then created by a rename from another directory: the
    source side is outside every root, so the rename is one-sided."""
    (tmp_path / "d").mkdir()
    conf = tmp_path / "d" / "f"
    conf.write_text("")
    with watch([conf], opts, events=["create", "delete", "rename"]) as stream:
        conf.unlink()
        (tmp_path / "g").write_text("")
        os.rename(tmp_path / "g", conf)
        recs = settle(stream)
    assert brief(tmp_path, recs) == [("delete", "d/f", ()), ("rename", "", "d/f", ("unwatched",))]


def test_siblings_of_a_watched_file_give_nothing(tmp_path: Path, opts: dict[str, Any]) -> None:
    conf = tmp_path / "f"
    conf.write_text("")
    (tmp_path / "sub").mkdir()
    with watch([conf], opts) as stream:
        for i in range(50):
            (tmp_path / f"s{i}").write_text("x")
            os.rename(tmp_path / f"s{i}", tmp_path / "sub" / f"s{i}")
        os.mkdir(tmp_path / "newdir")
        conf.write_text("y")
        recs = settle(stream)
    assert {r.path for r in recs} == {os.fsencode(conf)}
    assert squeeze(brief(tmp_path, recs)) == [("modify", "f"), ("close_write", "f")]


def test_a_file_and_a_tree_root_together_give_each_record_once(tmp_path: Path, opts: dict[str, Any]) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    conf = tree / "f"
    conf.write_text("")
    with watch([conf, tree, tmp_path / "tree"], opts, events=["create", "delete", "rename"]) as stream:
        assert stream.roots == [os.fsencode(conf), os.fsencode(tree)]
        (tree / "t").write_text("")
        os.replace(tree / "t", conf)
        (tree / "other").write_text("")
        recs = settle(stream)
    assert brief(tmp_path, recs) == [
        ("create", "tree/t", ()),
        ("rename", "tree/t", "tree/f", ("replaced",)),
        ("create", "tree/other", ()),
    ]


def test_a_watched_file_while_its_directory_is_renamed(tmp_path: Path, opts: dict[str, Any]) -> None:
    """The path no longer leads to the file: a one-sided rename of the file, then the end of its watch;
    what happens to it in its new place, or at the old path, is not reported."""
    d = tmp_path / "d"
    d.mkdir()
    conf = d / "f"
    conf.write_text("")
    with watch([conf], opts) as stream:
        os.rename(d, tmp_path / "d2")
        (tmp_path / "d2" / "f").write_text("moved")
        d.mkdir()
        conf.write_text("new")
        recs = settle(stream)
    got = brief(tmp_path, recs)
    assert got == [("rename", "d/f", "", ("unwatched",)), ("watch_end", "d/f", ())]
    assert stream.roots == []


def test_vim_save_in_place_and_by_rename(tmp_path: Path, opts: dict[str, Any]) -> None:
    """The real vim, both ways it saves: in place (``backupcopy=yes``: modify, close_write) and by renaming
    the old file to a backup and writing a new one (``backupcopy=no``: the file moved away, then a new file
    at the path, and the watch goes on with it). Its swap and backup files beside it give nothing."""
    conf = tmp_path / "notes.txt"
    conf.write_text("one\n")

    def vim(backupcopy: str, text: str) -> None:
        subprocess.run(["vim", "-u", "NONE", "-i", "NONE", "-N", "-es", "-c",
                        f"set backupskip= writebackup backupcopy={backupcopy}", "-c", f"normal A{text}", "-c",
                        "wq", str(conf)], check=True, stdin=subprocess.DEVNULL, timeout=30)

    with watch([conf], opts) as stream:
        vim("yes", "two")
        in_place = settle(stream)
        vim("no", "three")
        renamed = settle(stream)
        with conf.open("a") as f:
            f.write("four\n")
        after = settle(stream)
    assert conf.read_text() == "onetwothree\nfour\n"
    paths = {r.path for r in in_place + renamed + after} | {r.dst for r in renamed if r.kind == "rename"}
    assert paths <= {os.fsencode(conf), b""}
    kinds = [k for k, *_ in squeeze(brief(tmp_path, in_place)) if k != "attrib"]
    assert kinds == ["modify", "close_write"]
    got = [r for r in squeeze(brief(tmp_path, renamed)) if r[0] != "attrib"]
    assert got == [("rename", "notes.txt", ""), ("create", "notes.txt"), ("modify", "notes.txt"),
                   ("close_write", "notes.txt")]
    assert squeeze(brief(tmp_path, after)) == [("modify", "notes.txt"), ("close_write", "notes.txt")]


def test_watch_file_cli(tmp_path: Path) -> None:
    """``fsnorm watch FILE`` prints the file's records only."""
    conf = tmp_path / "c"
    conf.write_text("")
    proc = subprocess.Popen([sys.executable, "-m", "normalizer", "watch", "--events", "rename,create,delete",
                             str(conf)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for_watches(proc.pid, 1)
        (tmp_path / "t").write_text("")
        os.replace(tmp_path / "t", conf)
        (tmp_path / "u").write_text("")
        time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    models = [record_from_json(line, str) for line in out.decode().splitlines()]
    assert [(m.kind, m.src, m.dst, m.reason, set(m.flags)) for m in models if m.kind == "rename"] == [
        ("rename", str(tmp_path / "t"), str(conf), None, {"replaced"})], err
    assert len(models) == 1, models


# -- non-recursive directories -------------------------------------------------------------------------------


def test_non_recursive_reports_entries_not_subdirectory_content(tmp_path: Path, opts: dict[str, Any]) -> None:
    root = tmp_path / "r"
    (root / "old").mkdir(parents=True)
    with watch([root], opts, recursive=False, events=["create", "delete", "rename"]) as stream:
        (root / "old" / "inner").write_text("")
        os.mkdir(root / "new")
        (root / "new" / "inner").write_text("")
        os.rename(root / "new", root / "renamed")
        os.rename(root / "old" / "inner", root / "up")  # from a subdirectory: its source is not reported
        os.rename(root / "up", root / "renamed" / "down")  # into one: its destination is not either
        os.rmdir(root / "old")
        (root / "f").write_text("")
        recs = settle(stream)
    # inotify sees no second half for a move into an unwatched subdirectory: its window decides it.
    last = ("timeout",) if opts["backend"] == "inotify" else ("unwatched",)
    assert brief(tmp_path, recs) == [
        ("create", "r/new", ()),
        ("rename", "r/new", "r/renamed", ()),
        ("rename", "", "r/up", ("unwatched",)),
        ("rename", "r/up", "", last),
        ("delete", "r/old", ()),
        ("create", "r/f", ()),
    ]


def test_non_recursive_cli_flag(tmp_path: Path) -> None:
    from normalizer.cli.main import _source_options, build_parser
    args = build_parser().parse_args(["watch", "--no-recursive", str(tmp_path)])
    assert _source_options(args)["recursive"] is False
    args = build_parser().parse_args(["watch", str(tmp_path)])
    assert "recursive" not in _source_options(args)


def test_replay_of_a_file_root_capture_gives_the_live_records(tmp_path: Path, opts: dict[str, Any]) -> None:
    """The roots go into the capture header (``scope``): replay filters as the live session did."""
    from normalizer.capture.replay import replay
    d = tmp_path / "d"
    d.mkdir()
    conf = d / "f"
    conf.write_text("")
    cap = tmp_path / "cap.fsncap"
    with watch([conf], opts, capture=str(cap)) as stream:
        (d / "t").write_text("x")
        os.replace(d / "t", conf)
        (d / "sibling").write_text("x")
        live = settle(stream)
        live += stream.close()
    replayed = list(replay(cap))
    assert brief(tmp_path, live) == brief(tmp_path, replayed)
    assert [r[0] for r in brief(tmp_path, live)] == ["rename"]
