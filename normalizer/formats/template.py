"""Record -> one line from an ``inotifywait --format`` style template (``--format '%w%f %e'``).

Conversions, as inotifywait 3.22 (inotify-tools) prints them, checked against the real program in
tests/test_formats_template.py:

==========  ==========================================================================================
``%w``      the directory of the event's object, with a trailing slash (``/srv/a/``); for an event on a
            directory itself (``DELETE_SELF``, ``MOVE_SELF``, ``IGNORED``, ``UNMOUNT``, ``error``) that
            directory, slash-terminated, and ``%f`` is empty. Paths are absolute (fsnorm resolves the roots)
``%f``      the name in that directory
``%e``      the event names, comma-separated, inotifywait's names and order: ``CREATE``,
            ``CLOSE_WRITE,CLOSE``, ``MOVED_FROM,ISDIR``, ``Q_OVERFLOW``, ``IGNORED`` (a watch ended) ...
            A joined rename is ``MOVED_FROM,MOVED_TO`` (both halves, in one line); a move out of the tree
            ``MOVED_FROM``, a move in ``MOVED_TO``. fsnorm's own kinds are ``ERROR`` and ``UNKNOWN``
``%Xe``     the same names separated by the character X (``%:e`` -> ``CLOSE_WRITE:CLOSE``)
``%c``      the rename cookie in hex, ``0`` when there is none (as inotifywait; fanotify has none)
``%T``      the time of the read that delivered the event (not the time of printing, as inotifywait
            does) formatted by ``--timefmt`` (strftime(3), local time); ``%T`` without ``--timefmt``
            is an error, as in inotifywait
``%0``      a NUL byte (with ``--no-newline``: ``--format '%w%f%0'`` for ``read -d ''`` / ``xargs -0``)
``%n``      a line feed
``%%``      a percent sign
``%W%F``    fsnorm's addition, where the object is *after* the event: a rename's destination directory
            (slash-terminated) and name; empty for a move out of the tree. For every other record the same
            as ``%w%f``
==========  ==========================================================================================

Which side ``%w%f`` shows for a rename: the side inotifywait would print on the line of the half the
kernel reported first: the source for a joined rename and for a move out, the destination for a move in
(inotifywait's ``MOVED_TO`` line). So ``--format '%e %w%f -> %W%F'`` prints
``MOVED_FROM,MOVED_TO /srv/a/x -> /srv/b/y``, and a script that handles new files with
``-e moved_to,create --format '%w%f'`` habits should use ``%W%F``, which is the new path for every rename
that has one. Any other ``%X`` is written as it stands, as inotifywait does.

Names are bytes: they are written exactly, not decoded (the formatter keeps them as ``surrogateescape``
text and the CLI encodes its output with that handler, so bytes that are not UTF-8 come out raw).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ..errors import FormatError
from ..records import Rec
from .context import FormatContext, WallClock

_SELF_KINDS = frozenset({"delete_self", "move_self", "watch_end", "unmount", "error"})
# kind -> inotifywait's event names (in its order: by bit value, CLOSE after CLOSE_WRITE/NOWRITE, ISDIR last)
_EVENT_NAMES: dict[str, tuple[str, ...]] = {
    "access": ("ACCESS",), "modify": ("MODIFY",), "attrib": ("ATTRIB",),
    "close_write": ("CLOSE_WRITE", "CLOSE"), "close_nowrite": ("CLOSE_NOWRITE", "CLOSE"), "open": ("OPEN",),
    "create": ("CREATE",), "delete": ("DELETE",), "delete_self": ("DELETE_SELF",), "move_self": ("MOVE_SELF",),
    "unmount": ("UNMOUNT",), "overflow": ("Q_OVERFLOW",), "watch_end": ("IGNORED",), "error": ("ERROR",),
    "unknown": ("UNKNOWN",),
}
_SIMPLE = frozenset("wfcTWF0n%")
_NO_ISDIR = _SELF_KINDS | {"overflow"}


def event_names(rec: Rec) -> tuple[str, ...]:
    """inotifywait's names for what ``rec`` reports (``%e``)."""
    if rec.kind == "rename":
        names: tuple[str, ...] = (("MOVED_FROM",) if rec.path else ()) + (("MOVED_TO",) if rec.dst else ())
    else:
        names = _EVENT_NAMES.get(rec.kind, (rec.kind.upper(),))
    # The kernel sets IN_ISDIR on events in a directory about a subdirectory, never on a directory's own
    # *_SELF / IGNORED / UNMOUNT events, and inotifywait prints what the kernel set.
    return (*names, "ISDIR") if rec.is_dir and rec.kind not in _NO_ISDIR else names


