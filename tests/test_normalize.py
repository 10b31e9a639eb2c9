"""Path resolution and the watch table's upkeep (directory renames, moves out, IN_IGNORED, odd masks)."""

from __future__ import annotations

import pytest
from helpers import batch, brief, ev, frm, norm_with, to

from normalizer.core import raw
from normalizer.core.actions import NO_ACTIONS, Unwatch, Watch
from normalizer.core.tree import WatchTable

ROOT, SUB, DEEP = b"/w", b"/w/d", b"/w/d/e"


def tree():  # type: ignore[no-untyped-def]
    return norm_with((1, ROOT), (2, SUB), (3, DEEP))


def test_directory_rename_rewrites_every_path_below_it() -> None:
    n = tree()
    out = n.feed(batch(0, frm(1, 3, b"d", True), to(1, 3, b"n", True), ev(3, raw.IN_CREATE, b"f"),
                       ev(2, raw.IN_MOVE_SELF)))
    assert brief(out) == [("rename", b"/w/d", b"/w/n", []), ("create", b"/w/n/e/f", []),
                          ("move_self", b"/w/n", [])]
    assert n.table.items() == [(1, b"/w"), (2, b"/w/n"), (3, b"/w/n/e")]
    assert out.actions == ()


def test_directory_moved_out_is_one_sided_at_move_self_and_its_watches_retire() -> None:
    n = tree()
    out = n.feed(batch(0, frm(1, 3, b"d", True), ev(2, raw.IN_MOVE_SELF), ev(3, raw.IN_CREATE, b"late"),
                       drained=False))
    # One-sided at once (no window wait), and nothing under the old path afterwards.
    assert brief(out) == [("rename", b"/w/d", b"", ["unwatched"])]
    assert sorted(out.actions, key=repr) == [Unwatch(2), Unwatch(3)]
    assert n.table.items() == [(1, b"/w")]
    out = n.feed(batch(1, ev(3, raw.IN_MODIFY, b"x"), ev(2, raw.IN_IGNORED), ev(3, raw.IN_IGNORED)))
    assert out == []
    assert n.retired_events == 4  # "late", "x" and the two IN_IGNORED


def test_move_into_a_retired_directory_ends_the_first_half_at_once() -> None:
    n = tree()
    n.feed(batch(0, frm(1, 3, b"d", True), ev(2, raw.IN_MOVE_SELF)))
    out = n.feed(batch(1, frm(1, 4, b"f"), to(2, 4, b"f"), drained=False))
    assert brief(out) == [("rename", b"/w/f", b"", ["unwatched"])]


def test_directory_created_or_moved_in_is_reported_for_watching_at_its_current_path() -> None:
    n = tree()
    out = n.feed(batch(0, ev(2, raw.IN_CREATE | raw.IN_ISDIR, b"new"), to(1, 9, b"in", True),
                       frm(1, 5, b"d", True), to(1, 5, b"moved", True)))
    # "new" was created in /w/d, which was renamed to /w/moved later in the same read.
    assert out.actions == (Watch(b"/w/moved/new"), Watch(b"/w/in"))
    # Asked once: the next feed asks nothing.
    assert n.feed(batch(1, ev(1, raw.IN_MODIFY, b"f"))).actions == ()


def test_rename_of_a_directory_never_watched_asks_for_a_watch_on_the_new_path() -> None:
    n = tree()
    out = n.feed(batch(0, ev(1, raw.IN_CREATE | raw.IN_ISDIR, b"x"), frm(1, 2, b"x", True),
                       to(1, 2, b"y", True)))
    assert out.actions == (Watch(b"/w/x"), Watch(b"/w/y"))


def test_ignored_ends_a_watch_with_a_record() -> None:
    n = tree()
    out = n.feed(batch(0, ev(3, raw.IN_DELETE_SELF), ev(3, raw.IN_IGNORED), ev(2, raw.IN_DELETE | raw.IN_ISDIR,
                                                                               b"e")))
    assert [r.kind for r in out] == ["delete_self", "watch_end", "delete"]
    assert out[1].path == DEEP
    assert 3 not in n.table


