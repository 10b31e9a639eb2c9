"""The fanotify normalizer without the kernel: synthetic events in, exact records out.

Covers FAN_RENAME records (both sides, one side, a side outside the tree), the MOVED_* duplicates, merged masks
in their canonical order, overflow, the windowed join by child handle without FAN_RENAME, unresolvable
handles, the directory cache's upkeep, the fast parser against the checked one, and the capture format of
fanotify items. tests/test_live_fanotify.py runs the same rules against real renames.
"""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from normalizer.backends import _fanotify_sys as fs
from normalizer.backends.fanotify import from_fan_event, parse_batch
from normalizer.capture.log import CaptureHeader, CaptureReader, CaptureWriter, fan_event_from_json, fan_event_to_json
from normalizer.capture.replay import replay
from normalizer.core import raw
from normalizer.core.actions import Resolve, Unwatch, WakeAt, Watch
from normalizer.core.fanotify import MERGE_ORDER, FanotifyNormalizer, FanRec
from normalizer.core.filters import PathFilter
from normalizer.formats.jsonl import rec_to_json
from normalizer.records import Flag, Rec, model_to_json, to_model

MS = 1_000_000
FSID = b"FSIDfsid"
RENAME, CREATE, DELETE = fs.FAN_RENAME, fs.FAN_CREATE, fs.FAN_DELETE
FROM, TO, ONDIR = fs.FAN_MOVED_FROM, fs.FAN_MOVED_TO, fs.FAN_ONDIR
MODIFY, ATTRIB, CLOSE_WRITE = fs.FAN_MODIFY, fs.FAN_ATTRIB, fs.FAN_CLOSE_WRITE
MOVE_SELF, DELETE_SELF = fs.FAN_MOVE_SELF, fs.FAN_DELETE_SELF


def fid(n: int) -> bytes:
    """The handle of inode ``n`` (8 bytes, type 1, as ext4 encodes it)."""
    return raw.fid_pack(FSID, 1, n.to_bytes(8, "little"))


# Directory handles of the tree /w (a, b, a/d, a/d/e), one outside it, and some file handles.
W, A, B, D, E, OUT = fid(1), fid(2), fid(3), fid(4), fid(5), fid(99)
X, Y, Z = fid(100), fid(101), fid(102)
TREE = [(W, b"/w"), (A, b"/w/a"), (B, b"/w/b"), (D, b"/w/a/d"), (E, b"/w/a/d/e")]


def resolved(key: bytes, path: bytes | None, status: str = "ok") -> raw.HandleResolved:
    fsid, handle_type, handle = raw.fid_unpack(key)
    return raw.HandleResolved(0, fsid, handle_type, handle, path, status)


def norm(cls: type[FanotifyNormalizer] = FanotifyNormalizer, **options: object) -> FanotifyNormalizer:
    n = cls(**options)  # type: ignore[arg-type]
    for key, path in TREE:
        assert n.feed(resolved(key, path)) == []
    return n


def ev(mask: int, d: bytes | None = None, name: bytes = b"", obj: bytes | None = None, pid: int = 42,
       d2: bytes | None = None, name2: bytes = b"") -> raw.FanotifyEvent:
    return (mask, pid, d, name, d2, name2, obj, ())


def ren(d: bytes | None, name: bytes, d2: bytes | None, name2: bytes, obj: bytes, is_dir: bool = False,
        pid: int = 42) -> raw.FanotifyEvent:
    return ev(RENAME | (ONDIR if is_dir else 0), d, name, obj, pid, d2, name2)


def batch(t_ms: float, *events: raw.FanotifyEvent, drained: bool = True) -> raw.FanotifyBatch:
    return raw.FanotifyBatch(int(t_ms * MS), drained, list(events))


def brief(recs: list[Rec]) -> list[tuple[object, ...]]:
    out: list[tuple[object, ...]] = []
    for r in recs:
        if r.kind == "rename":
            out.append(("rename", r.path, r.dst, [str(f) for f in r.flags]))
        else:
            out.append((r.kind, r.path, [str(f) for f in r.flags]))
    return out


# --- FAN_RENAME ---------------------------------------------------------------------------------------------


def test_fan_rename_is_one_record_with_pid_handle_and_no_cookie() -> None:
    n = norm()
    out = n.feed(batch(0, ren(A, b"x", A, b"y", X, pid=7), ren(A, b"y", B, b"z", X, pid=8)))
    assert brief(out) == [("rename", b"/w/a/x", b"/w/a/y", []), ("rename", b"/w/a/y", b"/w/b/z", [])]
    first = out[0]
    assert (first.source, first.pid, first.object_id, first.cookie, first.mask) == ("fanotify", 7, X.hex(), None,
                                                                                    RENAME)
    assert out[1].pid == 8
    # The fast JSON writer and the public model agree on every fanotify field.
    assert rec_to_json(first) == model_to_json(to_model(first))
    line = json.loads(rec_to_json(first))
    assert (line["source"], line["pid"], line["object_id"], line["cookie"]) == ("fanotify", 7, X.hex(), None)
    assert n.matcher.pending == 0 and n.matcher.next_deadline() is None


def test_omitted_side_is_unwatched_at_once() -> None:
    n = norm()
    out = n.feed(batch(0, ren(A, b"x", None, b"", X), ren(None, b"", B, b"y", Y), drained=False))
    assert brief(out) == [("rename", b"/w/a/x", b"", ["unwatched"]), ("rename", b"", b"/w/b/y", ["unwatched"])]


def test_side_outside_the_tree_is_unwatched_and_entirely_outside_is_nothing() -> None:
    n = norm(mark_mode="filesystem")
    n.feed(resolved(OUT, None, "outside"))
    out = n.feed(batch(0, ren(A, b"x", OUT, b"x", X), ren(OUT, b"y", B, b"y", Y), ren(OUT, b"p", OUT, b"q", Z)))
    assert brief(out) == [("rename", b"/w/a/x", b"", ["unwatched"]), ("rename", b"", b"/w/b/y", ["unwatched"])]
    assert n.stats["dropped_outside"] == 1  # events dropped: the rename from OUT to OUT


def test_moved_from_and_moved_to_never_duplicate_a_fan_rename() -> None:
    n = norm()
    out = n.feed(batch(0, ren(A, b"x", B, b"y", X), ev(FROM, A, b"x", X), ev(TO, B, b"y", X),
                       ren(A, b"d", B, b"d", Y, is_dir=True), ev(FROM | ONDIR, A, b"d", Y), ev(TO | ONDIR, B, b"d", Y),
                       ev(FROM | TO | CREATE, A, b"m", Z)))
    assert brief(out) == [("rename", b"/w/a/x", b"/w/b/y", []), ("rename", b"/w/a/d", b"/w/b/d", []),
                          ("create", b"/w/a/m", ["merged"])]
    assert n.stats["dropped_moves"] == 6
    assert n.matcher.pending == 0


def test_rename_chain_and_exchange_are_separate_records() -> None:
    n = norm()
    out = n.feed(batch(0, ren(A, b"a", A, b"b", X), ren(A, b"b", B, b"c", X), ren(B, b"c", A, b"d", X),
                       ren(A, b"p", B, b"q", Y), ren(B, b"q", A, b"p", Z)))
    assert [(r.path, r.dst, r.object_id) for r in out] == [
        (b"/w/a/a", b"/w/a/b", X.hex()), (b"/w/a/b", b"/w/b/c", X.hex()), (b"/w/b/c", b"/w/a/d", X.hex()),
        (b"/w/a/p", b"/w/b/q", Y.hex()), (b"/w/b/q", b"/w/a/p", Z.hex())]


# --- merged masks --------------------------------------------------------------------------------------------


def test_merged_mask_gives_one_record_per_bit_in_canonical_order_all_flagged() -> None:
    n = norm()
    burst = DELETE | CLOSE_WRITE | MODIFY | CREATE  # create, write, close, unlink with no read in between
    out = n.feed(batch(0, ev(CREATE, A, b"before", X), ev(burst, A, b"f", Y), ev(CREATE, A, b"after", Z)))
    assert brief(out) == [
        ("create", b"/w/a/before", []),
        ("create", b"/w/a/f", ["merged"]),
        ("modify", b"/w/a/f", ["merged"]),
        ("close_write", b"/w/a/f", ["merged"]),
        ("delete", b"/w/a/f", ["merged"]),
        ("create", b"/w/a/after", []),
    ]
    assert [r.mask for r in out[1:5]] == [burst] * 4  # each carries the whole raw mask
    assert {r.object_id for r in out[1:5]} == {Y.hex()}
    assert n.stats["merged_events"] == 1


def test_merge_of_create_move_away_move_back_delete() -> None:
    # What the kernel delivers for: create m; mv m out/; mv out/m m; rm m (inode mark on a; observed on 6.18).
    # The delete, merged into the create, happened after the file came back: it comes after the renames
    # (before the fix it came before them, and the consumer kept an m that is gone).
    n = norm()
    out = n.feed(batch(0, ev(FROM | TO | CREATE | DELETE | CLOSE_WRITE, A, b"m", X), ren(A, b"m", None, b"", X),
                       ren(None, b"", A, b"m", X)))
    assert brief(out) == [
        ("create", b"/w/a/m", ["merged"]),
        ("close_write", b"/w/a/m", ["merged"]),
        ("rename", b"/w/a/m", b"", ["unwatched"]),
        ("rename", b"", b"/w/a/m", ["unwatched"]),
        ("delete", b"/w/a/m", ["merged"]),
    ]


def test_merged_directory_self_events() -> None:
    n = norm()
    out = n.feed(batch(0, ev(ATTRIB | DELETE_SELF | ONDIR, D, b"."), ev(DELETE | ONDIR, A, b"d", D)))
    assert brief(out) == [("attrib", b"/w/a/d", ["merged"]), ("delete_self", b"/w/a/d", ["merged"]),
                          ("watch_end", b"/w/a/d", []), ("delete", b"/w/a/d", [])]
    assert all(r.is_dir for r in out)
    assert D not in n.cache


def test_canonical_order_is_documented_and_complete() -> None:
    kinds = {fs.FAN_CREATE: "create", fs.FAN_MOVED_TO: "moved_to", fs.FAN_RENAME: "rename", fs.FAN_OPEN: "open",
             fs.FAN_ACCESS: "access", fs.FAN_MODIFY: "modify", fs.FAN_ATTRIB: "attrib",
             fs.FAN_CLOSE_NOWRITE: "close_nowrite", fs.FAN_CLOSE_WRITE: "close_write",
             fs.FAN_MOVED_FROM: "moved_from", fs.FAN_DELETE: "delete", fs.FAN_MOVE_SELF: "move_self",
             fs.FAN_DELETE_SELF: "delete_self"}
    order = ", ".join(kinds[bit] for bit in MERGE_ORDER)
    import ast

    import normalizer.core

    # From the source: the compiled module (mypyc, setup.py) has no docstring.
    source = (Path(normalizer.core.__file__).parent / "fanotify.py").read_text()
    assert order in " ".join((ast.get_docstring(ast.parse(source)) or "").split())


def test_all_known_bits_at_once() -> None:
    n = norm()
    mask = CREATE | fs.FAN_OPEN | fs.FAN_ACCESS | MODIFY | ATTRIB | fs.FAN_CLOSE_NOWRITE | CLOSE_WRITE | DELETE
    out = n.feed(batch(0, ev(mask, A, b"f", X)))
    assert [r.kind for r in out] == ["create", "open", "access", "modify", "attrib", "close_nowrite",
                                     "close_write", "delete"]
    assert all(r.flags == ("merged",) for r in out)


# --- overflow, unknown bits, events without a directory -------------------------------------------------------


def test_overflow_gives_the_overflow_record_in_place() -> None:
    n = norm()
    out = n.feed(batch(0, ren(A, b"x", A, b"y", X), ev(fs.FAN_Q_OVERFLOW, pid=0), ren(A, b"y", A, b"z", X)))
    assert brief(out) == [("rename", b"/w/a/x", b"/w/a/y", []), ("overflow", b"", []),
                          ("rename", b"/w/a/y", b"/w/a/z", [])]
    assert out[1].source == "fanotify" and out[1].mask == fs.FAN_Q_OVERFLOW


def test_unknown_bits_are_kept_in_an_unknown_record() -> None:
    n = norm()
    out = n.feed(batch(0, ev(CREATE | 0x100000000, A, b"f", X), ev(0, A, b"g", Y)))
    assert brief(out) == [("create", b"/w/a/f", []), ("unknown", b"/w/a/f", ["unknown_mask"]),
                          ("unknown", b"/w/a/g", [])]
    assert out[1].mask == CREATE | 0x100000000 and "0x100000000" in (out[1].message or "")


