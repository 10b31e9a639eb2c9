"""Wire protocol v1 of ``fsnorm serve``: a sans-IO codec (bytes in -> frames out; frames -> bytes).

Like h11, this module does no I/O: :class:`FrameDecoder` takes whatever bytes a socket gave (any split) and
returns whole frames; :func:`encode` turns a frame into bytes. The server and the client (blocking or asyncio)
share it, and the fuzzer drives it directly. docs/wire-protocol.md is the specification, with test vectors
that tests/test_wire.py checks byte for byte.

Why binary and length-prefixed: a reader must know where a frame ends before it parses it (so an unknown frame
type, or fields added by a later version at the end of a known frame, can be skipped), and a hard maximum frame
size (:data:`MAX_BODY`) bounds what a reader ever buffers for a hostile peer. Names are at most NAME_MAX (255)
bytes and paths PATH_MAX (4096), so a record has a fixed upper size (virtio-style buffers).

Every malformed input raises :class:`~normalizer.errors.ProtocolError` (a typed error with a code), never
another exception.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Final, TypeAlias

from ..errors import ProtocolError
from ..records import Flag, Rec
from .ids import IdMinter

#: Protocol versions this implementation speaks.
VERSIONS: Final = (1,)
#: First bytes of a client's HELLO: lets a server reject a peer that speaks something else at once.
MAGIC: Final = b"FSNR"
#: Frame header: u32 body length, u16 frame type, u16 header flags (none defined; ignored).
HEADER: Final = struct.Struct("<IHH")
#: Largest frame body accepted or produced. A record is at most ~14 KiB (2 x (name + path) + message + ids).
MAX_BODY: Final = 65536
NAME_MAX: Final = 255
PATH_MAX: Final = 4096
MESSAGE_MAX: Final = 4096
#: Most exports a WELCOME lists (keeps it below MAX_BODY).
EXPORTS_MAX: Final = 200

# Frame types. Types a reader does not know are skipped (decoded as UnknownFrame).
T_HELLO: Final = 1
T_WELCOME: Final = 2
T_SUBSCRIBE: Final = 3
T_SUBSCRIBED: Final = 4
T_RECORD: Final = 5
T_RESCAN: Final = 6
T_ERROR: Final = 7

#: Record kind <-> code. A code a reader does not know decodes as kind "unknown" (the code is kept).
KIND_CODES: Final[dict[str, int]] = {
    "rename": 1, "create": 2, "delete": 3, "modify": 4, "attrib": 5, "close_write": 6, "close_nowrite": 7,
    "open": 8, "access": 9, "delete_self": 10, "move_self": 11, "unmount": 12, "overflow": 13,
    "watch_end": 14, "error": 15, "unknown": 16, "rescan": 17,
}
KINDS_BY_CODE: Final[dict[int, str]] = {v: k for k, v in KIND_CODES.items()}
#: Kinds that are about the stream itself: a subscription's kind filter never hides them.
STREAM_KINDS: Final = frozenset({"overflow", "watch_end", "error", "unknown", "rescan"})

# Record flag bits (u32). Bits 0-7 describe the frame's layout and fields; bits 8+ are fsnorm's Flag values.
F_SIDE_A: Final = 1 << 0  #: side A present: the rename's source, or the path of any other kind
F_SIDE_B: Final = 1 << 1  #: side B present: the rename's destination
F_COOKIE: Final = 1 << 2  #: cookie field valid
F_IS_DIR: Final = 1 << 3
F_PID: Final = 1 << 4  #: pid field valid
F_MESSAGE: Final = 1 << 5  #: a message follows the sides
RECORD_FLAG_BITS: Final[dict[str, int]] = {
    Flag.MERGED: 1 << 8, Flag.SYNTHESIZED: 1 << 9, Flag.AFTER_OVERFLOW: 1 << 10, Flag.UNWATCHED: 1 << 11,
    Flag.TIMEOUT: 1 << 12, Flag.OVERFLOW: 1 << 13, Flag.EVICTED: 1 << 14, Flag.COOKIE_REUSED: 1 << 15,
    Flag.SHUTDOWN: 1 << 16, Flag.UNKNOWN_MASK: 1 << 17, Flag.UNRESOLVED: 1 << 18, Flag.REPLACED: 1 << 19,
}
_FLAG_ORDER: Final = tuple((str(f), RECORD_FLAG_BITS[f]) for f in Flag)

SOURCES: Final = ("inotify", "fanotify")

# Subscribe flag bits.
S_SINCE: Final = 1 << 0  #: since_seq is valid (resume after it)

# Rescan reasons.
R_NEW_EPOCH: Final = 1  #: the server restarted (or the client named another epoch): its seqs mean nothing here
R_RETENTION: Final = 2  #: the records after the client's seq are no longer in the journal
R_SLOW: Final = 3  #: the client fell behind the journal while connected
R_NO_EPOCH: Final = 4  #: the client resumed by seq without naming the epoch it came from
RESCAN_REASONS: Final = {R_NEW_EPOCH: "new epoch", R_RETENTION: "retention", R_SLOW: "slow client",
                         R_NO_EPOCH: "epoch unknown"}

# Error codes (ERROR frame; the sender closes the connection after it).
E_PROTOCOL: Final = 1  #: malformed frame, wrong frame for the state
E_VERSION: Final = 2  #: no common protocol version
E_PATH: Final = 3  #: the subscription's path is refused
E_DENIED: Final = 4  #: peer credentials not allowed
E_TOO_SLOW: Final = 5  #: dropped: fell behind (policy "drop")
E_TIMEOUT: Final = 6  #: handshake not completed in time
E_BUSY: Final = 7  #: too many clients
E_SHUTDOWN: Final = 8  #: the server is stopping


@dataclass(frozen=True, slots=True)
class Hello:
    """Client -> server, first frame: the protocol versions the client speaks."""

    versions: tuple[int, ...] = VERSIONS


@dataclass(frozen=True, slots=True)
class Welcome:
    """Server -> client: the chosen version, this server run's epoch, the journal's range, exports, kinds."""

    version: int
    epoch: int
    oldest_seq: int  #: oldest seq still in the journal (last_seq + 1 when it is empty)
    last_seq: int  #: last seq assigned (0: none yet)
    exports: tuple[bytes, ...]
    kinds: frozenset[str]


@dataclass(frozen=True, slots=True)
class Subscribe:
    """Client -> server: what to receive. ``path`` is ``b""`` (everything) or ``NAME[/SUBDIR]``."""

    path: bytes = b""
    kinds: frozenset[str] | None = None  #: None: every kind
    since: int | None = None  #: resume after this seq
    epoch: int = 0  #: the epoch ``since`` belongs to (0: unknown)


@dataclass(frozen=True, slots=True)
class Subscribed:
    """Server -> client: the subscription is live; records from ``next_seq`` on follow (after any RESCAN)."""

    epoch: int
    next_seq: int


@dataclass(frozen=True, slots=True)
class Side:
    """One side of a record: the directory's object id (opaque, may be empty), the name, the export path."""

    path: bytes
    name: bytes = b""
    dir_id: bytes = b""


