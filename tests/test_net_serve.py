"""fsnorm serve / subscribe with real sockets and the real kernel: records, export paths, addresses, security."""

from __future__ import annotations

import asyncio
import gc
import itertools
import os
import stat
import threading
import warnings
from pathlib import Path
from typing import Any

import pytest
from netproc import Collector, Proc, Server, Subscriber, quiet, serving

from normalizer import Record
from normalizer.errors import SubscriptionError
from normalizer.net import wire
from normalizer.remote import subscribe


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "data" / "sub").mkdir(parents=True)
    (tmp_path / "logs").mkdir()
    return tmp_path


def test_records_have_export_paths_seq_and_epoch(tree: Path) -> None:
    srv = Server(tree / "s.sock", [str(tree / "data")], "--export", f"lg={tree / 'logs'}")
    try:
        cli = Subscriber(srv.addr)
        lib = Collector(srv.addr)
        (tree / "data" / "a").write_text("x")
        os.rename(tree / "data" / "a", tree / "data" / "sub" / "b")
        os.rename(tree / "data" / "sub" / "b", tree / "logs" / "c")  # across exports: both sides, two names
        (tree / "data" / "d").mkdir()
        quiet(lib)
    finally:
        assert srv.stop() == 0
    assert cli.finish() == 0
    recs = lib.join()
    printed = cli.records()
    assert [(r["kind"], r.get("path", r.get("src")), r["seq"], r["epoch"]) for r in printed] == [
        (r.kind, os.fsdecode(r.src if r.kind == "rename" else r.path), r.seq, r.epoch) for r in recs]
    assert all(type(r) is Record and type(r.path) is bytes for r in recs)
    renames = [(r.src, r.dst) for r in recs if r.kind == "rename"]
    assert renames == [(b"data/a", b"data/sub/b"), (b"data/sub/b", b"lg/c")]
    assert ("create", b"data/d", True) in [(r.kind, getattr(r, "path", b""), r.is_dir) for r in recs]
    assert [r.seq for r in recs] == sorted({r.seq for r in recs}) and recs[0].seq == 1
    assert {r.epoch for r in recs} == {srv.epoch}
    text = b"".join(cli.out)
    assert str(tree).encode() not in text  # never the server's absolute paths


def test_tcp_on_loopback_and_text_format(tree: Path) -> None:
    srv = Server(tree / "s.sock", [str(tree / "data")], "--listen", "tcp:127.0.0.1:0")
    try:
        tcp = next(a for a in srv.addresses if a.startswith("tcp:127.0.0.1:"))
        cli = Subscriber(tcp, "--format", "text", "--events", "rename")
        lib = Collector(tcp, events=["rename"])
        (tree / "data" / "x").touch()
        os.rename(tree / "data" / "x", tree / "data" / "y")
        quiet(lib)
    finally:
        srv.stop()
    cli.finish()
    assert [(r.kind, r.src, r.dst) for r in lib.join()] == [("rename", b"data/x", b"data/y")]
    (line,) = cli.out
    assert line.decode().split() == [str(lib.records[0].seq), "rename", "data/x", "->", "data/y"]


def test_async_iterator(tree: Path) -> None:
    srv = Server(tree / "s.sock", [str(tree / "data")])

    async def main() -> list[Any]:
        got: list[Any] = []
        sub = subscribe(srv.addr, path="data/sub")
        async for rec in sub:
            got.append(rec)
        return got

    async def run() -> list[Any]:
        task = asyncio.create_task(main())
        await asyncio.sleep(0.5)
        (tree / "data" / "sub" / "f").touch()
        (tree / "data" / "g").touch()  # outside the subscribed path
        await asyncio.sleep(0.5)
        await asyncio.get_running_loop().run_in_executor(None, srv.stop)
        return await task

    got = asyncio.run(run())
    assert {(r.kind, r.path) for r in got} >= {("create", b"data/sub/f")}
    assert all(r.path.startswith(b"data/sub/") for r in got if r.kind not in wire.STREAM_KINDS)
    assert not any(getattr(r, "path", b"") == b"data/g" for r in got)


