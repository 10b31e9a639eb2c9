"""The one public record type, :class:`Record`, and its JSON line.

What :func:`normalizer.watch`, :func:`~normalizer.awatch`, :func:`~normalizer.run_in_thread` and
:func:`normalizer.remote.subscribe` yield, and what :func:`~normalizer.records.record_from_json` returns. The
matcher's own :class:`~normalizer.records.Rec` stays internal (it is mutable while a rename half waits); a
``Record`` is built once from it when it is final (:func:`from_rec`), straight as a tuple, without pydantic.

Paths follow the standard library's convention: ``bytes`` when the roots were given as bytes, ``str`` when
given as ``str``/``PathLike[str]`` — decoded like :func:`os.fsdecode` (``surrogateescape``), so an undecodable
name survives: :func:`os.fsencode` gives the kernel's bytes back, and the JSON line is the same either way.

This module imports the standard library only (no pydantic: that is for the JSON Schema and for validating JSON
input, :mod:`normalizer.schema`).
"""

from __future__ import annotations

import base64
import json.encoder
import sys
from collections.abc import Callable, Iterable
from enum import StrEnum
from typing import TYPE_CHECKING, Generic, Literal, NamedTuple, TypeAlias, TypeVar, cast

if TYPE_CHECKING:
    from .records import Rec


class Flag(StrEnum):
    """What a consumer must know about a record. The first six are a one-sided rename's :attr:`Record.reason`;
    the others are the qualifiers in :attr:`Record.flags`. In JSON they are one list, ``flags``."""

    #: One-sided rename: the other side's directory is not watched (no half will ever come for it).
    UNWATCHED = "unwatched"
    #: One-sided rename decided by the window: no second half arrived before the deadline.
    TIMEOUT = "timeout"
    #: One-sided rename: the kernel queue overflowed while the other half was expected.
    OVERFLOW = "overflow"
    #: One-sided rename: the pending table was full and this half was the oldest.
    EVICTED = "evicted"
    #: One-sided rename: a later first half reused this one's cookie before the second half came.
    COOKIE_REUSED = "cookie_reused"
    #: One-sided rename: the stream ended (stop, end of capture) while this half waited.
    SHUTDOWN = "shutdown"
    #: The record came shortly after an overflow: its missing half may have been lost in it.
    AFTER_OVERFLOW = "after_overflow"
    #: The kernel merged several events into this one (fanotify); not an exact history.
    MERGED = "merged"
    #: Made by fsnorm (scan of a directory that appeared, rescan after overflow), not read from the kernel.
    SYNTHESIZED = "synthesized"
    #: The raw mask had bits this version of fsnorm does not know; ``mask`` holds them all.
    UNKNOWN_MASK = "unknown_mask"
    #: The event's watch descriptor or directory handle could not be mapped to a path.
    UNRESOLVED = "unresolved"
    #: A rename landed on a watched file's path while a file was there: the watched file was replaced (an
    #: editor's or a config tool's atomic save); the watch goes on with the file now at the path.
    REPLACED = "replaced"


#: The kinds of record that carry one ``path``: everything but a rename.
PathKind: TypeAlias = Literal[
    "create",
    "delete",
    "modify",
    "attrib",
    "close_write",
    "close_nowrite",
    "open",
    "access",
    "delete_self",
    "move_self",
    "unmount",
    "overflow",
    "watch_end",
    "error",
    "unknown",
    "rescan",
]
#: Every kind of record.
RecordKind: TypeAlias = Literal["rename"] | PathKind
SourceKind: TypeAlias = Literal["inotify", "fanotify"]
RenameMode: TypeAlias = Literal["both", "from", "to"]
#: Why a rename is one-sided (:class:`Flag` UNWATCHED ... SHUTDOWN).
Reason: TypeAlias = Literal["unwatched", "timeout", "overflow", "evicted", "cookie_reused", "shutdown"]
REASONS: frozenset[str] = frozenset(
    (Flag.UNWATCHED.value, Flag.TIMEOUT.value, Flag.OVERFLOW.value, Flag.EVICTED.value, Flag.COOKIE_REUSED.value,
     Flag.SHUTDOWN.value))
