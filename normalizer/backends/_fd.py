"""A kernel file descriptor owned by one object: the lifecycle the inotify and fanotify bindings share."""

from __future__ import annotations

import os
from typing import Self


class OwnedFD:
    """``fileno()`` (ValueError once closed), ``closed``, an idempotent ``close()``, and the context manager.

    Subclasses set ``_fd`` in ``__init__`` (and ``-1`` before anything that can fail, so ``close`` is safe)."""

    __slots__ = ("_fd",)

    _fd: int
    #: How error messages name the fd.
    _what = "fd"

    def fileno(self) -> int:
        """The raw fd, for select/poll/epoll/asyncio ``add_reader``. Raises ValueError once closed."""
        if self._fd < 0:
            raise ValueError(f"I/O operation on a closed {self._what}")
        return self._fd

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def close(self) -> None:
        """Close the fd (its watches or marks go with it). Safe to call more than once."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