@pytest.mark.parametrize(("path", "why"), [
    ("../etc", "'..'"), ("/etc", "absolute"), ("data/../../etc", "'..'"), ("nope/x", "no export named 'nope'"),
    ("data/out", "symlink leading out of the export"), ("data/in", "is a symlink; events are reported at its target"),
])
def test_bad_subscription_paths_are_refused(tree: Path, path: str, why: str) -> None:
    (tree / "data" / "out").symlink_to("/etc")
    (tree / "data" / "in").symlink_to(tree / "data" / "sub")
    srv = Server(tree / "s.sock", [str(tree / "data")])
    try:
        cli = Proc(["subscribe", srv.addr, "--path", path])
        assert cli.finish() == 1
        assert any("refused" in line and why in line for line in cli.err), cli.err
        with pytest.raises(SubscriptionError, match="refused") as info:
            list(subscribe(srv.addr, path=path))
        assert info.value.code == wire.E_PATH
    finally:
        srv.stop()


def test_unix_socket_mode_and_allowed_uids(tree: Path) -> None:
    srv = Server(tree / "s.sock", [str(tree / "data")])
    try:
        assert stat.S_IMODE(os.stat(tree / "s.sock").st_mode) == 0o600
    finally:
        srv.stop()
    assert not (tree / "s.sock").exists()
    srv = Server(tree / "s2.sock", [str(tree / "data")], "--socket-mode", "660", "--allow-uid", "54321")
    try:
        assert stat.S_IMODE(os.stat(tree / "s2.sock").st_mode) == 0o660
        with pytest.raises(SubscriptionError, match=f"uid {os.getuid()} is not allowed") as info:
            list(subscribe(srv.addr))
        assert info.value.code == wire.E_DENIED
    finally:
        srv.stop()
    srv = Server(tree / "s3.sock", [str(tree / "data")], "--allow-uid", str(os.getuid()))
    try:
        lib = Collector(srv.addr)
        (tree / "data" / "ok").touch()
        quiet(lib)
    finally:
        srv.stop()
    assert ("create", b"data/ok") in [(r.kind, r.path) for r in lib.join()]


def test_a_live_socket_is_not_taken_over(tree: Path) -> None:
    srv = Server(tree / "s.sock", [str(tree / "data")])
    try:
        other = Proc(["serve", str(tree / "data"), "--listen", srv.addr])
        assert other.finish() == 1
        assert any("another server is listening" in line for line in other.err), other.err
    finally:
        srv.stop()


def test_fanotify_backend_serves_the_same_records_with_object_ids(tree: Path) -> None:
    from normalizer.backends.fanotify import unavailable_reason

    if unavailable_reason() is not None:
        pytest.skip(unavailable_reason() or "")
    srv = Server(tree / "s.sock", [str(tree / "data")], "--backend", "fanotify")
    try:
        lib = Collector(srv.addr, events=["rename", "create"])
        (tree / "data" / "a").touch()
        os.rename(tree / "data" / "a", tree / "data" / "sub" / "b")
        quiet(lib)
    finally:
        srv.stop()
    recs = lib.join()
    ren = [r for r in recs if r.kind == "rename"]
    assert [(r.src, r.dst, r.source) for r in ren] == [(b"data/a", b"data/sub/b", "fanotify")]
    create = next(r for r in recs if r.kind == "create")
    assert ren[0].object_id and ren[0].object_id == create.object_id  # the same object, opaque hex


