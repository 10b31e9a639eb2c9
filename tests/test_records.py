"""The public model: exact bytes through JSON, the fast writer equal to pydantic's, the schema valid."""

from __future__ import annotations

import json

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from normalizer.formats.jsonl import rec_to_json
from normalizer.records import (
    EventRecord,
    Rec,
    RenameRecord,
    json_schema,
    model_to_json,
    record_from_json,
    to_model,
)

names = st.binary(min_size=1, max_size=255).filter(lambda b: b"/" not in b and b"\0" not in b)
paths = st.lists(names, min_size=1, max_size=4).map(lambda parts: b"/" + b"/".join(parts))
flags = st.lists(st.sampled_from(["unwatched", "timeout", "overflow", "merged", "synthesized"]), max_size=3)

SPECIAL = [
    b"/t/caf\xe9",  # latin-1, invalid UTF-8
    b"/t/line\nbreak",
    b"/t/" + b"n" * 255,
    b"/t/\xff\xfe\x80",
    b"/t/quote\"back\\slash\ttab",
    "/t/ünïcødé/😀".encode(),
    b"/t/\x01\x1f\x7f",
]


def rec_strategy() -> st.SearchStrategy[Rec]:
    rename = st.builds(
        lambda s, d, f, c, isd: Rec("rename", s, isd, 123, 0xC0, cookie=c, dst=d, flags=tuple(f)),
        st.one_of(st.just(b""), paths), st.one_of(st.just(b""), paths), flags,
        st.one_of(st.none(), st.integers(0, 2**32 - 1)), st.booleans(),
    )
    event = st.builds(
        lambda k, p, f, isd, msg: Rec.note(k, p, isd, 5, 0x100, flags=tuple(f), message=msg),
        st.sampled_from(["create", "delete", "modify", "overflow", "watch_end", "error"]), paths, flags,
        st.booleans(), st.one_of(st.none(), st.text(max_size=20)),
    )
    return st.one_of(rename, event)


@settings(max_examples=300, deadline=None)
@given(rec_strategy())
def test_fast_json_writer_equals_the_pydantic_model_and_round_trips(rec: Rec) -> None:
    line = rec_to_json(rec)
    assert line == model_to_json(to_model(rec))
    line.encode("utf-8")  # strictly valid UTF-8, no lone surrogates
    back = record_from_json(line)
    assert back == to_model(rec)
    if isinstance(back, RenameRecord):
        assert (back.src, back.dst) == (rec.path, rec.dst)
    else:
        assert back.path == rec.path


@pytest.mark.parametrize("path", SPECIAL)
def test_special_names_survive_json_exactly(path: bytes) -> None:
    rec = Rec("rename", path, False, 1, 0xC0, cookie=0, dst=path + b"2")
    line = rec_to_json(rec)
    obj = json.loads(line)
    valid_utf8 = True
    try:
        path.decode("utf-8")
    except UnicodeDecodeError:
        valid_utf8 = False
    assert ("src_b64" in obj) is not valid_utf8
    parsed = record_from_json(line)
    assert isinstance(parsed, RenameRecord)
    assert parsed.src == path and parsed.dst == path + b"2"


def test_required_top_level_keys_for_outside_tools() -> None:
    rename = json.loads(rec_to_json(Rec("rename", b"/a/x", False, 1, 0x40, cookie=3, flags=("timeout",))))
    assert rename["kind"] == "rename" and rename["src"] == "/a/x" and rename["dst"] == ""
    for key in ("is_dir", "cookie", "source", "flags"):
        assert key in rename
    create = json.loads(rec_to_json(Rec("create", b"/a/y", True, 1, 0x40000100)))
    assert create["path"] == "/a/y" and create["is_dir"] is True and create["cookie"] is None


def test_rename_mode_and_sides() -> None:
    both = RenameRecord(src=b"/a/x", dst=b"/b/y")
    assert both.mode == "both"
    assert both.src_side is not None and both.src_side.dir == b"/a" and both.src_side.name == b"x"
    assert RenameRecord(src=b"/a/x", dst=b"").mode == "from"
    only_to = RenameRecord(src=b"", dst=b"/b/y")
    assert only_to.mode == "to" and only_to.src_side is None


@settings(max_examples=100, deadline=None)
@given(rec_strategy())
def test_every_record_validates_against_the_exported_schema(rec: Rec) -> None:
    jsonschema.validate(json.loads(rec_to_json(rec)), json_schema())


def test_schema_rejects_what_the_model_rejects() -> None:
    schema = json_schema()
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"kind": "rename", "src": "/a"}, schema)  # dst missing
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"kind": "teleport", "path": "/a"}, schema)
    with pytest.raises(ValueError):
        record_from_json('{"kind":"create","path":"x","path_b64":"***"}')
    assert isinstance(record_from_json('{"kind":"create","path":"/x"}'), EventRecord)
