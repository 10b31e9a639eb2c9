"""Hostile clients (garbage, huge lengths, truncated frames, slowloris, wrong order, too many) are disconnected
with an ERROR frame, and a well-behaved subscriber connected all along gets every record."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest
from netproc import Collector, Server, quiet

from normalizer.errors import ProtocolError
from normalizer.net import wire


def connect(addr: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(addr.removeprefix("unix:"))
    s.settimeout(20)
    return s


def answer(s: socket.socket) -> list[wire.Frame]:
    """Everything the server sends until it closes (it must close)."""
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    return wire.decode_all(data)


def errors(frames: list[wire.Frame]) -> list[tuple[int, str]]:
    return [(f.code, f.message) for f in frames if isinstance(f, wire.Error)]


def handshake(s: socket.socket) -> None:
    s.sendall(wire.encode(wire.Hello()))
    dec = wire.FrameDecoder()
    while not dec.frames():
        dec.feed(s.recv(65536))
    s.sendall(wire.encode(wire.Subscribe()))


@pytest.fixture
def served(tmp_path: Path):  # type: ignore[no-untyped-def]
    (tmp_path / "data").mkdir()
    srv = Server(tmp_path / "s.sock", [str(tmp_path / "data")], "--handshake-timeout", "1", "--max-clients", "40")
    good = Collector(srv.addr, events=["create"])
    yield srv, good, tmp_path / "data"
    srv.stop()


def test_hostile_clients_are_dropped_and_nobody_else_notices(served) -> None:  # type: ignore[no-untyped-def]
    srv, good, data = served
    cases: dict[str, tuple[bytes, int, str]] = {
        "garbage": (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", wire.E_PROTOCOL, "at most 65536"),
        "huge length": (wire.HEADER.pack(0xFFFFFFF0, wire.T_HELLO, 0), wire.E_PROTOCOL, "at most 65536"),
        "bad magic": (wire.HEADER.pack(7, wire.T_HELLO, 0) + b"HTTP\x01\x01\x00", wire.E_PROTOCOL, "magic"),
        "truncated hello": (wire.HEADER.pack(3, wire.T_HELLO, 0) + b"FSN", wire.E_PROTOCOL, "truncated"),
        "record first": (wire.encode(wire.Record(seq=1, kind="create", kind_code=2)), wire.E_PROTOCOL, "HELLO"),
        "no common version": (wire.encode(wire.Hello((7, 9))), wire.E_VERSION, "no common version"),
    }
    for name, (payload, code, text) in cases.items():
        (data / f"before-{name}").touch()
        s = connect(srv.addr)
        s.sendall(payload)
        got = errors(answer(s))
        assert len(got) == 1 and got[0][0] == code and text in got[0][1], (name, got)
    # Half a frame, then silence: the handshake timeout closes it.
    s = connect(srv.addr)
    s.sendall(wire.encode(wire.Hello())[:5])
    assert errors(answer(s)) == [(wire.E_TIMEOUT, "timed out")]
    # Slowloris: one byte at a time, slower than the handshake allows.
    s = connect(srv.addr)
    hello = wire.encode(wire.Hello())
    closed = False
    for byte in hello:
        try:
            s.sendall(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            closed = True
            break
        time.sleep(0.3)
    if closed:
        s.close()
    else:
        frames = answer(s)
        assert (wire.E_TIMEOUT, "timed out") in errors(frames), frames
    # A subscribed client that starts sending garbage.
    s = connect(srv.addr)
    handshake(s)
    s.sendall(b"\xff" * 64)
    assert any(code == wire.E_PROTOCOL for code, _ in errors(answer(s)))
    # Connect and vanish mid-frame.
    s = connect(srv.addr)
    s.sendall(wire.encode(wire.Hello())[:9])
    s.close()
    (data / "after").touch()
    quiet(good)
    paths = [r.path for r in good.records]
    assert paths == [f"data/before-{name}".encode() for name in cases] + [b"data/after"]


def test_too_many_clients_are_refused_with_a_reason(served) -> None:  # type: ignore[no-untyped-def]
    srv, good, data = served
    held = [connect(srv.addr) for _ in range(39)]  # + good = 40
    try:
        s = connect(srv.addr)
        assert errors(answer(s))[0][0] == wire.E_BUSY
    finally:
        for h in held:
            h.close()
    (data / "still").touch()
    quiet(good)
    assert [r.path for r in good.records] == [b"data/still"]


def test_the_library_client_reports_a_hostile_server_as_a_typed_error(tmp_path: Path) -> None:
    from normalizer.remote import subscribe

    path = str(tmp_path / "fake.sock")
    lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lsock.bind(path)
    lsock.listen(1)
    import threading

    def fake() -> None:
        conn, _ = lsock.accept()
        conn.recv(100)
        conn.sendall(wire.HEADER.pack(1 << 30, wire.T_WELCOME, 0))
        time.sleep(0.5)
        conn.close()

    t = threading.Thread(target=fake, daemon=True)
    t.start()
    with pytest.raises(ProtocolError, match="at most 65536"):
        list(subscribe(f"unix:{path}"))
    t.join(5)
    lsock.close()
    os.unlink(path)
