"""What every fuzz input must end in, shared by the atheris harnesses and tests/test_fuzz_corpus.py.

Two kinds of input:

* **capture bytes** (:func:`check_capture`): any bytes, read as a capture log. The outcome must be items and
  records and/or typed problems naming their place: :class:`~normalizer.errors.CaptureError` (strict mode, or a
  header that cannot be read) and :class:`~normalizer.capture.log.CaptureIssue` (forgiving mode), each with a
  1-based line and a byte offset. Any other exception is a bug. Records must survive JSON byte for byte, and
  strict mode must give a prefix of what forgiving mode gives.
* **structured streams** (:func:`decode_stream` + :func:`check_stream`): bytes decoded into normalizer options,
  a watch table and stream items (batches with any wd, mask, cookie and name, watch-table changes, ticks,
  notices, time going back). Fed to the sans-IO normalizer, they must give well-formed records (one-sided
  renames carry a reason, joined renames join equal cookies, strict order keeps time order), respect
  ``max_pending``, leave nothing pending or held after ``close``, and give the same records when written to a
  capture and replayed.

Each check raises ``AssertionError`` (or the unexpected exception itself) for a bug, and returns a short
summary otherwise. :func:`known_bug` recognises the bugs already reported, so that a long fuzzing run is not
stopped by them again; the corpus test marks their inputs ``xfail(strict=True)`` instead.
"""

from __future__ import annotations

import io
import itertools
import traceback
from dataclasses import dataclass, field
from typing import Any

from normalizer.capture.log import CaptureHeader, CaptureIssue, CaptureReader, CaptureWriter
from normalizer.capture.replay import replay
from normalizer.core import raw
from normalizer.core.inotify import InotifyNormalizer
from normalizer.errors import CaptureError
from normalizer.formats.jsonl import rec_to_json
from normalizer.records import Rec, model_to_json, record_from_json, to_model

#: Why a one-sided rename may be one-sided (README "Flags").
ONE_SIDED_FROM = frozenset({"timeout", "overflow", "evicted", "cookie_reused", "shutdown", "unwatched"})
KINDS = frozenset({"rename", "create", "delete", "modify", "attrib", "close_write", "close_nowrite", "open",
                   "access", "delete_self", "move_self", "unmount", "overflow", "watch_end", "error", "unknown"})

#: Bugs found and reported, by an id; see :func:`known_bug`.
KNOWN_BUGS: dict[str, str] = {}
#: Fixed: json-recursion, zlib-error, header-options, max-pending, capture-names, tree-trailing-slash (the
#: corpus inputs named bug-* reproduce them; tests/test_fuzz_corpus.py replays them in make test).


def known_bug(exc: BaseException) -> str | None:
    """The id of the already reported, still open bug ``exc`` is an instance of, or None."""
    bug = _classify(exc)
    return bug if bug in KNOWN_BUGS else None


def _classify(exc: BaseException) -> str | None:
    frames = traceback.extract_tb(exc.__traceback__)
    funcs = {f.name for f in frames}
    files = " ".join(f.filename for f in frames)
    if isinstance(exc, RecursionError) and "capture.py" in files:
        return "json-recursion"
    if type(exc).__name__ == "error" and type(exc).__module__ == "zlib":
        return "zlib-error"
    if isinstance(exc, ValueError | TypeError | OverflowError) and ("_settings" in funcs or "normalizer_for" in funcs
                                                                    or "PathFilter" in files or "filters.py" in files):
        return "header-options"
    if isinstance(exc, AssertionError) and str(exc).startswith("max_pending exceeded"):
        return "max-pending"
    if isinstance(exc, AssertionError) and str(exc).startswith("impossible path"):
        return "capture-names"
    if isinstance(exc, KeyError) and "_forget" in funcs:
        return "tree-trailing-slash"
    return None


class _KeepOpen(io.BytesIO):
    """A BytesIO that survives ``close()`` (the capture writer closes its target)."""

    def close(self) -> None:
        pass


