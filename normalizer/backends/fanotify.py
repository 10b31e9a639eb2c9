"""The live fanotify source: one fanotify group for the whole tree, read directly, records out.

The interface is :class:`~normalizer.backends.inotify.InotifySource`'s (``open`` / ``read`` / ``close`` /
``wake`` / ``fileno`` / ``stats`` / ``normalizer``); it owns the I/O the sans-IO
:class:`~normalizer.core.fanotify.FanotifyNormalizer` must not do:

* **Marks.** ``mark_mode="filesystem"`` puts one filesystem mark on each filesystem the watched roots (and
  any mount below them) live on, and lets the normalizer keep only what happens inside the roots: both sides
  of every rename are reported, nothing has to be marked as the tree grows. It needs CAP_SYS_ADMIN (the mark)
  and CAP_DAC_READ_SEARCH (``open_by_handle_at``, to resolve directories it has not seen). ``"inode"`` marks
  every directory of the tree, like inotify's watches, and works unprivileged (Linux 5.13+); a rename side
  outside the tree is omitted by the kernel. ``"auto"`` (default) takes ``"filesystem"`` when the process has
  both capabilities, else ``"inode"``.
* **The group**: ``FAN_REPORT_DFID_NAME_TARGET`` (directory handle + name, and the object's own handle), the
  default queue (``fs.fanotify.max_queued_events`` at init), FAN_RENAME + create, delete, attrib, modify,
  close_write, delete_self, move_self, with FAN_ONDIR (and FAN_EVENT_ON_CHILD for inode marks). With
  ``use_rename=False`` MOVED_FROM / MOVED_TO replace FAN_RENAME and are joined by the matcher.
* **Reading**: one ``readv`` into a reused buffer, parsed by :func:`parse_batch` (info records placed by
  type), with the read's monotonic time and whether the queue was empty after it (FIONREAD == 0: fanotify
  counts 24 bytes per queued event).
* **Handles**: every directory handle of a batch the normalizer does not know comes back from feeding it as a
  ``Resolve`` action (the batch is held meanwhile); it is resolved with ``open_by_handle_at``
  (:class:`~normalizer.backends._fanotify_sys.HandleResolver`) and fed (and captured, after the batch) as a
  ``HandleResolved`` item, so replay needs no I/O. The walk of the tree feeds one per directory.
* **The tree**: directories that appear get marks (inode mode) and are scanned, what the scan finds is reported
  as ``synthesized`` creates; with a filesystem mark only directories moved in from outside need the scan.
  Marks of directories that left the tree are removed when the process can (``open_by_handle_at``);
  otherwise they stay until the directory is deleted (their events are dropped by the normalizer).
* **The capture** gets every item; the capture file itself gets an ignore mark (its own writes would
  otherwise be events, read, captured, written: a loop under a filesystem mark).

Errors: a root that cannot be watched, a kernel without fanotify / FAN_REPORT_TARGET_FID (5.17+), or a missing
capability raise :class:`~normalizer.errors.SourceError` / :class:`~normalizer.errors.CapabilityError` (naming
the capability) from :meth:`FanotifySource.open`; a directory that cannot be marked becomes an ``error``
record and watching goes on.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import select
import struct
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal, Unpack

from .._compiled import PURE_ENV
from ..capture.log import CaptureHeader
from ..core import fanotify_abi as abi
from ..core import raw
from ..core.actions import Rescan, Resolve, Watch
from ..core.fanotify import FanotifyNormalizer, MarkMode
from ..core.filters import PathFilter, reported_kinds
from ..core.matcher import MatcherSettings
from ..core.tree import join
from ..errors import CapabilityError, FsnormError, SourceError, WatchLimitError
from ..records import Rec
from . import _fanotify_sys as fs
from .base import LiveSource, PathArg, matcher_settings
from .priority import DEFAULT_BOOST
from .sched import DEFAULT_SLICE_US

#: The events fsnorm subscribes to with FAN_RENAME (MOVED_FROM / MOVED_TO would only repeat it).
DEFAULT_FANOTIFY_MASK = (
    abi.FAN_RENAME
    | abi.FAN_CREATE
    | abi.FAN_DELETE
    | abi.FAN_ATTRIB
    | abi.FAN_MODIFY
    | abi.FAN_CLOSE_WRITE
    | abi.FAN_DELETE_SELF
    | abi.FAN_MOVE_SELF
    | abi.FAN_ONDIR
)
#: The same without FAN_RENAME: the rename halves instead.
NO_RENAME_MASK = (DEFAULT_FANOTIFY_MASK & ~abi.FAN_RENAME) | abi.FAN_MOVED_FROM | abi.FAN_MOVED_TO
#: Bits the cache upkeep needs whatever the user asked for (and the rename bits: FAN_RENAME, or without it
#: MOVED_FROM / MOVED_TO). ``mask`` only filters what is reported (as inotify's ``--events``).
_REQUIRED = abi.FAN_CREATE | abi.FAN_DELETE_SELF | abi.FAN_MOVE_SELF | abi.FAN_ONDIR
#: Bits the shadow tree of the rescan needs besides (FAN_RENAME becomes the halves without use_rename).
_SHADOW = abi.FAN_DELETE | abi.FAN_RENAME
#: Events of the capture file that must not be reported (ignore mark).
_CAPTURE_IGNORE = abi.FAN_MODIFY | abi.FAN_CLOSE_WRITE | abi.FAN_ATTRIB
#: The most one read takes: about 600 FAN_RENAME events with two short names (the largest event, two handles and
#: two 255-byte names, is under 1 KiB). Every record of a read waits until the whole read is normalized and
#: written, and without a reader thread (fanotify's default) nothing reads the kernel queue meanwhile. With
#: 256 KiB, a storm's reads held about 2,300 events, up to 26 ms of CPU each and several times that in wall time
#: on a loaded 2-core machine, while the queue filled behind them; 64 KiB gave a median joined-rename p99
#: 1.3-4x lower in alternated storms, and no overflow in 22 where 256 KiB overflowed in 2 of 16 (16 and 128 KiB
#: did worse than 64: benchmarks/README.md, "The storm's tail"). The size only moves where the stream is cut
#: into reads, which the kernel does anyway (a read returns whole events up to the buffer's size).
DEFAULT_READ_SIZE = 64 * 1024
#: The bits of a directory rename (with FAN_ONDIR), either kind of event.
_RENAMES = abi.FAN_RENAME | abi.FAN_MOVED_FROM | abi.FAN_MOVED_TO | abi.FAN_MOVE_SELF

CAP_DAC_READ_SEARCH = 2
CAP_SYS_ADMIN = 21

SourceMarkMode = Literal["auto", "filesystem", "inode"]


# ==========================================================================================================
# Parsing
# ==========================================================================================================

_META = struct.Struct("=IBBHQii").unpack_from
_LITTLE = sys.byteorder == "little"
_EMPTY: tuple[tuple[int, bytes], ...] = ()
#: (info type, info length, handle_bytes) at the start of an info record; 16 bytes (the last 12 are only
#: meaningful for file-id records).
_INFO_HDR = struct.Struct("=BxH8xI").unpack_from


_c_parse: Callable[[bytes], list[raw.FanotifyEvent] | None] | None
try:
    from ._fanparse import parse_fanotify as _c_parse
except ImportError:  # not built (no compiler at install time): the Python fast parser
    _c_parse = None
if os.environ.get(PURE_ENV, "") not in ("", "0"):
    _c_parse = None  # the pure-Python reference path (normalizer._compiled)


def parse_batch(data: bytes) -> list[raw.FanotifyEvent]:
    """A read() buffer as :data:`normalizer.core.raw.FanotifyEvent` tuples, info records placed by type.

    The fast path takes each handle as one slice of the buffer (a fid, see :func:`normalizer.core.raw.fid_pack`):
    in C (``_fanparse.parse_fanotify``, where it was built and ``FSNORM_PURE`` is not set), else
    :func:`_parse_fast`, its reference. Anything it does not expect (a bad length, a missing NUL, a big-endian
    host) hands the buffer to the checked parser :func:`~normalizer.backends._fanotify_sys.parse_events`, which
    raises ValueError naming the offset if the buffer is really corrupt. A later duplicate of a record type
    goes to ``extra``."""
    if _LITTLE and _c_parse is not None:
        events = _c_parse(data)  # None exactly where _parse_fast raises: no point in trying it
        return events if events is not None else _parse_checked(data)
    return parse_batch_py(data)


def parse_batch_py(data: bytes) -> list[raw.FanotifyEvent]:
    """:func:`parse_batch` in Python only (the reference the C parser is held to, tests/test_fanotify_cparse.py)."""
    if _LITTLE:
        try:
            return _parse_fast(data)
        except (ValueError, IndexError, struct.error):
            pass
    return _parse_checked(data)


def _parse_checked(data: bytes) -> list[raw.FanotifyEvent]:
    """The checked parser's events as stream tuples: ValueError naming the offset if ``data`` is corrupt."""
    return [from_fan_event(ev) for ev in fs.parse_events(data)]


