"""Low-level inotify(7) binding: ctypes over libc, a non-blocking fd, and a fast event parser.

This module owns exactly one thing: turning the kernel interface into Python values. It keeps no watch table,
no paths and no clock; ``backends/inotify.py`` builds those on top of :class:`InotifyFD`.

Events come out as :data:`normalizer.core.raw.InotifyEvent` tuples ``(wd, mask, cookie, name)``, exactly as the
kernel queued them and in the kernel's order. ``name`` is the raw directory-entry name as bytes (never decoded:
Linux names are arbitrary bytes except ``/`` and NUL), ``b""`` for events on the watched object itself.

Performance notes (CPython 3.11, measured by benchmarks/bench_inotify_parse.py):

* The parse loop is the hot path. One precompiled ``struct.Struct("iIII").unpack_from`` per record plus one
  slice and ``rstrip(b"\\0")`` for the name was the fastest of the variants tried (``bytes.find`` with bounds,
  ``memoryview.cast("I").tolist()``, ``array("I")``, ``struct.iter_unpack`` over 16-byte cells, two-pass
  offset lists): ``find`` with start/end arguments costs more than the extra allocation ``rstrip`` makes,
  and per-event method calls dominate everything else. ``b"\\0" in name`` is a trap: ``bytes.__contains__``
  first tries the argument as an int and builds (then discards) a TypeError, which made it the slowest check.
* Reading uses ``os.readv`` into one preallocated bytearray, then one ``bytes()`` copy of the filled part.
  Plain ``os.read(fd, 256 KiB)`` allocates a fresh 256 KiB object per call, which glibc serves with
  mmap/munmap (the object is shrunk with realloc, never freed at full size, so malloc's dynamic mmap
  threshold never adapts): measured 16 us per 1-event read against 2.0 us for readv + copy. Only after
  something in the process has freed a block of >= 256 KiB does glibc raise that threshold, and then
  os.read is a little faster (1.5 vs 1.9 us); that depends on allocation history, readv does not. For full
  256 KiB reads the two are equal: the kernel's own copy-out (~0.3 us per event here) dominates there.
* Measured on this project's venv (pyenv CPython 3.11.7 built without PGO/LTO): ~1.3 M events/s parsed in
  256 KiB reads; the same code under Debian's PGO+LTO python3.11 runs ~1.55x faster.
* ``FIONREAD`` is issued with a reused ``array("i")`` and ``mutate_flag=True``: half the cost of passing an
  immutable bytes argument (which makes fcntl copy in and build a new bytes object out).

Not thread-safe: use one :class:`InotifyFD` from one reader thread (closing it from another thread while a read
is in flight may hit a reused fd number, as with any raw fd).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import resource
import struct
import termios
import warnings
from array import array
from collections.abc import Callable, Iterable
from typing import Final

from normalizer._compiled import PURE_ENV
from normalizer.backends._fd import OwnedFD
from normalizer.backends._libc import load_libc
from normalizer.core.raw import InotifyEvent
from normalizer.errors import SourceError, WatchLimitError

__all__ = [
    "DEFAULT_READ_BUFSIZE",
    "EVENT_HEADER_SIZE",
    "IN_CLOEXEC",
    "IN_NONBLOCK",
    "MIN_READ_BUFSIZE",
    "InotifyFD",
    "pack_events",
    "parse_events",
]

#: inotify_init1() flags; the kernel defines them as O_NONBLOCK / O_CLOEXEC (include/uapi/linux/inotify.h).
IN_NONBLOCK: Final = os.O_NONBLOCK
IN_CLOEXEC: Final = os.O_CLOEXEC

_HEADER: Final = struct.Struct("iIII")  # struct inotify_event {int wd; u32 mask; u32 cookie; u32 len;}
#: Size of the fixed part of ``struct inotify_event``.
EVENT_HEADER_SIZE: Final = _HEADER.size  # 16
_NAME_MAX: Final = 255
#: The smallest read buffer the kernel accepts for sure: one header plus the longest padded name
#: (NAME_MAX + NUL rounded up to 16). A smaller buffer makes read() fail with EINVAL when the next event has a
#: long name.
MIN_READ_BUFSIZE: Final = EVENT_HEADER_SIZE + ((_NAME_MAX + 1 + EVENT_HEADER_SIZE - 1) // EVENT_HEADER_SIZE) * (
    EVENT_HEADER_SIZE
)  # 272
DEFAULT_READ_BUFSIZE: Final = 256 * 1024

_PROC_INOTIFY: Final = "/proc/sys/fs/inotify/"
_SYSCTL_WATCHES: Final = "fs.inotify.max_user_watches"
_SYSCTL_INSTANCES: Final = "fs.inotify.max_user_instances"


# --- libc -------------------------------------------------------------------------------------------------


def _load_libc() -> ctypes.CDLL:
    """The C library with inotify_init1/inotify_add_watch/inotify_rm_watch (glibc >= 2.9, musl), found without
    a subprocess (:mod:`._libc`)."""
    lib = load_libc("inotify_init1")
    if not hasattr(lib, "inotify_init1"):
        raise SourceError("inotify is unavailable: no C library exporting inotify_init1() was found")
    return lib


_libc: Final = _load_libc()
_inotify_init1: Final = _libc.inotify_init1
_inotify_init1.argtypes = (ctypes.c_int,)
_inotify_init1.restype = ctypes.c_int
_inotify_add_watch: Final = _libc.inotify_add_watch
_inotify_add_watch.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32)
_inotify_add_watch.restype = ctypes.c_int
_inotify_rm_watch: Final = _libc.inotify_rm_watch
_inotify_rm_watch.argtypes = (ctypes.c_int, ctypes.c_int)
_inotify_rm_watch.restype = ctypes.c_int


def _read_sysctl(name: str) -> int | None:
    try:
        with open(_PROC_INOTIFY + name, "rb") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def _fd_table_full() -> bool:
    """True if this process cannot open one more fd (RLIMIT_NOFILE reached), probed by opening /dev/null."""
    try:
        probe = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        return e.errno == errno.EMFILE
    os.close(probe)
    return False


def _limit_hint(sysctl: str, current: int | None) -> str:
    if current is None:
        return f"{sysctl} could not be read; raise it with `sysctl {sysctl}=N` (as root)"
    return (
        f"{sysctl} is {current}; raise it with `sysctl {sysctl}={max(current * 2, 1024)}` (as root; add the "
        f"same setting to /etc/sysctl.d/ to keep it across reboots)"
    )


def _watch_limit_error(path: bytes) -> WatchLimitError:
    current = _read_sysctl("max_user_watches")
    return WatchLimitError(
        f"inotify watch limit reached while watching {os.fsdecode(path)!r}: every watch of every process of "
        f"this user counts, and {_limit_hint(_SYSCTL_WATCHES, current)}",
        sysctl=_SYSCTL_WATCHES,
    )


def _init_emfile_error() -> SourceError:
    """EMFILE from inotify_init1(): the per-user instance limit, or this process's fd limit.

    The kernel checks the instance count first (inotify_new_group) and allocates the fd afterwards, so when one
    more fd can still be opened, the instance limit is what failed. Racy only against other threads of this
    process opening or closing fds in between, which can only make us blame the instance limit."""
    if _fd_table_full():
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        return SourceError(
            f"cannot create an inotify instance: this process has reached its open-file limit "
            f"(RLIMIT_NOFILE soft={soft}, hard={hard}); raise it with `ulimit -n N` or "
            f"resource.setrlimit(RLIMIT_NOFILE, ...), or close unused files"
        )
    current = _read_sysctl("max_user_instances")
    return WatchLimitError(
        f"inotify instance limit reached: every inotify instance of every process of this user counts, and "
        f"{_limit_hint(_SYSCTL_INSTANCES, current)}",
        sysctl=_SYSCTL_INSTANCES,
    )


# --- parsing ----------------------------------------------------------------------------------------------

_c_parse: Callable[[bytes, int], list[InotifyEvent] | None] | None
try:
    from normalizer.backends._ringreader import parse_inotify as _c_parse
except ImportError:  # not built (no compiler at install time): the Python parser
    _c_parse = None
if os.environ.get(PURE_ENV, "") not in ("", "0"):
    _c_parse = None  # the pure-Python reference path (normalizer._compiled)


def _parse(buf: bytes, n: int) -> list[InotifyEvent]:
    """The events of ``buf[:n]`` (``buf`` must be bytes and ``0 <= n <= len(buf)``): the C parser of the
    ``_ringreader`` extension where it was built (about 10x faster; None for a truncated record), else, and
    for the exact error, :func:`_parse_py`, the reference. ``FSNORM_PURE=1`` uses the reference only."""
    if _c_parse is not None:
        events = _c_parse(buf, n)
        if events is not None:
            return events
    return _parse_py(buf, n)


def _parse_py(buf: bytes, n: int) -> list[InotifyEvent]:
    """The hot loop in Python (the reference of the C parser). ``buf`` must be bytes and ``0 <= n <= len(buf)``.

    Names are taken with ``rstrip(b"\\0")``, which equals "up to the first NUL" whenever the name itself holds
    no NUL, which is always the case for kernel data (a directory entry name cannot contain NUL).
    :func:`parse_events` checks that separately, after the loop, so the loop stays lean."""
    out: list[InotifyEvent] = []
    append = out.append
    unpack = _HEADER.unpack_from
    last = n - 16  # a header must start at or before this offset
    off = 0
    start = 0
    while off <= last:
        wd, mask, cookie, ln = unpack(buf, off)
        if ln:
            start = off + 16
            off = start + ln
            append((wd, mask, cookie, buf[start:off].rstrip(b"\0")))
        else:
            off += 16
            append((wd, mask, cookie, b""))
    if off != n:
        if off < n:
            raise ValueError(
                f"truncated inotify event header at offset {off}: {n - off} bytes left, {EVENT_HEADER_SIZE} needed"
            )
        # off > n: only the last record can overrun (the loop stops at the first one that does).
        rec = start - 16
        raise ValueError(
            f"truncated inotify event at offset {rec}: name length {off - start} needs {off - rec} bytes, "
            f"only {n - rec} left"
        )
    return out


def parse_events(buf: bytes | bytearray | memoryview, n: int | None = None) -> list[InotifyEvent]:
    """Parse the first ``n`` bytes of ``buf`` (all of it by default) as consecutive ``struct inotify_event``.

    Each name is cut at its first NUL; every other byte is kept exactly (invalid UTF-8, newlines, ...).
    Raises ValueError, naming the byte offset, if the last record is truncated (header or name running past
    ``n``); a kernel read never produces that, a fuzzer or a damaged capture may. Never loops forever: every
    record advances the offset by at least 16 bytes.
    """
    size = len(buf) if type(buf) is bytes else memoryview(buf).nbytes
    if n is None:
        n = size
    elif not 0 <= n <= size:
        raise ValueError(f"n={n} is outside the buffer (0..{size})")
    if type(buf) is not bytes:
        buf = memoryview(buf).cast("B")[:n].tobytes()
    events = _parse(buf, n)
    # Exactness for non-kernel input: a name with a NUL inside must be cut at its first NUL. One C-level
    # join + find over all names costs ~7% of the parse; a per-event check cost 30%.
    names = b"".join([e[3] for e in events])
    if names.find(b"\0") >= 0:
        events = [
            (wd, mask, cookie, name[: name.find(b"\0")]) if name.find(b"\0") >= 0 else (wd, mask, cookie, name)
            for wd, mask, cookie, name in events
        ]
    return events


def pack_events(events: Iterable[InotifyEvent]) -> bytes:
    """The inverse of :func:`parse_events`, laid out as the kernel does it: each non-empty name gets a NUL and
    is padded with NULs to a multiple of 16 bytes (``len`` counts the padding). For tests, fuzzing, benchmarks
    and synthetic replays."""
    pack = _HEADER.pack
    parts: list[bytes] = []
    for wd, mask, cookie, name in events:
        if name:
            if b"\0" in name:
                raise ValueError(f"a name cannot contain NUL: {name!r}")
            ln = (len(name) + 16) & ~15  # room for at least one NUL, rounded up to 16
            parts.append(pack(wd, mask, cookie, ln))
            parts.append(name.ljust(ln, b"\0"))
        else:
            parts.append(pack(wd, mask, cookie, 0))
    return b"".join(parts)


# --- the fd -----------------------------------------------------------------------------------------------


def _check_path(path: bytes | str | os.PathLike[str] | os.PathLike[bytes]) -> bytes:
    p = os.fsencode(path)
    if b"\0" in p:  # ctypes would silently cut the string at the NUL and watch another path
        raise ValueError(f"embedded NUL byte in path {p!r}")
    return p


class InotifyFD(OwnedFD):
    """One inotify instance (``inotify_init1(IN_NONBLOCK | IN_CLOEXEC)``).

    Keep all watches of one session in one instance: rename cookies only pair up within an instance.
    """

    __slots__ = ("__weakref__", "_buf", "_fionread", "_view", "last_read_bytes")
    _what = "InotifyFD"

    def __init__(self, flags: int = IN_NONBLOCK | IN_CLOEXEC) -> None:
        self._fd = -1  # so close()/__del__ work even if init fails
        while True:
            fd = _inotify_init1(flags)
            if fd >= 0:
                break
            e = ctypes.get_errno()
            if e == errno.EINTR:
                continue
            if e == errno.EMFILE:
                raise _init_emfile_error() from OSError(e, os.strerror(e))
            raise OSError(e, f"inotify_init1: {os.strerror(e)}")
        self._fd = fd
        self._buf = bytearray(DEFAULT_READ_BUFSIZE)
        self._view = memoryview(self._buf)
        self._fionread = array("i", [0])
        #: Bytes the last read_events() call returned (0 when nothing was queued).
        self.last_read_bytes = 0

    # -- lifecycle: fileno, closed, close and the context manager come from OwnedFD --

    def __del__(self) -> None:
        if getattr(self, "_fd", -1) >= 0:
            warnings.warn(f"unclosed {self!r}", ResourceWarning, stacklevel=2, source=self)
            self.close()

    def __repr__(self) -> str:
        return f"<InotifyFD fd={self._fd}>" if self._fd >= 0 else "<InotifyFD closed>"

    # -- watches --

    def add_watch(self, path: bytes | str | os.PathLike[str] | os.PathLike[bytes], mask: int) -> int:
        """``inotify_add_watch(fd, path, mask)``: the watch descriptor.

        The kernel returns the *existing* wd if the inode is already watched by this instance (replacing its
        mask, or OR-ing into it with IN_MASK_ADD). Raises WatchLimitError on ENOSPC (names
        fs.inotify.max_user_watches and its value), and an OSError subclass carrying the path otherwise:
        FileNotFoundError (ENOENT), NotADirectoryError (ENOTDIR, with IN_ONLYDIR), PermissionError (EACCES),
        FileExistsError (EEXIST, with IN_MASK_CREATE), OSError(EINVAL) for a bad mask, ...
        """
        p = _check_path(path)
        fd = self.fileno()
        while True:
            wd: int = _inotify_add_watch(fd, p, mask & 0xFFFFFFFF)
            if wd >= 0:
                return wd
            e = ctypes.get_errno()
            if e == errno.EINTR:
                continue
            if e == errno.ENOSPC:
                raise _watch_limit_error(p) from OSError(e, os.strerror(e), os.fspath(path))
            # OSError(errno, ...) instantiates the matching builtin subclass (FileNotFoundError, ...).
            raise OSError(e, os.strerror(e), os.fspath(path))

    def rm_watch(self, wd: int) -> bool:
        """``inotify_rm_watch(fd, wd)``. True if the watch was removed (an IN_IGNORED for it will follow);
        False if the kernel no longer knows ``wd`` (EINVAL: already removed, its inode gone, its filesystem
        unmounted, or never valid). Other errors raise OSError."""
        fd = self.fileno()
        while True:
            if _inotify_rm_watch(fd, wd) == 0:
                return True
            e = ctypes.get_errno()
            if e == errno.EINTR:
                continue
            if e == errno.EINVAL:
                return False
            raise OSError(e, f"inotify_rm_watch(wd={wd}): {os.strerror(e)}")

    # -- reading --

    def pending_bytes(self) -> int:
        """Bytes of events queued in the kernel and not yet read (FIONREAD). 0 means the queue is drained."""
        fionread = self._fionread
        fcntl.ioctl(self.fileno(), termios.FIONREAD, fionread, True)
        return fionread[0]

    def read_events(self, bufsize: int = DEFAULT_READ_BUFSIZE) -> list[InotifyEvent]:
        """One non-blocking read of at most ``bufsize`` bytes, parsed. ``[]`` if nothing is queued (EAGAIN).

        The kernel only returns whole events; call :meth:`pending_bytes` afterwards to learn whether more are
        waiting. ``bufsize`` must be at least MIN_READ_BUFSIZE (272), or the kernel may fail with EINVAL.
        """
        fd = self.fileno()
        if bufsize == DEFAULT_READ_BUFSIZE:
            view = self._view
        elif bufsize < MIN_READ_BUFSIZE:
            raise ValueError(f"bufsize={bufsize} is below the minimum of {MIN_READ_BUFSIZE} bytes")
        else:
            if bufsize > len(self._buf):
                self._buf = bytearray(bufsize)
                self._view = memoryview(self._buf)
            view = self._view[:bufsize]
        try:
            n = os.readv(fd, (view,))
        except BlockingIOError:
            self.last_read_bytes = 0
            return []
        self.last_read_bytes = n
        # One copy of the filled part into bytes: slices of bytes are bytes, and bytes slicing is the fastest.
        return _parse(bytes(view[:n]), n)
