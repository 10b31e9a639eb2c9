"""``fsnorm watch --sink nats://...`` and ``fsnorm subscribe nats://...``: records on NATS JetStream.

The watch side adds options to ``watch`` and wraps its loop with a :class:`~normalizer.sinks.nats.NatsSink`;
the subscribe side is a durable pull consumer that prints the record lines (``fsnorm subscribe`` routes here by
the address's scheme; :mod:`.serve` has the fsnorm-protocol side).
"""

from __future__ import annotations

# asyncio is imported where a loop runs: every fsnorm command imports this module (sinks/nats.py says why).
import argparse
import base64
import binascii
import contextlib
import json
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from ..clock import WallClock, sample_offset_ns
from ..errors import FsnormError
from ..formats import Formatter, formatter_factory
from ..formats.context import FormatContext
from ..net.order import Notice, Reorderer
from ..records import Rec
from ..sinks.fd import write_all
from ..sinks.nats import (
    DEFAULT_PREFIX,
    DEFAULT_SPOOL_BYTES,
    DEFAULT_STREAM,
    FSYNC_POLICIES,
    PREV_HEADER,
    NatsSink,
    NatsSinkConfig,
    SinkError,
    default_spool_dir,
    parse_servers,
    subject_token,
)

Publish = Callable[[Sequence[Rec]], None]
#: How long ``fsnorm subscribe nats://`` holds a record back for its predecessor, and how many at most.
DEFAULT_ORDER_WAIT = 10.0
DEFAULT_ORDER_MAX = 50_000
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
    g.add_argument("--sink-fsync", choices=FSYNC_POLICIES, default="batch",
                   help="when the spool reaches the disk: batch (default) one fdatasync per kernel read, before its "
                   "records are printed or published (group commit); always one per record; never: the page cache "
                   "only (a killed fsnorm loses nothing either way; a power loss may lose the last seconds)")
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
                            spool_bytes=args.spool_bytes, replicas=args.sink_replicas, host=args.sink_host,
                            fsync=args.sink_fsync)
    sink = NatsSink(config)
    code = 1
    try:
        code = run_live(args, capture=args.capture, out=None if args.quiet else sys.stdout, publish=sink.put)
    finally:
        left = sink.close(5.0)
        lost = f", {sink.lost} records lost to a full spool" if sink.lost else ""
        where = f" ({left} left in {config.spool_dir} for the next run)" if left else ""
        _warn(f"nats: {sink.published} records acknowledged{where}{lost}, {sink.spool.syncs} spool syncs "
              f"(--sink-fsync {config.fsync}), {sink.retries} batches re-published"
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
                   help="exit once no record arrived for SECONDS and none is held back (default: run until "
                   "SIGINT/SIGTERM)")
    g.add_argument("--order-wait", type=float, default=DEFAULT_ORDER_WAIT, metavar="SECONDS",
                   help="each host's records come in its order (the Fsnorm-Prev chain): a record stored before "
                   "its predecessor is held back up to SECONDS for it, then given with a rescan record saying "
                   f"records are missing (default {DEFAULT_ORDER_WAIT:g}; 0: stream order, no holding)")
    g.add_argument("--order-max", type=_positive_int, default=DEFAULT_ORDER_MAX, metavar="N",
                   help=f"hold back at most N records in all (default {DEFAULT_ORDER_MAX})")


def subscribe_from_args(args: argparse.Namespace) -> int:
    """``fsnorm subscribe nats://...``: the records as ``fsnorm watch`` prints them, each host's in order."""
    if args.path or args.since is not None or args.frames:
        raise FsnormError("with a nats:// address, subscribe takes --stream, --subject, --durable, --host, --kind "
                          "/ --events, --format, --order-wait, --order-max and --idle-exit")
    kinds = [*args.kinds, *sorted(args.events or ())]
    return run_subscribe(args.address, stream=args.stream, durable=args.durable, host_filter=args.host_filter,
                         kinds=kinds, fmt=args.format, prefix=args.subject, idle_exit=args.idle_exit,
                         order_wait=args.order_wait, order_max=args.order_max, timefmt=args.timefmt)


def filter_subjects(prefix: str, host_filter: str | None, kinds: Sequence[str]) -> list[str]:
    host = subject_token(host_filter) if host_filter else "*"
    return [f"{prefix}.{host}.{subject_token(k)}" for k in kinds] or [f"{prefix}.{host}.*"]


