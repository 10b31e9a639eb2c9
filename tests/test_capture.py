"""The capture format: exact round trip, gzip, and every kind of damage reported with its place."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import MS, batch, brief, frm, norm_with, to

from normalizer.capture.log import CaptureHeader, CaptureReader, CaptureWriter, decode_name, encode_name
from normalizer.capture.replay import replay
from normalizer.core import raw
from normalizer.errors import CaptureError
from normalizer.formats.jsonl import rec_to_json

ODD = [b"caf\xe9", b"line\nbreak", b"x" * 255, b"\xff\xfe", "ü😀".encode(), b"\x01\x7f"]


def items() -> list[raw.StreamItem]:
    return [
        raw.WatchAdded(1, 2, b"/w/b"),
        batch(1, frm(1, 7, b"x"), (1, raw.IN_MODIFY, 0, ODD[0]), drained=False),
        batch(2, to(2, 7, ODD[1]), (1, raw.IN_CREATE, 0, ODD[2])),
        batch(3, frm(1, 8, ODD[3])),
        raw.Tick(40 * MS),
        raw.SourceNotice(41 * MS, "create", b"/w/b/" + ODD[4], False, ("synthesized",), ""),
        raw.WatchRemoved(42 * MS, 2),
    ]


def write(path: Path, stream: list[raw.StreamItem], *, end: bool = True) -> None:
    w = CaptureWriter(path, CaptureHeader(options={"window_ns": 20 * MS}, watches=[(1, b"/w/a")]))
    for item in stream:
        w.write(item)
    if end:
        w.close()
    else:
        w._raw.close()  # simulate a killed writer: no end marker


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


@pytest.mark.parametrize("name", ODD)
def test_names_encode_exactly(name: bytes) -> None:
    assert decode_name(json.loads(json.dumps(encode_name(name)))) == name


@pytest.mark.parametrize("suffix", [".fsncap", ".fsncap.gz"])
def test_round_trip_is_exact_and_gzip_is_detected_by_content(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"c{suffix}"
    write(path, items())
    if suffix.endswith(".gz"):
        assert path.read_bytes()[:2] == b"\x1f\x8b"
        renamed = tmp_path / "no-suffix"
        path.rename(renamed)
        path = renamed
    with CaptureReader(path, strict=True) as reader:
        assert reader.header.watches == [(1, b"/w/a")]
        assert reader.header.options == {"window_ns": 20 * MS}
        assert list(reader) == items()
        assert reader.ended_cleanly


def test_replay_is_deterministic_and_matches_direct_feeding(tmp_path: Path) -> None:
    path = tmp_path / "c.fsncap"
    write(path, items())
    first = [rec_to_json(r) for r in replay(path)]
    assert first == [rec_to_json(r) for r in replay(path)]
    # The same items fed straight into a normalizer set up as the header says, without the capture.
    norm = norm_with((1, b"/w/a"), window_ns=20 * MS)
    direct = [rec for item in items() for rec in norm.feed(item)] + norm.close()
    assert first == [rec_to_json(r) for r in direct]
    assert brief(direct) == [
        ("rename", b"/w/a/x", b"/w/b/" + ODD[1], []),
        ("modify", b"/w/a/" + ODD[0], []),
        ("create", b"/w/a/" + ODD[2], []),
        ("rename", b"/w/a/" + ODD[3], b"", ["timeout"]),
        ("create", b"/w/b/" + ODD[4], ["synthesized"]),
    ]
    assert "dst_b64" not in json.loads(first[0])  # the newline name is valid UTF-8 ...
    assert json.loads(first[1])["path_b64"]  # ... the latin-1 one is not
    assert json.loads(first[3])["flags"] == ["timeout"]


def test_truncated_tail_keeps_every_complete_line(tmp_path: Path) -> None:
    path = tmp_path / "c.fsncap"
    write(path, items())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 7])
    with CaptureReader(path) as reader:
        got = list(reader)
    assert got == items()
    assert [i.message.split(" (")[0] for i in reader.issues][:1] == ["truncated last line"]
    assert reader.issues[0].line == len(lines(path))
    assert reader.issues[0].offset == len(data) - len(data.splitlines(keepends=True)[-1])


def test_truncated_gzip_keeps_what_was_decoded(tmp_path: Path) -> None:
    path = tmp_path / "c.fsncap.gz"
    write(path, items())
    data = path.read_bytes()
    path.write_bytes(data[:-8])  # cut the gzip trailer (CRC and size): every sync-flushed line is still there
    with CaptureReader(path) as reader:
        got = list(reader)
    assert got == items()
    assert len(reader.issues) == 1 and "compressed stream is truncated" in reader.issues[0].message


def test_corrupt_line_is_skipped_named_and_the_rest_is_read(tmp_path: Path) -> None:
    path = tmp_path / "c.fsncap"
    write(path, items())
    ls = lines(path)
    ls[2] = b'["B", 2, 1, [[1, 256, 0, "ok"], [1, "x", 0, "bad"], [1, 4294967296, 0, "big"]]]\n'
    ls[3] = b"{not json\n"
    ls.insert(4, b'["Z", 1]\n')
    path.write_bytes(b"".join(ls))
    with CaptureReader(path) as reader:
        got = list(reader)
    offsets = [sum(len(x) for x in ls[:i]) for i in range(len(ls))]
    assert [(i.line, i.offset) for i in reader.issues] == [(3, offsets[2]), (3, offsets[2]), (4, offsets[3]),
                                                         (5, offsets[4])]
    assert "event 1 skipped" in reader.issues[0].message and "mask" in reader.issues[1].message
    assert "not JSON" in reader.issues[2].message and "unknown line type 'Z'" in reader.issues[3].message
    second = got[1]
    assert isinstance(second, raw.InotifyBatch) and second.events == [(1, 256, 0, b"ok")]
    assert len(got) == len(items()) - 1  # only the corrupt line's batch is gone
    with pytest.raises(CaptureError) as err, CaptureReader(path, strict=True) as strict:
        list(strict)
    assert err.value.line == 3


def test_unknown_mask_bits_are_reported_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "c.fsncap"
    write(path, [batch(1, (1, raw.IN_CREATE | 0x00100000, 0, b"f"))])
    with CaptureReader(path) as reader:
        assert next(iter(reader)).events == [(1, raw.IN_CREATE | 0x00100000, 0, b"f")]  # type: ignore[union-attr]
    assert "unknown mask bits 0x100000" in reader.issues[0].message
    kinds = [r.kind for r in replay(path)]
    assert kinds == ["create", "unknown"]


def test_unknown_version_and_missing_header_are_clear_errors(tmp_path: Path) -> None:
    path = tmp_path / "c.fsncap"
    path.write_bytes(b'{"format":"fsnorm-capture","version":99,"source":"inotify"}\n')
    with pytest.raises(CaptureError, match=r"line 1.*version 99 is not supported"):
        CaptureReader(path)
    path.write_bytes(b'["B",1,1,[]]\n')
    with pytest.raises(CaptureError, match="not an fsnorm capture"):
        CaptureReader(path)
    path.write_bytes(b"")
    with pytest.raises(CaptureError, match="empty file"):
        CaptureReader(path)
    with pytest.raises(CaptureError, match="cannot open"):
        CaptureReader(tmp_path / "missing")


def test_missing_end_marker_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "c.fsncap"
    write(path, items(), end=False)
    with CaptureReader(path) as reader:
        assert list(reader) == items()
    assert "no end marker" in reader.issues[-1].message


def test_writer_reports_a_full_disk_as_a_capture_error() -> None:
    class Full(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def write(self, b: object) -> int:
            raise OSError(28, "No space left on device")

    with pytest.raises(CaptureError, match="No space left"):
        CaptureWriter(Full(), CaptureHeader())  # type: ignore[arg-type]


def fsnorm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "normalizer", *args], capture_output=True, text=True, timeout=60)


def test_cli_replay_reports_damage_without_a_traceback_and_prints_the_valid_records(tmp_path: Path) -> None:
    path = tmp_path / "c.fsncap"
    write(path, items())
    ls = lines(path)
    ls[3] = b"\x00garbage\n"
    path.write_bytes(b"".join(ls))
    res = fsnorm("replay", str(path))
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    assert f"{path}: line 4 (byte offset {sum(map(len, ls[:3]))}): corrupt line" in res.stderr
    kinds = [json.loads(x)["kind"] for x in res.stdout.splitlines()]
    assert kinds == ["rename", "modify", "rename", "create"]
    strict = fsnorm("replay", "--strict", str(path))
    assert strict.returncode == 1 and "Traceback" not in strict.stderr and "line 4" in strict.stderr
    missing = fsnorm("replay", str(tmp_path / "nope.fsncap"))
    assert missing.returncode == 1 and "cannot open capture" in missing.stderr and "Traceback" not in missing.stderr


def test_cli_text_format_and_schema(tmp_path: Path) -> None:
    path = tmp_path / "c.fsncap"
    write(path, items())
    res = fsnorm("replay", "--format", "text", str(path))
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0].startswith("rename      /w/a/x -> /w/b/line")
    schema = json.loads(fsnorm("schema").stdout)
    assert schema["title"] == "fsnorm record"


def test_gzip_stream_is_readable_by_plain_gzip(tmp_path: Path) -> None:
    path = tmp_path / "c.fsncap.gz"
    write(path, items())
    text = gzip.decompress(path.read_bytes()).decode("utf-8")
    assert json.loads(text.splitlines()[0])["format"] == "fsnorm-capture"


def test_backlog_fields_round_trip_and_stay_optional(tmp_path: Path) -> None:
    path = tmp_path / "c.fsncap"
    with_backlog = raw.InotifyBatch(5, False, [(1, raw.IN_MODIFY, 0, b"m")], 4096, 32)
    write(path, [with_backlog, batch(6, (1, raw.IN_MODIFY, 0, b"n"))])
    assert json.loads(lines(path)[1])[4:] == [4096, 32]
    assert len(json.loads(lines(path)[2])) == 4  # no backlog known: the v1 form
    with CaptureReader(path, strict=True) as reader:
        got = list(reader)
    assert got[0] == with_backlog and got[1].backlog is None  # type: ignore[union-attr]


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("suffix", [".fsncap", ".fsncap.gz"])
def test_the_reader_closes_every_file_it_opened(tmp_path: Path, suffix: str) -> None:
    """After close(), and after a bad header, no file the reader opened stays open (GzipFile.close() leaves the
    file under it open; a failed __init__ has no caller to close it). The objects stay referenced here, so a
    file left open shows in /proc/self/fd rather than being closed by the GC."""
    path = tmp_path / f"c{suffix}"
    write(path, items())
    bad = tmp_path / "bad.fsncap"
    bad.write_bytes(b"not a capture\n")
    before = _open_fds()
    with CaptureReader(path) as reader:
        assert list(reader) == items()
    with pytest.raises(CaptureError) as failed:
        CaptureReader(bad)
    assert _open_fds() == before, (reader, failed)
