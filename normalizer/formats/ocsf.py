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

import json
from collections.abc import Callable
from typing import Any

from .. import __version__
from ..records import Rec, path_to_json
from .context import OVERFLOW_MESSAGE, FormatContext, WallClock

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

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _file(path: bytes, is_dir: bool, ours: dict[str, Any], b64_key: str) -> dict[str, Any]:
    head, _, name = path.rpartition(b"/")
    text, b64 = path_to_json(path)
    if b64 is not None:
        ours[b64_key] = b64
    return {"name": path_to_json(name)[0], "path": text, "parent_folder": path_to_json(head or b"/")[0],
            "type_id": 2 if is_dir else 1, "type": "Folder" if is_dir else "Regular File"}


class OcsfFormatter:
    """``Rec`` -> one OCSF File System Activity JSON event (no trailing newline)."""

    def __init__(self, ctx: FormatContext) -> None:
        self._clock: WallClock = ctx.clock
        self._device = {"hostname": ctx.host or "unknown", "type_id": 0, "type": "Unknown"}
        self._metadata = {"version": OCSF_VERSION,
                          "product": {"name": "fsnorm", "vendor_name": "fsnorm", "version": __version__}}

    def __call__(self, rec: Rec) -> str:
        kind = rec.kind
        activity = _ACTIVITY.get(kind, 99)
        caption = ACTIVITY_CAPTIONS[activity]
        failed = kind in _FAILED
        ours: dict[str, Any] = {"kind": kind, "flags": list(rec.flags), "source": rec.source, "mask": rec.mask,
                                "t_ns": rec.t_ns}
        if rec.cookie is not None:
            ours["cookie"] = rec.cookie
        if rec.object_id is not None:
            ours["object_id"] = rec.object_id
        event: dict[str, Any] = {
            "class_uid": CLASS_UID, "class_name": "File System Activity",
            "category_uid": CATEGORY_UID, "category_name": "System Activity",
            "activity_id": activity, "activity_name": kind if activity == 99 else caption,
            "type_uid": CLASS_UID * 100 + activity, "type_name": f"File System Activity: {caption}",
            "severity_id": 3 if failed else 1, "severity": "Medium" if failed else "Informational",
            "status_id": 2 if failed else 1, "status": "Failure" if failed else "Success",
            "time": self._clock.wall_ns(rec.t_ns) // 1_000_000,
        }
        if kind == "rename":
            src, dst = rec.path, rec.dst
            ours["rename"] = "both" if src and dst else "from" if src else "to"
            result = _file(dst, rec.is_dir, ours, "dst_b64") if dst else None
            event["file"] = _file(src, rec.is_dir, ours, "src_b64") if src else result
            if result is not None:
                event["file_result"] = result
        elif rec.path:
            event["file"] = _file(rec.path, rec.is_dir, ours, "path_b64")
        else:  # overflow: no object; OCSF requires a file with a name and a type
            event["file"] = {"name": "", "type_id": 0, "type": "Unknown"}
        event["actor"] = {"process": {"pid": rec.pid}} if rec.pid else {"app_name": "unknown"}
        event["device"] = self._device
        event["metadata"] = self._metadata
        message = rec.message if rec.message is not None else OVERFLOW_MESSAGE if kind == "overflow" else None
        if message is not None:
            event["message"] = message
        event["unmapped"] = {"fsnorm": ours}
        return _dumps(event)


def make_ocsf(ctx: FormatContext) -> Callable[[Rec], str]:
    return OcsfFormatter(ctx)
