"""Output formats: each turns one record into one line of text (no trailing newline).

A format is built once per stream from a :class:`~.context.FormatContext` (host, wall clock, ``--timefmt``)
and is then a pure function ``Rec -> str``. Text that stands for name bytes that are not UTF-8 is kept as
``surrogateescape`` (only the template format does this; the JSON formats write ``backslashreplace`` text
plus base64), so writers encode lines with ``encode("utf-8", "surrogateescape")``, which costs nothing
extra for valid text.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import FormatError
from ..records import Rec
from .context import FormatContext, WallClock
from .ecs import make_ecs
from .jsonl import rec_to_json
from .ocsf import make_ocsf
from .template import make_template
from .text import format_text

Formatter = Callable[[Rec], str]
FormatterFactory = Callable[[FormatContext], Formatter]

#: ``--format`` name -> formatter factory. A ``--format`` value that is none of these and contains ``%``
#: is an inotifywait-style template (:mod:`.template`).
FORMATTERS: dict[str, FormatterFactory] = {
    "json": lambda ctx: rec_to_json,
    "text": lambda ctx: format_text,
    "ecs": make_ecs,
    "ocsf": make_ocsf,
}


def is_template(spec: str) -> bool:
    return spec not in FORMATTERS and "%" in spec


def formatter_factory(spec: str) -> FormatterFactory:
    """The factory for a ``--format`` value: a name in :data:`FORMATTERS` or a template; FormatError else."""
    if spec in FORMATTERS:
        return FORMATTERS[spec]
    if "%" in spec:
        return make_template(spec)
    raise FormatError(f"unknown format {spec!r}: use {', '.join(sorted(FORMATTERS))}, or an inotifywait-style "
                     "template with % conversions such as '%w%f %e'")


def make_formatter(spec: str, ctx: FormatContext | None = None) -> Formatter:
    """Build the formatter for ``spec`` (FormatError for an unknown name or an unusable template)."""
    return formatter_factory(spec)(ctx if ctx is not None else FormatContext())


__all__ = ["FORMATTERS", "FormatContext", "Formatter", "FormatterFactory", "WallClock", "format_text",
           "formatter_factory", "is_template", "make_formatter", "rec_to_json"]
