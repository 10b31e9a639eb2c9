"""Replay the wire fuzzer's corpus (tests/corpus/wire/): each input ends in frames and/or one ProtocolError,
within bounded memory, and every frame re-encodes to itself (fuzz/wire_checks.py)."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from fuzz.wire_checks import check_wire

CORPUS = Path(__file__).parent / "corpus" / "wire"


def inputs() -> list[Path]:
    files = sorted(p for p in CORPUS.iterdir() if p.is_file())
    assert len(files) >= 15, "the wire corpus is missing (python -m fuzz.make_wire_corpus)"
    return files


@pytest.mark.timeout(30)
@pytest.mark.parametrize("path", inputs(), ids=lambda p: p.name)
def test_wire_corpus_input(path: Path) -> None:
    data = path.read_bytes()
    tracemalloc.start()
    try:
        outcome = check_wire(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, f"peak {peak >> 20} MiB"
    assert outcome.frames or outcome.error is not None or outcome.pending == len(data) - 1
    if path.name.startswith("vector-"):
        assert outcome.error is None and len(outcome.frames) == 1
    if path.name == "max-length-truncated":
        assert outcome.pending and not outcome.frames
    if path.name in ("huge-length", "http-request", "name-with-slash"):
        assert outcome.error is not None
