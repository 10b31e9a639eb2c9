"""``fsnorm watch --sink nats://...`` and ``fsnorm subscribe nats://...``: records on NATS JetStream.

The watch side adds options to ``watch`` and wraps its loop with a :class:`~normalizer.sinks.nats.NatsSink`;
the subscribe side is a durable pull consumer that prints the record lines (``fsnorm subscribe`` routes here by
the address's scheme; :mod:`.serve` has the fsnorm-protocol side).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from ..errors import FsnormError
from ..records import Rec
from ..sinks.fd import write_all
from ..sinks.nats import (
    DEFAULT_PREFIX,
    DEFAULT_SPOOL_BYTES,
    DEFAULT_STREAM,
    NatsSink,
    NatsSinkConfig,
    SinkError,
    default_spool_dir,
    parse_servers,
    subject_token,
)

Publish = Callable[[Sequence[Rec]], None]
RunLive = Callable[..., int]


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def add_watch_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("publishing to NATS JetStream (needs fsnorm[nats])")
    g.add_argument("--sink", metavar="nats://HOST:PORT[,HOST:PORT...]",
                   help="also publish every record, acknowledged and exactly once, to JetStream on subject "
                   "PREFIX.<host>.<kind>; unacknowledged records wait in the spool (--spool)")
    g.add_argument("--sink-stream", default=DEFAULT_STREAM, metavar="NAME",
                   help=f"JetStream stream (default {DEFAULT_STREAM}); created if missing with limits retention, "
                   "max age 7 days, duplicate window 2 minutes; an existing stream is used as configured")
    g.add_argument("--sink-subject", default=DEFAULT_PREFIX, metavar="PREFIX",
                   help=f"subject prefix (default {DEFAULT_PREFIX}); a created stream takes PREFIX.>")
    g.add_argument("--sink-replicas", type=_positive_int, default=1, metavar="N",
                   help="replicas of a stream fsnorm creates (default 1; 3 on a 3-node cluster)")
    g.add_argument("--sink-host", default="", metavar="NAME",
                   help="the <host> subject token and msg-id part (default: this machine's hostname)")
    g.add_argument("--spool", type=Path, default=None, metavar="DIR",
                   help="on-disk spool of records not yet acknowledged, resent by the next run "
                   f"(default {default_spool_dir()})")
    g.add_argument("--spool-bytes", type=_positive_int, default=DEFAULT_SPOOL_BYTES, metavar="N",
                   help="spool bound; records past it are lost and reported by an overflow record "
                   f"(default {DEFAULT_SPOOL_BYTES})")
    g.add_argument("--quiet", action="store_true", help="do not print records on stdout (with --sink)")


def _warn(message: str) -> None:
    print(f"fsnorm: {message}", file=sys.stderr, flush=True)


def run_watch(args: argparse.Namespace, run_live: RunLive) -> int:
    """Run ``watch`` with a NATS sink fed from the watch loop; on exit, publish what is spooled for up to 5 s."""
    if not args.sink:
        raise SinkError("--quiet needs --sink (without it nothing would be reported)")
    try:
        import nats  # noqa: F401
    except ImportError:
        raise SinkError("--sink nats:// needs the nats-py package: pip install 'fsnorm[nats]'") from None
    config = NatsSinkConfig(servers=parse_servers(args.sink), stream=args.sink_stream,
                            prefix=subject_token(args.sink_subject), spool_dir=args.spool or default_spool_dir(),
                            spool_bytes=args.spool_bytes, replicas=args.sink_replicas, host=args.sink_host)
    sink = NatsSink(config)
    code = 1
    try:
        code = run_live(args, capture=args.capture, out=None if args.quiet else sys.stdout, publish=sink.put)
    finally:
        left = sink.close(5.0)
        lost = f", {sink.lost} records lost to a full spool" if sink.lost else ""
        where = f" ({left} left in {config.spool_dir} for the next run)" if left else ""
        _warn(f"nats: {sink.published} records acknowledged{where}{lost}"
              + (f"; last error {sink.last_error}" if left and sink.last_error else ""))
    return code


def add_subscribe_options(p: argparse.ArgumentParser) -> None:
    """The options of ``fsnorm subscribe nats://...`` (a durable JetStream consumer), on the subscribe parser."""
    g = p.add_argument_group("with a nats://HOST:PORT[,HOST:PORT...] address (records on NATS JetStream)")
    g.add_argument("--stream", default=DEFAULT_STREAM, help=f"stream (default {DEFAULT_STREAM})")
    g.add_argument("--subject", default=DEFAULT_PREFIX, metavar="PREFIX",
                   help=f"subject prefix the records were published under (default {DEFAULT_PREFIX})")
    g.add_argument("--durable", default="fsnorm", metavar="NAME",
                   help="durable consumer name: a new run with the same name resumes after the last record "
                   "acknowledged (default fsnorm)")
    g.add_argument("--host", dest="host_filter", default=None, metavar="NAME", help="only records of this host")
    g.add_argument("--kind", dest="kinds", action="append", default=[], metavar="KIND",
                   help="only records of this kind (repeatable; --events KIND,... works too)")
    g.add_argument("--idle-exit", type=float, default=None, metavar="SECONDS",
                   help="exit once no record arrived for SECONDS (default: run until SIGINT/SIGTERM)")


