"""``fsnorm serve``: one watcher, many subscribers, over unix and TCP sockets (wire protocol v1).

Why asyncio plus one watcher thread:

* The watcher is a blocking loop over the kernel fd (``LiveSource.read``), the same code ``fsnorm watch`` runs.
  It runs in its own thread and never waits for a client: it appends each record, encoded once, to the
  :class:`~normalizer.net.journal.Journal` under a short lock and pokes the event loop (at most one pending
  wake-up, so nothing queues up behind a busy loop).
* Clients are many and mostly idle: one coroutine each on one event loop, not a thread each. A client is a
  cursor into the journal. Its coroutine copies what matches its filter into its socket and awaits ``drain()``;
  a client that does not read blocks only its own coroutine, holding at most its transport's write buffer
  (``write_buffer`` bytes) plus the kernel socket buffer: that is the per-client bound. If the journal moves on
  past its cursor meanwhile, it gets a RESCAN with the lost range and continues from the oldest record held
  (``slow_client="rescan"``) or an ERROR and is disconnected (``"drop"``). Nobody else notices.
* Hostile peers: the handshake must finish within ``handshake_timeout`` (slowloris); the frame decoder refuses
  a frame over the wire limit before buffering it and any malformed frame ends that connection with an ERROR
  frame; a client that stops reading for ``stall_timeout`` is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from ..errors import ProtocolError, SourceError
from ..records import Rec
from . import wire
from .exports import Export, PathMap, check_subscription_path
from .ids import IdMinter
from .journal import Journal, plan_resume

SlowPolicy = Literal["rescan", "drop"]
_PEERCRED = struct.Struct("3i")


#: How long a stopping server waits for its clients to read what is left before it closes them.
SHUTDOWN_DRAIN_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class ServerOptions:
    """How ``fsnorm serve`` listens and treats clients (defaults: --help of ``fsnorm serve``)."""

    listen: tuple[str, ...] = ()
    socket_mode: int = 0o600
    allow_uids: frozenset[int] | None = None
    handshake_timeout: float = 10.0
    stall_timeout: float = 300.0
    slow_client: SlowPolicy = "rescan"
    max_clients: int = 1024
    write_buffer: int = 256 << 10
    journal_records: int = 1_000_000
    journal_bytes: int = 256 << 20
    journal_age: float = 3600.0
    extra_kinds: frozenset[str] = field(default_factory=frozenset)


def parse_listen(addr: str) -> tuple[str, str, int]:
    """``unix:/path`` -> ("unix", path, 0); ``tcp:HOST:PORT`` or ``tcp:PORT`` (loopback) -> ("tcp", host, port)."""
    kind, sep, rest = addr.partition(":")
    if sep and kind == "unix" and rest:
        return "unix", rest, 0
    if sep and kind == "tcp" and rest:
        host, _, port = rest.rpartition(":")
        host = host.strip("[]") or "127.0.0.1"
        try:
            number = int(port)
        except ValueError:
            raise ValueError(f"bad port in {addr!r}") from None
        if not 0 <= number <= 65535:
            raise ValueError(f"bad port in {addr!r}")
        return "tcp", host, number
    raise ValueError(f"bad address {addr!r}: use unix:/path or tcp:HOST:PORT")


class _Drop(Exception):
    """End this client's connection with an ERROR frame."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class _Client:
    """One subscription: its cursor and filter."""

    __slots__ = ("cursor", "exact", "kinds", "peer", "prefix", "sent")

    def __init__(self, peer: str) -> None:
        self.peer = peer
        self.cursor = 0
        self.kinds: frozenset[str] | None = None
        self.exact = b""
        self.prefix = b""
        self.sent = 0

    def wants(self, kind: str, a: bytes, b: bytes) -> bool:
        if kind in wire.STREAM_KINDS:
            return True
        if self.kinds is not None and kind not in self.kinds:
            return False
        if not self.exact:
            return True
        return (a == self.exact or a.startswith(self.prefix)
                or (bool(b) and (b == self.exact or b.startswith(self.prefix))))


