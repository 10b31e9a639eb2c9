"""Which directory a kernel key stands for, kept current as the tree changes.

inotify names a directory by its watch descriptor (:data:`WatchTable`, keyed by ``int``), fanotify by its file
handle (:data:`DirCache`, keyed by the fid ``bytes``); both are a :class:`PathTable`. Paths are bytes and
absolute. A directory renamed inside the tree keeps its key, so every path *below* it must be rewritten at once;
a sorted map from path to key makes that a range operation (every key in ``[old + b"/", old + b"0")`` is below
``old``, because ``b"0"`` is the byte right after ``b"/"``).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

from sortedcontainers import SortedDict

K = TypeVar("K", bound=Hashable)


def join(dir_path: bytes, name: bytes) -> bytes:
    """``dir_path/name`` without doubling the root's slash."""
    if not name:
        return dir_path
    return (dir_path if dir_path.endswith(b"/") else dir_path + b"/") + name


class PathTable(Generic[K]):
    """key <-> directory path, both ways, with subtree moves and removals."""

    def __init__(self) -> None:
        self._path_by_key: dict[K, bytes] = {}
        #: ``path + b"/"`` by key: the hot loops build a child's path with one concatenation. Typed to accept
        #: None as a key (fanotify's hot loop looks up an absent side's None without a test); None is never
        #: stored.
        self.prefix_by_key: dict[K | None, bytes] = {}
        self._key_by_path: SortedDict = SortedDict()

    def __len__(self) -> int:
        return len(self._path_by_key)

    def __contains__(self, key: object) -> bool:
        return key in self._path_by_key

    def items(self) -> list[tuple[K, bytes]]:
        """(key, path) pairs, sorted by path."""
        return [(key, path) for path, key in self._key_by_path.items()]

    def paths(self) -> list[bytes]:
        """The paths, sorted."""
        return list(self._key_by_path)

    def path(self, key: K) -> bytes | None:
        return self._path_by_key.get(key)

    def key(self, path: bytes) -> K | None:
        key: K | None = self._key_by_path.get(path)
        return key

    def add(self, key: K, path: bytes) -> None:
        """Map ``key`` to ``path``, replacing whatever either was mapped to before."""
        old = self._path_by_key.get(key)
        if old is not None and self._key_by_path.get(old) == key:
            del self._key_by_path[old]
        other = self._key_by_path.get(path)
        if other is not None and other != key:
            self._forget(other)
        self._set(key, path)

    def remove(self, key: K) -> bytes | None:
        """Forget ``key``; return the path it had."""
        path = self._path_by_key.get(key)
        if path is not None:
            self._forget(key)
        return path

    def below(self, path: bytes) -> list[tuple[bytes, K]]:
        """(path, key) for ``path`` itself (if known) and every known directory under it."""
        out: list[tuple[bytes, K]] = []
        key = self._key_by_path.get(path)
        if key is not None:
            out.append((path, key))
        lo, hi = self._range(path)
        out.extend((p, self._key_by_path[p]) for p in self._key_by_path.irange(lo, hi, inclusive=(True, False))
                   if p != path)  # a path ending in "/" (the root "/") falls in its own range
        return out

    def move(self, old: bytes, new: bytes) -> int:
        """A directory moved from ``old`` to ``new``: rewrite it and everything below. Returns how many."""
        if old == new:
            return 0
        moved = self.below(old)
        for _, key in moved:
            self._forget(key)
        base, new_base = old.rstrip(b"/"), new.rstrip(b"/")
        for path, key in moved:
            self._place(key, new if path == old else new_base + path[len(base):])
        return len(moved)

    def remove_below(self, path: bytes) -> list[K]:
        """Forget ``path`` and everything under it; return their keys (the source removes the kernel watches)."""
        gone = [key for _, key in self.below(path)]
        for key in gone:
            self._forget(key)
        return gone

    @staticmethod
    def _range(path: bytes) -> tuple[bytes, bytes]:
        base = path.rstrip(b"/")
        return base + b"/", base + b"0"

    def _place(self, key: K, path: bytes) -> None:
        """Put a moved key at its new path. By default a key already mapped to that path (a directory the move
        replaced) keeps its entry until its own end is reported (inotify: DELETE_SELF, IN_IGNORED)."""
        self._set(key, path)

    def _set(self, key: K, path: bytes) -> None:
        self._path_by_key[key] = path
        self.prefix_by_key[key] = path if path.endswith(b"/") else path + b"/"
        self._key_by_path[path] = key

    def _forget(self, key: K) -> None:
        path = self._path_by_key.pop(key)
        del self.prefix_by_key[key]
        if self._key_by_path.get(path) == key:
            del self._key_by_path[path]


class WatchTable(PathTable[int]):
    """inotify's table: watch descriptor <-> directory path."""


class DirCache(PathTable[bytes]):
    """fanotify's cache: directory fid (see :func:`normalizer.core.raw.fid_pack`) <-> directory path."""

    def _place(self, key: bytes, path: bytes) -> None:
        """A directory a move replaced is forgotten at once: its fid is then unknown, and the fanotify
        normalizer drops the events of an unknown directory (it resolves none here; see its module doc)."""
        self.add(key, path)
