"""The ``fsnorm`` command: watch, capture, replay, stats, schema.

Records go to stdout as JSON Lines (one record per line, flushed per record when live); diagnostics go to
stderr as one line each, prefixed ``fsnorm:``. No traceback reaches the user for an expected failure: errors
of fsnorm's own (:class:`~normalizer.errors.FsnormError`) and OS errors become a message and exit status 1
(2 for a usage error).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, BinaryIO, TextIO

from .. import __version__, _compiled
from ..backends.priority import DEFAULT_CLI_BOOST, MAX_BOOST, check_boost, default_cli_boost
from ..backends.sched import DEFAULT_SLICE_US, MAX_SLICE_US, MIN_SLICE_US, SliceError, check_slice_us, request_slice
from ..capture.log import CaptureIssue
from ..errors import FsnormError
from ..records import Rec, json_schema
from ..sinks.fd import write_all
from . import nats as nats_cli
from . import roots as roots_cli
from . import stats as stats_command
from .formatting import Output, add_format_options, build_output, capture_context, needs_context
from .tuning import tune_process

if TYPE_CHECKING:
    from ..api import WatchOptions
    from ..backends.base import LiveSource


def emit(chunks: Iterable[list[Rec]], output: Output, out: BinaryIO, *, chunk: int = 1024) -> None:
    """Write records, one line each, given as lists (replay: a stream with an end, so writing ``chunk`` records
    at a time is fine). Lists, not single records: the loop runs once per read of the capture, not per record
    (this module is interpreted). 1,024 records make about 256 KiB of JSON Lines, which stay in the cache and
    in the heap: 4,096 (1 MiB, page faults on every fresh buffer) cost 7% more CPU per event, 16,384 45% more
    (benchmarks/README.md, "Replay and matcher measures")."""
    batch: list[Rec] = []
    for recs in chunks:
        batch += recs
        if len(batch) >= chunk:
            out.write(output.encode(batch))
            batch = []
    out.write(output.encode(batch))
    out.flush()


def _warn(message: str) -> None:
    print(f"fsnorm: {message}", file=sys.stderr, flush=True)


def cmd_schema(args: argparse.Namespace) -> int:
    json.dump(json_schema(), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from ..capture.replay import replay_chunks
    from .progress import Progress, open_capture, wanted

    issues: list[CaptureIssue] = []

    def on_issue(issue: CaptureIssue) -> None:
        issues.append(issue)
        _warn(f"{args.file}: {issue}")

    ctx = capture_context(args.file, args.timefmt) if needs_context(args.format) else None
    output = build_output(args, ctx)
    window_ns = None if args.window is None else int(args.window * 1_000_000)
    f, size = open_capture(args.file)
    progress = Progress(size, enabled=wanted(args.quiet), desc="replay")
    progress.track(f, size)
    try:
        with f:
            chunks = replay_chunks(f, strict=args.strict, on_issue=on_issue, window_ns=window_ns,
                                   strict_order=False if args.relaxed_order else None, on_item=progress.item)
            sys.stdout.flush()
            tune_process()
            emit(chunks, output, sys.stdout.buffer)
    finally:
        progress.close()
    return 1 if issues else 0


def _source_options(args: argparse.Namespace, capture: str | None = None) -> WatchOptions:
    """The API options the live commands' flags stand for."""
    options: WatchOptions = {"backend": args.backend, "strict_order": not args.relaxed_order,
                             "include": args.include, "exclude": args.exclude, "rescan": args.rescan,
                             "capture": capture}
    if args.window is not None:
        options["window_ms"] = args.window
    if args.max_pending is not None:
        options["max_pending"] = args.max_pending
    if args.events is not None:
        options["events"] = args.events
    options.update(roots_cli.source_options(args))
    if args.read_buffer is not None:
        options["read_buffer"] = args.read_buffer
    options["sched_slice_us"] = args.sched_slice
    options["priority_boost"] = default_cli_boost() if args.priority_boost is None else args.priority_boost
    return options


def _checked_int(text: str, check: Callable[[int], None], unit: str) -> int:
    """An integer option's value, ``check``'s ValueError as the usage error; ``unit`` names what a value
    that is not a number should have been."""
    try:
        value = int(text)
        check(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc) if text.strip().lstrip("-").isdigit()
                                         else f"not a number of {unit}: {text!r}") from None
    return value


def _priority_boost(text: str) -> int:
    """``N`` of ``--priority-boost``: 0 to 39 nice levels."""
    return _checked_int(text, check_boost, "nice levels")


def report_priority(args: argparse.Namespace, source: LiveSource) -> None:
    """Say once what of an explicit ``--priority-boost`` was not applied. The default boost is taken where
    fsnorm may (root, CAP_SYS_NICE, RLIMIT_NICE) and skipped quietly elsewhere: an unprivileged ``fsnorm
    watch`` is not told on every start about a priority it never asked for."""
    got = source.priority
    if args.priority_boost and got is not None and got.error is not None:
        _warn(f"warning: priority boost of {got.boost} not (fully) applied ({got.error}); watching goes on")


