"""Low-level fanotify binding: ctypes over libc, the event parser, and directory-handle resolution.

Nothing here knows about records or matching; it turns the kernel ABI into small Python values:

* :class:`FanotifyFD` owns one fanotify group (``fanotify_init``), adds marks (``fanotify_mark``) and reads
  raw event batches. Kernel errors become the typed errors of :mod:`normalizer.errors` (see ``_init_error``
  and ``_mark_error`` for the mapping).
* :func:`parse_events` is a pure function from a read() buffer to :class:`FanEvent` values; it checks every
  length, so a corrupt buffer raises :class:`ValueError` naming the offset and can never loop.
* :class:`HandleResolver` turns a directory handle (fsid + ``struct file_handle``) back into the directory's
  *current* path with ``open_by_handle_at()`` + ``readlink(/proc/self/fd/N)``.

ABI reference: include/uapi/linux/fanotify.h, fanotify(7), fanotify_init(2), fanotify_mark(2),
open_by_handle_at(2). Layouts are native-endian; the structs below are packed by hand with :mod:`struct`.

Measured on Linux 6.18 (see tests/test_fanotify_sys.py for the tests that pin these down):

* ``FIONREAD`` works on a fanotify fd, but it counts ``FAN_EVENT_METADATA_LEN`` (24 bytes) per queued event,
  not the real event length with its info records. :meth:`FanotifyFD.pending_bytes` therefore is "24 x number
  of queued events": non-zero exactly when a read would return something, and ``// 24`` is the event count.
* The fsid in an event is ``statfs().f_fsid`` of the object's filesystem (the kernel calls ``vfs_get_fsid``),
  so :meth:`HandleResolver.register_mount` takes the raw 8 bytes from ``fstatfs()`` on the mount fd itself
  and compares bytes with bytes. (``os.statvfs().f_fsid`` holds the same value folded into one integer by
  libc; it matched on glibc x86_64, but the folding is libc's choice, so it is not relied on.)
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import enum
import errno
import fcntl
import os
import select
import struct
import sys
import termios
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias

from normalizer.errors import CapabilityError, SourceError, WatchLimitError
from normalizer.sources._fd import OwnedFD

__all__ = [
    "AT_EMPTY_PATH",
    "AT_FDCWD",
    "AT_HANDLE_FID",
    "AT_SYMLINK_FOLLOW",
    "DEFAULT_INIT_FLAGS",
    "FANOTIFY_METADATA_VERSION",
    "FAN_EVENT_METADATA_LEN",
    "MAX_HANDLE_SZ",
    "FanEvent",
    "FanInfo",
    "FanotifyFD",
    "HandleKey",
    "HandleResolver",
    "RawInfo",
    "Resolution",
    "ResolveStatus",
    "describe_init_flags",
    "describe_mark_flags",
    "describe_mask",
    "fanotify_init",
    "fanotify_mark",
    "fsid_of",
    "name_to_handle_at",
    "open_by_handle_at",
    "parse_events",
    "path_handle_key",
]

# --- event bits (include/uapi/linux/fanotify.h) ----------------------------------------------------------
FAN_ACCESS = 0x00000001
FAN_MODIFY = 0x00000002
FAN_ATTRIB = 0x00000004
FAN_CLOSE_WRITE = 0x00000008
FAN_CLOSE_NOWRITE = 0x00000010
FAN_OPEN = 0x00000020
FAN_MOVED_FROM = 0x00000040
FAN_MOVED_TO = 0x00000080
FAN_CREATE = 0x00000100
FAN_DELETE = 0x00000200
FAN_DELETE_SELF = 0x00000400
FAN_MOVE_SELF = 0x00000800
FAN_OPEN_EXEC = 0x00001000
FAN_Q_OVERFLOW = 0x00004000
FAN_FS_ERROR = 0x00008000
FAN_OPEN_PERM = 0x00010000
FAN_ACCESS_PERM = 0x00020000
FAN_OPEN_EXEC_PERM = 0x00040000
FAN_EVENT_ON_CHILD = 0x08000000
FAN_RENAME = 0x10000000
FAN_ONDIR = 0x40000000

FAN_CLOSE = FAN_CLOSE_WRITE | FAN_CLOSE_NOWRITE
FAN_MOVE = FAN_MOVED_FROM | FAN_MOVED_TO
#: Directory-entry events: need a group reporting directory fids; never allowed on a mount mark.
FAN_DIRENT_EVENTS = FAN_MOVE | FAN_CREATE | FAN_DELETE | FAN_RENAME

# --- fanotify_init() flags -------------------------------------------------------------------------------
FAN_CLOEXEC = 0x00000001
FAN_NONBLOCK = 0x00000002
FAN_CLASS_NOTIF = 0x00000000
FAN_CLASS_CONTENT = 0x00000004
FAN_CLASS_PRE_CONTENT = 0x00000008
FAN_UNLIMITED_QUEUE = 0x00000010
FAN_UNLIMITED_MARKS = 0x00000020
FAN_ENABLE_AUDIT = 0x00000040
FAN_REPORT_PIDFD = 0x00000080
FAN_REPORT_TID = 0x00000100
FAN_REPORT_FID = 0x00000200
FAN_REPORT_DIR_FID = 0x00000400
FAN_REPORT_NAME = 0x00000800
FAN_REPORT_TARGET_FID = 0x00001000
FAN_REPORT_DFID_NAME = FAN_REPORT_DIR_FID | FAN_REPORT_NAME
FAN_REPORT_DFID_NAME_TARGET = FAN_REPORT_DFID_NAME | FAN_REPORT_FID | FAN_REPORT_TARGET_FID

#: The group fsnorm wants: notification class, handles + names for both dir and target, non-blocking reads.
DEFAULT_INIT_FLAGS = FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK | FAN_REPORT_DFID_NAME_TARGET

# --- fanotify_mark() flags -------------------------------------------------------------------------------
FAN_MARK_ADD = 0x00000001
FAN_MARK_REMOVE = 0x00000002
FAN_MARK_DONT_FOLLOW = 0x00000004
FAN_MARK_ONLYDIR = 0x00000008
FAN_MARK_IGNORED_MASK = 0x00000020
FAN_MARK_IGNORED_SURV_MODIFY = 0x00000040
FAN_MARK_FLUSH = 0x00000080
FAN_MARK_EVICTABLE = 0x00000200
FAN_MARK_IGNORE = 0x00000400
FAN_MARK_INODE = 0x00000000
FAN_MARK_MOUNT = 0x00000010
FAN_MARK_FILESYSTEM = 0x00000100
_FAN_MARK_TYPE_BITS = FAN_MARK_MOUNT | FAN_MARK_FILESYSTEM

# --- info record types -----------------------------------------------------------------------------------
FAN_EVENT_INFO_TYPE_FID = 1
FAN_EVENT_INFO_TYPE_DFID_NAME = 2
FAN_EVENT_INFO_TYPE_DFID = 3
FAN_EVENT_INFO_TYPE_PIDFD = 4
FAN_EVENT_INFO_TYPE_ERROR = 5
FAN_EVENT_INFO_TYPE_RANGE = 6
FAN_EVENT_INFO_TYPE_MNT = 7
FAN_EVENT_INFO_TYPE_OLD_DFID_NAME = 10
FAN_EVENT_INFO_TYPE_NEW_DFID_NAME = 12

#: Info types laid out as ``fsid + struct file_handle`` (the *_NAME ones add a NUL-terminated name).
_FID_TYPES = frozenset({FAN_EVENT_INFO_TYPE_FID, FAN_EVENT_INFO_TYPE_DFID})
_NAMED_FID_TYPES = frozenset(
    {FAN_EVENT_INFO_TYPE_DFID_NAME, FAN_EVENT_INFO_TYPE_OLD_DFID_NAME, FAN_EVENT_INFO_TYPE_NEW_DFID_NAME}
)

FANOTIFY_METADATA_VERSION = 3
FAN_NOFD = -1
FAN_EVENT_METADATA_LEN = 24
MAX_HANDLE_SZ = 128

# --- *at() flags (include/uapi/linux/fcntl.h) ------------------------------------------------------------
AT_FDCWD = -100
AT_SYMLINK_FOLLOW = 0x400
AT_EMPTY_PATH = 0x1000
AT_HANDLE_FID = 0x200  # Linux 6.5+: a handle for identification only (cannot be opened)

_O_PATH: int = getattr(os, "O_PATH", 0o10000000)

#: ``(fsid, handle_type, f_handle)``: identifies one inode; hashable, the key for handle -> path caches.
HandleKey: TypeAlias = tuple[bytes, int, bytes]

# struct fanotify_event_metadata {u32 event_len; u8 vers; u8 reserved; u16 metadata_len; u64 mask; s32 fd;
# s32 pid;} -- 24 bytes, no padding with "=".
_META = struct.Struct("=IBBHQii")
# struct fanotify_event_info_header {u8 info_type; u8 pad; u16 len;}
_INFO_HDR = struct.Struct("=BBH")
# __kernel_fsid_t (2 x s32, kept raw) + struct file_handle {u32 handle_bytes; s32 handle_type;}
_FID_HEAD = struct.Struct("=8sIi")
_PIDFD = struct.Struct("=i")
assert _META.size == FAN_EVENT_METADATA_LEN


# ==========================================================================================================
# Data types
# ==========================================================================================================


@dataclass(slots=True, frozen=True)
class FanInfo:
    """One file-identifier info record (FID, DFID, DFID_NAME, OLD_DFID_NAME, NEW_DFID_NAME).

    ``fsid`` is the 8 raw bytes of ``__kernel_fsid_t``; ``handle_type``/``handle`` are the ``struct
    file_handle`` fields, ready for ``open_by_handle_at``. ``name`` is the exact entry name (any bytes but NUL
    and "/") for the *_NAME types, ``None`` for the others."""

    type: int
    fsid: bytes
    handle_type: int
    handle: bytes
    name: bytes | None

    @property
    def key(self) -> HandleKey:
        """Hashable identity of the object this record's handle designates."""
        return (self.fsid, self.handle_type, self.handle)


