"""Resume: a SIGKILLed subscriber restarted with --since gets the rest exactly once; a restarted server (new
epoch) or a seq past the journal's retention gives a rescan first, never a silent gap."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from netproc import Collector, Subscriber, quiet, serving


def churn(d: Path, start: int, n: int) -> None:
    for i in range(start, start + n):
        (d / f"f{i}").write_text("x")
        os.rename(d / f"f{i}", d / f"g{i}")


def test_killed_subscriber_resumes_exactly_once(tmp_path: Path) -> None:
    with serving(tmp_path) as (srv, data):
        reference = Collector(srv.addr)
        first = Subscriber(srv.addr)
        churn(data, 0, 100)
        first.wait_lines(50)
        first.signal(signal.SIGKILL)  # mid-stream: whatever it printed in full is what it has
        first.finish()
        printed = first.records()
        last = printed[-1]
        churn(data, 100, 100)  # while nobody listens for it
        second = Subscriber(srv.addr, "--since", f"{last['epoch']}:{last['seq']}")
        churn(data, 200, 100)
        quiet(reference)
    second.finish()
    ref = reference.join()
    resumed = second.records()
    assert resumed[0]["kind"] != "rescan"
    seqs = [r["seq"] for r in printed] + [r["seq"] for r in resumed]
    assert seqs == [r.seq for r in ref]  # every record once, in order, none lost at the kill
    assert sum(1 for r in resumed if r["kind"] == "rename") + sum(1 for r in printed if r["kind"] == "rename") == 300


def test_restarted_server_gives_resumed_clients_a_rescan(tmp_path: Path) -> None:
    with serving(tmp_path) as (srv, data):
        sub = Subscriber(srv.addr)
        churn(data, 0, 10)
        sub.wait_lines(20)
        srv.kill()  # SIGKILL: the socket file stays behind
    assert sub.finish() == 1 and any("closed the connection" in line for line in sub.err)
    last = sub.records()[-1]
    with serving(tmp_path) as (srv2, _):  # the same socket path: replaces the stale socket
        assert srv2.epoch != srv.epoch
        again = Subscriber(srv2.addr, "--since", str(last["seq"]), "--epoch", str(last["epoch"]))
        bare = Subscriber(srv2.addr, "--since", str(last["seq"]))  # no epoch: cannot be trusted
        churn(data, 10, 5)
        again.wait_lines(11)
        bare.wait_lines(11)
    again.finish()
    bare.finish()
    first, *rest = again.records()
    assert first["kind"] == "rescan" and "new epoch" in first["message"] and first["epoch"] == srv2.epoch
    assert [r["kind"] for r in rest if r["kind"] == "rename"] == ["rename"] * 5
    assert rest[0]["seq"] == 1 and {r["epoch"] for r in rest} == {srv2.epoch}
    first, *rest = bare.records()
    assert first["kind"] == "rescan" and "epoch unknown" in first["message"]


def test_seq_older_than_retention_gives_the_lost_range(tmp_path: Path) -> None:
    with serving(tmp_path, "--journal-records", "20") as (srv, data):
        reference = Collector(srv.addr)
        churn(data, 0, 30)  # ~90 records
        quiet(reference)
        late = Subscriber(srv.addr, "--since", f"{srv.epoch}:5")
        churn(data, 30, 2)
        quiet(reference)
    late.finish()
    ref = reference.join()
    first, *rest = late.records()
    assert first["kind"] == "rescan" and "retention" in first["message"]
    lost_to = rest[0]["seq"] - 1
    assert f"records 6..{lost_to} lost" in first["message"]
    assert [r["seq"] for r in rest] == [r.seq for r in ref if r.seq > lost_to]
    assert len(rest) >= 20