def _check_place(line: int | None, offset: int | None, size: int | None) -> None:
    assert line is not None and line >= 1, f"problem without a line: {line!r}"
    assert offset is not None and offset >= 0, f"problem without a byte offset: {offset!r}"
    if size is not None:
        assert offset <= size, f"offset {offset} past the end ({size})"


def check_record(rec: Rec) -> None:
    """A record is well formed and its JSON line reads back to the same model, byte for byte; its paths are
    paths a kernel can give (no NUL, no '.' or '..' component)."""
    assert rec.kind in KINDS, rec
    assert isinstance(rec.path, bytes) and isinstance(rec.dst, bytes), rec
    for path in (rec.path, rec.dst):
        parts = path.split(b"/")[1:]
        assert b"\0" not in path and b"." not in parts and b".." not in parts, f"impossible path {path!r}"
    line = rec_to_json(rec)
    line.encode("utf-8")  # strictly valid UTF-8: no lone surrogates
    model = to_model(rec)
    back = record_from_json(line)
    assert back == model, (line, back, model)
    assert model_to_json(model) == line, (line, model)  # the public record's JSON line is the CLI's
    if rec.kind == "rename":
        flags = set(rec.flags)
        if rec.path and rec.dst:
            assert not flags & ONE_SIDED_FROM, rec
        elif rec.path:
            assert flags & ONE_SIDED_FROM, f"one-sided rename without a reason: {rec!r}"
        else:
            assert "unwatched" in flags, f"move-in without 'unwatched': {rec!r}"


@dataclass
class CaptureOutcome:
    items: int = 0
    records: int = 0
    issues: list[CaptureIssue] = field(default_factory=list)
    error: CaptureError | None = None


def check_capture(data: bytes, *, replay_fanotify: bool = False) -> CaptureOutcome:
    """Read ``data`` as a capture, forgiving and strict, and replay it. See the module docstring."""
    size = None if data[:2] == b"\x1f\x8b" else len(data)
    out = CaptureOutcome()
    # Forgiving read.
    try:
        reader = CaptureReader(io.BytesIO(data))
    except CaptureError as exc:
        _check_place(exc.line, exc.offset, size)
        assert exc.line == 1, f"only the header stops a forgiving read: {exc}"
        out.error = exc
        with_header = False
    else:
        with_header = True
        with reader:
            out.items = sum(1 for _ in reader)
        out.issues = list(reader.issues)
        for issue in out.issues:
            _check_place(issue.line, issue.offset, size)
    # Strict read: fails exactly when the forgiving one found a problem, at the first one.
    try:
        with CaptureReader(io.BytesIO(data), strict=True) as strict:
            n = sum(1 for _ in strict)
        assert with_header and not out.issues, "strict read passed where the forgiving one found problems"
        assert n == out.items
    except CaptureError as exc:
        _check_place(exc.line, exc.offset, size)
        if with_header:
            assert out.issues, f"strict read failed where the forgiving one found nothing: {exc}"
            first = out.issues[0]
            assert (exc.line, exc.offset) == (first.line, first.offset), (exc, first)
    if not with_header:
        return out
    with CaptureReader(io.BytesIO(data)) as reader:
        source = reader.header.source
    if source != "inotify" and not replay_fanotify:
        return out
    # Replay, forgiving and strict: strict gives a prefix of the forgiving records.
    issues: list[CaptureIssue] = []
    recs = list(replay(io.BytesIO(data), on_issue=issues.append))
    for rec in recs:
        check_record(rec)
    out.records = len(recs)
    strict_recs: list[Rec] = []
    try:
        for rec in replay(io.BytesIO(data), strict=True):
            strict_recs.append(rec)
    except CaptureError as exc:
        _check_place(exc.line, exc.offset, size)
    full = [rec_to_json(r) for r in recs]
    assert [rec_to_json(r) for r in strict_recs] == full[: len(strict_recs)], "strict replay is not a prefix"
    return out


# -- structured streams -------------------------------------------------------------------------------------