@dataclass(frozen=True, slots=True)
class Record:
    """One fsnorm record on the wire. ``a`` is the rename's source (or the path of any other kind); ``b`` the
    rename's destination. Paths are export-relative, prefixed by the export name (``data/a/b.txt``)."""

    seq: int
    kind: str
    a: Side | None = None
    b: Side | None = None
    is_dir: bool = False
    flags: tuple[str, ...] = ()
    cookie: int | None = None
    pid: int | None = None
    mask: int = 0
    t_ns: int = 0
    source: str = "inotify"
    object_id: bytes = b""
    message: str | None = None
    kind_code: int | None = None  #: the code as received (tells an unknown kind's code); None: from ``kind``


@dataclass(frozen=True, slots=True)
class Rescan:
    """Server -> client: records were lost for this client (range inclusive; 0, 0 when unknown); rescan."""

    epoch: int
    reason: int
    lost_from: int = 0
    lost_to: int = 0
    message: str = ""


@dataclass(frozen=True, slots=True)
class Error:
    """Either side: why the connection ends now (the sender closes after it)."""

    code: int
    message: str


@dataclass(frozen=True, slots=True)
class UnknownFrame:
    """A frame of a type this version does not know: skipped by readers (kept for logging)."""

    type: int
    body: bytes = field(repr=False)


Frame: TypeAlias = Hello | Welcome | Subscribe | Subscribed | Record | Rescan | Error | UnknownFrame


# ---------------------------------------------------------------------------------------------------------
# Encoding


def _b8(data: bytes, what: str, limit: int = 255) -> bytes:
    if len(data) > limit:
        raise ProtocolError(f"{what} is {len(data)} bytes (at most {limit})", code=E_PROTOCOL)
    return bytes((len(data),)) + data