class Server:
    """Serves the records of one live source to subscribers. :meth:`run` inside asyncio; :meth:`stop` from
    anywhere (thread-safe)."""

    def __init__(self, source: object, exports: Sequence[Export], options: ServerOptions) -> None:
        self.source = source  # a LiveSource (duck-typed: open/read/close/wake/filter)
        self.exports = list(exports)
        self.paths = PathMap(self.exports)
        self.options = options
        #: Opaque object/directory ids, with a secret of this run (epoch): :mod:`.ids`.
        self.ids = IdMinter()
        self.journal = Journal(max_records=options.journal_records, max_bytes=options.journal_bytes,
                               max_age_ns=int(options.journal_age * 1e9))
        kinds = getattr(getattr(source, "filter", None), "kinds", None)
        self.kinds = frozenset(wire.KIND_CODES) if kinds is None else frozenset(kinds) | wire.STREAM_KINDS
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: asyncio.Event | None = None
        self._wake_pending = False
        self._stopping = threading.Event()
        self._watch_done = False
        self.watch_error: BaseException | None = None
        self.clients: set[_Client] = set()
        self.addresses: list[str] = []
        self.stats = {"records": 0, "skipped": 0, "clients": 0, "dropped": 0, "rescans": 0, "refused": 0}

    # -- the watcher side (its own thread) --------------------------------------------------------------

    def publish(self, records: Sequence[Rec]) -> None:
        """Journal records (export paths, encoded once) and wake the clients. Called by the watcher thread."""
        if not records:
            return
        now = time.monotonic_ns()
        to_export = self.paths.to_export
        with self._lock:
            for rec in records:
                a = to_export(rec.path)
                b = to_export(rec.dst) if rec.kind == "rename" else b""
                if not a and not b and rec.kind not in wire.STREAM_KINDS:
                    self.stats["skipped"] += 1
                    continue
                self.journal.append(rec.kind, a, b, self._encoder(rec, a, b), now)
                self.stats["records"] += 1
        self._poke()

    def _encoder(self, rec: Rec, a: bytes, b: bytes) -> Callable[[int], bytes]:
        message = self.paths.scrub(rec.message)

        def encode(seq: int) -> bytes:
            try:
                return wire.encode(wire.from_rec(rec, seq, a, b, message=message, ids=self.ids))
            except ProtocolError as exc:
                note = Rec.note("error", b"", False, rec.t_ns, 0, message=f"record not sendable: {exc}")
                return wire.encode(wire.from_rec(note, seq, b""))
        return encode

    def _poke(self) -> None:
        loop = self._loop
        if loop is None or self._wake_pending:
            return
        self._wake_pending = True
        with contextlib.suppress(RuntimeError):  # loop closed: nobody to wake
            loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        self._wake_pending = False
        old = self._changed
        self._changed = asyncio.Event()
        if old is not None:
            old.set()

    def _watch(self, first: list[Rec]) -> None:
        source = self.source
        try:
            self.publish(first)
            while not self._stopping.is_set():
                self.publish(source.read(None))  # type: ignore[attr-defined]
            self.publish(source.close("signal"))  # type: ignore[attr-defined]
        except BaseException as exc:  # reported by run(); the clients get the end of the stream
            self.watch_error = exc
            with contextlib.suppress(Exception):
                source.close()  # type: ignore[attr-defined]
        finally:
            self._watch_done = True
            self._stopping.set()
            self._poke_always()

    def _poke_always(self) -> None:
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._wake)

    # -- lifecycle ------------------------------------------------------------------------------------------

    def stop(self) -> None:
        """End the watch; clients get what is left and an ERROR 'shutdown'. Safe from any thread."""
        self._stopping.set()
        self.source.wake()  # type: ignore[attr-defined]

    async def run(self, on_ready: Callable[[list[str]], object] | None = None) -> None:
        """Open the source, listen, serve until :meth:`stop` (or the watcher fails), then close everything."""
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()
        first: list[Rec] = self.source.open()  # type: ignore[attr-defined]
        servers: list[asyncio.AbstractServer] = []
        unix_paths: list[str] = []
        watcher = threading.Thread(target=self._watch, args=(first,), name="fsnorm-serve-watch", daemon=True)
        try:
            for addr in self.options.listen:
                servers.append(await self._listen(addr, unix_paths))
            watcher.start()
            if on_ready is not None:
                on_ready(self.addresses)
            while not self._watch_done:
                ev = self._changed
                await ev.wait()
            # Let every client reach the end of the journal and its 'shutdown' ERROR (bounded: a client that does
            # not read is closed without it after SHUTDOWN_DRAIN_SECONDS; 2 s was too short for a client still
            # catching up from the journal on a loaded 2-core machine: tests/test_net_slow.py).
            deadline = time.monotonic() + SHUTDOWN_DRAIN_SECONDS
            while self.clients and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
        finally:
            self.stop()
            for srv in servers:
                srv.close()
            for path in unix_paths:
                with contextlib.suppress(OSError):
                    os.unlink(path)
            if watcher.is_alive():
                await asyncio.get_running_loop().run_in_executor(None, watcher.join, 5.0)
        if self.watch_error is not None and not isinstance(self.watch_error, KeyboardInterrupt):
            raise self.watch_error

    async def _listen(self, addr: str, unix_paths: list[str]) -> asyncio.AbstractServer:
        kind, where, port = parse_listen(addr)
        if kind == "tcp":
            srv = await asyncio.start_server(self._handle, where, port, limit=wire.MAX_BODY)
            for sock in srv.sockets:
                host, bound = sock.getsockname()[:2]
                self.addresses.append(f"tcp:{host}:{bound}")
            return srv
        sock = _bind_unix(where, self.options.socket_mode)
        unix_paths.append(where)
        self.addresses.append(f"unix:{where}")
        return await asyncio.start_unix_server(self._handle, sock=sock, limit=wire.MAX_BODY)

    # -- one client -------------------------------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        transport = writer.transport
        transport.set_write_buffer_limits(high=self.options.write_buffer)
        peer = str(writer.get_extra_info("peername") or "unix")
        client = _Client(peer)
        dec = wire.FrameDecoder()
        try:
            if len(self.clients) >= self.options.max_clients:
                raise _Drop(wire.E_BUSY, f"too many clients (at most {self.options.max_clients})")
            self._check_peer(writer)
            self.clients.add(client)
            self.stats["clients"] += 1
            await self._handshake(client, reader, writer, dec)
            await self._serve(client, reader, writer, dec)
        except _Drop as exc:
            self.stats["dropped"] += 1
            await _send_error(writer, exc.code, str(exc))
        except ProtocolError as exc:
            self.stats["dropped"] += 1
            await _send_error(writer, exc.code, str(exc))
        except TimeoutError:
            self.stats["dropped"] += 1
            await _send_error(writer, wire.E_TIMEOUT, "timed out")
        except (ConnectionError, OSError, asyncio.IncompleteReadError, EOFError):
            pass
        finally:
            self.clients.discard(client)
            transport.abort()

    def _check_peer(self, writer: asyncio.StreamWriter) -> None:
        allowed = self.options.allow_uids
        sock = writer.get_extra_info("socket")
        if allowed is None or sock is None or sock.family != socket.AF_UNIX:
            return
        _, uid, _ = _PEERCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
        if uid not in allowed:
            self.stats["refused"] += 1
            raise _Drop(wire.E_DENIED, f"uid {uid} is not allowed (--allow-uid)")

    async def _handshake(self, client: _Client, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                         dec: wire.FrameDecoder) -> None:
        async with asyncio.timeout(self.options.handshake_timeout):
            hello = await _read_frame(reader, dec)
            if not isinstance(hello, wire.Hello):
                raise ProtocolError(f"expected HELLO, got {type(hello).__name__.upper()}", code=wire.E_PROTOCOL)
            common = set(hello.versions) & set(wire.VERSIONS)
            if not common:
                raise _Drop(wire.E_VERSION, f"no common version (server speaks {list(wire.VERSIONS)})")
            with self._lock:
                welcome = wire.Welcome(max(common), self.journal.epoch, self.journal.oldest_seq,
                                       self.journal.last_seq, tuple(e.name for e in self.exports), self.kinds)
            writer.write(wire.encode(welcome))
            sub = await _read_frame(reader, dec)
            if not isinstance(sub, wire.Subscribe):
                raise ProtocolError(f"expected SUBSCRIBE, got {type(sub).__name__.upper()}", code=wire.E_PROTOCOL)
        prefix = check_subscription_path(sub.path, self.exports)
        client.kinds = sub.kinds
        client.exact, client.prefix = (prefix, prefix + b"/") if prefix else (b"", b"")
        with self._lock:
            resume = plan_resume(self.journal, sub.since, sub.epoch)
        client.cursor = resume.cursor
        frames = [wire.encode(wire.Subscribed(self.journal.epoch, resume.cursor))]
        if resume.rescan is not None:
            self.stats["rescans"] += 1
            frames.append(wire.encode(resume.rescan))
        writer.write(b"".join(frames))
        await asyncio.wait_for(writer.drain(), self.options.stall_timeout)

    async def _serve(self, client: _Client, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     dec: wire.FrameDecoder) -> None:
        """Send from the journal until the end of the stream; a peer that sends garbage or hangs up ends it."""
        me = asyncio.current_task()
        why: list[BaseException] = []

        async def watch_input() -> None:
            try:
                while True:
                    await _read_frame(reader, dec)  # unknown frames are skipped; nothing else is expected now
                    raise ProtocolError("unexpected frame after SUBSCRIBE", code=wire.E_PROTOCOL)
            except (ProtocolError, EOFError, ConnectionError, OSError) as exc:
                why.append(exc)
                if me is not None:
                    me.cancel()

        listener = asyncio.create_task(watch_input())
        try:
            await self._send_loop(client, writer)
        except asyncio.CancelledError:
            if why and isinstance(why[0], ProtocolError):
                raise why[0] from None
            if why:
                return
            raise
        finally:
            listener.cancel()

    async def _send_loop(self, client: _Client, writer: asyncio.StreamWriter) -> None:
        journal = self.journal
        wants = client.wants
        while True:
            changed = self._changed
            with self._lock:
                gap, entries = journal.read(client.cursor, limit=512)
                oldest, last = journal.oldest_seq, journal.last_seq
            out: list[bytes] = []
            if gap is not None:
                if self.options.slow_client == "drop":
                    raise _Drop(wire.E_TOO_SLOW, f"fell behind: records {gap.first}..{gap.last} left the journal")
                self.stats["rescans"] += 1
                out.append(wire.encode(wire.Rescan(journal.epoch, wire.R_SLOW, gap.first, gap.last,
                                                   f"fell behind: records {gap.first}..{gap.last} were dropped")))
                client.cursor = oldest
            if entries:
                client.cursor = entries[-1].seq + 1
                out.extend(e.data for e in entries if wants(e.kind, e.a, e.b))
            if out:
                client.sent += len(out)
                writer.write(b"".join(out))
                await asyncio.wait_for(writer.drain(), self.options.stall_timeout)
                continue
            if client.cursor > last and self._watch_done:
                raise _Drop(wire.E_SHUTDOWN, "server shutting down")
            if entries or gap is not None:
                continue
            assert changed is not None
            await changed.wait()


