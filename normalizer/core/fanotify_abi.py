"""The fanotify kernel ABI as pure data: event and flag bits, record layouts, and the read() buffer parser.

No I/O and no libc here (the core imports it, and ``import normalizer.core`` must work where libc has no
fanotify): :mod:`normalizer.backends._fanotify_sys` builds the system calls on top of it.

ABI reference: include/uapi/linux/fanotify.h, fanotify(7). Layouts are native-endian; the structs are packed by
hand with :mod:`struct`. :func:`parse_events` checks every length, so a corrupt buffer raises
:class:`ValueError` naming the offset and can never loop.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TypeAlias

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
