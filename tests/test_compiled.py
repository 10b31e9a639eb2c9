"""The compiled hot path (mypyc, setup.py) against the pure-Python reference: the same records, byte for byte.

A worker process runs the same code with ``FSNORM_PURE=1`` (tests/differential.py); hypothesis feeds both
random structured streams (fuzz/checks.py's decoder: any wd, mask, cookie and name, watch changes, ticks,
notices, time going back) and random captures, valid and damaged (cut, a byte flipped, a line replaced by
garbage, gzip), and every record's JSON, every action, issue and item read must be identical. The corpus of
captures (tests/corpus/) is compared too. Where no compiled path is active (no compiler at install, or this
run itself is the pure one) the comparison would hold trivially: those tests skip, saying why.
"""

from __future__ import annotations

import base64
import gzip
import importlib.machinery
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from differential import outcome
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import normalizer
from fuzz.checks import decode_stream, stream_to_capture
from normalizer import _compiled
from normalizer.backends._inotify_sys import _c_parse, pack_events
from normalizer.formats.fastjson import encode_lines
from normalizer.formats.jsonl import rec_to_json
from normalizer.records import Rec

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "corpus"
STATUS = _compiled.status()
needs_compiled = pytest.mark.skipif(not STATUS.compiled, reason=f"no compiled path to compare: {STATUS}")


class Worker:
    """The pure-Python reference, in its own process."""

    def __init__(self) -> None:
        path = os.pathsep.join([str(ROOT), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])
        env = {**os.environ, "FSNORM_PURE": "1", "PYTHONPATH": path}
        self.proc = subprocess.Popen([sys.executable, "-m", "differential"], cwd=ROOT / "tests", env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.status = json.loads(self.proc.stdout.readline())

    def outcome(self, mode: str, data: bytes) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{mode} {base64.b64encode(data).decode()}\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().rstrip("\n")

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def pure() -> Iterator[Worker]:
    worker = Worker()
    assert worker.status.startswith("pure-Python hot path (FSNORM_PURE=1)"), worker.status
    yield worker
    worker.close()


def _same(pure: Worker, mode: str, data: bytes) -> None:
    mine = outcome(mode, data)
    assert pure.outcome(mode, data) == mine, f"compiled and pure differ on {mode} input {data!r}"


def test_pure_flag_selects_the_sources() -> None:
    code = ("import normalizer.core.matcher as m, normalizer.formats.jsonl as j, normalizer._compiled as c\n"
            "print(m.__file__, j.__file__, c.status().compiled)")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "FSNORM_PURE": "1"}, check=True,
                         capture_output=True, text=True).stdout.split()
    assert out[0].endswith("matcher.py") and out[1].endswith("jsonl.py") and out[2] == "False"


@needs_compiled
def test_this_install_loads_the_compiled_modules() -> None:
    """The editable install built the extensions in place and Python imports them, not the .py files."""
    import importlib

    for name in STATUS.modules:
        module = importlib.import_module(name)
        assert module.__file__ is not None and module.__file__.endswith(".so"), (name, module.__file__)
    assert str(STATUS) == f"compiled hot path (mypyc: {len(STATUS.modules)} modules)"


def _version(env: dict[str, str]) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in ("FSNORM_PURE", "FSNORM_READER")}
    out = subprocess.run([sys.executable, "-m", "normalizer", "--version"], check=True, capture_output=True,
                         text=True, env={**clean, "COLUMNS": "40", **env})
    assert out.stdout.count("\n") == 1, out.stdout  # one line, however narrow the terminal
    return out.stdout.strip()


def _built(module: str) -> bool:
    spec = importlib.util.find_spec(module)
    return spec is not None and isinstance(spec.loader, importlib.machinery.ExtensionFileLoader)


def test_version_says_which_path_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FSNORM_PURE", raising=False)
    default = str(_compiled._decide(_compiled._read_info()))  # what a process without FSNORM_PURE runs
    for env, expect in (({"FSNORM_PURE": "1"}, "pure-Python hot path (FSNORM_PURE=1)"), ({}, default)):
        assert _version(env).startswith(f"fsnorm {normalizer.__version__}, {expect}; C: ")


