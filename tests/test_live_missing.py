"""Roots that do not exist yet (``missing_ok=True`` / ``--allow-missing``), against the real kernel on both
backends: the nearest existing ancestor is watched, the root is reported and watched with its content when it
appears, and waited for again when it goes away (backends/roots.py, normalizer.core.roots)."""

from __future__ import annotations

import os
import threading
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
    return normalizer.watch([str(p) for p in paths], raw_records=True, missing_ok=True, **opts, **more)


def test_without_missing_ok_a_missing_root_is_still_an_error(tmp_path: Path, opts: dict[str, Any]) -> None:
    with pytest.raises(SourceError, match="no such directory"):
        normalizer.watch([str(tmp_path / "nope")], **opts).open()


def test_a_deep_missing_root_appears_goes_away_and_comes_back(tmp_path: Path, opts: dict[str, Any]) -> None:
    root = tmp_path / "a" / "b" / "r"
    with watch([root], opts, events=["create", "delete", "rename"]) as stream:
        assert stream.roots == [bytes(root)] and stream.source.roots == [bytes(tmp_path)]
        (tmp_path / "a" / "b").mkdir(parents=True)
        (tmp_path / "a" / "noise").write_text("")
        first = settle(stream)
        (root / "sub").mkdir(parents=True)
        (root / "sub" / "x").write_text("")
        second = settle(stream)
        (root / "y").write_text("")
        os.rename(root, tmp_path / "a" / "b" / "away")
        (tmp_path / "a" / "b" / "away" / "z").write_text("")
        third = settle(stream)
        (tmp_path / "a" / "b" / "r2").mkdir()
        (tmp_path / "a" / "b" / "r2" / "w").write_text("")
        os.rename(tmp_path / "a" / "b" / "r2", root)
        (root / "v").write_text("")
        fourth = settle(stream)
        assert stream.source.roots == [bytes(root)]
    assert first == []  # the ancestors and their other entries are not reported
    # r appears: the kernel's create of r (seen in its parent, the guard by then) or, if it came before the
    # guard reached b, a synthesized one; what r holds is found by the scan after its watch, or by its events
    assert [r[:2] for r in brief(tmp_path, second)] == [("create", "a/b/r"), ("create", "a/b/r/sub"),
                                                         ("create", "a/b/r/sub/x")]
    assert brief(tmp_path, third)[0] == ("create", "a/b/r/y", ())
    assert [r[:2] for r in brief(tmp_path, third)[1:]] in (
        [("watch_end", "a/b/r")],  # inotify, fanotify: the root moved away (its move_self is not asked for)
    )
    got = [r for r in brief(tmp_path, fourth) if r[0] != "move_self"]
    assert got[0] == ("rename", "a/b/r2", "a/b/r", ())
    # w was there when r's watch came: the scan reports it; v may come from the scan too, or from its event
    assert sorted(r[:2] for r in got[1:]) == [("create", "a/b/r/v"), ("create", "a/b/r/w")]
    assert ("create", "a/b/r/w", ("synthesized",)) in got


def test_a_missing_file_root_in_a_missing_directory(tmp_path: Path, opts: dict[str, Any]) -> None:
    conf = tmp_path / "etc" / "app.conf"
    with watch([conf], opts, events=["create", "delete", "rename"]) as stream:
        (tmp_path / "etc").mkdir()
        (tmp_path / "etc" / "other").write_text("")
        settle(stream)
        (tmp_path / "etc" / "t").write_text("")
        os.replace(tmp_path / "etc" / "t", conf)  # a save onto a path where nothing was
        (tmp_path / "etc" / "t").write_text("")
        os.replace(tmp_path / "etc" / "t", conf)  # a save that replaces it
        os.rename(tmp_path / "etc", tmp_path / "etc.old")  # the directory goes: the file with it
        (tmp_path / "etc").mkdir()
        conf.write_text("")  # and back
        recs = settle(stream)
    assert brief(tmp_path, recs) == [
        ("rename", "etc/t", "etc/app.conf", ()),
        ("rename", "etc/t", "etc/app.conf", ("replaced",)),
        ("rename", "etc/app.conf", "", ("unwatched",)),
        ("create", "etc/app.conf", ("synthesized",)),  # made before its new directory was watched: found
    ]


def test_no_gap_when_a_missing_root_appears_while_it_fills(tmp_path: Path, opts: dict[str, Any]) -> None:
    """A thread creates the root and 300 files in it at once: every file is reported once (by its own
    event or by the scan that follows the root's watch), none twice."""
    root = tmp_path / "r"
    names = [f"f{i}" for i in range(300)]

    def fill() -> None:
        root.mkdir()
        for name in names:
            (root / name).write_text("")

    with watch([root], opts, events=["create"]) as stream:
        thread = threading.Thread(target=fill)
        thread.start()
        recs = settle(stream)
        thread.join()
        recs += settle(stream)
    created = [r.path for r in recs if r.kind == "create" and r.path != bytes(root)]
    assert sorted(created) == sorted(bytes(root / n) for n in names)
    assert [r.path for r in recs if r.path == bytes(root)] == [bytes(root)]


def test_add_with_missing_ok_and_the_cli_flag(tmp_path: Path, opts: dict[str, Any]) -> None:
    from normalizer.cli.main import _source_options, build_parser
    args = build_parser().parse_args(["watch", "--allow-missing", str(tmp_path / "x")])
    assert _source_options(args)["missing_ok"] is True
    (tmp_path / "a").mkdir()
    with normalizer.watch([str(tmp_path / "a")], raw_records=True, **opts, events=["create"]) as stream:
        with pytest.raises(SourceError):
            stream.add(tmp_path / "later")
        stream.add(tmp_path / "later", missing_ok=True)
        (tmp_path / "later").mkdir()
        (tmp_path / "later" / "x").write_text("")
        (tmp_path / "sibling").write_text("")
        recs = settle(stream)
    assert [r[:2] for r in brief(tmp_path, recs)] == [("create", "later"), ("create", "later/x")]
