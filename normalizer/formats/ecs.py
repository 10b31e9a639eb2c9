"""Record -> one Elastic Common Schema (ECS) JSON document (``--format ecs``).

Field names, types and allowed values are those of ECS 9.4 (``ecs_flat`` of Elastic's ``@elastic/ecs``
9.4.0 package; tests/test_formats_ecs.py checks every field written against it) and of Elastic Defend's file
events for the rename (``file.Ext.original.path`` / ``.name``, as Elastic's detection rules query them).
docs/formats.md has the full mapping; in short:

* ``event.kind: event``, ``event.category: [file]``, ``event.type`` one of the values ECS expects for the
  ``file`` category (creation, deletion, change, access, info), ``event.action`` Elastic's verb where its file
  events have one (creation, deletion, modification, rename, attributes_modified) and fsnorm's kind otherwise
  (close_write, open, access, close_nowrite, move_self, unmount, overflow, watch_end, error, unknown).
* ``file.*`` is where the object is *after* the event: for a rename, the destination, with the source in
  ``file.Ext.original.*``. A side outside the watched tree is absent (move in: no ``file.Ext.original``;
  move out: no ``file.path``), and ``fsnorm.rename`` says which sides are known (both, from, to).
* ``@timestamp``: wall-clock time of the read, microseconds, UTC (see :mod:`.context` for the clock).
* fsnorm's own fields under ``fsnorm.*``: kind, flags, cookie, mask, source, t_ns, rename, object_id, and for a
  path that is not valid UTF-8 its exact bytes as base64 (``fsnorm.path_b64``, ``src_b64``, ``dst_b64``;
  the ECS string fields then hold the readable ``backslashreplace`` form, as fsnorm's JSON does).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from ..records import Rec, path_to_json
from .context import OVERFLOW_MESSAGE, FormatContext, WallClock

#: The ECS version whose fields and allowed values this module writes (``ecs.version``).
ECS_VERSION = "9.4.0"

# kind -> (event.action, event.type)
_ACTIONS: dict[str, tuple[str, str]] = {
    "create": ("creation", "creation"),
    "delete": ("deletion", "deletion"),
    "delete_self": ("deletion", "deletion"),
    "modify": ("modification", "change"),
    "attrib": ("attributes_modified", "change"),
    "rename": ("rename", "change"),
    "close_write": ("close_write", "change"),
    "move_self": ("move_self", "change"),
    "open": ("open", "access"),
    "access": ("access", "access"),
    "close_nowrite": ("close_nowrite", "access"),
}
_INFO = ("", "info")  # unmount, overflow, watch_end, error, unknown: the kind is the action

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


class _Timestamp:
    """Wall-clock ns -> ISO 8601 UTC with microseconds; the date-time part is cached per second."""

    __slots__ = ("_sec", "_text")

    def __init__(self) -> None:
        self._sec = -1
        self._text = ""

    def __call__(self, wall_ns: int) -> str:
        sec, ns = divmod(wall_ns, 1_000_000_000)
        if sec != self._sec:
            self._sec, self._text = sec, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        return f"{self._text}.{ns // 1000:06d}Z"


def _split(path: bytes) -> tuple[bytes, bytes]:
    head, _, name = path.rpartition(b"/")
    return head or b"/", name


def _file_fields(path: bytes, is_dir: bool, ours: dict[str, Any], b64_key: str) -> dict[str, Any]:
    directory, name = _split(path)
    text, b64 = path_to_json(path)
    if b64 is not None:
        ours[b64_key] = b64
    return {
        "path": text,
        "name": path_to_json(name)[0],
        "directory": path_to_json(directory)[0],
        "type": "dir" if is_dir else "file",
    }


class EcsFormatter:
    """``Rec`` -> one ECS JSON document (no trailing newline). Built once per stream with its host and clock."""

    def __init__(self, ctx: FormatContext) -> None:
        self._host = {"name": ctx.host}
        self._clock: WallClock = ctx.clock
        self._timestamp = _Timestamp()

    def __call__(self, rec: Rec) -> str:
        kind = rec.kind
        action, etype = _ACTIONS.get(kind, _INFO)
        ours: dict[str, Any] = {"kind": kind, "flags": list(rec.flags), "source": rec.source, "mask": rec.mask,
                                "t_ns": rec.t_ns}
        if rec.cookie is not None:
            ours["cookie"] = rec.cookie
        if rec.object_id is not None:
            ours["object_id"] = rec.object_id
        doc: dict[str, Any] = {
            "@timestamp": self._timestamp(self._clock.wall_ns(rec.t_ns)),
            "event": {"kind": "event", "category": ["file"], "type": [etype], "action": action or kind},
        }
        if kind == "rename":
            src, dst = rec.path, rec.dst
            ours["rename"] = "both" if src and dst else "from" if src else "to"
            file: dict[str, Any] = {}
            if dst:
                file = _file_fields(dst, rec.is_dir, ours, "dst_b64")
            else:
                file["type"] = "dir" if rec.is_dir else "file"
            if src:
                original = _file_fields(src, rec.is_dir, ours, "src_b64")
                file["Ext"] = {"original": {"path": original["path"], "name": original["name"]}}
            doc["file"] = file
        elif rec.path:
            doc["file"] = _file_fields(rec.path, rec.is_dir, ours, "path_b64")
        if rec.pid:
            doc["process"] = {"pid": rec.pid}
        doc["host"] = self._host
        message = rec.message if rec.message is not None else OVERFLOW_MESSAGE if kind == "overflow" else None
        if message is not None:
            doc["message"] = message
            if kind == "error":
                doc["error"] = {"message": message}
        doc["ecs"] = {"version": ECS_VERSION}
        doc["fsnorm"] = ours
        return _dumps(doc)


def make_ecs(ctx: FormatContext) -> Callable[[Rec], str]:
    return EcsFormatter(ctx)