def _parse_fast(data: bytes) -> list[raw.FanotifyEvent]:
    # Hot path: one struct call per info header (type, length, handle size), the most common types first, and
    # only the checks that keep it from looping or misplacing bytes; whatever else is odd raises (IndexError,
    # struct.error, or ValueError from bytes.index when a name has no NUL in its record) and parse_batch
    # hands the buffer to the checked parser. 2.2 us per FAN_RENAME event here, the checked parser 8.5.
    out: list[raw.FanotifyEvent] = []
    append = out.append
    meta, hdr = _META, _INFO_HDR
    n = len(data)
    off = 0
    while off < n:
        event_len, vers, _res, meta_len, mask, _fd, pid = meta(data, off)
        end = off + event_len
        if vers != 3 or event_len < 24 or end > n or not 24 <= meta_len <= event_len:
            raise ValueError("odd event header")
        pos = off + meta_len
        d = d2 = obj = None
        nm = nm2 = b""
        extra = _EMPTY
        while pos < end:
            itype, ilen, hb = hdr(data, pos)
            if ilen < 4:
                raise ValueError("odd info length")
            rend = pos + ilen
            hend = pos + 20 + hb
            if itype == 1:  # FID
                if hend > rend or obj is not None:
                    raise ValueError("odd FID record")
                obj = data[pos + 4:hend]
            elif itype == 10 or itype == 2:  # OLD_DFID_NAME, DFID_NAME
                if d is not None:
                    raise ValueError("duplicate directory record")
                d = data[pos + 4:hend]
                nm = data[hend:data.index(b"\0", hend, rend)]
            elif itype == 12:  # NEW_DFID_NAME
                if d2 is not None:
                    raise ValueError("duplicate directory record")
                d2 = data[pos + 4:hend]
                nm2 = data[hend:data.index(b"\0", hend, rend)]
            elif itype == 3:  # DFID
                if hend > rend or d is not None:
                    raise ValueError("odd DFID record")
                d = data[pos + 4:hend]
            else:
                extra = (*extra, (itype, data[pos + 4:rend]))
            pos = rend
        if pos != end:
            raise ValueError("info records overrun the event")
        append((mask, pid, d, nm, d2, nm2, obj, extra))
        off = end
    return out


