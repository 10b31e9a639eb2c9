"""Replay: a capture log as a source. The recorded read times are the clock, so the output is deterministic."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import IO, Any

from ..capture import CaptureIssue, CaptureReader
from ..filters import PathFilter
from ..matcher import DEFAULT_MAX_PENDING, DEFAULT_MAX_WAIT_NS, DEFAULT_WINDOW_NS
from ..normalize import InotifyNormalizer
from ..records import Rec


def normalizer_for(options: dict[str, Any], **overrides: Any) -> InotifyNormalizer:
    """An InotifyNormalizer configured as the capture's header says, with ``overrides`` (None = keep)."""
    settings: dict[str, Any] = {
        "window_ns": int(options.get("window_ns", DEFAULT_WINDOW_NS)),
        "max_wait_ns": int(options.get("max_wait_ns", DEFAULT_MAX_WAIT_NS)),
        "max_pending": int(options.get("max_pending", DEFAULT_MAX_PENDING)),
        "strict_order": bool(options.get("strict_order", True)),
    }
    settings.update({k: v for k, v in overrides.items() if v is not None})
    settings["max_wait_ns"] = max(settings["max_wait_ns"], settings["window_ns"])
    return InotifyNormalizer(**settings)


def replay(
    source: str | os.PathLike[str] | IO[bytes],
    *,
    strict: bool = False,
    on_issue: Callable[[CaptureIssue], None] | None = None,
    window_ns: int | None = None,
    strict_order: bool | None = None,
) -> Iterator[Rec]:
    """The records of a capture, in order. The session's own settings (header ``options``) apply unless
    overridden. Issues in the capture go to ``on_issue`` (or raise, with ``strict``)."""
    with CaptureReader(source, strict=strict, on_issue=on_issue) as reader:
        if reader.header.source != "inotify":
            from ..errors import CaptureError

            raise CaptureError(f"replay of {reader.header.source} captures is not supported by this version",
                               line=1, offset=0)
        norm = normalizer_for(reader.header.options, window_ns=window_ns, strict_order=strict_order)
        for wd, path in reader.header.watches:
            norm.table.add(wd, path)
        options = reader.header.options
        keep = PathFilter(options.get("include", ()), options.get("exclude", ())).apply
        feed = norm.feed
        for item in reader:
            yield from keep(feed(item))
        yield from keep(norm.close())
