"""The public record model: what fsnorm tells its users, as pydantic models, JSON Lines and JSON Schema.

A rename is one record with a source side and a destination side, the way the kernel's ``fsnotify_move()``
sees it. Either side may be absent (moved in from, or out to, a directory nobody watches): the absent side is
the empty path ``b""``. Every other kind carries one ``path``.

Names are bytes in the kernel, so paths are ``bytes`` in the model. The JSON form keeps them exact without
forcing anyone to decode base64 for the common case:

* a path that is valid UTF-8 is written as that string;
* a path that is not is written as ``bytes.decode("utf-8", "backslashreplace")`` (readable, but not
  reversible on its own) **and** a companion key ``<key>_b64`` holds the exact bytes in standard base64.

Readers take ``<key>_b64`` when present and the plain string otherwise, so every name survives
model -> JSON -> model byte for byte, while the JSON text stays strictly valid UTF-8 that any parser accepts
(lone surrogate escapes, the other common trick, are rejected by e.g. Rust's serde_json).

The matcher's hot loop does not build pydantic models: it produces :class:`Rec`, a slotted plain object, and
:func:`rec_to_json` writes the JSON line straight from it. :func:`to_model` builds the pydantic model at the
API boundary. tests/test_records.py checks that both routes give the same JSON.
"""

from __future__ import annotations

import base64
import binascii
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    TypeAdapter,
    WithJsonSchema,
    model_serializer,
    model_validator,
)


class Flag(StrEnum):
    """What a consumer must know about a record. A record carries zero or more of these, in this order."""

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

_PATH_KEYS = ("path", "src", "dst")


def path_to_json(path: bytes) -> tuple[str, str | None]:
    """Return the JSON string for ``path`` and, when it is not valid UTF-8, its exact base64 companion."""
    try:
        return path.decode("utf-8"), None
    except UnicodeDecodeError:
        return path.decode("utf-8", "backslashreplace"), base64.b64encode(path).decode("ascii")


def _display(path: bytes) -> str:
    return path_to_json(path)[0]


FsPath = Annotated[
    bytes,
    PlainSerializer(_display, return_type=str, when_used="json"),
    WithJsonSchema(
        {
            "type": "string",
            "description": "Absolute path. Exact when valid UTF-8; otherwise readable only, and the exact "
            "bytes are in the companion key <key>_b64.",
        }
    ),
]


