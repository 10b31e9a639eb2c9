"""fsnorm's records: the public :class:`~normalizer.record.Record` (re-exported here), the light internal
:class:`Rec` the core builds, and the JSON Lines bridge (:func:`record_from_json`, :func:`json_schema`).

A rename is one record with a source side and a destination side, the way the kernel's ``fsnotify_move()``
sees it. Either side may be absent (moved in from, or out to, a directory nobody watches). Every other kind
carries one ``path``. Names are bytes in the kernel; the JSON form keeps them exact without forcing anyone to
decode base64 for the common case:

* a path that is valid UTF-8 is written as that string;
* a path that is not is written as ``bytes.decode("utf-8", "backslashreplace")`` (readable, but not
  reversible on its own) **and** a companion key ``<key>_b64`` holds the exact bytes in standard base64.

Readers take ``<key>_b64`` when present and the plain string otherwise, so every name survives
record -> JSON -> record byte for byte, while the JSON text stays strictly valid UTF-8.

The matcher's hot loop builds :class:`Rec`, a slotted plain object it may still change while a rename half
waits; :func:`~normalizer.formats.jsonl.rec_to_json` writes the JSON line straight from it, and the API builds
one :class:`Record` from it once it is final (:func:`to_record`). pydantic (:mod:`normalizer.schema`) is
imported only for the JSON Schema and for validating JSON input.
"""

from __future__ import annotations

import json
from typing import overload

from .core.rec import DirKey, Rec  # the core's record, compiled with the hot path (docs/compiled.md)
from .record import (
    REASONS,
    Flag,
    FlagSet,
    PathKind,
    Reason,
    Record,
    RecordKind,
    RenameMode,
    Side,
    SourceKind,
    decode_paths,
    from_rec,
    path_to_json,
    to_json,
)

__all__ = [
    "REASONS",
    "DirKey",
    "Flag",
    "FlagSet",
    "PathKind",
    "Reason",
    "Rec",
    "Record",
    "RecordKind",
    "RenameMode",
    "Side",
    "SourceKind",
    "json_schema",
    "model_to_json",
    "path_to_json",
    "record_from_json",
    "record_to_json",
    "to_json",
    "to_model",
    "to_record",
]


#: The public record of a final :class:`Rec`, paths as bytes (:func:`normalizer.record.from_rec`).
to_record = from_rec
#: Older name of :func:`to_record` (the record is no longer a pydantic model).
to_model = from_rec
#: Older name of :func:`~normalizer.record.to_json`: a record's JSON line, equal to ``rec_to_json`` of its Rec.
model_to_json = to_json
#: A record's JSON line (:func:`normalizer.record.to_json`), the inverse of :func:`record_from_json`.
record_to_json = to_json


def json_schema() -> dict[str, object]:
    """The JSON Schema of one JSON Lines record (``fsnorm schema`` prints it)."""
    from .schema import json_schema as schema

    return schema()


@overload
def record_from_json(line: str | bytes) -> Record[bytes]: ...
@overload
def record_from_json(line: str | bytes, path_type: type[bytes]) -> Record[bytes]: ...
@overload
def record_from_json(line: str | bytes, path_type: type[str]) -> Record[str]: ...
def record_from_json(line: str | bytes, path_type: type[str] | type[bytes] = bytes) -> Record[str] | Record[bytes]:
    """Validate one JSON line against the schema and return its :class:`Record` (the exact inverse of
    :func:`to_json` and of ``rec_to_json``); paths as ``bytes``, or ``str`` with ``path_type=str``. A line from
    ``fsnorm subscribe`` may also carry ``seq`` and ``epoch``. Invalid input raises ``ValueError`` (pydantic's
    ``ValidationError`` is one)."""
    from .schema import RECORD_ADAPTER, RenameRecord

    obj = json.loads(line)
    seq = epoch = None
    if isinstance(obj, dict) and ("seq" in obj or "epoch" in obj):
        seq, epoch = obj.pop("seq", None), obj.pop("epoch", None)
        for name, value in (("seq", seq), ("epoch", epoch)):
            if value is not None and (type(value) is not int or value < 0):
                raise ValueError(f"{name} must be a non-negative integer or null, not {value!r}")
    model = RECORD_ADAPTER.validate_python(obj)
    reason, flags = FlagSet.split(model.flags)
    if isinstance(model, RenameRecord):
        src, dst = model.src or None, model.dst or None
        record: Record[bytes] = Record("rename", dst or src or b"", src, dst, model.is_dir, reason, flags,
                                       model.cookie, model.t_ns, model.mask, model.source, model.pid,
                                       model.object_id, model.message, seq, epoch)
    else:
        record = Record(model.kind, model.path, None, None, model.is_dir, reason, flags, model.cookie,
                        model.t_ns, model.mask, model.source, model.pid, model.object_id, model.message, seq,
                        epoch)
    return decode_paths(record) if path_type is str else record