def _b16(data: bytes, what: str, limit: int) -> bytes:
    if len(data) > limit:
        raise ProtocolError(f"{what} is {len(data)} bytes (at most {limit})", code=E_PROTOCOL)
    return struct.pack("<H", len(data)) + data


def kinds_mask(kinds: frozenset[str] | None) -> int:
    """The u32 kind bitset (bit = kind code); 0 means every kind. Bit 0 (no kind has code 0) marks a set that
    is given, so that an empty set is not read as "every kind"."""
    if kinds is None:
        return 0
    mask = 1
    for kind in kinds:
        code = KIND_CODES.get(kind)
        if code is None:
            raise ProtocolError(f"unknown record kind {kind!r}", code=E_PROTOCOL)
        mask |= 1 << code
    return mask


def kinds_from_mask(mask: int) -> frozenset[str] | None:
    """Inverse of :func:`kinds_mask`; unknown bits are ignored (forward compatibility)."""
    if mask == 0:
        return None
    return frozenset(k for k, c in KIND_CODES.items() if mask & (1 << c))


def _side(side: Side) -> bytes:
    _check_name(side.name)
    _check_path(side.path)
    return _b8(side.dir_id, "directory id") + _b8(side.name, "name", NAME_MAX) + _b16(side.path, "path", PATH_MAX)


def _record_body(r: Record) -> bytes:
    bits = 0
    if r.a is not None:
        bits |= F_SIDE_A
    if r.b is not None:
        bits |= F_SIDE_B
    if r.cookie is not None:
        bits |= F_COOKIE
    if r.is_dir:
        bits |= F_IS_DIR
    if r.pid is not None:
        bits |= F_PID
    if r.message is not None:
        bits |= F_MESSAGE
    for f in r.flags:
        bit = RECORD_FLAG_BITS.get(f)
        if bit is None:
            raise ProtocolError(f"record flag {f!r} has no wire bit", code=E_PROTOCOL)
        bits |= bit
    code = r.kind_code if r.kind_code is not None else KIND_CODES.get(r.kind)
    if code is None:
        raise ProtocolError(f"unknown record kind {r.kind!r}", code=E_PROTOCOL)
    source = SOURCES.index(r.source) if r.source in SOURCES else 255
    try:
        head = struct.pack("<QIBBHIIIQ", r.seq, bits, code, source, 0, r.cookie or 0, r.pid or 0, r.mask, r.t_ns)
    except struct.error as exc:
        raise ProtocolError(f"record field out of range: {exc}", code=E_PROTOCOL) from None
    parts = [head, _b8(r.object_id, "object id")]
    if r.a is not None:
        parts.append(_side(r.a))
    if r.b is not None:
        parts.append(_side(r.b))
    if r.message is not None:
        parts.append(_b16(r.message.encode("utf-8", "replace"), "message", MESSAGE_MAX))
    return b"".join(parts)


def _body(frame: Frame) -> tuple[int, bytes]:
    if isinstance(frame, Record):
        return T_RECORD, _record_body(frame)
    if isinstance(frame, Hello):
        if not 0 < len(frame.versions) < 256:
            raise ProtocolError("a HELLO offers 1 to 255 versions", code=E_PROTOCOL)
        return T_HELLO, MAGIC + bytes((len(frame.versions),)) + struct.pack(f"<{len(frame.versions)}H",
                                                                             *frame.versions)
    if isinstance(frame, Welcome):
        if len(frame.exports) > EXPORTS_MAX:
            raise ProtocolError(f"at most {EXPORTS_MAX} exports", code=E_PROTOCOL)
        for name in frame.exports:
            check_export_name(name)
        return T_WELCOME, (struct.pack("<HHQQQIH", frame.version, 0, frame.epoch, frame.oldest_seq,
                                       frame.last_seq, kinds_mask(frame.kinds), len(frame.exports))
                           + b"".join(_b8(n, "export name") for n in frame.exports))
    if isinstance(frame, Subscribe):
        sflags = S_SINCE if frame.since is not None else 0
        return T_SUBSCRIBE, (struct.pack("<QQII", frame.epoch, frame.since or 0, sflags, kinds_mask(frame.kinds))
                             + _b16(frame.path, "subscription path", PATH_MAX))
    if isinstance(frame, Subscribed):
        return T_SUBSCRIBED, struct.pack("<QQ", frame.epoch, frame.next_seq)
    if isinstance(frame, Rescan):
        return T_RESCAN, (struct.pack("<QQQB", frame.epoch, frame.lost_from, frame.lost_to, frame.reason)
                          + _b16(frame.message.encode("utf-8", "replace"), "message", MESSAGE_MAX))
    if isinstance(frame, Error):
        return T_ERROR, struct.pack("<H", frame.code) + _b16(frame.message.encode("utf-8", "replace"), "message",
                                                             MESSAGE_MAX)
    return frame.type, frame.body