_FLAG_RANK = {f.value: i for i, f in enumerate(Flag)}

#: The path type of a record: ``str`` or ``bytes``, as the roots were given.
P = TypeVar("P", bound=str | bytes)

_FS_ENCODING = sys.getfilesystemencoding()
_FS_ERRORS = sys.getfilesystemencodeerrors()


def path_to_json(path: bytes) -> tuple[str, str | None]:
    """Return the JSON string for ``path`` and, when it is not valid UTF-8, its exact base64 companion."""
    try:
        return path.decode("utf-8"), None
    except UnicodeDecodeError:
        return path.decode("utf-8", "backslashreplace"), base64.b64encode(path).decode("ascii")


def _set_order(flags: FlagSet, order: tuple[str, ...]) -> None:
    _ORDER_SLOT.__set__(flags, order)


class FlagSet(frozenset[str]):
    """A record's qualifiers: a ``frozenset`` (compare, test membership) that also remembers the order of the
    JSON ``flags`` list it came from, the reason included, so a record's JSON line is byte for byte what
    ``fsnorm watch`` prints. The core appends a reason after qualifiers already set on a waiting half, so no
    fixed order reproduces every line. Equality and hashing are the set's: the order is not part of a record's
    value. Build it with :meth:`split`."""

    __slots__ = ("_order",)
    _order: tuple[str, ...]

    def __new__(cls, order: Iterable[str] = ()) -> FlagSet:
        """The qualifiers of a JSON/core ``flags`` list: all but its first one-sided reason."""
        names = tuple(str(f) for f in order)
        reason = next((f for f in names if f in REASONS), None)
        rest = list(names)
        if reason is not None:
            rest.remove(reason)
        self = super().__new__(cls, rest)
        _set_order(self, names)
        return self

    @classmethod
    def split(cls, order: Iterable[str]) -> tuple[Reason | None, FlagSet]:
        """``(reason, qualifiers)`` of a JSON/core flags list: the reason is its first one-sided reason."""
        self = cls(order)
        return cast("Reason | None", next((f for f in self._order if f in REASONS), None)), self

    def __reduce__(self) -> tuple[type[FlagSet], tuple[tuple[str, ...]]]:
        return FlagSet, (self._order,)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"FlagSet is immutable: cannot set {name!r}")

    def __repr__(self) -> str:
        return "{" + ", ".join(repr(f) for f in sorted(self, key=_rank)) + "}" if self else "frozenset()"


_ORDER_SLOT = FlagSet.__dict__["_order"]
NO_FLAGS = FlagSet()


def _rank(flag: str) -> tuple[int, str]:
    return _FLAG_RANK.get(flag, len(_FLAG_RANK)), flag


class Side(NamedTuple, Generic[P]):
    """One side of a rename: the directory, the name in it, and the full path."""

    dir: P
    name: P
    path: P

    @classmethod
    def of(cls, path: P) -> Side[P]:
        if isinstance(path, str):
            head, _, name = path.rpartition("/")
            return cls(head or "/", name, path)  # type: ignore[arg-type]
        bhead, _, bname = path.rpartition(b"/")
        return cls(bhead or b"/", bname, path)  # type: ignore[arg-type]


