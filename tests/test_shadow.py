"""The shadow tree the rescan diffs against follows records exactly as a consumer rebuilding the tree does.

Property: for any valid sequence of filesystem operations (create a file or directory, delete an empty one,
rename onto a free or an existing file name, move in from outside, move out), the records a watcher would give
for them, applied to a :class:`ShadowTree`, leave it equal to the model filesystem; records about other roots,
bare names and non-structural kinds change nothing.
"""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st
from live import rebuild

from normalizer.core.shadow import ShadowTree
from normalizer.records import Rec

ROOT = b"/srv/w"
NAMES = [b"a", b"b", b"c", b"d"]


def _rec(kind: str, path: bytes, is_dir: bool, dst: bytes = b"") -> Rec:
    return Rec(kind, path, is_dir, 0, 0, None, dst)


@st.composite
def programs(draw: st.DrawFn) -> tuple[list[Rec], dict[bytes, bool]]:
    """Records of a valid random program, and the model tree it leaves (path -> is_dir)."""
    fs: dict[bytes, bool] = {}
    recs: list[Rec] = []
    for _ in range(draw(st.integers(0, 40))):
        dirs = [ROOT, *sorted(p for p, d in fs.items() if d)]
        op = draw(st.sampled_from(["create", "delete", "rename", "move_in", "move_out", "noise"]))
        parent = draw(st.sampled_from(dirs))
        path = parent + b"/" + draw(st.sampled_from(NAMES))
        if op in ("create", "move_in") and path not in fs:
            is_dir = draw(st.booleans())
            fs[path] = is_dir
            recs.append(_rec("create", path, is_dir) if op == "create" else _rec("rename", b"", is_dir, path))
        elif op == "delete" and path in fs and not any(p.startswith(path + b"/") for p in fs):
            recs.append(_rec("delete", path, fs.pop(path)))
        elif op == "move_out" and path in fs:
            is_dir = fs[path]
            for p in [p for p in fs if p == path or p.startswith(path + b"/")]:
                del fs[p]
            recs.append(_rec("rename", path, is_dir))
        elif op == "rename" and path in fs:
            dst = draw(st.sampled_from(dirs)) + b"/" + draw(st.sampled_from(NAMES))
            is_dir = fs[path]
            if dst == path or dst.startswith(path + b"/") or (dst in fs and (is_dir or fs[dst])):
                continue  # not a valid rename(2) (onto itself, into itself, onto a directory)
            moved = {p: d for p, d in fs.items() if p == path or p.startswith(path + b"/")}
            for p in moved:
                del fs[p]
            for p, d in moved.items():
                fs[dst + p[len(path):]] = d
            recs.append(_rec("rename", path, is_dir, dst))
        elif op == "noise":
            recs.append(_rec(draw(st.sampled_from(["modify", "attrib", "close_write"])), path, False))
            recs.append(_rec("create", b"/elsewhere/" + draw(st.sampled_from(NAMES)), False))
            recs.append(_rec("create", draw(st.sampled_from(NAMES)), False))  # an unresolved bare name
    return recs, fs


@settings(max_examples=300, deadline=None)
@given(programs(), st.integers(1, 7))
def test_shadow_follows_the_records_like_the_model(program: tuple[list[Rec], dict[bytes, bool]],
                                                   batch: int) -> None:
    recs, fs = program
    shadow = ShadowTree([ROOT])
    for i in range(0, len(recs), batch):  # in reads of various sizes: the node cache spans calls
        shadow.apply(recs[i:i + batch])
    assert shadow.snapshot() == fs
    assert {p: d for p, d in rebuild({}, recs).items() if p.startswith(ROOT + b"/")} == fs  # the tests' rebuild
    assert all(path in shadow for path in fs)
    assert len(shadow) == len(fs)


def test_a_root_moved_away_forgets_everything_below_it() -> None:
    shadow = ShadowTree([ROOT, b"/srv/other"])
    shadow.apply([_rec("create", ROOT + b"/a", True), _rec("create", ROOT + b"/a/f", False),
                  _rec("create", b"/srv/other/g", False)])
    end = _rec("watch_end", ROOT, True)
    end.message = "watched root moved away; its watches were removed"
    shadow.apply([end])
    assert shadow.snapshot() == {b"/srv/other/g": False}
    assert len(shadow) == 1


def _moved(src: bytes, dst: bytes, is_dir: bool, object_id: str | None) -> Rec:
    rec = Rec("rename", src, is_dir, 0, 0, None, dst)
    if object_id is not None:
        rec.object_id = object_id
    return rec


