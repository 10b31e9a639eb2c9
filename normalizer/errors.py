"""Typed errors of fsnorm.

Every failure a caller can meet is a subclass of :class:`FsnormError`, so a daemon can catch the library's
errors in one place and still tell them apart. The CLI turns them into one-line messages (never a traceback).
"""

from __future__ import annotations


class FsnormError(Exception):
    """Base class of every error fsnorm raises on purpose."""


class CaptureError(FsnormError):
    """A capture log could not be read: bad header, unknown version, corrupt or truncated line.

    ``line`` is the 1-based line number and ``offset`` the byte offset of the start of the offending line in
    the (decompressed) stream, so a user can find the place with ``sed -n LINEp`` or ``dd skip=OFFSET``.
    """

    def __init__(self, message: str, *, line: int | None = None, offset: int | None = None) -> None:
        self.line = line
        self.offset = offset
        where = []
        if line is not None:
            where.append(f"line {line}")
        if offset is not None:
            where.append(f"byte offset {offset}")
        prefix = f"{', '.join(where)}: " if where else ""
        super().__init__(prefix + message)
        self.reason = message


class SourceError(FsnormError):
    """A live source could not be set up or read (missing root, kernel interface unavailable, ...)."""


class WatchLimitError(SourceError):
    """A kernel limit on watches or instances was reached; the message names the sysctl to raise."""

    def __init__(self, message: str, *, sysctl: str) -> None:
        super().__init__(message)
        self.sysctl = sysctl


class CapabilityError(SourceError):
    """The process lacks a privilege the chosen backend needs; the message names the capability."""

    def __init__(self, message: str, *, capability: str) -> None:
        super().__init__(message)
        self.capability = capability


class FormatError(FsnormError, ValueError):
    """An output format cannot be used as given: an unknown ``--format`` name, or a template whose options do
    not fit (``%T`` without ``--timefmt``, ``--no-newline`` without a template)."""


class ProtocolError(FsnormError):
    """A peer of ``fsnorm serve`` / ``subscribe`` sent bytes that break wire protocol v1 (garbage, a frame
    over the size limit, a truncated or malformed frame, a frame out of order), or the other side closed the
    connection with an ERROR frame. ``code`` is the wire error code (normalizer.net.wire.E_*)."""

    def __init__(self, message: str, *, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class SubscriptionError(FsnormError):
    """A subscription could not be made or ended abnormally: address unreachable, path refused, dropped."""

    def __init__(self, message: str, *, code: int = 0) -> None:
        super().__init__(message)
        self.code = code
