"""Real kernel workloads with their own ground truth, run as a separate process (so the watcher under test
shares nothing with it but the kernel).

``storm``: N threads rename files across D directories as fast as they can for S seconds while M threads
create, write and delete other files in the same directories (and change the attributes of, and append to, a
file of their own; the mix is seeded). Thread ``i``'s k-th rename is always
``dir[(i+k) % D]/t{i}_{k}`` -> ``dir[(i+k+1) % D]/t{i}_{k+1}``, so the ground truth is just the count per
thread, printed as JSON on stdout at the end: ``{"renames": [n0, n1, ...], "noise_ops": m, ...}``.
Noise thread ``j``'s k-th operation, when it is a create, creates ``dir[k % D]/n{j}_{k}``.

``burst``: the same renames, but a fixed number, as fast as possible, for overflow tests.

``scenarios``: paced single renames of each kind (within a directory, across directories, out of the watched
tree, into it, a directory with content, onto an existing file, a fast chain, RENAME_EXCHANGE), each followed
by an unrelated create (a *marker*) in another watched directory. Run ``--phase prepare`` before the watcher
starts (it creates the files), then ``--phase run``. Layout: ``BASE/w`` is the watched root (``a``, ``b``,
``c`` below it), ``BASE/out`` is outside it.

With ``--gt FILE`` a workload also writes its full ground truth, with the CLOCK_MONOTONIC time taken right
before every rename syscall and every marker create (read it back with :func:`load_truth`); storms then also
write ``FILE.ts`` (binary timestamps).

    python -m benchmarks.workloads storm ROOT --seconds 2 --threads 4 --noise 2 [--seed 1 --gt gt.json]
    python -m benchmarks.workloads scenarios BASE --phase prepare --ops 100
    python -m benchmarks.workloads scenarios BASE --phase run --ops 100 --pace-ms 2 --gt gt.json
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import random
import sys
import threading
import time
from array import array
from pathlib import Path

from benchmarks.model import Truth, TruthMarker, TruthRename


def dirs(root: Path, count: int) -> list[Path]:
    return [root / f"d{j}" for j in range(count)]


def expected_renames(root: Path, counts: list[int], ndirs: int) -> set[tuple[str, str]]:
    """The (src, dst) pairs a storm or burst with these per-thread counts performed."""
    ds = dirs(root, ndirs)
    out = set()
    for i, n in enumerate(counts):
        for k in range(n):
            out.add((str(ds[(i + k) % ndirs] / f"t{i}_{k}"), str(ds[(i + k + 1) % ndirs] / f"t{i}_{k + 1}")))
    return out


# --- storm / burst ----------------------------------------------------------------------------------------


def _renamer(i: int, ds: list[Path], stop: threading.Event, limit: int | None, counts: list[int],
             stamps: list[array[int]] | None) -> None:
    nd = len(ds)
    names = [os.fsencode(d) for d in ds]
    (ds[i % nd] / f"t{i}_0").write_bytes(b"")
    k = 0
    rename = os.rename
    if stamps is None:
        while not stop.is_set() and (limit is None or k < limit):
            rename(b"%s/t%d_%d" % (names[(i + k) % nd], i, k), b"%s/t%d_%d" % (names[(i + k + 1) % nd], i, k + 1))
            k += 1
    else:
        ts: array[int] = array("q")
        stamp = ts.append
        mono = time.monotonic_ns
        while not stop.is_set() and (limit is None or k < limit):
            src = b"%s/t%d_%d" % (names[(i + k) % nd], i, k)
            dst = b"%s/t%d_%d" % (names[(i + k + 1) % nd], i, k + 1)
            stamp(mono())
            rename(src, dst)
            k += 1
        stamps[i] = ts
    counts[i] = k


#: inotify events (fsnorm's default mask) each noise operation makes: create + modify + close_write + delete,
#: attrib, modify + close_write. What the CPU-per-million-events tables divide by (with 2 per rename).
NOISE_EVENTS = (4, 1, 2)


def _noise(j: int, ds: list[Path], stop: threading.Event, counter: list[int], seed: int,
           creates: list[array[int]] | None, events: list[int] | None = None) -> None:
    """Seeded mix: 70% create + write + close + delete of a fresh name, 15% chmod and 15% append on a file of
    this thread's own. With ``creates``, log (k, CLOCK_MONOTONIC) of every create. ``events[j]`` gets the
    inotify events the thread's operations make (NOISE_EVENTS)."""
    rng = random.Random(f"{seed}/noise/{j}")
    nd = len(ds)
    own = ds[j % nd] / f"p{j}"
    own.write_bytes(b"")
    log: array[int] = array("q")
    mono = time.monotonic_ns
    payload = b"x" * 256
    k = made = 0
    while not stop.is_set():
        r = rng.random()
        made += NOISE_EVENTS[0] if r < 0.7 else NOISE_EVENTS[1] if r < 0.85 else NOISE_EVENTS[2]
        if r < 0.7:
            path = ds[k % nd] / f"n{j}_{k}"
            if creates is not None:
                log.append(k)
                log.append(mono())
            with open(path, "wb") as f:
                f.write(payload[: 1 + (k * 37) % 255])
            os.unlink(path)
        elif r < 0.85:
            os.chmod(own, 0o600 if k & 1 else 0o644)
        else:
            with open(own, "ab") as f:
                f.write(b"y")
        k += 1
    counter[j] = k
    if events is not None:
        events[j] = made
    if creates is not None:
        creates[j] = log