def test_a_files_own_events_without_directory_are_dropped() -> None:
    # Filesystem mark: a renamed file's MOVE_SELF, an unlinked file's link-count ATTRIB and DELETE_SELF.
    n = norm(mark_mode="filesystem")
    out = n.feed(batch(0, ren(A, b"x", A, b"y", X), ev(MOVE_SELF, obj=X), ev(ATTRIB | DELETE_SELF, obj=Y)))
    assert brief(out) == [("rename", b"/w/a/x", b"/w/a/y", [])]
    assert n.stats["dropped_self"] == 2


# --- without FAN_RENAME: the windowed join by child handle ----------------------------------------------------


def test_without_fan_rename_halves_join_by_child_handle() -> None:
    n = norm(use_rename=False)
    out = n.feed(batch(0, ev(FROM, A, b"x", X, pid=5), ev(CREATE, B, b"noise", Z), ev(TO, B, b"y", X, pid=5)))
    # The joined rename takes the first half's place; the create waited behind it (strict order).
    assert brief(out) == [("rename", b"/w/a/x", b"/w/b/y", []), ("create", b"/w/b/noise", [])]
    rec = out[0]
    assert (rec.source, rec.pid, rec.object_id, rec.cookie, rec.mask) == ("fanotify", 5, X.hex(), None, FROM | TO)
    assert rec_to_json(rec) == model_to_json(to_model(rec))


def test_without_fan_rename_halves_across_reads_and_different_objects() -> None:
    n = norm(use_rename=False)
    assert n.feed(batch(0, ev(FROM, A, b"x", X), ev(FROM, A, b"p", Y), drained=False)) == []
    out = n.feed(batch(1, ev(TO, B, b"q", Y), ev(TO, B, b"y", X)))
    # X's record keeps its place (first), although Y's second half came first.
    assert brief(out) == [("rename", b"/w/a/x", b"/w/b/y", []), ("rename", b"/w/a/p", b"/w/b/q", [])]


def test_without_fan_rename_lone_halves_follow_the_window_rules() -> None:
    n = norm(use_rename=False, window_ns=20 * MS, max_wait_ns=100 * MS)
    assert n.feed(batch(0, ev(FROM, A, b"x", X), drained=True)) == []
    assert n.feed(raw.Tick(19 * MS)) == []
    assert n.matcher.next_deadline() == 20 * MS
    out = n.feed(raw.Tick(20 * MS))
    assert brief(out) == [("rename", b"/w/a/x", b"", ["timeout"])]
    assert out[0].source == "fanotify" and out[0].object_id == X.hex()
    # While the queue never drains, only max_wait ends the wait.
    n.feed(batch(30, ev(FROM, A, b"y", Y), drained=False))
    assert n.feed(batch(80, ev(CREATE, A, b"c", Z), drained=False)) == []
    out = n.feed(batch(130, ev(CREATE, A, b"d", Z), drained=False))
    assert brief(out) == [("rename", b"/w/a/y", b"", ["timeout"]), ("create", b"/w/a/c", []),
                          ("create", b"/w/a/d", [])]
    # A lone second half is one-sided at once, with its fanotify fields.
    out = n.feed(batch(200, ev(TO, B, b"in", Z, pid=9)))
    assert brief(out) == [("rename", b"", b"/w/b/in", ["unwatched"])]
    assert (out[0].source, out[0].pid, out[0].object_id) == ("fanotify", 9, Z.hex())
    assert rec_to_json(out[0]) == model_to_json(to_model(out[0]))


def test_without_fan_rename_overflow_makes_waiting_halves_one_sided() -> None:
    n = norm(use_rename=False)
    out = n.feed(batch(0, ev(FROM, A, b"x", X), ev(fs.FAN_Q_OVERFLOW), ev(TO, B, b"y", Y), drained=False))
    assert brief(out) == [("rename", b"/w/a/x", b"", ["overflow"]), ("overflow", b"", []),
                          ("rename", b"", b"/w/b/y", ["unwatched", "after_overflow"])]


def test_without_fan_rename_merged_halves_keep_flag_order() -> None:
    n = norm(use_rename=False)
    out = n.feed(batch(0, ev(FROM | TO | CREATE, A, b"m", X)))
    out += n.feed(raw.Tick(100 * MS))
    assert brief(out) == [("create", b"/w/a/m", ["merged"]), ("rename", b"", b"/w/a/m", ["unwatched", "merged"]),
                          ("rename", b"/w/a/m", b"", ["timeout", "merged"])]


def test_without_fan_rename_directory_move_out_is_one_sided_at_move_self() -> None:
    n = norm(use_rename=False)
    out = n.feed(batch(0, ev(FROM | ONDIR, A, b"d", D), ev(MOVE_SELF | ONDIR, D, b"."),
                       ev(CREATE, E, b"late", X), drained=False))
    assert brief(out) == [("rename", b"/w/a/d", b"", ["unwatched"])]
    assert sorted(out.actions, key=repr) == sorted([Unwatch(D), Unwatch(E)], key=repr)
    assert n.cache.paths() == [b"/w", b"/w/a", b"/w/b"]


def test_without_fan_rename_directory_rename_moves_the_cache() -> None:
    n = norm(use_rename=False)
    out = n.feed(batch(0, ev(FROM | ONDIR, A, b"d", D), ev(TO | ONDIR, B, b"n", D), ev(MOVE_SELF | ONDIR, D, b"."),
                       ev(CREATE, E, b"f", X)))
    assert brief(out) == [("rename", b"/w/a/d", b"/w/b/n", []), ("move_self", b"/w/b/n", []),
                          ("create", b"/w/b/n/e/f", [])]


def test_without_fan_rename_filesystem_mark_move_out_is_one_sided_at_its_moved_to() -> None:
    n = norm(use_rename=False, mark_mode="filesystem")
    n.feed(resolved(OUT, None, "outside"))
    out = n.feed(batch(0, ev(FROM, A, b"x", X), ev(TO, OUT, b"x", X), ev(FROM, OUT, b"y", Y), ev(TO, B, b"y", Y),
                       drained=False))
    assert brief(out) == [("rename", b"/w/a/x", b"", ["unwatched"]), ("rename", b"", b"/w/b/y", ["unwatched"])]


def test_fan_rename_ignored_when_not_used() -> None:
    n = norm(use_rename=False)
    out = n.feed(batch(0, ren(A, b"x", B, b"y", X), ev(FROM, A, b"x", X), ev(TO, B, b"y", X)))
    assert brief(out) == [("rename", b"/w/a/x", b"/w/b/y", [])]
    assert n.stats["dropped_renames"] == 1


# --- unresolvable handles -------------------------------------------------------------------------------------


def test_unresolvable_directory_gives_an_unresolved_record_not_a_crash() -> None:
    gone, never = fid(50), fid(51)
    n = norm()
    n.feed(resolved(gone, None, "stale"))
    out = n.feed(batch(0, ev(CREATE, gone, b"f", X), ren(gone, b"a", B, b"b", Y), ren(A, b"c", never, b"d", Z),
                       ev(MODIFY | CLOSE_WRITE, never, b"g", X)))
    assert out == [] and out.actions == (Resolve(never),)  # held until answered
    out = n.close()  # never answered (a capture cut short): processed with what is known
    assert brief(out) == [
        ("create", b"f", ["unresolved"]),
        ("rename", b"", b"/w/b/b", ["unresolved"]),
        ("rename", b"/w/a/c", b"", ["unresolved"]),
        ("modify", b"g", ["merged", "unresolved"]),
        ("close_write", b"g", ["merged", "unresolved"]),
    ]
    assert gone.hex() in (out[0].message or "") and "stale" in (out[0].message or "")
    assert gone.hex() in (out[1].message or "") and "b'a'" in (out[1].message or "")
    assert never.hex() in (out[2].message or "") and "never resolved" in (out[2].message or "")
    assert out[0].object_id == X.hex()
    assert n.stats["unresolved_records"] == 5
    for r in out:
        assert rec_to_json(r) == model_to_json(to_model(r))


def test_unresolvable_directory_under_a_filesystem_mark_is_dropped_and_counted() -> None:
    gone = fid(50)
    n = norm(mark_mode="filesystem")
    n.feed(resolved(gone, None, "stale"))
    out = n.feed(batch(0, ev(CREATE, gone, b"f", X), ren(gone, b"a", fid(51), b"b", Y)))
    assert out == [] and out.actions == (Resolve(fid(51)),)
    assert n.feed(resolved(fid(51), None, "stale")) == []
    assert n.stats["dropped_unresolved"] == 2


def test_needed_handles_lists_unknown_directories_once_in_order() -> None:
    n = norm()
    new, unknown1, unknown2 = fid(60), fid(61), fid(62)
    n.feed(resolved(OUT, None, "outside"))
    events = [ev(CREATE, A, b"x", X), ev(CREATE, unknown1, b"x", X), ren(unknown2, b"a", unknown1, b"b", Y),
              ev(CREATE | ONDIR, A, b"new", new), ev(CREATE, new, b"f", Z), ev(CREATE, OUT, b"o", Z)]
    assert n.needed_handles(events) == [unknown1, unknown2]


def test_resolved_handle_outside_or_excluded_is_outside() -> None:
    n = norm(mark_mode="filesystem", path_filter=PathFilter(exclude=["cache"]))
    cache_dir = fid(70)
    n.feed(resolved(cache_dir, b"/w/a/cache"))
    assert n.feed(batch(0, ev(CREATE, cache_dir, b"f", X))) == []
    assert n.needed_handles([ev(CREATE, cache_dir, b"f", X)]) == []
    assert n.stats["dropped_outside"] == 1


# --- the directory cache ----------------------------------------------------------------------------------------


def test_directory_rename_rewrites_every_path_below_it() -> None:
    n = norm()
    out = n.feed(batch(0, ren(A, b"d", B, b"n", D, is_dir=True), ev(MOVE_SELF | ONDIR, D, b"."),
                       ev(CREATE, E, b"f", X)))
    assert brief(out) == [("rename", b"/w/a/d", b"/w/b/n", []), ("move_self", b"/w/b/n", []),
                          ("create", b"/w/b/n/e/f", [])]
    assert out[0].is_dir and out[1].object_id == D.hex()
    assert n.cache.items() == [(W, b"/w"), (A, b"/w/a"), (B, b"/w/b"), (D, b"/w/b/n"), (E, b"/w/b/n/e")]
    assert out.actions == ()


def test_directory_moved_out_retires_its_subtree() -> None:
    n = norm()
    out = n.feed(batch(0, ren(A, b"d", None, b"", D, is_dir=True), ev(MOVE_SELF | ONDIR, D, b"."),
                       ev(CREATE, E, b"late", X)))
    assert brief(out) == [("rename", b"/w/a/d", b"", ["unwatched"])]
    assert sorted(out.actions, key=repr) == sorted([Unwatch(D), Unwatch(E)], key=repr)
    assert n.feed(batch(1, ev(CREATE, A, b"g", Y))).actions == ()  # asked once
    assert n.stats["dropped_outside"] == 2


def test_directory_moved_in_or_created_is_reported_for_marking_at_its_current_path() -> None:
    n = norm()
    new, moved = fid(80), fid(81)
    out = n.feed(batch(0, ev(CREATE | ONDIR, D, b"new", new), ren(None, b"", B, b"in", moved, is_dir=True),
                       ev(CREATE, new, b"f", X), ren(A, b"d", A, b"d2", D, is_dir=True)))
    assert brief(out) == [("create", b"/w/a/d/new", []), ("rename", b"", b"/w/b/in", ["unwatched"]),
                          ("create", b"/w/a/d/new/f", []), ("rename", b"/w/a/d", b"/w/a/d2", [])]
    # "new" was created in /w/a/d, which was renamed later in the same read.
    assert out.actions == (Watch(b"/w/a/d2/new", False), Watch(b"/w/b/in", True))
    assert n.feed(batch(1, ev(CREATE, A, b"g", Y))).actions == ()  # asked once


def test_root_moved_away_ends_its_watches() -> None:
    n = norm()
    out = n.feed(batch(0, ev(MOVE_SELF | ONDIR, W, b"."), ev(CREATE, A, b"late", X)))
    assert brief(out) == [("move_self", b"/w", []), ("watch_end", b"/w", [])]
    assert len(n.cache) == 0 and "root moved" in (out[1].message or "")


