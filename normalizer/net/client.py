"""The subscriber side of wire protocol v1: a blocking iterator and an asyncio iterator over a server's records.

Both share :class:`_Session` (sans-IO: frames in -> records out, plus what to send), so the two transports
cannot drift apart. A RESCAN frame becomes a record of kind ``rescan`` (its ``message`` says why and which
seqs were lost): the client must re-read the tree it cares about, as after an ``overflow``.

Records are :class:`normalizer.Record` with ``bytes`` paths (``EXPORT/rel``: the server's names; this machine's
filesystem encoding says nothing about them) and with ``seq`` and ``epoch`` set; resume with
``since=record.seq, epoch=record.epoch``. A rescan record's seq is the last seq it stands for, so resuming after
it is right too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Generic, Literal, TypeVar, overload

from ..errors import ProtocolError, SubscriptionError
from ..record import Record, from_rec
from ..records import Rec
from . import wire

#: A record from a server: :class:`normalizer.Record` with bytes paths, ``seq`` and ``epoch`` set.
RemoteRecord = Record[bytes]
#: What a subscription yields: :data:`RemoteRecord`, or the internal ``Rec`` (``raw_records=True``).
R = TypeVar("R", Record[bytes], Rec)


def to_remote_record(rec: Rec) -> Record[bytes]:
    """The public record of a received record (``rec.seq``/``rec.epoch`` set by the session)."""
    return from_rec(rec, getattr(rec, "seq", 0), getattr(rec, "epoch", 0))


def _raw(rec: Rec) -> Rec:
    return rec


def parse_address(addr: str) -> tuple[int, str | tuple[str, int]]:
    """``unix:/path`` (or a bare path) -> (AF_UNIX, path); ``tcp:HOST:PORT`` -> (AF_INET[6], (host, port))."""
    if addr.startswith("unix:"):
        return socket.AF_UNIX, addr[5:]
    if addr.startswith("tcp:"):
        host, _, port = addr[4:].rpartition(":")
        host = host.strip("[]") or "127.0.0.1"
        try:
            number = int(port)
        except ValueError:
            raise SubscriptionError(f"bad port in {addr!r}") from None
        return (socket.AF_INET6 if ":" in host else socket.AF_INET), (host, number)
    if addr.startswith("/") or addr.startswith("."):
        return socket.AF_UNIX, addr
    raise SubscriptionError(f"bad address {addr!r}: use unix:/path or tcp:HOST:PORT")


class _Session:
    """The client's protocol state, sans-IO: :meth:`receive` takes frames and returns records."""

    def __init__(self, subscribe: wire.Subscribe) -> None:
        self.subscribe = subscribe
        self.welcome: wire.Welcome | None = None
        self.epoch = 0
        self.last_seq = subscribe.since or 0
        self.subscribed = False
        self.ended = False

    def hello(self) -> bytes:
        return wire.encode(wire.Hello(wire.VERSIONS))

    def receive(self, frame: wire.Frame) -> tuple[list[Rec], bytes]:
        """Records for the user, and bytes to send back."""
        if isinstance(frame, wire.UnknownFrame):
            return [], b""
        if isinstance(frame, wire.Error):
            self.ended = True
            if frame.code == wire.E_SHUTDOWN:
                return [], b""
            raise SubscriptionError(f"server: {frame.message}", code=frame.code)
        if self.welcome is None:
            if not isinstance(frame, wire.Welcome):
                raise ProtocolError(f"expected WELCOME, got {type(frame).__name__.upper()}")
            if frame.version not in wire.VERSIONS:
                raise ProtocolError(f"server chose version {frame.version}, which was not offered")
            self.welcome = frame
            self.epoch = frame.epoch
            return [], wire.encode(self.subscribe)
        if isinstance(frame, wire.Subscribed):
            self.subscribed = True
            self.epoch = frame.epoch
            self.last_seq = frame.next_seq - 1
            return [], b""
        if not self.subscribed:
            raise ProtocolError(f"expected SUBSCRIBED, got {type(frame).__name__.upper()}")
        if isinstance(frame, wire.Record):
            rec = wire.to_rec(frame)
            rec.seq = frame.seq  # type: ignore[attr-defined]
            rec.epoch = self.epoch  # type: ignore[attr-defined]
            self.last_seq = frame.seq
            return [rec], b""
        if isinstance(frame, wire.Rescan):
            lost = f"; records {frame.lost_from}..{frame.lost_to} lost" if frame.lost_to else ""
            reason = wire.RESCAN_REASONS.get(frame.reason, f"reason {frame.reason}")
            rec = wire.WireRec.note("rescan", b"", True, 0, 0, message=f"{reason}{lost}: {frame.message}")
            if frame.lost_to:
                self.last_seq = max(self.last_seq, frame.lost_to)
            rec.seq = self.last_seq  # type: ignore[attr-defined]
            rec.epoch = frame.epoch  # type: ignore[attr-defined]
            return [rec], b""
        raise ProtocolError(f"unexpected {type(frame).__name__.upper()} frame from the server")


