"""The typed public API: options are checked at the call, events are kinds, the record type follows
``raw_records``, and mypy sees all of it (the typing test runs mypy on a small user program)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import normalizer
from normalizer.api import make_source, mask_for_events
from normalizer.backends.inotify import EVENT_BITS, InotifySource
from normalizer.errors import SourceError
from normalizer.records import Rec, RenameRecord


def test_a_misspelled_option_is_a_type_error_at_the_call(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="windw_ms"):
        normalizer.watch(tmp_path, windw_ms=5)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="mask"):
        normalizer.watch(tmp_path, mask=2)  # type: ignore[call-arg]


def test_events_are_kinds_and_an_unknown_kind_is_named(tmp_path: Path) -> None:
    assert mask_for_events({"create", "rename"}) == EVENT_BITS["create"] | EVENT_BITS["rename"]
    with pytest.raises(SourceError, match="'crate'"):
        make_source([tmp_path], events={"crate"})
    with pytest.raises(SourceError, match="collection of kinds"):
        make_source([tmp_path], events="create")
    source = make_source([tmp_path], events=["attrib"])
    assert isinstance(source, InotifySource) and source.mask & EVENT_BITS["attrib"]
    assert not source.mask & EVENT_BITS["modify"]


@pytest.mark.parametrize("bad", [-1.0, float("nan")])
def test_a_negative_window_is_refused(tmp_path: Path, bad: float) -> None:
    with pytest.raises(SourceError, match="window_ms must be >= 0"):
        make_source([tmp_path], window_ms=bad)


def test_the_record_type_follows_raw_records(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("x")
    for raw, kind in ((False, RenameRecord), (True, Rec)):
        with normalizer.watch(tmp_path, raw_records=raw, window_ms=60_000) as stream:
            (tmp_path / "a").rename(tmp_path / "b")
            got = []
            while not got:
                got = [r for r in stream.read(5) if r.kind == "rename"]
            assert isinstance(got[0], kind)
        (tmp_path / "b").rename(tmp_path / "a")


USER_PROGRAM = '''
import normalizer
from normalizer.records import Rec, RenameRecord, EventRecord

with normalizer.watch("/tmp", window_ms=5, events={"rename"}) as stream:
    for record in stream:
        reveal_type(record)
with normalizer.watch("/tmp", raw_records=True) as raw:
    for rec in raw:
        reveal_type(rec)
normalizer.watch("/tmp", window=5)
'''


def test_mypy_sees_the_record_types_and_rejects_a_typo(tmp_path: Path) -> None:
    program = tmp_path / "user.py"
    program.write_text(USER_PROGRAM)
    out = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(program)],
                         capture_output=True, text=True, timeout=300, cwd=Path(__file__).parent.parent)
    text = out.stdout
    assert 'Revealed type is "normalizer.records.RenameRecord | normalizer.records.EventRecord"' in text, text
    assert 'Revealed type is "normalizer.core.rec.Rec"' in text, text  # Rec lives in the core (re-exported by records)
    assert 'Unexpected keyword argument "window"' in text, text
