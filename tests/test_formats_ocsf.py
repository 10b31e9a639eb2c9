"""``--format ocsf``: every record is a valid OCSF 1.8.0 File System Activity event, checked against the JSON
Schema generated from the official schema export (PyPI ``ocsf-json-schema``), plus what a schema cannot say
(type_uid arithmetic, captions, which file is which)."""

from __future__ import annotations

import base64
import json
from typing import Any

import jsonschema
import pytest
from format_samples import BAD, OFFSET, T, records, samples
from hypothesis import given, settings
from ocsf_json_schema import OcsfJsonSchemaEmbedded, get_ocsf_schema

from normalizer.formats import make_formatter
from normalizer.formats.context import FormatContext, WallClock
from normalizer.formats.ocsf import ACTIVITY_CAPTIONS, CLASS_UID, OCSF_VERSION
from normalizer.records import Rec

RAW = get_ocsf_schema(version=OCSF_VERSION)
CLASS = RAW["classes"]["file_activity"]
SCHEMA = OcsfJsonSchemaEmbedded(RAW).get_class_schema(class_name="file_activity", profiles=[])
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def fmt(rec: Rec, host: str = "web-1") -> dict[str, Any]:
    line = make_formatter("ocsf", FormatContext(host=host, clock=WallClock(OFFSET)))(rec)
    assert "\n" not in line
    event: dict[str, Any] = json.loads(line)
    return event


def errors(event: dict[str, Any]) -> list[str]:
    return sorted(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in VALIDATOR.iter_errors(event))


def test_the_schema_is_the_file_activity_class_of_the_targeted_version() -> None:
    assert RAW["version"] == OCSF_VERSION == "1.8.0"
    assert CLASS["uid"] == CLASS_UID == 1001 and CLASS["category_uid"] == 1
    assert {"activity_id", "actor", "device", "file", "metadata", "severity_id", "time", "type_uid"} <= set(
        SCHEMA["required"])
    # Our captions are the schema's.
    assert {int(k): v["caption"] for k, v in CLASS["attributes"]["activity_id"]["enum"].items()} == ACTIVITY_CAPTIONS


def test_the_validator_rejects_broken_events() -> None:
    good = fmt(samples()["create"])
    assert errors(good) == []
    bad = json.loads(json.dumps(good))
    bad["activity_id"] = 42
    del bad["actor"]
    bad["file"]["type_id"] = "1"
    bad["device"] = {"type_id": 0}
    bad["file_reslt"] = bad["file"]
    found = errors(bad)
    assert any(e.startswith("activity_id:") for e in found)
    assert any("'actor' is a required property" in e for e in found)
    assert any(e.startswith("file/type_id:") for e in found)
    assert any(e.startswith("device:") for e in found)  # none of hostname, ip, uid, name ... given
    assert any("'file_reslt' was unexpected" in e for e in found)


@pytest.mark.parametrize("name", sorted(samples()))
def test_every_known_record_validates(name: str) -> None:
    rec = samples()[name]
    event = fmt(rec)
    assert errors(event) == []
    activity = event["activity_id"]
    assert event["type_uid"] == CLASS_UID * 100 + activity
    caption = CLASS["attributes"]["type_uid"]["enum"][str(event["type_uid"])]["caption"]
    assert event["type_name"] == caption
    if activity != 99:
        assert event["activity_name"] == ACTIVITY_CAPTIONS[activity]
    else:
        assert event["activity_name"] == rec.kind
    assert event["time"] == (T + OFFSET) // 1_000_000
    assert event["metadata"]["version"] == "1.8.0" and event["metadata"]["product"]["name"] == "fsnorm"
    assert event["device"]["hostname"] == "web-1"
    assert event["unmapped"]["fsnorm"]["kind"] == rec.kind


@pytest.mark.parametrize(("name", "activity"), [
    ("create", 1), ("access", 2), ("modify", 3), ("delete", 4), ("delete_self", 4), ("rename", 5),
    ("move_self", 5), ("attrib", 6), ("unmount", 13), ("open", 14), ("close_write", 99), ("overflow", 99),
    ("watch_end", 99), ("error", 99), ("unknown", 0)])
def test_activity(name: str, activity: int) -> None:
    assert fmt(samples()[name])["activity_id"] == activity


def test_rename_has_file_and_file_result() -> None:
    event = fmt(samples()["rename"])
    assert event["file"] == {"name": "x", "path": "/srv/w/a/x", "parent_folder": "/srv/w/a", "type_id": 1,
                             "type": "Regular File"}
    assert event["file_result"]["path"] == "/srv/w/b/y"
    assert event["unmapped"]["fsnorm"]["cookie"] == 4242
    folder = fmt(samples()["rename_dir"])
    assert folder["file"]["type_id"] == folder["file_result"]["type_id"] == 2


def test_one_sided_renames() -> None:
    out = fmt(samples()["rename_out"])
    assert out["file"]["path"] == "/srv/w/a/x" and "file_result" not in out
    assert out["unmapped"]["fsnorm"]["rename"] == "from"
    moved_in = fmt(samples()["rename_in"])
    assert moved_in["file"] == moved_in["file_result"] and moved_in["file"]["path"] == "/srv/w/a/in.txt"
    assert moved_in["unmapped"]["fsnorm"]["rename"] == "to"


def test_overflow_is_a_failure_with_a_message() -> None:
    event = fmt(samples()["overflow"])
    assert (event["severity_id"], event["status_id"]) == (3, 2)
    assert "events were lost" in event["message"]
    assert event["file"]["name"] == "" and event["file"]["type_id"] == 0


def test_actor_is_the_process_when_the_kernel_names_it() -> None:
    assert fmt(samples()["fanotify_rename"])["actor"] == {"process": {"pid": 4321}}
    assert fmt(samples()["create"])["actor"] == {"app_name": "unknown"}
    assert fmt(samples()["fanotify_pid0"])["actor"] == {"app_name": "unknown"}


def test_names_that_are_not_utf8_are_exact_in_unmapped() -> None:
    event = fmt(samples()["rename_bad_names"])
    assert base64.b64decode(event["unmapped"]["fsnorm"]["src_b64"]) == b"/srv/w/" + BAD
    assert base64.b64decode(event["unmapped"]["fsnorm"]["dst_b64"]) == b"/srv/w/\xff/" + BAD
    assert event["file"]["name"] == BAD.decode("utf-8", "backslashreplace")


def test_an_empty_host_name_still_names_the_device() -> None:
    assert errors(fmt(samples()["create"], host="")) == []


@settings(max_examples=200, deadline=None)
@given(records())
def test_any_record_validates(rec: Rec) -> None:
    event = fmt(rec)
    assert errors(event) == []
    assert event["type_uid"] == CLASS_UID * 100 + event["activity_id"]