def run(root: Path, *, seconds: float, threads: int, noise: int, ndirs: int = 4,
        renames_per_thread: int | None = None, seed: int = 1, gt: Path | None = None,
        label: str = "storm", announce: bool = False) -> dict[str, object]:
    ds = dirs(root, ndirs)
    for d in ds:
        d.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    counts = [0] * threads
    noise_counts = [0] * noise
    noise_events = [0] * noise
    stamps: list[array[int]] | None = [array("q") for _ in range(threads)] if gt else None
    creates: list[array[int]] | None = [array("q") for _ in range(noise)] if gt else None
    workers = [threading.Thread(target=_renamer, args=(i, ds, stop, renames_per_thread, counts, stamps))
               for i in range(threads)]
    workers += [threading.Thread(target=_noise, args=(j, ds, stop, noise_counts, seed, creates, noise_events))
                for j in range(noise)]
    t0 = time.monotonic()
    t0_ns = time.monotonic_ns()
    for w in workers:
        w.start()
    if announce:
        print("started", flush=True)
    if renames_per_thread is None:
        time.sleep(seconds)
        stop.set()
    else:
        for w in workers[:threads]:
            w.join()
        stop.set()
    for w in workers:
        w.join()
    result: dict[str, object] = {"renames": counts, "noise_ops": sum(noise_counts), "seconds": time.monotonic() - t0,
                                 "dirs": ndirs, "events": 2 * sum(counts) + sum(noise_events)}
    if gt is not None and stamps is not None and creates is not None:
        ts_path = gt.with_name(gt.name + ".ts")
        with open(ts_path, "wb") as f:
            for a in stamps:
                a.tofile(f)
            for a in creates:
                a.tofile(f)
        meta = {"kind": "storm", "label": label, "root": str(root), "dirs": ndirs, "renames": counts,
                "noise_creates": [len(a) // 2 for a in creates], "noise_ops": sum(noise_counts), "seed": seed,
                "threads": threads, "noise": noise, "t_start_ns": t0_ns, "t_end_ns": time.monotonic_ns(),
                "ts_file": ts_path.name}
        gt.write_text(json.dumps(meta))
    return result


# --- scenarios --------------------------------------------------------------------------------------------

SCENARIOS = ("within", "across", "move_out", "move_in", "dir_rename", "onto_existing", "chain", "exchange")
#: Renames per op of a chain.
CHAIN_LENGTH = 4

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_libc = ctypes.CDLL(None, use_errno=True)
_renameat2 = _libc.renameat2
_renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
_renameat2.restype = ctypes.c_int


def exchange(a: Path | str, b: Path | str) -> None:
    """renameat2(a, b, RENAME_EXCHANGE): swap two names atomically."""
    if _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(a))


