"""Raw events exactly as the kernel gave them, and the other items a source feeds downstream.

Everything a source produces is one of the *stream items* below, in the order it happened. The same items are
what a capture log stores and what replay reads back, so live and replayed sessions go through the very same
code after this point.

Hot path note: one inotify event is a plain tuple ``(wd, mask, cookie, name)``. Tuples are the cheapest object
CPython can build in the reader's parse loop and unpack in the matcher's loop; benchmarks/bench_matcher.py
shows the cost of a slotted class instead.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import TypeAlias

# --- inotify(7) mask bits (include/uapi/linux/inotify.h) -------------------------------------------------
IN_ACCESS = 0x00000001
IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_CLOSE_NOWRITE = 0x00000010
IN_OPEN = 0x00000020
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_UNMOUNT = 0x00002000
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_DONT_FOLLOW = 0x02000000
IN_EXCL_UNLINK = 0x04000000
IN_MASK_CREATE = 0x10000000
IN_MASK_ADD = 0x20000000
IN_ISDIR = 0x40000000
IN_ONESHOT = 0x80000000

IN_MOVE = IN_MOVED_FROM | IN_MOVED_TO
IN_CLOSE = IN_CLOSE_WRITE | IN_CLOSE_NOWRITE
IN_ALL_EVENTS = 0x00000FFF

#: Every bit the kernel can set in an event it *delivers* (event bits plus the flags it adds).
IN_DELIVERED_BITS = IN_ALL_EVENTS | IN_UNMOUNT | IN_Q_OVERFLOW | IN_IGNORED | IN_ISDIR

#: The event mask fsnorm asks for by default: everything that changes the tree or a file's content, not reads.
DEFAULT_INOTIFY_MASK = (
    IN_MODIFY
    | IN_ATTRIB
    | IN_CLOSE_WRITE
    | IN_MOVED_FROM
    | IN_MOVED_TO
    | IN_CREATE
    | IN_DELETE
    | IN_DELETE_SELF
    | IN_MOVE_SELF
)

#: One inotify event: ``(wd, mask, cookie, name)``; ``name`` is b"" for events on the watched object itself.
InotifyEvent: TypeAlias = tuple[int, int, int, bytes]


@dataclass(slots=True)
class InotifyBatch:
    """The events one read() returned, with the read's monotonic time and whether the kernel queue was empty
    right after it (``drained``). ``drained`` is what lets the matcher decide that a missing rename half will
    not come: while unread events remain, the other half may be among them."""

    t_ns: int
    drained: bool
    events: list[InotifyEvent] = field(default_factory=list)
    #: Bytes still queued in the kernel right after the read (FIONREAD), None if not known; with ``nbytes``
    #: (what this read returned) it tells the matcher when everything queued before ``t_ns`` has been read,
    #: even while the queue never drains.
    backlog: int | None = None
    nbytes: int = 0


@dataclass(slots=True, frozen=True)
class WatchAdded:
    """The source added an inotify watch: ``wd`` now stands for the directory ``path``."""

    t_ns: int
    wd: int
    path: bytes


@dataclass(slots=True, frozen=True)
class WatchRemoved:
    """The source removed a watch on purpose (its directory left the watched tree or was excluded).

    The kernel will still deliver IN_IGNORED for it; that one is expected and produces no record."""

    t_ns: int
    wd: int


@dataclass(slots=True, frozen=True)
class Tick:
    """The source's clock, read when no event was waiting: the kernel queue was empty at ``t_ns``.

    Ticks are part of the stream (and of captures) so that replay expires one-sided moves at exactly the
    points the live session did."""

    t_ns: int


@dataclass(slots=True, frozen=True)
class SourceNotice:
    """Something the source itself observed, not the kernel: a directory found by a scan (``create`` with the
    ``synthesized`` flag), a subdirectory that could not be watched (``error``), a watch that ended.

    It becomes exactly one record, at its place in the stream."""

    t_ns: int
    kind: str
    path: bytes
    is_dir: bool
    flags: tuple[str, ...] = ()
    message: str = ""


# --- fanotify ------------------------------------------------------------------------------------------------
#
# A file handle travels as one ``bytes`` value, the *fid*: the 8 bytes of ``__kernel_fsid_t`` followed by
# ``struct file_handle`` (``u32 handle_bytes``, ``s32 handle_type``, both little-endian, then the ``f_handle``
# bytes). That is exactly the body of a fanotify FID info record on a little-endian host, so the reader takes it
# as one slice; it is hashable (the key of the directory cache) and its hex is a record's ``object_id``.

_FID_HEAD = struct.Struct("<8sIi")


def fid_pack(fsid: bytes, handle_type: int, handle: bytes) -> bytes:
    """The fid of ``(fsid, handle_type, f_handle)``."""
    return _FID_HEAD.pack(fsid, len(handle), handle_type) + handle


def fid_unpack(fid: bytes) -> tuple[bytes, int, bytes]:
    """``(fsid, handle_type, f_handle)`` of a fid; ValueError if it is not one."""
    if len(fid) < _FID_HEAD.size:
        raise ValueError(f"a fid has at least {_FID_HEAD.size} bytes, got {len(fid)}")
    fsid, size, handle_type = _FID_HEAD.unpack_from(fid)
    if size != len(fid) - _FID_HEAD.size:
        raise ValueError(f"fid says {size} handle bytes but has {len(fid) - _FID_HEAD.size}")
    return fsid, handle_type, fid[_FID_HEAD.size:]


#: One fanotify event as read, its info records placed by *type* (never by position):
#: ``(mask, pid, dir, name, dir2, name2, obj, extra)``.
#:
#: * ``dir``/``name``: the DFID_NAME record (``name`` is ``b"."`` for an event on the directory itself), a DFID
#:   record (``name`` ``b""``), or, for FAN_RENAME, the OLD_DFID_NAME record; ``(None, b"")`` when absent.
#: * ``dir2``/``name2``: FAN_RENAME's NEW_DFID_NAME record; ``(None, b"")`` when absent (and for other events).
#: * ``obj``: the FID record, the object's own handle (the child's, with FAN_REPORT_TARGET_FID); None if absent.
#: * ``extra``: every other info record as ``(info_type, body)``, in kernel order (usually ``()``).
#:
#: Handles are fids (see :func:`fid_pack`). A plain tuple for the same reason as :data:`InotifyEvent`.
FanotifyEvent: TypeAlias = tuple[
    int, int, bytes | None, bytes, bytes | None, bytes, bytes | None, tuple[tuple[int, bytes], ...]
]


@dataclass(slots=True)
class FanotifyBatch:
    """The events one fanotify read() returned, with the read's monotonic time and whether the kernel queue was
    empty right after it (FIONREAD == 0; fanotify counts 24 bytes per queued event)."""

    t_ns: int
    drained: bool
    events: list[FanotifyEvent] = field(default_factory=list)
    #: Events still queued right after the read (FIONREAD / 24), None if not known; the read itself took
    #: ``len(events)`` of them (see :class:`InotifyBatch`).
    backlog: int | None = None


#: HandleResolved.status values: what became of a directory handle.
HANDLE_STATUSES = ("ok", "outside", "stale", "deleted", "denied", "unknown_fsid", "error")


@dataclass(slots=True, frozen=True)
class HandleResolved:
    """The fanotify source learned what a directory handle stands for, by I/O the normalizer must not do:
    a walk of the tree (``name_to_handle_at``) or ``open_by_handle_at`` of a handle an event carried.

    ``status`` is ``"ok"`` (``path`` is the directory, inside the watched tree), ``"outside"`` (it resolved,
    to a directory outside the watched roots or excluded; ``path`` is None) or why it could not be resolved
    (``path`` None): ``"stale"`` (ESTALE/ENOENT: gone), ``"deleted"`` (unlinked, still open somewhere),
    ``"denied"`` (no CAP_DAC_READ_SEARCH), ``"unknown_fsid"`` (no mount of that filesystem), ``"error"``."""

    t_ns: int
    fsid: bytes
    handle_type: int
    handle: bytes
    path: bytes | None
    status: str = "ok"

    @property
    def fid(self) -> bytes:
        return fid_pack(self.fsid, self.handle_type, self.handle)


#: Items of an inotify stream (what :class:`~normalizer.core.inotify.InotifyNormalizer` takes).
StreamItem: TypeAlias = InotifyBatch | WatchAdded | WatchRemoved | Tick | SourceNotice
#: Items of a fanotify stream (what :class:`~normalizer.core.fanotify.FanotifyNormalizer` takes).
FanotifyStreamItem: TypeAlias = FanotifyBatch | HandleResolved | Tick | SourceNotice
#: Every stream item there is: what a capture holds.
AnyStreamItem: TypeAlias = StreamItem | FanotifyBatch | HandleResolved