@dataclass(slots=True, frozen=True)
class RawInfo:
    """An info record this module does not decode (PIDFD, ERROR, RANGE, MNT, future types): kept, not
    dropped. ``data`` is everything after the 4-byte info header, padding included."""

    type: int
    data: bytes


@dataclass(slots=True)
class FanEvent:
    """One event as read: the (possibly merged) ``mask``, the ``pid`` that caused it (0 when an unprivileged
    listener may not see it), and its info records in kernel order. ``fd`` is the event's fd field as the
    kernel wrote it: ``FAN_NOFD`` (-1) in FID mode; when :meth:`FanotifyFD.read_events` saw a real fd it has
    already closed it."""

    mask: int
    pid: int
    infos: tuple[FanInfo | RawInfo, ...]
    fd: int = FAN_NOFD

    def info(self, type: int) -> FanInfo | None:
        """The first decoded file-id record of ``type`` (a FAN_EVENT_INFO_TYPE_* constant), or None."""
        for rec in self.infos:
            if rec.type == type and isinstance(rec, FanInfo):
                return rec
        return None

    def raw_info(self, type: int) -> RawInfo | None:
        """The first undecoded record of ``type``, or None."""
        for rec in self.infos:
            if rec.type == type and isinstance(rec, RawInfo):
                return rec
        return None

    @property
    def dfid_name(self) -> FanInfo | None:
        """Parent directory handle + entry name (DFID_NAME), or None."""
        return self.info(FAN_EVENT_INFO_TYPE_DFID_NAME)

    @property
    def dfid(self) -> FanInfo | None:
        """Directory handle without name (DFID: events on a directory itself with FAN_REPORT_DIR_FID)."""
        return self.info(FAN_EVENT_INFO_TYPE_DFID)

    @property
    def fid(self) -> FanInfo | None:
        """The object's own handle (FID; the target of a dirent event with FAN_REPORT_TARGET_FID)."""
        return self.info(FAN_EVENT_INFO_TYPE_FID)

    @property
    def old(self) -> FanInfo | None:
        """FAN_RENAME: source directory handle + old name, or None when the source side is not reported."""
        return self.info(FAN_EVENT_INFO_TYPE_OLD_DFID_NAME)

    @property
    def new(self) -> FanInfo | None:
        """FAN_RENAME: destination directory handle + new name, or None when that side is not reported."""
        return self.info(FAN_EVENT_INFO_TYPE_NEW_DFID_NAME)

    @property
    def is_dir(self) -> bool:
        return bool(self.mask & FAN_ONDIR)

    @property
    def is_overflow(self) -> bool:
        return bool(self.mask & FAN_Q_OVERFLOW)


