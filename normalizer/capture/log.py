"""Capture logs: the raw side of a session written down, and read back for replay.

The format is specified in docs/capture-format.md (keep the two in step). In short: UTF-8 JSON Lines, optionally
gzip-compressed; the first line is a header object, every later line a JSON array whose first element is a
one-letter type tag. Lines are appended and flushed as items happen, so a crash loses at most the last,
partial line.

Reading is forgiving by default: a corrupt line, an unknown line type or an event with bad fields is reported
as a :class:`CaptureIssue` naming the line and byte offset, and reading goes on with the next valid data.
``strict=True`` makes the first issue a :class:`~normalizer.errors.CaptureError` instead.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import gzip
import io
import json
import os
import platform
import socket
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final, Literal, cast

from ..clock import sample_offset_ns
from ..core import raw
from ..errors import CaptureError
from .fastline import parse_batch

FORMAT_NAME = "fsnorm-capture"
FORMAT_VERSION = 1
#: Version 2 adds the fanotify items (``F``, ``H``): fanotify captures are version 2, inotify ones stay
#: version 1 (unchanged, so older readers still read them). Version 3 (fanotify only): the ``H`` answers to
#: the handles a batch names come *after* that batch (the normalizer asks for them with ``Resolve``
#: actions); a version-2 reader would process the batch before its answers, so it must refuse these.
FANOTIFY_FORMAT_VERSION = 3
#: Versions this reader understands, by source.
SUPPORTED_VERSIONS_BY_SOURCE: dict[str, frozenset[int]] = {"inotify": frozenset({1}),
                                                          "fanotify": frozenset({2, FANOTIFY_FORMAT_VERSION})}
#: Versions this reader understands (of any source).
SUPPORTED_VERSIONS = frozenset().union(*SUPPORTED_VERSIONS_BY_SOURCE.values())

_GZIP_MAGIC = b"\x1f\x8b"
#: The longest line a reader accepts. A batch line of a 256 KiB read is well under 1 MiB; anything longer is
#: damage (or a decompression bomb) and is skipped without being held in memory.
MAX_LINE = 16 << 20
#: What a damaged stream can raise while being read: I/O, truncation, corrupt deflate data.
_STREAM_ERRORS = (OSError, EOFError, gzip.BadGzipFile, zlib.error)
#: What a damaged line can raise while being parsed (RecursionError: absurdly nested JSON).
_LINE_ERRORS = (ValueError, TypeError, IndexError, KeyError, RecursionError)
#: Header options fsnorm itself reads back, and what each must be. Unknown keys are kept (newer writers).
_OPTION_CHECKS: dict[str, tuple[str, Any]] = {
    "window_ns": ("a non-negative integer", lambda v: type(v) is int and v >= 0),
    "max_wait_ns": ("a non-negative integer", lambda v: type(v) is int and v >= 0),
    "max_pending": ("a positive integer", lambda v: type(v) is int and v >= 1),
    "strict_order": ("true or false", lambda v: type(v) is bool),
    "rescan": ("true or false", lambda v: type(v) is bool),
    "use_rename": ("true or false", lambda v: type(v) is bool),
    "mask": ("a 32-bit unsigned integer", lambda v: type(v) is int and 0 <= v < 2**32),
    "include": ("a list of strings", lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v)),
    "exclude": ("a list of strings", lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v)),
    "roots": ("a list of strings", lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v)),
    "kinds": ("null or a list of strings",
              lambda v: v is None or (isinstance(v, list) and all(isinstance(x, str) for x in v))),
    "mark_mode": ("a string", lambda v: isinstance(v, str)),
}
_INT32 = (-(2**31), 2**31 - 1)
_UINT32 = (0, 2**32 - 1)
#: The bounds the batch loop checks per event, as constants (compiled: C constants, not dict lookups).
_INT32_MAX: Final = 2**31 - 1
_UINT32_MAX: Final = 2**32 - 1
_UINT64 = (0, 2**64 - 1)

# fanotify info record types and the FAN_RENAME bit (include/uapi/linux/fanotify.h), as captured.
_INFO_FID, _INFO_DFID_NAME, _INFO_DFID, _INFO_OLD_DFID_NAME, _INFO_NEW_DFID_NAME = 1, 2, 3, 10, 12
_NAMED_INFO = frozenset({_INFO_DFID_NAME, _INFO_OLD_DFID_NAME, _INFO_NEW_DFID_NAME})
_FID_INFO = frozenset({_INFO_FID, _INFO_DFID}) | _NAMED_INFO
_FAN_RENAME = 0x10000000
#: Every bit fsnorm knows in a fanotify event mask (event bits, FAN_ONDIR, FAN_Q_OVERFLOW).
_FAN_KNOWN_BITS = 0x10000000 | 0x40000000 | 0x00004000 | 0x00000FFF
#: MAX_HANDLE_SZ: no file handle is longer.
_MAX_HANDLE = 128


# -- names --------------------------------------------------------------------------------------------------


def encode_name(name: bytes) -> str | dict[str, str]:
    """A name or path as JSON: the string when valid UTF-8, else ``{"b64": ...}`` with the exact bytes."""
    try:
        return name.decode("utf-8")
    except UnicodeDecodeError:
        return {"b64": base64.b64encode(name).decode("ascii")}


def decode_name(value: Any) -> bytes:
    """Inverse of :func:`encode_name`; ValueError for anything else."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    if isinstance(value, dict) and isinstance(value.get("b64"), str) and len(value) == 1:
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("name is not valid base64") from exc
    raise ValueError(f"a name must be a string or {{'b64': str}}, not {type(value).__name__}")


