"""The JSON Lines record as pydantic models: for the JSON Schema (``fsnorm schema``) and for validating JSON input
(:func:`normalizer.records.record_from_json`), never built per record on the hot path.

These models describe the *JSON form*; what the API yields is :class:`normalizer.Record`. Paths are bytes
here: a path that is valid UTF-8 is that string in JSON; one that is not is written readable
(``backslashreplace``) **and** exact in the companion key ``<key>_b64`` (standard base64), which readers prefer.
The JSON text stays strictly valid UTF-8 that any parser accepts (lone surrogate escapes, the other common
trick, are rejected by e.g. Rust's serde_json). ``import normalizer`` does not import this module (nor pydantic).
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, Literal

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

from .record import PathKind, SourceKind, path_to_json

_PATH_KEYS = ("path", "src", "dst")


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


class RenameRecord(_Common, _RenamePaths):
    """One rename(2), as ``fsnotify_move()`` sees it: old and new place, either possibly absent."""


class EventRecord(_Common, _EventPath):
    """Any record other than a rename: one path (or none, for ``overflow``)."""


JsonRecord = Annotated[RenameRecord | EventRecord, Field(discriminator="kind")]
RECORD_ADAPTER: TypeAdapter[RenameRecord | EventRecord] = TypeAdapter(JsonRecord)


def json_schema() -> dict[str, object]:
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
