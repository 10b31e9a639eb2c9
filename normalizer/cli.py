"""The ``fsnorm`` command: watch, capture, replay, schema.

Records go to stdout as JSON Lines (one record per line, flushed per record when live); diagnostics go to
stderr as one line each, prefixed ``fsnorm:``. No traceback reaches the user for an expected failure: errors
of fsnorm's own (:class:`~normalizer.errors.FsnormError`) and OS errors become a message and exit status 1
(2 for a usage error).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import TextIO

from . import __version__
from .capture import CaptureIssue
from .errors import FsnormError
from .records import Rec, json_schema, rec_to_json


def format_text(rec: Rec) -> str:
    """A short human line for one record."""
    def show(path: bytes) -> str:
        return path.decode("utf-8", "backslashreplace") if path else "(unwatched)"

    where = f"{show(rec.path)} -> {show(rec.dst)}" if rec.kind == "rename" else show(rec.path) if rec.path else ""
    parts = [f"{rec.kind:<11}", where]
    if rec.is_dir:
        parts.append("[dir]")
    if rec.flags:
        parts.append("{" + ",".join(rec.flags) + "}")
    if rec.message:
        parts.append(f"({rec.message})")
    return " ".join(p for p in parts if p)


FORMATTERS: dict[str, Callable[[Rec], str]] = {"json": rec_to_json, "text": format_text}


def emit(records: Iterable[Rec], fmt: str, out: TextIO, *, flush_each: bool) -> int:
    """Write records; return how many."""
    fmt_one = FORMATTERS[fmt]
    n = 0
    write = out.write
    for rec in records:
        write(fmt_one(rec) + "\n")
        n += 1
        if flush_each:
            out.flush()
    out.flush()
    return n


def _warn(message: str) -> None:
    print(f"fsnorm: {message}", file=sys.stderr, flush=True)


def cmd_schema(args: argparse.Namespace) -> int:
    json.dump(json_schema(), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from .sources.replay import replay

    issues: list[CaptureIssue] = []

    def on_issue(issue: CaptureIssue) -> None:
        issues.append(issue)
        _warn(f"{args.file}: {issue}")

    window_ns = None if args.window is None else int(args.window * 1_000_000)
    records = replay(args.file, strict=args.strict, on_issue=on_issue, window_ns=window_ns,
                     strict_order=False if args.relaxed_order else None)
    emit(records, args.format, sys.stdout, flush_each=False)
    return 1 if issues else 0


def _positive_ms(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fsnorm", description="Clean, ordered records from Linux inotify/fanotify: one record per rename."
    )
    parser.add_argument("--version", action="version", version=f"fsnorm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("replay", help="print the records of a capture log as JSON Lines")
    p.add_argument("file", help="capture file (.fsncap, optionally gzip-compressed)")
    p.add_argument("--strict", action="store_true", help="stop at the first problem in the capture")
    p.add_argument("--format", choices=sorted(FORMATTERS), default="json")
    p.add_argument("--window", type=_positive_ms, metavar="MS",
                   help="override the capture's one-sided move window (milliseconds)")
    p.add_argument("--relaxed-order", action="store_true",
                   help="emit records without waiting behind unresolved rename halves")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("schema", help="print the JSON Schema of a record")
    p.set_defaults(func=cmd_schema)

    try:
        from .sources import live_cli
    except ImportError:  # the live sources are optional at import time (e.g. non-Linux docs builds)
        pass
    else:
        live_cli.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except FsnormError as exc:
        _warn(f"error: {exc}")
        return 1
    except OSError as exc:
        if isinstance(exc, BrokenPipeError):
            _quiet_stdout()
            return 0
        where = f" {os.fsdecode(exc.filename)}" if exc.filename else ""
        _warn(f"error:{where}: {exc.strerror or exc}")
        return 1
    except KeyboardInterrupt:
        return 130


def _quiet_stdout() -> None:
    """After EPIPE (``fsnorm ... | head``), point stdout at /dev/null so the interpreter's final flush is silent."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