def _slice_us(text: str) -> int:
    """``USEC`` of ``--sched-slice``: 0 or within the kernel's bounds."""
    return _checked_int(text, check_slice_us, "microseconds")


def _request_process_slice(us: int) -> None:
    """The CLI's process is fsnorm's own: every thread of it (the loop that reads, parses and writes, the
    reader thread, a sink's) gets the slice, asked for here before any is started (threads inherit it). A
    refusal is said once; watching goes on with the kernel's default."""
    if not us:
        return
    try:
        request_slice(us)
    except SliceError as exc:
        _warn(f"warning: scheduler slice of {us} us not set ({exc.strerror}); going on with the kernel's default")


def _run_live(args: argparse.Namespace, *, capture: str | None, out: TextIO | None,
              publish: Callable[[Sequence[Rec]], None] | None = None) -> int:
    """Watch until SIGINT/SIGTERM; then read what was queued, flush pending halves, close the capture, exit 0.

    If the capture cannot be written (disk full), ``watch`` says so on stderr (and in an ``error`` record) and
    goes on without it; ``capture``, whose only job it is, stops and exits 1."""
    from ..api import make_source

    output = build_output(args) if out is not None else None
    _request_process_slice(args.sched_slice)
    source = make_source(args.paths, **_source_options(args, capture))
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        source.wake()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    out_fd = -1
    if out is not None:
        out.flush()
        out_fd = out.fileno()
    capture_failed = False
    previous_wakeup = -1
    try:
        records = source.open()
        report_priority(args, source)
        tune_process()
        # A signal that arrives just before poll() would otherwise only be handled when poll returns (never,
        # if nothing happens): the C-level handler writes to the source's wake pipe instead.
        previous_wakeup = signal.set_wakeup_fd(source.wakeup_fd(), warn_on_full_buffer=False)
        while True:
            if publish is not None and records:
                publish(records)  # spooled before printed: a record seen on stdout survives a kill
            if output is not None and records:
                write_all(out_fd, output.encode(records))
            if source.capture_error is not None and not capture_failed:
                capture_failed = True
                _warn(f"error: {source.capture_error}")
                if out is None:
                    break
            if stopping:
                break
            records = source.read(None)
        last = source.close("signal")
        if publish is not None and last:
            publish(last)
        if output is not None and last:
            write_all(out_fd, output.encode(last))
    finally:
        signal.set_wakeup_fd(previous_wakeup)
        source.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    stats = source.stats
    _warn(f"stopped: {stats['events']} events read, {stats['records']} records, {stats['overflows']} overflows")
    return 1 if capture_failed and out is None else 0


def cmd_watch(args: argparse.Namespace) -> int:
    if args.sink or args.quiet:
        return nats_cli.run_watch(args, _run_live)
    return _run_live(args, capture=args.capture, out=sys.stdout)


def cmd_capture(args: argparse.Namespace) -> int:
    return _run_live(args, capture=args.output, out=None)


def cmd_demo(args: argparse.Namespace) -> int:
    from .. import demo

    output = build_output(args)

    def show(records: list[Rec]) -> None:
        if records:
            sys.stdout.flush()
            write_all(sys.stdout.fileno(), output.encode(records))

    records = demo.run(show, capture=args.capture)
    print(demo.summary(records), file=sys.stdout if args.format == "text" else sys.stderr, flush=True)
    return 0


def _event_kinds(text: str) -> list[str]:
    """``--events create,rename`` -> the kinds, each checked (an unknown kind is a usage error naming it)."""
    from ..backends.inotify import EVENT_BITS

    kinds = [k.strip() for k in text.split(",") if k.strip()]
    for kind in kinds:
        if kind not in EVENT_BITS:
            raise argparse.ArgumentTypeError(f"unknown event kind {kind!r} (known: {', '.join(EVENT_BITS)})")
    return kinds