def test_root_moved_away_ends_its_watches() -> None:
    n = tree()
    out = n.feed(batch(0, ev(1, raw.IN_MOVE_SELF), ev(2, raw.IN_CREATE, b"x")))
    assert [r.kind for r in out] == ["move_self", "watch_end"]
    assert "moved away" in (out[1].message or "")
    assert len(n.table) == 0
    assert sorted(out.actions, key=repr) == [Unwatch(1), Unwatch(2), Unwatch(3)]


def test_unknown_wd_gives_an_unresolved_record_not_a_drop() -> None:
    n = tree()
    out = n.feed(batch(0, ev(42, raw.IN_CREATE, b"ghost")))
    assert brief(out) == [("unknown", b"ghost", ["unresolved"])]
    assert "42" in (out[0].message or "")


def test_unknown_mask_bits_and_several_event_bits_are_split_not_dropped() -> None:
    n = tree()
    out = n.feed(batch(0, (1, raw.IN_CREATE | raw.IN_MODIFY | 0x00100000, 0, b"f")))
    assert [(r.kind, r.path) for r in out] == [("modify", b"/w/f"), ("create", b"/w/f"), ("unknown", b"/w/f")]
    assert out[2].flags == ("unknown_mask",)
    assert out[2].mask == raw.IN_CREATE | raw.IN_MODIFY | 0x00100000


def test_source_notices_and_watch_changes_take_their_place() -> None:
    n = tree()
    out = n.feed(raw.SourceNotice(5, "create", b"/w/d/s", False, ("synthesized",)))
    assert brief(out) == [("create", b"/w/d/s", ["synthesized"])]
    n.feed(raw.WatchAdded(6, 7, b"/w/d/s2"))
    assert n.table.path(7) == b"/w/d/s2"
    n.feed(raw.WatchRemoved(7, 7))
    assert n.feed(batch(1, ev(7, raw.IN_IGNORED))) == []


def test_watch_table_range_operations() -> None:
    t = WatchTable()
    for wd, p in [(1, b"/a"), (2, b"/a/b"), (3, b"/a/b/c"), (4, b"/a/bc"), (5, b"/a.b")]:
        t.add(wd, p)
    assert sorted(wd for _, wd in t.below(b"/a/b")) == [2, 3]
    assert t.move(b"/a/b", b"/z") == 2
    assert t.items() == [(1, b"/a"), (5, b"/a.b"), (4, b"/a/bc"), (2, b"/z"), (3, b"/z/c")]
    assert sorted(t.remove_below(b"/a")) == [1, 4]
    assert t.path(5) == b"/a.b"
    t.add(9, b"/")
    assert t.prefix_by_key[9] == b"/"


def test_a_move_onto_a_known_directory_displaces_the_replaced_key() -> None:
    """Both tables keep the replaced directory's key, out of the path index, at the path it had, until its
    DELETE_SELF / IN_IGNORED end it (its records then name the path it had)."""
    from normalizer.core.tree import DirCache

    wt = WatchTable()
    dc = DirCache()
    for table, keys in ((wt, (1, 2, 3)), (dc, (b"1", b"2", b"3"))):
        table.add(keys[0], b"/w/a/x")  # the directory about to be replaced
        table.add(keys[1], b"/w/b/y")
        table.add(keys[2], b"/w/b/y/z")
        table.move(b"/w/b/y", b"/w/a/x")
        assert table.key(b"/w/a/x") == keys[1] and table.path(keys[2]) == b"/w/a/x/z"
        assert table.path(keys[0]) == b"/w/a/x" and len(table) == 3
        table.remove(keys[0])
        assert table.key(b"/w/a/x") == keys[1] and len(table) == 2


def test_an_exchange_swaps_the_two_subtrees_with_or_without_keys() -> None:
    """renameat2(RENAME_EXCHANGE) of two directories arrives as two moves: x -> y, then y -> x. The second
    moves the subtree the first displaced: by its key (fanotify) or, without one (inotify), because it goes
    from where the first went to where the first came from."""
    for with_key in (False, True):
        t = WatchTable()
        for wd, p in [(1, b"/w/x"), (2, b"/w/x/s"), (3, b"/v/y"), (4, b"/v/y/t"), (5, b"/v/y/t/u")]:
            t.add(wd, p)
        t.move(b"/w/x", b"/v/y", 1 if with_key else None)
        t.move(b"/v/y", b"/w/x", 3 if with_key else None)
        assert sorted(t.items()) == [(1, b"/v/y"), (2, b"/v/y/s"), (3, b"/w/x"), (4, b"/w/x/t"), (5, b"/w/x/t/u")]
        assert t.prefix_by_key[4] == b"/w/x/t/"



