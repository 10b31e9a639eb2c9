"""Odd names through every live path: names that are not UTF-8, names with a newline, 255-byte names (the
NAME_MAX limit), through live fanotify, the ``fsnorm watch`` stdout, include/exclude filters and rescan
records. The names go in as bytes and must come out as the same bytes."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest
from live import drain, sysctl
from watchproc import stop_watch, watching

from normalizer.backends.fanotify import FanotifySource
from normalizer.backends.inotify import InotifySource
from normalizer.formats.jsonl import rec_to_json
from normalizer.records import Rec, record_from_json

IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root (filesystem marks)")
#: Latin-1 (not UTF-8), a newline, 255 bytes of ASCII, 255 bytes starting with a byte UTF-8 never uses.
ODD = [b"caf\xe9", b"line\nbreak", b"x" * 255, b"\xff" + b"y" * 254]
OLD = (1_000_000, 1_000_000)


def exact(recs: list[Rec]) -> list[tuple[str, bytes, bytes, tuple[str, ...]]]:
    return [(r.kind, r.path, r.dst, tuple(str(f) for f in r.flags)) for r in recs]


def _moves(w: bytes, out: bytes) -> list[tuple[str, bytes, bytes, tuple[str, ...]]]:
    """Create each odd name in w/a, rename it to w/b, move it out; the records inotify and fanotify agree on."""
    want = []
    for n in ODD:
        a, b = w + b"/a/" + n, w + b"/b/" + n
        os.mknod(a)
        os.rename(a, b)
        os.rename(b, out + b"/" + n)
        want += [("create", a, b"", ()), ("rename", a, b, ()), ("rename", b, b"", ("unwatched",))]
    return want


@pytest.mark.parametrize("mode", [pytest.param("filesystem", marks=needs_root), "inode"])
def test_live_fanotify_odd_names(tree: Path, mode: str) -> None:
    w, out = bytes(tree / "w"), bytes(tree / "out")
    with FanotifySource([w], mark_mode=mode) as src:
        assert src.mark_mode == mode
        want = _moves(w, out)
        recs = drain(src)
    assert exact(recs) == want


def test_live_inotify_odd_names(tree: Path) -> None:
    w, out = bytes(tree / "w"), bytes(tree / "out")
    with InotifySource([w], window_ns=20_000_000) as src:
        want = _moves(w, out)
        recs = drain(src)
    # inotify does not know that the second half of a move out never comes: it waits the window.
    assert exact(recs) == [(k, p, d, ("timeout",) if f == ("unwatched",) else f) for k, p, d, f in want]


def test_cli_watch_stdout_odd_names_one_line_each_exact_bytes(tree: Path) -> None:
    w, out = bytes(tree / "w"), bytes(tree / "out")
    with watching([w, b"--window", b"20"], 3) as (proc, lines):
        want = _moves(w, out)
        want = [(k, p, d, ("timeout",) if f == ("unwatched",) else f) for k, p, d, f in want]
        got = [lines.next() for _ in want]  # the move-out halves come once their window passed
        got += stop_watch(proc, lines)[0]
    assert len(got) == len(want)  # the newline inside a name does not break the one-record-per-line framing
    models = [record_from_json(line) for line in got]
    assert [(m.kind, m.src if m.kind == "rename" else m.path, m.dst or b"",
             ((m.reason,) if m.reason else ()) + tuple(m.flags)) for m in models] == want
    for line, (_, path, dst, _) in zip(got, want, strict=True):
        obj = json.loads(line)
        for key, value in (("src", path), ("dst", dst)) if obj["kind"] == "rename" else (("path", path),):
            try:
                value.decode()
            except UnicodeDecodeError:
                assert base64.b64decode(obj[f"{key}_b64"], validate=True) == value
                assert obj[key] == value.decode("utf-8", "backslashreplace")
            else:
                assert f"{key}_b64" not in obj and obj[key] == value.decode()


def test_cli_include_exclude_with_odd_names(tree: Path) -> None:
    """--include / --exclude given as raw bytes on the command line, matched against raw-byte names; an
    excluded directory with an odd name is not watched at all."""
    w = bytes(tree / "w")
    os.mkdir(w + b"/skip\xff")
    args = [w, b"--include", b"caf\xe9*", b"--include", b"*\n*", b"--exclude", b"skip\xff", b"--exclude", b"*.tmp"]
    with watching(args, 3) as (proc, lines):  # w, w/a, w/b: not w/skip\xff
        for n in (b"caf\xe9", b"caf\xe9.tmp", b"line\nbreak", b"x" * 255, b"other"):
            os.mknod(w + b"/a/" + n)
        os.mknod(w + b"/skip\xff/caf\xe9")  # not watched: not reported
        os.rename(w + b"/a/x" + b"x" * 254, w + b"/a/caf\xe9-2")  # passes: one side matches
        got = [lines.next() for _ in range(3)]
        got += stop_watch(proc, lines)[0]
    assert [(m.kind, m.src if m.kind == "rename" else m.path, m.dst or b"")
            for m in map(record_from_json, got)] == [
        ("create", w + b"/a/caf\xe9", b""),
        ("create", w + b"/a/line\nbreak", b""),
        ("rename", w + b"/a/" + b"x" * 255, w + b"/a/caf\xe9-2"),
    ]


def test_rescan_records_with_odd_names(tree: Path) -> None:
    """After an overflow, the rescan's synthesized records carry the exact bytes of odd names (deleted,
    created and possibly modified while events were lost), and their JSON round-trips."""
    w = tree / "w"
    wb = bytes(w)
    for n in ODD[:2]:
        with open(wb + b"/a/" + n, "w"):
            pass
        os.utime(wb + b"/a/" + n, OLD)
    with open(wb + b"/b/" + ODD[2], "w") as f:
        f.write("old")
    with sysctl("fs.inotify.max_queued_events", 64):
        src = InotifySource([w], rescan=True, read_buffer=0)  # no reader thread: nothing reads
        src.open()
    try:
        for i in range(40):  # 3 events each: the queue overflows
            (w / f"c{i}").write_text("")
            (w / f"c{i}").unlink()
        os.unlink(wb + b"/a/" + ODD[0])
        os.mkdir(wb + b"/b/" + ODD[3])
        os.mknod(wb + b"/b/" + ODD[3] + b"/" + ODD[1])
        with open(wb + b"/b/" + ODD[2], "w") as f:
            f.write("new")
        recs = drain(src)
    finally:
        src.close()
    cut = [r.kind for r in recs].index("overflow")
    syn = [r for r in recs[cut + 1:] if "synthesized" in r.flags]
    leftovers = set()
    for r in recs[:cut]:  # churn files whose create was read but whose delete was lost in the overflow
        if r.kind == "create":
            leftovers.add(r.path)
        elif r.kind == "delete":
            leftovers.discard(r.path)
    s = ("synthesized",)
    assert exact(syn) == [
        *[("delete", p, b"", s) for p in sorted(leftovers, reverse=True)],
        ("delete", wb + b"/a/" + ODD[0], b"", s),
        ("create", wb + b"/b/" + ODD[3], b"", s),
        ("create", wb + b"/b/" + ODD[3] + b"/" + ODD[1], b"", s),
        ("modify", wb + b"/b/" + ODD[2], b"", s),
    ]
    assert [record_from_json(rec_to_json(r)).path for r in syn] == [r.path for r in syn]


@pytest.mark.parametrize("mode", [pytest.param("filesystem", marks=needs_root), "inode"])
def test_live_fanotify_include_exclude_with_odd_names(tree: Path, mode: str) -> None:
    """The fanotify source applies the same filters: an excluded odd-named directory (and one below it,
    whose handle a filesystem mark must resolve and place) reports nothing."""
    w = bytes(tree / "w")
    os.makedirs(w + b"/skip\xff/sub")
    with FanotifySource([w], mark_mode=mode, include=[b"caf\xe9*", b"*\n*"], exclude=[b"skip\xff", b"*.tmp"]) as src:
        for n in (b"caf\xe9", b"caf\xe9.tmp", b"line\nbreak", b"x" * 255, b"other"):
            os.mknod(w + b"/a/" + n)
        os.mknod(w + b"/skip\xff/caf\xe9")
        os.mknod(w + b"/skip\xff/sub/caf\xe9")
        os.rename(w + b"/a/" + b"x" * 255, w + b"/a/caf\xe9-2")  # passes: one side matches
        recs = drain(src)
    assert exact(recs) == [
        ("create", w + b"/a/caf\xe9", b"", ()),
        ("create", w + b"/a/line\nbreak", b"", ()),
        ("rename", w + b"/a/" + b"x" * 255, w + b"/a/caf\xe9-2", ()),
    ]