def parse_template(template: str) -> list[tuple[str, str]]:
    """The template as ``(conversion, argument)`` pieces: ``("", text)`` is literal text, ``("e", sep)`` an
    event list, any other conversion letter stands for itself. Parsed like inotifywait: a known letter first,
    then ``%Xe``, else the ``%`` and the character stay literal."""
    out: list[tuple[str, str]] = []
    text: list[str] = []
    i, n = 0, len(template)
    while i < n:
        ch = template[i]
        nxt = template[i + 1] if i + 1 < n else ""
        if ch != "%" or not nxt:
            text.append(ch)
            i += 1
            continue
        if nxt in _SIMPLE or nxt == "e":
            piece = {"0": ("", "\0"), "n": ("", "\n"), "%": ("", "%"), "e": ("e", ",")}.get(nxt, (nxt, ""))
            i += 2
        elif i + 2 < n and template[i + 2] == "e":
            piece = ("e", nxt)
            i += 3
        else:
            text.append(ch)
            i += 1
            continue
        if piece[0] == "":
            text.append(piece[1])
            continue
        if text:
            out.append(("", "".join(text)))
            text = []
        out.append(piece)
    if text:
        out.append(("", "".join(text)))
    return out


def _text(path: bytes) -> str:
    return path.decode("utf-8", "surrogateescape")


def _dir_and_name(path: bytes, whole_dir: bool) -> tuple[str, str]:
    if not path:
        return "", ""
    if whole_dir:
        return _text(path.rstrip(b"/") + b"/"), ""
    head, _, name = path.rpartition(b"/")
    return _text(head + b"/"), _text(name)


class TemplateFormatter:
    """``Rec`` -> the template expanded (no trailing newline; the CLI adds it unless ``--no-newline``)."""

    def __init__(self, template: str, ctx: FormatContext) -> None:
        self.pieces = parse_template(template)
        used = {conv for conv, _ in self.pieces}
        if "T" in used:
            if ctx.timefmt is None:
                raise FormatError("%T is in the --format template, but --timefmt was not given")
            try:  # a format strftime rejects fails now, not per record
                time.strftime(ctx.timefmt, time.localtime(0))
            except (ValueError, UnicodeError) as exc:
                raise FormatError(f"--timefmt {ctx.timefmt!r} cannot be used: {exc}") from None
        self._timefmt = ctx.timefmt or ""
        self._clock: WallClock = ctx.clock
        self._sec = -1
        self._time_text = ""
        self._uses_new = bool(used & {"W", "F"})

    def _time(self, t_ns: int) -> str:
        sec = self._clock.wall_ns(t_ns) // 1_000_000_000
        if sec != self._sec:
            self._sec, self._time_text = sec, time.strftime(self._timefmt, time.localtime(sec))
        return self._time_text

    def __call__(self, rec: Rec) -> str:
        if rec.kind == "rename":
            w, f = _dir_and_name(rec.path or rec.dst, False)
            new_w, new_f = _dir_and_name(rec.dst, False) if self._uses_new else ("", "")
        else:
            w, f = _dir_and_name(rec.path, rec.kind in _SELF_KINDS)
            new_w, new_f = w, f
        parts: list[str] = []
        for conv, arg in self.pieces:
            if conv == "":
                parts.append(arg)
            elif conv == "w":
                parts.append(w)
            elif conv == "f":
                parts.append(f)
            elif conv == "e":
                parts.append(arg.join(event_names(rec)))
            elif conv == "W":
                parts.append(new_w)
            elif conv == "F":
                parts.append(new_f)
            elif conv == "c":
                parts.append(f"{rec.cookie or 0:x}")
            elif conv == "T":
                parts.append(self._time(rec.t_ns))
        return "".join(parts)


def make_template(template: str) -> Callable[[FormatContext], Callable[[Rec], str]]:
    """A formatter factory for ``template`` (:class:`~normalizer.errors.FormatError` for a template that cannot
    work, e.g. %T without --timefmt, raised when the formatter is built)."""
    def build(ctx: FormatContext) -> Callable[[Rec], str]:
        return TemplateFormatter(template, ctx)
    return build
