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