def test_an_unknown_directory_arriving_on_a_known_one_displaces_it_for_the_exchanges_other_half() -> None:
    """fanotify: an exchange of a known x with a y the cache never learned, y's half first (y arrives at /w/x
    from nowhere the cache knows): x and its subtree are displaced, not forgotten, and x's half moves them on
    by its key (corpus fanotify-c504c54a1a54). ``add`` forgets the occupant (a walk's answer is the truth)."""
    from normalizer.core.tree import DirCache

    dc = DirCache()
    dc.add(b"x", b"/w/x")
    dc.add(b"s", b"/w/x/s")
    dc.arrive(b"y", b"/w/x")
    assert dc.key(b"/w/x") == b"y" and dc.path(b"x") == b"/w/x" and dc.key(b"/w/x/s") is None
    dc.move(b"/w/x", b"/w/m/y", b"x")
    assert dc.items() == [(b"x", b"/w/m/y"), (b"s", b"/w/m/y/s"), (b"y", b"/w/x")]
    dc.add(b"z", b"/w/x")
    assert dc.path(b"y") is None and dc.key(b"/w/x") == b"z"

def test_a_move_back_after_a_replacement_moves_the_directory_that_is_there() -> None:
    """x renamed over an empty y whose end (IN_IGNORED) came, then renamed back: not an exchange."""
    t = WatchTable()
    t.add(1, b"/w/x")
    t.add(2, b"/w/y")
    t.move(b"/w/x", b"/w/y")
    t.remove(2)
    t.move(b"/w/y", b"/w/x")
    assert t.items() == [(1, b"/w/x")]


def test_own_scans_drop_exactly_the_expected_opens_and_closes() -> None:
    """A listing announced twice (own watch + parent's) drops two opens and two closes, and access only while
    one of its opens is not closed; a third open/close (another process) passes."""
    from normalizer.core.ownscan import ACCESS, CLOSE_NOWRITE, OPEN, OwnScans

    own = OwnScans()
    own.expect(b"/w/d", 2)
    seq = [(ACCESS, False), (OPEN, True), (OPEN, True), (OPEN, False), (ACCESS, True), (CLOSE_NOWRITE, True),
           (CLOSE_NOWRITE, True), (ACCESS, False), (CLOSE_NOWRITE, False)]
    assert [own.own(bit, b"/w/d") for bit, _ in seq] == [dropped for _, dropped in seq]
    assert not own and own.dropped == 5
    own.expect(b"/w/e")
    own.clear()
    assert not own.own(OPEN, b"/w/e")


def test_tmpfile_names_are_dropped_unless_known_real() -> None:
    from normalizer.core.tmpfile import TmpfileNames, is_tmpfile_name

    assert is_tmpfile_name(b"#123") and not is_tmpfile_name(b"#12a") and not is_tmpfile_name(b"#")
    names = TmpfileNames()
    assert names.drop(b"/w/#7", b"#7") and not names.drop(b"/w/x", b"x")
    names.appeared(b"/w/#8", b"#8")
    assert not names.drop(b"/w/#8", b"#8")
    names.gone(b"/w/#8")
    assert names.drop(b"/w/#8", b"#8") and names.dropped == 2


def test_a_feed_with_nothing_to_do_shares_the_empty_actions() -> None:
    """The common feed allocates no actions: ``actions`` is the class-wide empty tuple, not an instance one."""
    n = tree()
    out = n.feed(batch(0, ev(1, raw.IN_CREATE, b"f"), frm(1, 4, b"f"), to(1, 4, b"g")))
    assert [r.kind for r in out] == ["create", "rename"]
    assert out.actions is NO_ACTIONS and "actions" not in vars(out)
    out = n.feed(batch(1, ev(1, raw.IN_CREATE | raw.IN_ISDIR, b"d2")))
    assert out.actions == (Watch(b"/w/d2"),) and vars(out) == {"actions": out.actions}


def test_actions_are_frozen_values() -> None:
    a = Watch(b"/w/x", True)
    with pytest.raises(AttributeError):
        a.path = b"/y"  # type: ignore[misc]
    assert a == Watch(b"/w/x", True) != Watch(b"/w/x") and len({Unwatch(3), Unwatch(3)}) == 1


