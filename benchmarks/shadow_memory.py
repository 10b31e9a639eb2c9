"""What recovery from overflow (rescan, the default) costs in memory per watched file.

Builds a real tree (default 100,000 files in 1,000 directories, names like ``file-000123.txt``) in a temp dir
and measures, in this process:

* ``tracemalloc``: the bytes allocated by the shadow tree fsnorm keeps for the rescan, filled as the live
  source's initial walk fills it (``LiveSource._scan``), divided by the number of entries;
* the same for the previous layout (a ``SortedDict`` of full paths, what fsnorm had before the nested dicts),
  and for the peer that keeps a comparable picture of a tree, watchdog's ``DirectorySnapshot`` (what its
  polling observer diffs after each interval: one ``os.stat_result`` per entry);
* RSS (``VmRSS``) of an ``InotifySource`` opened on the tree with ``rescan=True`` and with ``rescan=False``
  (each in a fresh subprocess), the difference divided by the entries;
* the time the shadow adds on the hot path: a storm-like stream (renames across 4 directories, files created,
  written and deleted) fed to the inotify normalizer, then its records applied to a shadow tree, per event,
  best of 5 runs (the normalizer's own time beside it: the live source pays both when rescan is on).

    .venv/bin/python -m benchmarks.shadow_memory [--files 100000] [--per-dir 100]

No timing is asserted anywhere; ``tests/test_rescan.py`` holds the behaviour.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import subprocess
import sys
import tempfile
import tracemalloc
from collections.abc import Callable
from pathlib import Path

from sortedcontainers import SortedDict

from normalizer.core.shadow import ShadowTree


def build(root: Path, files: int, per_dir: int) -> int:
    """The tree; returns the number of entries (files + directories) below ``root``."""
    n = 0
    for d in range((files + per_dir - 1) // per_dir):
        sub = root / f"dir-{d:05d}"
        sub.mkdir()
        n += 1
        for i in range(min(per_dir, files - d * per_dir)):
            (sub / f"file-{d * per_dir + i:06d}.txt").touch()
            n += 1
    return n


def walk(root: bytes) -> list[tuple[bytes, bool]]:
    out: list[tuple[bytes, bool]] = []
    stack = [root]
    while stack:
        top = stack.pop()
        with os.scandir(top) as entries:
            for e in entries:
                path = os.path.join(top, e.name)
                is_dir = e.is_dir(follow_symlinks=False)
                out.append((path, is_dir))
                if is_dir:
                    stack.append(path)
    return out


def traced(make: Callable[[], object]) -> int:
    """Bytes still allocated by what ``make`` returns (tracemalloc, after a collection)."""
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    obj = make()
    gc.collect()
    size = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    del obj
    return size


def shadow_nested(root: bytes, entries: list[tuple[bytes, bool]]) -> object:
    # The live source's walk hands the shadow fresh path bytes (copied here); the shadow keeps only the names.
    shadow = ShadowTree([root])
    for path, is_dir in entries:
        shadow.add(bytes(bytearray(path)), is_dir)
    return shadow


def shadow_sorted(entries: list[tuple[bytes, bool]]) -> object:
    shadow = SortedDict()
    for path, is_dir in entries:
        shadow[bytes(bytearray(path))] = is_dir  # a fresh path, as the walk makes it
    return shadow


def watchdog_snapshot(root: Path) -> object:
    from watchdog.utils.dirsnapshot import DirectorySnapshot

    return DirectorySnapshot(str(root), recursive=True)


_RSS_CHILD = """
import sys, gc
from normalizer.backends.inotify import InotifySource
def rss():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS:'):
            return int(line.split()[1])
