"""Include/exclude filters on paths, shared by the live sources (which directories to watch) and by the record
stream (which records to pass), so that replay applies exactly what the live session applied.

Patterns are shell globs (:mod:`fnmatch`, on bytes) matched against the final path component *and* against
the whole absolute path, so ``*.tmp`` and ``/srv/data/cache/*`` both work. ``exclude`` wins over ``include``.
An excluded directory is not watched at all (nothing below it is reported); ``include``, when given, keeps only
records whose path (either side, for a rename) matches it, while directories are still watched so that
matching files deeper down are seen.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterable, Sequence
from typing import Any

from ..errors import CaptureError
from ..records import Rec
from . import raw
from .fanotify_abi import FAN_MOVED_FROM, FAN_MOVED_TO, FAN_RENAME
from .roots import RootKind, RootSet

#: Record kinds about the stream itself, never filtered out.
_ALWAYS = frozenset({"overflow", "watch_end", "error", "unknown", "rescan"})

#: Event kinds a user can ask for (``--events``), and their inotify bits. ``rename`` asks for both halves.
#: fanotify's event bits are the same numbers, except that its single rename event is FAN_RENAME.
EVENT_BITS: dict[str, int] = {
    "access": raw.IN_ACCESS,
    "modify": raw.IN_MODIFY,
    "attrib": raw.IN_ATTRIB,
    "close_write": raw.IN_CLOSE_WRITE,
    "close_nowrite": raw.IN_CLOSE_NOWRITE,
    "open": raw.IN_OPEN,
    "rename": raw.IN_MOVED_FROM | raw.IN_MOVED_TO,
    "create": raw.IN_CREATE,
    "delete": raw.IN_DELETE,
    "delete_self": raw.IN_DELETE_SELF,
    "move_self": raw.IN_MOVE_SELF,
}
#: The rename bits of a fanotify mask.
FAN_RENAME_BITS = FAN_RENAME | FAN_MOVED_FROM | FAN_MOVED_TO


def kinds_of_mask(mask: int, *, fanotify: bool = False) -> list[str]:
    """The record kinds a mask asks for (the inverse of :func:`mask_from_kinds`); ``fanotify``: a fanotify
    mask (FAN_RENAME is ``rename`` too)."""
    out = [kind for kind, bits in EVENT_BITS.items() if mask & bits]
    if fanotify and mask & FAN_RENAME and "rename" not in out:
        out.append("rename")
    return out


def mask_from_kinds(kinds: str) -> int:
    """``"create,delete,rename"`` -> an inotify mask. ValueError names an unknown kind."""
    mask = 0
    for kind in (k.strip() for k in kinds.split(",") if k.strip()):
        if kind not in EVENT_BITS:
            raise ValueError(f"unknown event kind {kind!r} (known: {', '.join(EVENT_BITS)})")
        mask |= EVENT_BITS[kind]
    return mask


def reported_kinds(asked: int, required: int, *, fanotify: bool = False) -> list[str] | None:
    """The kinds to report when the user asked for the events of mask ``asked`` and the source must watch
    ``required`` as well to keep its watch table / directory cache right: None (report everything watched)
    if ``asked`` covers ``required``, else the kinds ``asked`` names. Both sources decide this way, so that
    ``--events`` filters what is reported and never what keeps the paths right."""
    if asked & required == required:
        return None
    return kinds_of_mask(asked, fanotify=fanotify)


def _compile(patterns: Sequence[str | bytes]) -> re.Pattern[bytes] | None:
    if not patterns:
        return None
    parts = [fnmatch.translate(os.fsdecode(p)) for p in patterns]
    return re.compile(os.fsencode("|".join(f"(?:{p})" for p in parts)), re.DOTALL)


class PathFilter:
    """Decides which directories to watch and which records to pass: by path, and by kind when ``kinds`` is
    given (the kinds the user asked for; the source may watch more than that for its own upkeep)."""

    def __init__(self, include: Sequence[str | bytes] = (), exclude: Sequence[str | bytes] = (),
                 kinds: Iterable[str] | None = None) -> None:
        self.include = [os.fsdecode(p) for p in include]
        self.exclude = [os.fsdecode(p) for p in exclude]
        self._include = _compile(include)
        self._exclude = _compile(exclude)
        self.kinds = None if kinds is None else frozenset(kinds) | _ALWAYS
        #: The session's roots when some are files or single directories (or change while running): records
        #: outside them are dropped, renames trimmed to their covered side (normalizer.core.roots).
        self.scope: RootSet | None = None

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> PathFilter:
        """The filter a session's options (a capture header's ``options``) describe."""
        kinds = options.get("kinds")
        out = cls(options.get("include", ()), options.get("exclude", ()), kinds)
        scope = options.get("scope")
        if scope:
            out.scope = RootSet(_scope_entries(scope))
        return out

    @property
    def active(self) -> bool:
        return self._include is not None or self._exclude is not None or self.kinds is not None or (
            self.scope is not None and self.scope.narrow)

    def scope_options(self) -> list[list[str | bool]] | None:
        """The roots, for a capture header's ``options`` (replay applies them), when they narrow anything."""
        if self.scope is None or not self.scope.narrow:
            return None
        return [[os.fsdecode(p), k, self.scope.present.get(p, True)] for p, k in self.scope.roots.items()]

    def _matches(self, pattern: re.Pattern[bytes], path: bytes) -> bool:
        return bool(pattern.match(path) or pattern.match(path.rpartition(b"/")[2]))

    def excluded(self, path: bytes) -> bool:
        """True if ``path`` (or, for a directory, everything below it) must not be watched or reported."""
        return self._exclude is not None and self._matches(self._exclude, path)

    def passes(self, path: bytes) -> bool:
        if not path:
            return False
        if self.excluded(path):
            return False
        return self._include is None or self._matches(self._include, path)

    def keep(self, rec: Rec) -> bool:
        """A record passes if it is about the stream itself or any of its paths passes."""
        if rec.kind in _ALWAYS:
            return True
        if self.kinds is not None and rec.kind not in self.kinds:
            return False
        if rec.kind == "rename":
            return self.passes(rec.path) or self.passes(rec.dst)
        return self.passes(rec.path)

    def apply(self, records: Iterable[Rec]) -> list[Rec]:
        if not self.active:
            return records if isinstance(records, list) else list(records)
        scope = self.scope
        if scope is not None and scope.narrow:
            records = scope.apply(records if isinstance(records, list) else list(records))
            if self._include is None and self._exclude is None and self.kinds is None:
                return records
        return [r for r in records if self.keep(r)]


def _scope_entries(scope: Any) -> list[tuple[bytes, RootKind, bool]]:
    """The roots of a capture header's ``scope`` option; :class:`CaptureError` if it is not a list of
    ``[path, "tree" | "dir" | "file", present]``."""
    out: list[tuple[bytes, RootKind, bool]] = []
    for entry in scope if isinstance(scope, list) else [scope]:
        if not (isinstance(entry, list) and len(entry) == 3 and isinstance(entry[0], str)
                and entry[1] in ("tree", "dir", "file")):
            raise CaptureError(f"bad header: option 'scope' holds {entry!r}, not [path, kind, present]", line=1)
        kind: RootKind = entry[1]
        out.append((os.fsencode(entry[0]), kind, bool(entry[2])))
    return out