# ==========================================================================================================
# Parsing
# ==========================================================================================================


def parse_events(buf: bytes | bytearray | memoryview, n: int | None = None) -> list[FanEvent]:
    """Parse the first ``n`` bytes of a fanotify read() buffer (all of it when ``n`` is None).

    Pure: no fd is touched (an event fd >= 0 is only reported in :attr:`FanEvent.fd`; the reader closes it).
    Raises :class:`ValueError` naming the byte offset for any inconsistency: truncated event or record, bad
    metadata version, a length that points outside its container, a handle larger than its record, a
    *_NAME record without NUL. Every step advances by a length checked to be >= the header it covers, so
    the parser terminates on any input.
    """
    view = memoryview(buf).cast("B") if not isinstance(buf, bytes) else buf
    total = len(view)
    if n is None:
        n = total
    if n < 0 or n > total:
        raise ValueError(f"offset 0: byte count {n} outside the buffer of {total} bytes")
    events: list[FanEvent] = []
    off = 0
    meta_unpack = _META.unpack_from
    while off < n:
        if n - off < FAN_EVENT_METADATA_LEN:
            raise ValueError(
                f"offset {off}: truncated event metadata ({n - off} bytes left, "
                f"need {FAN_EVENT_METADATA_LEN})"
            )
        event_len, vers, _reserved, metadata_len, mask, fd, pid = meta_unpack(view, off)
        if vers != FANOTIFY_METADATA_VERSION:
            raise ValueError(
                f"offset {off}: fanotify metadata version {vers}, expected {FANOTIFY_METADATA_VERSION}"
            )
        if event_len < FAN_EVENT_METADATA_LEN or event_len > n - off:
            raise ValueError(f"offset {off}: event_len {event_len} outside [24, {n - off}]")
        if metadata_len < FAN_EVENT_METADATA_LEN or metadata_len > event_len:
            raise ValueError(f"offset {off}: metadata_len {metadata_len} outside [24, event_len {event_len}]")
        end = off + event_len
        infos = _parse_infos(view, off + metadata_len, end) if metadata_len < event_len else ()
        events.append(FanEvent(mask, pid, infos, fd))
        off = end
    return events


def _parse_infos(view: bytes | memoryview, pos: int, end: int) -> tuple[FanInfo | RawInfo, ...]:
    out: list[FanInfo | RawInfo] = []
    while pos < end:
        if end - pos < _INFO_HDR.size:
            raise ValueError(f"offset {pos}: truncated info header ({end - pos} bytes left in the event)")
        info_type, _pad, rec_len = _INFO_HDR.unpack_from(view, pos)
        if rec_len < _INFO_HDR.size or rec_len > end - pos:
            raise ValueError(f"offset {pos}: info record length {rec_len} outside [4, {end - pos}]")
        rec_end = pos + rec_len
        body = pos + _INFO_HDR.size
        if info_type in _NAMED_FID_TYPES or info_type in _FID_TYPES:
            if rec_len < _INFO_HDR.size + _FID_HEAD.size:
                raise ValueError(f"offset {pos}: file-id record of {rec_len} bytes is shorter than a header")
            fsid, handle_bytes, handle_type = _FID_HEAD.unpack_from(view, body)
            h_start = body + _FID_HEAD.size
            h_end = h_start + handle_bytes
            if h_end > rec_end:
                raise ValueError(
                    f"offset {pos}: handle of {handle_bytes} bytes overruns its {rec_len}-byte info record"
                )
            handle = bytes(view[h_start:h_end])
            name: bytes | None = None
            if info_type in _NAMED_FID_TYPES:
                raw = bytes(view[h_end:rec_end])
                nul = raw.find(b"\0")
                if nul < 0:
                    raise ValueError(f"offset {h_end}: name in info record at {pos} is not NUL-terminated")
                name = raw[:nul]
            out.append(FanInfo(info_type, fsid, handle_type, handle, name))
        else:
            out.append(RawInfo(info_type, bytes(view[body:rec_end])))
        pos = rec_end
    return tuple(out)


# ==========================================================================================================
# libc bindings
# ==========================================================================================================


class _FileHandle(ctypes.Structure):
    _fields_ = [
        ("handle_bytes", ctypes.c_uint),
        ("handle_type", ctypes.c_int),
        ("f_handle", ctypes.c_ubyte * MAX_HANDLE_SZ),
    ]