def test_filesystem_mark_drops_the_move_self_of_a_directory_that_came_in() -> None:
    n = norm(mark_mode="filesystem")
    moved = fid(81)
    n.feed(resolved(OUT, None, "outside"))
    out = n.feed(batch(0, ren(OUT, b"pkg", B, b"pkg", moved, is_dir=True), ev(MOVE_SELF | ONDIR, moved, b"."),
                       ren(B, b"pkg", A, b"pkg", moved, is_dir=True), ev(MOVE_SELF | ONDIR, moved, b".")))
    assert brief(out) == [("rename", b"", b"/w/b/pkg", ["unwatched"]), ("rename", b"/w/b/pkg", b"/w/a/pkg", []),
                          ("move_self", b"/w/a/pkg", [])]


def test_synthesized_creates_and_kernel_creates_are_not_reported_twice() -> None:
    n = norm()
    # Inode marks: the scan after the mark reported "f"; the kernel's CREATE comes in the next read: dropped.
    out = n.feed(raw.SourceNotice(1, "create", b"/w/a/f", False, ("synthesized",)))
    out += n.feed(batch(2, ev(CREATE, A, b"f", X), ev(CREATE, A, b"g", Y)))
    assert brief(out) == [("create", b"/w/a/f", ["synthesized"]), ("create", b"/w/a/g", [])]
    assert out[0].source == "fanotify"
    # Filesystem mark, a directory moved in: what the kernel reports below it in the same read is dropped, the
    # scan after the read reports what it holds then (a rename there would name a src never reported).
    n = norm(mark_mode="filesystem")
    n.feed(resolved(OUT, None, "outside"))
    pkg = fid(90)
    out = n.feed(batch(3, ren(OUT, b"pkg", B, b"pkg", pkg, is_dir=True), ev(CREATE, pkg, b"h", X)))
    out += n.feed(raw.SourceNotice(4, "create", b"/w/b/pkg/h", False, ("synthesized",)))
    out += n.feed(raw.SourceNotice(4, "create", b"/w/b/pkg/old", False, ("synthesized",)))
    assert brief(out) == [("rename", b"", b"/w/b/pkg", ["unwatched"]), ("create", b"/w/b/pkg/h", ["synthesized"]),
                          ("create", b"/w/b/pkg/old", ["synthesized"])]


def test_filesystem_mark_what_happened_inside_a_directory_moved_in_is_told_by_its_scan() -> None:
    """Found by the oracle (tests/corpus/oracle/fanotify-*.json): in the read that brings a directory in, the
    filesystem mark already reports renames inside it, naming entries nobody was told about. Those are dropped
    (the scan after the read reports the result); a rename across its edge becomes one-sided; the two renames
    of a RENAME_EXCHANGE across the edge come out so that applying them in order gives the real tree."""
    n = norm(mark_mode="filesystem")
    n.feed(resolved(OUT, None, "outside"))
    pkg, one, f0 = fid(91), fid(92), fid(93)
    out = n.feed(batch(0, ren(OUT, b"pkg", B, b"pkg", pkg, is_dir=True),
                       ren(pkg, b"one", pkg, b"uno", one),      # inside: the scan tells it
                       ev(DELETE, pkg, b"two", X),              # inside: the scan tells it
                       ren(pkg, b"uno", A, b"f0", one),         # exchanged with /w/a/f0 ...
                       ren(A, b"f0", pkg, b"uno", f0)))         # ... whose half is told first
    assert brief(out) == [("rename", b"", b"/w/b/pkg", ["unwatched"]), ("rename", b"/w/a/f0", b"", ["unwatched"]),
                          ("rename", b"", b"/w/a/f0", ["unwatched"])]
    assert n.stats["dropped_fresh"] == 2
    assert out.actions == (Watch(b"/w/b/pkg", True),)
    # The next read: the directory is known now, its events are reported as usual.
    out = n.feed(batch(1, ren(pkg, b"uno", pkg, b"dos", f0)))
    assert brief(out) == [("rename", b"/w/b/pkg/uno", b"/w/b/pkg/dos", [])]


def test_json_of_every_kind_of_fanotify_record_matches_the_model() -> None:
    recs = [FanRec("create", b"/w/caf\xe9", False, 1, CREATE, pid=3, object_id="ab"),
            FanRec("rename", b"", True, 2, RENAME | ONDIR, b"/w/x", ("unwatched",), 4, "cd"),
            FanRec("overflow", b"", False, 3, fs.FAN_Q_OVERFLOW)]
    for r in recs:
        assert rec_to_json(r) == model_to_json(to_model(r))
        assert to_model(r).source == "fanotify"


# --- the parser ------------------------------------------------------------------------------------------------


def _fid_rec(info_type: int, key: bytes, name: bytes | None = None) -> bytes:
    body = key + (b"" if name is None else name + b"\0")
    body += b"\0" * (-(4 + len(body)) % 4)
    return struct.pack("=BBH", info_type, 0, 4 + len(body)) + body


def _event(mask: int, *recs: bytes, pid: int = 42) -> bytes:
    payload = b"".join(recs)
    return struct.pack("=IBBHQii", 24 + len(payload), 3, 0, 24, mask, -1, pid) + payload


SAMPLE = (
    _event(RENAME, _fid_rec(10, A, b"old\xff\n"), _fid_rec(12, B, b"new"), _fid_rec(1, X))
    + _event(CREATE | ONDIR, _fid_rec(1, Y), _fid_rec(2, A, b"d"))  # records in another order
    + _event(ATTRIB | ONDIR, _fid_rec(2, D, b"."))
    + _event(MOVE_SELF, _fid_rec(1, Z))
    + _event(RENAME, _fid_rec(12, B, b"in"), _fid_rec(1, X), pid=7)
    + _event(fs.FAN_Q_OVERFLOW, pid=0)
    + _event(CREATE, _fid_rec(3, A), struct.pack("=BBHi", 4, 0, 8, -1), _fid_rec(1, X))  # DFID + a PIDFD
)


def test_parser_places_records_by_type() -> None:
    events = parse_batch(SAMPLE)
    assert events == [
        (RENAME, 42, A, b"old\xff\n", B, b"new", X, ()),
        (CREATE | ONDIR, 42, A, b"d", None, b"", Y, ()),
        (ATTRIB | ONDIR, 42, D, b".", None, b"", None, ()),
        (MOVE_SELF, 42, None, b"", None, b"", Z, ()),
        (RENAME, 7, None, b"", B, b"in", X, ()),
        (fs.FAN_Q_OVERFLOW, 0, None, b"", None, b"", None, ()),
        (CREATE, 42, A, b"", None, b"", X, ((4, b"\xff\xff\xff\xff"),)),
    ]
    assert events == [from_fan_event(e) for e in fs.parse_events(SAMPLE)]


def test_parser_corrupt_buffer_raises_value_error_with_offset() -> None:
    for cut in range(1, len(SAMPLE)):
        try:
            events = parse_batch(SAMPLE[:cut])
        except ValueError as exc:
            assert str(exc).startswith("offset ")
        else:
            assert events == parse_batch(SAMPLE)[: len(events)]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.data())
def test_fast_parser_agrees_with_the_checked_parser(noise: bytes, data: st.DataObject) -> None:
    start = data.draw(st.integers(0, len(SAMPLE)))
    spliced = SAMPLE[:start] + noise[: data.draw(st.integers(0, 24))] + SAMPLE[start + 4:]
    for buf in (noise, spliced):
        try:
            checked = [from_fan_event(e) for e in fs.parse_events(buf)]
        except ValueError:
            with pytest.raises(ValueError, match=r"^offset "):
                parse_batch(buf)
        else:
            assert parse_batch(buf) == checked


# --- capture and replay of fanotify items -------------------------------------------------------------------------


def fan_items() -> list[raw.AnyStreamItem]:
    return [
        resolved(A, b"/w/a"),
        resolved(B, b"/w/caf\xe9"),
        resolved(OUT, None, "outside"),
        resolved(fid(50), None, "stale"),
        batch(1, ren(A, b"x", B, b"y\n", X, pid=5), ev(CREATE | MODIFY, A, b"\xff", Y),
              ev(fs.FAN_Q_OVERFLOW, pid=0), ren(None, b"", B, b"in", Z),
              (CREATE, 42, A, b"", None, b"", X, ((4, b"\xff\xff\xff\xff"),)),
              ev(ATTRIB | ONDIR, A, b"."), drained=False),
        raw.Tick(40 * MS),
        raw.SourceNotice(41 * MS, "create", b"/w/a/s", False, ("synthesized",), ""),
    ]


def test_fanotify_items_round_trip_through_a_capture(tmp_path: Path) -> None:
    path = tmp_path / "c.fsncap.gz"
    with CaptureWriter(path, CaptureHeader(source="fanotify", options={"mark_mode": "filesystem"})) as w:
        for item in fan_items():
            w.write(item)
    with CaptureReader(path, strict=True) as reader:
        assert reader.header.source == "fanotify" and reader.header.version == 3  # 2 adds F and H; 3: H after its batch
        assert list(reader) == fan_items()
    # Handles are hex strings: [type, fsid_hex, handle_type, handle_hex, name].
    encoded = fan_event_to_json(ren(A, b"x", B, b"y", X))
    fsid, htype, handle = raw.fid_unpack(A)
    assert encoded[2][0] == [10, fsid.hex(), htype, handle.hex(), "x"]
    assert encoded[2][2][0] == 1 and encoded[2][2][4] is None
    assert fan_event_from_json(json.loads(json.dumps(encoded))) == ren(A, b"x", B, b"y", X)


def test_replay_of_a_fanotify_capture_equals_direct_feeding(tmp_path: Path) -> None:
    path = tmp_path / "c.fsncap"
    options = {"mark_mode": "inode", "use_rename": True, "window_ns": 20 * MS}
    with CaptureWriter(path, CaptureHeader(source="fanotify", options=options)) as w:
        for item in fan_items():
            w.write(item)
    direct = FanotifyNormalizer(window_ns=20 * MS)
    expected = direct.feed_all(fan_items()) + direct.close()
    got = list(replay(path))
    assert [rec_to_json(r) for r in got] == [rec_to_json(r) for r in expected]
    assert [r.kind for r in got] == ["rename", "create", "modify", "overflow", "rename", "create", "attrib", "create"]
    assert got[0].path == b"/w/a/x" and got[0].dst == b"/w/caf\xe9/y\n"


def test_damaged_fanotify_lines_are_reported_and_the_rest_kept() -> None:
    header = json.dumps(CaptureHeader(source="fanotify").to_json()).encode() + b"\n"
    good = ["F", 1, 1, [fan_event_to_json(ev(CREATE, A, b"f", X))]]
    bad_event = ["F", 2, 1, [[CREATE, 42, [[2, "zz", 1, "00", "f"]]], fan_event_to_json(ev(CREATE, A, b"g", X)),
                             [CREATE | (1 << 40), 1, []]]]
    lines = [json.dumps(x).encode() + b"\n" for x in (good, bad_event, ["H", 3, "00", 1, "00", None, "weird"],
                                                       ["H", 4, A[:8].hex(), 1, "00", "/p", "stale"],
                                                       ["E", 5, "closed"])]
    with CaptureReader(io.BytesIO(header + b"".join(lines))) as reader:
        items = list(reader)
    assert [type(i).__name__ for i in items] == ["FanotifyBatch", "FanotifyBatch"]
    second = items[1]
    assert isinstance(second, raw.FanotifyBatch) and [e[3] for e in second.events] == [b"g", b""]
    messages = [i.message for i in reader.issues]
    assert "event 0 skipped" in messages[0] and "fsid" in messages[0]
    assert "unknown mask bits 0x10000000000" in messages[1]
    assert "unknown handle status 'weird'" in messages[2]
    assert "path exactly when its status is 'ok'" in messages[3]
    assert len(messages) == 4


# --- a directory renamed away and back before fsnorm read (#9 item 3) ----------------------------------------


