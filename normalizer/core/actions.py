"""What a normalizer asks its source to do, returned with the records (h11 style: events in, events and
actions out).

``feed(item)`` returns a :class:`Fed`: the records that are final now, in order, and in ``Fed.actions`` what
the source must carry out before it reads again, in the order given. A source that only carries out actions
and a replay that ignores them (it adds and removes no watches) see the same records.

Cost: :class:`Fed` is a ``list`` of records whose ``actions`` is the class-wide empty tuple until a feed has
something to ask; so the common feed (no action) allocates nothing beyond the list it always returned, and
nothing per event (benchmarks/bench_matcher.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..records import Rec


class Unwatch:
    """Stop watching a directory that left the tree: inotify ``rm_watch(key)`` (key = wd); fanotify removes
    the inode mark of the directory handle ``key`` (with a filesystem mark there is nothing to remove)."""

    __slots__ = ("key",)
    key: int | bytes

    def __init__(self, key: int | bytes) -> None:
        object.__setattr__(self, "key", key)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("actions are frozen")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Unwatch) and other.key == self.key

    def __hash__(self) -> int:
        return hash((Unwatch, self.key))

    def __repr__(self) -> str:
        return f"Unwatch({self.key!r})"


class Watch:
    """Watch a directory that appeared (created, or moved in from outside) at ``path`` -- its current path,
    after the whole read -- and list what it already holds. ``moved_in``: it came in with content (a
    fanotify filesystem mark reports what a newly created directory will hold, not what one moved in held)."""

    __slots__ = ("moved_in", "path")
    path: bytes
    moved_in: bool

    def __init__(self, path: bytes, moved_in: bool = False) -> None:
        object.__setattr__(self, "path", path)
        object.__setattr__(self, "moved_in", moved_in)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("actions are frozen")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Watch) and (other.path, other.moved_in) == (self.path, self.moved_in)

    def __hash__(self) -> int:
        return hash((Watch, self.path, self.moved_in))

    def __repr__(self) -> str:
        return f"Watch({self.path!r}, moved_in={self.moved_in})"


class Rescan:
    """List the subtree at ``path`` (its current path, after the whole read) again and report what differs
    from what the records said so far, as ``synthesized`` records; mark (inode marks) every directory in it.

    Why an action, not records: the core knows *that* its view of a subtree may be wrong (fanotify merged a
    directory's renames, so where the directory stood at an event below it could not be known, and those
    events were held back; inotify watched a new directory by a path that events still queued had given to
    another directory) but only a listing can say what the subtree holds; so, as for an overflow, the core
    says what is certain, and asks the source for the listing it cannot do itself (sans-IO). ``why`` is the
    message the synthesized records carry."""

    __slots__ = ("path", "why")
    path: bytes
    why: str

    def __init__(self, path: bytes, why: str) -> None:
        object.__setattr__(self, "path", path)
        object.__setattr__(self, "why", why)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("actions are frozen")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Rescan) and (other.path, other.why) == (self.path, self.why)

    def __hash__(self) -> int:
        return hash((Rescan, self.path, self.why))

    def __repr__(self) -> str:
        return f"Rescan({self.path!r}, why={self.why!r})"


class WakeAt:
    """Feed a ``Tick`` at monotonic time ``t_ns`` if nothing was read by then (a lone rename half's window
    ends then); ``None``: no deadline any more, wait for the kernel only.

    Returned only when the deadline *changed* (a feed that left it as it was asks for nothing), so the source
    keeps the last one it was given; this replaces asking the matcher for its next deadline from outside."""

    __slots__ = ("t_ns",)
    t_ns: int | None

    def __init__(self, t_ns: int | None) -> None:
        object.__setattr__(self, "t_ns", t_ns)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("actions are frozen")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WakeAt) and other.t_ns == self.t_ns

    def __hash__(self) -> int:
        return hash((WakeAt, self.t_ns))

    def __repr__(self) -> str:
        return f"WakeAt({self.t_ns!r})"


class Resolve:
    """Find where the directory with handle ``key`` is now (fanotify: ``open_by_handle_at``) and feed the
    answer as a ``HandleResolved`` item. The batch that named the handle is held until every handle it asked
    about was answered (answers come after their batch: capture format version 3)."""

    __slots__ = ("key",)
    key: bytes

    def __init__(self, key: bytes) -> None:
        object.__setattr__(self, "key", key)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("actions are frozen")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Resolve) and other.key == self.key

    def __hash__(self) -> int:
        return hash((Resolve, self.key))

    def __repr__(self) -> str:
        return f"Resolve({self.key!r})"


Action = Unwatch | Watch | Rescan | WakeAt | Resolve

#: The shared "nothing to do": never mutated, so no feed needs its own.
NO_ACTIONS: tuple[Action, ...] = ()


class Fed(list["Rec"]):
    """One feed's result: the records (this list, in order) and ``actions`` (a tuple, in order).

    A list subclass so that the many callers that only want records (replay, tests, ``out += n.feed(x)``)
    keep working, and so the hot path appends as before. ``actions`` is set on the instance only when there is
    one; otherwise the class attribute, the shared empty tuple, answers."""

    actions: tuple[Action, ...] = NO_ACTIONS
