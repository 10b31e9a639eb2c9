"""Replay: a capture log as a source. The recorded read times are the clock, so the output is deterministic.

The header's ``source`` picks the normalizer: :class:`~normalizer.core.inotify.InotifyNormalizer` for inotify
captures, :class:`~normalizer.core.fanotify.FanotifyNormalizer` for fanotify ones (whose directory handles
were resolved by the live session and logged as ``H`` items, so replay never calls ``open_by_handle_at``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

from ..core import raw
from ..core.fanotify import FanotifyNormalizer
from ..core.filters import PathFilter
from ..core.inotify import InotifyNormalizer
from ..core.matcher import DEFAULT_MAX_PENDING, DEFAULT_MAX_WAIT_NS, DEFAULT_WINDOW_NS
from ..records import Rec
from .log import CaptureIssue, CaptureReader


def _settings(options: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "window_ns": int(options.get("window_ns", DEFAULT_WINDOW_NS)),
        "max_wait_ns": int(options.get("max_wait_ns", DEFAULT_MAX_WAIT_NS)),
        "max_pending": int(options.get("max_pending", DEFAULT_MAX_PENDING)),
        "strict_order": bool(options.get("strict_order", True)),
    }
    settings.update({k: v for k, v in overrides.items() if v is not None})
    settings["max_wait_ns"] = max(settings["max_wait_ns"], settings["window_ns"])
    return settings


def normalizer_for(options: dict[str, Any], **overrides: Any) -> InotifyNormalizer:
    """An InotifyNormalizer configured as the capture's header says, with ``overrides`` (None = keep)."""
    return InotifyNormalizer(**_settings(options, overrides))


def fanotify_normalizer_for(options: dict[str, Any], **overrides: Any) -> FanotifyNormalizer:
    """A FanotifyNormalizer configured as a fanotify capture's header says, with ``overrides`` (None = keep)."""
    mark_mode = options.get("mark_mode", "inode")
    return FanotifyNormalizer(
        **_settings(options, overrides),
        use_rename=bool(options.get("use_rename", True)),
        mark_mode="filesystem" if mark_mode == "filesystem" else "inode",
        path_filter=PathFilter(options.get("include", ()), options.get("exclude", ())),
        own_pid=options.get("own_pid"),
    )


def replay(
    source: str | os.PathLike[str] | IO[bytes],
    *,
    strict: bool = False,
    on_issue: Callable[[CaptureIssue], None] | None = None,
    window_ns: int | None = None,
    strict_order: bool | None = None,
    on_item: Callable[[raw.AnyStreamItem], None] | None = None,
) -> Iterator[Rec]:
    """The records of a capture, in order. The session's own settings (header ``options``) apply unless
    overridden. Issues in the capture go to ``on_issue`` (or raise, with ``strict``); ``on_item`` sees every
    stream item before the normalizer does (``fsnorm stats``, progress)."""
    for chunk in replay_chunks(source, strict=strict, on_issue=on_issue, window_ns=window_ns,
                               strict_order=strict_order, on_item=on_item):
        yield from chunk


def replay_chunks(
    source: str | os.PathLike[str] | IO[bytes],
    *,
    strict: bool = False,
    on_issue: Callable[[CaptureIssue], None] | None = None,
    window_ns: int | None = None,
    strict_order: bool | None = None,
    on_item: Callable[[raw.AnyStreamItem], None] | None = None,
) -> Iterator[list[Rec]]:
    """The records of :func:`replay`, a non-empty list per stream item that gave any: the same records in the
    same order, for a consumer that handles them in bulk (``fsnorm replay``: one step per read instead of one
    per record, a quarter of replay's time at a million events; benchmarks/README.md)."""
    with CaptureReader(source, strict=strict, on_issue=on_issue) as reader:
        yield from replay_reader_chunks(reader, window_ns=window_ns, strict_order=strict_order, on_item=on_item)


def replay_reader(
    reader: CaptureReader,
    *,
    window_ns: int | None = None,
    strict_order: bool | None = None,
    on_item: Callable[[raw.AnyStreamItem], None] | None = None,
) -> Iterator[Rec]:
    """The records of an open capture (see :func:`replay`); the caller keeps the reader (its ``issues`` and
    ``ended_cleanly`` tell how reading went)."""
    for chunk in replay_reader_chunks(reader, window_ns=window_ns, strict_order=strict_order, on_item=on_item):
        yield from chunk


def replay_reader_chunks(
    reader: CaptureReader,
    *,
    window_ns: int | None = None,
    strict_order: bool | None = None,
    on_item: Callable[[raw.AnyStreamItem], None] | None = None,
) -> Iterator[list[Rec]]:
    """:func:`replay_reader`, a non-empty list of records per stream item that gave any (see
    :func:`replay_chunks`)."""
    options = reader.header.options
    keep = PathFilter.from_options(options).apply
    items: Iterable[raw.AnyStreamItem] = reader if on_item is None else _tee(reader, on_item)
    # Replay adds and removes no watches: the actions a live source would carry out (directories to watch,
    # watches to remove) come back with each feed's records and are ignored; what the live walks found is in
    # the capture as items.
    if reader.header.source == "fanotify":
        fan = fanotify_normalizer_for(options, window_ns=window_ns, strict_order=strict_order)
        for item in items:
            if recs := keep(fan.feed(item)):
                yield recs
        if recs := keep(fan.close()):
            yield recs
        return
    norm = normalizer_for(options, window_ns=window_ns, strict_order=strict_order)
    for wd, path in reader.header.watches:
        norm.table.add(wd, path)
    feed = norm.feed
    for item in items:
        if recs := keep(feed(item)):
            yield recs
    if recs := keep(norm.close()):
        yield recs


def _tee(items: Iterable[raw.AnyStreamItem], see: Callable[[raw.AnyStreamItem], None]) -> Iterator[raw.AnyStreamItem]:
    for item in items:
        see(item)
        yield item
