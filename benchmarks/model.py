"""Plain value types shared by the workloads (ground truth), the subjects' outputs and the scoring.

Paths are ``str`` (decoded with ``os.fsdecode``); every workload uses ASCII names. An absent rename side is
``""``, as in fsnorm's JSON form.
"""

from __future__ import annotations

from typing import NamedTuple, TypeAlias

RawEvent: TypeAlias = tuple[int, int, int, bytes]
"""One raw inotify event ``(wd, mask, cookie, name)`` as normalizer.core.raw.InotifyEvent."""


class TruthRename(NamedTuple):
    """One rename(2) the workload issued. ``src``/``dst`` is ``""`` for a side outside the watched tree."""

    workload: str
    src: str
    dst: str
    t_ns: int  # CLOCK_MONOTONIC right before the syscall


class TruthMarker(NamedTuple):
    """An unrelated event (a file created) whose delivery time measures stalls behind rename halves."""

    workload: str
    path: str
    t_ns: int  # CLOCK_MONOTONIC right before the open(O_CREAT)


class Truth(NamedTuple):
    renames: list[TruthRename]
    markers: list[TruthMarker]


class Record(NamedTuple):
    """What a subject delivered to user code, in the benchmark's common form.

    ``kind``: ``rename`` (``src``/``dst``, either may be ``""``), ``from`` / ``to`` (a bare rename half from a
    subject that does not pair it; the path is in ``src`` / ``dst``), ``overflow``, or an event kind such as
    ``create``, ``delete``, ``modify`` with its path in ``src``.
    """

    t_ns: int  # CLOCK_MONOTONIC when user code received it
    kind: str
    src: str
    dst: str = ""
    flags: str = ""  # comma-separated
    #: CLOCK_MONOTONIC of the watcher's own read of the event(s), where its output says (fsnorm's ``t_ns``):
    #: splits a latency into the kernel -> watcher part and the watcher -> user code part.
    read_ns: int | None = None


class Read(NamedTuple):
    """One read() of the raw reader: when it returned, the bytes still queued after it, the events."""

    t_ns: int
    pending: int
    events: list[RawEvent]
