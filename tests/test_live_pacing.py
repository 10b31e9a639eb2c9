"""Read pacing (LiveSource.READ_PACING_NS) on the real kernel: a read that comes less than the pacing after the
previous one waits for the rest of it only when that read left nothing behind, so a storm is read in larger
batches while a consumer that is behind (events still queued, or chunks in the reader thread's buffer) reads
at once. The waits are observed by replacing ``time.sleep`` in the source's module (no timing assertion)."""

from __future__ import annotations

from pathlib import Path

import pytest

from normalizer.backends import base
from normalizer.backends.inotify import InotifySource


@pytest.mark.parametrize("read_buffer", [0, 1 << 20], ids=["direct", "reader-thread"])
def test_backlog_is_read_without_pacing_and_a_quiet_read_is_paced(tmp_path: Path, read_buffer: int,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    sleeps: list[float] = []
    monkeypatch.setattr(base.time, "sleep", sleeps.append)
    src = InotifySource([tmp_path], read_size=4096, read_buffer=read_buffer)
    src.open()
    try:
        for i in range(600):  # about 19 KiB of events: several 4 KiB reads, each leaving a backlog
            (tmp_path / f"f{i:04d}").touch()
        seen: list[str] = []
        while len(seen) < 600 * 2:  # create, close_write
            got = src.read(1.0)
            assert got, f"the events stopped after {len(seen)} records"
            seen.extend(r.kind for r in got)
        assert sorted(set(seen)) == ["close_write", "create"]
        assert src.stats["reads"] >= 4, src.stats
        assert sleeps == [], "a consumer with events still queued was paced"
        # The last read left the queue empty: the next one, soon after, waits for the rest of the pacing (made
        # 10 s here, so that "soon after" holds on any machine; the fake sleep returns at once).
        monkeypatch.setattr(src, "READ_PACING_NS", 10_000_000_000)
        (tmp_path / "late").touch()
        got = src.read(1.0)
        assert len(sleeps) == 1 and 9.0 < sleeps[0] <= 10.0, sleeps
        assert [r.path for r in got][:1] == [bytes(tmp_path / "late")]
        assert src.read(0) == [] and len(sleeps) == 1  # read(0) never waits
    finally:
        src.close()