class ScenarioTree:
    """Names of one scenario session. ``tag`` prefixes every name so that phases never collide."""

    def __init__(self, base: Path, tag: str = "") -> None:
        self.base = base
        self.root = base / "w"
        self.out = base / "out"
        self.a, self.b, self.c = self.root / "a", self.root / "b", self.root / "c"
        self.tag = tag

    def mkdirs(self) -> None:
        for d in (self.a, self.b, self.c, self.out):
            d.mkdir(parents=True, exist_ok=True)

    def n(self, stem: str, k: int) -> str:
        return f"{self.tag}{stem}{k}"

    def prepare(self, scenario: str, k: int, rng: random.Random) -> None:
        """Create what op ``k`` of ``scenario`` renames (before the watcher starts)."""
        body = b"z" * rng.randrange(0, 512)
        if scenario == "within":
            (self.a / self.n("f", k)).write_bytes(body)
        elif scenario == "across":
            (self.a / self.n("x", k)).write_bytes(body)
        elif scenario == "move_out":
            (self.a / self.n("o", k)).write_bytes(body)
        elif scenario == "move_in":
            (self.out / self.n("i", k)).write_bytes(body)
        elif scenario == "dir_rename":
            d = self.a / self.n("D", k)
            (d / "sub").mkdir(parents=True, exist_ok=True)
            for name in ("f0", "f1", "sub/f2"):
                (d / name).write_bytes(body)
        elif scenario == "onto_existing":
            (self.a / self.n("s", k)).write_bytes(body)
            (self.b / self.n("e", k)).write_bytes(b"old")
        elif scenario == "chain":
            (self.a / f"{self.n('c', k)}_0").write_bytes(body)
        elif scenario == "exchange":
            (self.a / self.n("p", k)).write_bytes(b"p")
            (self.b / self.n("q", k)).write_bytes(b"q")
        else:
            raise ValueError(f"unknown scenario {scenario!r}")

    def perform(self, scenario: str, k: int, label: str) -> list[TruthRename]:
        """Do op ``k``: the renames it issued, each stamped right before its syscall."""
        mono = time.monotonic_ns
        out: list[TruthRename] = []

        def mv(src: Path, dst: Path, src_seen: bool = True, dst_seen: bool = True) -> None:
            t = mono()
            os.rename(src, dst)
            out.append(TruthRename(label, str(src) if src_seen else "", str(dst) if dst_seen else "", t))

        if scenario == "within":
            mv(self.a / self.n("f", k), self.a / self.n("g", k))
        elif scenario == "across":
            mv(self.a / self.n("x", k), self.b / self.n("x", k))
        elif scenario == "move_out":
            mv(self.a / self.n("o", k), self.out / self.n("o", k), dst_seen=False)
        elif scenario == "move_in":
            mv(self.out / self.n("i", k), self.b / self.n("i", k), src_seen=False)
        elif scenario == "dir_rename":
            mv(self.a / self.n("D", k), self.b / self.n("E", k))
        elif scenario == "onto_existing":
            mv(self.a / self.n("s", k), self.b / self.n("e", k))
        elif scenario == "chain":
            stem = self.n("c", k)
            for step in range(CHAIN_LENGTH):
                here, there = (self.a, self.b) if step % 2 == 0 else (self.b, self.a)
                mv(here / f"{stem}_{step}", there / f"{stem}_{step + 1}")
        elif scenario == "exchange":
            p, q = self.a / self.n("p", k), self.b / self.n("q", k)
            t = mono()
            exchange(p, q)
            out.append(TruthRename(label, str(p), str(q), t))
            out.append(TruthRename(label, str(q), str(p), t))
        else:
            raise ValueError(f"unknown scenario {scenario!r}")
        return out

    def marker(self, scenario: str, k: int, label: str) -> TruthMarker:
        path = self.c / f"{self.tag}m_{scenario}_{k}"
        t = time.monotonic_ns()
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))
        return TruthMarker(label, str(path), t)


def scenarios(base: Path, *, phase: str, ops: int, which: tuple[str, ...] = SCENARIOS, seed: int = 1,
              pace_ms: float = 2.0, pause_ms: float = 200.0, tag: str = "", label: str | None = None,
              gt: Path | None = None) -> dict[str, object]:
    """Prepare or run the scenario phases. ``label`` names every op's workload (default: the scenario)."""
    tree = ScenarioTree(base, tag)
    if phase == "prepare":
        tree.mkdirs()
        for scenario in which:
            rng = random.Random(f"{seed}/prepare/{scenario}")
            for k in range(ops):
                tree.prepare(scenario, k, rng)
        return {"prepared": len(which) * ops}
    renames: list[TruthRename] = []
    markers: list[TruthMarker] = []
    for n, scenario in enumerate(which):
        if n:
            time.sleep(pause_ms / 1000)
        rng = random.Random(f"{seed}/run/{scenario}")
        name = label or scenario
        next_t = time.monotonic()
        for k in range(ops):
            renames += tree.perform(scenario, k, name)
            markers.append(tree.marker(scenario, k, name))
            next_t += pace_ms / 1000 * rng.uniform(0.5, 1.5)
            delay = next_t - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    result: dict[str, object] = {"renames": len(renames), "markers": len(markers)}
    if gt is not None:
        gt.write_text(json.dumps({"kind": "scenarios", "root": str(tree.root), "seed": seed,
                                  "renames": [list(r) for r in renames], "markers": [list(m) for m in markers]}))
    return result