# -- header -------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class CaptureHeader:
    """What the first line of a capture says about the session that wrote it."""

    source: Literal["inotify", "fanotify"] = "inotify"
    version: int = FORMAT_VERSION
    kernel: str = field(default_factory=platform.release)
    host: str = field(default_factory=socket.gethostname)
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    options: dict[str, Any] = field(default_factory=dict)
    watches: list[tuple[int, bytes]] = field(default_factory=list)
    #: CLOCK_REALTIME - CLOCK_MONOTONIC (ns) when the capture started: turns its ``t`` into wall-clock time
    #: (the output formats' timestamps on replay). None in captures written before fsnorm recorded it.
    wall_offset_ns: int | None = field(default_factory=sample_offset_ns)

    def __post_init__(self) -> None:
        if self.source == "fanotify" and self.version < 2:  # a new fanotify capture (a read one keeps its own)
            self.version = FANOTIFY_FORMAT_VERSION

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "version": self.version,
            "source": self.source,
            "kernel": self.kernel,
            "host": self.host,
            "created": self.created,
            "clock": "CLOCK_MONOTONIC",
            **({} if self.wall_offset_ns is None else {"wall_offset_ns": self.wall_offset_ns}),
            "options": self.options,
            "watches": [[wd, encode_name(path)] for wd, path in self.watches],
        }

    @classmethod
    def from_json(cls, obj: Any) -> CaptureHeader:
        """Validate a parsed header line; ValueError says what is wrong."""
        if not isinstance(obj, dict) or obj.get("format") != FORMAT_NAME:
            raise ValueError(f"not an fsnorm capture (the first line must be a {FORMAT_NAME!r} header)")
        version = obj.get("version")
        if type(version) is not int or version not in SUPPORTED_VERSIONS:
            raise ValueError(
                f"capture format version {version!r} is not supported by this fsnorm "
                f"(it reads version {', '.join(map(str, sorted(SUPPORTED_VERSIONS)))}); upgrade fsnorm"
            )
        source = obj.get("source")
        if source not in ("inotify", "fanotify"):
            raise ValueError(f"unknown source kind {source!r}")
        if version not in SUPPORTED_VERSIONS_BY_SOURCE[source]:
            known = ", ".join(map(str, sorted(SUPPORTED_VERSIONS_BY_SOURCE[source])))
            raise ValueError(f"capture format version {version!r} is not supported for {source} captures by this "
                             f"fsnorm (it reads version {known}); upgrade fsnorm")
        options = obj.get("options", {})
        if not isinstance(options, dict):
            raise ValueError("header 'options' must be an object")
        for key, (what, ok) in _OPTION_CHECKS.items():
            if key in options and not ok(options[key]):
                raise ValueError(f"header option {key!r} must be {what}, got {options[key]!r}")
        watches = [(_int(w[0], "wd", _INT32), decode_name(w[1])) for w in _list(obj.get("watches", []))]
        offset = obj.get("wall_offset_ns")
        if offset is not None and type(offset) is not int:
            raise ValueError(f"header 'wall_offset_ns' must be an integer, got {offset!r}")
        return cls(
            source=source,
            version=version,
            kernel=str(obj.get("kernel", "")),
            host=str(obj.get("host", "")),
            created=str(obj.get("created", "")),
            options=options,
            watches=watches,
            wall_offset_ns=offset,
        )