def test_an_exchange_with_object_ids_swaps_and_a_move_back_does_not() -> None:
    """fanotify's RENAME_EXCHANGE of a directory and a file: two renames with different object ids; the same
    object moved away and back carries one id. Without ids (inotify) a directory renamed onto a file can only
    be an exchange (rename(2) refuses it): the same swap."""
    start = [_rec("create", ROOT + b"/d", True), _rec("create", ROOT + b"/d/x", False),
             _rec("create", ROOT + b"/f", False)]
    swap = [_moved(ROOT + b"/d", ROOT + b"/f", True, "aa"), _moved(ROOT + b"/f", ROOT + b"/d", False, "bb")]
    for recs, after in (
            (swap, {b"/f": True, b"/f/x": False, b"/d": False}),
            ([_moved(ROOT + b"/d", ROOT + b"/f", True, "aa"), _moved(ROOT + b"/f", ROOT + b"/d", True, "aa")],
             {b"/d": True, b"/d/x": False}),
            ([_moved(ROOT + b"/d", ROOT + b"/f", True, None), _moved(ROOT + b"/f", ROOT + b"/d", False, None)],
             {b"/f": True, b"/f/x": False, b"/d": False})):
        shadow = ShadowTree([ROOT])
        shadow.apply(start)
        shadow.apply(recs)
        assert shadow.snapshot() == {ROOT + p: d for p, d in after.items()}, recs


def test_renames_without_object_ids_are_an_exchange_only_where_rename_could_not_replace() -> None:
    """inotify: a rename that lands where rename(2) could not have replaced the entry (a file onto a directory,
    a directory onto a non-empty one) and its mirror next are one RENAME_EXCHANGE; onto an empty directory or
    a file of the same kind the pair may be a move and a move back, read so (README Limits); a record between
    that changes the tree's shape ends the pair."""
    start = [_rec("create", ROOT + b"/d", True), _rec("create", ROOT + b"/d/x", False),
             _rec("create", ROOT + b"/e", True), _rec("create", ROOT + b"/e/y", False),
             _rec("create", ROOT + b"/empty", True), _rec("create", ROOT + b"/f", False)]
    base = {b"/d": True, b"/d/x": False, b"/e": True, b"/e/y": False, b"/empty": True, b"/f": False}

    def pair(a: bytes, b: bytes, a_dir: bool, b_dir: bool) -> list[Rec]:
        return [_moved(ROOT + a, ROOT + b, a_dir, None), _moved(ROOT + b, ROOT + a, b_dir, None)]

    cases = [
        (pair(b"/f", b"/d", False, True), {**base, b"/f": True, b"/f/x": False, b"/d": False}),
        (pair(b"/d", b"/e", True, True), {b"/d": True, b"/d/y": False, b"/e": True, b"/e/x": False,
                                          b"/empty": True, b"/f": False}),
        (pair(b"/d", b"/empty", True, True), {b"/d": True, b"/d/x": False, b"/e": True, b"/e/y": False,
                                              b"/f": False}),
        ([_moved(ROOT + b"/d", ROOT + b"/e", True, None), _rec("create", ROOT + b"/g", False),
          _moved(ROOT + b"/e", ROOT + b"/d", True, None)],
         {b"/d": True, b"/d/x": False, b"/empty": True, b"/f": False, b"/g": False}),
    ]
    for recs, after in cases:
        want = {k: v for k, v in after.items() if not (k == b"/d/x" and after.get(b"/d") is False)}
        for split in range(len(recs) + 1):  # the pair may span two reads
            shadow = ShadowTree([ROOT])
            shadow.apply(start)
            shadow.apply(recs[:split])
            shadow.apply(recs[split:])
            assert shadow.snapshot() == {ROOT + p: d for p, d in want.items()}, (recs, split)


def test_an_arrival_then_a_departure_of_the_other_kind_is_an_exchange_with_the_outside() -> None:
    """inotify: ``-> X [dir]`` then ``X -> [file]`` (or the reverse) can only be X exchanged with an entry
    outside the tree (a move in then a move out would move out what arrived): what arrived stays. Of the same
    kind the pair may be either, read as a move in and a move out; a record between ends the pair."""
    start = [_rec("create", ROOT + b"/f", False)]
    cases = [
        ([_moved(b"", ROOT + b"/f", True, None), _moved(ROOT + b"/f", b"", False, None)], {b"/f": True}),
        ([_moved(b"", ROOT + b"/f", False, None), _moved(ROOT + b"/f", b"", False, None)], {}),
        ([_moved(b"", ROOT + b"/f", True, None), _rec("create", ROOT + b"/g", False),
          _moved(ROOT + b"/f", b"", False, None)], {b"/g": False}),
    ]
    for recs, after in cases:
        shadow = ShadowTree([ROOT])
        shadow.apply(start)
        shadow.apply(recs)
        assert shadow.snapshot() == {ROOT + p: d for p, d in after.items()}, recs