def byte_size(text: str) -> int:
    """``SIZE`` of ``--read-buffer``: bytes, or with a K, M or G suffix (KiB, MiB, GiB)."""
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = text.strip().lower().removesuffix("b").removesuffix("i")
    scale = units.get(t[-1:], 1)
    try:
        value = int(t[:-1] if scale > 1 else t) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 16M, 65536)") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def _positive_ms(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def live_options_parser(paths_nargs: str = "+") -> argparse.ArgumentParser:
    """The options of a live watch (roots, window, filters, backend), shared by watch, capture and serve."""
    live_options = argparse.ArgumentParser(add_help=False)
    live_options.add_argument("paths", nargs=paths_nargs, metavar="PATH",
                              help="directory trees or files to watch (see Roots below)")
    roots_cli.add_options(live_options)
    live_options.add_argument("--window", type=_positive_ms, metavar="MS",
                              help="how long a lone rename half waits for its partner once the queue is empty "
                              "(default 20)")
    live_options.add_argument("--relaxed-order", action="store_true",
                              help="emit records without waiting behind unresolved rename halves")
    live_options.add_argument("--include", action="append", default=[], metavar="GLOB",
                              help="only report paths matching GLOB (name or full path); repeatable")
    live_options.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                              help="neither watch nor report paths matching GLOB; repeatable")
    live_options.add_argument("--events", type=_event_kinds, default=None, metavar="KIND,...",
                              help="event kinds to watch (default: modify,attrib,close_write,rename,create,"
                              "delete,delete_self,move_self; also access,open,close_nowrite). The kinds the "
                              "watch table needs are always watched")
    live_options.add_argument("--no-rescan", dest="rescan", action="store_false", default=True,
                              help="do not recover from a queue overflow (the default is to walk the tree after "
                              "the overflow record and report the differences as synthesized records); saves "
                              "the shadow tree kept for it, about 95 bytes per watched file or directory")
    live_options.add_argument("--rescan", dest="rescan", action="store_true",
                              help="the default; accepted for compatibility with fsnorm before rescan was the "
                              "default")
    live_options.add_argument("--max-pending", type=int, default=None, metavar="N",
                              help="rename halves kept waiting at most (default 65536)")
    live_options.add_argument("--read-buffer", type=byte_size, default=None, metavar="SIZE",
                              help="bytes of raw events a reader thread may hold while fsnorm is busy, so the "
                              "kernel queue keeps draining (default 16M with inotify, 0 with fanotify; suffix "
                              "K, M or G; at least 64K); 0: no reader thread. Beyond it the kernel queue fills and "
                              "overflows as without it")
    live_options.add_argument("--sched-slice", type=_slice_us, default=DEFAULT_SLICE_US, metavar="USEC",
                              help=f"scheduler slice for fsnorm's threads, in microseconds ({MIN_SLICE_US}-"
                              f"{MAX_SLICE_US}; default {DEFAULT_SLICE_US}: the kernel's). A short slice lets "
                              "fsnorm be picked sooner when it wakes on a busy machine, without a larger share of "
                              "the CPU (Linux 6.6+; README \"Scheduler slice\")")
    live_options.add_argument("--priority-boost", type=_priority_boost, default=None, metavar="N",
                              help=f"raise fsnorm's threads and its session's scheduling group by N nice levels "
                              f"while it watches, so it gets a CPU soon on a busy machine (0-{MAX_BOOST}; default "
                              f"{DEFAULT_CLI_BOOST}, as auditd, unless started at a nice value above 0; 0: leave the "
                              "priority alone). Needs root, CAP_SYS_NICE or RLIMIT_NICE; without them the default "
                              "is skipped quietly and an explicit N is warned about (README \"Priority boost\")")
    live_options.add_argument("--backend", choices=["inotify", "fanotify", "auto"], default="inotify",
                              help="kernel interface (default inotify; auto: fanotify on Linux 5.17+, "
                              "docs/fanotify.md)")
    return live_options


class _VersionAction(argparse.Action):
    """``--version``: one line, never wrapped to the terminal's width (argparse's own action wraps it), so that
    scripts can read it."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        print(f"fsnorm {__version__}, {_compiled.describe()}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fsnorm", description="Clean, ordered records from Linux inotify/fanotify: one record per rename."
    )
    parser.add_argument("--version", action=_VersionAction, nargs=0,
                        help="print the version, which hot path runs (compiled or pure Python, and why) and which "
                             "C extensions are in use")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("replay", help="print the records of a capture log as JSON Lines")
    p.add_argument("file", help="capture file (.fsncap, optionally gzip-compressed)")
    p.add_argument("--strict", action="store_true", help="stop at the first problem in the capture")
    add_format_options(p, default="json")
    p.add_argument("--window", type=_positive_ms, metavar="MS",
                   help="override the capture's one-sided move window (milliseconds)")
    p.add_argument("--relaxed-order", action="store_true",
                   help="emit records without waiting behind unresolved rename halves")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar (it is drawn on stderr only when stderr is a terminal anyway)")
    p.set_defaults(func=cmd_replay)
    stats_command.add_parser(sub)

    p = sub.add_parser("schema", help="print the JSON Schema of a record")
    p.set_defaults(func=cmd_schema)

    live_options = live_options_parser()

    p = sub.add_parser("watch", parents=[live_options], epilog=roots_cli.EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       help="watch directory trees and print records as JSON Lines until SIGINT/SIGTERM")
    add_format_options(p, default="json")
    p.add_argument("--capture", metavar="FILE", help="also write the raw events to a capture log")
    p.set_defaults(func=cmd_watch)
    nats_cli.add_watch_options(p)

    p = sub.add_parser("capture", parents=[live_options],
                       help="record the raw events to a capture log, without printing records")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="capture file (.gz: compressed)")
    p.set_defaults(func=cmd_capture)

    p = sub.add_parser("demo", help="watch a temp tree while a built-in workload renames, moves and writes")
    add_format_options(p, default="text")
    p.add_argument("--capture", metavar="FILE", help="also write the raw events to a capture log")
    p.set_defaults(func=cmd_demo)

    from . import serve
    serve.add_parsers(sub)
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
