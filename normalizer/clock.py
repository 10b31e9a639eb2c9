"""CLOCK_MONOTONIC -> wall-clock time, for the output formats and the capture header.

fsnorm times events on ``CLOCK_MONOTONIC`` (it never jumps, so windows and ordering are safe); people and
other tools want wall-clock time. The link between the two is one number, ``CLOCK_REALTIME -
CLOCK_MONOTONIC``, which changes only when the wall clock is stepped or the machine was suspended
(``CLOCK_MONOTONIC`` does not count suspended time). :mod:`normalizer.formats.context` says how each command
obtains it.
"""

from __future__ import annotations

import time


def sample_offset_ns() -> int:
    """``CLOCK_REALTIME - CLOCK_MONOTONIC`` now, in ns: of three samples, the one whose realtime read was
    bracketed most tightly by its two monotonic reads (a preemption between the reads would skew it)."""
    best_gap, best = -1, 0
    for _ in range(3):
        m0 = time.monotonic_ns()
        real = time.time_ns()
        m1 = time.monotonic_ns()
        if best_gap < 0 or m1 - m0 < best_gap:
            best_gap, best = m1 - m0, real - (m0 + m1) // 2
    return best


class WallClock:
    """Monotonic ns -> wall-clock ns since the epoch, by an offset. ``follow``: :meth:`resync` re-samples it
    (live streams); otherwise the offset is fixed (replay, tests)."""

    __slots__ = ("follow", "offset_ns")

    def __init__(self, offset_ns: int, *, follow: bool = False) -> None:
        self.offset_ns = offset_ns
        self.follow = follow

    @classmethod
    def live(cls) -> WallClock:
        """The clock of a stream read now: sampled now, re-sampled by :meth:`resync`."""
        return cls(sample_offset_ns(), follow=True)

    def resync(self) -> None:
        """Re-sample the offset (live clocks only): call before formatting a read's records."""
        if self.follow:
            self.offset_ns = sample_offset_ns()

    def wall_ns(self, t_ns: int) -> int:
        return t_ns + self.offset_ns