#: Paths the subtree-snapshot property draws roots, entries and tops from: nested, and the filesystem root.
_PATHS = [b"/", b"/r", b"/r/a", b"/r/a/b", b"/r/a/b/c", b"/r/b", b"/r/ab", b"/s", b"/s/a", b"/s/a/a"]


#: One change of a shadow: (what, path, the move's destination, is_dir); what is add, remove, move, add_root
#: or remove_root.
ShadowOp = tuple[str, bytes, bytes, bool]


@st.composite
def shadow_ops(draw: st.DrawFn) -> tuple[list[bytes], list[ShadowOp]]:
    """Roots and changes making nested roots, some added after entries below them were (so two roots' nodes
    hold the same path, not always of the same kind), with removes, moves and roots removed."""
    child = st.builds(lambda parent, name: parent.rstrip(b"/") + b"/" + name,
                      st.sampled_from(_PATHS), st.sampled_from(NAMES[:2]))
    paths = st.one_of(st.sampled_from(_PATHS), child)
    ops: list[ShadowOp] = []
    for _ in range(draw(st.integers(0, 30))):
        op = draw(st.sampled_from(["add", "add", "add", "remove", "move", "add_root", "add_root", "remove_root"]))
        if op == "add":
            ops.append((op, draw(paths), b"", draw(st.booleans())))
        elif op == "remove":
            ops.append((op, draw(paths), b"", False))
        elif op == "move":
            ops.append((op, draw(paths), draw(paths), draw(st.booleans())))
        else:
            ops.append((op, draw(st.sampled_from(_PATHS)), b"", False))
    return draw(st.lists(st.sampled_from(_PATHS), min_size=1, max_size=3)), ops


def _shadow_of(roots: list[bytes], ops: list[ShadowOp]) -> ShadowTree:
    shadow = ShadowTree(roots)
    for what, path, dst, is_dir in ops:
        if what == "add":
            shadow.add(path, is_dir)
        elif what == "remove":
            shadow.remove(path)
        elif what == "move":
            shadow.move(path, dst, is_dir)
        elif what == "add_root":
            shadow.add_root(path)
        else:
            shadow.remove_root(path)
    return shadow


@settings(max_examples=500, deadline=None)
@given(shadow_ops(), st.lists(st.one_of(st.sampled_from(_PATHS),
                                        st.sampled_from([b"/r/a/x", b"/q", b"/r/a/b/c/d"])), max_size=4))
@example(([b"/r"], [("add", b"/r/a/b", b"", True), ("add_root", b"/r/a", b"", False),
                    ("add", b"/r/a/b", b"", False)]), [b"/r"])
def test_a_subtree_snapshot_is_the_whole_snapshot_filtered(shadow: tuple[list[bytes], list[ShadowOp]],
                                                           tops: list[bytes]) -> None:
    """``snapshot(below)``, which copies only the subtrees (the rescan of a few places), gives what the rescan
    took before: the whole snapshot, filtered to the paths under one of the tops. (The example: /r's node and
    the nested root /r/a's both hold /r/a/b, a directory in one and a file in the other; the whole snapshot
    takes the shorter root's last.)"""
    tree = _shadow_of(*shadow)
    under = tuple(top + b"/" for top in tops)
    assert tree.snapshot(tops) == {p: d for p, d in tree.snapshot().items() if p.startswith(under)}


def test_a_subtree_snapshot_holds_only_the_subtree() -> None:
    shadow = ShadowTree([ROOT, ROOT + b"/n"])
    for path, is_dir in ((b"/a", True), (b"/a/f", False), (b"/a/s", True), (b"/a/s/g", False), (b"/b", True),
                         (b"/b/h", False), (b"/ab", False), (b"/n", True), (b"/n/i", False)):
        shadow.add(ROOT + path, is_dir)
    assert shadow.snapshot([ROOT + b"/a"]) == {ROOT + b"/a/f": False, ROOT + b"/a/s": True,
                                               ROOT + b"/a/s/g": False}  # not /a itself, nor /ab
    assert shadow.snapshot([ROOT + b"/a/s", ROOT + b"/a/f", ROOT + b"/nothing"]) == {ROOT + b"/a/s/g": False}
    assert shadow.snapshot([ROOT + b"/n"]) == {ROOT + b"/n/i": False}  # the nested root's own node
    assert shadow.snapshot([ROOT + b"/b", ROOT + b"/b/h"]) == {ROOT + b"/b/h": False}  # overlapping tops
    assert shadow.snapshot([]) == {}
    assert len(shadow.snapshot([ROOT])) == len(shadow.snapshot()) == 9