def test_below_a_directory_renamed_back_nothing_is_guessed_and_a_rescan_is_asked() -> None:
    """a -> ab, a file renamed inside, ab -> a (back to a place it left: the kernel may have merged a later
    rename into the first one), then events below it: held back, never given a guessed or bare path; a
    rename out of it keeps its certain side. Placed again (resolved while the queue was empty), the
    directory moves to where it is, a ``rescan`` record names it and the feed asks for a Rescan."""
    from normalizer.core.actions import Rescan

    n = norm()
    out = n.feed(batch(0, ren(W, b"a", W, b"ab", A, True), ren(A, b"f", A, b"g", X),
                       ren(W, b"ab", W, b"a", A, True), ev(CREATE, A, b"h", Y), ev(DELETE, D, b"x", Z),
                       ren(A, b"g", B, b"g", X), drained=False))
    assert brief(out) == [("rename", b"/w/a", b"/w/ab", []), ("rename", b"/w/ab/f", b"/w/ab/g", []),
                          ("rename", b"/w/ab", b"/w/a", ["merged"]), ("rename", b"", b"/w/b/g", ["unwatched"])]
    assert n.stats["held_back"] == 3 and n.stats["unresolved_records"] == 0
    assert n.uncertain_dirs() == [A]
    out = n.feed(resolved(A, b"/w/ab"))  # where it really is: a later a -> ab vanished into the first
    assert brief(out) == [("rename", b"/w/a", b"/w/ab", ["merged", "synthesized"]),
                          ("rescan", b"/w/ab", ["synthesized"])]
    assert [a for a in out.actions if isinstance(a, Rescan)] == [Rescan(b"/w/ab", n._why_rescan)]
    assert n.cache.path(D) == b"/w/ab/d" and n.uncertain_dirs() == []
    assert brief(n.feed(batch(1, ev(CREATE, D, b"y", Y)))) == [("create", b"/w/ab/d/y", [])]  # exact again


def test_events_queued_before_the_read_that_preceded_a_late_answer_are_held_back_below_it() -> None:
    """tests/data/fanotify-away-noise.fsncap.gz by hand. a -> ab, ab -> a (uncertain; the records end at
    /w/a); the read leaves 3 events queued: g -> h (in ab: a later a -> ab merged into the first one, which
    that read delivered), a create elsewhere, h -> i (in ab again). The answer (/w/ab) comes before they are
    read: they may precede the merged rename, so the answer's path is not theirs, and the rescan's listing,
    made after them, says what they did. Below the directory they are held back (the count spans reads); the
    create elsewhere is reported; the next event below it is exact again."""
    n = norm()
    out = n.feed(raw.FanotifyBatch(0, False, [ren(W, b"a", W, b"ab", A, True), ren(A, b"f", A, b"g", X),
                                              ren(W, b"ab", W, b"a", A, True)], 3))
    assert brief(out)[-1] == ("rename", b"/w/ab", b"/w/a", ["merged"]) and n.uncertain_dirs() == [A]
    out = n.feed(resolved(A, b"/w/ab"))
    assert brief(out) == [("rename", b"/w/a", b"/w/ab", ["merged", "synthesized"]),
                          ("rescan", b"/w/ab", ["synthesized"])]
    why = n._why_rescan
    for kind, path in (("delete", b"/w/ab/g"), ("create", b"/w/ab/i")):
        n.feed(raw.SourceNotice(1, kind, path, False, ("synthesized",), why))
    held = n.stats["held_back"]
    out = n.feed(raw.FanotifyBatch(2 * MS, False, [ren(A, b"g", A, b"h", X), ev(CREATE, W, b"end", Y)], 2))
    assert brief(out) == [("create", b"/w/end", [])]
    out = n.feed(raw.FanotifyBatch(3 * MS, False, [ren(A, b"h", A, b"i", X), ren(A, b"i", A, b"j", X)], 0))
    assert brief(out) == [("rename", b"/w/ab/i", b"/w/ab/j", [])]
    assert n.stats["held_back"] == held + 2 and n.uncertain_dirs() == []
    out = n.feed(batch(4, ren(A, b"j", A, b"k", X)))
    assert brief(out) == [("rename", b"/w/ab/j", b"/w/ab/k", [])]


def test_a_late_answer_after_a_read_that_emptied_the_queue_holds_nothing_back() -> None:
    """The same cycle, but the read left nothing queued (``backlog`` 0), or did not say (``None``: an answer is
    then taken for every event after it): the next events below the directory are reported at once."""
    for backlog in (0, None):
        n = norm()
        n.feed(raw.FanotifyBatch(0, backlog == 0, [ren(W, b"a", W, b"ab", A, True), ren(W, b"ab", W, b"a", A, True)],
                                 backlog))
        n.feed(resolved(A, b"/w/ab"))
        out = n.feed(raw.FanotifyBatch(2 * MS, False, [ren(A, b"f", A, b"g", X)], 5))
        assert brief(out) == [("rename", b"/w/ab/f", b"/w/ab/g", [])], backlog


def test_directories_exchanged_again_after_the_merge_window_of_the_last_exchange_stay_certain() -> None:
    """tests/test_truth.py's exchanged directories under a filesystem mark on a busy filesystem: a and b are
    exchanged, a file renamed in each, then (noise outside the tree in between: the queue is never seen empty)
    exchanged back. The kernel merges only into an unread event, so a rename the first exchange hid happened
    before the read that brought it, after the exchange back: the exchange back would be in that read or the
    backlog it left. Read after that window, it hides nothing: every record is exact, nothing is held back,
    nothing flagged ``merged``. (The window was "since the queue was seen empty": under noise that never
    closed, and every exchange back made both directories uncertain and held their renames back.) Read
    within the window, the same exchange back makes them uncertain, as before."""
    def run(backlog: int) -> tuple[list[tuple[object, ...]], FanotifyNormalizer]:
        n = norm(mark_mode="filesystem")
        n.feed(resolved(OUT, None, "outside"))
        exchange = [ren(W, b"a", W, b"b", A, True), ren(W, b"b", W, b"a", B, True)]
        noise = [ev(CREATE, OUT, b"n%d" % i, Y) for i in range(3)]
        out = n.feed(raw.FanotifyBatch(0, False, [*exchange, ren(A, b"f0", A, b"f1", X),
                                                  ren(B, b"g0", B, b"g1", Z)], backlog))
        out += n.feed(raw.FanotifyBatch(1 * MS, False, noise[:2], 2))
        back = [ren(W, b"a", W, b"b", B, True), ren(W, b"b", W, b"a", A, True)]
        out += n.feed(raw.FanotifyBatch(2 * MS, False, [noise[2], *back, ren(A, b"f1", A, b"f2", X),
                                                        ren(B, b"g1", B, b"g2", Z)], 1))
        return brief(out), n

    exact = [("rename", b"/w/a", b"/w/b", []), ("rename", b"/w/b", b"/w/a", []),
                    ("rename", b"/w/b/f0", b"/w/b/f1", []), ("rename", b"/w/a/g0", b"/w/a/g1", []),
                    ("rename", b"/w/a", b"/w/b", []), ("rename", b"/w/b", b"/w/a", []),
                    ("rename", b"/w/a/f1", b"/w/a/f2", []), ("rename", b"/w/b/g1", b"/w/b/g2", [])]
    # Positions: the first read 0-3, noise 4-6, the exchange back 7 (b's) and 8 (a's). The first read's
    # window ends at 4 + its backlog.
    for backlog in (2, 3):  # over before the exchange back
        recs, n = run(backlog)
        assert recs == exact and n.uncertain_dirs() == [] and n.stats["held_back"] == 0, backlog
    recs, n = run(5)  # the exchange back was queued before the first read: a repeat may hide in it
    assert recs[4:] == [("rename", b"/w/a", b"/w/b", ["merged"]), ("rename", b"/w/b", b"/w/a", ["merged"])]
    assert n.uncertain_dirs() == [B, A] and n.stats["held_back"] == 2


#: What a program of :func:`test_file_renames_below_a_directory_renamed_back_and_forth_name_its_true_place`
#: does: rename the directory to its other place and then the file in it (``step``, drawn most: the kernel
#: merges only a repeated move), rename the file alone, make noise outside the tree, or read (at most that
#: many events).
_AWAY_OPS = st.one_of(st.sampled_from(["step", "step", "step", "file", "noise"]), st.integers(1, 6))


class _Queue:
    """fanotify's queue as far as this test needs it: an event identical to an unread one (the same rename
    again, by the same process) merges into it and leaves no trace; a read takes the oldest events."""

    def __init__(self) -> None:
        self.events: list[raw.FanotifyEvent] = []

    def add(self, event: raw.FanotifyEvent) -> None:
        if event not in self.events:
            self.events.append(event)

    def read(self, t: int, most: int) -> raw.FanotifyBatch:
        got, self.events = self.events[:most], self.events[most:]
        return raw.FanotifyBatch(t, not self.events, got, len(self.events))


@settings(max_examples=300, deadline=None)
@given(st.lists(_AWAY_OPS, max_size=40))
def test_file_renames_below_a_directory_renamed_back_and_forth_name_its_true_place(ops: list[object]) -> None:
    """A directory renamed between two places (w0, w0b) again and again, a file renamed in it (a new name each
    time) after each move, noise outside the tree (filesystem mark), reads of any size in between. The kernel
    merges a rename into an identical unread one, so the stream hides moves. The source resolves an uncertain
    directory right after a read and feeds the answer at once if the queue is empty, else before the next read
    if none of the events queued meanwhile renames a directory (FanotifySource's rule before it also required
    that none touched the directory: a capture may hold such an answer, tests/data/fanotify-away-noise.fsncap.gz).
    Every file rename record read from the kernel names the directory's true place at that rename, or is held
    back: never the other place."""
    h, out_dir = fid(10), fid(11)
    n = FanotifyNormalizer(mark_mode="filesystem")
    for item in (resolved(W, b"/w"), resolved(h, b"/w/w0"), resolved(out_dir, None, "outside")):
        n.feed(item)
    queue = _Queue()
    at, files, noise, t = b"w0", 0, 0, 0
    truth: dict[bytes, bytes] = {}  # file name renamed from -> the directory's place then
    pending: tuple[raw.HandleResolved, int] | None = None
    recs: list[Rec] = []

    def read(most: int) -> None:
        nonlocal pending, t
        t += MS
        batch = queue.read(t, most)
        if pending is not None:
            answer, queued = pending
            pending = None
            ahead = batch.events[:queued]
            if len(ahead) >= queued and not any(e[0] & ONDIR and e[0] & RENAME for e in ahead):
                recs.extend(n.feed(answer))
        recs.extend(n.feed(batch))
        if n.uncertain_dirs():
            answer = resolved(h, b"/w/" + at)
            if queue.events:
                pending = (answer, len(queue.events))
            else:
                recs.extend(n.feed(answer))

    for op in ops:
        if op == "step":
            away = b"w0b" if at == b"w0" else b"w0"
            queue.add(ren(W, at, W, away, h, True))
            at = away
        if op in ("step", "file"):
            queue.add(ren(h, b"f%d" % files, h, b"f%d" % (files + 1), X))
            truth[b"f%d" % files] = at
            files += 1
        elif op == "noise":
            queue.add(ev(CREATE, out_dir, b"n%d" % noise, Y))
            noise += 1
        else:
            assert isinstance(op, int)
            read(op)
    while queue.events or pending is not None or n.uncertain_dirs():
        read(4)
    recs.extend(n.feed(raw.Tick(t + MS)))
    for r in recs:
        if r.kind == "rename" and not r.is_dir and Flag.SYNTHESIZED not in r.flags and r.path and r.dst:
            head, _, name = r.path.rpartition(b"/")
            assert head == b"/w/" + truth[name] and r.dst.rpartition(b"/")[0] == head, (r.path, r.dst, ops)
    assert n.cache.path(h) == b"/w/" + at


def test_an_uncertain_directory_placed_below_another_one_is_left_to_that_ones_rescan() -> None:
    """Corpus fanotify-2ec8fcccaddb by hand: d (in a) and a are both renamed away and back (uncertain); d is
    renamed inside a (held back: the records still have /w/a/d, the cache follows it to /w/a/x). d is placed
    first: it is below a, still uncertain, so it only moves in the cache; a rescan of /w/a/x would list entries
    under a directory the records never had. a's rescan covers it."""
    from normalizer.core.actions import Rescan

    n = norm()
    n.feed(batch(0, ren(A, b"d", A, b"dd", D, True), ren(A, b"dd", A, b"d", D, True),
                 ren(W, b"a", W, b"ab", A, True), ren(W, b"ab", W, b"a", A, True), ren(A, b"d", A, b"x", D, True),
                 drained=False))
    assert n.uncertain_dirs() == [D, A] and n.cache.path(D) == b"/w/a/x"
    out = n.feed(resolved(D, b"/w/a/x"))
    assert brief(out) == [] and not [a for a in out.actions if isinstance(a, Rescan)]
    assert n.uncertain_dirs() == [A] and n.cache.path(D) == b"/w/a/x"
    out = n.feed(resolved(A, b"/w/a"))
    assert brief(out) == [("rescan", b"/w/a", ["synthesized"])]
    assert [a for a in out.actions if isinstance(a, Rescan)] == [Rescan(b"/w/a", n._why_rescan)]


