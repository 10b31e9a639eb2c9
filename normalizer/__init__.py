"""fsnorm: clean, ordered records from Linux inotify and fanotify, one rename record per rename(2)."""

from .api import AsyncStream, Runner, Stream, awatch, run_in_thread, watch
from .errors import CaptureError, FsnormError, SourceError, WatchLimitError
from .records import EventRecord, Flag, RenameRecord, json_schema

__version__ = "0.1.0"

__all__ = [
    "AsyncStream",
    "CaptureError",
    "EventRecord",
    "Flag",
    "FsnormError",
    "RenameRecord",
    "Runner",
    "SourceError",
    "Stream",
    "WatchLimitError",
    "__version__",
    "awatch",
    "json_schema",
    "run_in_thread",
    "watch",
]
