"""``--format 'TEMPLATE'``: inotifywait's conversions, fsnorm's %W%F, raw name bytes; and the same template
run through the real ``inotifywait`` and ``fsnorm watch`` on one workload gives the same lines (a joined
rename being inotifywait's MOVED_FROM and MOVED_TO lines in one)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from format_samples import BAD, OFFSET, T, records, samples
from hypothesis import given, settings

from normalizer.errors import FormatError
from normalizer.formats import make_formatter
from normalizer.formats.context import FormatContext, WallClock
from normalizer.formats.template import parse_template
from normalizer.records import Rec

ALL = "%w|%f|%e|%:e|%c|%W|%F"


def expand(rec: Rec, template: str = ALL, timefmt: str | None = None) -> bytes:
    line = make_formatter(template, FormatContext(host="h", clock=WallClock(OFFSET), timefmt=timefmt))(rec)
    return line.encode("utf-8", "surrogateescape")


def test_parse_like_inotifywait() -> None:
    assert parse_template("%w%f %e") == [("w", ""), ("f", ""), ("", " "), ("e", ",")]
    assert parse_template("%:e|%Te%0%n%%%x%") == [("e", ":"), ("", "|"), ("T", ""), ("", "e\0\n%%x%")]
    assert parse_template("plain") == [("", "plain")]
    assert parse_template("%W%F%c") == [("W", ""), ("F", ""), ("c", "")]


@pytest.mark.parametrize(("name", "expected"), [
    ("create", b"/srv/w/a/|new.txt|CREATE|CREATE|0|/srv/w/a/|new.txt"),
    ("create_dir", b"/srv/w/a/|sub|CREATE,ISDIR|CREATE:ISDIR|0|/srv/w/a/|sub"),
    ("delete_dir", b"/srv/w/a/|sub|DELETE,ISDIR|DELETE:ISDIR|0|/srv/w/a/|sub"),
    ("close_write", b"/srv/w/a/|x|CLOSE_WRITE,CLOSE|CLOSE_WRITE:CLOSE|0|/srv/w/a/|x"),
    ("close_nowrite", b"/srv/w/a/|x|CLOSE_NOWRITE,CLOSE|CLOSE_NOWRITE:CLOSE|0|/srv/w/a/|x"),
    ("attrib", b"/srv/w/a/|x|ATTRIB|ATTRIB|0|/srv/w/a/|x"),
    ("delete_self", b"/srv/w/a/sub/||DELETE_SELF|DELETE_SELF|0|/srv/w/a/sub/|"),
    ("move_self", b"/srv/w/a/sub/||MOVE_SELF|MOVE_SELF|0|/srv/w/a/sub/|"),
    ("watch_end", b"/srv/w/a/sub/||IGNORED|IGNORED|0|/srv/w/a/sub/|"),
    ("rename", b"/srv/w/a/|x|MOVED_FROM,MOVED_TO|MOVED_FROM:MOVED_TO|1092|/srv/w/b/|y"),
    ("rename_dir", b"/srv/w/a/|album|MOVED_FROM,MOVED_TO,ISDIR|MOVED_FROM:MOVED_TO:ISDIR|4d|/srv/w/a/|album-2026"),
    ("rename_out", b"/srv/w/a/|x|MOVED_FROM|MOVED_FROM|5||"),
    ("rename_out_dir", b"/srv/w/a/|d|MOVED_FROM,ISDIR|MOVED_FROM:ISDIR|7||"),
    ("rename_in", b"/srv/w/a/|in.txt|MOVED_TO|MOVED_TO|6|/srv/w/a/|in.txt"),
    ("overflow", b"||Q_OVERFLOW|Q_OVERFLOW|0||"),
    ("error", b"/srv/w/locked/||ERROR|ERROR|0|/srv/w/locked/|"),
    ("fanotify_rename", b"/srv/w/a/|x|MOVED_FROM,MOVED_TO|MOVED_FROM:MOVED_TO|0|/srv/w/b/|y"),
])
def test_conversions(name: str, expected: bytes) -> None:
    assert expand(samples()[name]) == expected


def test_names_are_written_as_their_bytes() -> None:
    assert expand(samples()["create_bad_name"], "%w%f") == b"/srv/w/" + BAD
    assert expand(samples()["rename_bad_names"], "%w%f>%W%F%0") == (
        b"/srv/w/" + BAD + b">/srv/w/\xff/" + BAD + b"\0")


def test_time_uses_timefmt_in_local_time() -> None:
    expected = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime((T + OFFSET) // 1_000_000_000))
    assert expand(samples()["create"], "%T %f", "%Y-%m-%d %H:%M:%S") == f"{expected} new.txt".encode()


def test_time_without_timefmt_is_an_error_as_in_inotifywait() -> None:
    with pytest.raises(FormatError, match="--timefmt"):
        expand(samples()["create"], "%T")


def test_unknown_format_names_are_errors() -> None:
    with pytest.raises(FormatError, match="unknown format 'ecss'"):
        make_formatter("ecss")


_SELF = {"delete_self", "move_self", "watch_end", "unmount", "error"}


@settings(max_examples=300, deadline=None)
@given(records())
def test_any_record_gives_its_paths_back(rec: Rec) -> None:
    w_f, new = expand(rec, "%w%f"), expand(rec, "%W%F")
    if rec.kind == "rename":
        assert w_f == (rec.path or rec.dst)
        assert new == rec.dst
    elif rec.kind in _SELF:
        assert w_f == new == rec.path.rstrip(b"/") + b"/"
    else:
        assert w_f == new == rec.path
    names = expand(rec, "%e").split(b",")
    assert (b"ISDIR" in names) == (rec.is_dir and rec.kind not in _SELF | {"overflow"})


# -- the real inotifywait, side by side -----------------------------------------------------------------------

LIVE_FORMAT = "%w|%f|%e|%c|%W%F"


def _lines(path: Path) -> list[bytes]:
    return [line for line in path.read_bytes().split(b"\n") if line]


def _wait_for(paths: list[Path], name: bytes, poke: Path, limit: float = 20.0) -> None:
    """Until every output has a line about ``name``: write ``poke`` again and again (a watcher that was not
    ready yet sees a later write)."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        poke.write_text("x")
        time.sleep(0.1)
        if all(any(line.split(b"|")[1] == name for line in _lines(p)) for p in paths):
            return
    raise AssertionError(f"the watchers never reported {name!r}: {[p.read_bytes()[-300:] for p in paths]}")