def test_an_entry_gone_between_the_watch_and_the_scan_of_a_new_directory_is_never_reported() -> None:
    """git writes objects/xx/tmp_obj_* in a new directory and unlinks it at once (found by
    tests/test_oracle_tools.py): the watch on xx can come before the unlink and the listing after it, so the
    kernel's DELETE names an entry the scan never reported. The scan is what the consumer was told: events on
    such an entry are dropped until the queue was seen empty; entries the scan reported, or the kernel created
    since, are reported as usual."""
    n = norm_with((1, b"/w"))
    out = n.feed(batch(0, ev(1, raw.IN_CREATE | raw.IN_ISDIR, b"xx"), drained=False))
    assert out.actions == (Watch(b"/w/xx"),)
    n.feed(raw.WatchAdded(1, 2, b"/w/xx"))
    n.feed(raw.SourceNotice(2, "create", b"/w/xx/obj", False, ("synthesized",)))
    out = n.feed(batch(3, ev(2, raw.IN_CLOSE_WRITE, b"tmp_obj"), ev(2, raw.IN_DELETE, b"tmp_obj"),
                       ev(2, raw.IN_ATTRIB, b"obj"), ev(2, raw.IN_CREATE, b"new"), ev(2, raw.IN_DELETE, b"new"),
                       drained=False))
    assert brief(out) == [("attrib", b"/w/xx/obj", []), ("create", b"/w/xx/new", []),
                          ("delete", b"/w/xx/new", [])]
    assert n.dropped_prescan == 2
    # Once the queue was seen empty, every event is reported again.
    n.feed(batch(4, drained=True))
    assert brief(n.feed(batch(5, ev(2, raw.IN_DELETE, b"other")))) == [("delete", b"/w/xx/other", [])]
    # A directory present at start (no Watch asked) is never fresh.
    m = norm_with((1, b"/w"), (3, b"/w/old"))
    assert brief(m.feed(batch(0, ev(3, raw.IN_DELETE, b"f"), drained=False))) == [("delete", b"/w/old/f", [])]


def test_a_lone_half_asks_to_be_woken_at_its_deadline_and_then_not() -> None:
    """``WakeAt`` comes when the matcher's next deadline changes: a lone MOVED_FROM sets it (read time +
    window), the Tick that ends it clears it (None); feeds that leave it as it was ask nothing."""
    from helpers import MS

    from normalizer.core.actions import WakeAt

    n = tree()
    window = n.matcher.window_ns
    out = n.feed(batch(0, frm(1, 7, b"f")))
    assert out == [] and out.actions == (WakeAt(window),)
    assert n.feed(batch(1, ev(1, raw.IN_CREATE, b"g"))).actions == ()  # same deadline: nothing asked
    out = n.feed(raw.Tick(window + MS))
    assert brief(out) == [("rename", b"/w/f", b"", ["timeout"]), ("create", b"/w/g", [])]  # held behind it
    assert out.actions == (WakeAt(None),)


def test_a_move_away_of_an_entry_gone_between_the_watch_and_the_scan_is_a_move_in_or_nothing() -> None:
    """The MOVED_FROM of an entry of a new directory that its scan never reported (moved away between the
    watch and the listing) names a ``src`` nobody was told about: it is dropped, so a move within the tree is
    reported as arriving at its destination (``unwatched``), and a move out of the tree as nothing."""
    n = norm_with((1, b"/w"))
    n.feed(batch(0, ev(1, raw.IN_CREATE | raw.IN_ISDIR, b"xx"), drained=False))
    n.feed(raw.WatchAdded(1, 2, b"/w/xx"))
    n.feed(raw.SourceNotice(2, "create", b"/w/xx/obj", False, ("synthesized",)))
    out = n.feed(batch(3, frm(2, 7, b"tmp"), to(1, 7, b"pack"), frm(2, 8, b"gone"), frm(2, 9, b"obj"),
                       to(1, 9, b"obj2"), drained=False))
    assert brief(out) == [("rename", b"", b"/w/pack", ["unwatched"]), ("rename", b"/w/xx/obj", b"/w/obj2", [])]
    assert n.dropped_prescan == 2
    assert n.close() == []  # nothing waits for "gone"


