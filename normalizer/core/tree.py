"""Which directory a kernel key stands for, kept current as the tree changes.

inotify names a directory by its watch descriptor (:data:`WatchTable`, keyed by ``int``), fanotify by its file
handle (:data:`DirCache`, keyed by the fid ``bytes``); both are a :class:`PathTable`. Paths are bytes and
absolute. A directory renamed inside the tree keeps its key, so every path *below* it must be rewritten at once;
a sorted map from path to key makes that a range operation (every key in ``[old + b"/", old + b"0")`` is below
``old``, because ``b"0"`` is the byte right after ``b"/"``).

A directory moved onto a path where another known directory sits does not erase that one: the occupant and
its subtree are *displaced* (out of the path index, still known by key with the path they had). Either it was
replaced (an empty directory renamed over; its DELETE_SELF / IN_IGNORED ends it, at the path it had) or it is
the other side of a ``renameat2(RENAME_EXCHANGE)``, whose second half moves it to where the first one came
from: :meth:`PathTable.move` then moves the displaced subtree (the caller passes the moved directory's key when
it has one, as fanotify does; inotify has none, and the second half of an exchange is recognised by its paths:
from where the first half went, to where it came from).
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
        #: Displaced subtrees (module docstring) by the path they were displaced at: (keys, the path the
        #: directory that displaced them came from); and each displaced key's group path.
        self._displaced: dict[bytes, tuple[list[K], bytes]] = {}
        self._group_of: dict[K, bytes] = {}

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
        self._undisplace(key)
        old = self._path_by_key.get(key)
        if old is not None and self._key_by_path.get(old) == key:
            del self._key_by_path[old]
        other = self._key_by_path.get(path)
        if other is not None and other != key:
            self._forget(other)
        self._set(key, path)

    def arrive(self, key: K, path: bytes) -> None:
        """``key``, which the table does not know where it came from, was renamed to ``path``: as :meth:`add`,
        but a known directory at ``path`` is displaced with its subtree (module docstring), as :meth:`move`
        does, not forgotten. It was replaced (its end comes by its key), or it is the other side of an exchange
        whose other half, read next, moves it on by its key (forgotten, it was lost with what is below it)."""
        other = self._key_by_path.get(path)
        if other is not None and other != key:
            self._displace(path, b"")
        self.add(key, path)

    def remove(self, key: K) -> bytes | None:
        """Forget ``key``; return the path it had."""
        path = self._path_by_key.get(key)
        if path is not None:
            self._undisplace(key)
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

    def move(self, old: bytes, new: bytes, key: K | None = None) -> int:
        """A directory (``key``, when the caller knows it) moved from ``old`` to ``new``: rewrite it and
        everything below; displace what was known at ``new`` and below. Returns how many moved."""
        if old == new:
            return 0
        group = self._group_of.get(key) if key is not None else None
        if group is not None and self._path_by_key[key] != group:  # type: ignore[index]
            group = None  # a directory below a displaced one: not what the group's second half moves
        if group is None and key is None and old in self._displaced and self._displaced[old][1] == new:
            group = old  # the second half of an exchange (module docstring)
        if group is not None:
            keys, _ = self._displaced.pop(group)
            for k in keys:
                del self._group_of[k]
            base = group.rstrip(b"/")
            moved = [(self._path_by_key[k], k) for k in keys]
        else:
            base = old.rstrip(b"/")
            moved = self.below(old)
            for _, k in moved:
                self._forget(k)
        self._displace(new, old)
        new_base = new.rstrip(b"/")
        for path, k in moved:
            self._set(k, new if path.rstrip(b"/") == base else new_base + path[len(base):])
        return len(moved)

    def _displace(self, path: bytes, by_move_from: bytes) -> None:
        """Take ``path`` and what is below it out of the path index (a move is about to land there)."""
        occupants = self.below(path)
        if not occupants:
            return
        keys = [k for _, k in occupants]
        for k in keys:
            self._undisplace(k)
            del self._key_by_path[self._path_by_key[k]]
        previous = self._displaced.get(path)
        if previous is not None:  # an older displaced group there (a replaced directory not yet ended)
            for k in previous[0]:
                self._group_of.pop(k, None)
        self._displaced[path] = (keys, by_move_from)
        for k in keys:
            self._group_of[k] = path

    def _undisplace(self, key: K) -> None:
        """``key`` is no longer displaced (removed, or mapped anew)."""
        group = self._group_of.pop(key, None)
        if group is None:
            return
        keys = self._displaced[group][0]
        keys.remove(key)
        if not keys:
            del self._displaced[group]

    def remove_subtree(self, key: K) -> list[K]:
        """Forget the directory ``key`` and every directory below it, found by its key wherever the table has
        it: at its path, or displaced (then what is displaced with it below it; never what took its place).
        Returns their keys (``[]`` if ``key`` is not known)."""
        path = self._path_by_key.get(key)
        if path is None:
            return []
        if self._key_by_path.get(path) == key:
            return self.remove_below(path)
        group = self._group_of.get(key)
        base = path.rstrip(b"/") + b"/"
        gone = [key] if group is None else [
            k for k in self._displaced[group][0] if k == key or self._path_by_key[k].startswith(base)]
        for k in gone:
            self._undisplace(k)
            self._forget(k)
        return gone

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
