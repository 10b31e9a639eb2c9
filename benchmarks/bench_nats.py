"""Records on NATS JetStream: acknowledged publish rate and rename(2) -> consumer latency, 1 node and 3 nodes.

    python -m benchmarks.bench_nats [--records N] [--renames N]

* publish rate: N records put into a :class:`~normalizer.sinks.nats.NatsSink` at once, timed until the last
  acknowledgement (spool empty); beside it, the same records formatted and written to /dev/null the way
  ``fsnorm watch`` writes stdout (the ratio baseline);
* latency: paced renames in a watched directory; for ``fsnorm watch`` (stdout, read by this process) and for
  ``fsnorm watch --sink`` (this process consuming the stream through a JetStream ordered push consumer), the
  time from just before each rename(2) to the record's arrival (CLOCK_MONOTONIC, shared by the processes);
* the watcher's cost of the spool per ``--sink-fsync`` policy: records/s that ``NatsSink.put`` takes in reads of
  64 records (what the watcher thread pays per read: JSON, spool append, fdatasync), beside the stdout write;
* the consumer: records/s that ``fsnorm subscribe nats://`` prints, with the per-host order (default) and in
  stream order (``--order-wait 0``), timed from its start (Python start-up included) to the last line.

Servers are real ``nats-server -js`` processes on 127.0.0.1 (tests/nats_fixtures.py). Numbers are
measurements, never assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from normalizer.formats.jsonl import rec_to_json
from normalizer.records import Rec
from normalizer.sinks.nats import NatsSink, NatsSinkConfig
from tests.nats_fixtures import NatsNode

REPO = Path(__file__).resolve().parent.parent
FSNORM = [sys.executable, "-m", "normalizer"]


def start_nodes(tmp: Path, count: int) -> list[NatsNode]:
    nodes = [NatsNode(f"b{count}{i}", tmp / f"b{count}{i}") for i in range(count)]
    for node in nodes:
        node.store.mkdir()
        if count > 1:
            node.routes = [o.cluster_port for o in nodes if o is not node]
    for node in nodes:
        node.start(wait=False)
    for node in nodes:
        node.wait_ready(60)
    return nodes


def url_of(nodes: list[NatsNode]) -> str:
    return "nats://" + ",".join(f"127.0.0.1:{n.port}" for n in nodes)


def publish_rate(nodes: list[NatsNode], tmp: Path, n: int) -> float:
    recs = [Rec("rename", f"/data/d{i % 50}/file-{i}".encode(), False, i, 192, cookie=i,
                dst=f"/data/d{i % 50}/file-{i}.done".encode()) for i in range(n)]
    sink = NatsSink(NatsSinkConfig(servers=[n_.url for n_ in nodes], spool_dir=tmp / f"spool-rate-{len(nodes)}",
                                   host="bench", stream=f"RATE{len(nodes)}", prefix=f"rate{len(nodes)}",
                                   replicas=len(nodes)))
    sink.put(recs[:1])  # connect and create the stream before timing
    while sink.spool.pending_bytes():
        time.sleep(0.01)
    t0 = time.perf_counter()
    sink.put(recs)
    while sink.spool.pending_bytes():
        time.sleep(0.002)
    elapsed = time.perf_counter() - t0
    sink.close(5)
    return n / elapsed


def spool_rate(node: NatsNode, tmp: Path, n: int, policy: str) -> float:
    recs = [Rec("create", f"/data/d{i % 50}/file-{i}".encode(), False, i, 256) for i in range(n)]
    sink = NatsSink(NatsSinkConfig(servers=[node.url], spool_dir=tmp / f"spool-fsync-{policy}", host="bench",
                                   stream=f"SYNC{policy.upper()}", prefix=f"sync{policy}",
                                   fsync=policy))  # type: ignore[arg-type]
    t0 = time.perf_counter()
    for start in range(0, n, 64):
        sink.put(recs[start:start + 64])
    elapsed = time.perf_counter() - t0
    sink.close(30)
    return n / elapsed


def subscribe_rate(node: NatsNode, n: int, *extra: str) -> float:
    """``fsnorm subscribe`` over the RATE1 stream (``n`` records): records/s from its start to its n-th line."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([*FSNORM, "subscribe", node.url, "--stream", "RATE1", "--subject", "rate1", "--idle-exit",
                             "1", "--durable", f"d{len(extra)}", *extra], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, cwd=REPO)
    assert proc.stdout is not None
    seen = 0
    for _ in proc.stdout:
        seen += 1
        if seen >= n:
            break
    elapsed = time.perf_counter() - t0
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)
    return seen / elapsed


