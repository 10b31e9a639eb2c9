"""Wire protocol v1 (normalizer/net/wire.py): the spec's test vectors, round trips, and hostile input."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from normalizer.errors import ProtocolError
from normalizer.net import wire
from normalizer.records import Flag, Rec

SPEC = Path(__file__).parent.parent / "docs" / "wire-protocol.md"
_VECTOR = re.compile(r"```hex\n(.*?)```\n\n```json\n(.*?)\n```", re.S)


def vectors() -> list[tuple[str, bytes, dict[str, object], bool]]:
    found = []
    for section in SPEC.read_text().split("## Test vectors", 1)[1].split("\n### `")[1:]:
        name = section.split("`", 1)[0]
        hexa, js = _VECTOR.findall(section)[0]
        found.append((name, bytes.fromhex(hexa.replace("\n", "")), json.loads(js), "decode only" in section))
    assert len(found) >= 10, "the spec's test vectors are missing"
    return found


@pytest.mark.parametrize(("name", "data", "decoded", "decode_only"), vectors(), ids=[v[0] for v in vectors()])
def test_spec_vector(name: str, data: bytes, decoded: dict[str, object], decode_only: bool) -> None:
    (frame,) = wire.decode_all(data)
    assert wire.frame_to_json(frame) == decoded
    if not decode_only:
        assert wire.encode(frame) == data


def test_vector_record_is_the_fsnorm_record() -> None:
    data = {v[0]: v[1] for v in vectors()}
    (frame,) = wire.decode_all(data["record-rename"])
    assert isinstance(frame, wire.Record)
    rec = wire.to_rec(frame)
    assert (rec.kind, rec.path, rec.dst, rec.cookie, rec.flags) == (
        "rename", b"data/src/a.txt", b"data/dst/b.txt", 7, ("after_overflow",))
    (frame,) = wire.decode_all(data["record-fanotify-create"])
    assert isinstance(frame, wire.Record)
    rec = wire.to_rec(frame)
    assert (rec.kind, rec.path, rec.source, rec.pid, rec.object_id) == (
        "create", b"data/n\xe9w", "fanotify", 4242, frame.object_id.hex())
    assert rec.dir_key == frame.a.dir_id if frame.a is not None else False


def test_vector_ids_are_what_a_server_with_that_secret_sends() -> None:
    """The spec's vectors carry the ids :class:`IdMinter` makes with the all-zero secret (the spec says which
    keys): an id in a vector is a digest, never the handle or wd it stands for."""
    from normalizer.net.ids import IdMinter

    minter = IdMinter(bytes(32))
    data = {v[0]: v[1] for v in vectors()}
    for name in ("record-rename", "record-trailing-fields"):
        (frame,) = wire.decode_all(data[name])
        assert isinstance(frame, wire.Record) and frame.a is not None and frame.b is not None
        assert (frame.a.dir_id, frame.b.dir_id) == (minter.dir_id(2), minter.dir_id(3))
    (frame,) = wire.decode_all(data["record-rename-from-only"])
    assert isinstance(frame, wire.Record) and frame.a is not None
    assert frame.a.dir_id == minter.dir_id(2)
    (frame,) = wire.decode_all(data["record-fanotify-create"])
    assert isinstance(frame, wire.Record) and frame.a is not None
    assert frame.object_id == minter.object_id("0a0b0c0d") and frame.a.dir_id == minter.dir_id(b"\x01\x02")
    rec = Rec("rename", b"/r/src/a.txt", False, 1, 192, 7, b"/r/dst/b.txt", (), 2, 3)
    again = wire.from_rec(rec, 42, b"data/src/a.txt", b"data/dst/b.txt", ids=minter)
    assert again.a is not None and again.b is not None
    assert (again.a.dir_id, again.b.dir_id, again.object_id) == (minter.dir_id(2), minter.dir_id(3), b"")


def test_a_stream_of_vectors_in_any_split_gives_the_same_frames() -> None:
    stream = b"".join(v[1] for v in vectors())
    whole = wire.decode_all(stream)
    assert len(whole) == len(vectors())
    for size in (1, 3, 7, 64):
        dec = wire.FrameDecoder()
        got: list[wire.Frame] = []
        for i in range(0, len(stream), size):
            dec.feed(stream[i:i + size])
            got.extend(dec.frames())
        assert got == whole
        assert dec.buffered == 0


# --- round trips --------------------------------------------------------------------------------------------

names = st.binary(min_size=1, max_size=255).filter(lambda b: b"/" not in b and b"\0" not in b)
ids = st.binary(max_size=255)


@st.composite
def sides(draw: st.DrawFn) -> wire.Side:
    name = draw(names)
    head = draw(st.lists(names.filter(lambda n: len(n) < 40), max_size=4))
    path = b"/".join([b"exp", *head, name])
    return wire.Side(path, name, draw(ids))


@st.composite
def records(draw: st.DrawFn) -> wire.Record:
    kind = draw(st.sampled_from(sorted(wire.KIND_CODES)))
    return wire.Record(
        seq=draw(st.integers(0, 2**64 - 1)), kind=kind, a=draw(st.none() | sides()),
        b=draw(st.none() | sides()) if kind == "rename" else None, is_dir=draw(st.booleans()),
        flags=tuple(f for f in map(str, Flag) if draw(st.booleans())),
        cookie=draw(st.none() | st.integers(0, 2**32 - 1)), pid=draw(st.none() | st.integers(0, 2**32 - 1)),
        mask=draw(st.integers(0, 2**32 - 1)), t_ns=draw(st.integers(0, 2**64 - 1)),
        source=draw(st.sampled_from(wire.SOURCES)), object_id=draw(ids),
        message=draw(st.none() | st.text(max_size=100)), kind_code=wire.KIND_CODES[kind])


@settings(max_examples=300, deadline=None)
@given(records())
def test_record_round_trip(rec: wire.Record) -> None:
    data = wire.encode(rec)
    assert len(data) <= wire.HEADER.size + wire.MAX_BODY
    assert wire.decode_all(data) == [rec]


@settings(max_examples=100, deadline=None)
@given(st.lists(records(), min_size=1, max_size=5), st.integers(1, 200))
def test_records_in_any_chunking(recs: list[wire.Record], chunk: int) -> None:
    data = b"".join(map(wire.encode, recs))
    dec = wire.FrameDecoder()
    out: list[wire.Frame] = []
    for i in range(0, len(data), chunk):
        dec.feed(data[i:i + chunk])
        out.extend(dec.frames())
    assert out == recs


def test_rec_round_trip_through_the_wire() -> None:
    rec = Rec.note("rename", b"/srv/x/a", True, 5, 0x40, flags=(Flag.TIMEOUT, Flag.MERGED), source="fanotify",
                   pid=9, object_id="deadbeef", cookie=None)
    rec.dst = b"/srv/x/b"
    (frame,) = wire.decode_all(wire.encode(wire.from_rec(rec, 3, b"x/a", b"x/b")))
    assert isinstance(frame, wire.Record)
    back = wire.to_rec(frame)
    assert (back.kind, back.path, back.dst, back.is_dir, set(back.flags), back.source, back.pid, back.object_id,
            back.t_ns, back.mask) == ("rename", b"x/a", b"x/b", True, {"timeout", "merged"}, "fanotify", 9,
                                      "deadbeef", 5, 0x40)


# --- forward compatibility -----------------------------------------------------------------------------------

def test_unknown_frames_flag_bits_and_kind_codes_are_skipped() -> None:
    rec = wire.Record(seq=1, kind="create", a=wire.Side(b"e/f", b"f"), kind_code=2)
    body = bytearray(wire.encode(rec)[wire.HEADER.size:])
    struct.pack_into("<I", body, 8, struct.unpack_from("<I", body, 8)[0] | (1 << 30))  # unknown flag bit
    body[12] = 200  # unknown kind code
    stream = wire.HEADER.pack(5, 4000, 0) + b"later" + wire.HEADER.pack(len(body), wire.T_RECORD, 0xFFFF) + body
    unknown, got = wire.decode_all(bytes(stream))
    assert unknown == wire.UnknownFrame(4000, b"later")
    assert isinstance(got, wire.Record)
    assert (got.kind, got.kind_code, got.a, got.flags) == ("unknown", 200, rec.a, ())


# --- hostile input ---------------------------------------------------------------------------------------------

def test_huge_length_is_refused_from_the_header_alone() -> None:
    dec = wire.FrameDecoder()
    dec.feed(wire.HEADER.pack(0xFFFFFFFF, wire.T_RECORD, 0))
    with pytest.raises(ProtocolError, match="at most 65536"):
        dec.next_frame()
    with pytest.raises(ProtocolError):  # stays failed, buffers nothing more
        dec.feed(b"x" * 100)
    assert dec.buffered == 0


def test_feeding_without_reading_is_bounded() -> None:
    dec = wire.FrameDecoder()
    frame = wire.encode(wire.Hello())
    with pytest.raises(ProtocolError, match="not read"):
        for _ in range(100_000):
            dec.feed(frame)
    assert dec.buffered == 0


def test_every_truncation_of_a_record_waits_or_fails_typed() -> None:
    full = wire.encode(wire.Record(seq=1, kind="rename", a=wire.Side(b"e/a", b"a"), b=wire.Side(b"e/b", b"b"),
                                   message="m", kind_code=1))
    for cut in range(len(full)):
        dec = wire.FrameDecoder()
        dec.feed(full[:cut])
        assert dec.next_frame() is None  # a prefix is only "need more"
        if cut:
            with pytest.raises(ProtocolError, match="truncated"):
                wire.decode_all(full[:cut])
    # A body cut short *inside* its announced length is a truncated frame, not a crash.
    body = full[wire.HEADER.size:]
    for cut in range(len(body)):
        with pytest.raises(ProtocolError):
            wire.decode_all(wire.HEADER.pack(cut, wire.T_RECORD, 0) + body[:cut])


@pytest.mark.parametrize("bad", [b"a/b", b"x\0y"])
def test_bad_names_are_refused_both_ways(bad: bytes) -> None:
    with pytest.raises(ProtocolError):
        wire.encode(wire.Record(seq=1, kind="create", a=wire.Side(b"e/x", bad), kind_code=2))
    good = wire.encode(wire.Record(seq=1, kind="create", a=wire.Side(b"e/x", b"x" * len(bad)), kind_code=2))
    with pytest.raises(ProtocolError, match="bad name"):
        wire.decode_all(good.replace(b"x" * len(bad), bad, 1))


def test_names_over_name_max_and_absolute_paths_are_refused() -> None:
    with pytest.raises(ProtocolError, match="at most 255"):
        wire.encode(wire.Record(seq=1, kind="create", a=wire.Side(b"e/x", b"x" * 256), kind_code=2))
    with pytest.raises(ProtocolError, match="bad export path"):
        wire.encode(wire.Record(seq=1, kind="create", a=wire.Side(b"/etc/passwd", b"passwd"), kind_code=2))
    with pytest.raises(ProtocolError, match="bad HELLO magic"):
        wire.decode_all(wire.HEADER.pack(7, wire.T_HELLO, 0) + b"HTTP\x01\x01\x00")


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000), st.integers(1, 300))
def test_garbage_gives_frames_or_a_protocol_error(data: bytes, chunk: int) -> None:
    dec = wire.FrameDecoder()
    try:
        for i in range(0, len(data), chunk):
            dec.feed(data[i:i + chunk])
            for frame in dec.frames():
                wire.frame_to_json(frame)
            assert dec.buffered <= wire.HEADER.size + wire.MAX_BODY + chunk
    except ProtocolError as exc:
        assert exc.code == wire.E_PROTOCOL
