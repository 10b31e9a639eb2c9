"""Records on NATS JetStream: real ``nats-server -js`` processes (tests/nats_fixtures.py), the real kernel.

What is proved: every record ``fsnorm watch`` prints is stored exactly once and in order; a 3-node cluster
(replicas=3) that loses a node mid-stream loses and duplicates nothing; a server down for 5 s costs nothing
(the spool delivers afterwards, in order); a restarted fsnorm re-sending its spool stores nothing twice; a full
spool is reported by an overflow record, never silently.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import watchproc
from hypothesis import given, settings
from hypothesis import strategies as st
from live import Lines
from nats_fixtures import NatsNode, free_port, nats_cluster, nats_server

from normalizer.formats.jsonl import rec_to_json
from normalizer.records import Rec
from normalizer.sinks.nats import PREV_HEADER, NatsSink, NatsSinkConfig, Spool

__all__ = ["nats_cluster", "nats_server"]  # fixtures, used by name

pytest.importorskip("nats")

FSNORM = [sys.executable, "-m", "normalizer"]
REPO = Path(__file__).resolve().parent.parent


# -- helpers -------------------------------------------------------------------------------------------------
def stream_messages(url: str, stream: str = "FSNORM") -> list[tuple[str, str, str]]:
    """Every message of ``stream`` in stream order: (subject, Nats-Msg-Id, payload)."""

    async def run() -> list[tuple[str, str, str]]:
        import nats

        nc = await nats.connect(url)
        try:
            js = nc.jetstream()
            info = await js.stream_info(stream)
            out = []
            seqs = range(info.state.first_seq, info.state.last_seq + 1)
            for start in range(0, len(seqs), 256):  # 256 requests in flight, not one round trip per message
                for msg in await asyncio.gather(*(js.get_msg(stream, seq) for seq in seqs[start:start + 256])):
                    assert msg.subject is not None and msg.data is not None
                    out.append((msg.subject, (msg.headers or {}).get("Nats-Msg-Id", ""), msg.data.decode()))
            return out
        finally:
            await nc.close()

    return asyncio.run(run())


def stream_count(url: str, stream: str = "FSNORM") -> int:
    async def run() -> int:
        import nats

        nc = await nats.connect(url)
        try:
            try:
                # A 1 s answer bound (not the client's 5 s): right after a node restarts the first ask can go
                # unanswered while the cluster settles, and wait_count asks again at once.
                return int((await nc.jetstream(timeout=1.0).stream_info(stream)).state.messages)
            except Exception:
                return 0
        finally:
            await nc.close()

    return asyncio.run(run())


def wait_count(url: str, count: int, timeout: float = 60.0) -> int:
    end = time.monotonic() + timeout
    n = stream_count(url)
    while n < count and time.monotonic() < end:
        time.sleep(0.1)
        n = stream_count(url)
    return n


def start_watch(root: Path, url: str, spool: Path, *extra: str) -> tuple[subprocess.Popen[str], Lines]:
    """``fsnorm watch ROOT`` publishing to ``url`` as hostA through ``spool``; returned once it watches ROOT."""
    return watchproc.start_watch([str(root), "--sink", url, "--spool", str(spool), "--sink-host", "hostA", *extra], 1)


def stop_watch(proc: subprocess.Popen[str], lines: Lines) -> tuple[list[str], str]:
    """watchproc.stop_watch with a minute for the exit drain; the lines without their newline."""
    rest, err = watchproc.stop_watch(proc, lines, 60)
    return [ln.rstrip("\n") for ln in rest], err


def wait_spool_empty(spool: Path, timeout: float = 120.0) -> None:
    """Until the publisher has every record acknowledged (the spool file is cut to 0 then), within a bound."""
    end = time.monotonic() + timeout
    while (spool / "spool.log").stat().st_size and time.monotonic() < end:
        time.sleep(0.05)


def resume_leftovers(spool: Path, servers: list[str], err: str) -> None:
    """Records the 5 s exit drain could not deliver (a loaded machine) stay in the spool, as stderr says; the
    next run delivers them. Do that, so the check is about what is lost, not about how fast."""
    if "left in" in err:
        sink = NatsSink(NatsSinkConfig(servers=servers, spool_dir=spool, host="hostA"))
        assert sink.close(120) == 0, sink.last_error


def workload(root: Path, n: int, tag: str) -> None:
    """Create, write, rename and delete files: every kind of record a fleet ships."""
    for i in range(n):
        p = root / f"{tag}-{i}"
        p.write_bytes(b"x")
        os.rename(p, root / f"{tag}-{i}.r")
        if i % 3 == 0:
            os.unlink(root / f"{tag}-{i}.r")


def check_exactly_once(printed: list[str], stored: list[tuple[str, str, str]], host: str = "hostA") -> None:
    """The stream holds exactly the printed lines, in order, each under PREFIX.host.kind, msg ids unique."""
    assert printed, "the workload produced no record"
    assert [payload for _, _, payload in stored] == printed
    ids = [msg_id for _, msg_id, _ in stored]
    assert len(set(ids)) == len(ids)
    for subject, msg_id, payload in stored:
        assert subject == f"fsnorm.{host}.{json.loads(payload)['kind']}"
        assert msg_id.startswith(f"{host}:")


# -- live workload, one node --------------------------------------------------------------------------------
def test_live_workload_arrives_exactly_once_and_subscribe_resumes(nats_server: NatsNode, tmp_path: Path) -> None:
    root = tmp_path / "w"
    root.mkdir()
    proc, lines = start_watch(root, nats_server.url, tmp_path / "spool")
    workload(root, 150, "a")
    wait_spool_empty(tmp_path / "spool")
    printed, err = stop_watch(proc, lines)
    assert "records acknowledged" in err, err
    resume_leftovers(tmp_path / "spool", [nats_server.url], err)
    stored = stream_messages(nats_server.url)
    check_exactly_once(printed, stored)
    seqs = [int(msg_id.rsplit(":", 1)[1]) for _, msg_id, _ in stored]
    assert seqs == list(range(1, len(printed) + 1))

    sub = [*FSNORM, "subscribe", nats_server.url, "--idle-exit", "1"]
    first = subprocess.run(sub, capture_output=True, text=True, cwd=REPO, timeout=60)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == printed
    again = subprocess.run(sub, capture_output=True, text=True, cwd=REPO, timeout=60)
    assert again.returncode == 0 and again.stdout == "", "the durable consumer did not resume where it stopped"
    renames = subprocess.run([*sub, "--durable", "r", "--kind", "rename", "--host", "hostA"], capture_output=True,
                             text=True, cwd=REPO, timeout=60)
    assert renames.stdout.splitlines() == [ln for ln in printed if json.loads(ln)["kind"] == "rename"]
    two = subprocess.run([*sub, "--durable", "m", "--kind", "rename", "--kind", "delete"], capture_output=True,
                         text=True, cwd=REPO, timeout=60)
    assert two.stdout.splitlines() == [ln for ln in printed if json.loads(ln)["kind"] in ("rename", "delete")]
    assert any(json.loads(ln)["kind"] == "delete" for ln in printed)
    changed = subprocess.run([*sub, "--durable", "r", "--kind", "delete"], capture_output=True, text=True, cwd=REPO,
                             timeout=60)
    assert changed.returncode == 1 and "(fsnorm subscribe: kinds rename, per-host order), not" in changed.stderr, \
        changed.stderr
    other_host = subprocess.run([*sub, "--durable", "o", "--host", "hostB"], capture_output=True, text=True,
                                cwd=REPO, timeout=60)
    assert other_host.returncode == 0 and other_host.stdout == ""


def whole_lines(lines: list[str]) -> list[str]:
    """The records a SIGKILLed fsnorm printed: its lines without their newlines. SIGKILL may land inside a
    write, leaving a last line cut short (the pipe took part of a multi-line write); that record was never
    printed whole, so no reader could have acted on it, and it is not counted."""
    return [ln.rstrip("\n") for ln in lines if ln.endswith("\n")]


# -- server down for 5 s ------------------------------------------------------------------------------------
def test_server_down_5s_records_spooled_then_delivered_in_order(nats_server: NatsNode, tmp_path: Path) -> None:
    root = tmp_path / "w"
    root.mkdir()
    proc, lines = start_watch(root, nats_server.url, tmp_path / "spool")
    workload(root, 30, "before")
    assert wait_count(nats_server.url, 1) >= 1
    nats_server.stop()
    down_at = time.monotonic()
    workload(root, 60, "down")
    time.sleep(max(0.0, 5.0 - (time.monotonic() - down_at)))
    assert (tmp_path / "spool" / "spool.log").stat().st_size > 0, "nothing was spooled while the server was down"
    nats_server.start()
    workload(root, 30, "after")
    wait_spool_empty(tmp_path / "spool")
    printed, err = stop_watch(proc, lines)
    resume_leftovers(tmp_path / "spool", [nats_server.url], err)
    check_exactly_once(printed, stream_messages(nats_server.url))


def test_restart_resumes_the_spool_and_publishes_nothing_twice(tmp_path: Path) -> None:
    """Run 1 cannot reach the log: its records stay in the spool. A copy of that spool stands for a run that
    published them but died before writing its acknowledgement. Run 2 delivers the spool; run 3 (the copy)
    re-sends the same msg ids: JetStream stores nothing twice, and run 2's new records get new ids."""
    node = NatsNode("n1", tmp_path / "n1")
    node.store.mkdir()
    spool, copy = tmp_path / "spool", tmp_path / "spool-copy"
    recs = [Rec("create", f"/x/{i}".encode(), False, i, 256) for i in range(100)]
    cfg = NatsSinkConfig(servers=[node.url], spool_dir=spool, host="hostA")
    sink = NatsSink(cfg)
    sink.put(recs)
    assert sink.close(0.3) == 100 and sink.published == 0
    shutil.copytree(spool, copy)
    node.start()
    try:
        sink = NatsSink(cfg)
        sink.put(recs[:10])
        assert sink.close(30) == 0 and sink.published == 110
        sink = NatsSink(NatsSinkConfig(servers=[node.url], spool_dir=copy, host="hostA"))
        assert sink.close(30) == 0 and sink.published == 100  # acknowledged as duplicates
        stored = stream_messages(node.url)
        assert len(stored) == 110
        assert len({msg_id for _, msg_id, _ in stored}) == 110
        assert [m.split(":")[2] for _, m, _ in stored] == ["1"] * 100 + ["2"] * 10  # epochs of run 1 and run 2
    finally:
        node.stop()


