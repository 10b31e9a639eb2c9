"""The soak's :class:`~benchmarks.soak.Ledger` decides "unaccounted" and "wrong" for the soak and two fault
tests: fed known records and known ground-truth stamps, every count is worked out by hand here."""

from __future__ import annotations

import json
from array import array
from pathlib import Path

from benchmarks.soak import Ledger, load_stamps
from normalizer.records import Rec

MS = 1_000_000
BASE = 10**12  # CLOCK_MONOTONIC-like stamps


def rename(src: bytes, dst: bytes, *flags: str) -> Rec:
    return Rec("rename", src, False, 0, 0xC0, 1, dst, flags)


def test_ledger_counts_known_records_exactly() -> None:
    # Storm layout: thread i's k-th rename is d[(i+k)%2]/t{i}_{k} -> d[(i+k+1)%2]/t{i}_{k+1}.
    led = Ledger(b"/r", 2, threads=2)
    for rec in [
        rename(b"/r/d0/t0_0", b"/r/d1/t0_1"),  # 1: t0 k0 joined
        rename(b"/r/d0/t0_0", b"/r/d1/t0_1"),  # 2: the same again: a duplicate
        rename(b"/r/d1/t0_1", b"/r/d1/t0_2"),  # 3: t0 k1's source with a destination in the wrong directory
        rename(b"/r/d0/t0_2", b"", "timeout"),  # 4: t0 k2, first half
        rename(b"", b"/r/d1/t0_3", "unwatched"),  # 5: t0 k2, second half: both sides shown
        rename(b"/r/d1/t0_3", b""),  # 6: t0 k3, a one-sided first half with no reason: wrong
        rename(b"/x/other", b"/y/other"),  # 7: not a storm file: ignored
        Rec("create", b"/r/d0/t0_9", False, 0, 0x100),  # 8: not a rename: ignored
        rename(b"/r/d1/t1_0", b"/r/d0/t1_1"),  # 9: t1 k0 joined
        Rec("overflow", b"", False, 400 * MS + BASE, 0x4000),  # 10
        rename(b"", b"/r/d1/t1_2", "unwatched", "after_overflow"),  # 11: t1 k1, second half only
    ]:
        led.add(rec)
    assert led.joined == 3 and led.duplicates == 1  # joined counts records; account() counts renames
    assert led.wrong == [(b"/r/d1/t0_1", b"/r/d1/t0_2"), (b"/r/d1/t0_3", b"")]
    assert dict(led.reasons) == {"timeout": 1, "unwatched": 2, "after_overflow": 1}
    assert led.overflow_at == [10]
    assert led.overflows == [(10, 400 * MS + BASE, (3, 0))]  # the highest rename shown per thread before it

    # Ground truth: 5 renames by thread 0, 4 by thread 1, stamped as below. The overflow covers the syscalls
    # from (latest shown: t0 k3 at 300 ms) - SLACK (100 ms) = 200 ms to its read at 400 ms.
    stamps = [array("q", [BASE + t * MS for t in (0, 1, 200, 300, 900)]),
              array("q", [BASE + t * MS for t in (0, 250, 350, 2000)])]
    report = led.account([5, 4], stamps)
    assert report == {
        "renames": 9,
        "joined": 2,  # t0 k0, t1 k0
        "one_sided": 3,  # t0 k2 (both sides), t0 k3 (one side, covered), t1 k1 (one side, covered)
        "lost_in_overflow": 1,  # t1 k2: not shown, inside the overflow's window
        "unaccounted": 3,  # t0 k1 (before the window), t0 k4 and t1 k3 (after it)
        "wrong": 2,
        "duplicates": 1,
        "reasons": {"timeout": 1, "unwatched": 2, "after_overflow": 1},
    }


def test_ledger_without_overflow_accounts_nothing_as_lost() -> None:
    led = Ledger(b"/r", 3, threads=1)
    led.add(rename(b"/r/d0/t0_0", b"/r/d1/t0_1"))
    led.add(rename(b"/r/d1/t0_1", b"/r/d2/t0_2"))
    report = led.account([3], [array("q", [1, 2, 3])])
    assert (report["joined"], report["one_sided"], report["lost_in_overflow"], report["unaccounted"]) == (2, 0, 0, 1)
    assert led.wrong == [] and led.duplicates == 0


def test_load_stamps_splits_the_flat_file_per_thread(tmp_path: Path) -> None:
    (tmp_path / "ts.bin").write_bytes(array("q", [5, 6, 7, 8, 9]).tobytes())
    (tmp_path / "gt.json").write_text(json.dumps({"renames": [2, 0, 3], "ts_file": "ts.bin"}))
    counts, stamps = load_stamps(tmp_path / "gt.json")
    assert counts == [2, 0, 3]
    assert [list(s) for s in stamps] == [[5, 6], [], [7, 8, 9]]
