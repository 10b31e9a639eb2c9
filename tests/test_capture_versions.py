"""fanotify capture format versions 2 and 3 (docs/capture-format.md, "Versioning").

Version 3 puts the answers to the directory handles a batch names (``H`` items) *after* that batch: the core
asks for them with ``Resolve`` actions and holds the batch until answered. Version-2 captures (answers before
their batch) must still replay to the records they gave; tests/data/fanotify-v2.fsncap was written by fsnorm
0e02df8 (before this change) on Linux 6.18 with a filesystem mark (activity outside the tree, a directory
moved in with content, renames, a move out), and tests/data/fanotify-v2.jsonl is that version's replay."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from normalizer.backends.fanotify import FanotifySource
from normalizer.capture.replay import replay
from normalizer.formats.jsonl import rec_to_json

DATA = Path(__file__).parent / "data"


def test_a_version_2_capture_replays_to_the_records_it_gave() -> None:
    expected = (DATA / "fanotify-v2.jsonl").read_text().splitlines()
    # Not strict: version 2 wrote an answer (timed when resolved) before its batch (timed at the read), so its
    # timestamps go back there, which a strict reader reports.
    got = [rec_to_json(r) for r in replay(DATA / "fanotify-v2.fsncap", strict=False)]
    assert got == expected
    assert len(expected) == 16


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (filesystem mark, a tmpfs of its own)")
def test_a_version_3_capture_answers_after_its_batch_and_replays_strictly(tmp_path: Path) -> None:
    """Live, with a filesystem mark: a file written outside the tree names a directory handle fsnorm never
    saw. The capture holds the batch, then the answer (``outside``), in time order, and replays (strictly) to
    the live records."""
    base = tmp_path / "fs"
    base.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "fsnorm-v3cap", str(base)], check=True)
    try:
        w, outside = base / "w", base / "outside"
        (w / "d").mkdir(parents=True)
        outside.mkdir()
        capture = tmp_path / "v3.fsncap"
        src = FanotifySource([w], mark_mode="filesystem", capture=capture)
        src.open()
        (outside / "x").write_text("x")
        (w / "d/g").write_text("g")
        os.rename(w / "d/g", w / "d/h")
        recs = []
        end = time.monotonic() + 2
        while time.monotonic() < end and not any(r.kind == "rename" for r in recs):
            recs += src.read(0.05)
        recs += src.close()
    finally:
        subprocess.run(["umount", "-l", str(base)], check=False)
    lines = [json.loads(line) for line in capture.read_text().splitlines()]
    assert lines[0]["version"] == 3
    tags = [line[0] for line in lines[1:]]
    first_batch = tags.index("F")
    answers = [i for i, line in enumerate(lines[1:]) if line[0] == "H" and "outside" in line]
    assert answers and min(answers) > first_batch, tags  # the answer comes after the batch that asked
    times = [line[1] for line in lines[1:]]
    assert times == sorted(times), "timestamps never go back"
    assert [rec_to_json(r) for r in replay(capture, strict=True)] == [rec_to_json(r) for r in recs]
    assert [(r.kind, os.path.basename(r.path)) for r in recs if r.kind in ("create", "rename")] == \
        [("create", b"g"), ("rename", b"g")]
