"""The watch table: which watch descriptor stands for which directory, kept current as the tree changes.

Paths are bytes and absolute. A directory renamed inside the tree keeps its wd, so every path *below* it must
be rewritten at once; a sorted map from path to wd makes that a range operation (every key in
``[old + b"/", old + b"0")`` is below ``old``, because ``b"0"`` is the byte right after ``b"/"``).
"""

from __future__ import annotations

from sortedcontainers import SortedDict


def join(dir_path: bytes, name: bytes) -> bytes:
    """``dir_path/name`` without doubling the root's slash."""
    if not name:
        return dir_path
    return (dir_path if dir_path.endswith(b"/") else dir_path + b"/") + name


class WatchTable:
    """wd <-> directory path, both ways, with subtree moves and removals."""

    def __init__(self) -> None:
        self._path_by_wd: dict[int, bytes] = {}
        #: ``path + b"/"`` by wd: the hot loop builds a child's path with one concatenation.
        self.prefix_by_wd: dict[int, bytes] = {}
        self._wd_by_path: SortedDict = SortedDict()

    def __len__(self) -> int:
        return len(self._path_by_wd)

    def __contains__(self, wd: object) -> bool:
        return wd in self._path_by_wd

    def items(self) -> list[tuple[int, bytes]]:
        """(wd, path) pairs, sorted by path."""
        return [(wd, path) for path, wd in self._wd_by_path.items()]

    def path(self, wd: int) -> bytes | None:
        return self._path_by_wd.get(wd)

    def wd(self, path: bytes) -> int | None:
        wd: int | None = self._wd_by_path.get(path)
        return wd

    def add(self, wd: int, path: bytes) -> None:
        """Map ``wd`` to ``path``, replacing whatever either was mapped to before."""
        old = self._path_by_wd.get(wd)
        if old is not None and self._wd_by_path.get(old) == wd:
            del self._wd_by_path[old]
        other = self._wd_by_path.get(path)
        if other is not None and other != wd:
            self._forget(other)
        self._set(wd, path)

    def remove(self, wd: int) -> bytes | None:
        """Forget ``wd``; return the path it had."""
        path = self._path_by_wd.get(wd)
        if path is not None:
            self._forget(wd)
        return path

    def below(self, path: bytes) -> list[tuple[bytes, int]]:
        """(path, wd) for ``path`` itself (if watched) and every watched directory under it."""
        out: list[tuple[bytes, int]] = []
        wd = self._wd_by_path.get(path)
        if wd is not None:
            out.append((path, wd))
        lo, hi = self._range(path)
        out.extend((p, self._wd_by_path[p]) for p in self._wd_by_path.irange(lo, hi, inclusive=(True, False))
                   if p != path)  # a path ending in "/" (the root "/") falls in its own range
        return out

    def move(self, old: bytes, new: bytes) -> int:
        """A directory moved from ``old`` to ``new``: rewrite it and everything below. Returns how many."""
        if old == new:
            return 0
        moved = self.below(old)
        for _, wd in moved:
            self._forget(wd)
        base, new_base = old.rstrip(b"/"), new.rstrip(b"/")
        for path, wd in moved:
            self._set(wd, new if path == old else new_base + path[len(base):])
        return len(moved)

    def remove_below(self, path: bytes) -> list[int]:
        """Forget ``path`` and everything under it; return their wds (the source removes the kernel watches)."""
        gone = [wd for _, wd in self.below(path)]
        for wd in gone:
            self._forget(wd)
        return gone

    @staticmethod
    def _range(path: bytes) -> tuple[bytes, bytes]:
        base = path.rstrip(b"/")
        return base + b"/", base + b"0"

    def _set(self, wd: int, path: bytes) -> None:
        self._path_by_wd[wd] = path
        self.prefix_by_wd[wd] = path if path.endswith(b"/") else path + b"/"
        self._wd_by_path[path] = wd

    def _forget(self, wd: int) -> None:
        path = self._path_by_wd.pop(wd)
        del self.prefix_by_wd[wd]
        if self._wd_by_path.get(path) == wd:
            del self._wd_by_path[path]