class _Statfs(ctypes.Structure):
    # struct statfs64 (glibc): __fsword_t (long) for type/bsize/namelen/frsize/flags, 64-bit counters.
    _fields_ = [
        ("f_type", ctypes.c_long),
        ("f_bsize", ctypes.c_long),
        ("f_blocks", ctypes.c_uint64),
        ("f_bfree", ctypes.c_uint64),
        ("f_bavail", ctypes.c_uint64),
        ("f_files", ctypes.c_uint64),
        ("f_ffree", ctypes.c_uint64),
        ("f_fsid", ctypes.c_ubyte * 8),
        ("f_namelen", ctypes.c_long),
        ("f_frsize", ctypes.c_long),
        ("f_flags", ctypes.c_long),
        ("f_spare", ctypes.c_long * 4),
        ("_slack", ctypes.c_ubyte * 64),  # room for any libc that knows a longer struct
    ]


class _Libc:
    """The few libc entry points, with argtypes declared (the mask of fanotify_mark is a uint64_t)."""

    def __init__(self) -> None:
        self.lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)

    def func(self, name: str, restype: type, argtypes: list[type]) -> Callable[..., int] | None:
        try:
            fn = getattr(self.lib, name)
        except AttributeError:
            return None
        fn.restype = restype
        fn.argtypes = argtypes
        typed: Callable[..., int] = fn
        return typed


_libc = _Libc()
_p = ctypes.POINTER
_fanotify_init = _libc.func("fanotify_init", ctypes.c_int, [ctypes.c_uint, ctypes.c_uint])
_fanotify_mark = _libc.func(
    "fanotify_mark",
    ctypes.c_int,
    [ctypes.c_int, ctypes.c_uint, ctypes.c_uint64, ctypes.c_int, ctypes.c_char_p],
)
_open_by_handle_at = _libc.func(
    "open_by_handle_at", ctypes.c_int, [ctypes.c_int, _p(_FileHandle), ctypes.c_int]
)
_name_to_handle_at = _libc.func(
    "name_to_handle_at",
    ctypes.c_int,
    [ctypes.c_int, ctypes.c_char_p, _p(_FileHandle), _p(ctypes.c_int), ctypes.c_int],
)
_fstatfs = _libc.func("fstatfs64", ctypes.c_int, [ctypes.c_int, _p(_Statfs)]) or _libc.func(
    "fstatfs", ctypes.c_int, [ctypes.c_int, _p(_Statfs)]
)
_statfs = _libc.func("statfs64", ctypes.c_int, [ctypes.c_char_p, _p(_Statfs)]) or _libc.func(
    "statfs", ctypes.c_int, [ctypes.c_char_p, _p(_Statfs)]
)


def _missing(name: str) -> SourceError:
    return SourceError(f"fanotify not available: the C library has no {name}()")


def _errno_oserror(err: int, what: str, filename: bytes | None = None) -> OSError:
    # OSError(errno, ...) builds the matching builtin subclass (FileNotFoundError, PermissionError, ...).
    if filename is None:
        return OSError(err, f"{what}: {os.strerror(err)}")
    return OSError(err, f"{what}: {os.strerror(err)}", filename)


def _fspath(path: bytes | str | os.PathLike[bytes] | os.PathLike[str]) -> bytes:
    return os.fsencode(path)


def kernel_release() -> str:
    return os.uname().release


def _names(value: int, table: list[tuple[int, str]]) -> list[str]:
    out = []
    rest = value
    for bit, name in table:
        if bit and value & bit == bit:
            out.append(name)
            rest &= ~bit
    if rest:
        out.append(hex(rest))
    return out


_INIT_NAMES: list[tuple[int, str]] = [
    (FAN_REPORT_DFID_NAME_TARGET, "FAN_REPORT_DFID_NAME_TARGET"),
    (FAN_REPORT_DFID_NAME, "FAN_REPORT_DFID_NAME"),
    (FAN_CLOEXEC, "FAN_CLOEXEC"),
    (FAN_NONBLOCK, "FAN_NONBLOCK"),
    (FAN_CLASS_CONTENT, "FAN_CLASS_CONTENT"),
    (FAN_CLASS_PRE_CONTENT, "FAN_CLASS_PRE_CONTENT"),
    (FAN_UNLIMITED_QUEUE, "FAN_UNLIMITED_QUEUE"),
    (FAN_UNLIMITED_MARKS, "FAN_UNLIMITED_MARKS"),
    (FAN_ENABLE_AUDIT, "FAN_ENABLE_AUDIT"),
    (FAN_REPORT_PIDFD, "FAN_REPORT_PIDFD"),
    (FAN_REPORT_TID, "FAN_REPORT_TID"),
    (FAN_REPORT_FID, "FAN_REPORT_FID"),
    (FAN_REPORT_DIR_FID, "FAN_REPORT_DIR_FID"),
    (FAN_REPORT_NAME, "FAN_REPORT_NAME"),
    (FAN_REPORT_TARGET_FID, "FAN_REPORT_TARGET_FID"),
]

_MARK_NAMES: list[tuple[int, str]] = [
    (FAN_MARK_ADD, "FAN_MARK_ADD"),
    (FAN_MARK_REMOVE, "FAN_MARK_REMOVE"),
    (FAN_MARK_FLUSH, "FAN_MARK_FLUSH"),
    (FAN_MARK_DONT_FOLLOW, "FAN_MARK_DONT_FOLLOW"),
    (FAN_MARK_ONLYDIR, "FAN_MARK_ONLYDIR"),
    (FAN_MARK_MOUNT, "FAN_MARK_MOUNT"),
    (FAN_MARK_FILESYSTEM, "FAN_MARK_FILESYSTEM"),
    (FAN_MARK_IGNORED_MASK, "FAN_MARK_IGNORED_MASK"),
    (FAN_MARK_IGNORED_SURV_MODIFY, "FAN_MARK_IGNORED_SURV_MODIFY"),
    (FAN_MARK_EVICTABLE, "FAN_MARK_EVICTABLE"),
    (FAN_MARK_IGNORE, "FAN_MARK_IGNORE"),
]

