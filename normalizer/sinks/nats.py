"""Publishing records to NATS JetStream, exactly once, without ever blocking the watcher.

Why this shape:
- The watcher thread only appends lines to a local spool file (:class:`Spool`); a background thread with its
  own asyncio loop publishes them, acknowledged, and records in the spool how far the acknowledgements reach.
  A slow or absent log therefore costs the watcher one local ``write`` per batch, never a network round trip.
- Every message carries ``Nats-Msg-Id: <host>:<boot id>:<epoch>:<seq>``, fixed when the record is spooled. A
  publish retried after a lost acknowledgement, or re-sent by the next run of fsnorm from the spool, has the
  same id, so JetStream's duplicate window stores it once.
- The spool is bounded. Records that do not fit are counted, and the first record that fits again is preceded
  by an explicit ``overflow`` record whose message says how many records (after which seq, which kinds) were
  lost — never silence. Only spooled records get a seq, so a host's seqs have no gaps within an epoch.
- Order per host: every message also carries ``Fsnorm-Prev: <msg id of the record before it>`` (the spool's
  previous line; across runs, the last one acknowledged). A publish that fails in the middle of a pipelined
  batch while the stream's leader changes can leave a later record stored before an earlier one; the publisher
  then re-publishes in spool order from the first unacknowledged record (one at a time until one succeeds), and a
  consumer (``fsnorm subscribe nats://``, :mod:`normalizer.net.order`) follows the ``Fsnorm-Prev`` chain to give
  each host's records in order, holding a record back until its predecessor came (bounded), saying so when one
  never does.
- Durability (``fsync``): ``batch`` (default) fdatasyncs the spool once per ``put`` — one group commit per
  kernel read, before its records are printed or published; ``always`` once per record; ``never`` leaves it to
  the page cache (a killed fsnorm loses nothing either way; a power loss may lose the records of the last
  seconds with ``never``). The ``acked`` and ``epoch`` files are replaced atomically; ``epoch`` is fsynced
  unless ``never``, ``acked`` only with ``always`` (an older ``acked`` after a machine crash only re-sends
  records JetStream drops as duplicates).

Spool directory layout: ``spool.log`` (append-only, one ``<msg id>\\t<subject>\\t<json>\\n`` line per record),
``acked`` (the byte offset up to which every line is acknowledged, then the msg id of the last line
acknowledged, replaced atomically), ``epoch`` (the run counter), ``lock`` (an flock: one fsnorm per spool).
"""

from __future__ import annotations

# asyncio (and the ssl it loads) is imported in the methods that run the loop: every fsnorm command imports this
# module for watch's options, and importing it there made `fsnorm --version` take 102 ms instead of 92.
import contextlib
import fcntl
import os
import re
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ..errors import FsnormError
from ..formats.jsonl import rec_to_json
from ..records import Rec

if TYPE_CHECKING:
    import asyncio

    from nats.js.api import StreamConfig
    from nats.js.client import JetStreamContext

DEFAULT_STREAM = "FSNORM"
DEFAULT_PREFIX = "fsnorm"
DEFAULT_SPOOL_BYTES = 256 * 1024 * 1024
#: Retention of a stream fsnorm creates: limits policy, 7 days, 2 minutes of duplicate window.
STREAM_MAX_AGE_S = 7 * 24 * 3600
STREAM_DUPLICATE_WINDOW_S = 120
_TOKEN_BAD = re.compile(r"[^A-Za-z0-9_-]")
#: The header that links a host's records: the msg id of the record before this one ("" for a spool's first).
PREV_HEADER = "Fsnorm-Prev"
FsyncPolicy = Literal["always", "batch", "never"]
FSYNC_POLICIES: tuple[FsyncPolicy, ...] = ("always", "batch", "never")


class SinkError(FsnormError):
    """The NATS sink cannot start (bad URL, spool not writable, spool already in use)."""


def subject_token(text: str) -> str:
    """``text`` as one NATS subject token: dots, wildcards and spaces would split or widen the subject."""
    return _TOKEN_BAD.sub("_", text) or "_"


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "noboot"


def parse_servers(url: str) -> list[str]:
    """``nats://H:P[,H:P...]`` -> the server URLs nats-py takes."""
    if not url.startswith("nats://"):
        raise SinkError(f"not a nats:// URL: {url!r}")
    hosts = [h for h in url[len("nats://"):].split(",") if h]
    if not hosts:
        raise SinkError(f"no server in {url!r}")
    return [f"nats://{h}" for h in hosts]


def default_spool_dir() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(state) / "fsnorm" / "nats-spool"


