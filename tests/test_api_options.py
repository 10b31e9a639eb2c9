"""The typed public API: options are checked at the call, events are kinds, the record's path type follows the
roots' (and ``raw_records`` gives the internal Rec), and mypy sees all of it (the typing test runs mypy on a
small user program)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import normalizer
from normalizer.api import make_source, mask_for_events
from normalizer.backends.inotify import EVENT_BITS, InotifySource
from normalizer.errors import SourceError
from normalizer.records import Rec


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


@pytest.mark.parametrize(("root", "raw", "kind", "path_type"), [
    (lambda p: p, False, normalizer.Record, str),
    (str, False, normalizer.Record, str),
    (bytes, False, normalizer.Record, bytes),
    (lambda p: p, True, Rec, bytes),
])
def test_the_record_type_follows_the_roots_and_raw_records(
        tmp_path: Path, root: Callable[[Path], object], raw: bool, kind: type, path_type: type) -> None:
    (tmp_path / "a").write_text("x")
    with normalizer.watch(root(tmp_path), raw_records=raw, window_ms=60_000) as stream:  # type: ignore[call-overload]
        (tmp_path / "a").rename(tmp_path / "b")
        got = []
        while not got:
            got = [r for r in stream.read(5) if r.kind == "rename"]
        assert isinstance(got[0], kind)
        assert type(got[0].path) is path_type


USER_PROGRAM = '''
from pathlib import Path

import normalizer
import normalizer.remote

with normalizer.watch("/tmp", window_ms=5, events={"rename"}) as stream:
    for record in stream:
        reveal_type(record)
        reveal_type(record.src)
        reveal_type(record.flags)
with normalizer.watch([b"/tmp"]) as bstream:
    for brecord in bstream:
        reveal_type(brecord.path)
async def main() -> None:
    async with normalizer.awatch(Path("/tmp")) as astream:
        async for arecord in astream:
            reveal_type(arecord)
def callback(r: normalizer.Record[bytes]) -> None: ...
reveal_type(normalizer.run_in_thread(b"/tmp", callback))
for remote in normalizer.remote.subscribe("unix:/x"):
    reveal_type(remote)
with normalizer.watch("/tmp", raw_records=True) as raw:
    for rec in raw:
        reveal_type(rec)
normalizer.watch("/tmp", window=5)
normalizer.watch(["/tmp", b"/tmp"])
record.kind = "create"
'''


def test_mypy_sees_the_record_types_and_rejects_a_typo(tmp_path: Path) -> None:
    program = tmp_path / "user.py"
    program.write_text(USER_PROGRAM)
    out = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(program)],
                         capture_output=True, text=True, timeout=300, cwd=Path(__file__).parent.parent)
    text = out.stdout
    lines = [line.split(": ", 1)[1] for line in text.splitlines() if ": " in line]
    # A NamedTuple is revealed as its tuple of field types with the class as "fallback": keep the class.
    revealed = [re.sub(r"tuple\[.*fallback=(.*)\]", r"\1", line) for line in lines
                if line.startswith("note: Revealed")]
    assert revealed == [
        'note: Revealed type is "normalizer.record.Record[str]"',
        'note: Revealed type is "str | None"',
        'note: Revealed type is "frozenset[str]"',
        'note: Revealed type is "bytes"',
        'note: Revealed type is "normalizer.record.Record[str]"',
        'note: Revealed type is "normalizer.api.Runner[normalizer.record.Record[bytes]]"',
        'note: Revealed type is "normalizer.record.Record[bytes]"',
        'note: Revealed type is "normalizer.core.rec.Rec"',
    ], text
    assert 'Unexpected keyword argument "window"' in text, text
    assert 'List item 1 has incompatible type "bytes"; expected "str | PathLike[str]"' in text, text
    assert 'Property "kind" defined in "Record" is read-only' in text, text
    assert "Any" not in text, text
