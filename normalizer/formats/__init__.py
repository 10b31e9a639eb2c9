"""Output formats: each turns one record into one line of text (no trailing newline)."""

from __future__ import annotations

from collections.abc import Callable

from ..records import Rec
from .jsonl import rec_to_json
from .text import format_text

#: ``--format`` name -> formatter.
FORMATTERS: dict[str, Callable[[Rec], str]] = {"json": rec_to_json, "text": format_text}

__all__ = ["FORMATTERS", "format_text", "rec_to_json"]