def _as_inotifywait(line: bytes) -> list[tuple[bytes, ...]]:
    """One fsnorm template line -> the inotifywait lines it stands for (a joined rename is two)."""
    w, f, e, c, new = line.split(b"|")
    if e.startswith(b"MOVED_FROM,MOVED_TO"):
        isdir = e[len(b"MOVED_FROM,MOVED_TO"):]
        new_dir, _, new_name = new.rpartition(b"/")
        return [(w, f, b"MOVED_FROM" + isdir, c), (new_dir + b"/", new_name, b"MOVED_TO" + isdir, c)]
    return [(w, f, e, c)]


@pytest.mark.skipif(shutil.which("inotifywait") is None, reason="inotifywait not installed (apt-get install "
                    "inotify-tools; .ci/run does)")
def test_same_lines_as_the_real_inotifywait(tmp_path: Path) -> None:
    root = tmp_path / "w"
    root.mkdir()
    out_iw, out_fs = tmp_path / "iw.out", tmp_path / "fs.out"
    events = "create,modify,attrib,close_write,delete,moved_from,moved_to,move_self,delete_self"
    with open(out_iw, "wb") as f_iw, open(out_fs, "wb") as f_fs:
        iw = subprocess.Popen(["inotifywait", "-m", "-r", "-q", "-e", events, "--format", "%w|%f|%e|%c|",
                               str(root)], stdout=f_iw, stderr=subprocess.PIPE)
        fs = subprocess.Popen([sys.executable, "-m", "normalizer", "watch", str(root), "--format", LIVE_FORMAT],
                              stdout=f_fs, stderr=subprocess.PIPE)
    try:
        _wait_for([out_iw, out_fs], b"ready", root / "ready")
        (root / "a.txt").write_text("hello")
        os.chmod(root / "a.txt", 0o600)
        os.rename(root / "a.txt", root / "b.txt")
        (root / "sub").mkdir()
        _wait_for([out_iw, out_fs], b"sub", root / "ready")  # both watch sub now
        os.rename(root / "b.txt", root / "sub" / "c.txt")
        (root / "sub" / os.fsdecode(BAD)).write_bytes(b"x")
        os.rename(root / "sub", root / "sub2")
        (root / "sub2" / "c.txt").unlink()
        _wait_for([out_iw, out_fs], b"end", root / "end")
    finally:
        for proc in (iw, fs):
            proc.send_signal(signal.SIGINT)
        for proc in (iw, fs):
            proc.communicate(timeout=20)  # waits and closes its stderr pipe
    noise = (b"ready", b"end")
    got_iw = [tuple(line.split(b"|")[:4]) for line in _lines(out_iw) if line.split(b"|")[1] not in noise]
    got_fs = [e for line in _lines(out_fs) for e in _as_inotifywait(line) if e[1] not in noise]
    assert got_fs == got_iw
    assert any(e[2] == b"MOVED_FROM,ISDIR" for e in got_iw) and any(BAD in e[1] for e in got_iw)
    assert sum(1 for line in _lines(out_fs) if b"MOVED_FROM,MOVED_TO" in line) == 3