def test_fsnorm_killed_mid_stream_then_restarted_stores_every_printed_record_once(nats_server: NatsNode,
                                                                                 tmp_path: Path) -> None:
    """SIGKILL while publishing: the spool may hold records already stored but not yet acknowledged; the next
    run re-sends them under their old msg ids. Every record either run printed is stored, none twice."""
    root = tmp_path / "w"
    root.mkdir()
    spool = tmp_path / "spool"
    proc, lines = start_watch(root, nats_server.url, spool)
    workload(root, 200, "one")
    first = lines.next()
    watchproc.close_watch(proc, lines)  # SIGKILL
    printed1 = whole_lines([first, *lines.rest(60)])
    assert (spool / "spool.log").exists()
    proc, lines = start_watch(root, nats_server.url, spool)
    workload(root, 20, "two")
    wait_spool_empty(spool)
    printed2, err = stop_watch(proc, lines)
    resume_leftovers(spool, [nats_server.url], err)
    stored = stream_messages(nats_server.url)
    ids = [m for _, m, _ in stored]
    assert len(set(ids)) == len(ids)
    run1 = [(int(m.rsplit(":", 1)[1]), p) for _, m, p in stored if m.split(":")[2] == "1"]
    run2 = [p for _, m, p in stored if m.split(":")[2] == "2"]
    assert [seq for seq, _ in run1] == list(range(1, len(run1) + 1))
    # run 1 stored at least what it printed (spooled before printed), in order; perhaps a few more
    assert [p for _, p in run1][:len(printed1)] == printed1
    assert run2 == printed2