def test_a_new_directory_stays_fresh_under_its_watch_not_its_path() -> None:
    """A new directory is fresh (its events before the queue was seen empty are checked against its scan)
    by its watch, not by its path: after ``mkdir b`` (watched, scanned) and ``renameat2(b, d2,
    RENAME_EXCHANGE)``, ``b`` is the old ``d2``, whose ``rm -r b/e`` must be reported (the path-keyed check
    dropped the DELETE of ``e`` as an entry the scan of ``b`` never saw: tests/corpus/oracle/inotify-
    beec74b35425.json); and the new directory, now at ``d2``, still drops an entry its scan never reported."""
    n = norm_with((1, b"/w"), (2, b"/w/d2"), (3, b"/w/d2/e"))
    assert n.feed(batch(0, ev(1, raw.IN_CREATE | raw.IN_ISDIR, b"b"))).actions == (Watch(b"/w/b"),)
    n.feed(raw.WatchAdded(1, 4, b"/w/b"))
    n.feed(raw.SourceNotice(2, "create", b"/w/b/obj", False, ("synthesized",)))
    out = n.feed(batch(3, frm(1, 7, b"b", True), to(1, 7, b"d2", True), ev(4, raw.IN_MOVE_SELF),
                       frm(1, 8, b"d2", True), to(1, 8, b"b", True), ev(2, raw.IN_MOVE_SELF),
                       ev(3, raw.IN_DELETE, b"f1"), ev(3, raw.IN_DELETE_SELF), ev(3, raw.IN_IGNORED),
                       ev(2, raw.IN_DELETE | raw.IN_ISDIR, b"e"),
                       ev(4, raw.IN_DELETE, b"tmp"), ev(4, raw.IN_DELETE, b"obj"), drained=False))
    deletes = [r for r in brief(out) if r[0] == "delete"]
    assert deletes == [("delete", b"/w/b/e/f1", []), ("delete", b"/w/b/e", []), ("delete", b"/w/d2/obj", [])]
    assert n.dropped_prescan == 1


def test_a_directory_not_watched_yet_is_known_by_its_parent_watch_not_its_path() -> None:
    """In one read: a directory moved in to d2/e/a (not watched yet), d2/e renamed onto the empty d1, then
    d0 <-> d1/a exchanged (tests/corpus/oracle/inotify-b5fcc23218ee.json). The directory that arrived is known
    as (parent wd, name), which the rename above it does not change: the exchange's second half moves *it* to
    d0 (to be watched and scanned there), and the watched d0 stays at d1/a. Kept by path (d2/e/a, stale after
    d2/e -> d1), the exchange moved d0's watch back to d0 and the arrival's content was never reported."""
    n = norm_with((1, b"/w"), (2, b"/w/d0"), (3, b"/w/d1"), (4, b"/w/d2"), (5, b"/w/d2/e"))
    out = n.feed(batch(0, to(5, 1, b"a", True), frm(4, 2, b"e", True), to(1, 2, b"d1", True),
                       ev(5, raw.IN_MOVE_SELF), ev(3, raw.IN_DELETE_SELF), ev(3, raw.IN_IGNORED),
                       frm(1, 3, b"d0", True), to(5, 3, b"a", True), ev(2, raw.IN_MOVE_SELF),
                       frm(5, 4, b"a", True), to(1, 4, b"d0", True)))
    assert [r[:3] for r in brief(out) if r[0] == "rename"] == [
        ("rename", b"", b"/w/d2/e/a"), ("rename", b"/w/d2/e", b"/w/d1"), ("rename", b"/w/d0", b"/w/d1/a"),
        ("rename", b"/w/d1/a", b"/w/d0")]
    assert n.table.path(2) == b"/w/d1/a"
    assert Watch(b"/w/d0") in out.actions
    # The watched d0 is asked for at d1/a and the kernel gives its wd back: not scanned, so not fresh (a
    # fresh directory's entries that no scan reported are dropped): a rename in it has both sides.
    n.feed(raw.WatchAdded(1, 2, b"/w/d1/a"))
    n.feed(raw.WatchAdded(2, 6, b"/w/d0"))
    n.feed(raw.SourceNotice(3, "create", b"/w/d0/one", False, ("synthesized",)))
    out = n.feed(batch(4, frm(2, 9, b"f0"), to(2, 9, b"g0"), frm(6, 10, b"one"), to(6, 10, b"uno"),
                       frm(6, 11, b"gone"), to(6, 11, b"back"), drained=False))
    assert [r[:3] for r in brief(out)] == [("rename", b"/w/d1/a/f0", b"/w/d1/a/g0"),
                                           ("rename", b"/w/d0/one", b"/w/d0/uno"), ("rename", b"", b"/w/d0/back")]


