"""fsnorm's own reads: the directory listings of its scans are not what other processes did.

Every scan (the walk of a root at start, a directory that appeared, a rescan) opens the directory, reads it
(one ``access`` per ``getdents``) and closes it; with ``open``, ``access`` or ``close_nowrite`` in the mask the
kernel reports that like anybody's read. The source announces each listing with a ``scan`` notice *before* it
lists (a stream item, so replay does the same), and the normalizer drops the events that listing causes:

* **fanotify** knows who did it: events of fsnorm's own pid, on the directory itself, with only these bits,
  while the listing is expected. A process that embeds fsnorm (Python API, same pid) and lists a directory in
  that same short span, before fsnorm has read the events, loses that listing's records; the kernel may
  also have merged the two opens into one event. Its other activity is always reported.
* **inotify** has no pid: the listing's events are counted instead. A listing gives one ``open`` and one
  ``close_nowrite`` on the directory's own watch, and the same again on its parent's watch when the parent is
  watched; that many are dropped, the first that come (the same events from another process are
  indistinguishable, so the count of reported opens and closes is exact). ``access`` events on the directory
  are dropped from the expected ``open`` until its last expected ``close_nowrite``: another process reading
  the same directory inside that span of microseconds loses its ``access`` records (never its opens and
  closes). Two listings whose events the kernel coalesced are the other inexact case: the kernel merges an
  event with the identical one queued just before it, so another process's ``open`` landing right after
  fsnorm's own can be swallowed by the kernel itself.

Expected listings are forgotten once the queue was seen empty after them (every event they caused was read).
"""

from __future__ import annotations

#: The bits a listing causes (inotify and fanotify use the same numbers).
OPEN, ACCESS, CLOSE_NOWRITE = 0x20, 0x01, 0x10
SCAN_BITS = OPEN | ACCESS | CLOSE_NOWRITE


class OwnScans:
    """Directories being listed by fsnorm: path -> [opens, closes still expected, own opens not yet closed]."""

    __slots__ = ("dropped", "expected")

    def __init__(self) -> None:
        self.expected: dict[bytes, list[int]] = {}
        #: Events dropped as fsnorm's own (a counter a caller may report).
        self.dropped = 0

    def __bool__(self) -> bool:
        return bool(self.expected)

    def expect(self, path: bytes, times: int = 1) -> None:
        """fsnorm lists ``path``; its events come ``times`` times (inotify: once more on the parent's watch)."""
        counts = self.expected.setdefault(path, [0, 0, 0])
        counts[0] += times
        counts[1] += times

    def own(self, bit: int, path: bytes) -> bool:
        """True (and counted) if this single-bit event on directory ``path`` is one fsnorm's listing caused."""
        counts = self.expected.get(path)
        if counts is None:
            return False
        if bit == OPEN:
            if not counts[0]:
                return False
            counts[0] -= 1
            counts[2] += 1
        elif bit == CLOSE_NOWRITE:
            if not counts[2]:
                return False
            counts[1] -= 1
            counts[2] -= 1
            if not counts[1]:
                del self.expected[path]
        elif bit != ACCESS or not counts[2]:
            return False
        self.dropped += 1
        return True

    def clear(self) -> None:
        """The queue was seen empty: every event of the listings announced so far has been read."""
        self.expected.clear()
