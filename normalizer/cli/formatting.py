"""The output options of ``watch``, ``replay`` and ``demo`` (``--format``, ``--timefmt``, ``--no-newline``)
and the writer they make: records -> the bytes of their lines."""

from __future__ import annotations

import argparse
import datetime
from collections.abc import Iterable
from dataclasses import dataclass

from ..clock import WallClock, sample_offset_ns
from ..errors import FormatError, FsnormError
from ..formats import FORMATTERS, Formatter, FormatterFactory, formatter_factory, is_template
from ..formats.context import FormatContext
from ..formats.fastjson import encode_lines
from ..formats.jsonl import rec_to_json
from ..records import Rec

FORMAT_HELP = (
    "output format: json (fsnorm's JSON Lines, `fsnorm schema`), text (one short human line), "
    "ecs (Elastic Common Schema 9.4 JSON, one document per line: @timestamp, event.*, file.*, "
    "file.Ext.original.* for a rename's source, host.name, process.pid, fsnorm.*), "
    "ocsf (OCSF 1.8.0 File System Activity JSON, class_uid 1001: file, file_result for a rename's new file, "
    "time in ms, actor, device, metadata, unmapped.fsnorm), "
    "or an inotifywait --format template such as '%%w%%f %%e': %%w directory (with trailing /), %%f name, "
    "%%e event names comma-separated (a joined rename is MOVED_FROM,MOVED_TO), %%Xe the names separated by X, "
    "%%c cookie (hex), %%T time by --timefmt, %%W%%F where the object is after the event (a rename's "
    "destination; empty for a move out of the tree), %%0 NUL, %%n newline, %%%% percent; names are written as "
    "their raw bytes. docs/formats.md has every mapping"
)


def _format_spec(text: str) -> str:
    try:
        formatter_factory(text)
    except FormatError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def add_format_options(parser: argparse.ArgumentParser, *, default: str) -> None:
    parser.add_argument("--format", type=_format_spec, default=default, metavar="FORMAT",
                        help=f"{FORMAT_HELP} (default {default}; names: {', '.join(sorted(FORMATTERS))})")
    parser.add_argument("--timefmt", metavar="STRFTIME",
                        help="strftime(3) format of a template's %%T, in local time (e.g. '%%F %%T')")
    parser.add_argument("--no-newline", action="store_true",
                        help="with a template: no newline after each record (end it with %%0 for NUL-separated "
                        "output)")


@dataclass(frozen=True, slots=True)
class Output:
    """Formats a read's records into the bytes to write. ``surrogateescape`` turns a template's undecodable
    name bytes back into those bytes; for valid text (every JSON format) it is the plain UTF-8 encode."""

    line: Formatter
    end: str
    clock: WallClock

    def encode(self, records: Iterable[Rec]) -> bytes:
        self.clock.resync()
        fmt, end = self.line, self.end
        if fmt is rec_to_json and encode_lines is not None:  # the same bytes in one C call (formats/fastjson.py)
            return encode_lines(records if isinstance(records, list) else list(records), end, rec_to_json)
        return "".join(fmt(r) + end for r in records).encode("utf-8", "surrogateescape")


def build_output(args: argparse.Namespace, ctx: FormatContext | None = None) -> Output:
    """The writer for ``args.format`` (FormatError for options that do not fit together)."""
    spec: str = args.format
    no_newline = bool(getattr(args, "no_newline", False))
    if no_newline and not is_template(spec):
        raise FormatError("--no-newline is for a --format template only")
    timefmt = getattr(args, "timefmt", None)
    if ctx is None:
        ctx = FormatContext(timefmt=timefmt)
    factory: FormatterFactory = formatter_factory(spec)
    # json and text never read the clock: a fixed one spares the resync (nine clock reads) on every read.
    clock = ctx.clock if needs_context(spec) else WallClock(ctx.clock.offset_ns)
    return Output(factory(ctx), "" if no_newline else "\n", clock)


def needs_context(spec: str) -> bool:
    """Whether the format uses the host or the wall clock (json and text do not)."""
    return spec not in ("json", "text")


def capture_context(path: str, timefmt: str | None) -> FormatContext:
    """The host and wall clock of a capture's session, for replay: the header's ``host`` and
    ``wall_offset_ns``; for a capture without the offset, its ``created`` time against its first timed item.
    A capture that cannot be read gets this host's clock: replay itself reports what is wrong with it."""
    from ..capture.log import CaptureReader

    try:
        with CaptureReader(path, strict=False, on_issue=lambda issue: None) as reader:
            header = reader.header
            offset = header.wall_offset_ns
            if offset is None:
                offset = _offset_from_created(header.created, next(iter(reader), None))
            return FormatContext(host=header.host, clock=WallClock(offset), timefmt=timefmt)
    except (FsnormError, OSError, ValueError, EOFError):
        return FormatContext(clock=WallClock(sample_offset_ns()), timefmt=timefmt)


def _offset_from_created(created: str, first_item: object) -> int:
    t_ns = getattr(first_item, "t_ns", None)
    try:
        wall = datetime.datetime.strptime(created, "%Y-%m-%dT%H:%M:%S%z").timestamp()
    except ValueError:
        return sample_offset_ns()
    return int(wall * 1_000_000_000) - t_ns if isinstance(t_ns, int) else sample_offset_ns()
