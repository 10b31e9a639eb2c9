"""Remote fsnotify benchmarks: fan-out throughput of ``fsnorm serve`` and rename -> subscriber latency, each beside
``fsnorm watch``'s own from the same run.

    python -m benchmarks.bench_net [--quick | --full] [--json FILE]      (make bench runs --quick)

* **fan-out, live**: a storm (create+write, rename, delete per op, in its own process) while N subscribers
  (N = 1, 10, 100; raw sockets in this process, frames counted by their headers) and ``fsnorm watch`` (its stdout
  lines counted) run; then one marker file. Throughput = records delivered / (marker seen - storm start), per
  subscriber and in total, and the same for ``fsnorm watch``.
* **fan-out, from the journal**: N subscribers connect with ``since`` = 0 after the storm, so the server sends
  its whole journal to all of them at once: the server's fan-out rate without the kernel in the way.
* **latency**: paced renames (a process that stamps CLOCK_MONOTONIC right before each rename(2)); the time each
  rename's line reaches ``fsnorm subscribe``'s stdout and ``fsnorm watch``'s stdout (both read by threads here,
  stamped on arrival), p50/p99.

Numbers are measurements on this machine, never assertions.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from normalizer.net import wire

REPO = Path(__file__).parent.parent
MARKER = b"__bench_end__"

_STORM = """
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
subs = [os.path.join(d, f"d{i}") for i in range(4)]
for i in range(n):
    a = os.path.join(subs[i % 4], f"s{i}")
    b = os.path.join(subs[(i + 1) % 4], f"t{i}")
    with open(a, "w") as f:
        f.write("x")
    os.rename(a, b)
    os.unlink(b)
"""

_PACED = """
import os, sys, time
d, n, pace = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
for i in range(n):
    open(os.path.join(d, f"p{i}"), "w").close()
times = []
time.sleep(0.3)
for i in range(n):
    t = time.monotonic_ns()
    os.rename(os.path.join(d, f"p{i}"), os.path.join(d, f"q{i}"))
    times.append(t)
    time.sleep(pace)
print(" ".join(map(str, times)))
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _fsnorm(*args: str, stdout: Any = subprocess.PIPE) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "normalizer", *args], stdout=stdout, stderr=subprocess.PIPE,
                            env=_env())


def _wait_stderr(p: subprocess.Popen[bytes], needle: bytes) -> bytes:
    assert p.stderr is not None
    while True:
        line = p.stderr.readline()
        if not line:
            raise RuntimeError(f"child ended before {needle!r}")
        if needle in line:
            return line


def _stop(p: subprocess.Popen[bytes]) -> None:
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
    try:
        p.wait(20)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


class Subscribers:
    """N raw-socket subscribers in this process; counts RECORD frames by walking headers, notes the marker."""

    def __init__(self, sock_path: str, n: int, *, since: int | None = None, epoch: int = 0) -> None:
        self.socks: list[socket.socket] = []
        for _ in range(n):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(sock_path)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            s.sendall(wire.encode(wire.Hello()))
            self.socks.append(s)
        for s in self.socks:  # WELCOME, then SUBSCRIBE; SUBSCRIBED is read with the records
            dec = wire.FrameDecoder()
            while dec.next_frame() is None:
                dec.feed(s.recv(65536))
            s.sendall(wire.encode(wire.Subscribe(since=since, epoch=epoch)))
        self.counts = [0] * n
        self.done_at: list[int | None] = [None] * n

    def run(self, timeout: float) -> None:
        sel = selectors.DefaultSelector()
        bufs = [bytearray() for _ in self.socks]
        for i, s in enumerate(self.socks):
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ, i)
        left = len(self.socks)
        end = time.monotonic() + timeout
        hsize = wire.HEADER.size
        unpack = struct.Struct("<IH").unpack_from
        while left and time.monotonic() < end:
            for key, _ in sel.select(1.0):
                i = key.data
                data = key.fileobj.recv(1 << 20)  # type: ignore[union-attr]
                if not data:
                    sel.unregister(key.fileobj)
                    left -= 1
                    continue
                buf = bufs[i]
                buf += data
                pos = 0
                n = len(buf)
                count = 0
                while n - pos >= hsize:
                    length, ftype = unpack(buf, pos)
                    if n - pos < hsize + length:
                        break
                    if ftype == wire.T_RECORD:
                        count += 1
                        if MARKER in buf[pos + hsize:pos + hsize + length]:
                            self.done_at[i] = time.monotonic_ns()
                    pos += hsize + length
                del buf[:pos]
                self.counts[i] += count
                if self.done_at[i] is not None:
                    sel.unregister(key.fileobj)
                    left -= 1
        for s in self.socks:
            s.close()


