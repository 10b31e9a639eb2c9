"""Opaque object and directory ids for the wire (docs/wire-protocol.md, "Object and directory ids").

A record's sides carry the id of their directory, and the record the id of its object, so that a client can
follow a directory through renames (its id does not change when it is renamed) without ever seeing what the
kernel calls it. Why a keyed hash of the kernel's name, with a secret drawn per server run (epoch):

* **Never resolvable.** A fanotify file handle is a capability-like name: ``open_by_handle_at`` opens it
  without any path walk, so a client that learned real handles could forge neighbours (the inode number and
  generation are in it) and, were any later protocol version to accept ids from clients, reach files outside
  the export. A keyed BLAKE2b digest (a PRF; RFC 7693 section 2.5 keyed mode) of the handle reveals nothing of
  it, cannot be inverted, and cannot be forged without the secret; and the server keeps no id -> handle table,
  so there is nothing a client could make it resolve even by mistake. v1 has no frame in which a client sends
  an id at all.
* **Stable where it must be, unlinkable where it cannot be.** Within one epoch the same directory always gets
  the same id (the same key in, the same digest out). A restarted server draws a new secret: ids of another
  epoch mean nothing here, exactly like seqs, and a client that resumed across a restart got a RESCAN anyway.
* **The same kind of name for both backends.** fanotify names a directory by its file handle (fsid + handle),
  which survives renames by construction. inotify names it by the watch descriptor fsnorm holds on it, which
  survives renames too (the watch is on the inode); Linux allocates wds cyclically per inotify instance
  (``idr_alloc_cyclic`` in fs/notify/inotify/inotify_user.c) and a server run has one instance, so a wd names
  one directory for the whole epoch. The digest input is tagged by kind so the two can never collide. A
  directory that leaves the tree and comes back is watched anew under inotify (a new wd: a new id); under
  fanotify it keeps its handle (the same id).
* **A directory's object id is its id as a directory** (fanotify): the ``object_id`` of a ``create`` of a
  directory equals the ``dir_id`` of the records inside it later.

16-byte digests: collisions among 2^32 directories have probability ~2^-64. Ids are cached (bounded) because
the same few directories recur in nearly every record.
"""

from __future__ import annotations

import hashlib
import os
from typing import Final

from ..records import DirKey

#: Bytes of an id on the wire.
ID_BYTES: Final = 16
_CACHE_MAX: Final = 65_536


class IdMinter:
    """Turns the normalizer's directory keys and object handles into opaque ids for one server run."""

    __slots__ = ("_cache", "_secret")

    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = os.urandom(32) if secret is None else secret
        self._cache: dict[object, bytes] = {}

    def _digest(self, tagged: bytes) -> bytes:
        return hashlib.blake2b(tagged, key=self._secret, digest_size=ID_BYTES).digest()

    def dir_id(self, key: DirKey) -> bytes:
        """The id of a directory known by an inotify wd (int) or a fanotify fid (bytes); b"" when unknown."""
        if key is None:
            return b""
        cache = self._cache
        got = cache.get(key)
        if got is None:
            tagged = b"w" + key.to_bytes(8, "little", signed=True) if isinstance(key, int) else b"h" + key
            got = self._digest(tagged)
            if len(cache) >= _CACHE_MAX:
                cache.clear()
            cache[key] = got
        return got

    def object_id(self, hex_handle: str | None) -> bytes:
        """The id of an object whose fanotify handle a record carries as hex (``Rec.object_id``); b"" for none.
        Anything that is not a hex handle (a foreign source's text) is hashed as its text, never sent as is."""
        if not hex_handle:
            return b""
        try:
            key: bytes = bytes.fromhex(hex_handle)
        except ValueError:
            return self._digest(b"t" + hex_handle.encode("utf-8", "surrogateescape"))
        return self.dir_id(key)