def test_an_event_naming_the_uncertain_directory_in_a_certain_one_says_where_it_was() -> None:
    n = norm()
    n.feed(batch(0, ren(W, b"a", W, b"ab", A, True), ren(W, b"ab", W, b"a", A, True), drained=False))
    out = n.feed(batch(1, ev(DELETE | ONDIR, W, b"ab", A), drained=False))  # rm -r of it, at ab
    assert brief(out) == [("rename", b"/w/a", b"/w/ab", ["merged", "synthesized"]), ("delete", b"/w/ab", [])]
    assert n.uncertain_dirs() == [] and A not in n.cache and D not in n.cache


def test_a_merged_delete_self_does_not_forget_a_directory_renamed_after_it() -> None:
    """The merged MOVE_SELF|DELETE_SELF stands where the MOVE_SELF happened; the directory was renamed again
    after that and deleted later: what is below it keeps following it (corpus fanotify-3f777dac3deb)."""
    n = norm()
    out = n.feed(batch(0, ren(A, b"d", A, b"d2", D, True), ev(MOVE_SELF | DELETE_SELF | ONDIR, D, b"."),
                       ren(A, b"d2", B, b"d3", D, True), ev(DELETE, E, b"f", X), ev(DELETE | ONDIR, B, b"d3", D)))
    assert [r for r in brief(out) if r[0] in ("rename", "delete")] == [
        ("rename", b"/w/a/d", b"/w/a/d2", []), ("rename", b"/w/a/d2", b"/w/b/d3", []),
        ("delete", b"/w/b/d3/e/f", []), ("delete", b"/w/b/d3", [])]
    assert D not in n.cache


def test_a_batch_naming_an_unknown_directory_asks_for_it_and_is_held_until_answered() -> None:
    """The core asks (``Resolve``) and holds the batch; the answer's feed returns its records. Answers fed
    before their batch (capture version 2) give the same records and ask nothing."""
    new, other = fid(80), fid(81)
    events = (ev(CREATE, new, b"f", X), ev(CREATE, A, b"x", Y), ren(other, b"a", new, b"b", Z))
    n = norm()
    out = n.feed(batch(0, *events))
    assert out == [] and out.actions == (Resolve(new), Resolve(other))
    assert n.feed(resolved(new, b"/w/a/new")) == []
    out = n.feed(resolved(other, b"/w/b/o"))
    after = brief(out)
    assert after == [("create", b"/w/a/new/f", []), ("create", b"/w/a/x", []),
                     ("rename", b"/w/b/o/a", b"/w/a/new/b", [])]
    n = norm()
    n.feed(resolved(new, b"/w/a/new"))
    n.feed(resolved(other, b"/w/b/o"))
    out = n.feed(batch(0, *events))
    assert brief(out) == after and not [a for a in out.actions if not isinstance(a, WakeAt)]
    n = norm()
    n.feed(batch(0, *events))
    out = n.feed(raw.Tick(MS))  # anything else first processes the held batch with what is known
    assert [r.kind for r in out] == ["create", "create", "rename"] and "unresolved" in out[0].flags


def test_events_queued_before_a_rescan_do_not_repeat_what_it_said() -> None:
    """A Rescan below an uncertain directory ran while events below it were still queued (the placement was
    confirmed late, on a busy filesystem mark): those events happened before its listing. A delete (or any
    event) of a path it reported deleted repeats it and is dropped; a create there is new; a rename from
    there keeps its destination only. Until the queue was seen empty."""
    n = norm()
    n.feed(batch(0, ren(W, b"a", W, b"ab", A, True), ren(W, b"ab", W, b"a", A, True), drained=False))
    n.feed(resolved(A, b"/w/a"))
    why = n._why_rescan
    for path in (b"/w/a/f", b"/w/a/g"):
        n.feed(raw.SourceNotice(1, "delete", path, False, ("synthesized",), why))
    out = n.feed(batch(2, ev(MODIFY, A, b"f", X), ev(DELETE, A, b"f", X), ren(A, b"g", B, b"g", Y),
                       ev(CREATE, A, b"f", Z), drained=False))
    assert brief(out) == [("rename", b"", b"/w/b/g", ["unwatched"]), ("create", b"/w/a/f", [])]
    assert n.stats["dropped_rescanned"] == 3
    out = n.feed(batch(3, ev(DELETE, A, b"f", Z)))  # after the create: reported; the queue was seen empty
    assert brief(out) == [("delete", b"/w/a/f", [])] and n._gone == set()


def test_an_overflow_while_a_directory_is_uncertain_leaves_its_placing_to_the_rescan_walk() -> None:
    """The cycle of the test above, then an overflow ending the batch (what came after it is lost). The
    overflow record comes; nothing below the directory leaks and it stays uncertain. The overflow's rescan
    walk then finds it at ``/w/ab`` (where the records put it at ``/w/a``) and feeds that answer: the
    directory is placed there at once (a synthesized rename, a ``rescan`` record, a ``Rescan`` action),
    which moves the shadow of the tree (core/shadow.py) too. This is why LiveSource._rescan feeds its walk's
    items before it diffs against the shadow (tests/test_rescan.py, ``placed-later``): the shadow taken
    before them still holds ``/w/a/g``, and a diff against it deleted ``/w/a/g`` and created ``/w/ab/g`` that
    the rename had already moved."""
    from normalizer.core.actions import Rescan
    from normalizer.core.shadow import ShadowTree

    n = norm()
    shadow = ShadowTree([b"/w"])
    for path, is_dir in ((b"/w/a", True), (b"/w/a/f", False)):
        shadow.add(path, is_dir)
    out = n.feed(batch(0, ren(W, b"a", W, b"ab", A, True), ren(A, b"f", A, b"g", X),
                       ren(W, b"ab", W, b"a", A, True), ev(CREATE, A, b"h", Y), ev(fs.FAN_Q_OVERFLOW, pid=0)))
    shadow.apply(out)
    assert brief(out)[-1][0] == "overflow" and not [r for r in out if r.path.endswith(b"/h")]
    assert n.uncertain_dirs() == [A] and n.stats["held_back"] == 1
    before = shadow.snapshot()
    assert before == {b"/w/a": True, b"/w/a/g": False}
    out = n.feed(resolved(A, b"/w/ab"))  # the rescan walk's answer
    shadow.apply(out)
    assert brief(out) == [("rename", b"/w/a", b"/w/ab", ["merged", "synthesized"]),
                          ("rescan", b"/w/ab", ["synthesized"])]
    assert [a for a in out.actions if isinstance(a, Rescan)] == [Rescan(b"/w/ab", n._why_rescan)]
    assert shadow.snapshot() == {b"/w/ab": True, b"/w/ab/g": False} != before
    assert n.uncertain_dirs() == []


# --- a merged DELETE is placed after the later events of its object (docs/fanotify.md, "Merged events") ------


def test_a_merged_delete_comes_after_the_renames_of_its_file() -> None:
    """``echo x >> f; mv f a; mv a f; rm f`` unread: the kernel merges the DELETE into the MODIFY|CLOSE_WRITE
    of the same name and object, before the two renames. The delete record comes after them (the file had to
    be back at ``f`` to be deleted there), still flagged ``merged``; what comes after it is not held."""
    n = norm()
    out = n.feed(batch(0, ev(MODIFY | CLOSE_WRITE | DELETE, A, b"f", X), ren(A, b"f", A, b"a", X),
                       ren(A, b"a", A, b"f", X), ev(CREATE, A, b"g", Y)))
    assert brief(out) == [("modify", b"/w/a/f", ["merged"]), ("close_write", b"/w/a/f", ["merged"]),
                          ("rename", b"/w/a/f", b"/w/a/a", []), ("rename", b"/w/a/a", b"/w/a/f", []),
                          ("delete", b"/w/a/f", ["merged"]), ("create", b"/w/a/g", [])]
    assert out[4].object_id == X.hex() and out[4].mask == MODIFY | CLOSE_WRITE | DELETE
    assert n.stats["deletes_moved"] == 1 and not n._late


def test_a_merged_delete_with_no_later_event_of_its_object_stays_in_place() -> None:
    """The common burst (create, write, close, unlink of a temporary file) keeps the canonical order: nothing
    later concerns that file, so its delete stays right after the event's other records."""
    n = norm()
    burst = CREATE | MODIFY | CLOSE_WRITE | DELETE
    out = n.feed(batch(0, ev(burst, A, b"t", X), ren(A, b"p", A, b"q", Y), ev(CREATE, A, b"t", Z)))
    assert brief(out) == [("create", b"/w/a/t", ["merged"]), ("modify", b"/w/a/t", ["merged"]),
                          ("close_write", b"/w/a/t", ["merged"]), ("delete", b"/w/a/t", ["merged"]),
                          ("rename", b"/w/a/p", b"/w/a/q", []), ("create", b"/w/a/t", [])]
    assert n.stats["deletes_moved"] == 0


def test_a_merged_delete_goes_before_another_file_takes_its_name() -> None:
    """f (X) is written, moved to a; a new f (Y) is created and deleted (merged); X comes back to f and is
    deleted (merged into its first event). Y's delete must come before X arrives at f, X's after."""
    n = norm()
    out = n.feed(batch(0, ev(MODIFY | DELETE, A, b"f", X), ren(A, b"f", A, b"a", X),
                       ev(CREATE | DELETE, A, b"f", Y), ren(A, b"a", A, b"f", X)))
    assert brief(out) == [("modify", b"/w/a/f", ["merged"]), ("rename", b"/w/a/f", b"/w/a/a", []),
                          ("create", b"/w/a/f", ["merged"]), ("delete", b"/w/a/f", ["merged"]),
                          ("rename", b"/w/a/a", b"/w/a/f", []), ("delete", b"/w/a/f", ["merged"])]
    assert [r.object_id for r in out if r.kind == "delete"] == [Y.hex(), X.hex()]


def test_a_merged_delete_waits_for_the_rest_of_its_window_in_the_next_read() -> None:
    """The read that brought the merged event left 2 events queued (``backlog``): the file's return may be
    among them, so its delete is not given with this read. It comes in the next one, after the return;
    the window ends there (the backlog is consumed), so nothing waits longer."""
    n = norm()
    first = raw.FanotifyBatch(0, False, [ev(MODIFY | DELETE, A, b"f", X), ren(A, b"f", A, b"a", X)], backlog=2)
    out = n.feed(first)
    assert brief(out) == [("modify", b"/w/a/f", ["merged"]), ("rename", b"/w/a/f", b"/w/a/a", [])]
    second = raw.FanotifyBatch(MS, False, [ren(A, b"a", A, b"f", X), ev(CREATE, A, b"g", Y)], backlog=5)
    out = n.feed(second)
    assert brief(out) == [("rename", b"/w/a/a", b"/w/a/f", []), ("delete", b"/w/a/f", ["merged"]),
                          ("create", b"/w/a/g", [])]
    assert out[1].t_ns == MS  # given with the second read: the records' times never go back
    assert not n._late and n.stats["deletes_moved"] == 1


def test_a_merged_delete_waits_until_the_backlog_of_its_read_is_consumed() -> None:
    """5 events were still queued after the read: a second read of 2 does not end the window, a third does.
    The file's own DELETE_SELF (a filesystem mark reports it without a directory; the record is dropped) is an
    event of the file too: the delete goes after it, before the unrelated create."""
    n = norm(mark_mode="filesystem")
    out = n.feed(raw.FanotifyBatch(0, False, [ev(MODIFY | DELETE, A, b"f", X)], backlog=5))
    out += n.feed(raw.FanotifyBatch(MS, False, [ren(A, b"f", A, b"a", X), ren(A, b"a", A, b"f", X)], backlog=9))
    assert [r.kind for r in out] == ["modify", "rename", "rename"] and n._late
    out = n.feed(raw.FanotifyBatch(2 * MS, False, [ev(CREATE, A, b"p", Y), ev(ATTRIB | DELETE_SELF, None, b"", X),
                                                   ev(CREATE, A, b"q", Z)], backlog=9))
    assert brief(out) == [("create", b"/w/a/p", []), ("delete", b"/w/a/f", ["merged"]), ("create", b"/w/a/q", [])]
    assert not n._late and n.stats["dropped_self"] == 1