def subscribe_from_args(args: argparse.Namespace) -> int:
    """``fsnorm subscribe nats://...``: the JSON lines exactly as ``fsnorm watch`` printed them."""
    if args.format != "json" or args.path or args.since is not None or args.frames:
        raise FsnormError("with a nats:// address, subscribe takes --stream, --subject, --durable, --host, --kind "
                          "/ --events and --idle-exit; --format is json (the lines as fsnorm watch printed them)")
    kinds = [*args.kinds, *sorted(args.events or ())]
    return run_subscribe(args.address, stream=args.stream, durable=args.durable, host_filter=args.host_filter,
                         kinds=kinds, fmt="json", prefix=args.subject, idle_exit=args.idle_exit)


def filter_subjects(prefix: str, host_filter: str | None, kinds: Sequence[str]) -> list[str]:
    host = subject_token(host_filter) if host_filter else "*"
    return [f"{prefix}.{host}.{subject_token(k)}" for k in kinds] or [f"{prefix}.{host}.*"]


def run_subscribe(url: str, *, stream: str = DEFAULT_STREAM, durable: str = "fsnorm", host_filter: str | None = None,
                  kinds: Sequence[str] = (), fmt: str = "json", prefix: str = DEFAULT_PREFIX,
                  idle_exit: float | None = None, out: TextIO | None = None) -> int:
    """Print the records of ``stream`` through the durable consumer ``durable``; each is acknowledged after it is
    written, so a new run resumes after the last one printed. Stops on SIGINT/SIGTERM or after ``idle_exit``."""
    if fmt != "json":
        raise FsnormError(f"unknown format {fmt!r}")
    try:
        import nats  # noqa: F401
    except ImportError:
        raise SinkError("nats:// needs the nats-py package: pip install 'fsnorm[nats]'") from None
    out = out or sys.stdout
    return asyncio.run(_subscribe(parse_servers(url), stream, durable, filter_subjects(prefix, host_filter, kinds),
                                  idle_exit, out))


async def _subscribe(servers: list[str], stream: str, durable: str, subjects: list[str],
                     idle_exit: float | None, out: TextIO) -> int:
    import nats
    from nats.errors import TimeoutError as NatsTimeout
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        # max_reconnect_attempts=-1 would retry the first connect forever: bound it, then reconnect forever.
        nc = await asyncio.wait_for(nats.connect(servers=servers, connect_timeout=2, max_reconnect_attempts=-1,
                                                 error_cb=_quiet), 10)
    except Exception as exc:
        raise SinkError(f"cannot connect to {','.join(servers)}: {exc}") from None
    out.flush()
    fd = out.fileno()
    try:
        js = nc.jetstream()
        config = ConsumerConfig(durable_name=durable, ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL,
                                filter_subjects=subjects if len(subjects) > 1 else None,
                                filter_subject=subjects[0] if len(subjects) == 1 else None)
        existing = await _consumer_filters(js, stream, durable)
        if existing is not None and sorted(existing) != sorted(subjects):
            raise SinkError(f"durable consumer {durable!r} exists with filter {','.join(existing)}, not "
                            f"{','.join(subjects)}: use another --durable name")
        try:
            psub = await js.pull_subscribe_bind(durable, stream) if existing is not None \
                else await js.pull_subscribe(subjects[0], durable=durable, stream=stream, config=config)
        except Exception as exc:
            raise SinkError(f"stream {stream}: {exc}") from None
        idle_since = loop.time()
        while not stop.is_set():
            try:
                msgs = await psub.fetch(256, timeout=0.5)
            except NatsTimeout:
                msgs = []
            except Exception as exc:  # a node changing leader: retry
                _warn(f"nats: fetch: {exc!r}")
                await asyncio.sleep(0.2)
                continue
            if msgs:
                write_all(fd, b"".join(m.data + b"\n" for m in msgs))
                for m in msgs:
                    await m.ack()
                idle_since = loop.time()
            elif idle_exit is not None and loop.time() - idle_since >= idle_exit:
                break
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        with contextlib.suppress(Exception):
            await nc.flush(2)  # the acks of the last records printed
        with contextlib.suppress(Exception):
            await nc.close()
    return 0


async def _quiet(exc: Exception) -> None:
    """nats-py logs every connection error by default; a reconnecting subscriber needs no traceback per retry."""


async def _consumer_filters(js: object, stream: str, durable: str) -> list[str] | None:
    """The subject filters of the durable consumer ``durable``, or None when there is no such consumer."""
    from nats.js.client import JetStreamContext

    assert isinstance(js, JetStreamContext)
    try:
        info = await js.consumer_info(stream, durable)
    except Exception:
        return None
    cfg = info.config
    return list(cfg.filter_subjects or ([cfg.filter_subject] if cfg.filter_subject else []))