_MASK_NAMES: list[tuple[int, str]] = [
    (FAN_ACCESS, "FAN_ACCESS"),
    (FAN_MODIFY, "FAN_MODIFY"),
    (FAN_ATTRIB, "FAN_ATTRIB"),
    (FAN_CLOSE_WRITE, "FAN_CLOSE_WRITE"),
    (FAN_CLOSE_NOWRITE, "FAN_CLOSE_NOWRITE"),
    (FAN_OPEN, "FAN_OPEN"),
    (FAN_MOVED_FROM, "FAN_MOVED_FROM"),
    (FAN_MOVED_TO, "FAN_MOVED_TO"),
    (FAN_CREATE, "FAN_CREATE"),
    (FAN_DELETE, "FAN_DELETE"),
    (FAN_DELETE_SELF, "FAN_DELETE_SELF"),
    (FAN_MOVE_SELF, "FAN_MOVE_SELF"),
    (FAN_OPEN_EXEC, "FAN_OPEN_EXEC"),
    (FAN_Q_OVERFLOW, "FAN_Q_OVERFLOW"),
    (FAN_FS_ERROR, "FAN_FS_ERROR"),
    (FAN_OPEN_PERM, "FAN_OPEN_PERM"),
    (FAN_ACCESS_PERM, "FAN_ACCESS_PERM"),
    (FAN_OPEN_EXEC_PERM, "FAN_OPEN_EXEC_PERM"),
    (FAN_EVENT_ON_CHILD, "FAN_EVENT_ON_CHILD"),
    (FAN_RENAME, "FAN_RENAME"),
    (FAN_ONDIR, "FAN_ONDIR"),
]


def describe_init_flags(flags: int) -> str:
    """``"FAN_CLASS_NOTIF|FAN_CLOEXEC|..."`` for a fanotify_init() flag word (class bits named too)."""
    names = _names(flags, _INIT_NAMES)
    if not flags & (FAN_CLASS_CONTENT | FAN_CLASS_PRE_CONTENT):
        names.insert(0, "FAN_CLASS_NOTIF")
    return "|".join(names)


def describe_mark_flags(flags: int) -> str:
    names = _names(flags, _MARK_NAMES)
    if not flags & _FAN_MARK_TYPE_BITS:
        names.append("FAN_MARK_INODE")
    return "|".join(names)


def describe_mask(mask: int) -> str:
    """``"FAN_CREATE|FAN_ONDIR"`` for an event mask; unknown bits as hex; ``"0"`` for 0."""
    return "|".join(_names(mask, _MASK_NAMES)) or "0"


# ==========================================================================================================
# Syscall wrappers
# ==========================================================================================================


def _init_error(err: int, flags: int, event_f_flags: int) -> Exception:
    desc = describe_init_flags(flags)
    if err == errno.EPERM:
        return CapabilityError(
            f"fanotify_init({desc}) needs CAP_SYS_ADMIN. Without it (Linux 5.13+) only a notification group "
            "reporting file handles (FAN_REPORT_FID / FAN_REPORT_DFID_NAME) with inode marks is allowed; "
            "FAN_UNLIMITED_QUEUE, FAN_UNLIMITED_MARKS, FAN_CLASS_CONTENT, filesystem and mount marks "
            "need root",
            capability="CAP_SYS_ADMIN",
        )
    if err == errno.EINVAL:
        hints = []
        if flags & FAN_REPORT_TARGET_FID:
            hints.append(
                "FAN_REPORT_TARGET_FID needs Linux 5.17+ "
                "and FAN_REPORT_FID|FAN_REPORT_DIR_FID|FAN_REPORT_NAME"
            )
        if flags & FAN_REPORT_NAME:
            hints.append("FAN_REPORT_NAME needs Linux 5.9+ and FAN_REPORT_DIR_FID")
        if flags & FAN_REPORT_DIR_FID:
            hints.append("FAN_REPORT_DIR_FID needs Linux 5.9+")
        if flags & FAN_REPORT_FID:
            hints.append("FAN_REPORT_FID needs Linux 5.1+ and FAN_CLASS_NOTIF")
        if flags & FAN_REPORT_PIDFD:
            hints.append("FAN_REPORT_PIDFD needs Linux 5.15+ and excludes FAN_REPORT_TID")
        hint = ("; ".join(hints)) or "unknown flag bits or event_f_flags"
        return SourceError(
            f"this kernel ({kernel_release()}) rejects fanotify_init({desc}, "
            f"event_f_flags={event_f_flags:#x}) with EINVAL: {hint}"
        )
    if err == errno.ENOSYS:
        return SourceError(
            "fanotify not available: fanotify_init returned ENOSYS (kernel without CONFIG_FANOTIFY)"
        )
    if err == errno.EMFILE:
        return WatchLimitError(
            "too many fanotify groups for this user (or open files for this process): raise "
            "fs.fanotify.max_user_groups (or RLIMIT_NOFILE)",
            sysctl="fs.fanotify.max_user_groups",
        )
    return _errno_oserror(err, f"fanotify_init({desc})")


