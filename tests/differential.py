"""What the compiled and the pure-Python hot paths must agree on, byte for byte (tests/test_compiled.py).

:func:`outcome` turns one input into one text: every record's JSON line (``rec_to_json``) and identity with
its time, every feed's actions, the matcher's counters, and for a capture every item read, every issue and
the strict reader's verdict. The test computes it in-process (compiled) and in a worker process started with
``FSNORM_PURE=1`` (this module run as ``python -m differential``), and compares the two texts.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import sys
from typing import Any

import normalizer
from fuzz.checks import decode_stream
from normalizer.capture.log import CaptureIssue, CaptureReader
from normalizer.capture.replay import replay_reader
from normalizer.cli.formatting import build_output
from normalizer.core.inotify import InotifyNormalizer
from normalizer.errors import CaptureError, FsnormError
from normalizer.formats.jsonl import rec_to_json
from normalizer.records import Rec


def _rec(rec: Rec) -> list[Any]:
    return [rec_to_json(rec), repr(rec.identity()), rec.t_ns, type(rec).__name__, rec.waiting]


_OUTPUT = build_output(argparse.Namespace(format="json"))


def _lines(recs: list[Rec]) -> str:
    """The bytes ``fsnorm watch`` writes for these records (Output.encode: the C writer where built, with
    FSNORM_PURE=1 rec_to_json per record), as hex."""
    return _OUTPUT.encode(recs).hex()


def stream_outcome(data: bytes) -> list[Any]:
    """Feed the structured stream decoded from ``data`` (fuzz/checks.py) to the inotify normalizer."""
    stream = decode_stream(data)
    norm = InotifyNormalizer(**stream.options)
    for wd, path in stream.watches:
        norm.table.add(wd, path)
    out: list[Any] = []
    for item in stream.items:
        fed = norm.feed(item)
        out.append([[_rec(r) for r in fed], [repr(a) for a in fed.actions], _lines(fed)])
    last = norm.close()
    out.append([[_rec(r) for r in last], _lines(last)])
    m = norm.matcher
    out.append([m.pending, m.held, m.overflows, m.pending_high_water, norm.retired_events, norm.dropped_prescan,
                repr(sorted(norm.table.items()))])
    return out


def capture_outcome(data: bytes) -> list[Any]:
    """Read ``data`` as a capture, forgiving then strict: items, issues, replayed records, or the error."""
    out: list[Any] = []
    for strict in (False, True):
        issues: list[CaptureIssue] = []
        items: list[str] = []
        records: list[Any] = []
        try:
            with CaptureReader(io.BytesIO(data), strict=strict, on_issue=issues.append) as reader:
                out.append(repr(reader.header))
                see = items.append
                replayed = list(replay_reader(reader, on_item=lambda it, see=see: see(repr(it))))
                records = [_rec(r) for r in replayed]
                records.append(_lines(replayed))
                out.append(reader.ended_cleanly)
        except (CaptureError, FsnormError) as exc:
            out.append(f"{type(exc).__name__}: {exc}")
        out.extend([items, [str(i) for i in issues], records])
    return out


def parse_outcome(data: bytes) -> list[Any]:
    """``data`` as one inotify read: the live source's parser (C where built, Python with FSNORM_PURE=1) and
    :func:`parse_events` (which also cuts names at an inner NUL), or their errors."""
    from normalizer.backends._inotify_sys import _parse, parse_events

    out: list[Any] = []
    for parse in (lambda: _parse(data, len(data)), lambda: parse_events(data)):
        try:
            out.append([[wd, mask, cookie, name.hex()] for wd, mask, cookie, name in parse()])
        except ValueError as exc:
            out.append(f"ValueError: {exc}")
    return out


def outcome(mode: str, data: bytes) -> str:
    if mode == "parse":
        return json.dumps(parse_outcome(data))
    result = stream_outcome(data) if mode == "stream" else capture_outcome(data)
    return json.dumps(result, ensure_ascii=False)


def main() -> None:
    """Worker loop: ``mode base64`` per line in, the outcome's JSON per line out; first line: the status."""
    print(json.dumps(str(normalizer._compiled.status())), flush=True)
    for line in sys.stdin:
        mode, _, b64 = line.rstrip("\n").partition(" ")
        print(outcome(mode, base64.b64decode(b64)), flush=True)


if __name__ == "__main__":
    main()
