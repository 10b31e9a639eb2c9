"""The public record: immutable and typed, exact names through JSON in str and bytes mode, its JSON line equal
to the hot-path writer's, and the schema valid."""

from __future__ import annotations

import copy
import functools
import json
import os
import pickle

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import normalizer
from normalizer.formats.jsonl import rec_to_json
from normalizer.record import (
    REASONS,
    Flag,
    FlagSet,
    Record,
    Side,
    decode_paths,
    from_rec,
    from_rec_str,
    to_json,
)
from normalizer.records import Rec, json_schema, record_from_json

names = st.binary(min_size=1, max_size=255).filter(lambda b: b"/" not in b and b"\0" not in b)
paths = st.lists(names, min_size=1, max_size=4).map(lambda parts: b"/" + b"/".join(parts))
QUALIFIERS = ["after_overflow", "merged", "synthesized", "unknown_mask", "unresolved"]
# Core flag tuples in any order, reasons included: the core appends a reason after qualifiers already set.
core_flags = st.lists(st.sampled_from(["unwatched", "timeout", "overflow", *QUALIFIERS]), max_size=3, unique=True)

SPECIAL = [
    b"/t/caf\xe9",  # latin-1, invalid UTF-8
    b"/t/line\nbreak",
    b"/t/" + b"n" * 255,
    b"/t/\xff\xfe\x80",
    b"/t/quote\"back\\slash\ttab",
    "/t/ünïcødé/😀".encode(),
    b"/t/\x01\x1f\x7f",
]


@functools.cache
def _validator() -> jsonschema.protocols.Validator:
    schema = json_schema()
    return jsonschema.validators.validator_for(schema)(schema)  # type: ignore[no-any-return]


def rec_strategy() -> st.SearchStrategy[Rec]:
    rename = st.builds(
        lambda s, d, f, c, isd: Rec("rename", s, isd, 123, 0xC0, cookie=c, dst=d, flags=tuple(f)),
        st.one_of(st.just(b""), paths), st.one_of(st.just(b""), paths), core_flags,
        st.one_of(st.none(), st.integers(0, 2**32 - 1)), st.booleans(),
    )
    event = st.builds(
        lambda k, p, f, isd, msg, pid, oid: Rec.note(k, p, isd, 5, 0x100, flags=tuple(f), message=msg, pid=pid,
                                                     object_id=oid, source="fanotify" if pid else None),
        st.sampled_from(["create", "delete", "modify", "overflow", "watch_end", "error"]), paths, core_flags,
        st.booleans(), st.one_of(st.none(), st.text(max_size=20)), st.one_of(st.none(), st.integers(1, 2**22)),
        st.one_of(st.none(), st.text("0123456789abcdef", min_size=2, max_size=40)),
    )
    return st.one_of(rename, event)


@settings(max_examples=300, deadline=None)
@given(rec_strategy())
def test_the_record_json_equals_the_hot_path_writer_and_round_trips_in_both_path_types(rec: Rec) -> None:
    line = rec_to_json(rec)
    line.encode("utf-8")  # strictly valid UTF-8, no lone surrogates
    record, text = from_rec(rec), from_rec_str(rec)
    assert to_json(record) == line and to_json(text) == line  # flags keep the core's order, reason included
    assert record_from_json(line) == record
    assert record_from_json(line, str) == text
    assert decode_paths(record) == text
    assert json.loads(line)["flags"] == [str(f) for f in rec.flags]
    if rec.kind == "rename":
        assert (record.src or b"", record.dst or b"") == (rec.path, rec.dst)
        assert os.fsencode(text.src or "") == rec.path and os.fsencode(text.dst or "") == rec.dst
    else:
        assert record.path == rec.path and os.fsencode(text.path) == rec.path
        assert record.src is None and record.dst is None


