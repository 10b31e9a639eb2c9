"""``--format ecs``: every field is an ECS 9.4 field of the right type (or fsnorm's own / Elastic endpoint's
``file.Ext``), categorization values are ECS's allowed ones, renames follow Elastic's endpoint layout, and
names survive exactly."""

from __future__ import annotations

import base64
import datetime
import json
from pathlib import Path
from typing import Any

import pytest
from format_samples import BAD, OFFSET, T, records, samples
from hypothesis import given, settings

from normalizer.formats import make_formatter
from normalizer.formats.context import FormatContext, WallClock
from normalizer.records import Rec

# Field names, types and allowed values of ECS 9.4.0, extracted from Elastic's npm package @elastic/ecs 9.4.0
# (generated/ecs_flat): tests/data/schemas/README.md says how.
ECS = json.loads((Path(__file__).parent / "data/schemas/ecs-9.4.0-flat.json").read_text())
CUSTOM = ("fsnorm.", "file.Ext.")  # fsnorm's own fields; Elastic endpoint's file.Ext extension


def fmt(rec: Rec) -> dict[str, Any]:
    line = make_formatter("ecs", FormatContext(host="web-1", clock=WallClock(OFFSET)))(rec)
    assert "\n" not in line
    doc: dict[str, Any] = json.loads(line)
    return doc


def flatten(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in doc.items():
        if isinstance(value, dict) and not (prefix + key).startswith("fsnorm"):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def _type_ok(ecs_type: str, value: Any) -> bool:
    if ecs_type == "date":
        return isinstance(value, str) and datetime.datetime.fromisoformat(value.replace("Z", "+00:00")) is not None
    if ecs_type in ("long", "integer"):
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, str)  # keyword, match_only_text, wildcard, constant_keyword


def ecs_problems(doc: dict[str, Any]) -> list[str]:
    """Everything in ``doc`` that ECS 9.4 does not allow (empty: conformant)."""
    problems = []
    flat = flatten(doc)
    for key, value in flat.items():
        if key.startswith(CUSTOM) or key == "fsnorm":
            continue
        spec = ECS.get(key)
        if spec is None:
            problems.append(f"{key}: not an ECS field")
            continue
        values = value if isinstance(value, list) else [value]
        if isinstance(value, list) and "array" not in spec.get("normalize", []):
            problems.append(f"{key}: ECS does not make it an array")
        problems += [f"{key}: {v!r} is not {spec['type']}" for v in values if not _type_ok(spec["type"], v)]
        allowed = {a["name"] for a in spec.get("allowed_values", [])}
        if allowed:
            problems += [f"{key}: {v!r} not allowed" for v in values if v not in allowed]
    expected_types = {a["name"]: set(a.get("expected_event_types", []))
                      for a in ECS["event.category"]["allowed_values"]}
    for category in flat.get("event.category", []):
        problems += [f"event.type {t!r} not expected for category {category!r}"
                     for t in flat.get("event.type", []) if t not in expected_types[category]]
    for key in ("@timestamp", "event.kind", "event.category", "event.type", "event.action", "host.name"):
        if key not in flat:
            problems.append(f"{key}: missing")
    return problems


def test_the_checker_rejects_what_ecs_does_not_allow() -> None:
    good = fmt(samples()["create"])
    assert ecs_problems(good) == []
    bad = json.loads(json.dumps(good))
    bad["event"]["type"] = ["creation", "connection"]
    bad["file"]["pathname"] = "/x"
    bad["process"] = {"pid": "12"}
    bad["event"]["kind"] = "happening"
    assert sorted(ecs_problems(bad)) == sorted([
        "event.type 'connection' not expected for category 'file'", "file.pathname: not an ECS field",
        "process.pid: '12' is not long", "event.kind: 'happening' not allowed"])


@pytest.mark.parametrize("name", sorted(samples()))
def test_every_known_record_is_ecs(name: str) -> None:
    rec = samples()[name]
    doc = fmt(rec)
    assert ecs_problems(doc) == []
    assert doc["event"]["kind"] == "event" and doc["event"]["category"] == ["file"]
    assert doc["host"] == {"name": "web-1"}
    assert doc["fsnorm"]["kind"] == rec.kind
    assert doc["fsnorm"]["flags"] == list(rec.flags)
    assert doc["fsnorm"]["mask"] == rec.mask and doc["fsnorm"]["t_ns"] == rec.t_ns


