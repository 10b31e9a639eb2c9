"""The C parser of fanotify read buffers (backends/_fanparse.c) against its Python reference.

``parse_fanotify`` must give exactly what ``_parse_fast`` gives, and None exactly where that raises (then
``parse_batch`` runs the checked parser, whose ValueError names the offset): on valid reads of every info record
type, and on the same reads cut, with a byte flipped, with bytes spliced in or appended, and on random bytes.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from normalizer.backends import fanotify as fan

needs_c = pytest.mark.skipif(fan._c_parse is None, reason="no C fanotify parser (_fanparse not built, or this run "
                             "is the pure one)")
META = struct.Struct("=IBBHQii")


def info(itype: int, body: bytes, pad: int = 0) -> bytes:
    """An info record: type, pad byte, length (header included), the body, ``pad`` zero bytes."""
    return struct.pack("=BBH", itype, 0, 4 + len(body) + pad) + body + b"\0" * pad


def fid(fsid: bytes, handle_type: int, handle: bytes) -> bytes:
    return fsid + struct.pack("=Ii", len(handle), handle_type) + handle


_fids = st.builds(fid, st.binary(min_size=8, max_size=8), st.integers(-2**31, 2**31 - 1), st.binary(max_size=24))
_names = st.binary(max_size=20).map(lambda b: b.replace(b"\0", b"\1")) | st.sampled_from([b".", b""])
_infos = st.one_of(
    st.builds(lambda k, pad: info(1, k, pad), _fids, st.integers(0, 5)),
    st.builds(lambda t, k, nm, pad: info(t, k + nm + b"\0", pad), st.sampled_from([2, 10, 12]), _fids, _names,
              st.integers(0, 5)),
    st.builds(lambda k, pad: info(3, k, pad), _fids, st.integers(0, 5)),
    st.builds(lambda t, body: info(t, body), st.integers(0, 255), st.binary(max_size=24)),
)


def event(mask: int, pid: int, infos: list[bytes], vers: int = 3) -> bytes:
    payload = b"".join(infos)
    return META.pack(24 + len(payload), vers, 0, 24, mask, -1, pid) + payload


@st.composite
def fanotify_reads(draw: st.DrawFn) -> bytes:
    """Bytes as one fanotify read: events with any info records in any order (duplicates included), then maybe
    cut anywhere, a byte flipped, bytes spliced in or appended; or random bytes."""
    if draw(st.integers(0, 5)) == 0:
        return draw(st.binary(max_size=300))
    events = draw(st.lists(st.builds(event, st.integers(0, 2**64 - 1), st.integers(-2**31, 2**31 - 1),
                                     st.lists(_infos, max_size=4)), max_size=6))
    data = bytearray(b"".join(events))
    how = draw(st.sampled_from(["intact", "intact", "cut", "flip", "splice", "tail"]))
    if how == "cut":
        data = data[:draw(st.integers(0, len(data)))]
    elif how == "flip" and data:
        data[draw(st.integers(0, len(data) - 1))] ^= draw(st.integers(1, 255))
    elif how == "splice":
        at = draw(st.integers(0, len(data)))
        data[at:at + draw(st.integers(0, 8))] = draw(st.binary(max_size=24))
    elif how == "tail":
        data += draw(st.binary(max_size=40))
    return bytes(data)


def _reference(data: bytes) -> object:
    try:
        return fan._parse_fast(data)
    except (ValueError, IndexError, struct.error):
        return None


def _outcome(parse: object, data: bytes) -> object:
    try:
        return parse(data)  # type: ignore[operator]
    except ValueError as exc:
        return f"ValueError: {exc}"


@needs_c
@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=fanotify_reads())
def test_c_parser_equals_the_python_fast_parser(data: bytes) -> None:
    assert fan._c_parse is not None
    assert fan._c_parse(data) == _reference(data)


@needs_c
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=fanotify_reads())
def test_parse_batch_gives_the_references_events_and_errors(data: bytes) -> None:
    """What the live source calls: the same events, or the same ValueError (the checked parser's, with the
    offset), whichever parser runs."""
    assert _outcome(fan.parse_batch, data) == _outcome(fan.parse_batch_py, data)


@needs_c
def test_hostile_lengths_give_none_not_a_crash() -> None:
    """Lengths near 2**32 (event, info record, handle) and an info record whose header runs past the buffer."""
    assert fan._c_parse is not None
    good = event(2, 1, [info(2, fid(b"F" * 8, 1, b"h") + b"n\0")])
    cases = [
        META.pack(0xFFFFFFFF, 3, 0, 24, 2, -1, 1),
        META.pack(40, 3, 0, 0xFFFF, 2, -1, 1) + b"\0" * 16,
        META.pack(40, 3, 0, 24, 2, -1, 1) + struct.pack("=BBH8sI", 1, 0, 16, b"F" * 8, 0xFFFFFFFF),
        META.pack(40, 3, 0, 24, 2, -1, 1) + struct.pack("=BBH8sI", 2, 0, 16, b"F" * 8, 0xFFFFFFF0),
        META.pack(28, 3, 0, 24, 2, -1, 1) + struct.pack("=BBH", 9, 0, 4),  # header past the buffer
        good + META.pack(24, 2, 0, 24, 2, -1, 1),  # metadata version 2
        # A DFID / FID record whose handle runs past the record (but not past the buffer).
        META.pack(44, 3, 0, 24, 2, -1, 1) + struct.pack("=BBH8sI", 3, 0, 20, b"F" * 8, 8) + b"hhhh" + good,
        META.pack(44, 3, 0, 24, 2, -1, 1) + struct.pack("=BBH8sI", 1, 0, 20, b"F" * 8, 8) + b"hhhh" + good,
        # A name record whose handle ends exactly at the record's end (no room for a name).
        META.pack(44, 3, 0, 24, 2, -1, 1) + struct.pack("=BBH8sI", 2, 0, 20, b"F" * 8, 0) + b"hhhh" + good,
    ]
    # Info lengths below the 4 bytes of the header, of every record type.
    cases += [META.pack(40, 3, 0, 24, 2, -1, 1) + struct.pack("=BBH", t, 0, n) + b"\0" * 12 + good
              for t in (1, 2, 3, 10, 12, 9) for n in range(4)]
    for data in cases:
        assert fan._c_parse(data) is None
        assert _reference(data) is None
    # A short raw record whose 16-byte header reads into the next event: both take it (the reference does).
    tricky = META.pack(28, 3, 0, 24, 2, -1, 1) + struct.pack("=BBH", 9, 0, 4) + good
    assert fan._c_parse(tricky) == _reference(tricky) is not None


def test_pure_flag_selects_the_python_parser() -> None:
    code = "from normalizer.backends import fanotify as f\nprint(f._c_parse is None)"
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "FSNORM_PURE": "1"}, check=True,
                         capture_output=True, text=True).stdout.split()
    assert out == ["True"]