def _mark_error(err: int, flags: int, mask: int, path: bytes | None, group_flags: int | None) -> Exception:
    desc = f"fanotify_mark({describe_mark_flags(flags)}, {describe_mask(mask)}, {path!r})"
    if err in (errno.ENOENT, errno.EACCES, errno.ENOTDIR, errno.ELOOP, errno.ENAMETOOLONG):
        return _errno_oserror(err, desc, path)
    if err == errno.EPERM:
        return CapabilityError(
            f"{desc} needs CAP_SYS_ADMIN: filesystem and mount marks (and any mark in a group that does not "
            "report file handles) are root-only; FID-reporting inode marks work unprivileged on Linux 5.13+",
            capability="CAP_SYS_ADMIN",
        )
    if err in (errno.EXDEV, errno.ENODEV, errno.EOPNOTSUPP):
        why = {
            errno.ENODEV: "its filesystem has no fsid (file handles cannot be reported)",
            errno.EOPNOTSUPP: "its filesystem cannot encode file handles",
            errno.EXDEV: "it is on a subvolume / mount whose fsid differs from its filesystem's",
        }[err]
        code = {errno.EXDEV: "EXDEV", errno.ENODEV: "ENODEV", errno.EOPNOTSUPP: "EOPNOTSUPP"}[err]
        return SourceError(f"cannot mark {path!r} in a FID-reporting fanotify group: {why} ({code})")
    if err == errno.EINVAL:
        return SourceError(
            f"this kernel ({kernel_release()}) rejects {desc} with EINVAL: "
            + _mark_einval_hint(flags, mask, group_flags)
        )
    if err == errno.ENOSPC:
        return WatchLimitError(
            f"{desc}: too many fanotify marks for this user; raise fs.fanotify.max_user_marks",
            sysctl="fs.fanotify.max_user_marks",
        )
    if err == errno.ENOSYS:
        return SourceError("fanotify not available: fanotify_mark returned ENOSYS")
    return _errno_oserror(err, desc, path)


_KNOWN_MASK_BITS = 0
for _bit, _name in _MASK_NAMES:
    _KNOWN_MASK_BITS |= _bit
_KNOWN_MARK_FLAGS = 0
for _bit, _name in _MARK_NAMES:
    _KNOWN_MARK_FLAGS |= _bit


def _mark_einval_hint(flags: int, mask: int, group_flags: int | None) -> str:
    """Why fanotify_mark() may have said EINVAL; ``group_flags`` (the fanotify_init flags) when known."""
    hints = []
    fid_group = group_flags is None or bool(group_flags & (FAN_REPORT_FID | FAN_REPORT_DIR_FID))
    if mask & ~_KNOWN_MASK_BITS:
        hints.append(f"mask bits {mask & ~_KNOWN_MASK_BITS:#x} are unknown")
    if flags & ~_KNOWN_MARK_FLAGS:
        hints.append(f"mark flag bits {flags & ~_KNOWN_MARK_FLAGS:#x} are unknown")
    if flags & FAN_MARK_ADD and flags & FAN_MARK_REMOVE:
        hints.append("FAN_MARK_ADD and FAN_MARK_REMOVE together")
    if mask & FAN_RENAME:
        if group_flags is None or group_flags & FAN_REPORT_DFID_NAME == FAN_REPORT_DFID_NAME:
            hints.append("FAN_RENAME needs Linux 5.17+")
        else:
            hints.append("FAN_RENAME needs a group with FAN_REPORT_DFID_NAME")
    if mask & FAN_DIRENT_EVENTS and flags & _FAN_MARK_TYPE_BITS == FAN_MARK_MOUNT:
        hints.append("directory-entry events (create/delete/move/rename) are invalid on a mount mark")
    if mask & (FAN_DIRENT_EVENTS | FAN_ATTRIB | FAN_DELETE_SELF | FAN_MOVE_SELF) and not fid_group:
        hints.append("directory-entry, attrib and self events need a FID-reporting group (Linux 5.1+)")
    if flags & _FAN_MARK_TYPE_BITS == _FAN_MARK_TYPE_BITS:
        hints.append("FAN_MARK_MNTNS (MOUNT|FILESYSTEM) needs Linux 6.14+ and FAN_REPORT_MNT")
    return "; ".join(hints) or "this flag/mask combination"


def fanotify_init(flags: int, event_f_flags: int = os.O_RDONLY | os.O_CLOEXEC) -> int:
    """fanotify_init(2). Returns the new fd; raises the typed error for its errno (see ``_init_error``)."""
    if _fanotify_init is None:
        raise _missing("fanotify_init")
    fd = int(_fanotify_init(flags, event_f_flags))
    if fd < 0:
        raise _init_error(ctypes.get_errno(), flags, event_f_flags)
    return fd


def fanotify_mark(
    fd: int,
    flags: int,
    mask: int,
    dirfd: int = AT_FDCWD,
    path: bytes | str | os.PathLike[bytes] | os.PathLike[str] | None = None,
    *,
    group_flags: int | None = None,
) -> None:
    """fanotify_mark(2); ``mask`` is passed as a full uint64_t. Raises the typed error for its errno;
    ``group_flags`` (the group's fanotify_init flags) only sharpens the EINVAL message."""
    if _fanotify_mark is None:
        raise _missing("fanotify_mark")
    bpath = None if path is None else _fspath(path)
    if int(_fanotify_mark(fd, flags, mask, dirfd, bpath)) < 0:
        raise _mark_error(ctypes.get_errno(), flags, mask, bpath, group_flags)


def name_to_handle_at(
    dirfd: int,
    path: bytes | str | os.PathLike[bytes] | os.PathLike[str],
    flags: int = 0,
) -> tuple[int, bytes, int]:
    """name_to_handle_at(2): ``(handle_type, f_handle bytes, mount_id)``. OSError (builtin subclass) on error.

    ``flags`` may hold AT_SYMLINK_FOLLOW, AT_EMPTY_PATH, AT_HANDLE_FID."""
    if _name_to_handle_at is None:
        raise _missing("name_to_handle_at")
    bpath = _fspath(path)
    fh = _FileHandle()
    fh.handle_bytes = MAX_HANDLE_SZ
    mount_id = ctypes.c_int(0)
    if int(_name_to_handle_at(dirfd, bpath, ctypes.byref(fh), ctypes.byref(mount_id), flags)) < 0:
        err = ctypes.get_errno()
        raise _errno_oserror(err, "name_to_handle_at", bpath)
    return int(fh.handle_type), bytes(fh.f_handle[: fh.handle_bytes]), int(mount_id.value)