def test_a_merged_delete_is_given_when_the_queue_is_seen_empty() -> None:
    """No backlog known and the read did not drain: held until the queue is seen empty (a Tick), or the
    stream ends."""
    n = norm()
    out = n.feed(batch(0, ev(CREATE | DELETE, A, b"f", X), drained=False))
    assert brief(out) == [("create", b"/w/a/f", ["merged"])]
    assert brief(n.feed(raw.Tick(MS))) == [("delete", b"/w/a/f", ["merged"])]
    out = n.feed(batch(2, ev(CREATE | DELETE, A, b"g", Y), drained=False))
    assert brief(out) == [("create", b"/w/a/g", ["merged"])]
    assert brief(n.close()) == [("delete", b"/w/a/g", ["merged"])]


def test_a_merged_directory_delete_comes_after_what_happened_inside_it() -> None:
    """mkdir d; touch d/g; rm d/g; rmdir d, unread: the rmdir merges into the mkdir. Before, the directory
    was forgotten at once and what happened inside it had no path (unresolved records); now its delete waits
    for the events inside it (and for its DELETE_SELF, as in an rmdir read promptly)."""
    n = norm()
    out = n.feed(batch(0, ev(CREATE | DELETE | ONDIR, A, b"d", Z), ev(CREATE, Z, b"g", X), ev(DELETE, Z, b"g", X),
                       ev(DELETE_SELF | ONDIR, Z, b".", Z)))
    assert brief(out) == [("create", b"/w/a/d", ["merged"]), ("create", b"/w/a/d/g", []),
                          ("delete", b"/w/a/d/g", []), ("delete_self", b"/w/a/d", []), ("watch_end", b"/w/a/d", []),
                          ("delete", b"/w/a/d", ["merged"])]
    assert Z not in n.cache and n.stats["unresolved_records"] == 0


def test_merged_deletes_in_a_merged_directory_delete_come_first() -> None:
    """Both the directory's delete and a file's inside it were merged; the file was renamed within the
    directory after its first event: file delete after that rename, directory delete after the file's."""
    n = norm()
    out = n.feed(batch(0, ev(CREATE | DELETE | ONDIR, A, b"d", Z), ev(CREATE | DELETE, Z, b"g", X),
                       ren(Z, b"g", Z, b"h", X), ren(Z, b"h", Z, b"g", X)))
    assert brief(out) == [("create", b"/w/a/d", ["merged"]), ("create", b"/w/a/d/g", ["merged"]),
                          ("rename", b"/w/a/d/g", b"/w/a/d/h", []), ("rename", b"/w/a/d/h", b"/w/a/d/g", []),
                          ("delete", b"/w/a/d/g", ["merged"]), ("delete", b"/w/a/d", ["merged"])]


def test_a_held_delete_goes_before_its_directory_is_removed() -> None:
    """A file's merged delete waits for a later event of it, but its directory is removed first (rmdir read
    as its own event): the directory was empty then, so the file's delete comes before it."""
    n = norm()
    out = n.feed(batch(0, ev(MODIFY | DELETE, D, b"f", X), ev(DELETE | ONDIR, A, b"d", D), drained=False))
    assert brief(out) == [("modify", b"/w/a/d/f", ["merged"]), ("delete", b"/w/a/d/f", ["merged"]),
                          ("delete", b"/w/a/d", [])]


def test_a_held_delete_is_named_where_its_directory_was_at_the_last_event_of_its_file() -> None:
    """The file comes back to f, then its directory is renamed (d -> e): the delete stands right after the
    file's last event, before the directory's rename, so it names d/f (true at that place)."""
    n = norm()
    out = n.feed(batch(0, ev(MODIFY | DELETE, D, b"f", X), ren(D, b"f", D, b"a", X), ren(D, b"a", D, b"f", X),
                       ren(A, b"d", A, b"e", D, True), ev(CREATE, D, b"n", Y)))
    assert brief(out) == [("modify", b"/w/a/d/f", ["merged"]), ("rename", b"/w/a/d/f", b"/w/a/d/a", []),
                          ("rename", b"/w/a/d/a", b"/w/a/d/f", []), ("delete", b"/w/a/d/f", ["merged"]),
                          ("rename", b"/w/a/d", b"/w/a/e", []), ("create", b"/w/a/e/n", [])]


def test_a_held_delete_does_not_split_an_exchange() -> None:
    """X comes back to f by a RENAME_EXCHANGE with Y (two FAN_RENAMEs, X's first): its delete goes after
    both halves, as an exchange is one operation."""
    n = norm()
    out = n.feed(batch(0, ev(MODIFY | DELETE, A, b"f", X), ren(A, b"f", A, b"a", X), ren(A, b"a", A, b"f", X),
                       ren(A, b"f", A, b"a", Y)))
    assert [r.kind for r in out] == ["modify", "rename", "rename", "rename", "delete"]


def test_without_fan_rename_a_merged_delete_keeps_the_canonical_order() -> None:
    """use_rename=False: records may wait in the matcher behind a half, so nothing is moved (documented)."""
    n = norm(use_rename=False)
    out = n.feed(batch(0, ev(MODIFY | DELETE, A, b"f", X), ev(CREATE, A, b"g", Y)))
    assert brief(out) == [("modify", b"/w/a/f", ["merged"]), ("delete", b"/w/a/f", ["merged"]),
                          ("create", b"/w/a/g", [])]


def test_a_held_delete_whose_directory_became_uncertain_is_held_back_for_the_rescan() -> None:
    """The corpus program fanotify-778437a1bfd0 by hand: f written; its directory renamed away (a -> ab), f
    renamed inside, the directory back (uncertain now), f renamed back (held back), f deleted (merged into the
    write). The file's last event happened below the uncertain directory: its delete is held back like that
    event (no guessed path); the directory's rescan reports what is gone."""
    n = norm()
    out = n.feed(batch(0, ev(MODIFY | DELETE, A, b"f", X), ren(W, b"a", W, b"ab", A, True),
                       ren(A, b"f", A, b"f.r", X), ren(W, b"ab", W, b"a", A, True), ren(A, b"f.r", A, b"f", X)))
    assert brief(out) == [("modify", b"/w/a/f", ["merged"]), ("rename", b"/w/a", b"/w/ab", []),
                          ("rename", b"/w/ab/f", b"/w/ab/f.r", []), ("rename", b"/w/ab", b"/w/a", ["merged"])]
    assert n.stats["held_back"] == 2 and not n._late


def test_a_held_delete_in_a_directory_that_came_in_with_the_read_is_left_to_its_walk() -> None:
    """Filesystem mark: f created and written in /w/a/d, d moved out and back in (to be listed by its walk
    after the read), f deleted (merged into the first event); f's own DELETE_SELF anchors the delete after
    d came back. The records have not told what d holds there, and the walk will not find f: the delete is
    held back, as events in such a directory are dropped. Named /w/b/d/f, it deleted an entry the records
    never had (corpus fanotify-9ef9d90f48e7, where d came out of an uncertain directory)."""
    n = norm(mark_mode="filesystem")
    out = n.feed(batch(0, ev(CREATE | MODIFY | DELETE, D, b"f", X), ren(A, b"d", None, b"", D, True),
                       ren(None, b"", B, b"d", D, True), ev(DELETE_SELF, None, b"", X)))
    assert brief(out) == [("create", b"/w/a/d/f", ["merged"]), ("modify", b"/w/a/d/f", ["merged"]),
                          ("rename", b"/w/a/d", b"", ["unwatched"]), ("rename", b"", b"/w/b/d", ["unwatched"])]
    assert n.stats["held_back"] == 1 and not n._late
    assert Watch(b"/w/b/d", True) in out.actions


class _MergingQueue:
    """A model of fanotify's queue for one process working in /w/a, /w/b and a directory ``s`` it may create
    in /w/a, fill, move between /w/a and /w/b and remove: an event merges into the oldest unread event of the
    same directory, name, object and type (file or directory), ORing the masks; FAN_RENAMEs never merge (the
    kernel merges identical ones, which no stream can undo: docs/fanotify.md, "What cannot be flagged")."""

    def __init__(self) -> None:
        self.queue: list[list[object]] = []
        self.entries: dict[tuple[bytes, bytes], bytes] = {}
        self.objects = 0
        self.sub: bytes | None = None  # the directory s, while it exists

    def emit(self, bit: int, d: bytes, name: bytes, obj: bytes) -> None:
        for q in self.queue:
            if not int(q[0]) & RENAME and q[2:4] == [d, name] and q[6] == obj and \
                    (int(q[0]) ^ bit) & ONDIR == 0:  # type: ignore[call-overload]
                q[0] = int(q[0]) | bit  # type: ignore[call-overload]
                return
        self.queue.append([bit, 42, d, name, None, b"", obj, ()])

    def new(self) -> bytes:
        self.objects += 1
        return fid(1000 + self.objects)

    def where(self, obj: bytes) -> tuple[bytes, bytes]:
        return next(key for key, o in self.entries.items() if o == obj)

    def apply(self, op: tuple[str, int, int, int, int]) -> None:
        kind, di, ni, d2i, n2i = op
        dirs = (A, B, self.sub or A)
        d, name = dirs[di], (b"f", b"g", b"i", b"j")[ni]
        d2, name2 = dirs[d2i], (b"f", b"g", b"h")[n2i]
        obj = self.entries.get((d, name))
        sub = self.sub
        if kind == "churn" and obj is None:  # create, write, delete: one merged event if not read meanwhile
            for step in ("create", "write", "delete"):
                self.apply((step, di, ni, d2i, n2i))
        elif kind == "create" and obj is None:
            self.entries[(d, name)] = new = self.new()
            self.emit(CREATE, d, name, new)
        elif kind == "write" and obj is not None:
            self.emit(MODIFY, d, name, obj)
            self.emit(CLOSE_WRITE, d, name, obj)
        elif kind == "delete" and obj is not None:
            del self.entries[(d, name)]
            self.emit(DELETE, d, name, obj)
        elif kind in ("rename", "bounce") and obj is not None and (d, name) != (d2, name2):
            del self.entries[(d, name)]
            self.entries[(d2, name2)] = obj  # replaces what was there: the kernel says no more
            self.queue.append([RENAME, 42, d, name, d2, name2, obj, ()])
            if kind == "bounce":
                del self.entries[(d2, name2)]  # and back (what it replaced stays gone)
                self.entries[(d, name)] = obj
                self.queue.append([RENAME, 42, d2, name2, d, name, obj, ()])
        elif kind == "mkdir" and sub is None and (A, b"s") not in self.entries:
            self.sub = self.entries[(A, b"s")] = new = self.new()
            self.emit(CREATE | ONDIR, A, b"s", new)
        elif kind == "rmdir" and sub is not None and not any(key[0] == sub for key in self.entries):
            parent, sname = self.where(sub)
            del self.entries[(parent, sname)]
            self.sub = None
            self.emit(DELETE_SELF | ONDIR, sub, b".", sub)
            self.emit(DELETE | ONDIR, parent, sname, sub)
        elif kind == "movedir" and sub is not None:
            parent, sname = self.where(sub)
            other = B if parent == A else A
            if (other, b"s") not in self.entries:
                del self.entries[(parent, sname)]
                self.entries[(other, b"s")] = sub
                self.queue.append([RENAME | ONDIR, 42, parent, sname, other, b"s", sub, ()])

    def paths(self) -> set[bytes]:
        out = set()
        for (d, name) in self.entries:
            top = b"/w/a/" if d == A else b"/w/b/" if d == B else b"/w/%s/s/" % (b"a" if self.where(d)[0] == A
                                                                                 else b"b")
            out.add(top + name)
        return out

    def read(self, size: int, t: int) -> raw.FanotifyBatch:
        taken, self.queue = self.queue[:size], self.queue[size:]
        events = [tuple(q) for q in taken]
        return raw.FanotifyBatch(t, not self.queue, events, len(self.queue))  # type: ignore[arg-type]


#: (operation, dir, name, dir2, name2): few names and mostly one directory, so that one name sees several
#: lives (dir 2 is the directory s while it exists).
_OPS = st.tuples(st.sampled_from(["create", "create", "write", "delete", "rename", "rename", "bounce", "read",
                                  "mkdir", "rmdir", "movedir"]),
                 st.sampled_from([0, 0, 1, 2]), st.integers(0, 1), st.sampled_from([0, 0, 1, 2]), st.integers(0, 2))