def record_strategy(path_type: type) -> st.SearchStrategy[Record[str] | Record[bytes]]:
    """Any well-formed Record (not only what the core makes), with paths of ``path_type``."""
    conv = os.fsdecode if path_type is str else (lambda b: b)
    some = paths.map(conv)
    qualifiers = st.frozensets(st.one_of(st.sampled_from(QUALIFIERS),
                                         st.text(min_size=1, max_size=8).filter(lambda f: f not in REASONS)))
    common = {
        "is_dir": st.booleans(), "reason": st.one_of(st.none(), st.sampled_from(sorted(REASONS))),
        "flags": qualifiers, "cookie": st.one_of(st.none(), st.integers(0, 2**32 - 1)),
        "t_ns": st.integers(0, 2**63), "mask": st.integers(0, 2**32 - 1),
        "source": st.sampled_from(["inotify", "fanotify"]), "pid": st.one_of(st.none(), st.integers(0, 2**31)),
        "object_id": st.one_of(st.none(), st.text(max_size=12)), "message": st.one_of(st.none(), st.text()),
        "seq": st.one_of(st.none(), st.integers(0, 2**63)), "epoch": st.one_of(st.none(), st.integers(0, 2**63)),
    }
    empty = conv(b"")

    def rename(src: object, dst: object, **kw: object) -> Record[str] | Record[bytes]:
        return Record("rename", dst or src or empty, src, dst, **kw)  # type: ignore[arg-type, misc]

    renames = st.builds(rename, st.one_of(st.none(), some), st.one_of(st.none(), some), **common)
    events = st.builds(Record, st.sampled_from(["create", "delete", "attrib", "overflow", "rescan", "error"]),
                       st.one_of(st.just(empty), some), src=st.none(), dst=st.none(), **common)
    return st.one_of(renames, events)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([str, bytes]).flatmap(record_strategy))
def test_record_from_json_inverts_to_json_for_any_record(record: Record[str] | Record[bytes]) -> None:
    """Undecodable names included: bytes as they are, str with surrogate escapes (os.fsdecode)."""
    line = to_json(record)
    line.encode("utf-8")
    back = record_from_json(line, type(record.path))
    assert back == record
    assert to_json(back) == line
    _validator().validate({k: v for k, v in json.loads(line).items() if k not in ("seq", "epoch")})


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
    assert parsed.src == path and parsed.dst == path + b"2"
    as_text = record_from_json(line, str)
    assert as_text.src == os.fsdecode(path) and to_json(as_text) == line


def test_required_top_level_keys_for_outside_tools() -> None:
    rename = json.loads(rec_to_json(Rec("rename", b"/a/x", False, 1, 0x40, cookie=3, flags=("timeout",))))
    assert rename["kind"] == "rename" and rename["src"] == "/a/x" and rename["dst"] == ""
    for key in ("is_dir", "cookie", "source", "flags"):
        assert key in rename
    create = json.loads(rec_to_json(Rec("create", b"/a/y", True, 1, 0x40000100)))
    assert create["path"] == "/a/y" and create["is_dir"] is True and create["cookie"] is None


def test_rename_mode_sides_and_path() -> None:
    both = from_rec_str(Rec("rename", b"/a/x", False, 1, 0xC0, 9, b"/b/y"))
    assert (both.mode, both.path, both.src_side, both.dst_side) == (
        "both", "/b/y", Side("/a", "x", "/a/x"), Side("/b", "y", "/b/y"))
    gone = from_rec(Rec("rename", b"/x", False, 1, 0x40, 9, flags=(Flag.TIMEOUT,)))
    assert (gone.mode, gone.path, gone.src, gone.dst, gone.dst_side, gone.reason) == (
        "from", b"/x", b"/x", None, None, "timeout")
    assert gone.src_side == Side(b"/", b"x", b"/x")
    came = from_rec(Rec("rename", b"", True, 1, 0x80, None, b"/w/d", (Flag.UNWATCHED, Flag.AFTER_OVERFLOW)))
    assert (came.mode, came.path, came.src, came.reason, came.flags) == (
        "to", b"/w/d", None, "unwatched", {"after_overflow"})
    assert from_rec(Rec("create", b"/w/f", False, 1, 0x100)).mode is None


def test_a_record_is_immutable_slotted_hashable_and_picklable() -> None:
    record = from_rec(Rec("rename", b"/a", False, 1, 0xC0, 5, flags=(Flag.MERGED, Flag.TIMEOUT)))
    with pytest.raises(AttributeError):
        record.kind = "create"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        record.extra = 1  # type: ignore[attr-defined]
    assert not hasattr(record, "__dict__")
    with pytest.raises(AttributeError):
        record.flags._order = ()  # type: ignore[attr-defined]
    assert isinstance(record.flags, frozenset) and hash(record) == hash(copy.deepcopy(record))
    back = pickle.loads(pickle.dumps(record))
    assert back == record and to_json(back) == to_json(record)
    assert '"flags":["merged","timeout"]' in to_json(back)
    assert record._replace(kind="delete").kind == "delete" and record.kind == "rename"