@dataclass(frozen=True, slots=True)
class SpoolLine:
    """One spooled record: where it ends in ``spool.log`` (for the ack offset) and what to publish."""

    end: int
    msg_id: str
    subject: str
    payload: bytes


class Spool:
    """The bounded on-disk queue between the watcher (``append``) and the publisher (``read``/``ack``)."""

    def __init__(self, directory: Path, *, max_bytes: int, fsync: FsyncPolicy = "batch") -> None:
        self.dir = directory
        self.max_bytes = max_bytes
        self.fsync = fsync
        #: fdatasync calls on spool.log (for the exit summary and the tests).
        self.syncs = 0
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(directory / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise SinkError(f"spool {directory}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._lock_fd)
            raise SinkError(f"spool {directory} is in use by another fsnorm") from None
        self.epoch = self._next_epoch()
        self._mutex = threading.Lock()
        self._log = open(directory / "spool.log", "ab")  # noqa: SIM115 - lives as long as the spool
        self.size = self._log.tell()
        self.torn = self._drop_torn_tail()
        acked, self.last_acked_id = self._read_acked()
        self.acked = min(acked, self.size)
        self.resumed = self.size - self.acked  # bytes left unacknowledged by an earlier run

    def _drop_torn_tail(self) -> int:
        """A run killed in the middle of an append leaves a partial last line: cut it (it was never spooled
        whole, so never published); return how many bytes were cut."""
        if not self.size:
            return 0
        with open(self.dir / "spool.log", "rb") as f:
            f.seek(max(0, self.size - 65536))
            tail = f.read()
        keep = self.size - len(tail) + tail.rfind(b"\n") + 1 if b"\n" in tail else 0
        if keep == self.size:
            return 0
        self._log.truncate(keep)
        self._log.seek(keep)
        cut, self.size = self.size - keep, keep
        return cut

    def _next_epoch(self) -> int:
        path = self.dir / "epoch"
        try:
            epoch = int(path.read_text().strip()) + 1
        except (OSError, ValueError):
            epoch = 1
        _replace(path, f"{epoch}\n", sync=self.fsync != "never")
        return epoch

    def _read_acked(self) -> tuple[int, str]:
        """(offset, msg id of the last line acknowledged); a file from before the id was kept has the offset
        only (the id is then "": the next record starts a new chain)."""
        try:
            lines = (self.dir / "acked").read_text().split("\n")
            return int(lines[0].strip()), (lines[1].strip() if len(lines) > 1 else "")
        except (OSError, ValueError):
            return 0, ""

    def pending_bytes(self) -> int:
        return self.size - self.acked

    def append(self, lines: Sequence[bytes]) -> int:
        """Append whole lines while they fit the bound; return how many did (the rest are the caller's loss)."""
        with self._mutex:
            room = self.max_bytes - (self.size - self.acked)
            taken = 0
            for line in lines:
                if len(line) > room:
                    break
                room -= len(line)
                taken += 1
            if taken:
                if self.fsync == "always":
                    for line in lines[:taken]:
                        self._log.write(line)
                        self._log.flush()
                        self._sync()
                else:
                    self._log.write(b"".join(lines[:taken]))
                    self._log.flush()
                    if self.fsync == "batch":
                        self._sync()
                self.size += sum(len(line) for line in lines[:taken])
            return taken

    def _sync(self) -> None:
        os.fdatasync(self._log.fileno())
        self.syncs += 1

    def read(self, start: int, limit: int) -> list[SpoolLine]:
        """Up to ``limit`` complete lines from byte ``start``."""
        with self._mutex:
            end = self.size
        if start >= end:
            return []
        out: list[SpoolLine] = []
        with open(self.dir / "spool.log", "rb") as f:
            f.seek(start)
            data = f.read(min(end - start, 256 * 1024))
            if b"\n" not in data:  # a line longer than the chunk (not a real record; still never stall)
                data += f.read(end - start - len(data))
        pos = start
        for raw in data.split(b"\n")[:-1]:
            pos += len(raw) + 1
            msg_id, subject, payload = raw.split(b"\t", 2)
            out.append(SpoolLine(pos, msg_id.decode(), subject.decode(), payload))
            if len(out) >= limit:
                break
        return out

    def pending_records(self) -> int:
        """How many lines are not acknowledged (read from disk: for the exit summary, not the hot path)."""
        with self._mutex:
            start, end = self.acked, self.size
        if start >= end:
            return 0
        with open(self.dir / "spool.log", "rb") as f:
            f.seek(start)
            return f.read(end - start).count(b"\n")

    def ack(self, offset: int, last_id: str = "") -> None:
        """Everything before ``offset`` is stored in JetStream, the last of it ``last_id``; an empty spool starts
        over at byte 0."""
        with self._mutex:
            self.acked = offset
            self.last_acked_id = last_id
            if offset == self.size:
                self._log.truncate(0)
                self._log.seek(0)
                self.size = self.acked = 0
            # Only ``always`` flushes the acked offset to disk each time (two more flushes per published batch):
            # one lost in a machine crash only makes the next run re-send acknowledged records, which JetStream
            # drops as duplicates by msg id (within its duplicate window).
            _replace(self.dir / "acked", f"{self.acked}\n{last_id}\n", sync=self.fsync == "always")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.fsync(self._log.fileno())
        self._log.close()
        os.close(self._lock_fd)


def _replace(path: Path, text: str, *, sync: bool = False) -> None:
    """Write ``path`` atomically (a temp file renamed over it); with ``sync``, durably (file and directory)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        if sync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)
    if sync:
        fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@dataclass(frozen=True, slots=True, kw_only=True)
class NatsSinkConfig:
    servers: list[str]
    stream: str = DEFAULT_STREAM
    prefix: str = DEFAULT_PREFIX
    spool_dir: Path
    spool_bytes: int = DEFAULT_SPOOL_BYTES
    replicas: int = 1
    host: str = ""
    batch: int = 256
    fsync: FsyncPolicy = "batch"


class NatsSink:
    """Records in (:meth:`put`, from the watcher thread), acknowledged JetStream messages out (its own thread)."""

    def __init__(self, config: NatsSinkConfig) -> None:
        self.config = config
        self.host = subject_token(config.host or socket.gethostname())
        self.spool = Spool(config.spool_dir, max_bytes=config.spool_bytes, fsync=config.fsync)
        self._id_head = f"{self.host}:{boot_id()}:{self.spool.epoch}:"
        self._subject_head = f"{config.prefix}.{self.host}."
        self.seq = 0
        self.lost = 0
        self._lost_after = 0
        self._lost_kinds: dict[str, int] = {}
        self.published = 0
        #: Batches that failed part-way (each is re-published from its first unacknowledged record).
        self.retries = 0
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._drain_until = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._thread_main, name="fsnorm-nats", daemon=True)
        self._thread.start()
        self._started.wait()

    # -- watcher side -------------------------------------------------------------------------------------
    def _line(self, rec: Rec, json_line: str) -> bytes:
        self.seq += 1
        return f"{self._id_head}{self.seq}\t{self._subject_head}{subject_token(rec.kind)}\t{json_line}\n".encode()

    def put(self, records: Sequence[Rec], json_lines: Sequence[str] | None = None) -> None:
        """Spool ``records`` for publishing (``json_lines``: their ``rec_to_json`` forms, if already made).

        After a loss, the ``overflow`` record that reports it must go first; until it fits, every record is
        lost too (and counted in it)."""
        if not records:
            return
        texts = json_lines if json_lines is not None else [rec_to_json(r) for r in records]
        if self.lost:
            if self.spool.append([self._overflow_line(records[0].t_ns)]):
                self.lost = 0
                self._lost_kinds = {}
            else:
                self.seq -= 1  # the overflow line was not written: its seq is reused
        lines = [self._line(r, t) for r, t in zip(records, texts, strict=True)]
        taken = 0 if self.lost else self.spool.append(lines)
        self.seq -= len(lines) - taken  # only spooled records are numbered: no gaps in a host's seqs
        for rec in records[taken:]:
            if not self.lost:
                self._lost_after = self.seq
            self.lost += 1
            self._lost_kinds[rec.kind] = self._lost_kinds.get(rec.kind, 0) + 1
        self._poke()

    def _overflow_line(self, t_ns: int) -> bytes:
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(self._lost_kinds.items()))
        msg = (f"nats sink: spool full ({self.spool.max_bytes} bytes unacknowledged): {self.lost} records lost "
               f"after seq {self._lost_after} ({kinds})")
        rec = Rec.note("overflow", b"", False, t_ns, 0, message=msg)
        return self._line(rec, rec_to_json(rec))

    def _poke(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(wake.set)

    def close(self, timeout: float = 5.0) -> int:
        """Publish what is spooled for up to ``timeout`` seconds, stop; return the records left in the spool."""
        self._drain_until = time.monotonic() + timeout
        self._stop.set()
        self._poke()
        self._thread.join(timeout + 5)
        left = self.spool.pending_records()
        self.spool.close()
        return left

    # -- publisher side -----------------------------------------------------------------------------------
    def _thread_main(self) -> None:
        import asyncio
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except Exception as exc:  # the records stay spooled for the next run; the summary names the error
            self.last_error = f"publisher stopped: {exc!r}"
        finally:
            self._started.set()
            loop.close()

    async def _main(self) -> None:
        import asyncio

        import nats
        from nats.js.api import RetentionPolicy, StorageType, StreamConfig

        self._wake = asyncio.Event()
        self._started.set()
        # nats-py retries the first connect forever with max_reconnect_attempts=-1 (what a sink wants: the log
        # may come up later); the task is cancelled if fsnorm stops first.
        connecting = asyncio.ensure_future(nats.connect(
            servers=self.config.servers, connect_timeout=2, max_reconnect_attempts=-1, reconnect_time_wait=0.2,
            allow_reconnect=True, error_cb=self._on_error))
        while not connecting.done() and not self._stopping():
            await asyncio.wait({connecting}, timeout=0.2)
        if not connecting.done():
            connecting.cancel()
            with contextlib.suppress(BaseException):
                await connecting
            return
        nc = connecting.result()
        js = nc.jetstream()
        config = StreamConfig(name=self.config.stream, subjects=[f"{self.config.prefix}.>"],
                              retention=RetentionPolicy.LIMITS, storage=StorageType.FILE,
                              max_age=STREAM_MAX_AGE_S, duplicate_window=STREAM_DUPLICATE_WINDOW_S,
                              num_replicas=self.config.replicas)
        sent = self.spool.acked
        prev = self.spool.last_acked_id
        have_stream = False
        backoff = 0.05
        batch = self.config.batch
        try:
            while not (self._stop.is_set()
                       and (not self.spool.pending_bytes() or time.monotonic() >= self._drain_until)):
                if not have_stream:
                    have_stream = await self._ensure_stream(js, config)
                    if not have_stream:
                        await self._sleep(backoff)
                        backoff = min(backoff * 2, 2.0)
                        continue
                lines = self.spool.read(sent, batch)
                if not lines:
                    await self._sleep(1.0)
                    continue
                done = await self._publish(js, lines, prev)
                if done:
                    last = lines[done - 1]
                    self.spool.ack(last.end, last.msg_id)
                    sent, prev = self.spool.acked, last.msg_id
                    self.published += done
                if done == len(lines):
                    backoff = 0.05
                    batch = self.config.batch
                else:
                    # Re-publish in spool order from the first unacknowledged record, one at a time until one is
                    # acknowledged: a pipelined retry during a leader change could store later records first.
                    self.retries += 1
                    batch = 1
                    await self._sleep(backoff)
                    backoff = min(backoff * 2, 2.0)
        finally:
            with contextlib.suppress(Exception):
                await nc.close()

    async def _ensure_stream(self, js: JetStreamContext, config: StreamConfig) -> bool:
        """Use the stream if it exists (as the operator configured it), else create it with ``config``."""
        try:
            await js.stream_info(self.config.stream)
            return True
        except Exception:
            pass
        try:
            await js.add_stream(config)
            return True
        except Exception as exc:
            self.last_error = f"stream: {exc!r}"
            return False

    async def _publish(self, js: JetStreamContext, lines: list[SpoolLine], prev: str) -> int:
        """Publish a batch in order, pipelined; return how many lines from the first are acknowledged (stored or
        duplicate) without a failure before them.

        The caller retries from the first line not counted: lines after it that were stored anyway are
        duplicates by msg id and JetStream drops them (they keep their place; the consumer reorders by the
        ``Fsnorm-Prev`` chain)."""
        import asyncio
        prevs = [prev, *(ln.msg_id for ln in lines[:-1])]
        futures = [js.publish(ln.subject, ln.payload, timeout=2.0, stream=self.config.stream,
                              headers={"Nats-Msg-Id": ln.msg_id, PREV_HEADER: p})
                   for ln, p in zip(lines, prevs, strict=True)]
        results = await asyncio.gather(*futures, return_exceptions=True)
        for i, result in enumerate(results):
            if isinstance(result, BaseException):
                self.last_error = f"publish: {result!r}"
                return i
        return len(results)

    async def _on_error(self, exc: Exception) -> None:
        """Connection errors while the log is down are expected: kept for the exit summary, not logged each."""
        self.last_error = f"connection: {exc!r}"

    def _stopping(self) -> bool:
        return self._stop.is_set() and time.monotonic() >= self._drain_until

    async def _sleep(self, seconds: float) -> None:
        """Wait ``seconds`` or until :meth:`put`/:meth:`close` pokes the loop."""
        import asyncio
        assert self._wake is not None
        if self._wake.is_set():
            self._wake.clear()
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()
