"""Exports: the server's roots as clients see them (``NAME/rel/path``), and the checks on a client's ``--path``.

A server never shows a client its absolute paths: every record path is made relative to the export that holds
it and prefixed with the export's name. A subscription path is taken apart as text; the only file-system access
it ever causes is ``lstat`` of its components under the export root, to refuse one that goes through a symlink
(a client must not be able to name a place outside the export, even one that would only filter records).
Nothing a client sends is opened or resolved as an object id.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import ProtocolError
from . import wire


@dataclass(frozen=True, slots=True)
class Export:
    name: bytes
    root: bytes  #: absolute, symlink-free

    @property
    def prefix(self) -> bytes:
        return self.root.rstrip(b"/") + b"/"


def make_exports(pairs: Sequence[tuple[str | None, str]]) -> list[Export]:
    """Exports from ``(name or None, root)``: the root's real path, the name defaulting to its base name.
    Raises ValueError for a bad or duplicate name, or a root that is not a directory."""
    out: list[Export] = []
    for name, root in pairs:
        real = os.path.realpath(os.fsencode(root))
        if not os.path.isdir(real):
            raise ValueError(f"export root {root!r} is not a directory")
        bname = os.fsencode(name) if name is not None else os.path.basename(real.rstrip(b"/")) or b"root"
        try:
            wire.check_export_name(bname)
        except ProtocolError as exc:
            raise ValueError(f"{exc} (use --export NAME=ROOT)") from None
        if any(e.name == bname for e in out):
            raise ValueError(f"two exports named {os.fsdecode(bname)!r} (use --export NAME=ROOT)")
        out.append(Export(bname, real))
    return out


class PathMap:
    """Absolute server paths -> export paths. The longest root wins (an export inside another)."""

    def __init__(self, exports: Sequence[Export]) -> None:
        self.exports = sorted(exports, key=lambda e: len(e.root), reverse=True)

    def to_export(self, path: bytes) -> bytes:
        """``NAME/rel`` for a path under an export, ``NAME`` for a root itself, ``b""`` for anything else."""
        if not path:
            return b""
        for e in self.exports:
            if path == e.root:
                return e.name
            if path.startswith(e.prefix):
                return e.name + b"/" + path[len(e.prefix):]
        return b""

    def scrub(self, message: str | None) -> str | None:
        """A message with every export root replaced by the export name (no absolute path leaks)."""
        if not message:
            return message
        for e in self.exports:
            message = message.replace(os.fsdecode(e.root), os.fsdecode(e.name))
        return message


def check_subscription_path(path: bytes, exports: Sequence[Export]) -> bytes:
    """The normalized subscription path (``b""``: everything), or ProtocolError(E_PATH) saying why not."""
    if not path:
        return b""
    shown = path.decode("utf-8", "backslashreplace")

    def refuse(why: str) -> ProtocolError:
        return ProtocolError(f"path {shown!r} refused: {why}", code=wire.E_PATH)

    if path.startswith(b"/"):
        raise refuse("absolute paths are not allowed; give EXPORT/SUBDIR")
    if b"\0" in path:
        raise refuse("contains NUL")
    parts = [p for p in path.rstrip(b"/").split(b"/")]
    if any(p in (b"", b".", b"..") for p in parts):
        raise refuse("'..', '.' and empty components are not allowed")
    export = next((e for e in exports if e.name == parts[0]), None)
    if export is None:
        names = ", ".join(os.fsdecode(e.name) for e in exports)
        raise refuse(f"no export named {os.fsdecode(parts[0])!r} (exports: {names})")
    here = export.root
    for part in parts[1:]:
        here = os.path.join(here, part)
        try:
            st = os.lstat(here)
        except FileNotFoundError:
            break  # not there (yet): records for it may still come; nothing below can be a symlink now
        except OSError as exc:
            raise refuse(f"cannot check {os.fsdecode(part)!r}: {exc.strerror}") from None
        if stat.S_ISLNK(st.st_mode):
            target = os.path.realpath(here)
            if target != export.root and not target.startswith(export.prefix):
                raise refuse(f"{os.fsdecode(part)!r} is a symlink leading out of the export")
            raise refuse(f"{os.fsdecode(part)!r} is a symlink; events are reported at its target, subscribe to that")
    return b"/".join(parts)


def path_filter(prefix: bytes) -> tuple[bytes, bytes]:
    """(exact, prefix + "/") for a normalized subscription path."""
    return prefix, prefix + b"/"