def test_timestamp_is_the_read_time_in_utc_microseconds() -> None:
    doc = fmt(samples()["create"])
    wall_ns = T + OFFSET
    expected = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC) + datetime.timedelta(microseconds=wall_ns // 1000)
    assert doc["@timestamp"] == expected.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.mark.parametrize(("name", "action", "etype"), [
    ("create", "creation", "creation"), ("delete", "deletion", "deletion"), ("modify", "modification", "change"),
    ("attrib", "attributes_modified", "change"), ("rename", "rename", "change"),
    ("close_write", "close_write", "change"), ("open", "open", "access"), ("overflow", "overflow", "info"),
    ("error", "error", "info"), ("delete_self", "deletion", "deletion")])
def test_action_and_type(name: str, action: str, etype: str) -> None:
    doc = fmt(samples()[name])
    assert (doc["event"]["action"], doc["event"]["type"]) == (action, [etype])


def test_rename_puts_the_destination_in_file_and_the_source_in_file_ext_original() -> None:
    doc = fmt(samples()["rename"])
    assert doc["file"]["path"] == "/srv/w/b/y"
    assert (doc["file"]["name"], doc["file"]["directory"], doc["file"]["type"]) == ("y", "/srv/w/b", "file")
    assert doc["file"]["Ext"]["original"] == {"path": "/srv/w/a/x", "name": "x"}
    assert (doc["fsnorm"]["rename"], doc["fsnorm"]["cookie"]) == ("both", 4242)
    assert fmt(samples()["rename_dir"])["file"]["type"] == "dir"


def test_one_sided_renames_omit_the_unknown_side() -> None:
    out = fmt(samples()["rename_out"])
    assert "path" not in out["file"] and out["file"]["Ext"]["original"]["path"] == "/srv/w/a/x"
    assert (out["fsnorm"]["rename"], out["fsnorm"]["flags"]) == ("from", ["timeout"])
    moved_in = fmt(samples()["rename_in"])
    assert moved_in["file"]["path"] == "/srv/w/a/in.txt" and "Ext" not in moved_in["file"]
    assert moved_in["fsnorm"]["rename"] == "to"
    assert fmt(samples()["rename_out_dir"])["file"] == {"type": "dir", "Ext": {"original": {"path": "/srv/w/a/d",
                                                                                          "name": "d"}}}


def test_overflow_and_error_carry_a_message_and_no_file() -> None:
    over = fmt(samples()["overflow"])
    assert "file" not in over and "events were lost" in over["message"]
    err = fmt(samples()["error"])
    assert err["error"]["message"] == err["message"] == "cannot watch: permission denied"
    assert err["file"]["path"] == "/srv/w/locked"


def test_fanotify_pid_and_object_id() -> None:
    doc = fmt(samples()["fanotify_rename"])
    assert doc["process"] == {"pid": 4321}
    assert (doc["fsnorm"]["object_id"], doc["fsnorm"]["source"]) == ("0a0b0c", "fanotify")
    assert "process" not in fmt(samples()["fanotify_pid0"])  # pid 0: the kernel did not say
    assert "process" not in fmt(samples()["create"])


def test_names_that_are_not_utf8_are_readable_and_exact() -> None:
    doc = fmt(samples()["rename_bad_names"])
    assert base64.b64decode(doc["fsnorm"]["src_b64"]) == b"/srv/w/" + BAD
    assert base64.b64decode(doc["fsnorm"]["dst_b64"]) == b"/srv/w/\xff/" + BAD
    assert doc["file"]["Ext"]["original"]["name"] == BAD.decode("utf-8", "backslashreplace")
    assert doc["file"]["directory"] == "/srv/w/\\xff"
    assert "path_b64" not in fmt(samples()["create"])["fsnorm"]


def _exact(doc: dict[str, Any], text: str | None, key: str) -> bytes:
    b64 = doc["fsnorm"].get(key)
    return base64.b64decode(b64) if b64 is not None else (text or "").encode()


@settings(max_examples=300, deadline=None)
@given(records())
def test_any_record_is_ecs_and_keeps_its_paths_exactly(rec: Rec) -> None:
    doc = fmt(rec)
    assert ecs_problems(doc) == []
    file = doc.get("file", {})
    if rec.kind == "rename":
        assert _exact(doc, file.get("path"), "dst_b64") == rec.dst
        assert _exact(doc, file.get("Ext", {}).get("original", {}).get("path"), "src_b64") == rec.path
    else:
        assert _exact(doc, file.get("path"), "path_b64") == rec.path
