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
from typing import IO, Any, Literal, cast

from . import raw
from .errors import CaptureError

FORMAT_NAME = "fsnorm-capture"
FORMAT_VERSION = 1
#: Versions this reader understands.
SUPPORTED_VERSIONS = frozenset({1})

_GZIP_MAGIC = b"\x1f\x8b"
_INT32 = (-(2**31), 2**31 - 1)
_UINT32 = (0, 2**32 - 1)


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

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "version": self.version,
            "source": self.source,
            "kernel": self.kernel,
            "host": self.host,
            "created": self.created,
            "clock": "CLOCK_MONOTONIC",
            "options": self.options,
            "watches": [[wd, encode_name(path)] for wd, path in self.watches],
        }

    @classmethod
    def from_json(cls, obj: Any) -> CaptureHeader:
        """Validate a parsed header line; ValueError says what is wrong."""
        if not isinstance(obj, dict) or obj.get("format") != FORMAT_NAME:
            raise ValueError(f"not an fsnorm capture (the first line must be a {FORMAT_NAME!r} header)")
        version = obj.get("version")
        if version not in SUPPORTED_VERSIONS:
            raise ValueError(
                f"capture format version {version!r} is not supported by this fsnorm "
                f"(it reads version {', '.join(map(str, sorted(SUPPORTED_VERSIONS)))}); upgrade fsnorm"
            )
        source = obj.get("source")
        if source not in ("inotify", "fanotify"):
            raise ValueError(f"unknown source kind {source!r}")
        options = obj.get("options", {})
        if not isinstance(options, dict):
            raise ValueError("header 'options' must be an object")
        watches = [(_int(w[0], "wd", _INT32), decode_name(w[1])) for w in _list(obj.get("watches", []))]
        return cls(
            source=source,
            version=version,
            kernel=str(obj.get("kernel", "")),
            host=str(obj.get("host", "")),
            created=str(obj.get("created", "")),
            options=options,
            watches=watches,
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

    def write(self, item: raw.StreamItem) -> None:
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


def item_to_json(item: raw.StreamItem) -> list[Any]:
    """The JSON array for one stream item (see docs/capture-format.md)."""
    if isinstance(item, raw.InotifyBatch):
        return ["B", item.t_ns, 1 if item.drained else 0,
                [[wd, mask, cookie, encode_name(name)] for wd, mask, cookie, name in item.events]]
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
_NOTICE_KINDS = frozenset({"create", "delete", "modify", "attrib", "error", "watch_end", "overflow", "unknown"})


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
        self.name = source if isinstance(source, str) else getattr(source, "name", "<stream>")
        self.header = self._read_header()

    def close(self) -> None:
        self._stream.close()

    def __enter__(self) -> CaptureReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read_header(self) -> CaptureHeader:
        try:
            line = self._stream.readline()
        except (OSError, EOFError) as exc:
            raise CaptureError(f"cannot read the header: {exc}", line=1, offset=0) from exc
        self._offset = len(line)
        self._lineno = 1
        if not line:
            raise CaptureError("empty file: no capture header", line=1, offset=0)
        try:
            return CaptureHeader.from_json(json.loads(line))
        except (ValueError, TypeError, IndexError, KeyError) as exc:
            raise CaptureError(f"bad capture header: {exc}", line=1, offset=0) from exc

    def _issue(self, line: int, offset: int, message: str) -> None:
        issue = CaptureIssue(line, offset, message)
        if self.strict:
            raise CaptureError(message, line=line, offset=offset)
        self.issues.append(issue)
        if self.on_issue is not None:
            self.on_issue(issue)

    def __iter__(self) -> Iterator[raw.StreamItem]:
        lineno, offset = self._lineno, self._offset
        last_t = 0
        while True:
            try:
                line = self._stream.readline()
            except (OSError, EOFError, gzip.BadGzipFile) as exc:
                self._issue(lineno + 1, offset, f"the compressed stream is truncated or corrupt ({exc}); "
                            "everything before this point was read")
                return
            if not line:
                break
            lineno += 1
            start, offset = offset, offset + len(line)
            if not line.endswith(b"\n"):
                self._issue(lineno, start, "truncated last line (the writer stopped mid-line); ignored")
                break
            if self.ended_cleanly:
                self._issue(lineno, start, "data after the end marker; ignored")
                continue
            try:
                obj = json.loads(line)
            except (ValueError, UnicodeDecodeError) as exc:
                self._issue(lineno, start, f"corrupt line, not JSON ({exc}); skipped")
                continue
            try:
                item = self._item(obj, lineno, start)
            except (ValueError, TypeError, IndexError, KeyError) as exc:
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

    def _item(self, obj: Any, lineno: int, start: int) -> raw.StreamItem | None:
        if not isinstance(obj, list) or not obj or not isinstance(obj[0], str):
            raise ValueError("a line must be a JSON array starting with a type tag")
        tag = obj[0]
        if tag == "B":
            return self._batch(obj, lineno, start)
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
        known = raw.IN_DELIVERED_BITS
        for i, ev in enumerate(_list(obj[3])):
            try:
                wd, mask, cookie, name = ev
                if (type(wd) is int and type(mask) is int and type(cookie) is int and type(name) is str
                        and -1 <= wd <= _INT32[1] and 0 <= mask <= _UINT32[1] and 0 <= cookie <= _UINT32[1]):
                    append((wd, mask, cookie, name.encode("utf-8", "surrogateescape")))
                else:
                    append((_int(wd, "wd", _INT32), _int(mask, "mask", _UINT32), _int(cookie, "cookie", _UINT32),
                            decode_name(name)))
                if mask & ~known:
                    self._issue(lineno, start, f"event {i}: unknown mask bits {mask & ~known:#x} "
                                "(kept; it becomes an 'unknown' record)")
            except (ValueError, TypeError) as exc:
                self._issue(lineno, start, f"event {i} skipped: {exc}")
        return raw.InotifyBatch(t, drained == 1, events)


def _tag_name(obj: Any) -> str:
    names = {"B": "batch", "W": "watch", "R": "unwatch", "T": "tick", "N": "notice", "E": "end"}
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
