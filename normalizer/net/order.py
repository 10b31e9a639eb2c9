"""Per-host order for records read from a log where a host's records may be stored out of order (sans-IO).

Why this exists: ``fsnorm watch --sink nats://`` publishes pipelined batches. When a publish fails in the
middle of a batch while the JetStream stream changes leader, records after it may already be stored; the
publisher re-publishes from the first unacknowledged record (duplicates are dropped by msg id), so the failed
one is stored *after* later ones. The stream's order is then not the host's order. Every message therefore
names its predecessor (the ``Fsnorm-Prev`` header: the msg id of the host's record before it), and a consumer
puts each host's records back in order by following that chain:

* a record whose predecessor is the last one delivered for its host, or that starts a chain (no predecessor),
  is delivered at once, followed by any held records that now continue the chain;
* the first record of a host this consumer sees that names a predecessor is held like any other: its
  predecessor may still come (it failed and was stored later). If it does not come in time, the chain starts
  there with a ``start`` notice (a resumed durable consumer: the predecessor was delivered by an earlier run),
  which is not a gap;
* any other record is **held**, at most ``wait_ns`` (its predecessor is late) and at most ``max_held`` records
  in all; past either bound the oldest chain is released with a :class:`Notice` of kind ``gap`` (records
  between the two never came: the consumer must treat what it knows of that host as stale, like a rescan);
* a record whose predecessor was delivered long ago (it comes after a gap was declared) is delivered at once
  with a ``late`` notice; a record already delivered (a redelivery) is reported as a duplicate, not delivered.

Chains, not seq numbers, so epochs and boots need no special case: the first record of a new fsnorm run names
the last record of the run before. Like h11, :class:`Reorderer` does no I/O and reads no clock: the caller
passes ``now_ns``.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

T = TypeVar("T")

#: Ids remembered per host to recognize redeliveries and late records.
REMEMBER: int = 65_536


@dataclass(frozen=True, slots=True)
class Notice:
    """Something the consumer must be told about a host's order: a ``gap`` that did not fill in time (records
    after ``after`` and before ``before`` never came), or a ``late`` record delivered after its successors."""

    host: str
    kind: Literal["gap", "late", "start"]
    after: str
    before: str
    held: int
    waited_ns: int

    @property
    def message(self) -> str:
        if self.kind == "start":
            return (f"host {self.host}: first record seen is {self.before}, after {self.after}, which this consumer "
                    "did not see (resumed, or the stream starts later)")
        if self.kind == "late":
            return (f"host {self.host}: record {self.before} arrived after its successors were delivered (a gap "
                    f"after {self.after} was declared earlier)")
        return (f"host {self.host}: records between {self.after or '(start)'} and {self.before} did not arrive "
                f"within {self.waited_ns / 1e9:.1f} s ({self.held} later records were held): treat this host's "
                "records as incomplete")


@dataclass(slots=True)
class _Held(Generic[T]):
    msg_id: str
    prev: str
    item: T
    since_ns: int


@dataclass(slots=True)
class _Host(Generic[T]):
    last: str | None = None
    #: Held records by the id they wait for (their predecessor).
    waiting: dict[str, _Held[T]] = field(default_factory=dict)
    held_ids: set[str] = field(default_factory=set)
    #: The predecessor a chain was started after without having it (a ``start`` notice): late if it comes.
    started_after: str = ""
    seen: OrderedDict[str, None] = field(default_factory=OrderedDict)


@dataclass(frozen=True, slots=True)
class Pushed(Generic[T]):
    """What one :meth:`Reorderer.push` gives: the items (and notices) to deliver now, in order, and whether the
    pushed record was a duplicate (the caller acknowledges it and delivers nothing for it)."""

    out: list[T | Notice]
    duplicate: bool = False


class Reorderer(Generic[T]):
    """Puts each host's records in their chain order; see the module docstring."""

    def __init__(self, *, wait_ns: int, max_held: int) -> None:
        self.wait_ns = wait_ns
        self.max_held = max_held
        self._hosts: dict[str, _Host[T]] = {}
        self.held = 0
        self.duplicates = 0
        self.gaps = 0
        self.late = 0
        self.reordered = 0

    def push(self, host: str, msg_id: str, prev: str, item: T, now_ns: int) -> Pushed[T]:
        st = self._hosts.get(host)
        if st is None:
            st = self._hosts[host] = _Host()
        if msg_id in st.seen or msg_id in st.held_ids:
            self.duplicates += 1
            return Pushed([], True)
        out: list[T | Notice] = []
        if not prev or prev == st.last:
            self._deliver(st, msg_id, item, out)
        elif prev in st.seen or (st.started_after and msg_id == st.started_after):
            self.late += 1
            out.append(Notice(host, "late", prev, msg_id, 0, 0))
            self._remember(st, msg_id)  # its successors went out already: the chain's end stays where it is
            out.append(item)
            return Pushed(out)
        elif prev in st.waiting:  # two records name one predecessor: a broken chain; never drop either
            self._deliver(st, msg_id, item, out)
        else:
            st.waiting[prev] = _Held(msg_id, prev, item, now_ns)
            st.held_ids.add(msg_id)
            self.held += 1
            self.reordered += 1
        if self.held > self.max_held:
            self._release_oldest(now_ns, out)
        return Pushed(out)

    def tick(self, now_ns: int) -> list[T | Notice]:
        """Release what waited longer than ``wait_ns`` (with a ``gap`` notice per chain released)."""
        out: list[T | Notice] = []
        while self.held and self._oldest_since() <= now_ns - self.wait_ns:
            self._release_oldest(now_ns, out)
        return out

    def flush(self, now_ns: int) -> list[T | Notice]:
        """Release everything held (the consumer stops), with a ``gap`` notice per chain."""
        out: list[T | Notice] = []
        while self.held:
            self._release_oldest(now_ns, out)
        return out

    # -- inside -------------------------------------------------------------------------------------------------

    def _remember(self, st: _Host[T], msg_id: str) -> None:
        st.seen[msg_id] = None
        if len(st.seen) > REMEMBER:
            st.seen.popitem(last=False)

    def _deliver(self, st: _Host[T], msg_id: str, item: T, out: list[T | Notice]) -> None:
        out.append(item)
        self._remember(st, msg_id)
        st.last = msg_id
        while (nxt := st.waiting.pop(msg_id, None)) is not None:
            self.held -= 1
            st.held_ids.discard(nxt.msg_id)
            msg_id = nxt.msg_id
            out.append(nxt.item)
            self._remember(st, msg_id)
            st.last = msg_id

    def _oldest_since(self) -> int:
        return min(h.since_ns for st in self._hosts.values() for h in st.waiting.values())

    def _release_oldest(self, now_ns: int, out: list[T | Notice]) -> None:
        """Give up waiting for the predecessor of the chain held longest: deliver from its first record."""
        held = [(name, st, h) for name, st in self._hosts.items() for h in st.waiting.values()]
        # a chain's head waits for a record that is not held itself (a cycle, from a hostile log, has none: then
        # any of its records will do)
        heads = [x for x in held if x[2].prev not in x[1].held_ids] or held
        best = min(heads, key=lambda x: x[2].since_ns)
        host, st, head = best
        del st.waiting[head.prev]
        st.held_ids.discard(head.msg_id)
        self.held -= 1
        if st.last is None:
            st.started_after = head.prev
            out.append(Notice(host, "start", head.prev, head.msg_id, self.held + 1, now_ns - head.since_ns))
        else:
            self.gaps += 1
            out.append(Notice(host, "gap", st.last, head.msg_id, self.held + 1, now_ns - head.since_ns))
        self._deliver(st, head.msg_id, head.item, out)
