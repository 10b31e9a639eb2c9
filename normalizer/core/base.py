"""What the inotify and fanotify normalizers share around their matcher."""

from __future__ import annotations

from collections.abc import Iterable

from ..records import Rec
from . import raw
from .matcher import Matcher


class NormalizerBase:
    """What the inotify and fanotify normalizers share around their matcher."""

    matcher: Matcher

    def feed(self, item: raw.AnyStreamItem) -> list[Rec]:
        raise NotImplementedError

    def feed_all(self, items: Iterable[raw.AnyStreamItem]) -> list[Rec]:
        out: list[Rec] = []
        for item in items:
            out.extend(self.feed(item))
        return out

    def close(self) -> list[Rec]:
        """End of stream: pending halves become one-sided (``shutdown``); everything held is returned."""
        out: list[Rec] = []
        self.matcher.close(out)
        return out
