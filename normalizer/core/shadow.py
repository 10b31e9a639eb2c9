"""The shadow tree: what fsnorm believes the watched tree contains, kept current from the records themselves,
so that a rescan after an overflow can report exactly the differences (``--rescan``).

Only used when rescan is enabled: it costs one dict entry per file and directory. Modifications are not
tracked per file; instead a rescan reports as ``modify`` every file whose mtime is not older than the last
read before the overflow (events about it may have been lost), which errs on the side of telling too much.
"""

from __future__ import annotations

from collections.abc import Iterable

from sortedcontainers import SortedDict

from ..records import Rec


def _below(path: bytes) -> tuple[bytes, bytes]:
    base = path.rstrip(b"/")
    return base + b"/", base + b"0"


class ShadowTree:
    """path -> is_dir for everything under the watched roots."""

    def __init__(self) -> None:
        self._entries: SortedDict = SortedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, path: object) -> bool:
        return path in self._entries

    def snapshot(self) -> dict[bytes, bool]:
        return dict(self._entries)

    def replace(self, entries: dict[bytes, bool]) -> None:
        self._entries = SortedDict(entries)

    def add(self, path: bytes, is_dir: bool) -> None:
        self._entries[path] = is_dir

    def remove(self, path: bytes) -> None:
        self._entries.pop(path, None)
        lo, hi = _below(path)
        for key in list(self._entries.irange(lo, hi, inclusive=(True, False))):
            self._entries.pop(key, None)

    def move(self, src: bytes, dst: bytes, is_dir: bool) -> None:
        lo, hi = _below(src)
        below = [(k, self._entries[k]) for k in self._entries.irange(lo, hi, inclusive=(True, False))
                 if k != src]
        self.remove(src)
        self._entries[dst] = is_dir
        base, new_base = src.rstrip(b"/"), dst.rstrip(b"/")
        for key, value in below:
            self._entries[new_base + key[len(base):]] = value

    def apply(self, records: Iterable[Rec]) -> None:
        """Follow the tree through what the records say happened."""
        for rec in records:
            kind = rec.kind
            if kind == "create":
                self._entries[rec.path] = rec.is_dir
            elif kind == "delete":
                self.remove(rec.path)
            elif kind == "rename":
                if rec.path and rec.dst:
                    self.move(rec.path, rec.dst, rec.is_dir)
                elif rec.path:
                    self.remove(rec.path)
                else:
                    self._entries[rec.dst] = rec.is_dir
            elif kind == "watch_end" and rec.message and "root" in rec.message:
                self.remove(rec.path)
