"""What a formatter may know about the stream besides the record: the host, and how to turn a record's
``t_ns`` into wall-clock time (:class:`~normalizer.clock.WallClock`).

Records carry ``t_ns``, the ``CLOCK_MONOTONIC`` time of the read that delivered the event (fsnorm pairs and
times events on a clock that never jumps). The formats other tools read want wall-clock time (ECS
``@timestamp``, OCSF ``time``, inotifywait's ``%T``), so a :class:`WallClock` adds an offset,
``CLOCK_REALTIME - CLOCK_MONOTONIC``:

* live (``watch``, ``demo``): sampled when the stream starts and sampled again before each read's records are
  formatted (:meth:`WallClock.resync`, two vDSO clock reads, no system call), so a wall-clock step (NTP, an
  admin) or a suspend (``CLOCK_MONOTONIC`` stops while suspended) moves later timestamps with it. A record
  waits at most ``max_wait`` (1 s) between its read and its formatting, so the offset used is the one in force
  when the event was read unless the clock was stepped in that second.
* replay: the offset the capture's header recorded when the capture started (``wall_offset_ns``); for a
  capture written before that key existed, the header's ``created`` time (whole seconds) against the
  capture's first timed item, which is off by up to a second plus the time between the two.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

from ..clock import WallClock

__all__ = ["OVERFLOW_MESSAGE", "FormatContext", "WallClock"]

#: The message of an ``overflow`` record in the formats that carry one (the record itself has none).
OVERFLOW_MESSAGE = "the kernel event queue overflowed: events were lost"


@dataclass(frozen=True, slots=True)
class FormatContext:
    """Per-stream facts a formatter is built with (it does no I/O per record)."""

    #: The host the events happened on (live: this host; replay: the capture's).
    host: str = field(default_factory=socket.gethostname)
    clock: WallClock = field(default_factory=WallClock.live)
    #: strftime(3) format for a template's ``%T`` (``--timefmt``); None when not given.
    timefmt: str | None = None
