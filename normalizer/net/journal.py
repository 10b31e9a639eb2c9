"""The journal of records a server has sent: numbered, retained by count, bytes and age; sans-IO.

Every record the watcher produces gets the next ``seq`` (1, 2, ...) of this server run's ``epoch`` and is kept
here already encoded (one encoding, shared by every client). A client is only a cursor into the journal: the
seq of the next record it should get. So resuming ``--since SEQ`` is "move the cursor to SEQ + 1", a slow
client costs the others nothing (its cursor just lags), and what a client can lose is exactly the records that
left the journal before its cursor reached them, which :meth:`Journal.read` reports as a :class:`Gap` (the
server turns it into a RESCAN with the lost range).

Why in memory and not a file: a restarted server starts a new epoch, and a client of the old epoch must rescan
anyway (its seqs name events this run never saw), so a journal that outlived the process could never be used
to resume. Retention is what bounds memory: ``max_records``, ``max_bytes`` and ``max_age_ns``.

No locking here: the server serializes access (docs in server.py).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from . import wire


class Entry:
    """One journaled record: its seq, when it was added, what filters look at, and its encoded frame."""

    __slots__ = ("a", "b", "data", "kind", "seq", "t_ns")

    def __init__(self, seq: int, t_ns: int, kind: str, a: bytes, b: bytes, data: bytes) -> None:
        self.seq = seq
        self.t_ns = t_ns
        self.kind = kind
        self.a = a
        self.b = b
        self.data = data


@dataclass(frozen=True, slots=True)
class Gap:
    """Records ``first``..``last`` (inclusive) left the journal before a reader got them."""

    first: int
    last: int


def new_epoch() -> int:
    """A server run's epoch: wall-clock nanoseconds with random low bits, so two runs never share one."""
    return (time.time_ns() & ~0xFFFF) | int.from_bytes(os.urandom(2), "little") or 1


class Journal:
    """Records of one epoch, oldest first. ``oldest_seq`` .. ``last_seq`` are held (none when
    ``oldest_seq == last_seq + 1``)."""

    def __init__(self, *, epoch: int | None = None, max_records: int = 1_000_000, max_bytes: int = 256 << 20,
                 max_age_ns: int = 3600 * 10**9) -> None:
        if max_records < 1 or max_bytes < 1 or max_age_ns < 0:
            raise ValueError("journal limits must be positive")
        self.epoch = epoch if epoch is not None else new_epoch()
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.max_age_ns = max_age_ns
        self._entries: list[Entry] = []
        self._head = 0  # index in _entries of the oldest live entry (dropped ones are compacted lazily)
        self._bytes = 0
        self.oldest_seq = 1
        self.last_seq = 0

    def __len__(self) -> int:
        return len(self._entries) - self._head

    @property
    def next_seq(self) -> int:
        return self.last_seq + 1

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def append(self, kind: str, a: bytes, b: bytes, encode: Callable[[int], bytes], now_ns: int) -> Entry:
        """Add the next record: ``encode(seq)`` gives its frame bytes. Then apply retention."""
        seq = self.last_seq + 1
        entry = Entry(seq, now_ns, kind, a, b, encode(seq))
        self._entries.append(entry)
        self._bytes += len(entry.data)
        self.last_seq = seq
        self.trim(now_ns)
        return entry

    def trim(self, now_ns: int) -> None:
        """Drop the oldest records past any limit (the newest record always stays)."""
        entries = self._entries
        cutoff = now_ns - self.max_age_ns
        while len(entries) - self._head > 1:
            e = entries[self._head]
            if (len(entries) - self._head <= self.max_records and self._bytes <= self.max_bytes
                    and e.t_ns >= cutoff):
                break
            self._bytes -= len(e.data)
            entries[self._head] = _DROPPED
            self._head += 1
            self.oldest_seq = e.seq + 1
        if self._head > 1024 and self._head * 2 > len(entries):
            del entries[: self._head]
            self._head = 0

    def read(self, cursor: int, *, limit: int = 256) -> tuple[Gap | None, list[Entry]]:
        """Records from seq ``cursor`` on, at most ``limit``; with the gap first if ``cursor`` is older than
        what the journal holds. The reader's next cursor is ``entries[-1].seq + 1`` (or ``oldest_seq`` after
        a gap with no entries)."""
        gap = None
        if cursor < self.oldest_seq:
            gap = Gap(cursor, self.oldest_seq - 1)
            cursor = self.oldest_seq
        start = self._head + (cursor - self.oldest_seq)
        return gap, self._entries[start:start + limit]


_DROPPED = Entry(0, 0, "", b"", b"", b"")


@dataclass(frozen=True, slots=True)
class Resume:
    """Where a new subscription starts, and the RESCAN it must get first (if any)."""

    cursor: int
    rescan: wire.Rescan | None


def plan_resume(journal: Journal, since: int | None, epoch: int) -> Resume:
    """Decide where a subscription starts. No ``since``: live, from the next record. ``since`` in this epoch
    and still held: right after it (exactly once). Older than the journal: a RESCAN naming the lost range, then
    everything held. Another epoch (server restarted), no epoch, or a seq this epoch never reached: a RESCAN
    (the client's seq means nothing here), then live."""
    live = journal.next_seq
    if since is None:
        return Resume(live, None)
    if epoch == 0:
        return Resume(live, wire.Rescan(journal.epoch, wire.R_NO_EPOCH, 0, 0,
                                        f"seq {since} given without its epoch: rescan"))
    if epoch != journal.epoch:
        return Resume(live, wire.Rescan(journal.epoch, wire.R_NEW_EPOCH, 0, 0,
                                        f"epoch {epoch} is not this server's ({journal.epoch}): it restarted"))
    if since > journal.last_seq:
        return Resume(live, wire.Rescan(journal.epoch, wire.R_NEW_EPOCH, 0, 0,
                                        f"seq {since} is beyond this epoch's last ({journal.last_seq})"))
    if since + 1 < journal.oldest_seq:
        return Resume(journal.oldest_seq,
                      wire.Rescan(journal.epoch, wire.R_RETENTION, since + 1, journal.oldest_seq - 1,
                                  f"records {since + 1}..{journal.oldest_seq - 1} are past the journal's retention"))
    return Resume(since + 1, None)