# -- writing ------------------------------------------------------------------------------------------------


class CaptureWriter:
    """Appends stream items to a capture file, one flushed line each.

    A path ending in ``.gz`` is gzip-compressed (each item is sync-flushed, so the file stays readable up to
    the last complete item if the process dies). Write errors (disk full, file-size limit) raise
    :class:`~normalizer.errors.CaptureError`; everything written before stays valid.
    """

    def __init__(self, target: str | os.PathLike[str] | IO[bytes], header: CaptureHeader,
                 *, compress: bool | None = None) -> None:
        self._raw: IO[bytes]
        if isinstance(target, str | os.PathLike):
            path = Path(target)
            self.name = str(path)
            self._raw = open(path, "wb")  # noqa: SIM115 - owned and closed by this object
            if compress is None:
                compress = path.suffix == ".gz"
        else:
            self.name = getattr(target, "name", "<stream>")
            self._raw = target
        self._gz: gzip.GzipFile | None = gzip.GzipFile(fileobj=self._raw, mode="wb") if compress else None
        self._out: IO[bytes] = cast(IO[bytes], self._gz) if self._gz is not None else self._raw
        self.closed = False
        self.lines = 0
        self._write(header.to_json())

    def write(self, item: raw.AnyStreamItem) -> None:
        """Append one stream item."""
        self._write(item_to_json(item))

    def close(self, reason: str = "closed") -> None:
        """Write the end marker and close. Idempotent; a failed write still closes the file."""
        if self.closed:
            return
        try:
            self._write(["E", time.monotonic_ns(), reason])
        finally:
            self.closed = True
            try:
                if self._gz is not None:
                    self._gz.close()
                self._raw.close()
            except OSError:
                pass

    def abort(self) -> None:
        """Close without writing the end marker (after a failed write: the file may end mid-line, and more
        writes would only make it worse). Idempotent, never raises."""
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(OSError, ValueError):
            if self._gz is not None:
                self._gz.close()
        with contextlib.suppress(OSError, ValueError):
            self._raw.close()

    def __enter__(self) -> CaptureWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self, obj: Any) -> None:
        if self.closed:
            raise CaptureError(f"capture {self.name} is closed")
        data = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"
        try:
            self._out.write(data)
            if self._gz is not None:
                self._gz.flush(zlib.Z_SYNC_FLUSH)
            self._raw.flush()
        except OSError as exc:
            raise CaptureError(f"cannot write capture {self.name}: {exc.strerror or exc}") from exc
        self.lines += 1


def _fid_json(fid: bytes) -> list[Any]:
    fsid, handle_type, handle = raw.fid_unpack(fid)
    return [fsid.hex(), handle_type, handle.hex()]


def fan_event_to_json(ev: raw.FanotifyEvent) -> list[Any]:
    """``[mask, pid, [info, ...]]`` for one fanotify event, its info records in kernel order (see
    docs/capture-format.md): ``[type, fsid_hex, handle_type, handle_hex, name]`` for a file-id record (``name``
    null for FID/DFID), ``[type, body_hex]`` for any other (and for a second record of one type)."""
    mask, pid, d, nm, d2, nm2, obj, extra = ev
    infos: list[list[Any]] = []
    if d is not None:
        info_type = _INFO_OLD_DFID_NAME if mask & _FAN_RENAME else _INFO_DFID_NAME if nm else _INFO_DFID
        infos.append([info_type, *_fid_json(d), encode_name(nm) if info_type != _INFO_DFID else None])
    if d2 is not None:
        infos.append([_INFO_NEW_DFID_NAME, *_fid_json(d2), encode_name(nm2)])
    if obj is not None:
        infos.append([_INFO_FID, *_fid_json(obj), None])
    infos.extend([info_type, body.hex()] for info_type, body in extra)
    return [mask, pid, infos]