def stdout_rate(n: int) -> float:
    recs = [Rec("rename", f"/data/d{i % 50}/file-{i}".encode(), False, i, 192, cookie=i,
                dst=f"/data/d{i % 50}/file-{i}.done".encode()) for i in range(n)]
    fd = os.open(os.devnull, os.O_WRONLY)
    t0 = time.perf_counter()
    for start in range(0, n, 256):
        os.write(fd, "".join(rec_to_json(r) + "\n" for r in recs[start:start + 256]).encode())
    elapsed = time.perf_counter() - t0
    os.close(fd)
    return n / elapsed


def _renames(root: Path, count: int, pace_s: float, sent: dict[str, int]) -> None:
    for i in range(count):
        src, dst = root / f"f{i}", root / f"f{i}.r"
        src.write_bytes(b"")
        time.sleep(pace_s)
        sent[str(dst)] = time.monotonic_ns()
        os.rename(src, dst)


def _wait_watch(proc: subprocess.Popen[bytes]) -> None:
    from tests.live import wait_for_watches

    wait_for_watches(proc.pid, 1)


def latency_stdout(tmp: Path, count: int) -> list[float]:
    root = tmp / "lat-stdout"
    root.mkdir()
    proc = subprocess.Popen([*FSNORM, "watch", str(root), "--events", "rename"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, cwd=REPO)
    _wait_watch(proc)
    sent: dict[str, int] = {}
    got: dict[str, int] = {}
    assert proc.stdout is not None

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            rec = json.loads(line)
            if rec["kind"] == "rename":
                got[rec["dst"]] = time.monotonic_ns()
                if len(got) == count:
                    return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    _renames(root, count, 0.002, sent)
    reader.join(60)
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)
    return [(got[k] - sent[k]) / 1e6 for k in sent if k in got]