def encode(frame: Frame) -> bytes:
    """The bytes of one frame (header + body). Raises ProtocolError for a frame that breaks a limit."""
    try:
        ftype, body = _body(frame)
    except struct.error as exc:
        raise ProtocolError(f"field out of range: {exc}", code=E_PROTOCOL) from None
    if len(body) > MAX_BODY:
        raise ProtocolError(f"frame body of {len(body)} bytes (at most {MAX_BODY})", code=E_PROTOCOL)
    return HEADER.pack(len(body), ftype, 0) + body


# ---------------------------------------------------------------------------------------------------------
# Decoding


def check_export_name(name: bytes) -> None:
    """An export name is one path component: 1-255 bytes, no ``/``, no NUL, not ``.`` or ``..``."""
    if not name or len(name) > NAME_MAX or b"/" in name or b"\0" in name or name in (b".", b".."):
        raise ProtocolError(f"bad export name {name!r}", code=E_PROTOCOL)


def _check_name(name: bytes) -> None:
    if len(name) > NAME_MAX:
        raise ProtocolError(f"name of {len(name)} bytes (at most {NAME_MAX}, NAME_MAX)", code=E_PROTOCOL)
    if b"/" in name or b"\0" in name:
        raise ProtocolError(f"bad name {name[:64]!r}", code=E_PROTOCOL)


def _check_path(path: bytes) -> None:
    if len(path) > PATH_MAX or b"\0" in path or path.startswith(b"/"):
        raise ProtocolError(f"bad export path {path[:64]!r}", code=E_PROTOCOL)


class _Reader:
    """Reads fields from one frame body; running past its end is a ProtocolError (a truncated frame)."""

    __slots__ = ("body", "pos", "what")

    def __init__(self, body: bytes, what: str) -> None:
        self.body = body
        self.pos = 0
        self.what = what

    def unpack(self, st: struct.Struct) -> tuple[int, ...]:
        end = self.pos + st.size
        if end > len(self.body):
            raise ProtocolError(f"truncated {self.what} frame", code=E_PROTOCOL)
        values = st.unpack_from(self.body, self.pos)
        self.pos = end
        return values

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.body):
            raise ProtocolError(f"truncated {self.what} frame", code=E_PROTOCOL)
        data = self.body[self.pos:end]
        self.pos = end
        return data

    def b8(self) -> bytes:
        return self.take(self.unpack(_U8)[0])

    def b16(self, limit: int, what: str) -> bytes:
        n = self.unpack(_U16)[0]
        if n > limit:
            raise ProtocolError(f"{what} of {n} bytes (at most {limit})", code=E_PROTOCOL)
        return self.take(n)

    def text(self) -> str:
        return self.b16(MESSAGE_MAX, "message").decode("utf-8", "replace")


_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_REC_HEAD = struct.Struct("<QIBBHIIIQ")
_WELCOME_HEAD = struct.Struct("<HHQQQIH")
_SUBSCRIBE_HEAD = struct.Struct("<QQII")
_QQ = struct.Struct("<QQ")
_RESCAN_HEAD = struct.Struct("<QQQB")


def _read_side(rd: _Reader) -> Side:
    dir_id = rd.b8()
    name = rd.b8()
    path = rd.b16(PATH_MAX, "path")
    _check_name(name)
    _check_path(path)
    return Side(path, name, dir_id)


def _decode_record(rd: _Reader) -> Record:
    seq, bits, code, source, _, cookie, pid, mask, t_ns = rd.unpack(_REC_HEAD)
    object_id = rd.b8()
    a = _read_side(rd) if bits & F_SIDE_A else None
    b = _read_side(rd) if bits & F_SIDE_B else None
    message = rd.text() if bits & F_MESSAGE else None
    kind = KINDS_BY_CODE.get(code, "unknown")
    if b is not None and kind != "rename":
        raise ProtocolError(f"a {kind} record with a destination side", code=E_PROTOCOL)
    flags = tuple(name for name, bit in _FLAG_ORDER if bits & bit)
    return Record(seq=seq, kind=kind, a=a, b=b, is_dir=bool(bits & F_IS_DIR), flags=flags,
                  cookie=cookie if bits & F_COOKIE else None, pid=pid if bits & F_PID else None, mask=mask,
                  t_ns=t_ns, source=SOURCES[source] if source < len(SOURCES) else "unknown",
                  object_id=object_id, message=message, kind_code=code)


