"""The hot path's record, :class:`Rec` (re-exported by :mod:`normalizer.records`, where its users import it).

It lives in the core, apart from the pydantic models, because it is compiled with the hot path (mypyc, see
``setup.py`` and docs/compiled.md): compiled, it is a native class whose fields are C struct members, which
the compiled matcher and JSON writer read and write directly. The very same source is the pure-Python
reference (``FSNORM_PURE=1``).
"""

from __future__ import annotations

from typing import Any

from mypy_extensions import mypyc_attr

#: A directory as a normalizer knows it: an inotify watch descriptor or a fanotify directory fid (bytes).
DirKey = int | bytes | None


@mypyc_attr(allow_interpreted_subclasses=True)
class Rec:
    """A record as the matcher builds it: a slotted plain object, cheap to create and to fill in later.

    ``path`` is the single path, or the *source* side of a rename; ``dst`` is the rename's destination.
    ``flags`` is a tuple (shared empty default; a flag is added by building a new tuple, which is rare).
    ``dir_key`` / ``dst_dir_key`` name the directory of ``path`` / ``dst`` as the normalizer knew it at the event
    (an inotify wd, a fanotify directory fid; None when unknown): internal, never printed; ``fsnorm serve`` turns
    them into opaque directory ids (normalizer/net/ids.py), which stay the same when the directory is renamed.

    Every field is a slot (a struct member once compiled). A subclass (fanotify's) adds no slot of its own
    and sets the inherited ones, so that compiled code, which reads the struct, and Python code, which reads
    the attribute, always see the same value. ``waiting`` is a class-level False that only a rename half
    (matcher.Half) sets per instance.
    """

    __slots__ = ("cookie", "dir_key", "dst", "dst_dir_key", "flags", "is_dir", "kind", "mask", "message",
                 "object_id", "path", "pid", "source", "t_ns")

    #: True only for a rename half still waiting for its partner (matcher.Half overrides it per instance).
    waiting: bool = False

    def __init__(
        self,
        kind: str,
        path: bytes,
        is_dir: bool,
        t_ns: int,
        mask: int,
        cookie: int | None = None,
        dst: bytes = b"",
        flags: tuple[str, ...] = (),
        dir_key: DirKey = None,
        dst_dir_key: DirKey = None,
    ) -> None:
        self.kind = kind
        self.path = path
        self.dst = dst
        self.is_dir = is_dir
        self.t_ns = t_ns
        self.mask = mask
        self.cookie = cookie
        self.flags = flags
        self.dir_key = dir_key
        self.dst_dir_key = dst_dir_key
        self.source: str = "inotify"
        self.pid: int | None = None
        self.object_id: str | None = None
        self.message: str | None = None

    @classmethod
    def note(cls, kind: str, path: bytes, is_dir: bool, t_ns: int, mask: int, *, flags: tuple[str, ...] = (),
             message: str | None = None, cookie: int | None = None, source: str | None = None,
             pid: int | None = None, object_id: str | None = None) -> Rec:
        """A record with the rarely set fields too (source notices, errors, fanotify records)."""
        rec = cls(kind, path, is_dir, t_ns, mask, cookie, b"", flags)
        if message is not None:
            rec.message = message
        if source is not None:
            rec.source = source
        if pid is not None:
            rec.pid = pid
        if object_id is not None:
            rec.object_id = object_id
        return rec

    def __repr__(self) -> str:
        where = f"{self.path!r} -> {self.dst!r}" if self.kind == "rename" else repr(self.path)
        flags = f" {self.flags}" if self.flags else ""
        return f"<Rec {self.kind} {where}{' dir' if self.is_dir else ''} cookie={self.cookie}{flags}>"

    def identity(self) -> tuple[Any, ...]:
        """Everything but the clock: what must agree between two runs over the same kernel events."""
        return (self.kind, self.path, self.dst, self.is_dir, self.cookie, self.mask, tuple(self.flags),
                self.source, self.pid, self.object_id, self.message)