class Record(NamedTuple, Generic[P]):
    """One record: a rename (``src`` -> ``dst``, either side possibly absent) or an event on one ``path``.

    Immutable, slotted, typed and cheap. Why a ``typing.NamedTuple``: benchmarks/bench_record_shapes.py builds
    the candidates with 16 fields in one run. On this 2-core machine (Python 3.11, shared with other work, three
    runs) a NamedTuple built from a tuple (what :func:`from_rec` does) took 190-640 ns; the same class called
    with keywords 4.1-6.0x that, a ``__slots__`` class guarded by ``__setattr__`` 4.3-9.8x, and
    ``@dataclass(frozen=True, slots=True)`` 10-13x (a plain mutable slots class, 1.9-2.8x). All refuse
    assignment; a NamedTuple has no ``__dict__``, is hashable and picklable, and ``_replace`` makes a changed
    copy. The price: reading a field costs about twice a slot read (a record is built once and read a few
    times, so building wins), and its tuple nature (indexing, equality with a plain tuple of the same values)
    shows; that is not API.

    * ``path``: the event's path; for a rename, where the entry is now (``dst``), or ``src`` when it left the
      watched tree; empty for ``overflow``/``rescan``.
    * ``src``/``dst``: a rename's two sides, ``None`` when that side's directory is not watched (JSON: ``""``);
      always ``None`` for other kinds.
    * ``reason``: why a rename is one-sided (``unwatched``, ``timeout``, ``overflow``, ``evicted``,
      ``cookie_reused``, ``shutdown``), else ``None``. ``flags``: the qualifiers (:class:`Flag`
      ``after_overflow``, ``merged``, ``synthesized``, ``unknown_mask``, ``unresolved``,
      ``replaced``); in JSON both are the one ``flags`` list.
    * ``cookie``: inotify's rename cookie; ``t_ns``: CLOCK_MONOTONIC of the read; ``mask``: the raw kernel
      mask (a joined rename: both halves ORed); ``pid``/``object_id``: fanotify's process and file handle;
      ``message``: the explanation of ``error``/``watch_end``/``rescan`` records.
    * ``seq``/``epoch``: a record from ``fsnorm serve`` (:func:`normalizer.remote.subscribe`): its number in
      the server's journal and the server run; resume with ``since=seq, epoch=epoch``. ``None`` locally.
    """

    kind: RecordKind
    path: P
    src: P | None = None
    dst: P | None = None
    is_dir: bool = False
    reason: Reason | None = None
    flags: frozenset[str] = NO_FLAGS
    cookie: int | None = None
    t_ns: int = 0
    mask: int = 0
    source: SourceKind = "inotify"
    pid: int | None = None
    object_id: str | None = None
    message: str | None = None
    seq: int | None = None
    epoch: int | None = None

    @property
    def mode(self) -> RenameMode | None:
        """A rename's ``both`` (joined), ``from`` (only the old side known) or ``to``; ``None`` for other kinds."""
        if self.kind != "rename":
            return None
        if self.src is not None and self.dst is not None:
            return "both"
        return "from" if self.src is not None else "to"

    @property
    def src_side(self) -> Side[P] | None:
        return None if self.src is None else Side.of(self.src)

    @property
    def dst_side(self) -> Side[P] | None:
        return None if self.dst is None else Side.of(self.dst)

    def __repr__(self) -> str:
        where = f"src={self.src!r}, dst={self.dst!r}" if self.kind == "rename" else f"path={self.path!r}"
        rest = "".join(f", {name}={value!r}" for name, value in zip(self._fields[4:], self[4:], strict=True)
                       if value != self._field_defaults[name])
        return f"Record(kind={self.kind!r}, {where}{rest})"


# --------------------------------------------------------------------------------------------------------
# Core record -> Record (the API's hot path).

_new = tuple.__new__
_SPLIT: dict[tuple[str, ...], tuple[Reason | None, FlagSet]] = {(): (None, NO_FLAGS)}


def _split(flags: tuple[str, ...]) -> tuple[Reason | None, FlagSet]:
    split = FlagSet.split(flags)
    if len(_SPLIT) < 4096:
        _SPLIT[tuple(flags)] = split
    return split


