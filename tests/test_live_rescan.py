"""``rescan`` after an overflow, when the tree changed shape before it: the shadow tree must follow renames."""

from __future__ import annotations

import os
from pathlib import Path

from live import brief, drain, sysctl

from normalizer.backends.inotify import InotifySource

OLD = (1_000_000, 1_000_000)  # an mtime long before the overflow: not reported as possibly modified


def test_rescan_after_a_directory_rename_reports_no_spurious_deletes_or_creates(tmp_path: Path) -> None:
    w = tmp_path / "w"
    for d in ("a/d/sub", "b", "c"):
        (w / d).mkdir(parents=True)
    for f in ("a/d/f", "a/d/sub/g"):
        (w / f).write_text("x")
        os.utime(w / f, OLD)
    with sysctl("fs.inotify.max_queued_events", 64):
        src = InotifySource([w], rescan=True, read_buffer=0)  # no reader thread: nothing reads
        src.open()
    try:
        os.rename(w / "a/d", w / "b/d2")  # read (and applied to the shadow tree) before the overflow
        recs = drain(src)
        assert brief(tmp_path, recs) == [("rename", "w/a/d", "w/b/d2", ()), ("move_self", "w/b/d2", ())]
        for i in range(40):  # 3 events each: the queue (64) overflows
            (w / f"c/n{i}").write_text("")
            (w / f"c/n{i}").unlink()
        (w / "c/new").write_text("n")
        recs = drain(src)
    finally:
        src.close()
    assert src.stats["rescans"] == 1
    got = brief(tmp_path, recs)
    cut = [r[0] for r in got].index("overflow")
    synthesized = [r for r in got[cut + 1:] if "synthesized" in r[2]]
    # Churn files whose create was read before the overflow but whose delete was lost are deleted for real.
    leftovers: set[str] = set()
    for kind, path, *_ in got[:cut]:
        if kind == "create":
            leftovers.add(str(path))
        elif kind == "delete":
            leftovers.discard(str(path))
    # The queue was full since the churn: w/c/new was never read, so the rescan finds it. Nothing about the
    # renamed subtree (w/a/d gone, w/b/d2 with f, sub, sub/g there): the shadow tree moved it with the rename.
    expected = [("delete", p, ("synthesized",)) for p in sorted(leftovers, reverse=True)]
    assert synthesized == [*expected, ("create", "w/c/new", ("synthesized",))]
