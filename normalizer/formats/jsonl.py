"""Record -> one JSON line, the form ``fsnorm watch`` prints and the JSON Schema (``fsnorm schema``) describes."""

from __future__ import annotations

import json.encoder
from collections.abc import Callable
from typing import Final

from ..records import Rec, path_to_json

# The fast JSON writer. It writes the same keys, in the same order, as RenameRecord/EventRecord.model_dump_json
# (tests/test_records.py holds them to it with hypothesis). Hot path note: paths are nearly always valid UTF-8,
# so the common case is one decode and one C-level string escape per path, flags come from a small cache, and
# the rarely set fields cost one check; this is 7x cheaper than building the pydantic model
# (benchmarks/bench_matcher.py prints both).
# Final: compiled (setup.py), these are C statics rather than lookups in the module's dict.
_quote: Final[Callable[[str], str]] = json.encoder.encode_basestring
_FLAGS_JSON: Final[dict[tuple[str, ...], str]] = {(): "[]"}
_RARE_NONE: Final = ',"pid":null,"object_id":null,"message":null'


def _flags_json(flags: tuple[str, ...]) -> str:
    text = "[" + ",".join(_quote(str(f)) for f in flags) + "]"
    if len(_FLAGS_JSON) < 4096:
        _FLAGS_JSON[tuple(flags)] = text
    return text


def _head_slow(rec: Rec) -> tuple[str, str]:
    """The path part and the ``*_b64`` companions, for a record with a path that is not valid UTF-8."""
    keys = (("src", rec.path), ("dst", rec.dst)) if rec.kind == "rename" else (("path", rec.path),)
    head = [f'{{"kind":{_quote(rec.kind)}']
    b64s = []
    for key, path in keys:
        text, b64 = path_to_json(path)
        head.append(f'"{key}":{_quote(text)}')
        if b64 is not None:
            b64s.append(f',"{key}_b64":"{b64}"')
    return ",".join(head), "".join(b64s)


def _rare(rec: Rec) -> str:
    pid, object_id, message = rec.pid, rec.object_id, rec.message
    return (f',"pid":{"null" if pid is None else int(pid)},'
            f'"object_id":{"null" if object_id is None else _quote(object_id)},'
            f'"message":{"null" if message is None else _quote(message)}')


def rec_to_json(rec: Rec) -> str:
    """The JSON line of ``rec`` (no trailing newline), equal to ``model_to_json(to_model(rec))``."""
    try:
        if rec.kind == "rename":
            head = '{"kind":"rename","src":' + _quote(rec.path.decode()) + ',"dst":' + _quote(rec.dst.decode())
        else:
            head = '{"kind":' + _quote(rec.kind) + ',"path":' + _quote(rec.path.decode())
        b64 = ""
    except UnicodeDecodeError:
        head, b64 = _head_slow(rec)
    flags = _FLAGS_JSON.get(rec.flags) or _flags_json(rec.flags)
    cookie = rec.cookie
    rare = _RARE_NONE if rec.pid is None and rec.object_id is None and rec.message is None else _rare(rec)
    return (f'{head},"is_dir":{"true" if rec.is_dir else "false"},'
            f'"cookie":{"null" if cookie is None else cookie},"source":"{rec.source}","flags":{flags},'
            f'"t_ns":{rec.t_ns},"mask":{rec.mask}{rare}{b64}}}')


def fsnorm_object(rec: Rec, extra: str = "") -> str:
    """fsnorm's own fields as one JSON object, as ECS (``fsnorm``) and OCSF (``unmapped.fsnorm``) carry them:
    kind, flags, source, mask, t_ns, then object_id and cookie when set, then ``extra`` (text that starts with
    a comma: the ``*_b64`` companions and the rename side)."""
    ids = "" if rec.object_id is None else f',"object_id":{_quote(rec.object_id)}'
    if rec.cookie is not None:
        ids += f',"cookie":{int(rec.cookie)}'
    flags = _FLAGS_JSON.get(rec.flags) or _flags_json(rec.flags)
    return (f'{{"kind":{_quote(rec.kind)},"flags":{flags},"source":{_quote(rec.source)},"mask":{int(rec.mask)},'
            f'"t_ns":{int(rec.t_ns)}{ids}{extra}}}')


def split_path(path: bytes) -> tuple[str, str, str, str | None]:
    """``(path, name, directory, b64)`` as text for the formats that name a file's parts (ECS, OCSF): the
    directory of a top-level entry is ``"/"``; ``b64`` is set only for a path that is not valid UTF-8, whose
    strings are then the readable ``backslashreplace`` form (:func:`~normalizer.records.path_to_json`)."""
    try:
        text = path.decode()
        b64 = None
        head, _, name = text.rpartition("/")
    except UnicodeDecodeError:
        text, b64 = path_to_json(path)
        raw_head, _, raw_name = path.rpartition(b"/")
        head, name = path_to_json(raw_head)[0], path_to_json(raw_name)[0]
    return text, name, head or "/", b64