def decode_body(ftype: int, body: bytes) -> Frame:
    """One frame from its type and body. Fields after the ones this version knows are ignored."""
    if ftype == T_RECORD:
        return _decode_record(_Reader(body, "RECORD"))
    if ftype == T_HELLO:
        rd = _Reader(body, "HELLO")
        if rd.take(4) != MAGIC:
            raise ProtocolError("not an fsnorm client (bad HELLO magic)", code=E_PROTOCOL)
        n = rd.unpack(_U8)[0]
        versions = struct.unpack(f"<{n}H", rd.take(2 * n))
        if not versions:
            raise ProtocolError("HELLO offers no version", code=E_PROTOCOL)
        return Hello(tuple(versions))
    if ftype == T_WELCOME:
        rd = _Reader(body, "WELCOME")
        version, _, epoch, oldest, last, kmask, n = rd.unpack(_WELCOME_HEAD)
        exports = tuple(rd.b8() for _ in range(n))
        for name in exports:
            check_export_name(name)
        return Welcome(version, epoch, oldest, last, exports, kinds_from_mask(kmask) or frozenset())
    if ftype == T_SUBSCRIBE:
        rd = _Reader(body, "SUBSCRIBE")
        epoch, since, sflags, kmask = rd.unpack(_SUBSCRIBE_HEAD)
        path = rd.b16(PATH_MAX, "subscription path")
        return Subscribe(path, kinds_from_mask(kmask), since if sflags & S_SINCE else None, epoch)
    if ftype == T_SUBSCRIBED:
        epoch, next_seq = _Reader(body, "SUBSCRIBED").unpack(_QQ)
        return Subscribed(epoch, next_seq)
    if ftype == T_RESCAN:
        rd = _Reader(body, "RESCAN")
        epoch, lost_from, lost_to, reason = rd.unpack(_RESCAN_HEAD)
        return Rescan(epoch, reason, lost_from, lost_to, rd.text())
    if ftype == T_ERROR:
        rd = _Reader(body, "ERROR")
        (code,) = rd.unpack(_U16)
        return Error(code, rd.text())
    return UnknownFrame(ftype, body)


class FrameDecoder:
    """Bytes in, frames out. Never buffers more than one frame plus the bytes of one ``feed``:

        dec = FrameDecoder()
        dec.feed(sock.recv(65536))
        for frame in dec.frames(): ...

    A header announcing a body over ``max_body`` raises ProtocolError as soon as its 8 bytes are in, before
    any of that body is buffered; so does feeding while a whole frame's worth is still unread (the caller must
    drain :meth:`frames`). After an error the decoder stays failed."""

    def __init__(self, *, max_body: int = MAX_BODY) -> None:
        self._buf = bytearray()
        self._max_body = max_body
        self._failed: ProtocolError | None = None

    def feed(self, data: bytes) -> None:
        if self._failed is not None:
            raise self._failed
        if len(self._buf) > HEADER.size + self._max_body:
            raise self._fail(ProtocolError("frames fed but not read", code=E_PROTOCOL))
        self._buf += data

    @property
    def buffered(self) -> int:
        """Bytes held: a partial frame (at most one header + ``max_body``, plus the last feed)."""
        return len(self._buf)

    def _fail(self, err: ProtocolError) -> ProtocolError:
        self._failed = err
        self._buf.clear()
        return err

    def next_frame(self) -> Frame | None:
        """The next whole frame, or None when more bytes are needed."""
        if self._failed is not None:
            raise self._failed
        buf = self._buf
        if len(buf) < HEADER.size:
            return None
        length, ftype, _ = HEADER.unpack_from(buf)
        if length > self._max_body:
            raise self._fail(ProtocolError(f"frame of {length} bytes announced (at most {self._max_body})",
                                           code=E_PROTOCOL))
        end = HEADER.size + length
        if len(buf) < end:
            return None
        body = bytes(buf[HEADER.size:end])
        del buf[:end]
        try:
            return decode_body(ftype, body)
        except ProtocolError as exc:
            raise self._fail(exc) from None

    def frames(self) -> list[Frame]:
        """Every whole frame buffered now."""
        out: list[Frame] = []
        while (frame := self.next_frame()) is not None:
            out.append(frame)
        return out


