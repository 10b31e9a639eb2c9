"""The journal of sent records (normalizer/net/journal.py): seqs, retention, resume exactly once or a rescan."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from normalizer.net import wire
from normalizer.net.journal import Gap, Journal, plan_resume


def fill(j: Journal, n: int, *, t0: int = 0, step: int = 1, size: int = 10) -> None:
    for i in range(n):
        j.append("create", b"e/f", b"", lambda seq: b"x" * size, t0 + i * step)


def drain(j: Journal, cursor: int, limit: int = 7) -> tuple[list[Gap], list[int]]:
    gaps: list[Gap] = []
    seqs: list[int] = []
    while True:
        gap, entries = j.read(cursor, limit=limit)
        if gap is not None:
            gaps.append(gap)
            cursor = gap.last + 1
        if not entries:
            return gaps, seqs
        seqs.extend(e.seq for e in entries)
        cursor = entries[-1].seq + 1


def test_seqs_count_from_one_and_read_resumes_after_since() -> None:
    j = Journal(epoch=5)
    fill(j, 10)
    assert (j.oldest_seq, j.last_seq, len(j)) == (1, 10, 10)
    resume = plan_resume(j, 4, 5)
    assert resume.rescan is None
    assert drain(j, resume.cursor) == ([], [5, 6, 7, 8, 9, 10])


def test_retention_by_count_bytes_and_age() -> None:
    j = Journal(epoch=1, max_records=5)
    fill(j, 12)
    assert (j.oldest_seq, j.last_seq, len(j)) == (8, 12, 5)
    j = Journal(epoch=1, max_bytes=35)
    fill(j, 12, size=10)
    assert (j.oldest_seq, j.size_bytes) == (10, 30)
    j = Journal(epoch=1, max_age_ns=100)
    fill(j, 10, step=30)  # appended at t = 0, 30, ..., 270
    assert j.oldest_seq == 7  # t >= 170
    j.trim(10_000)
    assert (j.oldest_seq, j.last_seq) == (10, 10)  # the newest record always stays


def test_resume_older_than_retention_gets_the_lost_range_then_everything_held() -> None:
    j = Journal(epoch=3, max_records=4)
    fill(j, 10)
    resume = plan_resume(j, 2, 3)
    assert resume.rescan is not None
    assert (resume.rescan.reason, resume.rescan.lost_from, resume.rescan.lost_to) == (wire.R_RETENTION, 3, 6)
    assert drain(j, resume.cursor) == ([], [7, 8, 9, 10])


def test_resume_from_another_epoch_or_without_one_is_a_rescan_then_live() -> None:
    j = Journal(epoch=3)
    fill(j, 5)
    for since, epoch, reason in ((2, 9, wire.R_NEW_EPOCH), (2, 0, wire.R_NO_EPOCH), (99, 3, wire.R_NEW_EPOCH)):
        resume = plan_resume(j, since, epoch)
        assert resume.rescan is not None and resume.rescan.reason == reason
        assert resume.cursor == 6
    assert plan_resume(j, None, 0) == type(plan_resume(j, None, 0))(6, None)


def test_a_lagging_cursor_gets_a_gap() -> None:
    j = Journal(epoch=1, max_records=3)
    fill(j, 3)
    cursor = 2
    fill(j, 5)
    assert drain(j, cursor) == ([Gap(2, 5)], [6, 7, 8])


def test_compaction_keeps_seqs_right() -> None:
    j = Journal(epoch=1, max_records=10)
    fill(j, 5000)
    assert drain(j, 4995, limit=3) == ([], [4995, 4996, 4997, 4998, 4999, 5000])
    assert len(j._entries) < 3000


@settings(max_examples=200, deadline=None)
@given(n=st.integers(0, 60), keep=st.integers(1, 20), since=st.none() | st.integers(0, 70),
       lag=st.integers(0, 30), limit=st.integers(1, 9))
def test_every_record_after_since_exactly_once_or_in_a_reported_gap(n: int, keep: int, since: int | None,
                                                                     lag: int, limit: int) -> None:
    """Whatever the retention and whenever the reader comes, seqs after ``since`` are each either delivered
    once or inside exactly one reported gap / rescan range, in order."""
    j = Journal(epoch=7, max_records=keep)
    fill(j, n)
    resume = plan_resume(j, since, 7)
    fill(j, lag)  # the reader is late
    gaps, seqs = drain(j, resume.cursor, limit)
    covered: list[int] = list(seqs)
    if resume.rescan is not None and resume.rescan.lost_to:
        covered += range(resume.rescan.lost_from, resume.rescan.lost_to + 1)
    for g in gaps:
        covered += range(g.first, g.last + 1)
    assert seqs == sorted(set(seqs))
    start = resume.cursor if since is None or (resume.rescan is not None and not resume.rescan.lost_to) else since + 1
    assert sorted(covered) == list(range(start, j.last_seq + 1))
    if since is not None and since <= n and resume.rescan is None:
        assert not gaps or gaps[0].first > since
