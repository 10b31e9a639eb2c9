"""``fsnorm serve`` and ``fsnorm subscribe``: remote fsnotify over unix/TCP sockets (docs/wire-protocol.md)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

from ..errors import FsnormError, SubscriptionError
from ..formats import make_formatter
from ..records import Rec
from ..sinks.fd import write_all


def _warn(message: str) -> None:
    print(f"fsnorm: {message}", file=sys.stderr, flush=True)


def _mode(text: str) -> int:
    try:
        mode = int(text, 8)
    except ValueError:
        raise argparse.ArgumentTypeError("an octal mode such as 600") from None
    if not 0 <= mode <= 0o777:
        raise argparse.ArgumentTypeError("an octal mode such as 600")
    return mode


def _export(text: str) -> tuple[str, str]:
    name, sep, root = text.partition("=")
    if not sep or not name or not root:
        raise argparse.ArgumentTypeError("NAME=ROOT")
    return name, root


def _kinds(text: str) -> list[str]:
    from ..net import wire

    kinds = [k.strip() for k in text.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in wire.KIND_CODES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown kind(s) {', '.join(unknown)} (known: {', '.join(wire.KIND_CODES)})")
    return kinds


def _since(text: str) -> tuple[int, int]:
    """``SEQ`` or ``EPOCH:SEQ`` (what ``--format json`` prints as ``epoch`` and ``seq``)."""
    epoch, _, seq = text.rpartition(":")
    try:
        return (int(epoch) if epoch else 0), int(seq)
    except ValueError:
        raise argparse.ArgumentTypeError("SEQ or EPOCH:SEQ") from None


def add_parsers(sub: Any) -> None:
    from .main import live_options_parser

    p = sub.add_parser("serve", parents=[live_options_parser("*")],
                       help="watch directory trees and serve the records to subscribers (remote fsnotify)",
                       description="Each PATH (and each --export NAME=ROOT) is an export; clients see paths as "
                       "EXPORT/relative/path, never the server's absolute paths. Wire protocol: "
                       "docs/wire-protocol.md.")
    p.add_argument("--listen", action="append", default=[], metavar="ADDR",
                   help="unix:/path or tcp:HOST:PORT (tcp:PORT: loopback); repeatable (required)")
    p.add_argument("--export", action="append", default=[], type=_export, metavar="NAME=ROOT",
                   help="export ROOT under NAME (a PATH is exported under its base name); repeatable")
    p.add_argument("--socket-mode", type=_mode, default=0o600, metavar="OCTAL",
                   help="permissions of unix sockets (default 600: the server's user only)")
    p.add_argument("--allow-uid", type=int, action="append", metavar="UID",
                   help="on unix sockets, accept only peers with this uid (SO_PEERCRED); repeatable")
    p.add_argument("--journal-records", type=int, default=1_000_000, metavar="N",
                   help="records kept for resuming clients (default 1000000)")
    p.add_argument("--journal-bytes", type=int, default=256 << 20, metavar="N",
                   help="bytes of records kept for resuming clients (default 256 MiB)")
    p.add_argument("--journal-age", type=float, default=3600.0, metavar="SECONDS",
                   help="keep records at most this long for resuming clients (default 3600)")
    p.add_argument("--slow-client", choices=["rescan", "drop"], default="rescan",
                   help="a client that falls behind the journal gets a rescan with the lost range and goes on "
                   "(default), or is disconnected with an error")
    p.add_argument("--handshake-timeout", type=float, default=10.0, metavar="SECONDS",
                   help="drop clients that have not subscribed after this long (default 10)")
    p.add_argument("--stall-timeout", type=float, default=300.0, metavar="SECONDS",
                   help="drop clients that read nothing for this long while records wait (default 300)")
    p.add_argument("--max-clients", type=int, default=1024, metavar="N", help="connections at most (default 1024)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("subscribe", help="print the records of an fsnorm server, like fsnorm watch, with seq/epoch")
    p.add_argument("address", metavar="ADDR", help="unix:/path or tcp:HOST:PORT (fsnorm serve), or "
                   "nats://HOST:PORT[,HOST:PORT...] (records published with fsnorm watch --sink)")
    p.add_argument("--path", default="", metavar="EXPORT[/SUBDIR]", help="only records at or below this place")
    p.add_argument("--events", type=_kinds, default=None, metavar="KIND,...",
                   help="only these record kinds (overflow, rescan, error ... always come)")
    p.add_argument("--since", type=_since, default=None, metavar="[EPOCH:]SEQ",
                   help="resume after record SEQ (of EPOCH; a bare SEQ cannot be checked, so a rescan comes "
                   "first unless --epoch is given)")
    p.add_argument("--epoch", type=int, default=None, help="the epoch --since SEQ belongs to")
    from .formatting import FORMAT_HELP, _format_spec

    p.add_argument("--format", type=_format_spec, default="json", metavar="FORMAT",
                   help=f"{FORMAT_HELP} (default json). json adds seq and epoch to each line (fsnorm serve); text "
                   "starts it with the seq; with nats:// json is each line exactly as fsnorm watch printed it, and "
                   "the other formats name the publishing host")
    p.add_argument("--timefmt", metavar="STRFTIME",
                   help="strftime(3) format of a template's %%T, in local time (e.g. '%%F %%T')")
    p.add_argument("--frames", action="store_true",
                   help="debug: print every protocol frame received as JSON (handshake included) instead of records")
    from . import nats as nats_cli

    nats_cli.add_subscribe_options(p)
    p.set_defaults(func=cmd_subscribe)


def cmd_serve(args: argparse.Namespace) -> int:
    import asyncio

    from ..api import make_source
    from ..net.exports import make_exports
    from ..net.server import Server, ServerOptions, parse_listen
    from .main import _source_options, report_priority

    if not args.listen:
        _warn("error: serve needs at least one --listen ADDR (unix:/path or tcp:HOST:PORT)")
        return 2
    try:
        for addr in args.listen:
            parse_listen(addr)
        exports = make_exports([(None, p) for p in args.paths] + list(args.export))
    except ValueError as exc:
        _warn(f"error: {exc}")
        return 2
    if not exports:
        _warn("error: nothing to serve: give PATH or --export NAME=ROOT")
        return 2
    options = ServerOptions(
        listen=tuple(args.listen), socket_mode=args.socket_mode,
        allow_uids=None if args.allow_uid is None else frozenset(args.allow_uid),
        handshake_timeout=args.handshake_timeout, stall_timeout=args.stall_timeout, slow_client=args.slow_client,
        max_clients=args.max_clients, journal_records=args.journal_records, journal_bytes=args.journal_bytes,
        journal_age=args.journal_age)
    source = make_source([os.fsdecode(e.root) for e in exports], **_source_options(args))
    server = Server(source, exports, options)

    def ready(addresses: list[str]) -> None:
        report_priority(args, source)
        names = ", ".join(f"{os.fsdecode(e.name)}={os.fsdecode(e.root)}" for e in exports)
        _warn(f"serving {names} (epoch {server.journal.epoch}) on {' '.join(addresses)}")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, server.stop)
        await server.run(ready)

    asyncio.run(main())
    s = server.stats
    _warn(f"stopped: {s['records']} records, {s['clients']} clients, {s['rescans']} rescans, "
          f"{s['dropped']} dropped")
    return 0


def format_remote(fmt: str, timefmt: str | None = None) -> Callable[[Rec], str]:
    """The line formatter for a received record: ``fsnorm watch``'s, plus ``seq`` and ``epoch`` (json), or the
    seq in front (text); the other formats as ``fsnorm watch`` writes them (their context: this host, clock)."""
    from ..formats.context import FormatContext

    base = make_formatter(fmt, FormatContext(timefmt=timefmt))
    if fmt == "json":
        def line(rec: Rec) -> str:
            return f'{base(rec)[:-1]},"seq":{rec.seq},"epoch":{rec.epoch}}}'  # type: ignore[attr-defined]
        return line
    if fmt != "text":
        return base

    def text(rec: Rec) -> str:
        return f"{rec.seq:>8} {base(rec)}"  # type: ignore[attr-defined]
    return text


def cmd_subscribe(args: argparse.Namespace) -> int:
    if args.address.startswith("nats://"):
        from . import nats as nats_cli

        return nats_cli.subscribe_from_args(args)
    from ..net.client import subscribe

    epoch, since = (0, None) if args.since is None else args.since
    if args.epoch is not None:
        epoch = args.epoch
    fmt = format_remote(args.format, args.timefmt)
    on_frame = None
    if args.frames:
        import json

        from ..net.wire import Frame, frame_to_json

        def on_frame(frame: Frame) -> None:
            write_all(sys.stdout.fileno(), (json.dumps(frame_to_json(frame)) + "\n").encode())

    sub = subscribe(args.address, path=args.path, events=args.events, since=since, epoch=epoch, raw_records=True,
                    on_frame=on_frame)
    signal.signal(signal.SIGTERM, lambda *_: sub.close())
    try:
        sub.connect()
        _warn(f"subscribed to {args.address} (epoch {sub.epoch}, after seq {sub.last_seq})")
        sys.stdout.flush()
        out = sys.stdout.fileno()
        for batch in sub.batches():
            if not args.frames:
                write_all(out, "".join(fmt(rec) + "\n" for rec in batch).encode("utf-8", "surrogateescape"))
    except SubscriptionError as exc:
        if sub.closed:
            return 0
        where = f" (resume with --since {sub.epoch}:{sub.last_seq})" if sub.epoch else ""
        _warn(f"error: {exc}{where}")
        return 1
    except FsnormError as exc:
        _warn(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        sub.close()  # hang up (a no-op after SIGTERM's): the socket is not left to the GC
    return 0