def from_rec(rec: Rec, seq: int | None = None, epoch: int | None = None) -> Record[bytes]:
    """The public record of a final core record, paths as bytes (built as a tuple: no per-field call)."""
    reason, flags = _SPLIT.get(rec.flags) or _split(rec.flags)
    if rec.kind == "rename":
        src = rec.path or None
        dst = rec.dst or None
        return cast("Record[bytes]", _new(Record, (
            "rename", dst or src or b"", src, dst, rec.is_dir, reason, flags, rec.cookie, rec.t_ns, rec.mask,
            rec.source, rec.pid, rec.object_id, rec.message, seq, epoch)))
    return cast("Record[bytes]", _new(Record, (
        rec.kind, rec.path, None, None, rec.is_dir, reason, flags, rec.cookie, rec.t_ns, rec.mask, rec.source,
        rec.pid, rec.object_id, rec.message, seq, epoch)))


def from_rec_str(rec: Rec, seq: int | None = None, epoch: int | None = None) -> Record[str]:
    """:func:`from_rec` with ``str`` paths (``os.fsdecode``: the filesystem encoding, ``surrogateescape``)."""
    reason, flags = _SPLIT.get(rec.flags) or _split(rec.flags)
    if rec.kind == "rename":
        src = rec.path.decode(_FS_ENCODING, _FS_ERRORS) if rec.path else None
        dst = rec.dst.decode(_FS_ENCODING, _FS_ERRORS) if rec.dst else None
        return cast("Record[str]", _new(Record, (
            "rename", dst or src or "", src, dst, rec.is_dir, reason, flags, rec.cookie, rec.t_ns, rec.mask,
            rec.source, rec.pid, rec.object_id, rec.message, seq, epoch)))
    return cast("Record[str]", _new(Record, (
        rec.kind, rec.path.decode(_FS_ENCODING, _FS_ERRORS), None, None, rec.is_dir, reason, flags, rec.cookie,
        rec.t_ns, rec.mask, rec.source, rec.pid, rec.object_id, rec.message, seq, epoch)))


def decode_paths(record: Record[bytes]) -> Record[str]:
    """The same record with ``str`` paths (``os.fsdecode``)."""
    def dec(p: bytes | None) -> str | None:
        return None if p is None else p.decode(_FS_ENCODING, _FS_ERRORS)
    return cast("Record[str]", _new(Record, (record.kind, dec(record.path), dec(record.src), dec(record.dst),
                                             *record[4:])))


def encode_path(path: str | bytes) -> bytes:
    """The kernel's bytes of a record path (``os.fsencode`` for ``str``)."""
    return path if isinstance(path, bytes) else path.encode(_FS_ENCODING, _FS_ERRORS)


# --------------------------------------------------------------------------------------------------------
# Record -> JSON line: the same bytes as formats.jsonl.rec_to_json (tests/test_records.py holds them to it).

_quote: Callable[[str], str] = json.encoder.encode_basestring
_FLAGS_BY_ORDER: dict[tuple[str, ...], tuple[str | None, str]] = {}
_FLAGS_CANONICAL: dict[tuple[str | None, frozenset[str]], str] = {}
_RARE_NONE = ',"pid":null,"object_id":null,"message":null'


def _flags_text(reason: str | None, flags: frozenset[str]) -> str:
    """The JSON ``flags`` list: the order the record came with (a :class:`FlagSet` that agrees with ``reason``),
    else the reason first, then the qualifiers in :class:`Flag` order (unknown ones last, by name)."""
    if type(flags) is FlagSet:
        hit = _FLAGS_BY_ORDER.get(flags._order)
        if hit is None:
            order = flags._order
            hit = (next((f for f in order if f in REASONS), None), "[" + ",".join(map(_quote, order)) + "]")
            if len(_FLAGS_BY_ORDER) < 4096:
                _FLAGS_BY_ORDER[order] = hit
        if hit[0] == reason:
            return hit[1]
    key = (reason, flags)
    text = _FLAGS_CANONICAL.get(key)
    if text is None:
        names = ([reason] if reason is not None else []) + sorted(flags, key=_rank)
        text = "[" + ",".join(map(_quote, names)) + "]"
        if len(_FLAGS_CANONICAL) < 4096:
            _FLAGS_CANONICAL[key] = text
    return text