def run_subscribe(url: str, *, stream: str = DEFAULT_STREAM, durable: str = "fsnorm", host_filter: str | None = None,
                  kinds: Sequence[str] = (), fmt: str = "json", prefix: str = DEFAULT_PREFIX,
                  idle_exit: float | None = None, out: TextIO | None = None, order_wait: float = DEFAULT_ORDER_WAIT,
                  order_max: int = DEFAULT_ORDER_MAX, timefmt: str | None = None) -> int:
    """Print the records of ``stream`` through the durable consumer ``durable``, each host's in its order (the
    ``Fsnorm-Prev`` chain, :mod:`normalizer.net.order`; ``order_wait`` 0 prints in stream order); each record
    is acknowledged after it is written, so a new run resumes after the last one printed. Stops on
    SIGINT/SIGTERM or after ``idle_exit`` seconds with nothing received and nothing held back."""
    import asyncio
    formats = HostFormats(fmt, timefmt)
    try:
        import nats  # noqa: F401
    except ImportError:
        raise SinkError("nats:// needs the nats-py package: pip install 'fsnorm[nats]'") from None
    out = out or sys.stdout
    order = Reorderer[Any](wait_ns=int(order_wait * 1e9), max_held=order_max) if order_wait > 0 else None
    # A host's chain links records of every kind: to follow it, the consumer takes every kind of the host and
    # filters by kind itself (the kinds are in the durable consumer's description, checked on resume).
    wanted = frozenset(subject_token(k) for k in kinds) if order is not None and kinds else None
    subjects = filter_subjects(prefix, host_filter, [] if order is not None else kinds)
    what = f"fsnorm subscribe: kinds {','.join(sorted(wanted)) if wanted else 'all'}, " + \
        ("per-host order" if order is not None else "stream order")
    return asyncio.run(_subscribe(parse_servers(url), stream, durable, subjects, idle_exit, out, formats, prefix,
                                  order, wanted, what))


class HostFormats:
    """``--format`` for records from many hosts: ``json`` writes the published line as it is (byte for byte
    what ``fsnorm watch`` printed); any other format parses it back into a record and formats it with the
    publishing host as the context's host, and a wall clock per host taken from the stream: the least
    (stored time - t_ns) seen so far, which is the host's CLOCK_REALTIME - CLOCK_MONOTONIC plus the shortest
    publish delay (a record is stored after it happened; spooled records only make the difference larger)."""

    def __init__(self, fmt: str, timefmt: str | None = None) -> None:
        self.fmt = fmt
        self.timefmt = timefmt
        self._factory = formatter_factory(fmt)  # FormatError (a usage error) at once for a bad --format
        self._by_host: dict[str, tuple[Formatter, WallClock]] = {}

    def line(self, host: str, payload: bytes, stored_ns: int | None) -> bytes:
        if self.fmt == "json":
            return payload + b"\n"
        return self.format(host, rec_from_json(payload), stored_ns)

    def format(self, host: str, rec: Rec, stored_ns: int | None) -> bytes:
        got = self._by_host.get(host)
        if got is None:
            clock = WallClock(sample_offset_ns())
            got = self._by_host[host] = (self._factory(FormatContext(host=host, clock=clock, timefmt=self.timefmt)),
                                         clock)
            if stored_ns is not None and rec.t_ns:
                clock.offset_ns = stored_ns - rec.t_ns
        formatter, clock = got
        if stored_ns is not None and rec.t_ns:
            clock.offset_ns = min(clock.offset_ns, stored_ns - rec.t_ns)
        return (formatter(rec) + "\n").encode("utf-8", "surrogateescape")


def rec_from_json(payload: bytes) -> Rec:
    """The record of one published JSON line (the inverse of ``rec_to_json``); a line that is not one gives an
    ``error`` record saying so, never an exception."""
    try:
        d = json.loads(payload)

        def path(key: str) -> bytes:
            b64 = d.get(f"{key}_b64")
            return base64.b64decode(b64) if b64 else str(d[key]).encode("utf-8", "surrogateescape")

        kind = str(d["kind"])
        rec = Rec(kind, path("src" if kind == "rename" else "path"), bool(d["is_dir"]), int(d["t_ns"]),
                  int(d["mask"]), d.get("cookie"), path("dst") if kind == "rename" else b"",
                  tuple(str(f) for f in d.get("flags") or ()))
        if d.get("source", "inotify") != "inotify":
            rec.source = str(d["source"])
        for key in ("pid", "object_id", "message"):
            if d.get(key) is not None:
                setattr(rec, key, d[key])
        return rec
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        return Rec.note("error", b"", False, 0, 0, message=f"nats: a message that is not an fsnorm record "
                        f"({exc.__class__.__name__}: {exc}): {payload[:200]!r}")