def test_full_spool_reports_the_loss_in_an_overflow_record(tmp_path: Path) -> None:
    node = NatsNode("n1", tmp_path / "n1")
    node.store.mkdir()
    recs = [Rec("modify", f"/x/{i}".encode(), False, i, 2) for i in range(50)]
    cfg = NatsSinkConfig(servers=[node.url], spool_dir=tmp_path / "spool", host="hostA", spool_bytes=2000)
    sink = NatsSink(cfg)
    try:
        sink.put(recs)
        kept = 50 - sink.lost
        assert 0 < kept < 50  # a line is ~250 bytes: a 2000-byte spool holds a handful
        node.start()
        end = time.monotonic() + 60
        while sink.spool.pending_bytes() and time.monotonic() < end:
            time.sleep(0.05)
        sink.put([Rec("create", b"/x/after", False, 99, 256)])
    finally:
        assert sink.close(30) == 0
    stored = stream_messages(node.url)
    node.stop()
    kinds = [json.loads(p)["kind"] for _, _, p in stored]
    assert kinds == ["modify"] * kept + ["overflow", "create"]
    overflow = json.loads(stored[kept][2])
    assert f"{50 - kept} records lost after seq {kept} ({50 - kept} modify)" in overflow["message"]
    # only spooled records are numbered: a host's seqs have no gaps
    assert [int(m.rsplit(":", 1)[1]) for _, m, _ in stored] == [*range(1, kept + 3)]