def decode_all(data: bytes) -> list[Frame]:
    """Every frame in ``data``, which must end at a frame boundary (for tests, the fuzzer and docs)."""
    dec = FrameDecoder()
    out: list[Frame] = []
    view = memoryview(data)
    step = HEADER.size + MAX_BODY
    for i in range(0, len(data), step):
        dec.feed(bytes(view[i:i + step]))
        out.extend(dec.frames())
    if dec.buffered:
        raise ProtocolError(f"{dec.buffered} bytes after the last whole frame (truncated)", code=E_PROTOCOL)
    return out


# ---------------------------------------------------------------------------------------------------------
# Records <-> Rec


def _side_of(path: bytes, dir_id: bytes = b"") -> Side:
    return Side(path, path.rpartition(b"/")[2], dir_id)


def from_rec(rec: Rec, seq: int, a: bytes, b: bytes = b"", *, message: str | None = None,
             ids: IdMinter | None = None) -> Record:
    """The wire record of ``rec`` with its paths already made export-relative (``a``, ``b``); ``message``
    replaces ``rec.message`` when given (the server scrubs absolute paths out of it). With ``ids`` (what a
    server passes) the object and directory ids are its opaque digests (:mod:`.ids`); without, the object id is
    ``rec.object_id`` as is and the directory ids stay empty (tests and tools that build frames by hand)."""
    da = db = b""
    if ids is not None:
        oid = ids.object_id(rec.object_id)
        da, db = ids.dir_id(rec.dir_key), ids.dir_id(rec.dst_dir_key)
    elif rec.object_id:
        try:
            oid = bytes.fromhex(rec.object_id)
        except ValueError:
            oid = rec.object_id.encode("utf-8", "replace")[:255]
    else:
        oid = b""
    flags = tuple(f for f in rec.flags if f in RECORD_FLAG_BITS)
    return Record(seq=seq, kind=rec.kind, a=_side_of(a, da) if a else None,
                  b=_side_of(b, db) if b and rec.kind == "rename" else None, is_dir=rec.is_dir, flags=flags,
                  cookie=rec.cookie, pid=rec.pid, mask=rec.mask & 0xFFFFFFFF, t_ns=rec.t_ns, source=rec.source,
                  object_id=oid, message=rec.message if message is None else message)


class WireRec(Rec):
    """A received record: like :class:`Rec`, plus an instance dict for what the client session adds (``seq``,
    ``epoch``); Rec itself has slots only (its fields are C struct members in the compiled hot path)."""


def to_rec(r: Record) -> Rec:
    """The light record of a wire record (paths stay export-relative); ``seq`` is kept as an attribute."""
    path = r.a.path if r.a is not None else b""
    dst = r.b.path if r.b is not None else b""
    rec = WireRec.note(r.kind, path, r.is_dir, r.t_ns, r.mask, flags=r.flags, message=r.message, cookie=r.cookie,
                   source=r.source if r.source != "inotify" else None, pid=r.pid,
                   object_id=r.object_id.hex() if r.object_id else None)
    rec.dst = dst
    rec.dir_key = r.a.dir_id or None if r.a is not None else None
    rec.dst_dir_key = r.b.dir_id or None if r.b is not None else None
    return rec


def frame_to_json(frame: Frame) -> dict[str, object]:
    """A JSON-friendly dict of a frame, for debugging (``bytes`` as backslash-escaped text)."""
    out: dict[str, object] = {"frame": type(frame).__name__.upper()}
    for name in frame.__dataclass_fields__:
        value = getattr(frame, name)
        if isinstance(value, Side):
            value = {"path": _txt(value.path), "name": _txt(value.name), "dir_id": value.dir_id.hex()}
        elif isinstance(value, bytes):
            value = value.hex() if name in ("object_id", "body") else _txt(value)
        elif isinstance(value, frozenset):
            value = sorted(value)
        elif isinstance(value, tuple):
            value = [_txt(v) if isinstance(v, bytes) else v for v in value]
        out[name] = value
    return out


def _txt(b: bytes) -> str:
    return b.decode("utf-8", "backslashreplace")