src = InotifySource([sys.argv[1]], rescan=sys.argv[2] == '1')
src.open()
gc.collect()
print(rss())
src.close()
"""


def rss_kib(root: Path, rescan: bool) -> int:
    out = subprocess.run([sys.executable, "-c", _RSS_CHILD, str(root), "1" if rescan else "0"], check=True,
                         capture_output=True, text=True)
    return int(out.stdout.strip())


def hot_path(events: int = 300_000, repeats: int = 5) -> tuple[float, float]:
    """(normalizer ns per event, shadow ns per event) on a storm-like inotify stream, best of ``repeats``."""
    import time

    from normalizer.core import raw
    from normalizer.core.inotify import InotifyNormalizer

    root = b"/srv/watched"
    stream: list[tuple[int, int, int, bytes]] = []
    cookie = 1
    i = 0
    while len(stream) < events:  # 2 renames (4 events) and one file's life (4 events) per round
        for _ in range(2):
            a, b = i % 4, (i + 1) % 4
            stream.append((a + 1, raw.IN_MOVED_FROM, cookie, b"r%d" % (i % 1000)))
            stream.append((b + 1, raw.IN_MOVED_TO, cookie, b"r%d" % ((i + 7) % 1000)))
            cookie += 1
            i += 1
        name = b"n%d" % i
        for mask in (raw.IN_CREATE, raw.IN_MODIFY, raw.IN_CLOSE_WRITE, raw.IN_DELETE):
            stream.append((i % 4 + 1, mask, 0, name))
    best_norm = best_shadow = float("inf")
    for _ in range(repeats):
        norm = InotifyNormalizer()
        for wd in range(1, 5):
            norm.feed(raw.WatchAdded(0, wd, b"%s/d%d" % (root, wd - 1)))
        batches = [raw.InotifyBatch(k, True, stream[k:k + 4096], 0, 0) for k in range(0, len(stream), 4096)]
        t0 = time.perf_counter()
        out = [norm.feed(batch) for batch in batches]
        t1 = time.perf_counter()
        shadow = ShadowTree([root])
        t2 = time.perf_counter()
        for recs in out:
            shadow.apply(recs)
        t3 = time.perf_counter()
        best_norm = min(best_norm, (t1 - t0) / len(stream) * 1e9)
        best_shadow = min(best_shadow, (t3 - t2) / len(stream) * 1e9)
    return best_norm, best_shadow


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--per-dir", type=int, default=100)
    args = ap.parse_args(argv)
    top = Path(tempfile.mkdtemp(prefix="fsnorm-shadow-"))
    try:
        root = top / "watched"
        root.mkdir()
        n = build(root, args.files, args.per_dir)
        broot = os.fsencode(root)
        entries = walk(broot)
        assert len(entries) == n
        nested = traced(lambda: shadow_nested(broot, entries))
        flat = traced(lambda: shadow_sorted(entries))
        wd = traced(lambda: watchdog_snapshot(root))
        on = [rss_kib(root, True) for _ in range(3)]
        off = [rss_kib(root, False) for _ in range(3)]
        rss_diff = (min(on) - min(off)) * 1024
        print(f"tree: {n:,} entries ({args.files:,} files in {n - args.files:,} directories) under {root}, "
              f"names like 'file-000123.txt', paths {len(entries[-1][0])} bytes long")
        print("| what (tracemalloc, bytes still allocated) | total | per entry | vs fsnorm shadow |")
        print("|---|---:|---:|---:|")
        for label, size in (("fsnorm shadow tree (nested dicts, names only)", nested),
                            ("previous layout: SortedDict of full paths", flat),
                            ("watchdog 7 DirectorySnapshot (peer)", wd)):
            print(f"| {label} | {size / 2**20:.1f} MiB | {size / n:.0f} B | x{size / nested:.2f} |")
        print(f"RSS of an InotifySource opened on the tree (min of 3 fresh processes): rescan on "
              f"{min(on) / 1024:.1f} MiB, off {min(off) / 1024:.1f} MiB: {rss_diff / n:.0f} B per entry")
        norm_ns, shadow_ns = hot_path()
        print(f"hot path, storm-like stream (best of 5): inotify normalizer {norm_ns:.0f} ns/event, shadow "
              f"{shadow_ns:.0f} ns/event (x{shadow_ns / norm_ns:.2f} of the normalizer)")
    finally:
        shutil.rmtree(top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