def test_flags_keep_the_core_order_but_compare_as_sets() -> None:
    """The core appends the reason after a half's qualifiers: ``merged,timeout`` and ``unwatched,merged`` both
    occur, so the JSON order travels with the record; equality ignores it."""
    late = from_rec(Rec("rename", b"/a", False, 1, 0x40, flags=(Flag.MERGED, Flag.TIMEOUT)))
    early = from_rec(Rec("rename", b"/a", False, 1, 0x40, flags=(Flag.TIMEOUT, Flag.MERGED)))
    assert late == early and late.flags == {"merged"} and late.reason == early.reason == "timeout"
    assert '"flags":["merged","timeout"]' in to_json(late)
    assert '"flags":["timeout","merged"]' in to_json(early)
    # Built by hand with a plain frozenset: the reason first, then the qualifiers in Flag order.
    plain = Record("rename", b"/a", b"/a", reason="timeout", flags=frozenset({"unresolved", "merged"}))
    assert '"flags":["timeout","merged","unresolved"]' in to_json(plain)
    # A FlagSet whose remembered reason disagrees with the record's (``_replace``): the canonical order.
    assert '"flags":["evicted","merged"]' in to_json(late._replace(reason="evicted"))
    assert '"flags":["merged"]' in to_json(late._replace(reason=None))
    assert FlagSet.split(["merged", "overflow", "timeout"]) == ("overflow", {"merged", "timeout"})


def test_the_reasons_are_the_first_six_flags() -> None:
    assert {f.value for f in list(Flag)[:6]} == REASONS


def test_remote_fields_and_the_subscribe_json() -> None:
    rec = Rec("create", b"data/x", False, 1, 0x100)
    record = from_rec(rec, 7, 3)
    assert (record.seq, record.epoch) == (7, 3)
    line = to_json(record)
    assert line == rec_to_json(rec)[:-1] + ',"seq":7,"epoch":3}'
    from normalizer.cli.serve import format_remote
    from normalizer.net.wire import WireRec

    got = WireRec("create", b"data/x", False, 1, 0x100)
    got.seq, got.epoch = 7, 3  # type: ignore[attr-defined]  # as the client session sets them
    assert format_remote("json")(got) == line  # what `fsnorm subscribe` prints
    assert record_from_json(line) == record
    with pytest.raises(ValueError, match="seq"):
        record_from_json(rec_to_json(rec)[:-1] + ',"seq":"7"}')


def test_the_public_names() -> None:
    assert normalizer.Record is Record and normalizer.record_to_json is to_json
    assert normalizer.record_from_json is record_from_json
    assert not hasattr(normalizer, "RenameRecord") and not hasattr(normalizer, "EventRecord")


@settings(max_examples=100, deadline=None)
@given(rec_strategy())
def test_every_record_validates_against_the_exported_schema(rec: Rec) -> None:
    _validator().validate(json.loads(rec_to_json(rec)))


def test_schema_rejects_what_the_model_rejects() -> None:
    schema = json_schema()
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"kind": "rename", "src": "/a"}, schema)  # dst missing
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"kind": "teleport", "path": "/a"}, schema)
    with pytest.raises(ValueError):
        record_from_json('{"kind":"create","path":"x","path_b64":"***"}')
    with pytest.raises(ValueError):
        record_from_json('{"kind":"teleport","path":"/a"}')
    with pytest.raises(ValueError):
        record_from_json("not json")
    assert record_from_json('{"kind":"create","path":"/x"}') == Record("create", b"/x")


def test_the_api_does_not_import_pydantic() -> None:
    """pydantic is for the schema and JSON input only: watching costs no pydantic import."""
    import subprocess
    import sys

    code = "import sys, normalizer, normalizer.api; sys.exit('pydantic' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
    code = "import sys, normalizer; normalizer.json_schema(); sys.exit('pydantic' not in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