def _host_of(subject: str, prefix: str) -> str:
    """``PREFIX.<host>.<kind>`` -> host (a subject of another shape is its own "host")."""
    rest = subject[len(prefix) + 1:] if subject.startswith(prefix + ".") else subject
    return rest.rpartition(".")[0] or rest


def _stored_ns(msg: Any) -> int | None:
    try:
        return int(msg.metadata.timestamp.timestamp() * 1e9)
    except Exception:
        return None


async def _subscribe(servers: list[str], stream: str, durable: str, subjects: list[str],
                     idle_exit: float | None, out: TextIO, formats: HostFormats, prefix: str,
                     order: Reorderer[Any] | None, wanted: frozenset[str] | None, what: str) -> int:
    import asyncio

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
    held_max = order.max_held if order is not None else 0
    try:
        js = nc.jetstream()
        # Held records are not acknowledged until written: room for them in the consumer's unacknowledged window,
        # and an ack wait well past the hold.
        wait_s = order.wait_ns / 1e9 if order is not None else 0.0
        config = ConsumerConfig(durable_name=durable, ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL,
                                filter_subjects=subjects if len(subjects) > 1 else None,
                                filter_subject=subjects[0] if len(subjects) == 1 else None,
                                max_ack_pending=max(1000, 2 * held_max + 512), ack_wait=max(30.0, 3 * wait_s),
                                description=what)
        existing = await _consumer_filters(js, stream, durable)
        if existing is not None and (sorted(existing[0]) != sorted(subjects) or existing[1] != what):
            raise SinkError(f"durable consumer {durable!r} exists with filter {','.join(existing[0])} "
                            f"({existing[1]}), not {','.join(subjects)} ({what}): use another --durable name")
        try:
            psub = await js.pull_subscribe_bind(durable, stream) if existing is not None \
                else await js.pull_subscribe(subjects[0], durable=durable, stream=stream, config=config)
        except Exception as exc:
            raise SinkError(f"stream {stream}: {exc}") from None
        idle_since = loop.time()
        last_t: dict[str, int] = {}

        async def emit(items: list[Any]) -> None:
            """Write released records (and notices) in order, then acknowledge the records."""
            data: list[bytes] = []
            acks = []
            for item in items:
                if isinstance(item, Notice):
                    _warn(f"nats: {item.message}")
                    if item.kind != "start":  # a gap, or a late record: records are missing or out of order
                        note = Rec.note("rescan", b"", False, last_t.get(item.host, 0), 0,
                                        message=f"fsnorm subscribe: {item.message}")
                        data.append(formats.format(item.host, note, None))
                    continue
                host, msg = item
                acks.append(msg)
                if wanted is None or msg.subject.rpartition(".")[2] in wanted:
                    data.append(formats.line(host, msg.data, _stored_ns(msg)))
            if data:
                write_all(fd, b"".join(data))
            for m in acks:
                await m.ack()

        while not stop.is_set():
            try:
                msgs = await psub.fetch(256, timeout=0.5)
            except NatsTimeout:
                msgs = []
            except Exception as exc:  # a node changing leader: retry
                _warn(f"nats: fetch: {exc!r}")
                await asyncio.sleep(0.2)
                msgs = []
            now = int(loop.time() * 1e9)
            released: list[Any] = []
            for m in msgs:
                host = _host_of(m.subject, prefix)
                headers = m.headers or {}
                if order is None:
                    released.append((host, m))
                    continue
                pushed = order.push(host, headers.get("Nats-Msg-Id", ""), headers.get(PREV_HEADER, ""), (host, m),
                                    now)
                if pushed.duplicate:
                    await m.ack()  # a redelivery of a record written already
                released += pushed.out
            if order is not None:
                released += order.tick(now)
            for item in released:
                if not isinstance(item, Notice):
                    with contextlib.suppress(ValueError, TypeError, KeyError):
                        last_t[item[0]] = int(json.loads(item[1].data)["t_ns"])
            await emit(released)
            if msgs:
                idle_since = loop.time()
            elif idle_exit is not None and loop.time() - idle_since >= idle_exit and not (order and order.held):
                break
        if order is not None and order.held:
            _warn(f"nats: {order.held} records held back for order are left unacknowledged: the next run with "
                  f"--durable {durable} gets them again")
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


async def _consumer_filters(js: object, stream: str, durable: str) -> tuple[list[str], str] | None:
    """The subject filters and description of the durable consumer ``durable``, or None when there is none."""
    from nats.js.client import JetStreamContext

    assert isinstance(js, JetStreamContext)
    try:
        info = await js.consumer_info(stream, durable)
    except Exception:
        return None
    cfg = info.config
    return list(cfg.filter_subjects or ([cfg.filter_subject] if cfg.filter_subject else [])), cfg.description or ""
