"""fsnorm: clean, ordered records from Linux inotify and fanotify, one rename record per rename(2)."""

from .errors import CaptureError, FsnormError, SourceError, WatchLimitError
from .records import EventRecord, Flag, RenameRecord, json_schema

__version__ = "0.1.0"

__all__ = [
    "CaptureError",
    "EventRecord",
    "Flag",
    "FsnormError",
    "RenameRecord",
    "SourceError",
    "WatchLimitError",
    "__version__",
    "json_schema",
]
