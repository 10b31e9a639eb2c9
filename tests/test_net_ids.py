"""Directory and object ids on the wire, with the real kernel and real ``fsnorm serve`` / ``subscribe`` processes.

What a subscriber must see (docs/wire-protocol.md, "Object and directory ids"): a directory keeps its id when
it is renamed; different directories have different ids; no id is a kernel handle (or contains one); a restarted
server (new epoch) gives other ids; and under fanotify a directory's object id is its id as a directory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from netproc import Server, Subscriber

from normalizer.net.ids import ID_BYTES, IdMinter


def _fanotify_missing() -> str | None:
    from normalizer.backends.fanotify import unavailable_reason

    return unavailable_reason()


BACKENDS = [
    pytest.param("inotify", id="inotify"),
    pytest.param("fanotify", id="fanotify",
                 marks=pytest.mark.skipif(_fanotify_missing() is not None, reason=str(_fanotify_missing()))),
]


def _raw_fid(path: Path) -> bytes:
    """The kernel's name for ``path`` as fanotify reports it (fsid + handle type + f_handle)."""
    from normalizer.backends._fanotify_sys import fsid_of, name_to_handle_at
    from normalizer.core.raw import fid_pack

    handle_type, handle, _ = name_to_handle_at(-100, os.fsencode(path))  # AT_FDCWD
    return fid_pack(fsid_of(os.fsencode(path)), handle_type, handle)


def _records(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [f for f in frames if f["frame"] == "RECORD"]


def _one(recs: list[dict[str, Any]], kind: str, path: str) -> dict[str, Any]:
    found = [r for r in recs if r["kind"] == kind and r["a"] is not None and r["a"]["path"] == path]
    assert len(found) == 1, (kind, path, recs)
    return found[0]


def _serve_and_run(tree: Path, backend: str) -> tuple[list[dict[str, Any]], int]:
    """Serve ``tree/data`` (holding d1 and d2), subscribe with ``--frames``, run the renames; the frames."""
    data = tree / "data"
    srv = Server(tree / "s.sock", [str(data)], "--backend", backend)
    try:
        sub = Subscriber(srv.addr, "--frames", "--events", "create,rename")
        seen = 2  # WELCOME, SUBSCRIBED

        def step(records: int) -> None:  # each step's records are in before the next renames a directory
            nonlocal seen
            seen += records
            sub.wait_lines(seen)

        (data / "d1" / "a").touch()
        step(1)
        os.rename(data / "d1", data / "e1")                  # d1 renamed: its id must not change
        step(1)
        (data / "e1" / "b").touch()
        (data / "d2" / "c").touch()
        os.rename(data / "e1" / "b", data / "d2" / "b")      # across directories: two different ids
        step(3)
        (data / "e1" / "sub").mkdir()
        step(1)
        (data / "e1" / "sub" / "x").touch()
        step(1)
        os.rename(data / "e1", data / "d2" / "e1")           # moved below another directory: same id still
        step(1)
        (data / "d2" / "e1" / "f").touch()
        step(1)
    finally:
        srv.stop()
    assert sub.finish() == 0
    return sub.records(), srv.epoch


def _tree(base: Path) -> Path:
    (base / "data" / "d1").mkdir(parents=True)
    (base / "data" / "d2").mkdir()
    return base / "data"


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_directory_keeps_its_id_across_renames_and_ids_are_opaque(tmp_path: Path, backend: str) -> None:
    data = _tree(tmp_path)
    raw = {p: _raw_fid(data / p) for p in ("", "d1", "d2")} if backend == "fanotify" else {}
    frames, _ = _serve_and_run(tmp_path, backend)
    recs = _records(frames)
    d1 = _one(recs, "create", "data/d1/a")["a"]["dir_id"]
    d2 = _one(recs, "create", "data/d2/c")["a"]["dir_id"]
    moved = _one(recs, "rename", "data/d1")
    root_id = moved["a"]["dir_id"]
    assert moved["b"]["path"] == "data/e1" and moved["b"]["dir_id"] == root_id
    assert _one(recs, "create", "data/e1/b")["a"]["dir_id"] == d1, "the directory's id changed with its rename"
    across = _one(recs, "rename", "data/e1/b")
    assert (across["a"]["dir_id"], across["b"]["path"], across["b"]["dir_id"]) == (d1, "data/d2/b", d2)
    below = _one(recs, "rename", "data/e1")
    assert (below["a"]["dir_id"], below["b"]["dir_id"]) == (root_id, d2)
    assert _one(recs, "create", "data/d2/e1/f")["a"]["dir_id"] == d1
    sub_id = _one(recs, "create", "data/e1/sub/x")["a"]["dir_id"]
    assert len({d1, d2, root_id, sub_id}) == 4, "different directories share an id"
    ids = {bytes.fromhex(h) for r in recs for h in
           [r["object_id"], *(side["dir_id"] for side in (r["a"], r["b"]) if side is not None)] if h}
    assert ids and all(len(i) == ID_BYTES for i in ids)
    for fid in raw.values():  # never the kernel's handle, nor its f_handle bytes inside an id
        assert all(fid not in i and fid[-8:] not in i for i in ids)
    if backend == "fanotify":
        # A directory's object id is its id as a directory: the create of data/e1/sub names the sub's children.
        sub_create = _one(recs, "create", "data/e1/sub")
        assert sub_create["object_id"] == sub_id and sub_create["is_dir"]
        assert all(r["object_id"] for r in recs)
    else:
        assert all(r["object_id"] == "" for r in recs)  # inotify knows no object identity


def test_a_new_epoch_gives_other_ids(tmp_path: Path) -> None:
    """Two server runs over two equal trees: the watch descriptors are the same numbers, the ids are not (each
    run draws its own secret), so an id of another epoch never names anything here."""
    _tree(tmp_path / "one")
    _tree(tmp_path / "two")
    first, epoch1 = _serve_and_run(tmp_path / "one", "inotify")
    second, epoch2 = _serve_and_run(tmp_path / "two", "inotify")
    assert epoch1 != epoch2
    a1 = _one(_records(first), "create", "data/d1/a")["a"]["dir_id"]
    a2 = _one(_records(second), "create", "data/d1/a")["a"]["dir_id"]
    assert a1 and a2 and a1 != a2


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.integers(min_value=-1, max_value=2**31), st.binary(min_size=1, max_size=140)),
                min_size=1, max_size=30, unique=True))
def test_ids_are_a_function_of_the_key_and_the_secret(keys: list[int | bytes]) -> None:
    """Equal keys give equal ids, distinct keys distinct ids (wds and handles never collide, even b"\\x05" and
    5), another secret other ids; the cache (cleared at its bound) changes nothing."""
    a, b = IdMinter(b"k" * 32), IdMinter(b"j" * 32)
    ids = [a.dir_id(k) for k in keys]
    assert len(set(ids)) == len(keys) and all(len(i) == ID_BYTES for i in ids)
    assert [a.dir_id(k) for k in keys] == ids == [IdMinter(b"k" * 32).dir_id(k) for k in keys]
    assert not set(ids) & {b.dir_id(k) for k in keys}
    handles = [k for k in keys if isinstance(k, bytes)]
    assert [a.object_id(h.hex()) for h in handles] == [a.dir_id(h) for h in handles]
    assert a.dir_id(None) == a.object_id(None) == a.object_id("") == b""
    assert len(a.object_id("not hex")) == ID_BYTES
