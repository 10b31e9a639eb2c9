"""Small builders shared by the tests: raw inotify events and stream items without the kernel."""

from __future__ import annotations

from normalizer.core import raw
from normalizer.core.inotify import InotifyNormalizer
from normalizer.records import Rec

MS = 1_000_000


def norm_with(*dirs: tuple[int, bytes], **options: object) -> InotifyNormalizer:
    """A normalizer whose table maps each (wd, path)."""
    n = InotifyNormalizer(**options)  # type: ignore[arg-type]
    for wd, path in dirs:
        n.feed(raw.WatchAdded(0, wd, path))
    return n


def batch(t_ms: float, *events: raw.InotifyEvent, drained: bool = True) -> raw.InotifyBatch:
    return raw.InotifyBatch(int(t_ms * MS), drained, list(events))


def frm(wd: int, cookie: int, name: bytes, is_dir: bool = False) -> raw.InotifyEvent:
    return (wd, raw.IN_MOVED_FROM | (raw.IN_ISDIR if is_dir else 0), cookie, name)


def to(wd: int, cookie: int, name: bytes, is_dir: bool = False) -> raw.InotifyEvent:
    return (wd, raw.IN_MOVED_TO | (raw.IN_ISDIR if is_dir else 0), cookie, name)


def ev(wd: int, mask: int, name: bytes = b"") -> raw.InotifyEvent:
    return (wd, mask, 0, name)


def brief(recs: list[Rec]) -> list[tuple[object, ...]]:
    """(kind, path[, dst], flags) per record: what most tests assert on."""
    out: list[tuple[object, ...]] = []
    for r in recs:
        if r.kind == "rename":
            out.append(("rename", r.path, r.dst, [str(f) for f in r.flags]))
        else:
            out.append((r.kind, r.path, [str(f) for f in r.flags]))
    return out
