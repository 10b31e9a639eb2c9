"""Replay the fuzzing corpus (tests/corpus/): every input ends in records and/or typed problems naming their
place (CaptureError / CaptureIssue with line and offset) - never a hang, an unbounded allocation or an uncaught
exception. Captures that read cleanly are also fed to the normalizer directly as structured streams.

The seeds come from ``python -m fuzz.make_corpus``; the fuzzers' findings are added with ``python -m fuzz.save``.
Inputs that reproduce a reported bug are ``xfail(strict=True)`` until it is fixed (``KNOWN`` below).
"""

from __future__ import annotations

import io
import tracemalloc
from pathlib import Path

import pytest

from fuzz.checks import KNOWN_BUGS, Stream, check_capture, check_stream
from normalizer.capture.log import CaptureReader
from normalizer.core import raw
from normalizer.errors import CaptureError

CORPUS = Path(__file__).parent / "corpus"
#: Corpus file -> the reported bug it reproduces (fuzz.checks.KNOWN_BUGS). Remove an entry when its bug is fixed.
KNOWN: dict[str, str] = {}  # all the bugs the corpus found are fixed (see git history of fuzz/checks.py)
#: Peak Python allocation allowed while checking one corpus input (each is at most a few hundred KiB).
MEMORY_LIMIT = 64 << 20


def corpus() -> list[object]:
    files = sorted(p for p in CORPUS.iterdir() if p.is_file() and not p.name.startswith("."))
    assert len(files) >= 30, "the corpus is missing (python -m fuzz.make_corpus)"
    assert all(p.stat().st_size <= 256 << 10 for p in files), "corpus files stay small"
    params: list[object] = []
    for p in files:
        bug = KNOWN.get(p.name)
        marks = [pytest.mark.xfail(strict=True, reason=f"bug: {KNOWN_BUGS[bug]}")] if bug else []
        params.append(pytest.param(p, marks=marks, id=p.name))
    return params


def as_stream(data: bytes) -> Stream | None:
    """The structured stream a capture holds, if it reads without damage (else None)."""
    try:
        with CaptureReader(io.BytesIO(data)) as reader:
            items = list(reader)
            header = reader.header
    except CaptureError:
        return None
    if header.source != "inotify" or any("unknown mask" not in i.message and "goes back" not in i.message
                                         for i in reader.issues):
        return None
    options = {k: header.options[k] for k in ("window_ns", "max_wait_ns", "max_pending", "strict_order")
               if k in header.options}
    options.setdefault("max_pending", 65_536)
    options.setdefault("strict_order", True)
    inotify_items = [i for i in items if isinstance(i, raw.InotifyBatch | raw.WatchAdded | raw.WatchRemoved |
                                                    raw.Tick | raw.SourceNotice)]
    return Stream(options, list(header.watches), inotify_items)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("path", corpus())
def test_corpus_input_ends_in_records_and_typed_problems(path: Path) -> None:
    data = path.read_bytes()
    tracemalloc.start()
    try:
        outcome = check_capture(data)
        stream = as_stream(data)
        if stream is not None:
            check_stream(stream, via_capture=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < MEMORY_LIMIT, f"peak {peak >> 20} MiB"
    assert outcome.error is not None or outcome.items or outcome.issues or data.count(b"\n") <= 2


def test_every_known_bug_has_a_corpus_input() -> None:
    assert set(KNOWN) <= {p.name for p in CORPUS.iterdir()}
    assert set(KNOWN.values()) <= set(KNOWN_BUGS)
