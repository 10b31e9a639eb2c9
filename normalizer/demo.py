"""The built-in demo workload (``make demo`` / ``fsnorm demo``): real renames in a temp tree, watched live.

It covers the cases fsnorm exists for: a rename within a directory and across directories, a file moved out
of the tree and one moved in, a directory renamed with content and then used under its new name, a directory
moved out (activity in it afterwards is not reported) and one moved in with content (synthesized creates), a
rename onto an existing file, and some creates and deletes. No root needed.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from .records import Rec


def _write(path: Path, text: str = "x") -> None:
    path.write_text(text)


def _create_and_delete(path: Path) -> None:
    _write(path)
    path.unlink()


def steps(root: Path, outside: Path) -> list[tuple[str, Callable[[], None]]]:
    """The workload, as (description, action) pairs. ``root`` is watched, ``outside`` is not."""
    a, b = root / "a", root / "b"
    return [
        ("create a/report.txt", lambda: _write(a / "report.txt", "draft")),
        ("rename within a dir", lambda: os.rename(a / "report.txt", a / "report-final.txt")),
        ("rename across dirs", lambda: os.rename(a / "report-final.txt", b / "report-final.txt")),
        ("move a file out of the tree", lambda: os.rename(b / "report-final.txt", outside / "report.txt")),
        ("move a file into the tree", lambda: os.rename(outside / "incoming.txt", a / "incoming.txt")),
        ("rename a directory with content", lambda: os.rename(a / "album", a / "album-2026")),
        ("write inside the renamed directory", lambda: _write(a / "album-2026" / "cover.jpg")),
        ("move a directory out of the tree", lambda: os.rename(a / "album-2026", outside / "album")),
        ("write in the moved-out directory (not reported)", lambda: _write(outside / "album" / "late.jpg")),
        ("move a directory with content into the tree", lambda: os.rename(outside / "pkg", b / "pkg")),
        ("write inside the moved-in directory", lambda: _write(b / "pkg" / "setup.cfg")),
        ("rename onto an existing file", lambda: os.rename(a / "incoming.txt", b / "notes.txt")),
        ("create and delete a file", lambda: _create_and_delete(b / "tmp.txt")),
    ]


def prepare(base: Path) -> tuple[Path, Path]:
    """Lay out the watched tree and the unwatched directory next to it."""
    root, outside = base / "watched", base / "outside"
    for d in (root / "a" / "album", root / "b", outside / "pkg" / "src"):
        d.mkdir(parents=True)
    _write(root / "a" / "album" / "01.jpg")
    _write(root / "b" / "notes.txt", "old notes")
    _write(outside / "incoming.txt")
    _write(outside / "pkg" / "README")
    _write(outside / "pkg" / "src" / "main.py")
    return root, outside


def summary(records: list[Rec]) -> str:
    kinds = Counter(r.kind for r in records)
    renames = [r for r in records if r.kind == "rename"]
    joined = sum(1 for r in renames if r.path and r.dst)
    synthesized = sum(1 for r in records if "synthesized" in r.flags)
    rest = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()) if k != "rename")
    return (f"{len(records)} records: {len(renames)} renames ({joined} joined, {len(renames) - joined} one-sided), "
            f"{synthesized} synthesized; {rest}")


def run(emit: Callable[[list[Rec]], None], *, capture: str | None = None, pause: float = 0.05,
        window_ms: float | None = None) -> list[Rec]:
    """Run the workload against a live watch; ``emit`` gets records as they come. Returns all records."""
    from .backends.inotify import InotifySource

    with tempfile.TemporaryDirectory(prefix="fsnorm-demo-") as tmp:
        root, outside = prepare(Path(tmp))
        options = {} if window_ms is None else {"window_ns": int(window_ms * 1_000_000)}
        source = InotifySource([root], capture=capture, **options)  # type: ignore[arg-type]
        records = list(source.open())
        done = threading.Event()

        def workload() -> None:
            for _, action in steps(root, outside):
                action()
                time.sleep(pause)
            done.set()
            source.wake()

        worker = threading.Thread(target=workload, name="fsnorm-demo-workload")
        worker.start()
        try:
            while not done.is_set():
                got = source.read(0.5)
                records.extend(got)
                emit(got)
            # Let the last events arrive and the last window pass.
            end = time.monotonic() + 0.3
            while time.monotonic() < end:
                got = source.read(0.05)
                records.extend(got)
                emit(got)
        finally:
            worker.join()
            last = source.close()
            records.extend(last)
            emit(last)
    return records