def test_cli_usage_errors_are_one_line_messages(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from normalizer.cli.main import main

    sock = f"unix:{tmp_path / 's.sock'}"
    assert main(["serve", "--listen", sock]) == 2
    assert main(["serve", str(tmp_path / "missing"), "--listen", sock]) == 2
    assert main(["serve", str(tmp_path)]) == 2
    assert main(["serve", str(tmp_path), "--listen", "udp:1"]) == 2
    assert main(["serve", str(tmp_path), "--export", "a/b=" + str(tmp_path), "--listen", sock]) == 2
    assert main(["subscribe", sock]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "fsnorm: error: nothing to serve: give PATH or --export NAME=ROOT",
        f"fsnorm: error: export root '{tmp_path / 'missing'}' is not a directory",
        "fsnorm: error: serve needs at least one --listen ADDR (unix:/path or tcp:HOST:PORT)",
        "fsnorm: error: bad address 'udp:1': use unix:/path or tcp:HOST:PORT",
        "fsnorm: error: bad export name b'a/b' (use --export NAME=ROOT)",
        f"fsnorm: error: cannot connect to {sock}: No such file or directory",
    ]


def test_subscribe_frames_prints_the_debug_json_form(tree: Path) -> None:
    srv = Server(tree / "s.sock", [str(tree / "data")])
    try:
        dbg = Subscriber(srv.addr, "--frames", "--events", "create")
        (tree / "data" / "z").touch()
        dbg.wait_lines(3)
    finally:
        srv.stop()
    dbg.finish()
    frames = dbg.records()
    assert [f["frame"] for f in frames[:3]] == ["WELCOME", "SUBSCRIBED", "RECORD"]
    assert frames[0]["exports"] == ["data"] and frames[0]["epoch"] == srv.epoch
    assert (frames[2]["kind"], frames[2]["a"]["path"], frames[2]["a"]["name"]) == ("create", "data/z", "z")
    assert frames[-1] == {"frame": "ERROR", "code": wire.E_SHUTDOWN, "message": "server shutting down"}


def test_the_library_client_releases_its_socket_when_the_stream_fails_or_ends(tmp_path: Path) -> None:
    """No server, a refused subscription, a stream the server ended: no socket stays open. The subscriptions
    stay referenced here, so a socket left open shows in /proc/self/fd rather than being closed by the GC (the
    socket of a failed connect is not reachable: its collection would warn)."""
    def fds() -> set[str]:
        return set(os.listdir("/proc/self/fd"))

    with warnings.catch_warnings(record=True) as caught:  # the failed socket is not kept: its collection warns
        warnings.simplefilter("always", ResourceWarning)
        with pytest.raises(SubscriptionError, match="cannot connect") as failed:
            subscribe(f"unix:{tmp_path / 'nobody.sock'}").connect()
        del failed  # its traceback holds the frames
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []
    with serving(tmp_path) as (srv, data):
        before = fds()  # the server's pipes included
        refused = subscribe(srv.addr, path="nope/x")
        with pytest.raises(SubscriptionError, match="refused"):
            list(refused)
        assert fds() == before, refused
        ended = subscribe(srv.addr).connect()
        assert len(fds() - before) == 1  # its socket
        (data / "f").touch()
        first = next(iter(ended))
        srv.stop()
        assert fds() < before  # the server's pipes closed
        before = fds()
    assert (first.kind, first.path) == ("create", b"data/f")
    list(ended)  # to the end of the stream
    assert len(before - fds()) == 1, ended  # its socket, released at the end


def test_a_bare_iteration_that_stops_early_hangs_up_and_a_connected_one_goes_on(tmp_path: Path) -> None:
    """``for rec in subscribe(addr): break`` leaves no socket open (nothing else could close it); a
    subscription connected with ``with`` keeps its connection across iterations and gets every record once."""
    def fds() -> set[str]:
        return set(os.listdir("/proc/self/fd"))

    (tmp_path / "data" / "sub").mkdir(parents=True)  # before the server watches: no record of it on the way
    with serving(tmp_path) as (srv, data):
        before = fds()
        bare = subscribe(srv.addr)
        stop = threading.Event()

        def churn() -> None:  # the bare iteration connects when it starts: files made after that reach it
            for i in itertools.count():
                if stop.wait(0.02):
                    return
                (data / f"a{i}").touch()

        maker = threading.Thread(target=churn)
        maker.start()
        try:
            for rec in bare:
                assert rec.kind == "create" and rec.path.startswith(b"data/a")
                assert len(fds() - before) == 1  # its socket, open while it iterates
                break
        finally:
            stop.set()
            maker.join()
        assert bare.closed and fds() == before
        with subscribe(srv.addr, path="data/sub") as held:  # not the a* files, whatever is still on its way
            (data / "sub" / "b").write_bytes(b"x")  # create, modify, close_write: one read of the socket, likely
            got = [next(iter(held)) for _ in range(3)]  # three iterations on the same connection
            assert not held.closed and len(fds() - before) == 1
        assert [(r.kind, r.path) for r in got] == [("create", b"data/sub/b"), ("modify", b"data/sub/b"),
                                                   ("close_write", b"data/sub/b")]
        assert held.closed and fds() == before