def open_by_handle_at(
    mount_fd: int, handle_type: int, handle: bytes, flags: int = _O_PATH | os.O_CLOEXEC
) -> int:
    """open_by_handle_at(2) (needs CAP_DAC_READ_SEARCH). Returns a new fd; OSError (builtin subclass)."""
    if _open_by_handle_at is None:
        raise _missing("open_by_handle_at")
    if len(handle) > MAX_HANDLE_SZ:
        raise OSError(errno.EINVAL, f"file handle of {len(handle)} bytes exceeds MAX_HANDLE_SZ")
    fh = _FileHandle()
    fh.handle_bytes = len(handle)
    fh.handle_type = handle_type
    ctypes.memmove(fh.f_handle, handle, len(handle))
    fd = int(_open_by_handle_at(mount_fd, ctypes.byref(fh), flags))
    if fd < 0:
        raise _errno_oserror(ctypes.get_errno(), "open_by_handle_at")
    return fd


def fsid_of(target: int | bytes | str | os.PathLike[bytes] | os.PathLike[str]) -> bytes:
    """The 8 raw bytes of ``statfs().f_fsid`` for an fd (fstatfs) or a path (statfs).

    This is the value fanotify puts in every FID info record (the kernel takes it from ``vfs_get_fsid()``,
    i.e. the same statfs), so it is the reliable key for matching a mount fd to an event's fsid."""
    st = _Statfs()
    if isinstance(target, int):
        if _fstatfs is None:
            raise _missing("fstatfs")
        rc = int(_fstatfs(target, ctypes.byref(st)))
        where: bytes | None = None
    else:
        if _statfs is None:
            raise _missing("statfs")
        where = _fspath(target)
        rc = int(_statfs(where, ctypes.byref(st)))
    if rc < 0:
        raise _errno_oserror(ctypes.get_errno(), "statfs", where)
    return bytes(st.f_fsid)


def path_handle_key(
    path: bytes | str | os.PathLike[bytes] | os.PathLike[str], *, follow: bool = True
) -> HandleKey:
    """``(fsid, handle_type, handle)`` of a path, equal to the key of a fanotify FID record for the same inode
    (useful to seed a handle -> path cache with the watched roots, and in tests)."""
    bpath = _fspath(path)
    handle_type, handle, _mnt = name_to_handle_at(AT_FDCWD, bpath, AT_SYMLINK_FOLLOW if follow else 0)
    return (fsid_of(bpath), handle_type, handle)


# ==========================================================================================================
# FanotifyFD
# ==========================================================================================================


class FanotifyFD(OwnedFD):
    """One fanotify group. ``FanotifyFD()`` creates the default fsnorm group (notification class,
    non-blocking, close-on-exec, FAN_REPORT_DFID_NAME_TARGET); ``unlimited_queue=True`` adds
    FAN_UNLIMITED_QUEUE (root only)."""

    _what = "fanotify fd"

    def __init__(
        self,
        flags: int = DEFAULT_INIT_FLAGS,
        event_f_flags: int = os.O_RDONLY | os.O_CLOEXEC,
        *,
        unlimited_queue: bool = False,
    ) -> None:
        if unlimited_queue:
            flags |= FAN_UNLIMITED_QUEUE
        self.flags = flags
        self._fd = fanotify_init(flags, event_f_flags)
        self._buf = bytearray(0)

    # -- lifecycle: fileno, closed, close and the context manager come from OwnedFD -----------------------
    def __repr__(self) -> str:
        state = "closed" if self._fd < 0 else f"fd={self._fd}"
        return f"<FanotifyFD {state} {describe_init_flags(self.flags)}>"

    # -- marks ----------------------------------------------------------------------------------------------
    def mark(
        self,
        path: bytes | str | os.PathLike[bytes] | os.PathLike[str],
        mask: int,
        flags: int = FAN_MARK_ADD,
        *,
        dirfd: int = AT_FDCWD,
    ) -> None:
        """fanotify_mark(fd, flags, mask, dirfd, path). Errors: FileNotFoundError / PermissionError /
        NotADirectoryError with the filename; CapabilityError (EPERM); SourceError (EINVAL, with the reason
        this kernel rejects it; EXDEV/ENODEV/EOPNOTSUPP naming the path); WatchLimitError (ENOSPC)."""
        fanotify_mark(self.fileno(), flags, mask, dirfd, path, group_flags=self.flags)

    # -- reading --------------------------------------------------------------------------------------------
    def read_events(self, bufsize: int = 256 * 1024) -> list[FanEvent]:
        """One read(); ``[]`` when the queue is empty (EAGAIN on a non-blocking group).

        A group created without FAN_NONBLOCK blocks here until an event arrives. Any event fd >= 0 (never in
        FID mode) and any pidfd info record are closed before returning."""
        fd = self.fileno()
        if len(self._buf) != bufsize:
            self._buf = bytearray(bufsize)
        try:
            n = os.readv(fd, [self._buf])
        except BlockingIOError:
            return []
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                raise SourceError(
                    f"fanotify read buffer of {bufsize} bytes is too small for the next event"
                ) from exc
            raise
        events = parse_events(self._buf, n)
        _close_event_fds(events)
        return events

    def pending_bytes(self) -> int:
        """FIONREAD on the group fd. On Linux (checked on 6.18) this is FAN_EVENT_METADATA_LEN (24) per queued
        event, *not* the byte size a read would return (info records are not counted): use it as "events
        pending" (``> 0``) or ``// FAN_EVENT_METADATA_LEN`` as the count of queued events."""
        buf = bytearray(4)
        fcntl.ioctl(self.fileno(), termios.FIONREAD, buf, True)
        return int.from_bytes(buf, sys.byteorder, signed=True)

    def pending_events(self) -> int:
        """Number of queued events, from FIONREAD (see :meth:`pending_bytes`)."""
        return self.pending_bytes() // FAN_EVENT_METADATA_LEN

    def has_pending(self) -> bool:
        """poll(fd, POLLIN, 0): True when a read would return at least one event."""
        p = select.poll()
        p.register(self.fileno(), select.POLLIN)
        return bool(p.poll(0))


