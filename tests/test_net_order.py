"""normalizer.net.order: each host's records back in chain order, whatever order the log stored them in."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from normalizer.net.order import Notice, Reorderer

NEVER = 10**18


def chains(sizes: dict[str, int]) -> dict[str, list[tuple[str, str]]]:
    """Per host, its records as (msg id, prev) in publishing order."""
    out = {}
    for host, n in sizes.items():
        ids = [f"{host}:b:1:{i}" for i in range(1, n + 1)]
        out[host] = list(zip(ids, ["", *ids[:-1]], strict=True))
    return out


@st.composite
def stored_streams(draw: st.DrawFn) -> tuple[dict[str, list[tuple[str, str]]], list[tuple[str, str, str]]]:
    """Hosts' chains and an order a log could store them in: each host's records pipelined in batches where a
    failed publish is stored after the rest of its batch (re-published), and stored-but-unacknowledged records
    sent again (duplicates); hosts interleaved at random."""
    sizes = draw(st.dictionaries(st.sampled_from(["a", "b", "c"]), st.integers(1, 40), min_size=1))
    per_host = chains(sizes)
    stored: dict[str, list[tuple[str, str, str]]] = {}
    for host, chain in per_host.items():
        seq: list[tuple[str, str, str]] = []
        i = 0
        while i < len(chain):
            batch = chain[i:i + draw(st.integers(1, 8))]
            fail = draw(st.integers(-1, len(batch) - 1))  # -1: no failure in this batch
            if fail < 0:
                seq += [(host, m, p) for m, p in batch]
            else:
                seq += [(host, m, p) for m, p in batch[:fail] + batch[fail + 1:]]
                seq.append((host, *batch[fail]))
                if draw(st.booleans()):
                    seq.append((host, *batch[-1]))  # an acknowledgement lost: sent again
            i += len(batch)
        stored[host] = seq
    merged: list[tuple[str, str, str]] = []
    queues = {h: list(s) for h, s in stored.items()}
    while any(queues.values()):
        host = draw(st.sampled_from(sorted(h for h, q in queues.items() if q)))
        merged.append(queues[host].pop(0))
    return per_host, merged


def run(stream: list[tuple[str, str, str]], *, wait_ns: int = NEVER, max_held: int = 10**6,
        gap_every: int = 0) -> tuple[list[str | Notice], int]:
    ro: Reorderer[str] = Reorderer(wait_ns=wait_ns, max_held=max_held)
    out: list[str | Notice] = []
    dups = 0
    for t, (host, msg_id, prev) in enumerate(stream):
        pushed = ro.push(host, msg_id, prev, msg_id, t)
        out += pushed.out
        dups += pushed.duplicate
        out += ro.tick(t)
    out += ro.flush(len(stream))
    assert ro.held == 0
    return out, dups


@settings(max_examples=300, deadline=None)
@given(stored_streams())
def test_every_host_in_order_exactly_once_when_nothing_is_lost(case: tuple[dict[str, list[tuple[str, str]]],
                                                                           list[tuple[str, str, str]]]) -> None:
    per_host, stream = case
    out, dups = run(stream)
    assert not [o for o in out if isinstance(o, Notice)]
    for host, chain in per_host.items():
        assert [o for o in out if isinstance(o, str) and o.startswith(f"{host}:")] == [m for m, _ in chain]
    assert dups == len(stream) - sum(len(c) for c in per_host.values())


@settings(max_examples=200, deadline=None)
@given(stored_streams(), st.data())
def test_a_lost_record_gives_a_gap_notice_and_the_rest_still_go_out_once_in_order(
        case: tuple[dict[str, list[tuple[str, str]]], list[tuple[str, str, str]]], data: st.DataObject) -> None:
    per_host, stream = case
    host = data.draw(st.sampled_from(sorted(per_host)))
    chain = per_host[host]
    if len(chain) < 2:
        return
    lost = data.draw(st.sampled_from([m for m, _ in chain[1:]]))  # never the chain's first: that one starts it
    kept = [r for r in stream if r[1] != lost]
    # A short hold: a merely late record may go out after its successors (with a notice), but every record still
    # goes out exactly once.
    hurried, _ = run(kept, wait_ns=data.draw(st.integers(1, 50)))
    delivered = [o for o in hurried if isinstance(o, str)]
    assert sorted(delivered) == sorted({m for c in per_host.values() for m, _ in c} - {lost})
    # A long hold (the consumer's flush at the end releases what waits for the lost one): order is kept.
    out, _ = run(kept)
    delivered = [o for o in out if isinstance(o, str)]
    assert sorted(delivered) == sorted({m for c in per_host.values() for m, _ in c} - {lost})
    gaps = [o for o in out if isinstance(o, Notice) and o.kind == "gap"]
    assert all(g.host == host for g in gaps)
    if lost == chain[-1][0]:  # nothing names it as predecessor: the loss cannot be seen, and nothing waits
        assert not gaps
        return
    after = chain[[m for m, _ in chain].index(lost) + 1][0]
    assert any(g.before == after for g in gaps), (gaps, after)
    for h, c in per_host.items():  # every host's delivered records still in chain order
        ids = [m for m, _ in c if m != lost]
        assert [o for o in delivered if o.startswith(f"{h}:")] == ids


def test_first_record_of_a_resumed_host_waits_then_starts_the_chain() -> None:
    ro: Reorderer[str] = Reorderer(wait_ns=10, max_held=100)
    assert ro.push("h", "h:1:5", "h:1:4", "r5", 0).out == []
    assert ro.push("h", "h:1:6", "h:1:5", "r6", 1).out == []
    assert ro.tick(5) == []
    out = ro.tick(10)
    assert isinstance(out[0], Notice) and out[0].kind == "start" and out[1:] == ["r5", "r6"]
    assert ro.gaps == 0
    late = ro.push("h", "h:1:4", "h:1:3", "r4", 11).out
    assert isinstance(late[0], Notice) and late[0].kind == "late" and late[1:] == ["r4"]
    assert ro.held == 0


def test_the_hold_is_bounded_by_count() -> None:
    ro: Reorderer[int] = Reorderer(wait_ns=NEVER, max_held=3)
    assert ro.push("h", "1", "", 1, 0).out == [1]
    outs = [ro.push("h", str(i), str(i - 1), i, i).out for i in range(3, 8)]  # 2 never comes
    assert outs[:3] == [[], [], []]
    gap = outs[3][0]
    assert isinstance(gap, Notice) and gap.kind == "gap" and (gap.after, gap.before) == ("1", "3")
    assert outs[3][1:] == [3, 4, 5, 6] and outs[4] == [7]
    assert "did not arrive" in gap.message