def from_fan_event(ev: fs.FanEvent) -> raw.FanotifyEvent:
    """The stream tuple of a :class:`~normalizer.backends._fanotify_sys.FanEvent` (the checked parser's
    output): the first record of each type in its slot, the rest in ``extra``."""
    d = d2 = obj = None
    nm = nm2 = b""
    extra: list[tuple[int, bytes]] = []
    for info in ev.infos:
        if isinstance(info, fs.RawInfo):
            extra.append((info.type, info.data))
            continue
        key = raw.fid_pack(info.fsid, info.handle_type, info.handle)
        if info.type == abi.FAN_EVENT_INFO_TYPE_FID and obj is None:
            obj = key
        elif info.type == abi.FAN_EVENT_INFO_TYPE_NEW_DFID_NAME and d2 is None:
            d2, nm2 = key, info.name or b""
        elif info.type != abi.FAN_EVENT_INFO_TYPE_FID and info.type != abi.FAN_EVENT_INFO_TYPE_NEW_DFID_NAME \
                and d is None:
            d, nm = key, info.name or b""
        else:
            # A second record of a type already placed: kept raw (the body as the kernel laid it out).
            body = key + (b"" if info.name is None else info.name + b"\0")
            extra.append((info.type, body))
    return (ev.mask, ev.pid, d, nm, d2, nm2, obj, tuple(extra))


# ==========================================================================================================
# Helpers
# ==========================================================================================================


def _unescape_mountinfo(field: bytes) -> bytes:
    """Undo /proc/self/mountinfo's octal escapes (``\\040`` for a space, ...)."""
    return re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m.group(1), 8)]), field)


def mount_point(path: bytes) -> bytes:
    """The mount point of the mount ``path`` is on (from its mount id and /proc/self/mountinfo); ``path``
    itself when that cannot be had.

    The handle resolver keeps an fd open on a directory of each filesystem; it must not be a watched
    directory (an open fd keeps a deleted directory's inode alive, and the kernel then sends no DELETE_SELF)."""
    try:
        _type, _handle, mount_id = fs.name_to_handle_at(abi.AT_FDCWD, path, abi.AT_SYMLINK_FOLLOW)
        with open("/proc/self/mountinfo", "rb") as f:
            for line in f:
                fields = line.split()
                if len(fields) > 4 and fields[0] == str(mount_id).encode():
                    return _unescape_mountinfo(fields[4])
    except OSError:
        pass
    return path