def item_to_json(item: raw.AnyStreamItem) -> list[Any]:
    """The JSON array for one stream item (see docs/capture-format.md)."""
    if isinstance(item, raw.FanotifyBatch):
        fan = ["F", item.t_ns, 1 if item.drained else 0, [fan_event_to_json(ev) for ev in item.events]]
        return fan if item.backlog is None else [*fan, item.backlog]
    if isinstance(item, raw.HandleResolved):
        return ["H", item.t_ns, item.fsid.hex(), item.handle_type, item.handle.hex(),
                None if item.path is None else encode_name(item.path), item.status]
    if isinstance(item, raw.InotifyBatch):
        batch = ["B", item.t_ns, 1 if item.drained else 0,
                 [[wd, mask, cookie, encode_name(name)] for wd, mask, cookie, name in item.events]]
        return batch if item.backlog is None else [*batch, item.backlog, item.nbytes]
    if isinstance(item, raw.WatchAdded):
        return ["W", item.t_ns, item.wd, encode_name(item.path)]
    if isinstance(item, raw.WatchRemoved):
        return ["R", item.t_ns, item.wd]
    if isinstance(item, raw.Tick):
        return ["T", item.t_ns]
    return ["N", item.t_ns, item.kind, encode_name(item.path), 1 if item.is_dir else 0, list(item.flags),
            item.message]


# -- reading ------------------------------------------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class CaptureIssue:
    """Something wrong in a capture, and where: reading went on past it."""

    line: int
    offset: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line} (byte offset {self.offset}): {self.message}"


#: The record kinds a source notice may carry.
#: ``scan`` makes no record: it announces that fsnorm lists a directory (normalizer.core.ownscan).
_NOTICE_KINDS = frozenset({"create", "delete", "modify", "attrib", "error", "watch_end", "overflow", "unknown",
                           "scan"})


def _int(value: Any, what: str, bounds: tuple[int, int]) -> int:
    if type(value) is not int or not bounds[0] <= value <= bounds[1]:
        raise ValueError(f"{what} must be an integer in [{bounds[0]}, {bounds[1]}], got {value!r}")
    return value


def _t(value: Any) -> int:
    if type(value) is not int or value < 0:
        raise ValueError(f"timestamp must be a non-negative integer, got {value!r}")
    return value


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError(f"expected an array, got {type(value).__name__}")
    return value


