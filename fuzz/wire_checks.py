"""What must hold for any bytes fed to the wire protocol's readers (fuzz/fuzz_wire.py, tests/test_fuzz_wire.py).

The input's first byte picks the chunk size the bytes arrive in (a socket splits anywhere); the rest goes to a
:class:`FrameDecoder`. Whatever the bytes: the decoder yields frames or raises ProtocolError, never holds more than
one frame plus one chunk, and every frame it yields re-encodes to bytes that decode to the same frame. The
frames then drive the client's session (ProtocolError / SubscriptionError allowed) and the server's
subscription-path check (ProtocolError allowed; export root that does not exist, so nothing is looked at).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from normalizer.errors import ProtocolError, SubscriptionError
from normalizer.net import wire
from normalizer.net.client import _Session
from normalizer.net.exports import Export, check_subscription_path

_EXPORTS = [Export(b"data", b"/nonexistent-fsnorm-fuzz/data")]


@dataclass
class Outcome:
    frames: list[wire.Frame] = field(default_factory=list)
    error: ProtocolError | None = None
    pending: int = 0  #: bytes of an incomplete last frame (a reader would wait for more)


def check_wire(data: bytes) -> Outcome:
    out = Outcome()
    if not data:
        return out
    chunk = 1 + data[0] * 37
    body = data[1:]
    dec = wire.FrameDecoder()
    try:
        for i in range(0, len(body), chunk):
            dec.feed(body[i:i + chunk])
            out.frames.extend(dec.frames())
            assert dec.buffered <= wire.HEADER.size + wire.MAX_BODY + chunk, dec.buffered
        out.pending = dec.buffered
    except ProtocolError as exc:
        out.error = exc
    for frame in out.frames:
        again = wire.decode_all(wire.encode(frame))
        assert again == [frame], (frame, again)
        wire.frame_to_json(frame)
        if isinstance(frame, wire.Record):
            rec = wire.to_rec(frame)
            assert rec.kind == frame.kind
        if isinstance(frame, wire.Subscribe):
            try:
                path = check_subscription_path(frame.path, _EXPORTS)
                assert path == b"" or path == b"data" or path.startswith(b"data/")
                assert b".." not in path.split(b"/")
            except ProtocolError:
                pass
    session = _Session(wire.Subscribe())
    try:
        for frame in out.frames:
            session.receive(frame)
    except (ProtocolError, SubscriptionError):
        pass
    return out
