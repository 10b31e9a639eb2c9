"""The roots' record filter (normalizer.core.roots), sans-IO: what each kind of root covers, renames trimmed to
their covered side, a watched file followed by its path, overlapping roots."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from normalizer.core.roots import RootKind, RootSet
from normalizer.records import Rec


def rec(kind: str, path: bytes, dst: bytes = b"") -> Rec:
    return Rec(kind, path, False, 1, 0, None, dst)


def brief(recs: list[Rec]) -> list[tuple[object, ...]]:
    return [(r.kind, r.path, r.dst, r.flags) if r.kind == "rename" else (r.kind, r.path) for r in recs]


def test_what_each_kind_covers() -> None:
    s = RootSet([(b"/t", "tree", True), (b"/d", "dir", True), (b"/e/f", "file", True)])
    assert s.narrow
    assert [s.covers(p) for p in (b"/t", b"/t/a/b", b"/tx", b"/d", b"/d/a", b"/d/a/b", b"/e/f", b"/e/g", b"/e")] \
        == [True, True, False, True, True, False, True, False, False]
    assert s.top_dirs() == [b"/t", b"/d", b"/e"]
    assert s.needed(b"/e") and s.needed(b"/t/x") and not s.needed(b"/d/a") and not s.needed(b"/x")
    assert not RootSet([(b"/t", "tree", True)]).narrow


def test_save_replace_delete_create_and_move_away() -> None:
    s = RootSet([(b"/e/f", "file", True)])
    out = s.apply([rec("create", b"/e/f.tmp"), rec("rename", b"/e/f.tmp", b"/e/f"), rec("modify", b"/e/f"),
                   rec("delete", b"/e/f"), rec("rename", b"/e/x", b"/e/f"), rec("rename", b"/e/f", b"/e/y"),
                   rec("modify", b"/e/y"), rec("rename", b"/o/z", b"/e/f")])
    assert brief(out) == [
        ("rename", b"/e/f.tmp", b"/e/f", ("replaced",)),
        ("modify", b"/e/f"),
        ("delete", b"/e/f"),
        ("rename", b"/e/x", b"/e/f", ()),  # nothing was there: not "replaced"
        ("rename", b"/e/f", b"", ("unwatched",)),
        ("rename", b"", b"/e/f", ("unwatched",)),  # from another directory: one-sided
    ]
    assert s.present[b"/e/f"]


def test_watch_end_of_a_file_roots_directory_ends_the_file_root() -> None:
    s = RootSet([(b"/e/f", "file", True), (b"/e/g", "file", False), (b"/t", "tree", True)])
    out = s.apply([Rec.note("watch_end", b"/e", True, 1, 0, message="gone")])
    assert [(r.kind, r.path, r.flags) for r in out] == [
        ("rename", b"/e/f", ("unwatched",)), ("watch_end", b"/e/f", ()), ("watch_end", b"/e/g", ())]
    assert list(s.roots) == [b"/t"]
    # a watch_end of a directory that is a root passes too
    assert [r.path for r in s.apply([Rec.note("watch_end", b"/t/sub", True, 1, 0)])] == [b"/t/sub"]


def test_remove_keeps_what_another_root_covers() -> None:
    s = RootSet([(b"/t", "tree", True), (b"/t/in", "tree", True)])
    assert s.remove(b"/t/in") == "tree"
    assert s.narrow and s.changed
    assert brief(s.apply([rec("create", b"/t/in/x")])) == [("create", b"/t/in/x")]
    assert s.remove(b"/t") == "tree" and s.remove(b"/t") is None
    assert brief(s.apply([rec("create", b"/t/in/x"), rec("overflow", b"")])) == [("overflow", b"")]
    assert s.top_dirs() == []


PATHS = [b"/a", b"/a/b", b"/a/b/c", b"/a/x", b"/z", b"/z/q"]
KINDS: list[RootKind] = ["tree", "dir", "file"]


@settings(max_examples=200, deadline=None)
@given(roots=st.lists(st.tuples(st.sampled_from(PATHS), st.sampled_from(KINDS)), min_size=1, max_size=4),
       events=st.lists(st.tuples(st.sampled_from(["create", "delete", "modify", "rename"]),
                                 st.sampled_from([*PATHS, b""]), st.sampled_from([*PATHS, b""])), max_size=12))
def test_every_record_passes_once_and_only_with_a_covered_side(
        roots: list[tuple[bytes, RootKind]], events: list[tuple[str, bytes, bytes]]) -> None:
    """Whatever the roots (overlapping, repeated), each record passes at most once, a passed record has
    a covered side, every record with a covered path passes, and a trimmed side is flagged ``unwatched``."""
    s = RootSet((p, k, True) for p, k in roots)
    recs = [rec(k, p, d if k == "rename" else b"") for k, p, d in events if p or (k == "rename" and d)]
    before = [(r.kind, r.path, r.dst) for r in recs]
    out = s.apply(recs)
    assert len({id(r) for r in out}) == len(out)
    for r in out:
        assert (r.path and s.covers(r.path)) or (r.dst and s.covers(r.dst)), r
    for (kind, path, dst), r in zip(before, recs, strict=True):
        if s.covers(path) or (kind == "rename" and dst and s.covers(dst)):
            assert r in out
        if kind == "rename" and r in out and (path, dst) != (r.path, r.dst):
            assert "unwatched" in r.flags


def test_a_waiting_root_wakes_on_its_ancestors_and_reports_its_own_appearance() -> None:
    s = RootSet([(b"/t", "tree", True)])
    s.add_waiting(b"/a/b/r", "tree", b"/a")
    assert s.top_dirs() == [b"/t", b"/a"] and s.needed(b"/a") and s.narrow
    assert s.apply([rec("create", b"/a/x"), rec("create", b"/a/b")]) == []  # not covered, but...
    assert s.take_wakeups() == [b"/a/b/r"]  # ...its ancestor b appeared: the source looks again
    s.wait(b"/a/b/r", b"/a/b")
    out = s.apply([rec("create", b"/a/b/r"), rec("create", b"/a/b/r/inside")])
    assert brief(out) == [("create", b"/a/b/r")]  # its own path is covered while it waits, not below it
    assert s.take_wakeups() == [b"/a/b/r"]
    assert s.appeared(b"/a/b/r", True) is True  # a record reported it: no synthesized create needed
    assert s.roots[b"/a/b/r"] == "tree" and s.covers(b"/a/b/r/inside") and s.top_dirs() == [b"/t", b"/a/b/r"]
    # its watch ends: it waits again
    out = s.apply([Rec.note("watch_end", b"/a/b/r", True, 1, 0)])
    assert brief(out) == [("watch_end", b"/a/b/r")] and s.take_wakeups() == [b"/a/b/r"]


def test_a_save_onto_a_waiting_file_root_then_its_guard_goes() -> None:
    s = RootSet()
    s.add_waiting(b"/e/f", "tree", b"/e")
    out = s.apply([rec("rename", b"/e/t", b"/e/f"), rec("rename", b"/e/t", b"/e/f"),
                   Rec.note("watch_end", b"/e", True, 1, 0)])
    assert brief(out) == [("rename", b"/e/t", b"/e/f", ()), ("rename", b"/e/t", b"/e/f", ("replaced",)),
                          ("rename", b"/e/f", b"", ("unwatched",))]  # the guard's own watch_end is not shown
    assert s.appeared(b"/e/f", False) is False  # what arrived went away with the directory
    assert s.roots[b"/e/f"] == "file"


def test_a_bad_scope_in_a_capture_header_is_a_capture_error() -> None:
    from normalizer.core.filters import PathFilter
    from normalizer.errors import CaptureError
    assert PathFilter.from_options({"scope": [["/e/f", "file", True]]}).active
    for bad in ([["/e/f", "socket", True]], [["/e/f"]], "x", [[1, "file", True]]):
        with pytest.raises(CaptureError, match="scope"):
            PathFilter.from_options({"scope": bad})


def _reference_covers(roots: dict[bytes, RootKind], path: bytes) -> bool:
    parent = path.rpartition(b"/")[0] or b"/"
    for root, kind in roots.items():
        if kind == "tree" and (path == root or path.startswith(root + b"/")):
            return True
        if kind == "dir" and root in (path, parent):
            return True
        if kind == "file" and path == root:
            return True
    return False


@settings(max_examples=200, deadline=None)
@given(ops=st.lists(st.tuples(st.sampled_from(["add", "remove"]), st.sampled_from(PATHS), st.sampled_from(KINDS)),
                    max_size=10))
def test_adds_and_removes_keep_the_roots_a_reference_model_computes(
        ops: list[tuple[str, bytes, RootKind]]) -> None:
    """Any sequence of adds (replacing a root at the same path) and removes: what is covered, which
    directories are watched at the top, and which must stay watched are what the roots say, computed naively."""
    s = RootSet()
    model: dict[bytes, RootKind] = {}
    for op, path, kind in ops:
        if op == "add":
            s.add(path, kind)
            model.pop(path, None)
            model[path] = kind
        else:
            assert s.remove(path) == model.pop(path, None)
    assert s.roots == model
    for p in [*PATHS, b"/a/b/c/d", b"/a/xy", b"/"]:
        assert s.covers(p) == _reference_covers(model, p), p
    tops = list(dict.fromkeys((p.rpartition(b"/")[0] or b"/") if k == "file" else p for p, k in model.items()))
    assert s.top_dirs() == tops
    for d in tops:
        assert s.needed(d)