_BITS = [raw.IN_ACCESS, raw.IN_MODIFY, raw.IN_ATTRIB, raw.IN_CLOSE_WRITE, raw.IN_CLOSE_NOWRITE, raw.IN_OPEN,
         raw.IN_MOVED_FROM, raw.IN_MOVED_TO, raw.IN_CREATE, raw.IN_DELETE, raw.IN_DELETE_SELF, raw.IN_MOVE_SELF,
         raw.IN_UNMOUNT, raw.IN_Q_OVERFLOW, raw.IN_IGNORED]
#: Rename halves are what the matcher is about: make them common.
_COMMON_BITS = [raw.IN_MOVED_FROM, raw.IN_MOVED_TO, raw.IN_MOVED_FROM, raw.IN_MOVED_TO, raw.IN_CREATE,
                raw.IN_MODIFY]
_ODD_BITS = [0, 0x00100000, 0x00010000, 0x08000000, 0x80000000, 0x01000000, 0xFFFFFFFF]
_PATHS = [b"/w", b"/w/a", b"/w/b", b"/w/a/c", b"/x", b"/w/\xff\xfe", b"/w/line\nbreak", b"/", b"/w/"]
_NAMES = [b"", b"a", b"b", b"c", b"d", b"\xff", b"new\nline", b"x" * 255, "é".encode(), b"\x01\x7f"]
_COOKIES = [0, 1, 2, 3, 2**31, 2**32 - 1]
_TIMES = [0, 0, 1, 1000, 5_000_000, 19_999_999, 20_000_000, 25_000_000, 1_000_000_000, 2_000_000_000]
_NOTICE_KINDS = ["create", "delete", "modify", "attrib", "error", "watch_end", "overflow", "unknown"]