class CaptureReader:
    """Iterates the stream items of a capture. ``issues`` collects what was wrong (non-strict mode);
    ``on_issue`` is called for each as it is found. ``header`` is set once the first line was read."""

    def __init__(
        self,
        source: str | os.PathLike[str] | IO[bytes],
        *,
        strict: bool = False,
        on_issue: Callable[[CaptureIssue], None] | None = None,
    ) -> None:
        self.strict = strict
        self.on_issue = on_issue
        self.issues: list[CaptureIssue] = []
        self.ended_cleanly = False
        self._stream = _open_maybe_gzip(source)
        opened_here = isinstance(source, str | os.PathLike)
        #: The file opened here under a gzip reader: ``GzipFile.close()`` leaves the file it was given open.
        self._gzip_file: IO[bytes] | None = getattr(self._stream, "fileobj", None) if opened_here else None
        self.name = source if isinstance(source, str) else getattr(source, "name", "<stream>")
        try:
            self.header = self._read_header()
        except BaseException:
            if opened_here:  # not left open for the GC (ResourceWarning)
                self.close()
            raise

    def close(self) -> None:
        self._stream.close()
        if self._gzip_file is not None:
            self._gzip_file.close()

    def __enter__(self) -> CaptureReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _readline(self) -> tuple[bytes, int]:
        """The next line (at most MAX_LINE bytes kept) and its full length. A longer line is consumed in chunks
        and returned empty-bodied: the caller reports it."""
        line = self._stream.readline(MAX_LINE + 1)
        if len(line) <= MAX_LINE or line.endswith(b"\n"):
            return line, len(line)
        length = len(line)
        while True:
            chunk = self._stream.readline(1 << 20)
            length += len(chunk)
            if not chunk or chunk.endswith(b"\n"):
                return b"", length

    def _read_header(self) -> CaptureHeader:
        try:
            line, length = self._readline()
        except _STREAM_ERRORS as exc:
            raise CaptureError(f"cannot read the header: {exc}", line=1, offset=0) from exc
        self._offset = length
        self._lineno = 1
        if not length:
            raise CaptureError("empty file: no capture header", line=1, offset=0)
        if not line:
            raise CaptureError(f"the header line is longer than {MAX_LINE} bytes", line=1, offset=0)
        if not line.endswith(b"\n"):
            # As for any line: one without its newline is where the writer stopped, even if it happens to parse.
            raise CaptureError("truncated header line (the file ends before the header's newline)", line=1,
                               offset=0)
        try:
            return CaptureHeader.from_json(json.loads(line))
        except _LINE_ERRORS as exc:
            raise CaptureError(f"bad capture header: {exc!s:.300}", line=1, offset=0) from exc

    def _issue(self, line: int, offset: int, message: str) -> None:
        issue = CaptureIssue(line, offset, message)
        if self.strict:
            raise CaptureError(message, line=line, offset=offset)
        self.issues.append(issue)
        if self.on_issue is not None:
            self.on_issue(issue)

    def __iter__(self) -> Iterator[raw.AnyStreamItem]:
        lineno, offset = self._lineno, self._offset
        last_t = 0
        # Batch lines of the common shape take the C decoder; any other line, the reference below.
        fast = parse_batch if self.header.source == "inotify" else None
        known: int = raw.IN_DELIVERED_BITS  # other bits: the reference reports them (an issue per event)
        while True:
            try:
                line, length = self._readline()
            except _STREAM_ERRORS as exc:
                self._issue(lineno + 1, offset, f"the compressed stream is truncated or corrupt ({exc}); "
                            "everything before this point was read")
                return
            if not length:
                break
            lineno += 1
            start, offset = offset, offset + length
            if not line:
                self._issue(lineno, start, f"line of {length} bytes is longer than {MAX_LINE}; skipped")
                continue
            if not line.endswith(b"\n"):
                self._issue(lineno, start, "truncated last line (the writer stopped mid-line); ignored")
                break
            if self.ended_cleanly:
                self._issue(lineno, start, "data after the end marker; ignored")
                continue
            fields = fast(line, known) if fast is not None else None
            if fields is not None:  # the common batch line, decoded in C (capture/fastline.py)
                item: raw.AnyStreamItem | None = raw.InotifyBatch(fields[0], fields[1], fields[2], fields[3],
                                                                  fields[4])
            else:
                try:
                    obj = json.loads(line)
                except (ValueError, RecursionError) as exc:
                    self._issue(lineno, start, f"corrupt line, not JSON ({exc!s:.200}); skipped")
                    continue
                try:
                    item = self._item(obj, lineno, start)
                except _LINE_ERRORS as exc:
                    self._issue(lineno, start, f"bad {_tag_name(obj)} line: {exc}; skipped")
                    continue
            if item is None:
                continue
            if item.t_ns < last_t:
                self._issue(lineno, start, f"timestamp {item.t_ns} goes back from {last_t}; kept as is")
            last_t = max(last_t, item.t_ns)
            yield item
        if not self.ended_cleanly:
            self._issue(lineno + 1, offset, "no end marker: the capture was not closed (the writer was killed "
                        "or is still running); every complete line was read")

    def _item(self, obj: Any, lineno: int, start: int) -> raw.AnyStreamItem | None:
        if not isinstance(obj, list) or not obj or not isinstance(obj[0], str):
            raise ValueError("a line must be a JSON array starting with a type tag")
        tag = obj[0]
        if tag in _SOURCE_TAGS and _SOURCE_TAGS[tag] != self.header.source:
            raise ValueError(f"a {_SOURCE_TAGS[tag]} item in a {self.header.source} capture")
        if tag == "B":
            return self._batch(obj, lineno, start)
        if tag == "F":
            return self._fan_batch(obj, lineno, start)
        if tag == "H":
            status = obj[6]
            if status not in raw.HANDLE_STATUSES:
                raise ValueError(f"unknown handle status {status!r}")
            path = None if obj[5] is None else decode_name(obj[5])
            if (path is None) != (status != "ok"):
                raise ValueError("a handle has a path exactly when its status is 'ok'")
            return raw.HandleResolved(_t(obj[1]), _fsid(obj[2]), _int(obj[3], "handle_type", _INT32),
                                      _handle(obj[4]), path, status)
        if tag == "W":
            return raw.WatchAdded(_t(obj[1]), _int(obj[2], "wd", _INT32), decode_name(obj[3]))
        if tag == "R":
            return raw.WatchRemoved(_t(obj[1]), _int(obj[2], "wd", _INT32))
        if tag == "T":
            return raw.Tick(_t(obj[1]))
        if tag == "N":
            kind = obj[2]
            if kind not in _NOTICE_KINDS:
                raise ValueError(f"unknown notice kind {kind!r}")
            flags = _list(obj[5])
            if not all(isinstance(f, str) for f in flags):
                raise ValueError("notice flags must be strings")
            message = obj[6]
            if message is not None and not isinstance(message, str):
                raise ValueError("notice message must be a string or null")
            return raw.SourceNotice(_t(obj[1]), kind, decode_name(obj[3]), bool(obj[4]), tuple(flags),
                                    message or "")
        if tag == "E":
            self.ended_cleanly = True
            return None
        raise ValueError(f"unknown line type {tag!r}")

    def _batch(self, obj: list[Any], lineno: int, start: int) -> raw.InotifyBatch:
        # Hot path of replay: a batch line holds up to thousands of events. The common, valid case costs one
        # tuple build and a few type checks per event; anything odd drops to the checked path for that event.
        t = _t(obj[1])
        drained = obj[2]
        if drained not in (0, 1):
            raise ValueError(f"drained flag must be 0 or 1, got {drained!r}")
        events: list[raw.InotifyEvent] = []
        append = events.append
        unknown_bits: int = ~raw.IN_DELIVERED_BITS
        for i, ev in enumerate(_list(obj[3])):
            try:
                wd, mask, cookie, name = ev
                if (type(wd) is int and type(mask) is int and type(cookie) is int and type(name) is str
                        and -1 <= wd <= _INT32_MAX and 0 <= mask <= _UINT32_MAX and 0 <= cookie <= _UINT32_MAX
                        and "/" not in name and "\0" not in name and name != "." and name != ".."):
                    bits: int = mask
                    append((wd, mask, cookie, name.encode("utf-8", "surrogateescape")))
                else:
                    append((_int(wd, "wd", _INT32), (bits := _int(mask, "mask", _UINT32)),
                            _int(cookie, "cookie", _UINT32), _entry_name(name)))
                if bits & unknown_bits:
                    self._issue(lineno, start, f"event {i}: unknown mask bits {bits & unknown_bits:#x} "
                                "(kept; it becomes an 'unknown' record)")
            except (ValueError, TypeError) as exc:
                self._issue(lineno, start, f"event {i} skipped: {exc}")
        backlog, nbytes = (_int(obj[4], "backlog", _UINT32), _int(obj[5], "bytes read", _UINT32)) \
            if len(obj) > 4 else (None, 0)
        return raw.InotifyBatch(t, drained == 1, events, backlog, nbytes)

    def _fan_batch(self, obj: list[Any], lineno: int, start: int) -> raw.FanotifyBatch:
        t = _t(obj[1])
        drained = obj[2]
        if drained not in (0, 1):
            raise ValueError(f"drained flag must be 0 or 1, got {drained!r}")
        events: list[raw.FanotifyEvent] = []
        for i, ev in enumerate(_list(obj[3])):
            try:
                event = fan_event_from_json(ev)
            except (ValueError, TypeError) as exc:
                self._issue(lineno, start, f"event {i} skipped: {exc}")
                continue
            events.append(event)
            if event[0] & ~_FAN_KNOWN_BITS:
                self._issue(lineno, start, f"event {i}: unknown mask bits {event[0] & ~_FAN_KNOWN_BITS:#x} "
                            "(kept; it becomes an 'unknown' record)")
        backlog = _int(obj[4], "backlog", _UINT32) if len(obj) > 4 else None
        return raw.FanotifyBatch(t, drained == 1, events, backlog)


