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

import json.encoder
import time
from collections.abc import Callable

from ..records import Rec
from .context import OVERFLOW_MESSAGE, FormatContext, WallClock
from .jsonl import fsnorm_object, split_path

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

_quote: Callable[[str], str] = json.encoder.encode_basestring
#: kind -> the constant ``"event":{...}`` member.
_EVENT_JSON: dict[str, str] = {}


def _event_json(kind: str) -> str:
    action, etype = _ACTIONS.get(kind, _INFO)
    text = (f'"event":{{"kind":"event","category":["file"],"type":["{etype}"],'
            f'"action":{_quote(action or kind)}}}')
    if len(_EVENT_JSON) < 256:
        _EVENT_JSON[kind] = text
    return text


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


def _sides(path: bytes) -> tuple[str, str, str, str | None]:
    """``(path, name, directory, b64)`` as JSON strings (quoted); ``b64`` (unquoted) only for a path that is not
    valid UTF-8, whose strings are then the readable ``backslashreplace`` form."""
    text, name, head, b64 = split_path(path)
    return _quote(text), _quote(name), _quote(head), b64


class EcsFormatter:
    """``Rec`` -> one ECS JSON document (no trailing newline). Built once per stream with its host and clock.

    Hot path note: the document is written as a string, like jsonl.py (strings escaped by the C encoder,
    constant members cached per kind): 3-6x cheaper than building a dict for ``json.dumps``
    (benchmarks/bench_formats.py)."""

    def __init__(self, ctx: FormatContext) -> None:
        self._tail = f',"host":{{"name":{_quote(ctx.host)}}}'
        self._ecs = f',"ecs":{{"version":"{ECS_VERSION}"}}'
        self._clock: WallClock = ctx.clock
        self._timestamp = _Timestamp()

    def __call__(self, rec: Rec) -> str:
        kind = rec.kind
        is_dir = rec.is_dir
        ftype = '"type":"dir"' if is_dir else '"type":"file"'
        ours = ""
        if kind == "rename":
            src, dst = rec.path, rec.dst
            file = ""
            if dst:
                path, name, directory, b64 = _sides(dst)
                file = f'"path":{path},"name":{name},"directory":{directory},{ftype}'
                if b64 is not None:
                    ours += f',"dst_b64":"{b64}"'
            else:
                file = ftype
            if src:
                path, name, _, b64 = _sides(src)
                file += f',"Ext":{{"original":{{"path":{path},"name":{name}}}}}'
                if b64 is not None:
                    ours += f',"src_b64":"{b64}"'
            file = f',"file":{{{file}}}'
            ours += ',"rename":"both"' if src and dst else ',"rename":"from"' if src else ',"rename":"to"'
        elif rec.path:
            path, name, directory, b64 = _sides(rec.path)
            file = f',"file":{{"path":{path},"name":{name},"directory":{directory},{ftype}}}'
            if b64 is not None:
                ours = f',"path_b64":"{b64}"'
        else:
            file = ""
        extra = ""
        if rec.pid:
            extra = f',"process":{{"pid":{int(rec.pid)}}}'
        extra += self._tail
        message = rec.message if rec.message is not None else OVERFLOW_MESSAGE if kind == "overflow" else None
        if message is not None:
            extra += f',"message":{_quote(message)}'
            if kind == "error":
                extra += f',"error":{{"message":{_quote(message)}}}'
        event = _EVENT_JSON.get(kind) or _event_json(kind)
        return (f'{{"@timestamp":"{self._timestamp(self._clock.wall_ns(rec.t_ns))}",{event}{file}{extra}{self._ecs},'
                f'"fsnorm":{fsnorm_object(rec, ours)}}}')


def make_ecs(ctx: FormatContext) -> Callable[[Rec], str]:
    return EcsFormatter(ctx)