def test_version_names_the_c_extensions_in_use() -> None:
    """Each C extension is named when it is built and used; FSNORM_PURE turns off the ones with a reference
    that changes output, FSNORM_READER=python the reader thread."""
    reader, writer = _built("normalizer.backends._ringreader"), _built("normalizer.formats._jsonlines")
    decoder, fanparse = _built("normalizer.capture._capline"), _built("normalizer.backends._fanparse")
    expect = [*(["reader thread", "inotify parser"] if reader else []), *(["JSON Lines writer"] if writer else []),
              *(["capture batch decoder"] if decoder else []), *(["fanotify parser"] if fanparse else [])]
    assert _version({}).endswith("; C: " + (", ".join(expect) or "none"))
    assert _version({"FSNORM_PURE": "1"}).endswith("; C: " + ("reader thread" if reader else "none"))
    assert _version({"FSNORM_PURE": "1", "FSNORM_READER": "python"}).endswith("; C: none")


def test_stale_source_falls_back_to_pure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FSNORM_PURE", raising=False)
    info = {"compiled": ["normalizer/core/matcher.py"], "group": "", "note": "",
            "sources": {"normalizer/core/matcher.py": "0" * 64}}
    status = _compiled._decide(info)
    assert not status.compiled and "changed since it was compiled" in status.reason
    assert not _compiled._decide(None).compiled
    assert "no compiler" in _compiled._decide({"compiled": [], "note": "no compiler"}).reason


@needs_compiled
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=600))
def test_streams_give_identical_records(pure: Worker, data: bytes) -> None:
    _same(pure, "stream", data)


@st.composite
def inotify_reads(draw: st.DrawFn) -> bytes:
    """Bytes as one inotify read: valid events (any wd, mask, cookie and name), then maybe cut anywhere, a
    byte flipped (a NUL inside a name, a length past the end) or random bytes appended; or random bytes."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=200))
    events = draw(st.lists(st.tuples(st.integers(-2**31, 2**31 - 1), st.integers(0, 2**32 - 1),
                                     st.integers(0, 2**32 - 1), st.binary(max_size=40)), max_size=12))
    data = bytearray(pack_events((wd, mask, cookie, name.replace(b"\0", b"\1"))
                                 for wd, mask, cookie, name in events))
    how = draw(st.sampled_from(["intact", "cut", "flip", "tail"]))
    if how == "cut":
        data = data[:draw(st.integers(0, len(data)))]
    elif how == "flip" and data:
        data[draw(st.integers(0, len(data) - 1))] ^= draw(st.integers(1, 255))
    elif how == "tail":
        data += draw(st.binary(max_size=40))
    return bytes(data)


needs_c_parser = pytest.mark.skipif(_c_parse is None, reason="no C inotify parser (_ringreader not built, or "
                                    "this run is the pure one)")


@needs_c_parser
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=inotify_reads())
def test_inotify_reads_parse_identically(pure: Worker, data: bytes) -> None:
    """The C parser of the live source (_ringreader.parse_inotify) against the Python reference: the same
    events, and the same ValueError (the C one hands a truncated read to the reference)."""
    _same(pure, "parse", data)


@needs_c_parser
def test_event_tuples_of_both_c_producers_are_untracked_by_the_collector() -> None:
    """The live parser and the capture line decoder build each (wd, mask, cookie, name) with normalizer/_cevent.h:
    ints and bytes, in no cycle, so untracked at once (a storm's events never cost the collector a pass)."""
    import gc

    from normalizer.capture.fastline import parse_batch

    data = pack_events([(1, 256, 0, b"a"), (2, 64, 7, b"b" * 30)])
    live = _c_parse(data, len(data))  # type: ignore[misc]
    assert parse_batch is not None
    fields = parse_batch(b'["B",5,1,[[1,256,0,"a"],[2,64,7,"bbb"]]]\n', 0xFFFFFFFF)
    assert fields is not None
    decoded = fields[2]
    assert live == [(1, 256, 0, b"a"), (2, 64, 7, b"b" * 30)] and decoded == [(1, 256, 0, b"a"), (2, 64, 7, b"bbb")]
    assert not any(gc.is_tracked(ev) for ev in [*live, *decoded])
    assert gc.is_tracked((1, 256, 0, [b"a"]))  # a tuple that could be in a cycle is tracked: the check can fail


def test_pure_flag_selects_the_python_parser_and_json_writer() -> None:
    code = ("from normalizer.backends import _inotify_sys as s\nfrom normalizer.formats import fastjson as f\n"
            "from normalizer.capture import fastline as c\n"
            "print(s._c_parse is None, f.encode_lines is None, c.parse_batch is None)")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "FSNORM_PURE": "1"}, check=True,
                         capture_output=True, text=True).stdout.split()
    assert out == ["True", "True", "True"]