def effective_capabilities() -> int:
    """The process's effective capability set (``CapEff`` of /proc/self/status); 0 if it cannot be read."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"CapEff:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError, IndexError):
        pass
    return 0


def has_capability(cap: int) -> bool:
    return bool(effective_capabilities() >> cap & 1)


def pick_mark_mode(requested: SourceMarkMode) -> MarkMode:
    """``"auto"`` -> ``"filesystem"`` with CAP_SYS_ADMIN and CAP_DAC_READ_SEARCH, else ``"inode"``.
    ``"filesystem"`` without them raises CapabilityError naming the one missing."""
    if requested == "inode":
        return "inode"
    missing = [name for cap, name in ((CAP_SYS_ADMIN, "CAP_SYS_ADMIN"), (CAP_DAC_READ_SEARCH,
                                                                         "CAP_DAC_READ_SEARCH"))
               if not has_capability(cap)]
    if requested == "auto":
        return "inode" if missing else "filesystem"
    if requested != "filesystem":
        raise SourceError(f"unknown mark mode {requested!r} (use 'auto', 'filesystem' or 'inode')")
    if missing:
        why = {"CAP_SYS_ADMIN": "a filesystem mark needs CAP_SYS_ADMIN",
               "CAP_DAC_READ_SEARCH": "resolving directory handles (open_by_handle_at) needs CAP_DAC_READ_SEARCH"}
        raise CapabilityError(
            f"fanotify mark mode 'filesystem': {why[missing[0]]}; run as root or use mark mode 'inode' "
            "(marks on every directory; works unprivileged on Linux 5.13+)",
            capability=missing[0],
        )
    return "filesystem"


def mask_from_inotify(mask: int, *, use_rename: bool = True) -> int:
    """The fanotify mask for an inotify-style event mask (what ``fsnorm --events`` and the API's ``mask``
    give): the event bits are the same numbers; the rename halves become FAN_RENAME with ``use_rename``."""
    out = mask & 0x00000FFF
    if use_rename and out & (abi.FAN_MOVED_FROM | abi.FAN_MOVED_TO):
        out = (out & ~(abi.FAN_MOVED_FROM | abi.FAN_MOVED_TO)) | abi.FAN_RENAME
    return out | abi.FAN_ONDIR


def unavailable_reason() -> str | None:
    """None if this kernel and process can run the fanotify source (a FAN_REPORT_DFID_NAME_TARGET group can be
    created: Linux 5.17+, and 5.13+ for an unprivileged process); else why not. Used by backend ``"auto"``."""
    try:
        fs.FanotifyFD().close()
    except (OSError, FsnormError) as exc:
        return str(exc)
    return None


# ==========================================================================================================
# The source
# ==========================================================================================================


#: fanotify's default ``read_buffer``: no reader thread. Without one, fanotify already joined 100% of the
#: storm's renames (benchmarks/results/storm-reader.md), while with one, a filesystem mark on a busy
#: filesystem could keep a directory whose place is uncertain from being placed for as long as the activity
#: lasted (its events held back meanwhile; test_truth's ``+noise`` variant failed in CI). Opt in with
#: ``read_buffer=`` / ``--read-buffer``.
FANOTIFY_READ_BUFFER = 0


def _count_events(data: bytes) -> int:
    """How many fanotify events a raw read holds (each starts with its ``u32 event_len``)."""
    n = off = 0
    end = len(data)
    while off + abi.FAN_EVENT_METADATA_LEN <= end:
        length = int.from_bytes(data[off:off + 4], "little")
        if length < abi.FAN_EVENT_METADATA_LEN:
            break  # corrupt: the parser will say so when the chunk is read
        off += length
        n += 1
    return n


class FanotifySource(LiveSource):
    """Watches directory trees with one fanotify group and produces records.

    Use :meth:`open` (or the context manager), then call :meth:`read` in a loop, then :meth:`close`, which
    returns the last records (pending rename halves, if any, flushed as one-sided ``shutdown`` records).
    """

    source_kind = "fanotify"
    normalizer: FanotifyNormalizer

    def __init__(
        self,
        roots: Sequence[PathArg],
        *,
        mask: int | None = None,
        include: Sequence[str | bytes] = (),
        exclude: Sequence[str | bytes] = (),
        capture: str | os.PathLike[str] | None = None,
        mark_mode: SourceMarkMode = "auto",
        use_rename: bool = True,
        rescan: bool = True,
        read_size: int = DEFAULT_READ_SIZE,
        recursive: bool = True,
        missing_ok: bool = False,
        read_buffer: int = FANOTIFY_READ_BUFFER,
        sched_slice_us: int = DEFAULT_SLICE_US,
        priority_boost: int = DEFAULT_BOOST,
        **settings: Unpack[MatcherSettings],
    ) -> None:
        #: False: each directory root with its direct entries only. Inode marks go on the root alone; under a
        #: filesystem mark the records below it are dropped by the roots' filter (normalizer.core.roots).
        self.recursive = recursive
        #: True: a root that does not exist yet is waited for (backends/roots.py).
        self.missing_ok = missing_ok
        if mark_mode not in ("auto", "filesystem", "inode"):
            raise SourceError(f"unknown mark mode {mark_mode!r} (use 'auto', 'filesystem' or 'inode')")
        base = DEFAULT_FANOTIFY_MASK if use_rename else NO_RENAME_MASK
        required = (_REQUIRED | (abi.FAN_RENAME if use_rename else abi.FAN_MOVED_FROM | abi.FAN_MOVED_TO)
                    | (_SHADOW if rescan else 0))
        self.kinds = None if mask is None else reported_kinds(mask, required, fanotify=True)
        super().__init__(roots, path_filter=PathFilter(include, exclude, self.kinds), capture=capture,
                         rescan=rescan, read_buffer=read_buffer, sched_slice_us=sched_slice_us,
                         priority_boost=priority_boost)
        self._root_prefixes = [r if r.endswith(b"/") else r + b"/" for r in self.roots]
        self.mask = (base if mask is None else mask) | required
        self.announce_scans = bool(self.mask & (abi.FAN_OPEN | abi.FAN_ACCESS | abi.FAN_CLOSE_NOWRITE))
        if not use_rename:
            self.mask = (self.mask & ~abi.FAN_RENAME) | abi.FAN_MOVED_FROM | abi.FAN_MOVED_TO
        self.use_rename = use_rename
        self.requested_mark_mode: SourceMarkMode = mark_mode
        self.mark_mode: MarkMode = "inode" if mark_mode == "inode" else "filesystem"  # decided in open()
        self.matcher_settings = matcher_settings(settings)
        self.normalizer = self._make_normalizer()
        self._read_size = read_size
        self._fa: fs.FanotifyFD | None = None
        self._resolver = fs.HandleResolver()
        self._marked_fsids: set[bytes] = set()
        #: Directory fids the current rescan found (renamed ones keep their fid), kept until the outermost
        #: rescan ends (a Rescan it sets off, _rescan, must not forget what the outer walk found), and how
        #: many rescans are running.
        self._rescanned_keys: set[bytes] = set()
        self._rescan_depth = 0
        #: Resolutions of uncertain directories waiting for the next read to confirm them (_place_uncertain).
        self._placements: tuple[list[raw.HandleResolved], int] = ([], 0)
        #: Directories moved in whose path held something else by the time of their walk (moved on by events
        #: still queued): listed where the records put them once the path holds them (_list_moved_on).
        self._moved_on: dict[bytes, None] = {}
        #: Wall time just before the first read since the queue was last seen empty (a Rescan reports files
        #: changed since then as ``modify``: their events were held back), and whether the last read left it
        #: empty.
        self._window_wall = time.time()
        self._drained = True
        #: During a Rescan: mark every directory listed, known or not (one created below an uncertain
        #: directory was never marked; marking again is harmless).
        self._mark_all = False
        #: Besides LiveSource's counters: handles resolved with open_by_handle_at and how many of those
        #: failed. ``normalizer.stats`` has the rest.
        self.stats.update({"resolved": 0, "unresolved": 0})

    def _make_normalizer(self) -> FanotifyNormalizer:
        return FanotifyNormalizer(**self.matcher_settings, use_rename=self.use_rename, mark_mode=self.mark_mode,
                                  path_filter=self.filter,
                                  own_pid=os.getpid())

    @property
    def options(self) -> dict[str, Any]:
        """The session's settings, as the capture header records them (replay uses them)."""
        return {
            **self.matcher_settings,
            "mask": self.mask,
            "kinds": None if self.kinds is None else sorted(self.kinds),
            "roots": [os.fsdecode(r) for r in self.roots],
            "include": self.filter.include,
            "exclude": self.filter.exclude,
            "mark_mode": self.mark_mode,
            "use_rename": self.use_rename,
            "rescan": self.rescan,
            "own_pid": os.getpid(),
            **({} if (scope := self.filter.scope_options()) is None else {"scope": scope}),
        }

    @property
    def _mark_mask(self) -> int:
        return self.mask | abi.FAN_EVENT_ON_CHILD if self.mark_mode == "inode" else self.mask

    def fileno(self) -> int:
        if self._fa is None:
            raise ValueError("source is not open")
        return self._fa.fileno()

    # -- the kernel side (LiveSource hooks) ----------------------------------------------------------------

    def _open_kernel(self) -> list[raw.AnyStreamItem]:
        """Create the group, mark the tree and learn its directories (raises CapabilityError / SourceError
        when watching is impossible)."""
        self.mark_mode = pick_mark_mode(self.requested_mark_mode)
        self.normalizer = self._make_normalizer()
        try:
            self._fa = fs.FanotifyFD()
        except SourceError as exc:
            if isinstance(exc, CapabilityError | WatchLimitError):
                raise
            raise SourceError(f"the fanotify backend needs Linux 5.17+ (FAN_REPORT_TARGET_FID, FAN_RENAME): "
                              f"{exc}") from None
        self._poll.register(self._fa.fileno(), select.POLLIN)
        items: list[raw.AnyStreamItem] = []
        for root in self.roots:
            self._walk(root, synthesize=False, items=items, is_root=True)
        return items

    def _before_capture(self, path: bytes) -> None:
        """Create the capture file and give it its ignore mark before the writer writes anything: under a
        filesystem mark its own writes would otherwise be events, read, captured, written (a loop)."""
        os.close(os.open(path, os.O_CREAT | os.O_RDONLY | os.O_CLOEXEC, 0o644))
        fa = self._fa
        assert fa is not None
        flags = abi.FAN_MARK_ADD | abi.FAN_MARK_IGNORED_MASK | abi.FAN_MARK_IGNORED_SURV_MODIFY
        with contextlib.suppress(OSError, FsnormError):
            fa.mark(path, _CAPTURE_IGNORE, flags)

    def _capture_header(self) -> CaptureHeader:
        return CaptureHeader(source="fanotify", options=self.options)

    def _queued(self) -> int:
        """Events not consumed yet: in the kernel queue, then in the reader thread's buffer, counted exactly by
        walking the events' lengths. Exact because ``_place_uncertain`` vouches for an answer only when the
        next read holds at least this many events: an upper bound (bytes // 24) kept that from ever holding
        while the thread buffered under steady noise, so an uncertain directory was never placed. Kernel
        first: an event the thread moves in between is counted twice (the answer waits once more), never
        missed. Called only at close and while a directory is uncertain, so the walk is off the hot path."""
        if self._fa is None or self._fa.closed:
            return 0
        kernel = self._fa.pending_events()
        if self._reader is None or not self._reader.buffered:
            return kernel
        return kernel + sum(_count_events(data) for data in self._reader.buffered_data())

    def _close_kernel(self) -> None:
        if self._fa is not None:
            self._fa.close()
            if not self.closed:  # a failed open: the source may be opened again
                self._fa = None
                self._marked_fsids.clear()
                self._poll = select.poll()
        self._resolver.close()

    def _read_once(self) -> list[Rec] | None:
        chunk = self._next_chunk()  # from the reader thread's buffer, or a direct read (LiveSource)
        if chunk is None:
            return None
        t, before_read, backlog, data = chunk
        backlog //= abi.FAN_EVENT_METADATA_LEN  # FIONREAD counts 24 bytes per queued event
        if self._drained:
            self._window_wall = before_read
        self._drained = backlog == 0
        try:
            events = parse_batch(data)
        except ValueError as exc:
            raise SourceError(f"corrupt fanotify event buffer: {exc}") from exc
        self._last_consumed = len(events)
        self.stats["reads"] += 1
        self.stats["events"] += len(events)
        out: list[Rec] = []
        overflows = self.stats["overflows"]
        placed, queued = self._placements
        self._placements = ([], 0)
        ahead = events[:queued] if placed else []
        if placed and len(ahead) < queued:
            ahead = ahead + self._buffered_events(queued - len(ahead))
        if placed and len(ahead) >= queued and \
                not any((ev[0] & _RENAMES and ev[0] & abi.FAN_ONDIR) or ev[0] & abi.FAN_Q_OVERFLOW
                        for ev in ahead) and not self._below(placed, ahead) \
                and not self._below(placed, events[queued:]):
            # Resolved after the last batch, and none of the events queued before that moved a directory:
            # the answer holds from the resolution on (see _place_uncertain). Not if they hold an overflow: a
            # rename lost in it may have moved the directory after the events before it (the rescan places
            # it). Nor if any event of this read, or queued before the resolution, happened in (or to) such a
            # directory: its listing, made now, would come after them, and they would then describe entries
            # the records never had (corpus fanotify-0a393fc7c17f); those queued before the last read may
            # also precede a rename of it that the kernel merged into an event that read delivered, and the
            # answer's path was not true for them (tests/data/fanotify-away-noise.fsncap.gz). It stays
            # uncertain through this batch (its events held back) and is placed after it.
            self.stats["placed_later"] = self.stats.get("placed_later", 0) + 1
            out.extend(self._feed_all(placed))
        # Handles the batch names that the normalizer never saw come back as Resolve actions, answered
        # (and captured) after the batch, which is then processed (capture format version 3).
        out.extend(self._feed(raw.FanotifyBatch(t, backlog == 0, events, backlog)))
        out.extend(self._place_uncertain())
        if self._moved_on and (self._drained or not events or not events[-1][0] & _RENAMES):
            # (Not right after a rename: the second rename of an exchange may open the next read, and the
            # listing's records would split the two.)
            out.extend(self._list_moved_on())
        out.extend(self._recover(overflows, before_read))
        return out

    def _buffered_events(self, wanted: int) -> list[raw.FanotifyEvent]:
        """Up to ``wanted`` events from the reader thread's buffer, after the chunk being read, without taking
        them: the rest of the events a deferred placement must vouch for (_place_uncertain). With the thread,
        a read takes one chunk, and the events queued at the resolution span several: without looking ahead,
        steady activity (a busy filesystem under a filesystem mark) kept the answer from ever being fed.
        Empty without a thread, or if a chunk does not parse (the read of it will say so)."""
        if self._reader is None or wanted <= 0:
            return []
        out: list[raw.FanotifyEvent] = []
        for data in self._reader.buffered_data():
            try:
                out.extend(parse_batch(data))
            except ValueError:
                return []
            if len(out) >= wanted:
                break
        return out[:wanted]

    def _read_queued(self) -> list[Rec]:
        """At close: what was queued, then every directory still uncertain placed where it is now and its
        subtree rescanned, even if the queue never stood still long enough to confirm it (a filesystem mark
        on a busy filesystem): the last records then describe the tree as it is at the stop, instead of
        leaving what was held back below it untold."""
        out = super()._read_queued()
        out.extend(self._place_uncertain(final=True))
        return out

    def _below(self, placed: list[raw.HandleResolved], events: list[raw.FanotifyEvent]) -> bool:
        """True if one of ``events`` happened in, or below, or to one of the directories ``placed`` answers
        for (by the normalizer's cache), or names the place it has in the records or the answer's (its
        parent's handle and its name): the placement's rename record goes before the events, and one of them
        may have used that name before the directory took it."""
        cache = self.normalizer.cache
        keys = {item.fid for item in placed}
        prefixes = cache.prefix_by_key
        tops = [p for key in keys if (p := prefixes.get(key)) is not None]
        names: set[tuple[bytes | None, bytes]] = set()
        for path in [*(top[:-1] for top in tops), *(item.path for item in placed if item.path)]:
            parent, _, name = path.rpartition(b"/")
            if name:
                names.add((cache.key(parent or b"/"), name))
        for _mask, _pid, d, nm, d2, nm2, obj, _ in events:
            if obj in keys or d in keys or d2 in keys or (d, nm) in names or (d2, nm2) in names:
                return True
            for key in (d, d2):
                p = None if key is None else prefixes.get(key)
                if p is not None and any(p.startswith(top) for top in tops):
                    return True
        return False

    def _place_uncertain(self, *, final: bool = False) -> list[Rec]:
        """Resolve the directories whose place the normalizer could not follow (renamed back and forth in
        merged events, FanotifyNormalizer's module docstring). An answer must be where the directory was at the
        last event read: it is fed now if the queue is still empty after the resolution (nothing happened
        since that read). Else the number of events queued then is kept, and the answer is fed before the next
        read if that read holds at least that many and none of those moved a directory or is an overflow: the
        directory stood still from the last read to the resolution, and through all those events (a rename
        merged into one of them would be a directory rename among them; one lost in an overflow is not seen
        at all, and the overflow's rescan places the directory instead)."""
        keys = self.normalizer.uncertain_dirs()
        if not keys:
            return []
        fa = self._fa
        assert fa is not None
        items = [self._resolve(key) for key in keys]
        queued = self._queued()  # the kernel's queue and the reader's buffer
        if queued and not final:
            self._placements = (items, queued)
            return []
        self.stats["placed"] = self.stats.get("placed", 0) + 1
        return self._feed_all(items)

    # -- handles -------------------------------------------------------------------------------------------

    def _inside(self, path: bytes) -> bool:
        """True if ``path`` is a directory of the watched tree (under a root, no excluded directory on the
        way down from it)."""
        for root, prefix in zip(self.roots, self._root_prefixes, strict=True):
            if path == root:
                return True
            if path.startswith(prefix):
                if self.filter.active:
                    parts = path[len(prefix):].split(b"/")
                    cur = root
                    for part in parts:
                        cur = join(cur, part)
                        if self.filter.excluded(cur):
                            return False
                return True
        return False

    def _answer(self, action: Resolve) -> raw.AnyStreamItem:
        return self._resolve(action.key)

    def _resolve(self, key: bytes) -> raw.HandleResolved:
        fsid, handle_type, handle = raw.fid_unpack(key)
        res = self._resolver.lookup(fsid, handle_type, handle)
        t = time.monotonic_ns()
        if res.status is fs.ResolveStatus.OK and res.path is not None:
            self.stats["resolved"] += 1
            if self._inside(res.path):
                return raw.HandleResolved(t, fsid, handle_type, handle, res.path, "ok")
            return raw.HandleResolved(t, fsid, handle_type, handle, None, "outside")
        self.stats["unresolved"] += 1
        return raw.HandleResolved(t, fsid, handle_type, handle, None, res.status.value)

    # -- keeping the marks in step with the tree -----------------------------------------------------------

    def _unwatch(self, key: int | bytes) -> None:
        # A filesystem mark has no per-directory mark to remove: the retired fid's events are dropped.
        if self.mark_mode == "inode":
            assert isinstance(key, bytes)
            self._unmark(key)

    def _watch_new(self, action: Watch, items: list[raw.AnyStreamItem]) -> None:
        if self.mark_mode == "filesystem" and not action.moved_in:
            return  # created empty under the filesystem mark: the kernel reports all it will hold
        if action.moved_in:
            key = self.normalizer.cache.key(action.path)
            if key is not None and not self._holds(action.path, key):
                # Moved on (an exchange, a rename) by events not read yet: listed where those put it, so that
                # its content comes under the path the records give it (corpus fanotify-23a6add877d1).
                self._moved_on[key] = None
                return
        self._walk(action.path, synthesize=True, items=items, is_root=False)

    def _holds(self, path: bytes, key: bytes) -> bool:
        """True if the directory at ``path`` is the one with handle ``key`` now."""
        try:
            handle_type, handle, _mnt = fs.name_to_handle_at(abi.AT_FDCWD, path, 0)
            return raw.fid_pack(fs.fsid_of(path), handle_type, handle) == key
        except (OSError, FsnormError):
            return False

    def _list_moved_on(self) -> list[Rec]:
        """After a read (not ending with a rename): walk each directory of ``_moved_on`` whose path in the
        records holds it again; forget those that left the tree or were deleted, and, once the queue was seen
        empty, those still elsewhere (then nothing more can tell where they are)."""
        out: list[Rec] = []
        for key in list(self._moved_on):
            path = self.normalizer.cache.path(key)
            if path is not None and self._holds(path, key):
                del self._moved_on[key]
                items: list[raw.AnyStreamItem] = []
                self._walk(path, synthesize=True, items=items, is_root=False)
                out.extend(self._feed_all(items))
            elif path is None or self._drained:
                del self._moved_on[key]
        return out

    def _unmark(self, key: bytes) -> None:
        """Remove the inode mark of a directory that left the tree, when ``open_by_handle_at`` is allowed."""
        fa = self._fa
        assert fa is not None
        fsid, handle_type, handle = raw.fid_unpack(key)
        mount_fd = self._resolver.mount_fd(fsid)
        if mount_fd is None:
            return
        with contextlib.suppress(OSError, FsnormError):
            dfd = fs.open_by_handle_at(mount_fd, handle_type, handle, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                fs.fanotify_mark(fa.fileno(), abi.FAN_MARK_REMOVE, self._mark_mask, dfd, None)
            finally:
                os.close(dfd)

    def _register_mount(self, path: bytes, fsid: bytes) -> None:
        """A mount fd for ``fsid`` (``open_by_handle_at`` needs one): its mount point if that is on the same
        filesystem, else ``path`` itself."""
        top = mount_point(path)
        try:
            if fs.fsid_of(top) == fsid:
                self._resolver.register_mount(top)
                return
        except OSError:
            pass
        self._resolver.register_mount(path)

    def _mark_filesystem(self, path: bytes, fsid: bytes) -> None:
        fa = self._fa
        assert fa is not None
        fa.mark(path, self.mask, abi.FAN_MARK_ADD | abi.FAN_MARK_FILESYSTEM)
        self._marked_fsids.add(fsid)

    def _walk(self, top: bytes, *, synthesize: bool, items: list[raw.AnyStreamItem], is_root: bool) -> None:
        """Mark (inode mode) and learn ``top`` and every directory below it; list what each contains (after
        its mark exists). Appends HandleResolved items, synthesized creates (if ``synthesize``) and error
        notices to ``items``."""
        stack = [top]
        uncertain = set(self.normalizer.uncertain_dirs())
        while stack:
            path = stack.pop()
            is_top = is_root and path == top
            if self.filter.excluded(path) and not is_top:
                continue
            fid = self._learn_dir(path, is_top=is_top, items=items, mark=self.mark_mode == "inode")
            if fid is None:
                continue
            if uncertain and raw.fid_pack(*fid) in uncertain:
                continue  # placed (and its subtree rescanned) once the queue was seen empty, not by this walk
            items.append(raw.HandleResolved(time.monotonic_ns(), *fid, path, "ok"))
            children = self._scan(path, synthesize=synthesize, items=items)
            if children is not None:
                recursive_at = self.scope.recursive_at
                stack.extend(child for child, is_dir in reversed(children) if is_dir and recursive_at(child))

    def _learn_dir(self, path: bytes, *, is_top: bool, items: list[raw.AnyStreamItem],
                   mark: bool) -> tuple[bytes, int, bytes] | None:
        """Mark ``path`` (inode mode, with ``mark``), get its handle, and make sure its filesystem has a mount
        fd for the resolver (and, filesystem mode, a mark). Returns (fsid, handle type, handle), or None with
        an ``error`` notice in ``items`` (raises for a root ``is_top``) if it cannot be watched."""
        fa = self._fa
        assert fa is not None
        try:
            if mark:
                flags = abi.FAN_MARK_ADD | abi.FAN_MARK_ONLYDIR
                fa.mark(path, self._mark_mask, flags if is_top else flags | abi.FAN_MARK_DONT_FOLLOW)
            handle_type, handle, _mnt = fs.name_to_handle_at(abi.AT_FDCWD, path,
                                                             abi.AT_SYMLINK_FOLLOW if is_top else 0)
            fsid = fs.fsid_of(path)
            if fsid not in self._resolver.fsids:
                self._register_mount(path, fsid)
            if self.mark_mode == "filesystem" and fsid not in self._marked_fsids:
                self._mark_filesystem(path, fsid)
        except (FileNotFoundError, NotADirectoryError):
            if is_top:
                raise SourceError(f"cannot watch {os.fsdecode(path)}: no such directory") from None
            return None  # gone already: its parent's events tell the story
        except PermissionError as exc:
            if is_top:
                raise SourceError(f"cannot watch {os.fsdecode(path)}: permission denied") from exc
            self._error(items, path, "permission denied: this directory and everything below it is "
                        "not watched")
            return None
        except FsnormError as exc:
            if is_top:
                raise
            self._error(items, path, f"not watched: {exc}")
            return None
        except OSError as exc:
            if is_top:
                raise SourceError(f"cannot watch {os.fsdecode(path)}: {exc.strerror or exc}") from exc
            if exc.errno in (errno.EOPNOTSUPP, errno.EOVERFLOW):
                self._error(items, path, "not watched: its filesystem cannot encode file handles")
            else:  # ENAMETOOLONG, ELOOP, ...: this directory and everything below it is not watched
                self._error(items, path, f"not watched: {exc.strerror or exc}")
            return None
        return fsid, handle_type, handle

    # -- roots added and removed while running (backends/roots.py) -----------------------------------------

    def _roots_changed(self, top: bytes, *, added: bool) -> None:
        super()._roots_changed(top, added=added)
        self._root_prefixes = [r if r.endswith(b"/") else r + b"/" for r in self.roots]

    def _watch_top(self, top: bytes, *, synthesize: bool, items: list[raw.AnyStreamItem]) -> None:
        self._walk(top, synthesize=synthesize, items=items, is_root=True)

    def _forget_unneeded(self, items: list[raw.AnyStreamItem]) -> None:
        """Directories no root needs: told to the normalizer as ``outside`` (what is still queued for them is
        dropped), their inode marks removed where that is allowed (as for a directory that left the tree)."""
        t = time.monotonic_ns()
        for key, path in self.normalizer.cache.items():
            if self.scope.needed(path):
                continue
            fsid, handle_type, handle = raw.fid_unpack(key)
            items.append(raw.HandleResolved(t, fsid, handle_type, handle, None, "outside"))
            if self.mark_mode == "inode":
                self._unmark(key)

    # -- the rescan after an overflow (the walk and the diff are LiveSource._rescan) ------------------------

    def _rescan_dir(self, path: bytes, items: list[raw.AnyStreamItem]) -> bool:
        """Learn the handle of a directory the walk found. Unlike inotify (where adding a watch *is* the
        lookup), the handle comes first: a directory the cache knows under that handle at this path needs
        nothing; one it knows elsewhere was renamed during the overflow (the HandleResolved moves it; its
        inode mark is still there); an unknown one appeared, and with inode marks it must be marked. Under a
        filesystem mark nothing is marked (only a filesystem not marked yet, mounted in meanwhile)."""
        try:
            handle_type, handle, _mnt = fs.name_to_handle_at(abi.AT_FDCWD, path, 0)
            key: bytes | None = raw.fid_pack(fs.fsid_of(path), handle_type, handle)
        except OSError:
            key = None  # _learn_dir says why, below
        known = None if key is None else self.normalizer.cache.path(key)
        if key is not None and known == path and not (self._mark_all and self.mark_mode == "inode"):
            self._rescanned_keys.add(key)
            return True
        mark = self.mark_mode == "inode" and (known is None or self._mark_all)
        fid = self._learn_dir(path, is_top=False, items=items, mark=mark)
        if fid is None:
            return False
        self._rescanned_keys.add(raw.fid_pack(*fid))
        items.append(raw.HandleResolved(time.monotonic_ns(), *fid, path, "ok"))
        return True

    def _rescan(self, since_wall: float, tops: Sequence[bytes] | None = None,
                why: str = "rescan after overflow") -> list[Rec]:
        """LiveSource's rescan. The directories its walk found stay known as found until the outermost one
        ends: learning a directory whose place was uncertain sets off a Rescan of its subtree *while* the
        outer rescan feeds its walk's items, and that Rescan must not forget (and, inode marks, unmark) a
        directory that left the subtree during an overflow and that the outer walk found elsewhere."""
        self._rescan_depth += 1
        try:
            return super()._rescan(since_wall, tops, why)
        finally:
            self._rescan_depth -= 1
            if not self._rescan_depth:
                self._rescanned_keys.clear()

    def _rescan_below(self, action: Rescan) -> list[Rec]:
        """Carry out ``Rescan`` (a directory whose place was uncertain, placed again): with a shadow, the
        overflow's rescan restricted to that subtree (every directory in it marked, inode mode); without one,
        the subtree is only marked and learned (the ``rescan`` record already told the consumer)."""
        self._mark_all = True
        try:
            if self._shadow is not None:
                return self._rescan(min(self._window_wall, self._last_read_wall), (action.path,), action.why)
            items: list[raw.AnyStreamItem] = []
            self._walk(action.path, synthesize=False, items=items, is_root=False)
            return self._feed_all(items)
        finally:
            self._mark_all = False

    def _rescan_forget(self, gone: Callable[[bytes], bool], items: list[raw.AnyStreamItem]) -> None:
        """Directories the cache holds at a path the walk did not find (and not found elsewhere): deleted or
        moved out during the overflow. They are told to the normalizer as ``outside`` (their later events are
        dropped; there is no telling the two apart without I/O, and none is needed), and with inode marks
        their marks are removed where that is allowed (as when a directory leaves the tree normally)."""
        t = time.monotonic_ns()
        for key, path in self.normalizer.cache.items():
            if not gone(path) or key in self._rescanned_keys:
                continue
            fsid, handle_type, handle = raw.fid_unpack(key)
            items.append(raw.HandleResolved(t, fsid, handle_type, handle, None, "outside"))
            if self.mark_mode == "inode":
                self._unmark(key)
