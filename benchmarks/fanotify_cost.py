"""Where ``fsnorm watch --backend fanotify`` spends its CPU per event, stage by stage, on a real storm's events.

A storm (``benchmarks/workloads.py``: renaming threads + noise threads creating, writing and deleting) is
captured once with ``fsnorm watch --backend fanotify --capture`` (or ``--capture FILE`` reuses one), and its
items are loaded. Then, on exactly those events, without the kernel:

* **parse**: each batch packed back into the bytes fanotify's read() gave (metadata + info records) and parsed
  by ``parse_batch``: the C parser (``_fanparse``) and the Python one (``_parse_fast``);
* **normalizer**: every item fed to a fresh ``FanotifyNormalizer`` (compiled or not: ``FSNORM_PURE=1``);
* **shadow**: the records applied to the rescan's shadow tree (``ShadowTree.apply``);
* **JSON**: the records of each batch formatted as ``fsnorm watch`` does (``Output.encode``, JSON Lines).

Each stage's CPU time per event read (best of ``--repeat``), with the records' digest so that two trees can be
compared on the same capture (``--capture FILE``; the digest must match). ``benchmarks/watch_cost.py
--variants fanotify`` measures the live process as a whole (and ``--py-spy``/``--perf`` profile it).

    .venv/bin/python -m benchmarks.fanotify_cost [--capture FILE] [--seconds 2] [--repeat 5]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.rescan_cost import run_storm
from normalizer.backends import fanotify as fan
from normalizer.capture.log import CaptureReader
from normalizer.capture.replay import fanotify_normalizer_for
from normalizer.core import raw
from normalizer.core.shadow import ShadowTree
from normalizer.records import Rec

REPO = Path(__file__).resolve().parent.parent
_META = struct.Struct("=IBBHQii")


def record_storm(path: Path, seconds: float, threads: int, noise: int) -> None:
    """Capture a storm under ``fsnorm watch --backend fanotify`` (its records go to /dev/null)."""
    with tempfile.TemporaryDirectory(prefix="fsnorm-fan-cost-") as tmp:
        root = Path(tmp) / "w"
        for d in range(4):
            (root / f"d{d}").mkdir(parents=True)
        cmd = [sys.executable, "-m", "normalizer", "watch", str(root), "--backend", "fanotify", "--capture", str(path)]
        with open(os.devnull, "wb") as null:
            watcher = subprocess.Popen(cmd, stdout=null, stderr=subprocess.PIPE, cwd=REPO)
            time.sleep(1.5)
            run_storm(root, seconds, threads=threads, noise=noise)
            watcher.send_signal(signal.SIGTERM)
            watcher.wait()


def _info(itype: int, fid: bytes, name: bytes | None) -> bytes:
    body = fid + (b"" if name is None else name + b"\0")
    body += b"\0" * (-(4 + len(body)) % 4)
    return struct.pack("=BBH", itype, 0, 4 + len(body)) + body


def pack(events: list[raw.FanotifyEvent]) -> bytes:
    """The read() buffer of ``events`` as the kernel lays it out (FAN_REPORT_DFID_NAME_TARGET)."""
    out = bytearray()
    for mask, pid, d, nm, d2, nm2, obj, extra in events:
        infos = b""
        if d is not None:
            infos += _info(10 if d2 is not None or mask & fan.abi.FAN_RENAME else 2, d, nm) if nm else \
                _info(3, d, None)
        if d2 is not None:
            infos += _info(12, d2, nm2)
        if obj is not None:
            infos += _info(1, obj, None)
        for itype, body in extra:
            infos += struct.pack("=BBH", itype, 0, 4 + len(body)) + body
        out += _META.pack(24 + len(infos), 3, 0, 24, mask, -1, pid) + infos
    return bytes(out)


def best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--capture", type=Path, help="a fanotify capture to use (default: record a storm)")
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--noise", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fsnorm-fan-cap-") as tmp:
        path = args.capture or Path(tmp) / "storm.fsncap"
        if args.capture is None:
            record_storm(path, args.seconds, args.threads, args.noise)
        with CaptureReader(path) as reader:
            items = list(reader)
            options = reader.header.options
    batches = [it for it in items if isinstance(it, raw.FanotifyBatch)]
    n = sum(len(b.events) for b in batches)
    buffers = [pack(b.events) for b in batches]
    assert all(fan.parse_batch(buf) == b.events for buf, b in zip(buffers, batches, strict=True))

    recs: list[list[Rec]] = []

    def feed() -> None:
        norm = fanotify_normalizer_for(options)
        recs.clear()
        recs.extend(list(norm.feed(it)) for it in items)
        recs.append(norm.close())

    def shadow() -> None:
        tree = ShadowTree([os.fsencode(r) for r in options["roots"]])
        for batch in recs:
            tree.apply(batch)

    from normalizer.cli.formatting import Output
    from normalizer.formats.context import WallClock
    from normalizer.formats.jsonl import rec_to_json

    out = Output(rec_to_json, "\n", WallClock(0))
    digest = hashlib.sha256()

    def encode() -> None:
        for batch in recs:
            digest.update(out.encode(batch))

    stages: list[tuple[str, Callable[[], object]]] = []
    if getattr(fan, "_c_parse", None) is not None:
        c_parse = fan._c_parse  # type: ignore[attr-defined]
        stages.append(("parse (C, _fanparse)", lambda: [c_parse(buf) for buf in buffers]))
    stages.append(("parse (Python, _parse_fast)", lambda: [fan._parse_fast(buf) for buf in buffers]))
    stages += [("normalizer feed", feed), ("shadow apply", shadow), ("JSON Lines (Output.encode)", encode)]
    from normalizer import _compiled

    print(f"{n:,} events in {len(batches)} reads ({n / max(1, len(batches)):.0f} per read), "
          f"{_compiled.status()}, load {os.getloadavg()[0]:.1f}")
    print("| stage | CPU us / event |\n|---|---:|")
    for name, fn in stages:
        print(f"| {name} | {best(fn, args.repeat) / max(1, n) * 1e6:.2f} |")
    digest = hashlib.sha256()
    encode()
    print(f"records: {sum(map(len, recs)):,}, JSON sha256 {digest.hexdigest()[:16]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
