"""Helpers for tests against the real kernel: run a source until it is quiet, renameat2, sysctl overrides."""

from __future__ import annotations

import contextlib
import ctypes
import os
import time
from collections.abc import Iterator
from pathlib import Path

from normalizer.records import Rec
from normalizer.sources.inotify import InotifySource

AT_FDCWD = -100
RENAME_EXCHANGE = 2
_libc = ctypes.CDLL(None, use_errno=True)
_renameat2 = _libc.renameat2
_renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]


def exchange(a: Path, b: Path) -> None:
    """renameat2(a, b, RENAME_EXCHANGE): swap two names atomically."""
    if _renameat2(AT_FDCWD, bytes(a), AT_FDCWD, bytes(b), RENAME_EXCHANGE) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def drain(source: InotifySource, *, quiet: float = 0.15, limit: float = 10.0) -> list[Rec]:
    """Read until nothing came for ``quiet`` seconds and nothing is pending in the matcher."""
    out: list[Rec] = []
    end = time.monotonic() + limit
    last = time.monotonic()
    while time.monotonic() < end:
        got = source.read(0.03)
        if got:
            out.extend(got)
            last = time.monotonic()
        elif time.monotonic() - last >= quiet and source.normalizer.matcher.next_deadline() is None:
            break
    return out


def rel(root: Path, path: bytes) -> str:
    """A record path relative to the test's temp dir, "" for an absent side."""
    if not path:
        return ""
    return os.path.relpath(os.fsdecode(path), str(root))


def brief(root: Path, recs: list[Rec], *, kinds: tuple[str, ...] = ()) -> list[tuple[object, ...]]:
    """(kind, relpath[, reldst], flags), optionally only for some kinds."""
    out: list[tuple[object, ...]] = []
    for r in recs:
        if kinds and r.kind not in kinds:
            continue
        if r.kind == "rename":
            out.append(("rename", rel(root, r.path), rel(root, r.dst), tuple(str(f) for f in r.flags)))
        else:
            out.append((r.kind, rel(root, r.path), tuple(str(f) for f in r.flags)))
    return out


@contextlib.contextmanager
def sysctl(name: str, value: int) -> Iterator[int]:
    """Set /proc/sys/<name> for the block and restore it in finally. Yields the original value."""
    path = Path("/proc/sys") / name.replace(".", "/")
    original = int(path.read_text())
    path.write_text(str(value))
    try:
        yield original
    finally:
        path.write_text(str(original))