def test_what_a_scan_reported_is_known_by_its_parent_watch_not_its_path() -> None:
    """The kernel's CREATE of an entry a scan already reported is dropped (it is the same entry). mkdir b
    with b/a in it (scanned), then b <-> d2 and a new b/a in the old d2, now at b: that CREATE is of another
    entry and must be reported, and the scanned one's queued CREATE (on b's watch, now at d2) dropped. Kept
    by path, the two were confused (tests/corpus/oracle/inotify-5aee4958484a.json)."""
    n = norm_with((1, b"/w"), (2, b"/w/d2"))
    n.feed(batch(0, ev(1, raw.IN_CREATE | raw.IN_ISDIR, b"b")))
    n.feed(raw.WatchAdded(1, 4, b"/w/b"))
    n.feed(raw.SourceNotice(2, "create", b"/w/b/a", False, ("synthesized",)))
    out = n.feed(batch(3, frm(1, 7, b"b", True), to(1, 7, b"d2", True), ev(4, raw.IN_MOVE_SELF),
                       frm(1, 8, b"d2", True), to(1, 8, b"b", True), ev(2, raw.IN_MOVE_SELF),
                       ev(2, raw.IN_CREATE, b"a"), ev(4, raw.IN_CREATE, b"a"), drained=False))
    assert [r for r in brief(out) if r[0] == "create"] == [("create", b"/w/b/a", [])]


def test_a_directory_that_left_before_it_was_watched_takes_no_move_self_of_another() -> None:
    """In one read: mkdir b, b moved out of the tree (not watched yet: no MOVE_SELF will come for it), d2 moved
    to b and back. d2's MOVE_SELF, at path b, must not be taken for the departed b's (which ended d2's watches
    as if d2 had left, and its content came again as synthesized creates: tests/corpus/oracle/
    inotify-d69cbecee9ee.json), nor the move back for an exchange with the departed b."""
    from helpers import MS

    from normalizer.core.actions import Unwatch

    n = norm_with((1, b"/w"), (3, b"/w/d2"), (4, b"/w/d2/e"))
    out = n.feed(batch(0, ev(1, raw.IN_CREATE | raw.IN_ISDIR, b"b"), frm(1, 5, b"b", True),
                       frm(1, 6, b"d2", True), to(1, 6, b"b", True), ev(3, raw.IN_MOVE_SELF),
                       frm(1, 7, b"b", True), to(1, 7, b"d2", True), ev(3, raw.IN_MOVE_SELF)))
    assert not [a for a in out.actions if isinstance(a, Unwatch)]
    assert (n.table.path(3), n.table.path(4)) == (b"/w/d2", b"/w/d2/e")
    out += n.feed(raw.Tick(n.matcher.window_ns + MS))
    assert [r[:3] for r in brief(out) if r[0] == "rename"] == [
        ("rename", b"/w/b", b""), ("rename", b"/w/d2", b"/w/b"), ("rename", b"/w/b", b"/w/d2")]


def test_settling_watches_are_bounded_and_those_settled_early_are_counted() -> None:
    """4,097 new directories watched while what was queued at their watches is unread: the bound settles the
    oldest 2,048 at once, and says how many (``settled_early``, in the source's stats)."""
    n = tree()
    names = [b"d%05d" % i for i in range(4097)]
    n.feed(batch(0, *(ev(1, raw.IN_CREATE | raw.IN_ISDIR, name) for name in names), drained=False))
    for i, name in enumerate(names):
        n.feed(raw.WatchAdded(1, 100 + i, b"/w/" + name))
    assert n.settled_early == 2048
    assert len(n._settling) == 4097 - 2048
    assert all(len(wds) <= 4097 - 2048 for wds in n._settling_at.values())
    assert n._settling_at[b"/w/d04096"] == {100 + 4096} and b"/w/d00000" not in n._settling_at
