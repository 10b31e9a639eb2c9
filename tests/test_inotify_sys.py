"""The low-level inotify binding against the real kernel, plus the pure parser (round-trips and fuzzing)."""

from __future__ import annotations

import errno
import os
import resource
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from live import sysctl, sysctl_lock

from normalizer.backends._inotify_sys import (
    MIN_READ_BUFSIZE,
    InotifyFD,
    pack_events,
    parse_events,
)
from normalizer.core import raw
from normalizer.errors import SourceError, WatchLimitError

MASK = raw.DEFAULT_INOTIFY_MASK
IS_ROOT = os.geteuid() == 0


@pytest.fixture
def ino() -> Iterator[InotifyFD]:
    with InotifyFD() as fd:
        yield fd


def drain(ino: InotifyFD) -> list[raw.InotifyEvent]:
    """Everything queued right now (the test is the only writer, and all its syscalls have returned)."""
    out: list[raw.InotifyEvent] = []
    while True:
        got = ino.read_events()
        if not got:
            return out
        out.extend(got)


def kinds(events: list[raw.InotifyEvent]) -> list[tuple[int, int, bytes]]:
    """(wd, mask, name) without the cookie."""
    return [(wd, mask, name) for wd, mask, _cookie, name in events]


# --- live kernel ----------------------------------------------------------------------------------------


def test_create_modify_close_delete(ino: InotifyFD, tmp_path: Path) -> None:
    wd = ino.add_watch(bytes(tmp_path), MASK)
    assert wd >= 1
    f = tmp_path / "a.txt"
    fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.write(fd, b"hello")
    os.close(fd)
    os.mkdir(tmp_path / "sub")
    f.unlink()
    assert kinds(drain(ino)) == [
        (wd, raw.IN_CREATE, b"a.txt"),
        (wd, raw.IN_MODIFY, b"a.txt"),
        (wd, raw.IN_CLOSE_WRITE, b"a.txt"),
        (wd, raw.IN_CREATE | raw.IN_ISDIR, b"sub"),
        (wd, raw.IN_DELETE, b"a.txt"),
    ]


def test_rename_within_one_dir(ino: InotifyFD, tmp_path: Path) -> None:
    (tmp_path / "old").write_bytes(b"")
    (tmp_path / "x").write_bytes(b"")
    wd = ino.add_watch(bytes(tmp_path), MASK)
    os.rename(tmp_path / "old", tmp_path / "new")
    os.rename(tmp_path / "x", tmp_path / "y")
    events = drain(ino)
    assert kinds(events) == [
        (wd, raw.IN_MOVED_FROM, b"old"),
        (wd, raw.IN_MOVED_TO, b"new"),
        (wd, raw.IN_MOVED_FROM, b"x"),
        (wd, raw.IN_MOVED_TO, b"y"),
    ]
    assert events[0][2] == events[1][2]
    assert events[2][2] == events[3][2]
    assert events[0][2] != events[2][2]  # one cookie per rename(2) (a 32-bit counter: it cannot wrap in one step)


def test_rename_across_two_watched_dirs(ino: InotifyFD, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "f").write_bytes(b"1")
    (a / "d").mkdir()
    wa = ino.add_watch(bytes(a), MASK)
    wb = ino.add_watch(bytes(b), MASK)
    assert wa != wb
    os.rename(a / "f", b / "g")
    os.rename(a / "d", b / "d2")
    events = drain(ino)
    assert kinds(events) == [
        (wa, raw.IN_MOVED_FROM, b"f"),
        (wb, raw.IN_MOVED_TO, b"g"),
        (wa, raw.IN_MOVED_FROM | raw.IN_ISDIR, b"d"),
        (wb, raw.IN_MOVED_TO | raw.IN_ISDIR, b"d2"),
    ]
    assert events[0][2] == events[1][2]
    assert events[2][2] == events[3][2]
    assert events[0][2] != events[2][2]