def _close_event_fds(events: list[FanEvent]) -> None:
    for ev in events:
        if ev.fd >= 0:
            _close_quietly(ev.fd)
        for rec in ev.infos:
            if isinstance(rec, RawInfo) and rec.type == FAN_EVENT_INFO_TYPE_PIDFD and len(rec.data) >= 4:
                (pidfd,) = _PIDFD.unpack_from(rec.data, 0)
                if pidfd >= 0:
                    _close_quietly(pidfd)


def _close_quietly(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


# ==========================================================================================================
# Handle resolution
# ==========================================================================================================


class ResolveStatus(enum.Enum):
    OK = "ok"
    #: ESTALE / ENOENT: the inode no longer exists (deleted and evicted, or its generation moved on).
    STALE = "stale"
    #: The inode still exists but is unlinked (st_nlink == 0; readlink would say "... (deleted)").
    DELETED = "deleted"
    #: No mount fd registered for this fsid.
    UNKNOWN_FSID = "unknown_fsid"
    #: EPERM: open_by_handle_at needs CAP_DAC_READ_SEARCH.
    DENIED = "denied"
    #: Anything else (EINVAL for a malformed handle, a path not reachable from the mount fd, ...).
    ERROR = "error"


@dataclass(slots=True, frozen=True)
class Resolution:
    """Outcome of one lookup: ``path`` is set only when ``status`` is OK; ``errno`` when a syscall failed."""

    status: ResolveStatus
    path: bytes | None = None
    errno: int | None = None


class HandleResolver:
    """Resolve file handles to current paths: ``open_by_handle_at(mount_fd, handle, O_PATH)`` and then
    ``readlink(b"/proc/self/fd/N")``; the O_PATH fd is always closed.

    Mount fds are registered per fsid with :meth:`register_mount` (any directory on the filesystem; the path
    returned is as seen through that directory's mount, so register a directory on the mount you want paths
    in). The fsid comes from ``fstatfs()`` on the opened fd, which is exactly what fanotify reports.
    Lookups never raise for a per-handle failure: they return ``None`` (:meth:`resolve`) or a
    :class:`Resolution` saying why (:meth:`lookup`). Requires CAP_DAC_READ_SEARCH (status DENIED otherwise).
    """

    def __init__(self) -> None:
        self._mounts: dict[bytes, int] = {}

    def register_mount(self, path: bytes | str | os.PathLike[bytes] | os.PathLike[str]) -> bytes:
        """Open ``path`` (O_RDONLY|O_DIRECTORY) as the mount fd for its filesystem; return the fsid.

        If a mount fd for that fsid exists already, it is kept and the new one closed."""
        fd = os.open(_fspath(path), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fsid = fsid_of(fd)
        except BaseException:
            os.close(fd)
            raise
        if fsid in self._mounts:
            os.close(fd)
        else:
            self._mounts[fsid] = fd
        return fsid

    def mount_fd(self, fsid: bytes) -> int | None:
        return self._mounts.get(fsid)

    @property
    def fsids(self) -> tuple[bytes, ...]:
        return tuple(self._mounts)

    def lookup(self, fsid: bytes, handle_type: int, handle: bytes) -> Resolution:
        mount_fd = self._mounts.get(fsid)
        if mount_fd is None:
            return Resolution(ResolveStatus.UNKNOWN_FSID)
        try:
            fd = open_by_handle_at(mount_fd, handle_type, handle, _O_PATH | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno in (errno.ESTALE, errno.ENOENT):
                return Resolution(ResolveStatus.STALE, errno=exc.errno)
            if exc.errno == errno.EPERM:
                return Resolution(ResolveStatus.DENIED, errno=exc.errno)
            return Resolution(ResolveStatus.ERROR, errno=exc.errno)
        try:
            # A directory kept alive after rmdir (an open fd, a cwd) still opens; its link count is 0 and
            # readlink says b"/old/path (deleted)". Test the link count, not the suffix: a live directory
            # may really be called "x (deleted)".
            if os.fstat(fd).st_nlink == 0:
                return Resolution(ResolveStatus.DELETED)
            path = os.readlink(b"/proc/self/fd/%d" % fd)
        except OSError as exc:
            return Resolution(ResolveStatus.ERROR, errno=exc.errno)
        finally:
            os.close(fd)
        if not path.startswith(b"/"):
            # Not reachable from the mount fd's root (e.g. outside a bind-mounted subtree).
            return Resolution(ResolveStatus.ERROR)
        return Resolution(ResolveStatus.OK, path)

    def resolve(self, fsid: bytes, handle_type: int, handle: bytes) -> bytes | None:
        """The current path of the handle's inode, or None when it cannot be had (see :meth:`lookup`)."""
        return self.lookup(fsid, handle_type, handle).path

    def resolve_info(self, info: FanInfo) -> bytes | None:
        """Resolve the handle of an info record (the directory for *DFID* records, the object for FID)."""
        return self.lookup(info.fsid, info.handle_type, info.handle).path

    def close(self) -> None:
        """Close every mount fd. Idempotent."""
        mounts, self._mounts = self._mounts, {}
        for fd in mounts.values():
            _close_quietly(fd)

    def __enter__(self) -> HandleResolver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