class _Kind(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _Common(BaseModel):
    """Fields every record has. Defaults are what an event without them means."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    is_dir: bool = False
    cookie: int | None = Field(
        default=None, description="inotify rename cookie; null where the kernel gave none (fanotify, non-moves)."
    )
    source: SourceKind = "inotify"
    flags: list[str] = Field(default_factory=list, description="Values of normalizer.records.Flag.")
    t_ns: int = Field(default=0, description="CLOCK_MONOTONIC of the read that delivered the (first) event.")
    mask: int = Field(default=0, description="Raw kernel mask; for a joined rename, both halves' masks ORed.")
    pid: int | None = Field(default=None, description="Process that caused the event (fanotify only).")
    object_id: str | None = Field(default=None, description="Hex file handle of the object (fanotify only).")
    message: str | None = Field(default=None, description="Human explanation (error, watch_end records).")

    @model_validator(mode="before")
    @classmethod
    def _from_json_paths(cls, data: Any) -> Any:
        """Accept the JSON form: ``<key>_b64`` wins over the display string, which is otherwise UTF-8."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for key in _PATH_KEYS:
            b64 = data.pop(f"{key}_b64", None)
            if b64 is not None:
                try:
                    data[key] = base64.b64decode(b64, validate=True)
                except (binascii.Error, TypeError, ValueError) as exc:
                    raise ValueError(f"{key}_b64 is not valid base64") from exc
            elif isinstance(data.get(key), str):
                data[key] = data[key].encode("utf-8", "surrogateescape")
        return data

    @model_serializer(mode="wrap")
    def _add_b64(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> dict[str, Any]:
        out: dict[str, Any] = handler(self)
        if info.mode_is_json():
            for key in _PATH_KEYS:
                raw = getattr(self, key, None)
                if isinstance(raw, bytes) and key in out:
                    b64 = path_to_json(raw)[1]
                    if b64 is not None:
                        out[f"{key}_b64"] = b64
        return out


class _RenamePaths(_Kind):
    kind: Literal["rename"] = "rename"
    src: FsPath = Field(description='Old absolute path; "" when the source directory is not watched.')
    dst: FsPath = Field(description='New absolute path; "" when the destination directory is not watched.')


class _EventPath(_Kind):
    kind: PathKind
    path: FsPath = Field(default=b"", description='Absolute path the event is about; "" for overflow.')


class Side(BaseModel):
    """One side of a rename: the directory, the name in it, and the full path."""

    model_config = ConfigDict(frozen=True)

    dir: bytes
    name: bytes
    path: bytes

    @classmethod
    def of(cls, path: bytes) -> Side:
        head, _, name = path.rpartition(b"/")
        return cls(dir=head or b"/", name=name, path=path)


class RenameRecord(_Common, _RenamePaths):
    """One rename(2), as ``fsnotify_move()`` sees it: old and new place, either possibly absent."""

    @property
    def mode(self) -> RenameMode:
        """``both`` for a joined rename, ``from`` when only the old side is known, ``to`` for only the new."""
        if self.src and self.dst:
            return "both"
        return "from" if self.src else "to"

    @property
    def src_side(self) -> Side | None:
        return Side.of(self.src) if self.src else None

    @property
    def dst_side(self) -> Side | None:
        return Side.of(self.dst) if self.dst else None


class EventRecord(_Common, _EventPath):
    """Any record other than a rename: one path (or none, for ``overflow``)."""


Record = Annotated[RenameRecord | EventRecord, Field(discriminator="kind")]
RECORD_ADAPTER: TypeAdapter[RenameRecord | EventRecord] = TypeAdapter(Record)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of one JSON Lines record (``fsnorm schema`` prints it)."""
    schema = RECORD_ADAPTER.json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "fsnorm record"
    b64 = {"type": "string", "contentEncoding": "base64", "description": "Exact bytes of the path key."}
    for name, sub in schema.get("$defs", {}).items():
        props = sub.get("properties", {})
        for key in _PATH_KEYS:
            if key in props:
                props[f"{key}_b64"] = dict(b64)
        if name in ("RenameRecord", "EventRecord"):
            sub["additionalProperties"] = False
    return schema


# --------------------------------------------------------------------------------------------------------
# The light internal record (hot path).


#: A directory as a normalizer knows it: an inotify watch descriptor or a fanotify directory fid (bytes).
DirKey = int | bytes | None


class Rec:
    """A record as the matcher builds it: a slotted plain object, cheap to create and to fill in later.

    ``path`` is the single path, or the *source* side of a rename; ``dst`` is the rename's destination.
    ``flags`` is a tuple (shared empty default; a flag is added by building a new tuple, which is rare).
    ``dir_key`` / ``dst_dir_key`` name the directory of ``path`` / ``dst`` as the normalizer knew it at the event
    (an inotify wd, a fanotify directory fid; None when unknown): internal, never printed; ``fsnorm serve`` turns
    them into opaque directory ids (normalizer/net/ids.py), which stay the same when the directory is renamed.

    Hot path note: only the fields every record sets are slots assigned in ``__init__``; ``source``, ``pid``,
    ``object_id`` and ``message`` are class-level defaults that an instance overrides in its ``__dict__`` only
    when it has them. That saves a third of the construction cost (benchmarks/bench_matcher.py).
    """

    __slots__ = ("__dict__", "cookie", "dir_key", "dst", "dst_dir_key", "flags", "is_dir", "kind", "mask", "path",
                 "t_ns")

    source: str = "inotify"
    #: True only for a rename half still waiting for its partner (matcher.Half overrides it per instance).
    waiting: bool = False
    pid: int | None = None
    object_id: str | None = None
    message: str | None = None

    def __init__(
        self,
        kind: str,
        path: bytes,
        is_dir: bool,
        t_ns: int,
        mask: int,
        cookie: int | None = None,
        dst: bytes = b"",
        flags: tuple[str, ...] = (),
        dir_key: DirKey = None,
        dst_dir_key: DirKey = None,
    ) -> None:
        self.kind = kind
        self.path = path
        self.dst = dst
        self.is_dir = is_dir
        self.t_ns = t_ns
        self.mask = mask
        self.cookie = cookie
        self.flags = flags
        self.dir_key = dir_key
        self.dst_dir_key = dst_dir_key

    @classmethod
    def note(cls, kind: str, path: bytes, is_dir: bool, t_ns: int, mask: int, *, flags: tuple[str, ...] = (),
             message: str | None = None, cookie: int | None = None, source: str | None = None,
             pid: int | None = None, object_id: str | None = None) -> Rec:
        """A record with the rarely set fields too (source notices, errors, fanotify records)."""
        rec = cls(kind, path, is_dir, t_ns, mask, cookie, b"", flags)
        if message is not None:
            rec.message = message
        if source is not None:
            rec.source = source
        if pid is not None:
            rec.pid = pid
        if object_id is not None:
            rec.object_id = object_id
        return rec

    def __repr__(self) -> str:
        where = f"{self.path!r} -> {self.dst!r}" if self.kind == "rename" else repr(self.path)
        flags = f" {self.flags}" if self.flags else ""
        return f"<Rec {self.kind} {where}{' dir' if self.is_dir else ''} cookie={self.cookie}{flags}>"

    def identity(self) -> tuple[Any, ...]:
        """Everything but the clock: what must agree between two runs over the same kernel events."""
        return (self.kind, self.path, self.dst, self.is_dir, self.cookie, self.mask, tuple(self.flags),
                self.source, self.pid, self.object_id, self.message)


def to_model(rec: Rec) -> RenameRecord | EventRecord:
    """Build the public pydantic model for ``rec`` (no validation: the matcher's output is well-formed)."""
    common: dict[str, Any] = {
        "is_dir": rec.is_dir,
        "cookie": rec.cookie,
        "source": rec.source,
        "flags": list(rec.flags),
        "t_ns": rec.t_ns,
        "mask": rec.mask,
        "pid": rec.pid,
        "object_id": rec.object_id,
        "message": rec.message,
    }
    if rec.kind == "rename":
        return RenameRecord.model_construct(kind="rename", src=rec.path, dst=rec.dst, **common)
    return EventRecord.model_construct(kind=rec.kind, path=rec.path, **common)


def model_to_json(record: RenameRecord | EventRecord) -> str:
    """The JSON line of a public record (no trailing newline)."""
    return record.model_dump_json()


def record_from_json(line: str | bytes) -> RenameRecord | EventRecord:
    """Parse one JSON line back into the public model (the exact inverse of :func:`rec_to_json`)."""
    return RECORD_ADAPTER.validate_json(line)