def _entry_name(value: Any) -> bytes:
    """A directory entry name as the kernel can give one: no '/', no NUL, not '.' or '..' (b"" is the watched
    directory itself)."""
    name = decode_name(value)
    if b"/" in name or b"\0" in name or name in (b".", b".."):
        raise ValueError(f"impossible entry name {name!r} (no kernel reports one)")
    return name


def _fsid(value: Any) -> bytes:
    if not isinstance(value, str) or len(value) != 16:
        raise ValueError(f"fsid must be 16 hex digits, got {value!r}")
    return bytes.fromhex(value)


def _handle(value: Any) -> bytes:
    if not isinstance(value, str) or len(value) > 2 * _MAX_HANDLE:
        raise ValueError(f"handle must be at most {2 * _MAX_HANDLE} hex digits, got {value!r}")
    return bytes.fromhex(value)


def fan_event_from_json(ev: Any) -> raw.FanotifyEvent:
    """Inverse of :func:`fan_event_to_json`; ValueError (or TypeError) for anything malformed."""
    mask, pid, infos = ev
    mask = _int(mask, "mask", _UINT64)
    pid = _int(pid, "pid", _INT32)
    d: bytes | None = None
    d2: bytes | None = None
    obj: bytes | None = None
    nm = nm2 = b""
    extra: list[tuple[int, bytes]] = []
    for info in _list(infos):
        info_type = _int(_list(info)[0], "info type", (0, 255))
        if len(info) == 2:  # kept raw: a type fsnorm does not decode (or a second record of a decoded type)
            if not isinstance(info[1], str):
                raise ValueError(f"raw info record of type {info_type} must be [type, body_hex]")
            extra.append((info_type, bytes.fromhex(info[1])))
            continue
        if len(info) != 5 or info_type not in _FID_INFO:
            raise ValueError(f"info record of type {info_type} must be [type, body_hex] or, for a file-id "
                             "record, [type, fsid_hex, handle_type, handle_hex, name]")
        fid = raw.fid_pack(_fsid(info[1]), _int(info[2], "handle_type", _INT32), _handle(info[3]))
        name = b""
        if info_type in _NAMED_INFO:
            name = decode_name(info[4])
            if not name or b"\0" in name or b"/" in name:
                raise ValueError(f"bad entry name {name!r}")
        elif info[4] is not None:
            raise ValueError(f"a record of type {info_type} has no name")
        if info_type == _INFO_FID and obj is None:
            obj = fid
        elif info_type == _INFO_NEW_DFID_NAME and d2 is None:
            d2, nm2 = fid, name
        elif info_type not in (_INFO_FID, _INFO_NEW_DFID_NAME) and d is None:
            d, nm = fid, name
        else:
            raise ValueError(f"second file-id record of type {info_type}")
    return (mask, pid, d, nm, d2, nm2, obj, tuple(extra))


