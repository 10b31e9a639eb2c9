"""Remote fsnotify, the public entry: subscribe to an ``fsnorm serve`` over a unix or TCP socket.

    for record in normalizer.remote.subscribe("unix:/run/fsnorm.sock", path="data/src"):
        print(record.seq, record.kind)            # normalizer.Record[bytes], seq and epoch set

    async for record in normalizer.remote.subscribe("tcp:127.0.0.1:7070"):
        ...

Records are :class:`normalizer.Record` (the type :func:`normalizer.watch` yields) with ``seq`` and ``epoch``
set and ``bytes`` paths relative to the server's exports (``b"data/a/b.txt"``). A record of kind
``rescan`` means records were lost for this client (server restart, journal retention, fell behind): re-read
the tree. docs/wire-protocol.md specifies the protocol.
"""

from __future__ import annotations

from .net.client import RemoteRecord, Subscription, subscribe

__all__ = ["RemoteRecord", "Subscription", "subscribe"]