def test_moved_watched_dir_keeps_wd_and_reports_move_self(ino: InotifyFD, tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    wp = ino.add_watch(bytes(tmp_path), MASK)
    wd = ino.add_watch(bytes(tmp_path / "d"), MASK)
    os.rename(tmp_path / "d", tmp_path / "e")
    (tmp_path / "e" / "inside").write_bytes(b"")
    events = drain(ino)
    assert kinds(events)[:3] == [
        (wp, raw.IN_MOVED_FROM | raw.IN_ISDIR, b"d"),
        (wp, raw.IN_MOVED_TO | raw.IN_ISDIR, b"e"),
        (wd, raw.IN_MOVE_SELF, b""),  # no IN_ISDIR on MOVE_SELF
    ]
    assert (wd, raw.IN_CREATE, b"inside") in kinds(events)  # same wd after the move


def test_rmdir_of_watched_dir_gives_delete_self_then_ignored(ino: InotifyFD, tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    wd = ino.add_watch(bytes(tmp_path / "d"), MASK)
    os.rmdir(tmp_path / "d")
    assert kinds(drain(ino)) == [(wd, raw.IN_DELETE_SELF, b""), (wd, raw.IN_IGNORED, b"")]
    assert ino.rm_watch(wd) is False  # the kernel already ended it


WEIRD_NAMES = [
    b"bad-utf8-\xff\xfe\xc3(",
    b"line\nbreak",
    b"x" * 255,
    b"y" * 240,  # name + NUL = 241: padded to 256
    b"z" * 15,  # name + NUL = 16 exactly: no extra padding
    b"z" * 16,  # name + NUL = 17: padded to 32
    b" lead and trail space ",
    b"tab\tcr\rctl\x01\x7f",
    "ünïcødé-файл-🙂".encode(),
    b"-",
]


def test_weird_names_round_trip_exactly(ino: InotifyFD, tmp_path: Path) -> None:
    wd = ino.add_watch(bytes(tmp_path), raw.IN_CREATE | raw.IN_DELETE)
    base = bytes(tmp_path) + b"/"
    for name in WEIRD_NAMES:
        os.close(os.open(base + name, os.O_WRONLY | os.O_CREAT, 0o600))
    for name in WEIRD_NAMES:
        os.unlink(base + name)
    assert kinds(drain(ino)) == [(wd, raw.IN_CREATE, n) for n in WEIRD_NAMES] + [
        (wd, raw.IN_DELETE, n) for n in WEIRD_NAMES
    ]


def test_pending_bytes_matches_kernel_layout_then_drains(ino: InotifyFD, tmp_path: Path) -> None:
    ino.add_watch(bytes(tmp_path), MASK)
    assert ino.pending_bytes() == 0
    for name in WEIRD_NAMES:
        os.mkdir(bytes(tmp_path) + b"/" + name)
    pending = ino.pending_bytes()
    assert pending > 0
    events = ino.read_events()
    assert len(events) == len(WEIRD_NAMES)
    # pack_events lays records out as the kernel does: same padding, same byte count.
    assert len(pack_events(events)) == pending
    assert ino.pending_bytes() == 0
    assert ino.read_events() == []


def test_small_buffer_reads_whole_events_one_at_a_time(ino: InotifyFD, tmp_path: Path) -> None:
    wd = ino.add_watch(bytes(tmp_path), raw.IN_CREATE)
    long_name = b"L" * 255
    (tmp_path / "s").mkdir()
    os.mkdir(bytes(tmp_path) + b"/" + long_name)
    assert ino.pending_bytes() == 2 * 16 + 16 + 256
    # 272 bytes hold the short event and not both: the kernel hands out whole events only.
    first = ino.read_events(MIN_READ_BUFSIZE)
    assert first == [(wd, raw.IN_CREATE | raw.IN_ISDIR, 0, b"s")]
    assert ino.pending_bytes() == 16 + 256
    assert ino.read_events(MIN_READ_BUFSIZE) == [(wd, raw.IN_CREATE | raw.IN_ISDIR, 0, long_name)]
    assert ino.pending_bytes() == 0
    with pytest.raises(ValueError, match="minimum"):
        ino.read_events(MIN_READ_BUFSIZE - 1)


def test_queue_overflow_event_has_wd_minus_one(tmp_path: Path) -> None:
    limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    if IS_ROOT:  # the limit is read at inotify_init: lower it for that moment
        limit = 4096
        with sysctl("fs.inotify.max_queued_events", limit):
            ino = InotifyFD()
    elif limit > 200_000:
        pytest.skip(f"not root, and max_queued_events={limit} is too large to fill quickly")
    else:
        ino = InotifyFD()
    ino.add_watch(bytes(tmp_path), raw.IN_MODIFY | raw.IN_ATTRIB)
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        # Alternate two kinds of event: identical consecutive events would coalesce into one.
        for _ in range(limit // 2 + 2):
            os.write(fd, b"x")
            os.fchmod(fd, 0o644)
    finally:
        os.close(fd)
    events = drain(ino)
    ino.close()
    assert len(events) == limit + 1
    assert events[-1] == (-1, raw.IN_Q_OVERFLOW, 0, b"")
    assert all(e[0] >= 1 for e in events[:-1])


def test_rm_watch_yields_ignored_and_unknown_wd_returns_false(ino: InotifyFD, tmp_path: Path) -> None:
    wd = ino.add_watch(bytes(tmp_path), MASK)
    assert ino.rm_watch(wd) is True
    assert drain(ino) == [(wd, raw.IN_IGNORED, 0, b"")]
    assert ino.rm_watch(wd) is False
    assert ino.rm_watch(987654) is False
    assert ino.rm_watch(-1) is False
    (tmp_path / "after").write_bytes(b"")
    assert drain(ino) == []  # really removed


def test_add_watch_same_inode_returns_same_wd(ino: InotifyFD, tmp_path: Path) -> None:
    wd = ino.add_watch(bytes(tmp_path), raw.IN_CREATE)
    assert ino.add_watch(str(tmp_path), raw.IN_DELETE) == wd
    assert ino.add_watch(tmp_path, raw.IN_DELETE) == wd  # os.PathLike is accepted too
    (tmp_path / "f").write_bytes(b"")
    (tmp_path / "f").unlink()
    assert kinds(drain(ino)) == [(wd, raw.IN_DELETE, b"f")]  # the mask was replaced, not OR-ed


def test_add_watch_missing_path_raises_file_not_found(ino: InotifyFD, tmp_path: Path) -> None:
    missing = bytes(tmp_path) + b"/no-such-dir"
    with pytest.raises(FileNotFoundError) as info:
        ino.add_watch(missing, MASK)
    assert info.value.errno == errno.ENOENT
    assert info.value.filename == missing
    assert "no-such-dir" in str(info.value)


def test_add_watch_onlydir_on_file_raises_not_a_directory(ino: InotifyFD, tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_bytes(b"")
    with pytest.raises(NotADirectoryError) as info:
        ino.add_watch(str(f), MASK | raw.IN_ONLYDIR)
    assert info.value.filename == str(f)


def test_add_watch_mask_create_on_watched_raises_file_exists(ino: InotifyFD, tmp_path: Path) -> None:
    ino.add_watch(bytes(tmp_path), MASK)
    with pytest.raises(FileExistsError):
        ino.add_watch(bytes(tmp_path), MASK | raw.IN_MASK_CREATE)


def test_add_watch_rejects_embedded_nul(ino: InotifyFD, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="NUL"):
        ino.add_watch(bytes(tmp_path) + b"\0/etc", MASK)


@pytest.mark.skipif(not IS_ROOT, reason="needs root to drop to another uid")
def test_add_watch_without_search_permission_raises_permission_error(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    (locked / "inner").mkdir(parents=True)
    locked.chmod(0o000)
    target = bytes(locked / "inner")
    pid = os.fork()
    if pid == 0:  # child: drop to nobody, report through the exit status
        code = 1
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            with InotifyFD() as child_ino:
                try:
                    child_ino.add_watch(target, MASK)
                    code = 2
                except PermissionError as e:
                    code = 0 if e.filename == target and e.errno == errno.EACCES else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    locked.chmod(0o755)
    assert os.waitstatus_to_exitcode(status) == 0


def test_close_is_idempotent_and_closed_fd_refuses_io(tmp_path: Path) -> None:
    ino = InotifyFD()
    fd = ino.fileno()
    assert fd >= 0 and not ino.closed
    ino.close()
    ino.close()
    assert ino.closed
    with pytest.raises(OSError) as info:
        os.fstat(fd)
    assert info.value.errno == errno.EBADF
    for call in (ino.fileno, ino.read_events, ino.pending_bytes, lambda: ino.add_watch(bytes(tmp_path), MASK)):
        with pytest.raises(ValueError, match="closed"):
            call()
    with InotifyFD() as other:
        pass
    assert other.closed


def test_fd_is_nonblocking_and_cloexec() -> None:
    with InotifyFD() as ino:
        assert os.get_blocking(ino.fileno()) is False
        assert os.get_inheritable(ino.fileno()) is False
        assert ino.read_events() == []


# --- limits (root: they change system-wide sysctls, for a few milliseconds, restored in finally) -----------


def _inotify_fdinfo() -> Iterator[str]:
    """fdinfo text of every inotify fd of every process we can see."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") != "anon_inode:inotify":
                    continue
                with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                    yield f.read()
            except OSError:
                continue


@pytest.mark.skipif(not IS_ROOT, reason="needs root to lower fs.inotify.max_user_watches")
def test_enospc_maps_to_watch_limit_error(ino: InotifyFD, tmp_path: Path) -> None:
    setting = Path("/proc/sys/fs/inotify/max_user_watches")
    dirs: list[bytes] = []
    for i in range(64):
        sub = tmp_path / f"d{i}"
        sub.mkdir()
        dirs.append(bytes(sub))
    added = 0
    with sysctl_lock():  # what is in use is counted under the lock too: the limit is set just above it
        low = sum(text.count("inotify wd:") for text in _inotify_fdinfo()) + 5
        with sysctl("fs.inotify.max_user_watches", low) as original, pytest.raises(WatchLimitError) as info:
            for d in dirs:
                ino.add_watch(d, MASK)
                added += 1
        assert int(setting.read_text()) == original
    # (not asserting added <= 5: other processes of this user may add or drop watches meanwhile)
    err = info.value
    assert err.sysctl == "fs.inotify.max_user_watches"
    assert isinstance(err, SourceError)
    assert f"fs.inotify.max_user_watches is {low}" in str(err)
    assert "sysctl fs.inotify.max_user_watches=" in str(err)
    assert isinstance(err.__cause__, OSError) and err.__cause__.errno == errno.ENOSPC
    # With the limit restored the same path can be watched.
    assert ino.add_watch(dirs[added], MASK) >= 1


@pytest.mark.skipif(not IS_ROOT, reason="needs root to lower fs.inotify.max_user_instances")
def test_emfile_instances_maps_to_watch_limit_error() -> None:
    setting = Path("/proc/sys/fs/inotify/max_user_instances")
    opened: list[InotifyFD] = []
    with sysctl_lock():  # what is in use is counted under the lock too: the limit is set just above it
        low = sum(1 for _ in _inotify_fdinfo()) + 3  # fds, an upper bound on instances (dup'd fds count twice)
        try:
            with sysctl("fs.inotify.max_user_instances", low) as original, pytest.raises(WatchLimitError) as info:
                for _ in range(64):
                    opened.append(InotifyFD())
        finally:
            for o in opened:
                o.close()
        assert int(setting.read_text()) == original
    err = info.value
    assert err.sysctl == "fs.inotify.max_user_instances"
    assert f"fs.inotify.max_user_instances is {low}" in str(err)
    assert "sysctl fs.inotify.max_user_instances=" in str(err)


def test_emfile_fd_limit_is_told_apart_from_instance_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    in_use = {int(fd) for fd in os.listdir("/proc/self/fd")}
    # The smallest limit that leaves exactly 3 free fd numbers below it (there may be holes in the table).
    limit, free = 0, 0
    while free < 3:
        free += limit not in in_use
        limit += 1
    opened: list[InotifyFD] = []
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
        with pytest.raises(SourceError) as info:
            for _ in range(64):
                opened.append(InotifyFD())
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        for o in opened:
            o.close()
    assert not isinstance(info.value, WatchLimitError)
    assert "RLIMIT_NOFILE" in str(info.value)
    assert "ulimit -n" in str(info.value)


# --- the pure parser --------------------------------------------------------------------------------------


def test_parse_truncated_name_raises_value_error_naming_offset() -> None:
    buf = pack_events([(1, raw.IN_CREATE, 0, b"first"), (2, raw.IN_DELETE, 0, b"second")])
    assert len(buf) == 64
    with pytest.raises(ValueError, match=r"offset 32\b"):
        parse_events(buf[:-1])
    with pytest.raises(ValueError, match=r"offset 32\b"):
        parse_events(buf, 40)


def test_parse_truncated_header_raises_value_error_naming_offset() -> None:
    buf = pack_events([(1, raw.IN_CREATE, 0, b"first")])
    with pytest.raises(ValueError, match=r"header at offset 32\b"):
        parse_events(buf + b"\x01\x00\x00")
    with pytest.raises(ValueError, match=r"header at offset 0\b"):
        parse_events(b"\x01" * 15)


def test_parse_huge_len_field_raises_instead_of_reading_on() -> None:
    buf = struct.pack("iIII", 1, raw.IN_CREATE, 0, 0xFFFFFFFF) + b"abc\0"
    with pytest.raises(ValueError, match="offset 0"):
        parse_events(buf)


def test_parse_rejects_n_outside_buffer() -> None:
    with pytest.raises(ValueError, match="outside"):
        parse_events(b"\0" * 16, 17)
    with pytest.raises(ValueError, match="outside"):
        parse_events(b"\0" * 16, -1)


def test_parse_cuts_name_at_first_nul_and_keeps_other_bytes() -> None:
    body = b"a\nb\xff\0junk\0\0"
    buf = struct.pack("iIII", 7, raw.IN_CREATE, 5, len(body)) + body
    assert parse_events(buf) == [(7, raw.IN_CREATE, 5, b"a\nb\xff")]
    # No NUL at all inside the name field (the kernel always puts one): the whole field is the name.
    buf2 = struct.pack("iIII", 7, raw.IN_CREATE, 5, 3) + b"abc"
    assert parse_events(buf2) == [(7, raw.IN_CREATE, 5, b"abc")]


def test_parse_accepts_bytearray_and_memoryview_and_prefix_length() -> None:
    events = [(1, raw.IN_MOVED_FROM, 42, b"x"), (-1, raw.IN_Q_OVERFLOW, 0, b""), (3, raw.IN_IGNORED, 0, b"")]
    buf = pack_events(events)
    assert parse_events(bytearray(buf)) == events
    assert parse_events(memoryview(buf)) == events
    assert parse_events(bytearray(buf) + bytearray(100), len(buf)) == events
    assert parse_events(memoryview(buf + b"trailing garbage"), len(buf)) == events
    assert parse_events(buf, 32) == events[:1]
    assert parse_events(b"") == []
    ints = memoryview(bytearray(buf)).cast("I")  # itemsize 4: n still counts bytes
    assert parse_events(ints, len(buf)) == events


def test_pack_rejects_nul_in_name() -> None:
    with pytest.raises(ValueError):
        pack_events([(1, raw.IN_CREATE, 0, b"a\0b")])


names = st.binary(min_size=1, max_size=300).filter(lambda b: b"\0" not in b) | st.just(b"")
events_st = st.lists(
    st.tuples(
        st.integers(-(2**31), 2**31 - 1),
        st.integers(0, 2**32 - 1),
        st.integers(0, 2**32 - 1),
        names,
    ),
    max_size=40,
)


@given(events_st)
@settings(max_examples=300, deadline=None)
def test_pack_parse_round_trip(events: list[raw.InotifyEvent]) -> None:
    buf = pack_events(events)
    assert len(buf) % 16 == 0
    assert parse_events(buf) == events


@given(st.binary(max_size=600))
@settings(max_examples=2000, deadline=None)
def test_parse_fuzz_never_crashes(data: bytes) -> None:
    try:
        events = parse_events(data)
    except ValueError as e:
        assert "offset" in str(e)
        return
    for wd, mask, cookie, name in events:
        assert -(2**31) <= wd < 2**31 and 0 <= mask < 2**32 and 0 <= cookie < 2**32
        assert b"\0" not in name
    assert len(events) <= len(data) // 16


@given(events_st, st.binary(min_size=1, max_size=40))
@settings(max_examples=300, deadline=None)
def test_parse_fuzz_valid_prefix_then_garbage(events: list[raw.InotifyEvent], tail: bytes) -> None:
    buf = pack_events(events)
    try:
        got = parse_events(buf + tail)
    except ValueError as e:
        assert "offset" in str(e)
    else:
        assert got[: len(events)] == events