def _subscribe_frame(path: str | bytes, events: Iterable[str] | None, since: int | None,
                     epoch: int) -> wire.Subscribe:
    kinds = None
    if events is not None:
        kinds = frozenset(events)
        unknown = kinds - set(wire.KIND_CODES)
        if unknown:
            raise SubscriptionError(f"unknown event kind(s): {', '.join(sorted(unknown))}")
    return wire.Subscribe(os.fsencode(path) if path else b"", kinds, since, epoch)


class Subscription(Generic[R]):
    """A subscription to ``fsnorm serve``. Iterate it (``for``) or ``async for`` it; not both.

    ``raw_records=True`` (internal: ``fsnorm subscribe``) yields the core's :class:`~normalizer.records.Rec`
    (with ``seq`` and ``epoch`` attributes) instead of :class:`~normalizer.Record`; ``on_frame`` sees every
    frame received (debugging: ``--frames``)."""

    def __init__(self, addr: str, *, path: str | bytes = "", events: Iterable[str] | None = None,
                 since: int | None = None, epoch: int = 0, raw_records: bool = False,
                 connect_timeout: float = 10.0, on_frame: Callable[[wire.Frame], object] | None = None) -> None:
        self.addr = addr
        self.on_frame = on_frame
        self.family, self.where = parse_address(addr)
        self.session = _Session(_subscribe_frame(path, events, since, epoch))
        self.raw_records = raw_records
        self._out: Callable[[Rec], R] = _raw if raw_records else to_remote_record  # type: ignore[assignment]
        self.connect_timeout = connect_timeout
        self._sock: socket.socket | None = None
        self._closed = False
        #: Records of a read that an iteration stopped before (``__iter__``), for the next one.
        self._unread: list[R] = []

    @property
    def epoch(self) -> int:
        return self.session.epoch

    @property
    def last_seq(self) -> int:
        """The seq of the last record received (resume point)."""
        return self.session.last_seq

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    @property
    def welcome(self) -> wire.Welcome | None:
        return self.session.welcome

    # -- blocking ---------------------------------------------------------------------------------------

    def connect(self) -> Subscription[R]:
        """Connect and finish the handshake (records that arrive with it are kept for iteration)."""
        if self._sock is not None:
            return self
        sock: socket.socket | None = None
        try:
            sock = socket.socket(self.family, socket.SOCK_STREAM)
            sock.settimeout(self.connect_timeout)
            sock.connect(self.where)
        except OSError as exc:
            if sock is not None:
                sock.close()
            raise SubscriptionError(f"cannot connect to {self.addr}: {exc.strerror or exc}") from None
        self._sock = sock
        self._dec = wire.FrameDecoder()
        self._pending: list[Rec] = []
        try:
            sock.sendall(self.session.hello())
            while not self.session.subscribed:
                self._pending.extend(self._pump())
                if self.session.ended:
                    break
        except BaseException:
            sock.close()  # refused or broken in the handshake: nothing more comes on it
            raise
        sock.settimeout(None)
        return self

    def _pump(self) -> list[Rec]:
        assert self._sock is not None
        try:
            data = self._sock.recv(65536)
        except TimeoutError:
            raise SubscriptionError(f"{self.addr}: no answer from the server") from None
        except OSError as exc:
            if self._closed:
                return []
            raise SubscriptionError(f"{self.addr}: {exc.strerror or exc}") from None
        if not data:
            self.session.ended = True
            if self._closed:
                return []
            raise SubscriptionError(f"{self.addr}: the server closed the connection")
        self._dec.feed(data)
        out: list[Rec] = []
        for frame in self._dec.frames():
            if self.on_frame is not None:
                self.on_frame(frame)
            recs, reply = self.session.receive(frame)
            out.extend(recs)
            if reply:
                self._sock.sendall(reply)
        return out

    def __enter__(self) -> Subscription[R]:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Hang up (safe from another thread: a blocked iteration ends)."""
        self._closed = True
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()

    def __iter__(self) -> Iterator[R]:
        for batch in self.batches():
            left = len(batch)
            try:
                for rec in batch:
                    left -= 1
                    yield rec
            finally:
                if left:  # stopped inside a read's records: the next iteration starts with the rest
                    self._unread = batch[len(batch) - left:]

    def batches(self) -> Iterator[list[R]]:
        """The records as they arrive, one list per socket read (what a CLI writes with one syscall).

        An iteration that connected (a bare ``for rec in subscribe(...)``) hangs up when it stops, however it
        stops (``break``, an exception in the loop's body, the iterator dropped): nothing else could. On a
        subscription connected beforehand (``with subscribe(...) as sub``, :meth:`connect`), a stopped
        iteration leaves the connection to its owner, and the next one goes on where it stopped."""
        owned = self._sock is None
        self.connect()
        try:
            if self._pending:
                pending, self._pending = self._pending, []
                yield [self._out(r) for r in pending]
            if self._unread:
                unread, self._unread = self._unread, []
                yield unread
            while not self.session.ended and not self._closed:
                try:
                    recs = self._pump()
                except SubscriptionError:
                    self._sock.close()  # type: ignore[union-attr]  # the server closed it or it broke: release it
                    raise
                if recs:
                    yield [self._out(r) for r in recs]
            if self._sock is not None:
                self._sock.close()  # the stream ended: released now, not when the object is collected
        finally:
            if owned and not self._closed:
                self.close()

    # -- asyncio --------------------------------------------------------------------------------------------

    async def __aiter__(self) -> AsyncIterator[R]:
        try:
            where = self.where
            if isinstance(where, str):  # AF_UNIX: a path; else (host, port)
                reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(where), self.connect_timeout)
            else:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(*where), self.connect_timeout)
        except (OSError, TimeoutError) as exc:
            raise SubscriptionError(f"cannot connect to {self.addr}: {exc}") from None
        dec = wire.FrameDecoder()
        try:
            writer.write(self.session.hello())
            while not self.session.ended:
                data = await reader.read(65536)
                if not data:
                    raise SubscriptionError(f"{self.addr}: the server closed the connection")
                dec.feed(data)
                for frame in dec.frames():
                    if self.on_frame is not None:
                        self.on_frame(frame)
                    recs, reply = self.session.receive(frame)
                    if reply:
                        writer.write(reply)
                    for rec in recs:
                        yield self._out(rec)
        finally:
            writer.close()


@overload
def subscribe(addr: str, *, path: str | bytes = "", events: Iterable[str] | None = None, since: int | None = None,
              epoch: int = 0, raw_records: Literal[False] = False, connect_timeout: float = 10.0,
              on_frame: Callable[[wire.Frame], object] | None = None) -> Subscription[Record[bytes]]: ...
@overload
def subscribe(addr: str, *, path: str | bytes = "", events: Iterable[str] | None = None, since: int | None = None,
              epoch: int = 0, raw_records: Literal[True], connect_timeout: float = 10.0,
              on_frame: Callable[[wire.Frame], object] | None = None) -> Subscription[Rec]: ...
def subscribe(addr: str, *, path: str | bytes = "", events: Iterable[str] | None = None, since: int | None = None,
              epoch: int = 0, raw_records: bool = False, connect_timeout: float = 10.0,
              on_frame: Callable[[wire.Frame], object] | None = None
              ) -> Subscription[Record[bytes]] | Subscription[Rec]:
    """Subscribe to ``fsnorm serve`` at ``addr`` (``unix:/path`` or ``tcp:HOST:PORT``).

    ``path``: ``EXPORT`` or ``EXPORT/SUBDIR`` (default: every export). ``events``: record kinds to receive
    (stream kinds such as ``overflow`` and ``rescan`` always come). ``since``/``epoch``: resume after that
    record; a ``rescan`` record comes first if that is no longer possible. Use as ``for`` or ``async for``."""
    return Subscription(addr, path=path, events=events, since=since, epoch=epoch, raw_records=raw_records,
                        connect_timeout=connect_timeout, on_frame=on_frame)