@settings(max_examples=300, deadline=None)
@given(st.lists(_OPS, max_size=25), st.integers(1, 4))
def test_property_records_of_merged_events_are_true_and_rebuild_the_tree(ops: list[tuple[str, int, int, int, int]],
                                                                          read_size: int) -> None:
    """For any run of creates, writes, deletes, renames (and renames away and back), mkdir, rmdir and moves of
    a directory (each read at once) by one process, with reads of ``read_size`` events now and then (so merge
    windows span reads),
    on a model of the kernel's merging: every record is true where it stands (a create's name is free and its
    directory exists, a delete's entry, a rename's source and a write's name exist) and the records rebuild the
    final tree."""
    q = _MergingQueue()
    n = norm()
    recs: list[Rec] = []
    t = 0
    for op in ops:
        if op[0] == "read":
            t += 1
            recs += n.feed(q.read(read_size, t * MS))
        else:
            q.apply(op)
        if op[0] == "movedir":  # a directory moved back before a read is uncertain: rescanned (not modelled)
            t += 1
            recs += n.feed(q.read(len(q.queue), t * MS))
    while q.queue:
        t += 1
        recs += n.feed(q.read(read_size, t * MS))
    recs += n.close()
    tree: set[bytes] = {b"/w/a", b"/w/b"}
    for i, r in enumerate(recs):
        where = f"record {i}: {brief([r])}\n{brief(recs)}"
        if r.kind in ("delete_self", "watch_end"):
            continue
        if r.kind == "create":
            assert r.path not in tree and r.path.rpartition(b"/")[0] in tree, where
            tree.add(r.path)
        elif r.kind == "delete":
            assert r.path in tree and not any(p.startswith(r.path + b"/") for p in tree), where
            tree.discard(r.path)
        elif r.kind == "rename":
            assert r.path in tree and r.dst.rpartition(b"/")[0] in tree, where
            moved = {p for p in tree if p == r.path or p.startswith(r.path + b"/")}
            tree -= moved
            tree -= {p for p in tree if p == r.dst or p.startswith(r.dst + b"/")}
            tree |= {r.dst + p[len(r.path):] for p in moved}
        else:
            assert r.kind in ("modify", "close_write") and r.path in tree, where
    assert tree == q.paths() | {b"/w/a", b"/w/b"}, brief(recs)
    assert not n._late


def test_a_directory_whose_merged_delete_is_held_is_not_watched() -> None:
    """mkdir d; rmdir d, merged, in a read that did not drain: the delete waits for the next feed, and no
    ``Watch`` is asked for the directory meanwhile (it is gone: its scan would only fail)."""
    n = norm()
    fed = n.feed(raw.FanotifyBatch(0, False, [ev(CREATE | DELETE | ONDIR, A, b"d", Z)], backlog=3))
    assert brief(fed) == [("create", b"/w/a/d", ["merged"])]
    assert not [a for a in fed.actions if isinstance(a, Watch)]
    assert brief(n.feed(raw.Tick(MS))) == [("delete", b"/w/a/d", ["merged"])] and Z not in n.cache


def test_a_merged_delete_self_of_its_directory_does_not_place_a_held_delete() -> None:
    """Corpus fanotify-a0a16403e9f5 by hand: mkdir -p b/p/q + b/p/q/f; mv b a; mv a/p/q a/p/a; rm -r a, unread.
    b's MOVE_SELF|DELETE_SELF is one event at the rename's place: the DELETE_SELF in it does not say that b
    was gone there, so p's held delete (merged into its mkdir) still waits for the events inside p."""
    n = norm(mark_mode="filesystem")
    P, Q, F = fid(200), fid(201), fid(202)
    out = n.feed(batch(0, ev(CREATE | ONDIR, A, b"b", Y), ev(CREATE | DELETE | ONDIR, Y, b"p", P),
                       ev(CREATE | ONDIR, P, b"q", Q), ev(CREATE | MODIFY | CLOSE_WRITE | DELETE, Q, b"f", F),
                       ren(A, b"b", A, b"c", Y, True), ev(MOVE_SELF | DELETE_SELF | ONDIR, Y, b"."),
                       ren(P, b"q", P, b"a", Q, True), ev(MOVE_SELF | DELETE_SELF | ONDIR, Q, b"."),
                       ev(ATTRIB | DELETE_SELF, None, b"", F), ev(DELETE | ONDIR, P, b"a", Q),
                       ev(DELETE_SELF | ONDIR, P, b"."), ev(DELETE | ONDIR, A, b"c", Y)))
    kinds = [(r.kind, r.path[len(b"/w/a/"):]) for r in out if r.kind in ("create", "delete", "rename")]
    assert kinds == [("create", b"b"), ("create", b"b/p"), ("create", b"b/p/q"), ("create", b"b/p/q/f"),
                     ("rename", b"b"), ("rename", b"c/p/q"), ("delete", b"c/p/a/f"), ("delete", b"c/p/a"),
                     ("delete", b"c/p"), ("delete", b"c")]


def test_an_uncertain_directory_replaced_by_a_rename_no_longer_holds_back_its_path() -> None:
    """Corpus fanotify-2ada66068d1e by hand: a renamed away and back (uncertain), then b renamed over it (a
    was empty: it is gone); a directory created in the new a is reported, not held back as if below the
    uncertain one."""
    n = norm()
    out = n.feed(batch(0, ren(W, b"a", W, b"ab", A, True), ren(W, b"ab", W, b"a", A, True),
                       ren(W, b"b", W, b"a", B, True), ev(CREATE | ONDIR, B, b"x", Z)))
    assert brief(out)[-2:] == [("rename", b"/w/b", b"/w/a", []), ("create", b"/w/a/x", [])]
    assert n.stats["held_back"] == 0


def test_a_directory_moved_in_below_another_one_moved_in_is_walked_with_it() -> None:
    """Two directories moved in by one read, the first then moved into the second: one Watch, for the
    second (its walk lists the first inside it). Two, the inner one first, reported the inner content before
    the directory holding it (corpus fanotify-98f081283674)."""
    n = norm()
    M, N = fid(300), fid(301)
    fed = n.feed(batch(0, ren(None, b"", A, b"m", M, True), ren(None, b"", A, b"n", N, True),
                       ren(A, b"m", N, b"x", M, True)))
    assert [a for a in fed.actions if isinstance(a, Watch)] == [Watch(b"/w/a/n", True)]


def test_a_rename_between_a_directory_just_moved_in_and_an_uncertain_one_is_not_told() -> None:
    """Corpus fanotify-4d15307ce133 by hand: a is uncertain (renamed away and back); m comes in with this
    read; a file moves from m into a. Neither side was ever told (m's content comes with its walk after the
    read, a's with its rescan): no record, not one naming a path below the uncertain directory."""
    n = norm()
    M = fid(400)
    out = n.feed(batch(0, ren(W, b"a", W, b"ab", A, True), ren(W, b"ab", W, b"a", A, True),
                       ren(None, b"", B, b"m", M, True), ren(M, b"x", A, b"y", X)))
    assert brief(out) == [("rename", b"/w/a", b"/w/ab", []), ("rename", b"/w/ab", b"/w/a", ["merged"]),
                          ("rename", b"", b"/w/b/m", ["unwatched"])]
    assert n.stats["held_back"] == 1


def test_a_file_out_of_a_fresh_directory_by_an_exchange_and_back_in_keeps_its_order() -> None:
    """Corpus fanotify-3ad44ee7efec by hand: m comes in; b (a directory) is exchanged with m/one (a file); the
    file then moves from b back into m. The file's arrival at b comes before its leaving b (it is the same
    object moving on, not the second half of an exchange, which would be told the other way round)."""
    n = norm()
    M, F = fid(500), fid(501)
    out = n.feed(batch(0, ren(None, b"", A, b"m", M, True), ren(W, b"b", M, b"one", B, True),
                       ren(M, b"one", W, b"b", F), ren(W, b"b", M, b"a", F)))
    assert brief(out) == [("rename", b"", b"/w/a/m", ["unwatched"]), ("rename", b"/w/b", b"", ["unwatched"]),
                          ("rename", b"", b"/w/b", ["unwatched"]), ("rename", b"/w/b", b"", ["unwatched"])]
    assert [r.is_dir for r in out] == [True, True, False, False]


def test_an_exchange_out_of_a_fresh_directory_is_told_in_order_past_the_directorys_own_records() -> None:
    """Corpus fanotify-8e9733e753bc by hand: m comes in; m/sub (a directory) is exchanged with the file /w/f;
    then sub (now /w/f) is removed. The kernel's order is sub's half, sub's own MOVE_SELF (merged with its
    later DELETE_SELF: delete_self + watch_end records), the file's half. The file's leaving /w/f is told first
    (the other half's mirror), also with sub's own records between the two halves; after them, it said that a
    file left /w/f where the records had just put a directory."""
    n = norm(mark_mode="filesystem")
    M, S = fid(510), fid(511)
    out = n.feed(batch(0, ren(None, b"", B, b"m", M, True), ren(M, b"sub", W, b"f", S, True),
                       ev(MOVE_SELF | DELETE_SELF | ONDIR, S, b"."), ren(W, b"f", M, b"sub", X),
                       ev(DELETE | ONDIR, W, b"f", S)))
    assert brief(out) == [("rename", b"", b"/w/b/m", ["unwatched"]), ("rename", b"/w/f", b"", ["unwatched"]),
                          ("rename", b"", b"/w/f", ["unwatched"]), ("delete_self", b"/w/f", ["merged"]),
                          ("watch_end", b"/w/f", []), ("delete", b"/w/f", [])]
    assert [r.is_dir for r in out[1:3]] == [False, True]


def test_an_exchange_across_an_uncertain_edge_is_told_in_order_past_the_directorys_own_records() -> None:
    """Corpus fanotify-c2a86b164d48 by hand: a is uncertain; a/d (a directory) is exchanged with the file /w/f,
    then d (now /w/f) is removed. d's half comes first (out of the uncertain directory: it appears at /w/f),
    then its own merged MOVE_SELF|DELETE_SELF, then the file's half (into the uncertain directory: it leaves
    /w/f). The file's leaving is told first, as across the edge of a directory that came in with the read;
    told in kernel order, a file left /w/f where the records had just put a directory."""
    n = norm(mark_mode="filesystem")
    out = n.feed(batch(0, ren(W, b"a", W, b"ab", A, True), ren(W, b"ab", W, b"a", A, True),
                       ren(A, b"d", W, b"f", D, True), ev(MOVE_SELF | DELETE_SELF | ONDIR, D, b"."),
                       ren(W, b"f", A, b"d", X), ev(DELETE | ONDIR, W, b"f", D)))
    assert brief(out)[2:] == [("rename", b"/w/f", b"", ["unwatched"]), ("rename", b"", b"/w/f", ["unwatched"]),
                              ("delete_self", b"/w/f", ["merged"]), ("watch_end", b"/w/f", []),
                              ("delete", b"/w/f", [])]
    assert [r.is_dir for r in out[2:4]] == [False, True]


def test_a_scanned_file_renamed_away_lets_a_new_file_of_its_name_be_reported() -> None:
    """Corpus fanotify-96ddce3b4ea3 by hand: a scan reported /w/a/c (its kernel CREATE may still be queued,
    and is dropped); then c is renamed to a plain rename (the hot path) and a new c is created: that CREATE is
    new and must be reported. The hot path did not clear the scanned name, and the new c went missing."""
    n = norm()
    n.feed(raw.SourceNotice(0, "create", b"/w/a/c", False, ("synthesized",), "scan"))
    out = n.feed(batch(1, ren(A, b"c", A, b"a", X), ev(CREATE | CLOSE_WRITE, A, b"c", Y)))
    assert brief(out) == [("rename", b"/w/a/c", b"/w/a/a", []), ("create", b"/w/a/c", ["merged"]),
                          ("close_write", b"/w/a/c", ["merged"])]


