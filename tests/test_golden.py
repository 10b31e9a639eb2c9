"""A capture recorded by `fsnorm demo --capture` on Linux 6.18 replays to the records the live session printed
(tests/data/demo.jsonl was the live output). Pins the capture format and the matcher's behaviour across
versions: a change here is a change users see."""

from __future__ import annotations

from pathlib import Path

from normalizer.capture.replay import replay
from normalizer.formats.jsonl import rec_to_json

DATA = Path(__file__).parent / "data"


def test_demo_capture_replays_to_the_live_records() -> None:
    expected = (DATA / "demo.jsonl").read_text().splitlines()
    got = [rec_to_json(r) for r in replay(DATA / "demo.fsncap", strict=True)]
    assert got == expected
    assert len(expected) == 25


def test_non_utf8_names_have_exact_json_text() -> None:
    """The wire format for names that are not UTF-8, pinned as text written by hand (tests/data/odd-names.jsonl):
    the display string is the name decoded with backslashreplace, the ``<key>_b64`` companion the exact bytes
    in standard base64, after every other key. Both writers (the hot-path one and the pydantic model) must
    produce exactly these lines, and the reader must give the bytes back."""
    from normalizer.records import Rec, model_to_json, record_from_json, to_model

    golden = (DATA / "odd-names.jsonl").read_bytes().decode("utf-8").splitlines()  # strict UTF-8
    recs = [
        Rec("rename", b"/w/caf\xe9", False, 5, 0xC0, 7, b"/w/\xff\nx"),
        Rec("rename", b"/w/ok", True, 6, 0x40000080, 8, b"/w/caf\xe9", ("timeout",)),
        Rec("create", b"/w/caf\xe9", False, 9, 0x100, flags=("merged",)),
    ]
    recs[2].source, recs[2].pid, recs[2].object_id = "fanotify", 42, "0a0b"
    assert [rec_to_json(r) for r in recs] == golden
    assert [model_to_json(to_model(r)) for r in recs] == golden
    back = [record_from_json(line) for line in golden]
    assert [(m.src, m.dst) for m in back[:2]] == [(b"/w/caf\xe9", b"/w/\xff\nx"), (b"/w/ok", b"/w/caf\xe9")]  # type: ignore[union-attr]
    assert back[2].path == b"/w/caf\xe9"  # type: ignore[union-attr]
