"""Record -> a short human line (``--format text``)."""

from __future__ import annotations

from ..records import Rec


def format_text(rec: Rec) -> str:
    """A short human line for one record."""
    def show(path: bytes) -> str:
        return path.decode("utf-8", "backslashreplace") if path else "(unwatched)"

    where = f"{show(rec.path)} -> {show(rec.dst)}" if rec.kind == "rename" else show(rec.path) if rec.path else ""
    parts = [f"{rec.kind:<11}", where]
    if rec.is_dir:
        parts.append("[dir]")
    if rec.flags:
        parts.append("{" + ",".join(rec.flags) + "}")
    if rec.message:
        parts.append(f"({rec.message})")
    return " ".join(p for p in parts if p)