def test_a_directory_exchanged_with_a_scanned_one_reports_the_create_of_a_scanned_name() -> None:
    """tests/test_truth.py (a new directory exchanged before the queue emptied, fanotify-inode) by hand: the
    scan of the new /w/n reported /w/n/k; then n <-> b (RENAME_EXCHANGE) and a new k in the old b, now at
    /w/n. That CREATE is new and must be reported: kept by path, the scanned entry took it for its own queued
    CREATE and dropped it. The scanned entry, now /w/b/k, still drops its own queued CREATE, until it moves
    away (then a new k there is new too)."""
    n = norm()
    N = fid(700)
    out = n.feed(batch(0, ev(CREATE | ONDIR, W, b"n", N), drained=False))
    assert out.actions == (Watch(b"/w/n", False),)
    out += n.feed(resolved(N, b"/w/n"))
    out += n.feed(raw.SourceNotice(MS, "create", b"/w/n/k", False, ("synthesized",), "scan"))
    out += n.feed(batch(2, ren(W, b"n", W, b"b", N, is_dir=True), ren(W, b"b", W, b"n", B, is_dir=True),
                        ev(CREATE, B, b"k", X), drained=False))
    assert brief(out) == [("create", b"/w/n", []), ("create", b"/w/n/k", ["synthesized"]),
                          ("rename", b"/w/n", b"/w/b", []), ("rename", b"/w/b", b"/w/n", []),
                          ("create", b"/w/n/k", [])]
    # The scanned entry's own queued CREATE (by its directory's handle, wherever that is now) is dropped; once
    # it was renamed away, a new k in that directory is reported.
    out = n.feed(batch(3, ev(CREATE, N, b"k", Y), ren(N, b"k", N, b"k2", Y), ev(CREATE, N, b"k", Z)))
    assert brief(out) == [("rename", b"/w/b/k", b"/w/b/k2", []), ("create", b"/w/b/k", [])]


def test_an_exchange_across_an_uncertain_edge_keeps_the_directory_that_came_out() -> None:
    """Corpus fanotify-00b5f85b8e28 by hand: a is uncertain; m (never listed) is in it; m/sub is exchanged with
    the known b: sub comes out to b (listed there), b goes into the uncertain a. The second half must not move
    what is now at b (sub) into the uncertain directory: sub stays at b and is walked there. b's leaving is
    told before sub's arrival (the exchange's mirror, as across the edge of a directory that came in)."""
    n = norm()
    M, S = fid(600), fid(601)
    fed = n.feed(batch(0, ren(W, b"a", W, b"ab", A, True), ren(W, b"ab", W, b"a", A, True),
                       ren(None, b"", A, b"m", M, True), ren(M, b"sub", W, b"b", S, True),
                       ren(W, b"b", M, b"sub", B, True)))
    assert brief(fed)[-2:] == [("rename", b"/w/b", b"", ["unwatched"]), ("rename", b"", b"/w/b", ["unwatched"])]
    assert n.cache.path(S) == b"/w/b"
    assert Watch(b"/w/b", True) in fed.actions


@pytest.mark.parametrize("uncertain_first", [True, False])
def test_an_uncertain_directory_exchanged_into_a_fresh_one_is_still_rescanned(uncertain_first: bool) -> None:
    """Corpus fanotify-c504c54a1a54 by hand: b is uncertain (renamed away and back); m comes in with this read
    (filesystem mark), holding sub, which the cache never saw; b <-> m/sub (RENAME_EXCHANGE: either half may
    come first, depending on which path renameat2 was given first). b stays known at /w/m/sub, so once placed it
    is rescanned there (what it holds is reported), and sub is known at /w/b. The cache lost b: sub, arriving
    at /w/b, forgot what was there (the kernel's order), or the half of sub moved what the cache had at /w/m/sub
    (b) back to /w/b; either way b's placing found no old path and asked for no rescan."""
    from normalizer.core.actions import Rescan

    n = norm(mark_mode="filesystem")
    M, S = fid(800), fid(801)
    halves = [ren(W, b"b", M, b"sub", B, True), ren(M, b"sub", W, b"b", S, True)]
    if not uncertain_first:
        halves.reverse()
    fed = n.feed(batch(0, ren(None, b"", W, b"m", M, True), ren(W, b"b", W, b"bb", B, True),
                       ren(W, b"bb", W, b"b", B, True), *halves))
    assert sorted(brief(fed)[-2:]) == [("rename", b"", b"/w/b", ["unwatched"]),
                                       ("rename", b"/w/b", b"", ["unwatched"])]
    assert (n.cache.path(B), n.cache.path(S), n.uncertain_dirs()) == (b"/w/m/sub", b"/w/b", [B])
    assert {a for a in fed.actions if isinstance(a, Watch)} == {Watch(b"/w/b", True), Watch(b"/w/m", True)}
    out = n.feed(resolved(B, b"/w/m/sub"))  # placed: where the records put it
    assert brief(out) == [("rescan", b"/w/m/sub", ["synthesized"])]
    assert [a for a in out.actions if isinstance(a, Rescan)] == [Rescan(b"/w/m/sub", n._why_rescan)]
    assert (n.cache.path(B), n.cache.path(S), n.uncertain_dirs()) == (b"/w/m/sub", b"/w/b", [])


@pytest.mark.parametrize("outside_first", [True, False])
def test_an_exchange_across_the_trees_edge_keeps_the_directory_that_came_in(outside_first: bool) -> None:
    """Filesystem mark: /w/a/d (with e below it) exchanged with o, a directory outside the tree. o comes in
    at /w/a/d (listed there), d and e leave the tree (retired, unmarked), whichever half comes first. With o's
    half first, d's half retired "what the cache had at /w/a/d" (o by then), not d: o's events were dropped
    and d (displaced) stayed known."""
    n = norm(mark_mode="filesystem")
    G = fid(900)
    n.feed(resolved(OUT, None, "outside"))
    halves = [ren(OUT, b"o", A, b"d", G, True), ren(A, b"d", OUT, b"o", D, True)]
    if not outside_first:
        halves.reverse()
    fed = n.feed(batch(0, *halves))
    assert sorted(brief(fed)) == [("rename", b"", b"/w/a/d", ["unwatched"]),
                                  ("rename", b"/w/a/d", b"", ["unwatched"])]
    assert (n.cache.path(G), n.cache.path(D), n.cache.path(E)) == (b"/w/a/d", None, None)
    assert {a for a in fed.actions if isinstance(a, Unwatch)} == {Unwatch(D), Unwatch(E)}
    assert Watch(b"/w/a/d", True) in fed.actions
    assert brief(n.feed(batch(1, ev(CREATE, G, b"x", X), ev(CREATE, E, b"y", Y)))) == [("create", b"/w/a/d/x", [])]


def test_a_fanrec_sets_every_slot_of_rec() -> None:
    """FanRec sets Rec's slots itself (core/fanotify.py says why): a slot added to Rec and not there would be
    unset on every fanotify record."""
    import ast

    import normalizer.core

    # Rec's __slots__ from its source: the compiled class has no __slots__ attribute.
    tree = ast.parse((Path(normalizer.core.__file__).parent / "rec.py").read_text())
    rec_class = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Rec")
    slots = next(ast.literal_eval(a.value) for a in rec_class.body
                 if isinstance(a, ast.Assign) and getattr(a.targets[0], "id", "") == "__slots__")
    rec = FanRec("create", b"/w/a", False, 1, CREATE, pid=3, object_id="ab")
    assert len(slots) > 10 and [n for n in slots if not hasattr(rec, n)] == []
    assert (rec.source, rec.pid, rec.object_id, rec.cookie) == ("fanotify", 3, "ab", None)


class _OneByOne(FanotifyNormalizer):
    """The reference for :meth:`FanotifyNormalizer._place_all`: every held delete placed by ``_place``, one
    by one, in order (what the one pass must equal)."""

    def _place_all(self, due: list[object], out: list[Rec]) -> None:  # type: ignore[override]
        for h in due:
            self._place(h, out)  # type: ignore[arg-type]


class _AllThroughLate(_OneByOne):
    """The reference for the hot loop while merged deletes are held: every event through ``_late_event`` (and
    the held deletes placed one by one), as before the hot loop took the events that concern none of them."""

    def _concerns_late(self, ev: raw.FanotifyEvent) -> bool:
        return True


def _stamped(recs: list[Rec]) -> list[tuple[object, ...]]:
    return [(*b, r.t_ns, r.mask, r.object_id) for b, r in zip(brief(recs), recs, strict=True)]


#: Creates, writes and deletes of a few names before each read (merged deletes held by the dozen), renames,
#: and now and then the directory s (which makes the one-by-one path run).
_PLACE_OPS = st.tuples(st.sampled_from(["churn", "churn", "churn", "create", "write", "delete", "rename", "bounce",
                                        "read", "read", "mkdir", "rmdir"]),
                       st.sampled_from([0, 0, 1, 2]), st.integers(0, 3), st.sampled_from([0, 1, 2]),
                       st.integers(0, 2))


@settings(max_examples=300, deadline=None)
@given(st.lists(_PLACE_OPS, max_size=40), st.integers(1, 4), st.booleans(), st.sampled_from([_OneByOne,
                                                                                          _AllThroughLate]))
def test_placing_held_deletes_in_one_pass_equals_placing_them_one_by_one(
        ops: list[tuple[str, int, int, int, int]], read_size: int, tick: bool,
        reference: type[FanotifyNormalizer]) -> None:
    """Differential: on the merging model's streams (reads that leave a backlog, so deletes are held across
    reads; directories, so the one-by-one path is taken too; optionally a Tick at the end), the normalizer
    that places the due deletes of a read in one pass, and sends through the hot loop the events that concern
    no held delete, gives exactly the records, times and counters of the one that places them one by one (and,
    ``_AllThroughLate``, sends every event through ``_late_event`` while one is held)."""
    q = _MergingQueue()
    fast, ref = norm(), norm(reference)
    got: list[Rec] = []
    want: list[Rec] = []
    t = 0
    for op in ops:
        if op[0] == "read":
            t += 1
            b = q.read(read_size, t * MS)
            got += fast.feed(b)
            want += ref.feed(raw.FanotifyBatch(b.t_ns, b.drained, list(b.events), b.backlog))
        else:
            q.apply(op)
    while q.queue and not tick:
        t += 1
        b = q.read(read_size, t * MS)
        got += fast.feed(b)
        want += ref.feed(raw.FanotifyBatch(b.t_ns, b.drained, list(b.events), b.backlog))
    if tick:
        got += fast.feed(raw.Tick((t + 1) * MS))
        want += ref.feed(raw.Tick((t + 1) * MS))
    got += fast.close()
    want += ref.close()
    assert _stamped(got) == _stamped(want)
    assert fast.stats == ref.stats


class _NoQuickDrop(FanotifyNormalizer):
    """The reference for the hot loop's quick drop of events outside the tree: every such event through
    ``_slow``."""

    def _dropped_outside(self, d: bytes | None, d2: bytes | None, mask: int = 0) -> bool:
        return False


UNRES, NEW = fid(98), fid(97)
_DIRS = st.sampled_from([A, OUT, UNRES, NEW, None])
_MASKS = st.sampled_from([CREATE, DELETE, MODIFY, ATTRIB, CLOSE_WRITE, CREATE | MODIFY | CLOSE_WRITE | DELETE,
                          MODIFY | CLOSE_WRITE, RENAME, RENAME | ONDIR, CREATE | ONDIR, DELETE | ONDIR, 0,
                          MODIFY | (1 << 40), FROM, fs.FAN_Q_OVERFLOW])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_MASKS, _DIRS, _DIRS, st.integers(0, 3)), max_size=12),
       st.sampled_from(["inode", "filesystem"]), st.booleans())
def test_quick_drop_of_events_outside_the_tree_equals_the_slow_path(
        events: list[tuple[int, bytes | None, bytes | None, int]], mode: str, drained: bool) -> None:
    """Differential: events in directories outside the tree, retired, unresolvable or never seen (answered as
    unresolvable), in either mark mode, give the records and counters the slow path gives."""
    fast, ref = norm(mark_mode=mode), norm(_NoQuickDrop, mark_mode=mode)
    got: list[Rec] = []
    want: list[Rec] = []
    for n, recs in ((fast, got), (ref, want)):
        n.feed(resolved(OUT, b"/elsewhere", "outside"))
        n.feed(resolved(UNRES, None, "stale"))
        n._retired.add(fid(96))
        evs = [ev(mask, d, b"f%d" % i, fid(200 + i), d2=d2 if mask & RENAME else None,
                  name2=b"g%d" % i if mask & RENAME else b"")
               for mask, d, d2, i in events]
        evs.append(ev(MODIFY, fid(96), b"r", X))
        fed = n.feed(raw.FanotifyBatch(MS, drained, evs, 0 if drained else 5))
        recs += fed
        for action in fed.actions:
            if isinstance(action, Resolve):
                recs += n.feed(resolved(action.key, None, "stale"))
        recs += n.close()
    assert _stamped(got) == _stamped(want)
    assert fast.stats == ref.stats
