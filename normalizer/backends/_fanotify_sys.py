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
import enum
import errno
import fcntl
import os
import select
import sys
import termios
from collections.abc import Callable
from dataclasses import dataclass

from normalizer.backends._fd import OwnedFD
from normalizer.backends._libc import load_libc
from normalizer.core.fanotify_abi import *  # noqa: F403  (re-exported: the binding speaks the ABI's names)
from normalizer.core.fanotify_abi import (
    _FAN_MARK_TYPE_BITS,
    _PIDFD,
    AT_EMPTY_PATH,
    AT_FDCWD,
    AT_HANDLE_FID,
    AT_SYMLINK_FOLLOW,
    DEFAULT_INIT_FLAGS,
    FAN_ACCESS,
    FAN_ACCESS_PERM,
    FAN_ATTRIB,
    FAN_CLASS_CONTENT,
    FAN_CLASS_PRE_CONTENT,
    FAN_CLOEXEC,
    FAN_CLOSE_NOWRITE,
    FAN_CLOSE_WRITE,
    FAN_CREATE,
    FAN_DELETE,
    FAN_DELETE_SELF,
    FAN_DIRENT_EVENTS,
    FAN_ENABLE_AUDIT,
    FAN_EVENT_INFO_TYPE_PIDFD,
    FAN_EVENT_METADATA_LEN,
    FAN_EVENT_ON_CHILD,
    FAN_FS_ERROR,
    FAN_MARK_ADD,
    FAN_MARK_DONT_FOLLOW,
    FAN_MARK_EVICTABLE,
    FAN_MARK_FILESYSTEM,
    FAN_MARK_FLUSH,
    FAN_MARK_IGNORE,
    FAN_MARK_IGNORED_MASK,
    FAN_MARK_IGNORED_SURV_MODIFY,
    FAN_MARK_MOUNT,
    FAN_MARK_ONLYDIR,
    FAN_MARK_REMOVE,
    FAN_MODIFY,
    FAN_MOVE_SELF,
    FAN_MOVED_FROM,
    FAN_MOVED_TO,
    FAN_NONBLOCK,
    FAN_ONDIR,
    FAN_OPEN,
    FAN_OPEN_EXEC,
    FAN_OPEN_EXEC_PERM,
    FAN_OPEN_PERM,
    FAN_Q_OVERFLOW,
    FAN_RENAME,
    FAN_REPORT_DFID_NAME,
    FAN_REPORT_DFID_NAME_TARGET,
    FAN_REPORT_DIR_FID,
    FAN_REPORT_FID,
    FAN_REPORT_NAME,
    FAN_REPORT_PIDFD,
    FAN_REPORT_TARGET_FID,
    FAN_REPORT_TID,
    FAN_UNLIMITED_MARKS,
    FAN_UNLIMITED_QUEUE,
    FANOTIFY_METADATA_VERSION,
    MAX_HANDLE_SZ,
    FanEvent,
    FanInfo,
    HandleKey,
    RawInfo,
    parse_events,
)
from normalizer.errors import CapabilityError, SourceError, WatchLimitError

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

_O_PATH: int = getattr(os, "O_PATH", 0o10000000)


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
    """The few libc entry points, with argtypes declared (the mask of fanotify_mark is a uint64_t); the library
    is found without a subprocess (:mod:`._libc`)."""

    def __init__(self) -> None:
        self.lib = load_libc("fanotify_init")

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
