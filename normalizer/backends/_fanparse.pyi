"""Types of the C fanotify read buffer parser (normalizer/backends/_fanparse.c); see
normalizer.backends.fanotify.parse_batch."""

from normalizer.core.raw import FanotifyEvent

def parse_fanotify(data: bytes, /) -> list[FanotifyEvent] | None: ...
