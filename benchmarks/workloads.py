"""Real kernel workloads with their own ground truth, run as a separate process (so the watcher under test
shares nothing with it but the kernel).

``storm``: N threads rename files across D directories as fast as they can for S seconds while M threads
create, write and delete other files in the same directories. Thread ``i``'s k-th rename is always
``dir[(i+k) % D]/t{i}_{k}`` -> ``dir[(i+k+1) % D]/t{i}_{k+1}``, so the ground truth is just the count per
thread, printed as JSON on stdout at the end: ``{"renames": [n0, n1, ...], "noise_ops": m}``.

``burst``: the same renames, but a fixed number, as fast as possible, for overflow tests.

    python -m benchmarks.workloads storm ROOT --seconds 2 --threads 4 --noise 2
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from pathlib import Path


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


def _renamer(i: int, ds: list[Path], stop: threading.Event, limit: int | None, counts: list[int]) -> None:
    nd = len(ds)
    names = [os.fsencode(d) for d in ds]
    (ds[i % nd] / f"t{i}_0").write_bytes(b"")
    k = 0
    rename = os.rename
    while not stop.is_set() and (limit is None or k < limit):
        rename(b"%s/t%d_%d" % (names[(i + k) % nd], i, k), b"%s/t%d_%d" % (names[(i + k + 1) % nd], i, k + 1))
        k += 1
    counts[i] = k


def _noise(j: int, ds: list[Path], stop: threading.Event, counter: list[int]) -> None:
    k = 0
    while not stop.is_set():
        path = ds[k % len(ds)] / f"n{j}_{k}"
        with open(path, "wb") as f:
            f.write(b"x" * 64)
        os.unlink(path)
        k += 1
    counter[j] = k


def run(root: Path, *, seconds: float, threads: int, noise: int, ndirs: int = 4,
        renames_per_thread: int | None = None) -> dict[str, object]:
    ds = dirs(root, ndirs)
    for d in ds:
        d.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    counts = [0] * threads
    noise_counts = [0] * noise
    workers = [threading.Thread(target=_renamer, args=(i, ds, stop, renames_per_thread, counts))
               for i in range(threads)]
    workers += [threading.Thread(target=_noise, args=(j, ds, stop, noise_counts)) for j in range(noise)]
    t0 = time.monotonic()
    for w in workers:
        w.start()
    if renames_per_thread is None:
        time.sleep(seconds)
        stop.set()
    else:
        for w in workers[:threads]:
            w.join()
        stop.set()
    for w in workers:
        w.join()
    return {"renames": counts, "noise_ops": sum(noise_counts), "seconds": time.monotonic() - t0,
            "dirs": ndirs}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("kind", choices=["storm", "burst"])
    p.add_argument("root", type=Path)
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--noise", type=int, default=2)
    p.add_argument("--dirs", type=int, default=4)
    p.add_argument("--renames", type=int, default=1024, help="burst: renames per thread")
    a = p.parse_args()
    if a.kind == "storm":
        result = run(a.root, seconds=a.seconds, threads=a.threads, noise=a.noise, ndirs=a.dirs)
    else:
        result = run(a.root, seconds=0, threads=a.threads, noise=0, ndirs=a.dirs, renames_per_thread=a.renames)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