# -- 3-node cluster, replicas=3, a node killed mid-stream ---------------------------------------------------
def test_cluster_kill_one_node_mid_stream_loses_and_duplicates_nothing(nats_cluster: list[NatsNode],
                                                                      tmp_path: Path) -> None:
    root = tmp_path / "w"
    root.mkdir()
    url = "nats://" + ",".join(f"127.0.0.1:{n.port}" for n in nats_cluster)
    proc, lines = start_watch(root, url, tmp_path / "spool", "--sink-replicas", "3")
    workload(root, 60, "a")
    assert wait_count(nats_cluster[1].url, 1) >= 1
    victim = next(n for n in nats_cluster if client_count(n) > 0)  # the node fsnorm is connected to
    workload(root, 30, "b")
    victim.stop(kill=True)
    workload(root, 90, "c")
    # correctness, not timing: a loaded machine may need longer than the 5 s exit drain for the new leader
    wait_spool_empty(tmp_path / "spool")
    printed, err = stop_watch(proc, lines)
    resume_leftovers(tmp_path / "spool", [n.url for n in nats_cluster if n is not victim], err)
    survivor = next(n for n in nats_cluster if n is not victim).url
    stored = stream_messages(survivor)
    check_exactly_once(printed, stored)
    info = asyncio.run(_replicas(survivor))
    assert info == 3


def client_count(node: NatsNode) -> int:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{node.http_port}/connz", timeout=5) as resp:
        return int(json.load(resp)["num_connections"])


async def _replicas(url: str) -> int:
    import nats

    nc = await nats.connect(url)
    try:
        return int((await nc.jetstream().stream_info("FSNORM")).config.num_replicas or 0)
    finally:
        await nc.close()


# -- the spool on its own -----------------------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.binary(min_size=1, max_size=40).map(lambda b: b.replace(b"\n", b"_")),
                          st.booleans()), max_size=30),
       st.integers(min_value=50, max_value=600))
def test_spool_keeps_whole_lines_within_its_bound_and_resumes(tmp_path_factory: pytest.TempPathFactory,
                                                             items: list[tuple[bytes, bool]], bound: int) -> None:
    """Appended lines come back whole and in order, never past the bound; what is acked is not read again,
    and a reopened spool resumes at the first unacknowledged line."""
    directory = tmp_path_factory.mktemp("spool")
    spool = Spool(directory, max_bytes=bound)
    kept: list[bytes] = []
    for n, (payload, ack_now) in enumerate(items):
        line = b"id%d\tsubj\t" % n + payload + b"\n"
        if spool.append([line]):
            kept.append(line)
        assert spool.pending_bytes() <= bound
        if ack_now and kept:
            got = spool.read(spool.acked, 1)
            assert got[0].payload + b"\n" == kept[0].split(b"\t", 2)[2]
            spool.ack(got[0].end)
            kept.pop(0)
    spool.close()
    again = Spool(directory, max_bytes=bound)
    try:
        rest = again.read(again.acked, 1000)
        assert [f"{ln.msg_id}\t{ln.subject}\t".encode() + ln.payload + b"\n" for ln in rest] == kept
        assert again.epoch == 2
    finally:
        again.close()


