"""Record -> one OCSF 1.8.0 File System Activity event (``--format ocsf``).

Open Cybersecurity Schema Framework, class ``file_activity`` (``class_uid`` 1001, category System Activity,
``category_uid`` 1). tests/test_formats_ocsf.py validates every kind of record against the JSON Schema of this
class generated from the official 1.8.0 schema export (PyPI ``ocsf-json-schema``, which ships it): required
attributes, types, enum values, and the "at least one of" constraints of ``actor``, ``device`` and
``process``. docs/formats.md has the full mapping; in short:

* ``activity_id``: create 1 Create, access 2 Read, modify 3 Update, delete/delete_self 4 Delete,
  rename/move_self 5 Rename, attrib 6 Set Attributes, unmount 13 Unmount, open 14 Open; close_write,
  close_nowrite, overflow, watch_end and error are 99 Other with fsnorm's kind as ``activity_name``; unknown
  is 0 Unknown. ``type_uid`` = 1001 * 100 + activity_id.
* ``file`` is the object before the event and, for a rename, ``file_result`` the new file. A side outside
  the watched tree is absent: a move out has no ``file_result``; a move in, whose source is unknown, has the
  destination as both ``file`` (required) and ``file_result``; ``unmapped.fsnorm.rename`` says which sides the
  kernel reported (both, from, to).
* ``time``: wall-clock ms of the read (see :mod:`.context`). ``actor``, required, is ``process.pid`` where the
  kernel names the process (fanotify); inotify does not, so it is ``app_name: "unknown"``.
* ``device``: ``hostname`` and ``type_id`` 0 (Unknown). ``overflow`` and ``error`` records have
  ``severity_id`` 3 (Medium) and ``status_id`` 2 (Failure); everything else 1 (Informational) and 1 (Success).
* fsnorm's own fields under ``unmapped.fsnorm`` (kind, flags, cookie, mask, source, t_ns, rename, object_id,
  and the exact bytes of a path that is not valid UTF-8 as ``path_b64`` / ``src_b64`` / ``dst_b64``: the
  ``name``/``path`` strings then hold the readable ``backslashreplace`` form).
"""

from __future__ import annotations

import json.encoder
from collections.abc import Callable

from .. import __version__
from ..records import Rec
from .context import OVERFLOW_MESSAGE, FormatContext, WallClock
from .jsonl import fsnorm_object, split_path

#: The OCSF schema version these events follow (``metadata.version``).
OCSF_VERSION = "1.8.0"
CLASS_UID = 1001
CATEGORY_UID = 1

# activity_id -> caption, from the 1.8.0 schema's file_activity enum.
ACTIVITY_CAPTIONS: dict[int, str] = {
    0: "Unknown", 1: "Create", 2: "Read", 3: "Update", 4: "Delete", 5: "Rename", 6: "Set Attributes",
    7: "Set Security", 8: "Get Attributes", 9: "Get Security", 10: "Encrypt", 11: "Decrypt", 12: "Mount",
    13: "Unmount", 14: "Open", 99: "Other",
}
_ACTIVITY: dict[str, int] = {
    "create": 1, "access": 2, "modify": 3, "delete": 4, "delete_self": 4, "rename": 5, "move_self": 5,
    "attrib": 6, "unmount": 13, "open": 14, "unknown": 0,
}
_FAILED = frozenset({"overflow", "error"})

_quote: Callable[[str], str] = json.encoder.encode_basestring
#: kind -> the constant classification members (class ... status), cached.
_HEAD_JSON: dict[str, str] = {}


def _head_json(kind: str) -> str:
    activity = _ACTIVITY.get(kind, 99)
    caption = ACTIVITY_CAPTIONS[activity]
    failed = kind in _FAILED
    name = kind if activity == 99 else caption
    text = (f'"class_uid":{CLASS_UID},"class_name":"File System Activity","category_uid":{CATEGORY_UID},'
            f'"category_name":"System Activity","activity_id":{activity},"activity_name":{_quote(name)},'
            f'"type_uid":{CLASS_UID * 100 + activity},"type_name":{_quote("File System Activity: " + caption)},'
            f'"severity_id":{3 if failed else 1},"severity":"{"Medium" if failed else "Informational"}",'
            f'"status_id":{2 if failed else 1},"status":"{"Failure" if failed else "Success"}"')
    if len(_HEAD_JSON) < 256:
        _HEAD_JSON[kind] = text
    return text


def _file(path: bytes, is_dir: bool) -> tuple[str, str | None]:
    """The JSON object of a file, and the base64 of its path when it is not valid UTF-8 (the strings are then
    the readable ``backslashreplace`` form)."""
    text, name, head, b64 = split_path(path)
    kind = '"type_id":2,"type":"Folder"' if is_dir else '"type_id":1,"type":"Regular File"'
    return f'{{"name":{_quote(name)},"path":{_quote(text)},"parent_folder":{_quote(head)},{kind}}}', b64


class OcsfFormatter:
    """``Rec`` -> one OCSF File System Activity JSON event (no trailing newline).

    Hot path note: written as a string like jsonl.py and ecs.py, 4-5x cheaper than a dict for ``json.dumps``
    (benchmarks/bench_formats.py)."""

    def __init__(self, ctx: FormatContext) -> None:
        self._clock: WallClock = ctx.clock
        device = f'{{"hostname":{_quote(ctx.host or "unknown")},"type_id":0,"type":"Unknown"}}'
        metadata = (f'{{"version":"{OCSF_VERSION}","product":{{"name":"fsnorm","vendor_name":"fsnorm",'
                    f'"version":{_quote(__version__)}}}}}')
        self._context = f',"device":{device},"metadata":{metadata}'

    def __call__(self, rec: Rec) -> str:
        kind = rec.kind
        ours = ""
        if kind == "rename":
            src, dst = rec.path, rec.dst
            result = ""
            if dst:
                result, b64 = _file(dst, rec.is_dir)
                if b64 is not None:
                    ours += f',"dst_b64":"{b64}"'
            if src:
                first, b64 = _file(src, rec.is_dir)
                if b64 is not None:
                    ours += f',"src_b64":"{b64}"'
            else:
                first = result
            files = f',"file":{first},"file_result":{result}' if result else f',"file":{first}'
            ours += ',"rename":"both"' if src and dst else ',"rename":"from"' if src else ',"rename":"to"'
        elif rec.path:
            first, b64 = _file(rec.path, rec.is_dir)
            files = f',"file":{first}'
            if b64 is not None:
                ours = f',"path_b64":"{b64}"'
        else:  # overflow: no object; OCSF requires a file with a name and a type
            files = ',"file":{"name":"","type_id":0,"type":"Unknown"}'
        actor = f'{{"process":{{"pid":{int(rec.pid)}}}}}' if rec.pid else '{"app_name":"unknown"}'
        message = rec.message if rec.message is not None else OVERFLOW_MESSAGE if kind == "overflow" else None
        msg = "" if message is None else f',"message":{_quote(message)}'
        head = _HEAD_JSON.get(kind) or _head_json(kind)
        return (f'{{{head},"time":{self._clock.wall_ns(rec.t_ns) // 1_000_000}{files},"actor":{actor}'
                f'{self._context}{msg},"unmapped":{{"fsnorm":{fsnorm_object(rec, ours)}}}}}')


def make_ocsf(ctx: FormatContext) -> Callable[[Rec], str]:
    return OcsfFormatter(ctx)