@st.composite
def damaged_captures(draw: st.DrawFn) -> bytes:
    head, _, body = stream_to_capture(decode_stream(draw(st.binary(max_size=300)))).partition(b"\n")
    # The header's clock offset and the end marker's time would make the draws vary: fixed values instead.
    header = {**json.loads(head), "wall_offset_ns": 0}
    body = body[:body.rindex(b'["E",')] + b'["E",0,"closed"]\n'
    capture = json.dumps(header).encode() + b"\n" + body
    how = draw(st.sampled_from(["intact", "cut", "flip", "garbage-line", "gzip-cut", "gzip"]))
    if how in ("gzip", "gzip-cut"):
        capture = gzip.compress(capture, mtime=0)
    if how in ("cut", "gzip-cut"):
        capture = capture[: draw(st.integers(0, len(capture)))]
    elif how == "flip" and capture:
        pos = draw(st.integers(0, len(capture) - 1))
        capture = capture[:pos] + bytes([capture[pos] ^ draw(st.integers(1, 255))]) + capture[pos + 1:]
    elif how == "garbage-line":
        lines = capture.splitlines(keepends=True)
        lines[draw(st.integers(0, len(lines) - 1))] = draw(st.binary(max_size=80)) + b"\n"
        capture = b"".join(lines)
    return capture


@needs_compiled
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=damaged_captures())
def test_captures_give_identical_items_issues_and_records(pure: Worker, data: bytes) -> None:
    _same(pure, "capture", data)


@needs_compiled
@pytest.mark.parametrize("path", sorted(p for p in CORPUS.iterdir() if p.is_file()), ids=lambda p: p.name)
def test_corpus_gives_identical_results(pure: Worker, path: Path) -> None:
    _same(pure, "capture", path.read_bytes())


@needs_compiled
@pytest.mark.parametrize("name", ["demo.fsncap"])
def test_golden_capture_gives_identical_results(pure: Worker, name: str) -> None:
    _same(pure, "capture", (ROOT / "tests" / "data" / name).read_bytes())


#: A byte the writer must escape or check, inside a clean ASCII stretch: at any offset of the 8-byte words the C
#: writer tests at once (formats/_jsonlines.c, has_less/has_byte), and long enough to cross several words.
_SPECIAL = [b'"', b"\\", b"\n", b"\x00", b"\x1f", b" ", b"\x7f", b"\xc3\xa9", b"\xe9", b"\xff", b"\xed\xb2\x80"]
_clean = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e, exclude_characters='"\\'),
                 max_size=40).map(str.encode)
_names = (st.binary(max_size=12) | st.text(max_size=8).map(lambda t: t.encode("utf-8", "surrogatepass"))
          | st.builds(lambda a, c, z: a + c + z, _clean, st.sampled_from(_SPECIAL), _clean) | _clean)
_recs = st.builds(
    lambda kind, path, dst, is_dir, t_ns, mask, cookie, flags, rare: Rec.note(
        kind, b"/w/" + path, is_dir, t_ns, mask, cookie=cookie, flags=flags, **rare) if rare or flags
    else Rec(kind, b"/w/" + path, is_dir, t_ns, mask, cookie, dst),
    st.sampled_from(["rename", "create", "modify", "delete", "overflow"]) | st.text(max_size=6),
    _names, _names | st.just(b""), st.booleans(), st.integers(-2**70, 2**70), st.integers(0, 2**40),
    st.none() | st.integers(-2**66, 2**66), st.just(()) | st.lists(st.sampled_from(["timeout", "x\t"]),
                                                                   max_size=2).map(tuple),
    st.just({}) | st.fixed_dictionaries({}, optional={"message": st.text(max_size=5), "pid": st.integers(0, 99),
                                                      "object_id": st.text(max_size=4) | st.just("\udc80")}))