def latency_nats(nodes: list[NatsNode], tmp: Path, count: int, fsync: str = "batch") -> list[float]:
    root = tmp / f"lat-nats-{len(nodes)}-{fsync}"
    root.mkdir()
    stream, prefix = f"LAT{len(nodes)}{fsync.upper()}", f"lat{len(nodes)}{fsync}"
    proc = subprocess.Popen([*FSNORM, "watch", str(root), "--events", "rename", "--quiet", "--sink", url_of(nodes),
                             "--sink-stream", stream, "--sink-subject", prefix, "--sink-replicas", str(len(nodes)),
                             "--spool", str(tmp / f"spool-lat-{len(nodes)}-{fsync}"), "--sink-host", "bench",
                             "--sink-fsync", fsync],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    _wait_watch(proc)
    sent: dict[str, int] = {}
    got: dict[str, int] = {}

    async def consume() -> None:
        import nats

        nc = await nats.connect(servers=[n.url for n in nodes])
        js = nc.jetstream()
        done = asyncio.Event()
        # the stream is created by fsnorm on its first connect: wait for it
        for _ in range(600):
            try:
                await js.stream_info(stream)
                break
            except Exception:
                await asyncio.sleep(0.05)

        async def on_msg(msg: object) -> None:
            from nats.aio.msg import Msg

            assert isinstance(msg, Msg)
            rec = json.loads(msg.data)
            got[rec["dst"]] = time.monotonic_ns()
            if len(got) >= count:
                done.set()

        await js.subscribe(f"{prefix}.>", cb=on_msg, ordered_consumer=True)
        loop = asyncio.get_running_loop()
        work = loop.run_in_executor(None, _renames, root, count, 0.002, sent)
        await work
        try:
            await asyncio.wait_for(done.wait(), 60)
        finally:
            await nc.close()

    asyncio.run(consume())
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)
    return [(got[k] - sent[k]) / 1e6 for k in sent if k in got]


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))] if s else float("nan")


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=20000, help="records for the publish rate (default 20000)")
    parser.add_argument("--renames", type=int, default=300, help="paced renames for the latency (default 300)")
    args = parser.parse_args(argv)
    result: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="fsnorm-bench-nats-") as td:
        tmp = Path(td)
        base_rate = stdout_rate(args.records)
        base_lat = latency_stdout(tmp, args.renames)
        result["stdout"] = {"rate": base_rate, "p50_ms": pct(base_lat, 50), "p95_ms": pct(base_lat, 95),
                            "n": len(base_lat)}
        for count in (1, 3):
            nodes = start_nodes(tmp, count)
            try:
                rate = publish_rate(nodes, tmp, args.records)
                lat = latency_nats(nodes, tmp, args.renames)
                if count == 1:
                    never = latency_nats(nodes, tmp, args.renames, "never")
                    result["nats1never"] = {"rate": rate, "p50_ms": pct(never, 50), "p95_ms": pct(never, 95),
                                            "n": len(never)}
                    for policy in ("never", "batch", "always"):
                        result[f"spool_{policy}"] = spool_rate(nodes[0], tmp, min(args.records, 5000), policy)
                    result["sub_ordered"] = subscribe_rate(nodes[0], args.records + 1)
                    result["sub_stream"] = subscribe_rate(nodes[0], args.records + 1, "--order-wait", "0")
            finally:
                for node in nodes:
                    node.stop()
            result[f"nats{count}"] = {"rate": rate, "p50_ms": pct(lat, 50), "p95_ms": pct(lat, 95), "n": len(lat)}
    print(f"records on NATS JetStream ({args.records} records for the rate, {args.renames} paced renames for the "
          "latency; stdout row: the rate is the same records formatted and written to /dev/null as `watch` does, the "
          "latency a real `fsnorm watch` read from its stdout; the baseline of the ratios)")
    print("| path | records/s (acknowledged) | rate / stdout | rename->consumer p50 ms | p95 ms | "
          "p50 / stdout p50 | arrived |")
    print("|---|---|---|---|---|---|---|")
    base = result["stdout"]
    assert isinstance(base, dict)
    for name, label in (("stdout", "fsnorm watch > stdout"), ("nats1", "--sink, 1 node"),
                        ("nats1never", "--sink, 1 node, --sink-fsync never (latency; rate as above)"),
                        ("nats3", "--sink, 3 nodes, replicas=3")):
        r = result[name]
        assert isinstance(r, dict)
        print(f"| {label} | {r['rate']:,.0f} | {r['rate'] / base['rate']:.3f} | {r['p50_ms']:.2f} | "
              f"{r['p95_ms']:.2f} | {r['p50_ms'] / base['p50_ms']:.1f} | {r['n']}/{args.renames} |")
    print()
    print(f"the watcher's cost of the spool (NatsSink.put in reads of 64 records; {min(args.records, 5000)} records) "
          "and the consumer (fsnorm subscribe nats://, start-up included)")
    print("| what | records/s | / stdout write |")
    print("|---|---|---|")
    for key, label in (("spool_never", "spool, --sink-fsync never"), ("spool_batch", "spool, --sink-fsync batch "
                       "(default: one fdatasync per read)"), ("spool_always", "spool, --sink-fsync always"),
                       ("sub_ordered", "fsnorm subscribe, per-host order (default)"),
                       ("sub_stream", "fsnorm subscribe --order-wait 0 (stream order)")):
        v = result[key]
        assert isinstance(v, float)
        print(f"| {label} | {v:,.0f} | {v / base['rate']:.3f} |")
    return result


if __name__ == "__main__":
    main()