def _path_json(path: str | bytes | None) -> tuple[str, str | None]:
    """(quoted JSON string, base64 companion or None) of a record path (``None``: an absent side, ``""``)."""
    if path is None:
        return '""', None
    if isinstance(path, str):
        if path.isascii():
            return _quote(path), None
        path = path.encode(_FS_ENCODING, _FS_ERRORS)
    text, b64 = path_to_json(path)
    return _quote(text), b64


def _head_slow(record: Record[str] | Record[bytes]) -> tuple[str, str]:
    """The path part and the ``*_b64`` companions, for paths that are not plain ASCII/valid UTF-8 or absent."""
    if record.kind == "rename":
        src, src_b64 = _path_json(record.src)
        dst, dst_b64 = _path_json(record.dst)
        head = '{"kind":"rename","src":' + src + ',"dst":' + dst
        return head, ("" if src_b64 is None else ',"src_b64":"' + src_b64 + '"') + (
            "" if dst_b64 is None else ',"dst_b64":"' + dst_b64 + '"')
    path, path_b64 = _path_json(record.path)
    return '{"kind":' + _quote(record.kind) + ',"path":' + path, (
        "" if path_b64 is None else ',"path_b64":"' + path_b64 + '"')


def _text(path: str | bytes) -> str:
    """A path's exact JSON text, or ``UnicodeError`` when it needs the slow route (a ``_b64`` companion)."""
    if type(path) is bytes:
        return path.decode()
    if isinstance(path, str) and path.isascii():
        return path
    raise UnicodeError  # a str with non-ASCII: its bytes decide (filesystem encoding, surrogate escapes)


_SOURCE_JSON = {"inotify": '"inotify"', "fanotify": '"fanotify"'}


def to_json(record: Record[str] | Record[bytes]) -> str:
    """The JSON line of a record (no trailing newline): what ``fsnorm watch`` prints for it, byte for byte,
    plus ``seq`` and ``epoch`` at the end for a record from a server (as ``fsnorm subscribe`` prints).

    Hot path note: one tuple unpack instead of sixteen attribute reads; the common case (ASCII or UTF-8
    paths, both sides of a rename present, no fanotify fields) is one decode and one C-level escape per path;
    the rest takes the slow routes. About as fast as ``rec_to_json`` (benchmarks/bench_records.py)."""
    (kind, path, src, dst, is_dir, reason, flags, cookie, t_ns, mask, source, pid, object_id, message, seq,
     epoch) = record
    try:
        if kind == "rename":
            if src is None or dst is None:
                raise UnicodeError
            head = '{"kind":"rename","src":' + _quote(_text(src)) + ',"dst":' + _quote(_text(dst))
        else:
            head = '{"kind":' + _quote(kind) + ',"path":' + _quote(_text(path))
        b64 = ""
    except UnicodeError:
        head, b64 = _head_slow(record)
    if type(flags) is FlagSet and (hit := _FLAGS_BY_ORDER.get(flags._order)) is not None and hit[0] == reason:
        flags_json = hit[1]
    else:
        flags_json = _flags_text(reason, flags)
    if pid is None and object_id is None and message is None:
        rare = _RARE_NONE
    else:
        rare = (f',"pid":{"null" if pid is None else int(pid)},'
                f'"object_id":{"null" if object_id is None else _quote(object_id)},'
                f'"message":{"null" if message is None else _quote(message)}')
    tail = "" if seq is None and epoch is None else (
        f',"seq":{"null" if seq is None else int(seq)},"epoch":{"null" if epoch is None else int(epoch)}')
    return (f'{head},"is_dir":{"true" if is_dir else "false"},"cookie":{"null" if cookie is None else cookie},'
            f'"source":{_SOURCE_JSON.get(source) or _quote(source)},"flags":{flags_json},"t_ns":{t_ns},'
            f'"mask":{mask}{rare}{b64}{tail}}}')