#: Item tags that belong to one source kind only.
_SOURCE_TAGS = {"B": "inotify", "W": "inotify", "R": "inotify", "F": "fanotify", "H": "fanotify"}


def _tag_name(obj: Any) -> str:
    names = {"B": "batch", "F": "fanotify batch", "H": "handle", "W": "watch", "R": "unwatch", "T": "tick",
             "N": "notice", "E": "end"}
    if isinstance(obj, list) and obj and isinstance(obj[0], str):
        return names.get(obj[0], repr(obj[0]))
    return "untyped"


def _open_maybe_gzip(source: str | os.PathLike[str] | IO[bytes]) -> IO[bytes]:
    """Open a capture, detecting gzip by its magic bytes (not the file name)."""
    if isinstance(source, str | os.PathLike):
        try:
            f: IO[bytes] = open(source, "rb")  # noqa: SIM115 - returned to the caller, who closes it
        except OSError as exc:
            raise CaptureError(f"cannot open capture {os.fsdecode(source)}: {exc.strerror or exc}") from exc
    else:
        f = source
    buffered = f if isinstance(f, io.BufferedReader) else io.BufferedReader(cast(io.RawIOBase, f))
    if buffered.peek(2)[:2] == _GZIP_MAGIC:
        return cast(IO[bytes], gzip.GzipFile(fileobj=buffered, mode="rb"))
    return cast(IO[bytes], buffered)
