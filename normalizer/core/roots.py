"""What a session watches, root by root: directory trees, single directories, single files (sans-IO).

The kernel side is coarser than what a user asks for: a file is watched through its directory (inotify and
fanotify report a directory's entries by name, and only a directory watch sees a name appear, vanish or be
renamed onto), a single directory under a fanotify filesystem mark is reported with everything below it, and
two overlapping roots share their watches (one inotify wd per inode, one fanotify mark per inode). So every
record is checked against the roots here, after the normalizer: a record passes if its path is *covered* by a
root, and only once, however many roots cover it (the kernel gave one event, the normalizer one record).

* ``tree``: the root and everything below it (the default).
* ``dir``: the root and its direct entries (``recursive=False``). A subdirectory's creation, deletion and
  renames are entries of the root; its content is not.
* ``file``: that one path. The watch follows the *path*, not the inode: a rename onto it (an editor's atomic
  save) is one ``rename`` record with the temporary file as ``src`` and, if a file was there, the ``replaced``
  flag; a rename away from it is one-sided (``dst`` empty, ``unwatched``), as is any move out of the watched
  set; a delete then a create are reported as such. What was there is followed from the records themselves
  (``present``), starting from what the source found when it started.

A rename with one side covered keeps that side only (the other becomes empty and the record ``unwatched``),
as the kernel does for a side outside the watched directories -- except the source of a rename onto a
watched file from its own directory (the temporary file of a save), which is what the user wants to see.

Roots may be added and removed while running (:meth:`RootSet.add`, :meth:`RootSet.remove`); the source asks
:meth:`RootSet.needed` which directories must stay watched.

A root allowed to be missing (``missing_ok``) that does not exist is *waiting*: the source watches its nearest
existing ancestor (its *guard*, :meth:`RootSet.guard`) and only the root's own path is covered, so the record
of its appearance (a create or a rename onto it, seen in its parent) is reported. Every record about the
root's path or one of its ancestors puts the root in ``wakeups``: the source then looks again (I/O) and either
moves the guard down, or watches the root that is now there (:meth:`RootSet.appeared`, its content reported
as ``synthesized`` creates). A waiting root's watch ending (deleted, moved away) makes it wait again
(:meth:`RootSet.wait`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from ..records import Flag, Rec

RootKind = Literal["tree", "dir", "file"]
#: Records about the stream itself: they pass whatever the roots (``watch_end`` is looked at first).
_STREAM_KINDS = frozenset({"overflow", "error", "unknown"})


def parent_of(path: bytes) -> bytes:
    """The directory ``path`` is in (``/`` for a top-level entry)."""
    return path.rstrip(b"/").rpartition(b"/")[0] or b"/"


class RootSet:
    """The roots of a session and the record filter they imply (module docstring).

    ``roots`` maps each root path to its kind, in the order they were given; for a file root, ``present``
    says whether something is at its path now."""

    def __init__(self, roots: Iterable[tuple[bytes, RootKind, bool]] = ()) -> None:
        self.roots: dict[bytes, RootKind] = {}
        self.present: dict[bytes, bool] = {}
        #: True once a root was added or removed while running: records of removed roots may still be queued.
        self.changed = False
        #: Roots that may be missing; those waiting now (-> the kind they take if a directory appears), their
        #: guards, those to look at again, and those whose appearance a record has reported.
        self.missing_ok: set[bytes] = set()
        self.waiting: dict[bytes, RootKind] = {}
        self.guards: dict[bytes, bytes] = {}
        self.wakeups: set[bytes] = set()
        self._announced: set[bytes] = set()
        self._trees: list[tuple[bytes, bytes]] = []
        self._dirs: set[bytes] = set()
        for path, kind, present in roots:
            self._put(path, kind, present)
        self._changed_or_narrow()

    # -- the roots -----------------------------------------------------------------------------------------

    def _put(self, path: bytes, kind: RootKind, present: bool) -> None:
        path = path.rstrip(b"/") or b"/"
        old = self.roots.pop(path, None)
        if old is not None:
            self._drop(path, old)
        self.roots[path] = kind
        if kind == "tree":
            self._trees.append((path, path if path.endswith(b"/") else path + b"/"))
        elif kind == "dir":
            self._dirs.add(path)
        else:
            self.present[path] = present

    def _drop(self, path: bytes, kind: RootKind) -> None:
        if self.waiting.pop(path, None) is not None:
            self.guards.pop(path, None)
            return
        if kind == "tree":
            self._trees = [t for t in self._trees if t[0] != path]
        elif kind == "dir":
            self._dirs.discard(path)
        else:
            self.present.pop(path, None)

    def _changed_or_narrow(self) -> None:
        #: True if some record the sources produce may fall outside every root (the filter must run).
        self.narrow = self.changed or bool(self.missing_ok) or any(kind != "tree" for kind in self.roots.values())

    def add(self, path: bytes, kind: RootKind, present: bool = True) -> None:
        """A root added while running (replacing one at the same path)."""
        self._put(path, kind, present)
        self.changed = True
        self._changed_or_narrow()

    def remove(self, path: bytes) -> RootKind | None:
        """Forget a root; its kind, or None if it was not one."""
        path = path.rstrip(b"/") or b"/"
        kind = self.roots.pop(path, None)
        if kind is not None:
            self._drop(path, kind)
            self.missing_ok.discard(path)
            self.wakeups.discard(path)
            self.changed = True
            self._changed_or_narrow()
        return kind

    def add_waiting(self, path: bytes, kind: RootKind, guard: bytes) -> None:
        """A root allowed to be missing, which is: ``kind`` is what it becomes if a directory appears."""
        self._put(path, kind, False)
        self.missing_ok.add(path)
        self.wait(path, guard)

    def wait(self, path: bytes, guard: bytes) -> None:
        """The root ``path`` (missing now) waits, watched through the existing directory ``guard``."""
        kind = self.roots[path]
        if path not in self.waiting:
            self._drop(path, kind)
            self.waiting[path] = "tree" if kind == "file" else kind
        self.guards[path] = guard
        self._announced.discard(path)
        self._changed_or_narrow()

    def appeared(self, path: bytes, is_dir: bool) -> bool:
        """The waiting root ``path`` exists now (a directory or not): it is covered as such from now on.
        True if a record already reported its appearance."""
        kind = self.waiting.pop(path)
        self.guards.pop(path, None)
        self._put(path, kind if is_dir else "file", True)
        announced = path in self._announced
        self._announced.discard(path)
        return announced

    def take_wakeups(self) -> list[bytes]:
        out = sorted(self.wakeups)
        self.wakeups.clear()
        return out

    def top_dirs(self) -> list[bytes]:
        """The directories the source watches (marks) at the top: each tree and directory root, the
        directory of each file root and the guard of each waiting root, once each, in the roots' order."""
        return list(dict.fromkeys(
            self.guards[p] if p in self.waiting else parent_of(p) if k == "file" else p
            for p, k in self.roots.items()))

    def recursive_at(self, path: bytes) -> bool:
        """True if the directory ``path`` is inside a tree root: it is watched with everything below it."""
        return any(path == root or path.startswith(prefix) for root, prefix in self._trees)

    def needed(self, directory: bytes) -> bool:
        """True if the directory ``directory`` must be watched for the current roots."""
        return self.recursive_at(directory) or directory in self._dirs or any(
            parent_of(f) == directory for f in self.present) or directory in self.guards.values()

    def wants_watch(self, directory: bytes) -> bool:
        """True if a directory that appeared at ``directory`` must be watched: inside a tree root, or a
        directory root itself."""
        return directory in self._dirs or self.recursive_at(directory)

    def covers(self, path: bytes) -> bool:
        """True if records about ``path`` are reported."""
        if path in self.present or path in self._dirs or path in self.waiting:
            return True
        if self._dirs and parent_of(path) in self._dirs:
            return True
        return self.recursive_at(path)

    # -- the records ---------------------------------------------------------------------------------------

    def apply(self, records: list[Rec]) -> list[Rec]:
        """The records that concern the roots, in order (renames trimmed to their covered side)."""
        out: list[Rec] = []
        look_again = self._look_again if self.missing_ok else None
        for rec in records:
            if look_again is not None:
                look_again(rec)
            kind = rec.kind
            if kind == "rename":
                self._rename(rec, out)
            elif kind == "watch_end":
                self._watch_end(rec, out)
            elif kind in _STREAM_KINDS or not rec.path:
                out.append(rec)
            else:
                if rec.path in self.present and kind in ("create", "delete"):
                    self.present[rec.path] = kind == "create"
                elif kind == "create" and rec.path in self.waiting:
                    self._announced.add(rec.path)
                elif kind == "delete":
                    self._announced.discard(rec.path)
                if self.covers(rec.path):
                    out.append(rec)
        return out

    def _look_again(self, rec: Rec) -> None:
        """Note the roots allowed to be missing that ``rec`` may concern: a waiting root whose path or an
        ancestor's appears or changes, a live one whose watch ended."""
        paths = (rec.path, rec.dst) if rec.kind == "rename" else (rec.path,)
        ended = rec.kind == "watch_end"
        for root in self.missing_ok:
            for p in paths:
                if p and self._concerns(root, p, ended):
                    self.wakeups.add(root)

    def _concerns(self, root: bytes, p: bytes, ended: bool) -> bool:
        if root in self.waiting:
            return p == root or root.startswith(p.rstrip(b"/") + b"/")
        return ended and (p == root or (root in self.present and parent_of(root) == p))

    def _rename(self, rec: Rec, out: list[Rec]) -> None:
        src, dst = rec.path, rec.dst
        present = self.present
        replaced = (dst in present and present[dst]) or dst in self._announced
        if src in self.waiting:
            self._announced.discard(src)
        if dst in self.waiting:
            self._announced.add(dst)
        if src in present:
            present[src] = False
        if dst in present:
            present[dst] = True
        src_in = bool(src) and self.covers(src)
        dst_in = bool(dst) and self.covers(dst)
        if src_in and dst_in:
            if replaced:
                rec.flags = (*rec.flags, Flag.REPLACED.value)
            out.append(rec)
        elif dst_in:
            if (dst in present or dst in self.waiting) and src and parent_of(src) == parent_of(dst):
                # An atomic save: the temporary file beside the watched one is the source the user wants.
                rec.flags = (*rec.flags, Flag.REPLACED.value) if replaced else rec.flags
            elif src:
                rec.path = b""
                rec.flags = _with_unwatched(rec.flags)
            out.append(rec)
        elif src_in:
            if dst:
                rec.dst = b""
                rec.flags = _with_unwatched(rec.flags)
            out.append(rec)

    def _watch_end(self, rec: Rec, out: list[Rec]) -> None:
        """A watch ended. The watch of a file root's directory ending (deleted, moved away, removed) ends the
        file root too: a file still there moved away with its directory (a one-sided rename), then a
        ``watch_end`` for the file. The record itself passes unless it is only about such a directory."""
        path = rec.path
        files = [f for f in self.present if parent_of(f) == path] if path else []
        guarded = [r for r, g in self.guards.items() if g == path] if path else []
        if not (files or guarded) or self.covers(path):
            out.append(rec)
        for r in guarded:  # what arrived at a waiting root went away with its guard (its parent)
            if r in self._announced:
                self._announced.discard(r)
                out.append(Rec("rename", r, False, rec.t_ns, 0, None, b"", (Flag.UNWATCHED.value,)))
        for f in files:
            if self.present[f]:
                out.append(Rec("rename", f, False, rec.t_ns, 0, None, b"", (Flag.UNWATCHED.value,)))
                self.present[f] = False
            if f in self.missing_ok:
                continue  # it waits: the source looks again (wakeups) and watches its nearest ancestor
            end = Rec.note("watch_end", f, False, rec.t_ns, 0, message="the directory of this watched file "
                           "was deleted or moved away; the file is no longer watched")
            if rec.source != "inotify":
                end.source = rec.source
            out.append(end)
            self.remove(f)


def _with_unwatched(flags: tuple[str, ...]) -> tuple[str, ...]:
    return flags if Flag.UNWATCHED.value in flags else (Flag.UNWATCHED.value, *flags)