class LineCounter(threading.Thread):
    """Reads a child's stdout lines; stamps the marker line; optionally keeps (arrival ns, line)."""

    def __init__(self, p: subprocess.Popen[bytes], keep: bool = False) -> None:
        super().__init__(daemon=True)
        self.p = p
        self.keep = keep
        self.lines = 0
        self.done_at: int | None = None
        self.kept: list[tuple[int, bytes]] = []
        self.start()

    def run(self) -> None:
        assert self.p.stdout is not None
        for line in self.p.stdout:
            now = time.monotonic_ns()
            self.lines += 1
            if self.keep:
                self.kept.append((now, line))
            if MARKER in line:
                self.done_at = now


def _tree(base: Path) -> Path:
    data = base / "data"
    for i in range(4):
        (data / f"d{i}").mkdir(parents=True)
    return data


def _serve(base: Path, data: Path) -> tuple[subprocess.Popen[bytes], str, int]:
    sock = str(base / "s.sock")
    srv = _fsnorm("serve", str(data), "--listen", f"unix:{sock}", stdout=subprocess.DEVNULL)
    line = _wait_stderr(srv, b"serving")
    epoch = int(line.split(b"(epoch ")[1].split(b")")[0])
    return srv, sock, epoch


def fanout(n_subs: int, ops: int) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="fsnorm-bench-net-"))
    try:
        data = _tree(base)
        srv, sock, epoch = _serve(base, data)
        watch = _fsnorm("watch", str(data))
        time.sleep(1.0)  # watch prints nothing when it is ready: give it time to set up its watches
        watch_lines = LineCounter(watch)
        subs = Subscribers(sock, n_subs)
        reader = threading.Thread(target=subs.run, args=(300.0,), daemon=True)
        reader.start()
        t0 = time.monotonic_ns()
        subprocess.run([sys.executable, "-c", _STORM, str(data), str(ops)], check=True)
        storm_ns = time.monotonic_ns() - t0
        (data / MARKER.decode()).touch()
        reader.join(300)
        end = time.monotonic() + 60
        while watch_lines.done_at is None and time.monotonic() < end:
            time.sleep(0.01)
        live_done = [d for d in subs.done_at if d is not None]
        records = subs.counts[0] if subs.counts else 0
        row: dict[str, Any] = {
            "subscribers": n_subs, "ops": ops, "records_per_subscriber": records,
            "storm_s": storm_ns / 1e9, "complete": len(live_done) == n_subs,
        }
        if live_done:
            span = (max(live_done) - t0) / 1e9
            row["live_s"] = span
            row["live_records_per_s_each"] = records / span
            row["live_records_per_s_total"] = sum(subs.counts) / span
        if watch_lines.done_at is not None:
            wspan = (watch_lines.done_at - t0) / 1e9
            row["watch_records"] = watch_lines.lines
            row["watch_s"] = wspan
            row["watch_records_per_s"] = watch_lines.lines / wspan
        # From the journal: everybody asks for everything since seq 0 at once.
        replay = Subscribers(sock, n_subs, since=0, epoch=epoch)
        t1 = time.monotonic_ns()
        replay.run(300.0)
        done = [d for d in replay.done_at if d is not None]
        if done:
            span = (max(done) - t1) / 1e9
            row["journal_s"] = span
            row["journal_records_per_s_total"] = sum(replay.counts) / span
        _stop(watch)
        _stop(srv)
        return row
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def latency(n: int, pace_s: float) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="fsnorm-bench-net-"))
    try:
        data = _tree(base)
        srv, sock, _ = _serve(base, data)
        sub = _fsnorm("subscribe", f"unix:{sock}", "--events", "rename")
        _wait_stderr(sub, b"subscribed")
        watch = _fsnorm("watch", str(data), "--events", "rename")
        time.sleep(1.0)
        sub_lines, watch_lines = LineCounter(sub, keep=True), LineCounter(watch, keep=True)
        res = subprocess.run([sys.executable, "-c", _PACED, str(data), str(n), str(pace_s)], check=True,
                             capture_output=True)
        times = [int(t) for t in res.stdout.split()]
        time.sleep(1.0)
        _stop(sub)
        _stop(watch)
        _stop(srv)
        sub_lines.join(5)
        watch_lines.join(5)
        out: dict[str, Any] = {"renames": n, "pace_ms": pace_s * 1000}
        for name, lines in (("subscribe", sub_lines.kept), ("watch", watch_lines.kept)):
            lat = []
            for arrived, line in lines:
                rec = json.loads(line)
                dst = rec.get("dst", "")
                leaf = dst.rsplit("/", 1)[-1]
                if rec.get("kind") == "rename" and leaf.startswith("q"):
                    lat.append((arrived - times[int(leaf[1:])]) / 1e6)
            out[name] = {"seen": len(lat), "p50_ms": _pct(lat, 0.5), "p99_ms": _pct(lat, 0.99)}
        return out
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _f(v: Any, fmt: str = "{:,.0f}") -> str:
    return "-" if v is None else fmt.format(v)


