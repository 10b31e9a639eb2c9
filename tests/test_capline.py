"""The C decoder of a capture's common batch line (normalizer/capture/_capline.c) against the reference,
``json.loads`` + ``CaptureReader._batch``, on lines as the writer makes them and on damaged ones.

The property: whenever the decoder answers (not None), the reference reads the same line into the very same
batch with no issue; and on the writer's own lines with ordinary names and bits it does answer (so the fast
path is really the one replay takes). tests/test_compiled.py compares whole captures, compiled against pure.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from normalizer.capture.fastline import parse_batch
from normalizer.capture.log import CaptureHeader, CaptureIssue, CaptureReader, CaptureWriter, item_to_json
from normalizer.core import raw

pytestmark = pytest.mark.skipif(parse_batch is None, reason="no C batch line decoder (_capline not built, or "
                                "FSNORM_PURE)")
KNOWN = raw.IN_DELIVERED_BITS


def _line(item: raw.InotifyBatch) -> bytes:
    """The line CaptureWriter writes for ``item``."""
    return json.dumps(item_to_json(item), ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


def _reference(line: bytes) -> tuple[str, list[str]]:
    """What the reader's reference path makes of ``line``: the item's repr (or the error) and the issues."""
    buf = io.BytesIO()
    with CaptureWriter(buf, CaptureHeader(wall_offset_ns=0)) as w:
        header = buf.getvalue()
        w.abort()
    issues: list[CaptureIssue] = []
    reader = CaptureReader(io.BytesIO(header), on_issue=issues.append)
    try:
        obj: Any = json.loads(line)
        item = reader._item(obj, 2, 0)
    except (ValueError, TypeError, IndexError, KeyError, RecursionError) as exc:
        return f"error {type(exc).__name__}", [str(i) for i in issues]
    return repr(item), [str(i) for i in issues]


_plain_names = st.text("abcxyz019_-.#é日", max_size=10).filter(lambda n: n not in (".", "..")).map(str.encode)
_any_names = _plain_names | st.binary(max_size=8)
_any_ints = st.integers(-2**33, 2**34)


def _events(wd: Any, mask: Any, cookie: Any, name: Any) -> Any:
    return st.lists(st.tuples(wd, mask, cookie, name), max_size=6)


def _batch(events: Any) -> Any:
    return st.builds(raw.InotifyBatch, st.integers(0, 10**18 - 1), st.booleans(), events,
                     st.none() | st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))


_common = _batch(_events(st.integers(-1, 2**31 - 1), st.sampled_from([0, raw.IN_CREATE, raw.IN_MOVED_FROM,
                                                                        raw.IN_MOVED_TO | raw.IN_ISDIR, KNOWN]),
                         st.integers(0, 2**32 - 1), _plain_names))


@settings(max_examples=300, deadline=None)
@given(item=_common)
def test_writer_lines_take_the_c_path_and_read_the_same(item: raw.InotifyBatch) -> None:
    if item.backlog is None:
        item = raw.InotifyBatch(item.t_ns, item.drained, item.events)  # nbytes is not written without a backlog
    line = _line(item)
    fields = parse_batch(line, KNOWN)  # type: ignore[misc]
    assert fields is not None, line
    assert repr(raw.InotifyBatch(*fields)) == repr(item)
    assert _reference(line) == (repr(item), [])


_odd = _batch(_events(_any_ints, _any_ints, _any_ints, _any_names))


@st.composite
def _damaged_lines(draw: st.DrawFn) -> bytes:
    line = _line(draw(_common | _odd))
    how = draw(st.sampled_from(["intact", "flip", "cut", "insert", "space"]))
    pos = draw(st.integers(0, max(0, len(line) - 2)))
    if how == "flip":
        line = line[:pos] + bytes([line[pos] ^ draw(st.integers(1, 255))]) + line[pos + 1:]
    elif how == "cut":
        line = line[:pos] + b"\n"
    elif how == "insert":
        line = line[:pos] + draw(st.sampled_from([b"-", b"0", b".5", b"e1", b"\\", b'"', b"/", b"\x80", b"\xed\xa0\x80",
                                                  b"\xc0\xaf", b",", b"]", b"[", b"true", b"1"])) + line[pos:]
    elif how == "space":
        line = line[:pos] + b" " + line[pos:]
    return line


@settings(max_examples=1000, deadline=None)
@given(line=_damaged_lines())
def test_c_answers_only_where_the_reference_agrees(line: bytes) -> None:
    fields = parse_batch(line, KNOWN)  # type: ignore[misc]
    if fields is not None:
        assert _reference(line) == (repr(raw.InotifyBatch(*fields)), [])


@pytest.mark.parametrize("line", [
    b'["B",1,0,[[1,256,0,"a"]]]\n',
    b'["B",1,1,[],5,16]\n',
    b'["B",0,0,[[-1,16384,0,""]]]\n',
    b'["B",1,0,[[1,256,0,"\xc3\xa9\xe6\x97\xa5\xf0\x9f\x98\x80"]]]\n',
])
def test_common_lines_are_decoded_in_c(line: bytes) -> None:
    fields = parse_batch(line, KNOWN)  # type: ignore[misc]
    assert fields is not None
    assert _reference(line) == (repr(raw.InotifyBatch(*fields)), [])


@pytest.mark.parametrize("line", [
    b'["B",1,0,[[1,256,0,"a"]]]',          # no newline
    b'["B",1,0,[[1,256,0,"a"]]] \n',       # whitespace
    b'["B",1,0,[[1,256,0,"a\\n"]]]\n',     # an escape
    b'["B",1,0,[[1,256,0,"a/b"]]]\n',      # a name no kernel gives
    b'["B",1,0,[[1,256,0,".."]]]\n',
    b'["B",1,0,[[1,16777216,0,"a"]]]\n',    # IN_ONLYDIR: a bit no event carries
    b'["B",1,0,[[1,256,0,"\xed\xa0\x80"]]]\n',  # a UTF-8 surrogate
    b'["B",1,0,[[1,256,0,"\xc0\xaf"]]]\n',  # overlong
    b'["B",1,0,[[01,256,0,"a"]]]\n',        # a leading zero
    b'["B",1,2,[]]\n',                      # drained 2
    b'["B",1,0,[],5]\n',                    # a backlog without bytes read
    b'["B",1,0,[],5,16,7]\n',               # an extra field
    b'["B",1234567890123456789,0,[]]\n',    # a time with 19 digits
    b'["B",1,0,[[-2,256,0,"a"]]]\n',
    b'["B",1,0,[[1,4294967296,0,"a"]]]\n',
    b'["T",1]\n',
])
def test_other_lines_are_left_to_the_reference(line: bytes) -> None:
    assert parse_batch(line, KNOWN) is None  # type: ignore[misc]


def test_the_reader_takes_the_c_path_for_common_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    """CaptureReader uses the decoder for an inotify capture's batch lines (and only for those), and reads the
    items the writer wrote."""
    from normalizer.capture import log

    answered: list[bool] = []

    def counting(line: bytes, known: int) -> Any:
        fields = parse_batch(line, known)  # type: ignore[misc]
        answered.append(fields is not None)
        return fields

    monkeypatch.setattr(log, "parse_batch", counting)
    items: list[raw.AnyStreamItem] = [
        raw.InotifyBatch(5, False, [(1, raw.IN_CREATE, 0, b"a"), (1, raw.IN_MOVED_FROM, 7, b"b")], 32, 64),
        raw.Tick(6),
        raw.InotifyBatch(7, True, [(1, raw.IN_MOVED_TO, 7, "c\u00e9".encode())]),
        raw.InotifyBatch(8, True, [(1, raw.IN_MODIFY, 0, b"odd\nname")]),  # escaped in JSON: the reference
    ]
    buf = io.BytesIO()
    w = CaptureWriter(buf, CaptureHeader(watches=[(1, b"/w")]))
    for item in items:
        w.write(item)
    w._write(["E", 9, "closed"])
    reader = CaptureReader(io.BytesIO(buf.getvalue()))
    assert [repr(i) for i in reader] == [repr(i) for i in items]
    assert reader.issues == [] and reader.ended_cleanly
    # Every line is tried: the tick and end lines and the batch with an escaped name go to json.loads.
    assert answered == [True, False, True, False, False]