# --- ground truth -----------------------------------------------------------------------------------------


def load_truth(gt: Path) -> Truth:
    """The renames and markers a workload logged with ``--gt``, in the order it issued them per thread."""
    meta = json.loads(gt.read_text())
    if meta["kind"] == "scenarios":
        return Truth([TruthRename(*r) for r in meta["renames"]], [TruthMarker(*m) for m in meta["markers"]])
    if meta["kind"] != "storm":
        raise ValueError(f"{gt}: unknown ground truth kind {meta['kind']!r}")
    stamps: array[int] = array("q")
    with open(gt.with_name(meta["ts_file"]), "rb") as f:
        stamps.frombytes(f.read())
    ds = [str(d) for d in dirs(Path(meta["root"]), meta["dirs"])]
    nd = len(ds)
    label = meta.get("label", "storm")
    renames: list[TruthRename] = []
    off = 0
    for i, n in enumerate(meta["renames"]):
        for k in range(n):
            renames.append(TruthRename(label, f"{ds[(i + k) % nd]}/t{i}_{k}", f"{ds[(i + k + 1) % nd]}/t{i}_{k + 1}",
                                       stamps[off + k]))
        off += n
    markers: list[TruthMarker] = []
    for j, n in enumerate(meta["noise_creates"]):
        for c in range(n):
            k, t = stamps[off + 2 * c], stamps[off + 2 * c + 1]
            markers.append(TruthMarker(label, f"{ds[k % nd]}/n{j}_{k}", t))
        off += 2 * n
    return Truth(renames, markers)


def _csv(text: str) -> tuple[str, ...]:
    items = tuple(s for s in text.split(",") if s)
    bad = [s for s in items if s not in SCENARIOS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown scenario(s) {bad}; choose from {', '.join(SCENARIOS)}")
    return items


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", choices=["storm", "burst", "scenarios"])
    p.add_argument("root", type=Path, help="storm/burst: the directory to rename in; scenarios: BASE")
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--noise", type=int, default=2)
    p.add_argument("--dirs", type=int, default=4)
    p.add_argument("--renames", type=int, default=1024, help="burst: renames per thread")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--gt", type=Path, help="write the full ground truth (with timestamps) here")
    p.add_argument("--label", help="workload name in the ground truth")
    p.add_argument("--announce", action="store_true", help="print 'started' once the threads run")
    p.add_argument("--phase", choices=["prepare", "run"], default="run", help="scenarios")
    p.add_argument("--ops", type=int, default=50, help="scenarios: ops per scenario")
    p.add_argument("--only", type=_csv, default=SCENARIOS, help="scenarios: comma-separated subset")
    p.add_argument("--pace-ms", type=float, default=2.0, help="scenarios: mean time between ops")
    p.add_argument("--pause-ms", type=float, default=200.0, help="scenarios: pause between scenarios")
    p.add_argument("--tag", default="", help="scenarios: prefix of every name")
    a = p.parse_args(argv)
    result: dict[str, object]
    if a.kind == "storm":
        result = run(a.root, seconds=a.seconds, threads=a.threads, noise=a.noise, ndirs=a.dirs, seed=a.seed,
                     gt=a.gt, label=a.label or "storm", announce=a.announce)
    elif a.kind == "burst":
        result = run(a.root, seconds=0, threads=a.threads, noise=0, ndirs=a.dirs, renames_per_thread=a.renames,
                     seed=a.seed, gt=a.gt, label=a.label or "burst", announce=a.announce)
    else:
        result = scenarios(a.root, phase=a.phase, ops=a.ops, which=a.only, seed=a.seed, pace_ms=a.pace_ms,
                           pause_ms=a.pause_ms, tag=a.tag, label=a.label, gt=a.gt)
    print(json.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