def report(results: dict[str, Any]) -> str:
    lines = ["| subscribers | records each | storm s | live s (last subscriber) | live rec/s each | live rec/s total | "
             "fsnorm watch rec/s | each / watch | from journal rec/s total |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results["fanout"]:
        each, w = r.get("live_records_per_s_each"), r.get("watch_records_per_s")
        ratio = f"x{each / w:.2f}" if each and w else "-"
        lines.append(f"| {r['subscribers']} | {r['records_per_subscriber']:,} | {r['storm_s']:.2f} | "
                     f"{_f(r.get('live_s'), '{:.2f}')} | {_f(each)} | "
                     f"{_f(r.get('live_records_per_s_total'))} | {_f(w)} | {ratio} | "
                     f"{_f(r.get('journal_records_per_s_total'))} |")
    lat = results["latency"]
    s, w = lat["subscribe"], lat["watch"]
    lines += ["", "| rename -> stdout | renames seen | p50 ms | p99 ms |", "|---|---|---|---|"]
    for name, v in (("fsnorm subscribe (via serve)", s), ("fsnorm watch", w)):
        lines.append(f"| {name} | {v['seen']}/{lat['renames']} | {_f(v['p50_ms'], '{:.2f}')} | "
                     f"{_f(v['p99_ms'], '{:.2f}')} |")
    if s["p50_ms"] and w["p50_ms"]:
        lines.append(f"| subscribe / watch | | x{s['p50_ms'] / w['p50_ms']:.2f} | x{s['p99_ms'] / w['p99_ms']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--full", action="store_true", help="more operations and renames (default: quick)")
    p.add_argument("--quick", action="store_true", help="the make bench size (default)")
    p.add_argument("--json", type=Path, help="also write the results here")
    a = p.parse_args(argv)
    ops, renames = (20_000, 1000) if a.full else (4000, 300)
    results: dict[str, Any] = {"fanout": [], "config": "full" if a.full else "quick",
                               "loadavg_start": os.getloadavg()}
    for n in (1, 10, 100):
        print(f"[net] fan-out to {n} subscribers", file=sys.stderr, flush=True)
        results["fanout"].append(fanout(n, ops))
    print("[net] latency", file=sys.stderr, flush=True)
    results["latency"] = latency(renames, 0.002)
    results["loadavg_end"] = os.getloadavg()
    if a.json:
        a.json.write_text(json.dumps(results, indent=1) + "\n")
    print("\n### Remote fsnotify (benchmarks/bench_net.py)\n")
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