def _same_lines(recs: list[Rec], end: str) -> None:
    """The C writer's bytes for ``recs`` are the reference's, ``"".join(rec_to_json(r) + end ...)`` encoded as
    Output.encode does; or both raise UnicodeEncodeError (an object_id with a lone surrogate)."""
    try:
        expected: bytes | str = "".join(rec_to_json(r) + end for r in recs).encode("utf-8", "surrogateescape")
    except UnicodeEncodeError as exc:
        expected = type(exc).__name__
    try:
        got: bytes | str = encode_lines(recs, end, rec_to_json)  # type: ignore[misc]
    except UnicodeEncodeError as exc:
        got = type(exc).__name__
    assert got == expected


@pytest.mark.skipif(encode_lines is None, reason="no C JSON Lines writer (_jsonlines not built, or FSNORM_PURE)")
@settings(max_examples=500, deadline=None)
@given(recs=st.lists(_recs, max_size=6), end=st.sampled_from(["\n", "", "\r\n"]))
def test_c_json_lines_equal_rec_to_json(recs: list[Rec], end: str) -> None:
    """The C writer of a read's JSON Lines (formats/_jsonlines.c) against the reference, on any record: names
    that are not UTF-8 or hold quotes, backslashes and control characters, huge or negative ints, flags, the
    rare fields (which the C writer hands to rec_to_json)."""
    _same_lines(recs, end)


@pytest.mark.skipif(encode_lines is None, reason="no C JSON Lines writer (_jsonlines not built, or FSNORM_PURE)")
@pytest.mark.parametrize("special", _SPECIAL)
def test_c_json_lines_escape_a_byte_at_every_offset_of_a_word(special: bytes) -> None:
    """Each byte to escape or check, at every offset 0-24 of a path and of a rename's dst (the C writer copies
    clean 8-byte words whole and goes byte by byte from the first word that holds one); one call with no
    record (the empty output) and one whose paths outgrow the writer's size estimate."""
    recs: list[Rec] = []
    for at in range(25):
        name = b"a" * at + special + b"b" * (24 - at)
        recs += [Rec("create", b"/w/" + name, False, 1, 256), Rec("rename", b"/w/x", False, 2, 192, 7, b"/w/" + name)]
    long = [Rec("rename", b"/w/" + b"p" * 4000, True, 3, 192, 9, b"/w/" + b"q\n" * 3000)] * 5
    for batch in (recs, [], long, recs + long):
        _same_lines(batch, "\n")


class _Interpreted(Rec):
    """An interpreted subclass of the (compiled) record: its fields are the native class's."""


_FIELDS = ("kind", "path", "dst", "is_dir", "t_ns", "mask", "cookie", "flags", "dir_key", "dst_dir_key", "source",
           "pid", "object_id", "message")


def _as(cls: str, rec: Rec) -> Rec:
    """``rec``'s fields in a record of another type (the C writer finds each type's field getters once)."""
    if cls == "Rec":
        return rec
    from normalizer.core.fanotify import FanRec
    from normalizer.core.matcher import Half

    other: Rec = (Half(rec.path, rec.is_dir, rec.t_ns, rec.mask, rec.cookie, 1) if cls == "Half"
                  else FanRec("x", b"", False, 0, 0) if cls == "FanRec" else _Interpreted("x", b"", False, 0, 0))
    for name in _FIELDS:
        setattr(other, name, getattr(rec, name))
    return other


@pytest.mark.skipif(encode_lines is None, reason="no C JSON Lines writer (_jsonlines not built, or FSNORM_PURE)")
@settings(max_examples=300, deadline=None)
@given(recs=st.lists(st.tuples(st.sampled_from(["Rec", "Half", "FanRec", "_Interpreted"]), _recs), max_size=6))
def test_c_json_lines_equal_rec_to_json_for_every_record_type(recs: list[tuple[str, Rec]]) -> None:
    """The same for the record's subclasses, mixed in one call: the matcher's Half, fanotify's FanRec and an
    interpreted subclass (each type's fields are read through getters the writer looks up once per type)."""
    mixed = [_as(cls, rec) for cls, rec in recs]
    _same_lines(mixed, "\n")
