"""Names as the bytes they are: every byte value 1-255 except '/', invalid UTF-8, newlines, 255-byte names and
paths longer than PATH_MAX (4096) built from them, through live watch, capture, replay and JSON, byte for byte.

Paths longer than PATH_MAX cannot be passed to a syscall, so the deep trees are built with ``dir_fd`` (openat)
chains.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from live import drain

from normalizer.backends.inotify import InotifySource
from normalizer.capture.log import CaptureHeader, CaptureReader, CaptureWriter, decode_name, encode_name
from normalizer.capture.replay import replay
from normalizer.core import raw
from normalizer.formats.jsonl import rec_to_json
from normalizer.records import Rec, record_from_json, to_model

PATH_MAX = 4096
ALL_BYTES = bytes(v for v in range(1, 256) if v != ord("/"))  # 254 bytes: every legal byte once
NAMES = [
    ALL_BYTES,
    ALL_BYTES[::-1] + b"x",  # 255 bytes
    b"\xff\xfe", b"\xc3\x28", b"\x80", b"\xed\xa0\x80",  # invalid UTF-8 (incl. an encoded surrogate)
    b"\n", b"a\nb", b"\r\n", b"\x01\x1f\x7f", b'\\"', b"\\udc80",
    b"\xe9" * 255, ("\u00e9" * 127 + "x").encode(), b"n" * 255, "\U0001f600".encode() * 63 + b"xyz",
    b" ", b"-", b"...", b"\x1b[31m",
]
assert all(0 < len(n) <= 255 and b"/" not in n and n not in (b".", b"..") for n in NAMES)


def ids(names: list[bytes]) -> list[str]:
    return [n[:12].hex() + f"-{len(n)}" for n in names]


def json_exact(rec: Rec) -> None:
    """Model -> JSON -> model is byte exact, and the JSON text is strictly valid UTF-8."""
    line = rec_to_json(rec)
    line.encode("utf-8")
    back = record_from_json(line)
    assert back == to_model(rec)
    if rec.kind == "rename":
        assert (back.src or b"", back.dst or b"") == (rec.path, rec.dst)  # an absent side is None
    else:
        assert back.path == rec.path


# -- JSON and capture, without the kernel ------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES, ids=ids(NAMES))
def test_json_round_trip_is_byte_exact(name: bytes) -> None:
    deep = b"/" + b"/".join([name] * 20)  # > PATH_MAX
    assert len(deep) > PATH_MAX or len(name) < 200
    for rec in (Rec("create", b"/w/" + name, False, 1, raw.IN_CREATE),
                Rec("rename", b"/w/" + name, False, 1, raw.IN_MOVE, 7, deep + b"/" + name),
                Rec("rename", b"", True, 1, raw.IN_MOVED_TO, 7, deep, ("unwatched",)),
                Rec.note("error", deep, True, 1, 0, message=name.decode("utf-8", "replace"))):
        json_exact(rec)


@pytest.mark.parametrize("compress", [False, True])
def test_capture_round_trip_is_byte_exact(tmp_path: Path, compress: bool) -> None:
    deep = b"/w/" + b"/".join(NAMES * 3)  # > PATH_MAX
    assert len(deep) > PATH_MAX
    items: list[raw.StreamItem] = [raw.WatchAdded(1, 2, deep)]
    items += [raw.InotifyBatch(2 + i, True, [(2, raw.IN_CREATE, 0, n), (1, raw.IN_MOVED_FROM, 9, n),
                                             (2, raw.IN_MOVED_TO, 9, n)]) for i, n in enumerate(NAMES)]
    items.append(raw.SourceNotice(99, "create", deep + b"/" + NAMES[0], False, ("synthesized",), ""))
    path = tmp_path / ("c.fsncap.gz" if compress else "c.fsncap")
    with CaptureWriter(path, CaptureHeader(watches=[(1, b"/w/" + NAMES[0])])) as writer:
        for item in items:
            writer.write(item)
    with CaptureReader(path, strict=True) as reader:
        assert reader.header.watches == [(1, b"/w/" + NAMES[0])]
        assert list(reader) == items
    recs = list(replay(path, strict=True))
    renames = [r for r in recs if r.kind == "rename"]
    assert [(r.path, r.dst) for r in renames] == [(b"/w/" + NAMES[0] + b"/" + n, deep + b"/" + n) for n in NAMES]
    for rec in recs:
        json_exact(rec)
    for name in NAMES:
        assert decode_name(json.loads(json.dumps(encode_name(name), ensure_ascii=False))) == name


# -- live ----------------------------------------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for d in ("w/a", "w/b", "w/c", "out"):
        (tmp_path / d).mkdir(parents=True)
    return tmp_path


def check_session(cap: Path, live: list[Rec]) -> None:
    """Capture replays to the same records, the CLI's JSON output reads back byte for byte."""
    assert [rec_to_json(r) for r in replay(cap)] == [rec_to_json(r) for r in live]
    for rec in live:
        json_exact(rec)
    res = subprocess.run([sys.executable, "-m", "normalizer", "replay", str(cap)], capture_output=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    printed = [record_from_json(line) for line in res.stdout.splitlines()]
    assert printed == [to_model(r) for r in live]


def test_live_odd_names_are_reported_byte_exact(tree: Path) -> None:
    w = bytes(tree / "w")
    a, b, c = w + b"/a", w + b"/b", w + b"/c"
    cap = tree / "names.fsncap"
    src = InotifySource([w], capture=cap)
    assert src.open() == []
    try:
        for n in NAMES:
            os.close(os.open(a + b"/" + n, os.O_CREAT | os.O_WRONLY, 0o644))
            os.rename(a + b"/" + n, b + b"/" + n)
        live = drain(src)
        for n in NAMES:
            os.mkdir(a + b"/" + n)
        live += drain(src)
        for n in NAMES:  # inside each directory (watched by now), then the directory moved
            os.close(os.open(a + b"/" + n + b"/" + n, os.O_CREAT | os.O_WRONLY, 0o644))
            os.rename(a + b"/" + n, c + b"/" + n)
            os.unlink(c + b"/" + n + b"/" + n)
        live += drain(src)
    finally:
        live_last = src.close()
    live += live_last
    expected: list[tuple[str, bytes, bytes]] = []
    for n in NAMES:
        expected += [("create", a + b"/" + n, b""), ("close_write", a + b"/" + n, b""),
                     ("rename", a + b"/" + n, b + b"/" + n)]
    expected += [("create", a + b"/" + n, b"") for n in NAMES]
    for n in NAMES:
        expected += [("create", a + b"/" + n + b"/" + n, b""), ("close_write", a + b"/" + n + b"/" + n, b""),
                     ("rename", a + b"/" + n, c + b"/" + n), ("move_self", c + b"/" + n, b""),
                     ("delete", c + b"/" + n + b"/" + n, b"")]
    got = [(r.kind, r.path, r.dst) for r in live]
    assert got == expected
    assert all(not r.flags for r in live)
    check_session(cap, live)


def _mkdirs(top_fd: int, names: list[bytes]) -> Iterator[int]:
    """mkdir each name inside the previous one (openat chain); yields each directory's fd (caller closes)."""
    fd = top_fd
    for n in names:
        os.mkdir(n, dir_fd=fd)
        fd = os.open(n, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        yield fd


LONG = [n for n in NAMES if len(n) == 255]


def chain_to(w: bytes, length: int) -> list[bytes]:
    """Directory names for a chain below ``w`` whose bottom path is exactly ``length`` bytes: a padding name
    first, then 15 odd 255-byte names."""
    chain = [LONG[i % len(LONG)] for i in range(15)]
    pad = length - (len(w) + 1 + 256 * len(chain))
    assert 0 < pad <= 255
    return [b"s" * pad, *chain]


def test_live_paths_longer_than_path_max_are_reported_byte_exact(tree: Path) -> None:
    """A 16-level chain of odd 255-byte names (just under PATH_MAX, so it can be watched), then: a file
    with a long name at the bottom (path > PATH_MAX), renamed; the chain's top renamed to a long name, so every
    watched path below it is longer than PATH_MAX; activity at the bottom under the new path."""
    w = bytes(tree / "w")
    s, *chain = chain_to(w, PATH_MAX - 100)
    top_fd = os.open(w, os.O_RDONLY | os.O_DIRECTORY)
    fds = [top_fd]
    try:
        fds += list(_mkdirs(top_fd, [s, *chain]))
        bottom = w + b"/" + s + b"/" + b"/".join(chain)
        assert len(bottom) == PATH_MAX - 100
        cap = tree / "deep.fsncap.gz"
        src = InotifySource([w], capture=cap)
        assert src.open() == []
        live: list[Rec] = []
        try:
            assert len(src.normalizer.table) == 4 + 1 + len(chain)
            f1, f2 = LONG[0], LONG[-1]
            os.close(os.open(f1, os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fds[-1]))
            os.rename(f1, f2, src_dir_fd=fds[-1], dst_dir_fd=fds[-1])
            live += drain(src)
            os.rename(s, LONG[1], src_dir_fd=top_fd, dst_dir_fd=top_fd)
            live += drain(src)
            os.unlink(f2, dir_fd=fds[-1])
            live += drain(src)
        finally:
            live += src.close()
        moved = w + b"/" + LONG[1] + b"/" + b"/".join(chain)
        assert len(moved) > PATH_MAX and len(bottom + b"/" + f1) > PATH_MAX
        assert [(r.kind, r.path, r.dst) for r in live] == [
            ("create", bottom + b"/" + f1, b""), ("close_write", bottom + b"/" + f1, b""),
            ("rename", bottom + b"/" + f1, bottom + b"/" + f2),
            ("rename", w + b"/" + s, w + b"/" + LONG[1]), ("move_self", w + b"/" + LONG[1], b""),
            ("delete", moved + b"/" + f2, b""),
        ]
        check_session(cap, live)
    finally:
        for fd in fds:
            os.close(fd)


@pytest.mark.parametrize("when", ["at_open", "while_watching"])
def test_directory_deeper_than_path_max_is_an_error_record_and_watching_goes_on(tree: Path, when: str) -> None:
    w = bytes(tree / "w")
    chain = chain_to(w, PATH_MAX - 100)
    top_fd = os.open(w, os.O_RDONLY | os.O_DIRECTORY)
    fds = [top_fd]
    try:
        fds += list(_mkdirs(top_fd, chain))
        deep = w + b"/" + b"/".join(chain)
        assert len(deep) == PATH_MAX - 100
        if when == "at_open":
            fds += list(_mkdirs(fds[-1], [LONG[0]]))  # exists before the watch starts
        src = InotifySource([w])
        recs: list[Rec] = []
        try:
            recs += src.open()
            if when == "while_watching":
                fds += list(_mkdirs(fds[-1], [LONG[0]]))
                recs += drain(src)
            (tree / "w/a/after").write_text("x")
            recs += drain(src)
        finally:
            recs += src.close()
        errors = [r for r in recs if r.kind == "error"]
        assert [e.path for e in errors] == [deep + b"/" + LONG[0]]
        assert ("create", w + b"/a/after") in [(r.kind, r.path) for r in recs]
    finally:
        for fd in fds:
            os.close(fd)


def test_capture_reader_accepts_the_surrogateescape_form_of_each_byte() -> None:
    """docs/capture-format.md: readers also accept lone surrogates U+DC80-U+DCFF for bytes 0x80-0xFF."""
    for v in range(0x80, 0x100):
        text = bytes([v]).decode("utf-8", "surrogateescape")
        assert decode_name(json.loads(json.dumps(text))) == bytes([v])
    data = io.BytesIO(json.dumps(CaptureHeader().to_json()).encode() + b"\n"
                      + json.dumps(["B", 1, 1, [[1, 256, 0, ALL_BYTES.decode("utf-8", "surrogateescape")]]]).encode()
                      + b"\n")
    with CaptureReader(data) as reader:
        assert [i.events for i in reader] == [[(1, 256, 0, ALL_BYTES)]]  # type: ignore[union-attr]