def test_spool_drops_a_torn_last_line(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10_000)
    spool.append([b"a:1\ts\t{}\n", b"a:2\ts\t{}\n"])
    spool.close()
    with open(tmp_path / "spool.log", "ab") as f:
        f.write(b"a:3\ts\t{\"ki")  # a kill in the middle of an append
    again = Spool(tmp_path, max_bytes=10_000)
    try:
        assert again.torn == len(b"a:3\ts\t{\"ki")
        again.append([b"a:4\ts\t{}\n"])
        assert [ln.msg_id for ln in again.read(0, 10)] == ["a:1", "a:2", "a:4"]
    finally:
        again.close()


def test_spool_in_use_and_bad_url_are_clear_errors(tmp_path: Path) -> None:
    from normalizer.sinks.nats import SinkError, parse_servers

    first = Spool(tmp_path, max_bytes=100)
    try:
        with pytest.raises(SinkError, match="in use"):
            Spool(tmp_path, max_bytes=100)
    finally:
        first.close()
    with pytest.raises(SinkError, match="not a nats://"):
        parse_servers("http://x:1")
    bad = subprocess.run([*FSNORM, "watch", str(tmp_path), "--sink", "tcp://127.0.0.1:1", "--spool",
                          str(tmp_path / "s")], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert bad.returncode == 1 and "not a nats:// URL" in bad.stderr and "Traceback" not in bad.stderr
    quiet = subprocess.run([*FSNORM, "watch", str(tmp_path), "--quiet"], capture_output=True, text=True, cwd=REPO,
                           timeout=60)
    assert quiet.returncode == 1 and "--quiet needs --sink" in quiet.stderr
    port = free_port()
    absent = subprocess.run([*FSNORM, "subscribe", f"nats://127.0.0.1:{port}", "--idle-exit", "0"],
                            capture_output=True, text=True, cwd=REPO, timeout=60)
    assert absent.returncode == 1 and "cannot connect" in absent.stderr and "Traceback" not in absent.stderr


# -- order per host while the stream's leader is killed again and again -------------------------------------
async def _leader(urls: list[str]) -> str:
    import nats

    nc = await nats.connect(servers=urls)
    try:
        info = await nc.jetstream().stream_info("FSNORM")
        return str(info.cluster.leader if info.cluster is not None else "")
    finally:
        await nc.close()


def stored_inversions(stored: list[tuple[str, str, str]]) -> int:
    """How many records the stream holds after a later record of the same host (the disorder a consumer must
    repair): pairs (host, epoch) whose seq goes down."""
    last: dict[tuple[str, str], int] = {}
    inversions = 0
    for _, msg_id, _ in stored:
        host, _boot, epoch, seq = msg_id.split(":")
        key = (host, epoch)
        if int(seq) < last.get(key, 0):
            inversions += 1
        last[key] = max(last.get(key, 0), int(seq))
    return inversions


def test_cluster_leader_killed_repeatedly_consumer_gets_each_host_in_order_exactly_once(
        nats_cluster: list[NatsNode], tmp_path: Path) -> None:
    """Two hosts publish to a replicas=3 stream while its leader is SIGKILLed three times (and brought back, so
    a quorum stays). ``fsnorm subscribe`` prints exactly what each host printed, in each host's order, each
    record once; the stream's own order is reported (it may or may not have been disturbed in this run)."""
    url = "nats://" + ",".join(f"127.0.0.1:{n.port}" for n in nats_cluster)
    hosts = {}
    for name in ("hostA", "hostB"):
        root = tmp_path / name
        root.mkdir()
        proc, lines = watchproc.start_watch([str(root), "--sink", url, "--spool", str(tmp_path / f"sp{name}"),
                                             "--sink-host", name, "--sink-replicas", "3"], 1)
        hosts[name] = (root, proc, lines)
    by_name = {n.name: n for n in nats_cluster}
    busy = threading.Event()
    busy.set()

    def keep_writing(root: Path) -> None:  # records in flight whenever a leader dies
        i = 0
        while busy.is_set():
            workload(root, 10, f"w{i}")
            i += 1
            time.sleep(0.1)

    writers = [threading.Thread(target=keep_writing, args=(root,)) for root, _, _ in hosts.values()]
    for w in writers:
        w.start()
    try:
        for _ in range(3):
            assert wait_count(nats_cluster[0].url, 1) >= 1
            time.sleep(1.0)
            victim = by_name[asyncio.run(_leader([n.url for n in nats_cluster]))]
            victim.stop(kill=True)
            time.sleep(1.0)
            victim.start()
    finally:
        busy.clear()
        for w in writers:
            w.join()
    printed: dict[str, list[str]] = {}
    for name, (_, proc, lines) in hosts.items():
        wait_spool_empty(tmp_path / f"sp{name}")
        printed[name], err = stop_watch(proc, lines)
        print(f"\n{name}: {err.strip()}")
        resume_leftovers(tmp_path / f"sp{name}", [n.url for n in nats_cluster], err)
    stored = stream_messages(nats_cluster[0].url)
    ids = [m for _, m, _ in stored]
    assert len(ids) == len(set(ids)) == sum(len(p) for p in printed.values())
    print(f"\nstream order: {stored_inversions(stored)} records stored after a later one of their host")
    sub = subprocess.run([*FSNORM, "subscribe", url, "--idle-exit", "2"], capture_output=True, text=True, cwd=REPO,
                         timeout=120)
    assert sub.returncode == 0, sub.stderr
    got = sub.stdout.splitlines()
    assert not [ln for ln in got if json.loads(ln)["kind"] == "rescan"], sub.stderr
    for name, lines_printed in printed.items():
        root = str(tmp_path / name)
        mine = [ln for ln in got if root + "/" in ln]
        assert mine == lines_printed, f"{name}: not exactly its records in its order"
    assert len(got) == sum(len(p) for p in printed.values())


class _OneLostPublish(NatsSink):
    """A real sink whose first pipelined batch loses one publish (the second message is not sent and reported
    failed) while the messages after it are stored: what a leader change does to a batch in flight, made to
    happen on demand. Everything else (the retry from the first unacknowledged record, the server, the
    consumer) is the real thing."""

    lost_once = False

    async def _publish(self, js: object, lines: list[Any], prev: str) -> int:
        if self.lost_once or len(lines) < 4:
            return await super()._publish(js, lines, prev)  # type: ignore[arg-type]
        self.lost_once = True
        prevs = [prev, *(ln.msg_id for ln in lines[:-1])]
        for i, (ln, p) in enumerate(zip(lines, prevs, strict=True)):
            if i != 1:
                await js.publish(ln.subject, ln.payload, stream="FSNORM",  # type: ignore[attr-defined]
                                 headers={"Nats-Msg-Id": ln.msg_id, PREV_HEADER: p})
        return 1


def test_a_publish_lost_mid_batch_is_stored_late_and_subscribe_restores_the_host_order(nats_server: NatsNode,
                                                                                       tmp_path: Path) -> None:
    recs = [Rec("create", f"/x/{i}".encode(), False, i, 256) for i in range(20)]
    sink = _OneLostPublish(NatsSinkConfig(servers=[nats_server.url], spool_dir=tmp_path / "spool", host="hostA"))
    sink.put(recs)
    assert sink.close(30) == 0 and sink.lost_once and sink.retries == 1
    stored = stream_messages(nats_server.url)
    assert len(stored) == 20 and stored_inversions(stored) == 1  # record 2 was stored after 3..20
    expected = [rec_to_json(r) for r in recs]
    in_order = subprocess.run([*FSNORM, "subscribe", nats_server.url, "--idle-exit", "1"], capture_output=True,
                              text=True, cwd=REPO, timeout=60)
    assert in_order.returncode == 0, in_order.stderr
    assert in_order.stdout.splitlines() == expected
    as_stored = subprocess.run([*FSNORM, "subscribe", nats_server.url, "--idle-exit", "1", "--durable", "raw",
                                "--order-wait", "0"], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert as_stored.stdout.splitlines() == [p for _, _, p in stored] != expected


def test_a_record_that_never_comes_is_reported_as_a_gap(nats_server: NatsNode, tmp_path: Path) -> None:
    """A record is missing from the stream for good (deleted here; in real life: past the retention, or
    purged): the subscriber holds its successors for --order-wait, then says so with a rescan record and goes
    on in order."""
    recs = [Rec("create", f"/x/{i}".encode(), False, i, 256) for i in range(6)]
    sink = NatsSink(NatsSinkConfig(servers=[nats_server.url], spool_dir=tmp_path / "spool", host="hostA"))
    sink.put(recs)
    assert sink.close(30) == 0

    async def delete_third() -> None:
        import nats

        nc = await nats.connect(nats_server.url)
        try:
            await nc.jetstream().delete_msg("FSNORM", 3)
        finally:
            await nc.close()

    asyncio.run(delete_third())
    sub = subprocess.run([*FSNORM, "subscribe", nats_server.url, "--idle-exit", "1", "--order-wait", "1"],
                         capture_output=True, text=True, cwd=REPO, timeout=60)
    assert sub.returncode == 0, sub.stderr
    got = [json.loads(ln) for ln in sub.stdout.splitlines()]
    assert [g["kind"] for g in got] == ["create", "create", "rescan", "create", "create", "create"]
    assert [g["path"] for g in got if g["kind"] == "create"] == ["/x/0", "/x/1", "/x/3", "/x/4", "/x/5"]
    assert "did not arrive" in got[2]["message"] and "did not arrive" in sub.stderr


# -- subscriber output formats ------------------------------------------------------------------------------
def test_subscribe_formats_are_watchs_with_the_publishing_host(nats_server: NatsNode, tmp_path: Path) -> None:
    from normalizer.formats import FormatContext, make_formatter

    recs = [Rec("create", b"/w/a", False, 10, 256), Rec("rename", b"/w/a", False, 11, 192, 5, b"/w/caf\xe9"),
            Rec.note("delete", b"/w/d", True, 12, 512, pid=42, object_id="0a0b", source="fanotify",
                     flags=("merged",))]
    sink = NatsSink(NatsSinkConfig(servers=[nats_server.url], spool_dir=tmp_path / "spool", host="hostA"))
    sink.put(recs)
    assert sink.close(30) == 0

    def sub(*args: str) -> list[str]:
        done = subprocess.run([*FSNORM, "subscribe", nats_server.url, "--idle-exit", "1", *args],
                              capture_output=True, cwd=REPO, timeout=60)
        assert done.returncode == 0 and b"Traceback" not in done.stderr, done.stderr
        return done.stdout.decode("utf-8", "surrogateescape").splitlines()

    ctx = FormatContext(host="hostA")
    assert sub("--durable", "j") == [rec_to_json(r) for r in recs]
    assert sub("--durable", "t", "--format", "text") == [make_formatter("text", ctx)(r) for r in recs]
    template = "%w|%f|%e|%c"
    assert sub("--durable", "p", "--format", template) == [make_formatter(template, ctx)(r) for r in recs]
    ecs = [json.loads(ln) for ln in sub("--durable", "e", "--format", "ecs")]
    want = [json.loads(make_formatter("ecs", ctx)(r)) for r in recs]
    for doc in [*ecs, *want]:
        doc.pop("@timestamp")  # the wall clock: the publisher's, estimated from the stream (HostFormats)
    assert ecs == want and {d["host"]["name"] for d in ecs} == {"hostA"}
    ocsf = [json.loads(ln) for ln in sub("--durable", "o", "--format", "ocsf", "--kind", "rename")]
    assert [o["file"]["name"] for o in ocsf] == ["a"] and ocsf[0]["device"]["hostname"] == "hostA"
    bad = subprocess.run([*FSNORM, "subscribe", nats_server.url, "--format", "nope"], capture_output=True, text=True,
                         cwd=REPO, timeout=60)
    assert bad.returncode == 2 and "unknown format 'nope'" in bad.stderr


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(["create", "rename", "delete", "overflow", "rescan"]), st.binary(max_size=30),
       st.binary(max_size=30), st.booleans(), st.integers(0, 2**40), st.integers(0, 2**32 - 1),
       st.none() | st.integers(0, 2**31), st.lists(st.sampled_from(["merged", "unwatched", "synthesized"]),
                                                  unique=True).map(tuple),
       st.none() | st.integers(1, 2**22), st.none() | st.text(max_size=20), st.sampled_from(["inotify", "fanotify"]))
def test_a_published_line_reads_back_as_the_same_record(kind: str, path: bytes, dst: bytes, is_dir: bool, t_ns: int,
                                                        mask: int, cookie: int | None, flags: tuple[str, ...],
                                                        pid: int | None, message: str | None, source: str) -> None:
    from normalizer.cli.nats import rec_from_json

    rec = Rec.note(kind, path, is_dir, t_ns, mask, flags=flags, cookie=cookie, pid=pid, message=message,
                   source=source, object_id=None if pid is None else "abcd")
    if kind == "rename":
        rec.dst = dst
    back = rec_from_json(rec_to_json(rec).encode())
    assert back.identity() == rec.identity()
    assert rec_from_json(b"{not json").kind == "error"


# -- spool durability ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("policy", ["always", "batch", "never"])
def test_kill_9_right_after_a_read_loses_nothing_the_spool_took(nats_server: NatsNode, tmp_path: Path,
                                                                 policy: str) -> None:
    """fsnorm is SIGKILLed as soon as it has printed the first records of a burst (it spools before it prints).
    The next run publishes what the first left: every record run 1 printed is in the stream, once."""
    root = tmp_path / "w"
    root.mkdir()
    spool = tmp_path / "spool"
    proc, lines = start_watch(root, nats_server.url, spool, "--sink-fsync", policy)
    for i in range(200):
        (root / f"f{i}").write_bytes(b"x")
    first = lines.next()
    watchproc.close_watch(proc, lines)  # SIGKILL
    printed1 = whole_lines([first, *lines.rest(30)])
    proc2, lines2 = start_watch(root, nats_server.url, spool)
    wait_spool_empty(spool)
    _, err = stop_watch(proc2, lines2)
    resume_leftovers(spool, [nats_server.url], err)
    stored = [p for _, m, p in stream_messages(nats_server.url) if m.split(":")[2] == "1"]
    assert stored[:len(printed1)] == printed1 and len(set(stored)) == len(stored)


_SPOOL_PROGRAM = """
import sys
from pathlib import Path
from normalizer.sinks.nats import Spool
spool = Spool(Path(sys.argv[1]), max_bytes=1 << 20, fsync=sys.argv[2])
for batch in range(10):
    spool.append([b"h:b:1:%d\\ts\\t{}\\n" % (batch * 5 + i) for i in range(5)])
print(spool.syncs)
spool.close()
"""


@pytest.mark.parametrize(("policy", "syncs"), [("always", 50), ("batch", 10), ("never", 0)])
def test_fsync_policy_is_what_the_kernel_sees(tmp_path: Path, policy: str, syncs: int) -> None:
    """10 appends of 5 records under strace: fdatasync(2) once per record (always), once per append, i.e. per
    kernel read (batch), never (never)."""
    if shutil.which("strace") is None:
        pytest.fail("strace is needed (apt-get install strace; .ci/run installs it)")
    trace = tmp_path / "trace"
    done = subprocess.run(["strace", "-qq", "-e", "trace=fdatasync", "-o", str(trace), sys.executable, "-c",
                           _SPOOL_PROGRAM, str(tmp_path / "spool"), policy], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == syncs
    assert trace.read_text().count("fdatasync(") == syncs
