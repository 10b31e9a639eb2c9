"""A progress bar for long reads of captures (``fsnorm replay``, ``fsnorm stats``), drawn by tqdm.

It shows bytes of the capture file read out of the total (compressed bytes for a gzip capture), events per
second and the time left, on stderr, and only when stderr is a terminal: piped or redirected output, and
``--quiet``, get nothing. Updating costs one counter per item; the bar itself is touched every
:data:`EVERY` items (tqdm then redraws at most a few times a second).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Never

from ..core import raw

if TYPE_CHECKING:
    from tqdm import tqdm

#: Items between two updates of the bar.
EVERY = 256


def wanted(quiet: bool, stream: IO[str] | None = None) -> bool:
    """Whether to draw a bar: not ``quiet`` and the stream (stderr) is a terminal."""
    stream = sys.stderr if stream is None else stream
    if quiet:
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):
        return False


class Progress:
    """Bytes read of ``total`` and events per second. :meth:`track` says which open file to follow (several
    files in turn: their sizes add up); :meth:`item` is the per-item hook; :meth:`close` removes the bar."""

    def __init__(self, total: int, *, enabled: bool, stream: IO[str] | None = None, desc: str = "") -> None:
        self._bar: tqdm[Never] | None = None
        self._base = 0
        self._done_files = 0
        self._tell: Callable[[], int] = lambda: 0
        self._items = 0
        self.events = 0
        self._start = time.monotonic()
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc or None,
                             file=stream if stream is not None else sys.stderr, dynamic_ncols=True, leave=False,
                             mininterval=0.2)

    @property
    def enabled(self) -> bool:
        return self._bar is not None

    def track(self, f: IO[bytes], size: int) -> None:
        """Follow the position of ``f`` (opened by the caller), a file of ``size`` bytes, from here on."""
        self._base = self._done_files
        self._done_files += size
        self._tell = f.tell

    def item(self, item: raw.AnyStreamItem) -> None:
        if isinstance(item, raw.InotifyBatch | raw.FanotifyBatch):
            self.events += len(item.events)
        self._items += 1
        if self._bar is not None and self._items % EVERY == 0:
            self._refresh()

    def _refresh(self) -> None:
        bar = self._bar
        if bar is None:
            return
        try:
            pos = self._base + self._tell()
        except (OSError, ValueError):
            return
        elapsed = time.monotonic() - self._start
        if elapsed > 0:
            bar.set_postfix_str(f"{self.events / elapsed:,.0f} events/s", refresh=False)
        bar.update(max(0, pos - bar.n))

    def close(self) -> None:
        """Show the final count, then remove the bar (it is not left on the terminal)."""
        if self._bar is not None:
            self._refresh()
            self._bar.refresh()
            self._bar.close()
            self._bar = None


def open_capture(path: str) -> tuple[IO[bytes], int]:
    """Open a capture file for reading and tell its size; CaptureError (not OSError) if it cannot be."""
    from ..errors import CaptureError

    try:
        f = open(path, "rb")  # noqa: SIM115 - returned to the caller, who closes it
        size = os.fstat(f.fileno()).st_size
    except OSError as exc:
        raise CaptureError(f"cannot open capture {os.fsdecode(path)}: {exc.strerror or exc}") from exc
    return f, size