class _Bytes:
    """Draws small choices from fuzz bytes; returns 0 once they run out (so every input decodes)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.i = 0

    def left(self) -> int:
        return len(self.data) - self.i

    def u8(self) -> int:
        if self.i >= len(self.data):
            return 0
        self.i += 1
        return self.data[self.i - 1]

    def u32(self) -> int:
        return self.u8() | self.u8() << 8 | self.u8() << 16 | self.u8() << 24

    def pick(self, seq: list[Any]) -> Any:
        return seq[self.u8() % len(seq)]


@dataclass
class Stream:
    """A structured fuzz input: normalizer options, the initial watch table, and the stream items."""

    options: dict[str, Any]
    watches: list[tuple[int, bytes]]
    items: list[raw.StreamItem]


def decode_stream(data: bytes, *, max_items: int = 300) -> Stream:
    """Turn fuzz bytes into a :class:`Stream`. Every byte string is valid input."""
    b = _Bytes(data)
    window = b.pick([0, 1, 20_000_000])
    options: dict[str, Any] = {
        "window_ns": window,
        "max_wait_ns": window + b.pick([0, 5, 100_000_000, 980_000_000]),
        "max_pending": b.pick([1, 2, 3, 8, 65_536]),
        "strict_order": b.u8() % 4 != 0,
    }
    watches = [(wd, b.pick(_PATHS[:6])) for wd in range(1, 1 + b.u8() % 5)]
    items: list[raw.StreamItem] = []
    t = 1_000_000_000
    while b.left() and len(items) < max_items:
        op = b.u8() % 16
        step = b.pick(_TIMES)
        t = max(0, t - step) if op == 15 else t + step  # op 15: time goes back
        if op < 10:
            events: list[raw.InotifyEvent] = []
            for _ in range(b.u8() % 9):
                kind = b.u8() % 8
                if kind < 5:
                    mask = b.pick(_COMMON_BITS)
                elif kind < 7:
                    mask = b.pick(_BITS) | (b.pick(_BITS) if kind == 6 else 0)
                else:
                    mask = b.pick(_ODD_BITS) | b.pick(_BITS)
                if b.u8() % 4 == 0:
                    mask |= raw.IN_ISDIR
                wd = b.pick([-1, 1, 1, 2, 2, 3, 4, 5, 7])
                cookie = b.u32() if b.u8() % 8 == 0 else b.pick(_COOKIES)
                events.append((wd, mask & 0xFFFFFFFF, cookie, b.pick(_NAMES)))
            items.append(raw.InotifyBatch(t, b.u8() % 2 == 0, events))
        elif op == 10:
            items.append(raw.WatchAdded(t, b.pick([1, 2, 3, 4, 5, 7]), b.pick(_PATHS)))
        elif op == 11:
            items.append(raw.WatchRemoved(t, b.pick([1, 2, 3, 4, 5, 7])))
        elif op in (12, 15):
            items.append(raw.Tick(t))
        else:
            kind = b.pick(_NOTICE_KINDS)
            flags = b.pick([(), ("synthesized",), ("synthesized", "unknown_mask")])
            items.append(raw.SourceNotice(t, kind, b.pick(_PATHS) + b.pick([b"", b"/a", b"/b"]), b.u8() % 2 == 0,
                                          flags, b.pick(["", "why"])))
    return Stream(options, watches, items)


def stream_to_capture(stream: Stream) -> bytes:
    """The capture log of ``stream`` (for the corpus: a structured input stored as a readable capture)."""
    buf = _KeepOpen()
    header = CaptureHeader(source="inotify", kernel="fuzz", host="fuzz", created="fuzz", options=stream.options,
                           watches=stream.watches)
    writer = CaptureWriter(buf, header, compress=False)
    for item in stream.items:
        writer.write(item)
    writer.close("closed")
    return buf.getvalue()


def _monotonic(items: list[raw.StreamItem]) -> bool:
    return all(a.t_ns <= b.t_ns for a, b in itertools.pairwise(items))


def check_stream(stream: Stream, *, via_capture: bool = True) -> int:
    """Feed ``stream`` to a normalizer and check the records (module docstring). Returns how many."""
    norm = InotifyNormalizer(**stream.options)
    for wd, path in stream.watches:
        norm.table.add(wd, path)
    max_pending = stream.options["max_pending"]
    recs: list[Rec] = []
    froms = tos = 0
    for item in stream.items:
        if isinstance(item, raw.InotifyBatch):
            for _, mask, _, _ in item.events:
                froms += mask & raw.IN_MOVED_FROM != 0
                tos += mask & raw.IN_MOVED_TO != 0
        recs.extend(norm.feed(item))
        assert norm.matcher.pending <= max_pending, f"max_pending exceeded: {norm.matcher.pending} > {max_pending}"
        if len(recs) > 100_000:
            raise AssertionError("unbounded output")
    recs.extend(norm.close())
    assert norm.matcher.pending == 0 and norm.matcher.held == 0, "close left halves pending or records held"
    joined = 0
    for rec in recs:
        check_record(rec)
        if rec.kind == "rename" and rec.path and rec.dst:
            joined += 1
            assert rec.mask & raw.IN_MOVED_FROM and rec.mask & raw.IN_MOVED_TO, rec
    src_sides = sum(1 for r in recs if r.kind == "rename" and r.path)
    dst_sides = sum(1 for r in recs if r.kind == "rename" and r.dst)
    assert src_sides <= froms and dst_sides <= tos, ("more rename sides than halves", src_sides, froms, dst_sides,
                                                     tos)
    if stream.options["strict_order"] and _monotonic(stream.items):
        times = [r.t_ns for r in recs]
        assert times == sorted(times), "strict order broke the time order of the reads"
    if via_capture:
        data = stream_to_capture(stream)
        issues: list[CaptureIssue] = []
        replayed = list(replay(io.BytesIO(data), on_issue=issues.append))
        assert [(r.identity(), r.t_ns) for r in replayed] == [(r.identity(), r.t_ns) for r in recs], \
            "replay of the capture differs from direct feeding"
        assert all("unknown mask bits" in i.message or "goes back" in i.message for i in issues), issues
    return len(recs)
