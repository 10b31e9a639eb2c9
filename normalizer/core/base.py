"""What the inotify and fanotify normalizers share around their matcher: feeding, closing, and turning the
directories that appeared or left during a feed into the actions returned with its records."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from ..records import Rec
from . import raw
from .actions import Action, Fed, Rescan, Unwatch, WakeAt, Watch
from .matcher import Matcher, MatcherSettings
from .ownscan import OwnScans
from .tmpfile import TmpfileNames


class NormalizerBase:
    """What the inotify and fanotify normalizers share around their matcher.

    A subclass notes, while feeding, the watches to end (``_retire_requests``: wds or directory fids) and the
    directories that appeared (``_new_dirs``, in its own terms, resolved by :meth:`_watches` when the feed
    ends), and the subtrees to list again (``_rescan_requests``: (path, why), fanotify's directories whose
    place was uncertain, inotify's paths rebound while a new watch settled); :meth:`_act` turns them into the
    feed's actions: the unwatches first, then the watches (a watch below a directory that left is not asked
    for, as its path no longer resolves), then the rescans."""

    matcher: Matcher
    _retire_requests: list[int] | list[bytes]
    _new_dirs: list[tuple[int, bytes]] | list[tuple[bytes, bool]]

    def __init__(self, settings: MatcherSettings) -> None:
        self.matcher = Matcher(**settings)
        #: Events on an unnamed O_TMPFILE file's "#<inode>" name are dropped (normalizer.core.tmpfile).
        self.tmpfiles = TmpfileNames()
        #: fsnorm's own directory listings, whose open/access/close_nowrite are dropped (core/ownscan.py).
        self.own_scans = OwnScans()
        #: Subtrees (current path, why) to list again and diff (:class:`~.actions.Rescan`), this feed.
        self._rescan_requests: list[tuple[bytes, str]] = []
        #: The matcher deadline last announced with a WakeAt action.
        self._wake_at: int | None = None

    def feed(self, item: raw.AnyStreamItem) -> Fed:
        raise NotImplementedError

    def feed_all(self, items: Iterable[raw.AnyStreamItem]) -> list[Rec]:
        """The records of several items (actions are dropped: for callers that carry none out)."""
        out: list[Rec] = []
        for item in items:
            out.extend(self.feed(item))
        return out

    def close(self) -> list[Rec]:
        """End of stream: pending halves become one-sided (``shutdown``); everything held is returned."""
        out: list[Rec] = []
        self.matcher.close(out)
        return out

    def _act(self, out: Fed) -> Fed:
        """Attach the actions this feed produced to its result. The common feed has none and pays two
        truth tests (``out.actions`` stays the shared empty tuple)."""
        if self._retire_requests or self._new_dirs or self._rescan_requests:
            actions: list[Action] = [Unwatch(key) for key in self._retire_requests]
            actions.extend(self._watches())
            actions.extend(Rescan(path, why) for path, why in self._rescan_requests)
            self._retire_requests.clear()
            self._new_dirs.clear()
            self._rescan_requests.clear()
            out.actions = tuple(actions)
        return out

    def _wake(self, out: Fed) -> Fed:
        """Append ``WakeAt`` if the matcher's next deadline changed during this feed (the last action: the
        deadline is the matcher's after everything else). The common feed pays one call that finds no
        deadline."""
        deadline = self.matcher.next_deadline()
        if deadline != self._wake_at:
            self._wake_at = deadline
            out.actions = (*out.actions, WakeAt(deadline))
        return out

    def _watches(self) -> Iterator[Watch]:
        """The ``Watch`` actions for ``_new_dirs``, resolved against the table as it is after the feed."""
        raise NotImplementedError

    @staticmethod
    def _unique(paths: Iterable[tuple[bytes, bool]]) -> Iterator[Watch]:
        """One Watch per path, in first-seen order; ``moved_in`` if any of its entries says so (a directory
        created, then moved out of a directory whose events were held back and in again, in one read: its
        content must be listed; corpus fanotify-d2fa7cf49377)."""
        seen: dict[bytes, bool] = {}
        for path, moved_in in paths:
            seen[path] = seen.get(path, False) or moved_in
        return (Watch(path, moved_in) for path, moved_in in seen.items())