async def _read_frame(reader: asyncio.StreamReader, dec: wire.FrameDecoder) -> wire.Frame:
    """The next known frame (unknown ones are skipped). EOFError at end of stream."""
    while True:
        frame = dec.next_frame()
        if frame is not None:
            if isinstance(frame, wire.UnknownFrame):
                continue
            return frame
        data = await reader.read(65536)
        if not data:
            raise EOFError("peer closed the connection")
        dec.feed(data)


async def _send_error(writer: asyncio.StreamWriter, code: int, message: str, timeout: float = 10.0) -> None:
    """Send the ERROR frame after everything already queued, and wait (at most ``timeout``: a client that does
    not read must not hold a connection forever) until all of it reached the kernel, so that closing the
    connection does not discard the reason."""
    with contextlib.suppress(Exception):
        writer.write(wire.encode(wire.Error(code, message[:1000])))
        writer.transport.set_write_buffer_limits(high=0)  # drain() now waits for an empty buffer
        await asyncio.wait_for(writer.drain(), timeout)


def _bind_unix(path: str, mode: int) -> socket.socket:
    """A listening unix socket at ``path`` created with ``mode`` (no moment with wider permissions). A stale
    socket file (nobody listening) is replaced; a live one or any other file is an error."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(st.st_mode):
            raise SourceError(f"{path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)
        else:
            raise SourceError(f"{path}: another server is listening there")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o777 & ~mode)
    try:
        sock.bind(path)
    finally:
        os.umask(old)
    os.chmod(path, mode)
    sock.listen(128)
    sock.setblocking(False)
    return sock
