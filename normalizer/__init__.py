"""fsnorm: clean, ordered records from Linux inotify and fanotify, one rename record per rename(2).

The live API (:mod:`normalizer.api`) is imported on first use, so that ``import normalizer``, the sans-IO core,
replay and the formats work where the kernel bindings cannot load (no inotify/fanotify in libc): only starting a
watch needs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import _compiled as _compiled  # first: decides which hot path is imported
from .errors import CaptureError, FsnormError, SourceError, WatchLimitError
from .record import Flag, Record, Side
from .records import json_schema, record_from_json, record_to_json

if TYPE_CHECKING:
    from .api import AsyncStream, Runner, Stream, awatch, run_in_thread, watch

__version__ = "0.1.0"

_API_NAMES = frozenset({"AsyncStream", "Runner", "Stream", "awatch", "run_in_thread", "watch"})


def __getattr__(name: str) -> object:
    if name in _API_NAMES:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'normalizer' has no attribute {name!r}")


__all__ = [
    "AsyncStream",
    "CaptureError",
    "Flag",
    "FsnormError",
    "Record",
    "Runner",
    "Side",
    "SourceError",
    "Stream",
    "WatchLimitError",
    "__version__",
    "awatch",
    "json_schema",
    "record_from_json",
    "record_to_json",
    "run_in_thread",
    "watch",
]
