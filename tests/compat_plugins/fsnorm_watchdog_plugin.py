"""pytest plugin loaded into *watchdog's own* test suite (``-p fsnorm_watchdog_plugin``): every emitter and
observer their fixtures and tests construct is fsnorm's.

* ``tests/utils.py`` (their Helper) builds ``Emitter(event_queue, watch)`` or ``InotifyFullEmitter(...)`` from
  module globals: both are replaced by :class:`normalizer.compat.watchdog.FsnormEmitter` /
  ``FsnormFullEmitter``;
* ``test_inotify_emitter.py`` imports ``InotifyObserver`` by name: replaced by
  :class:`normalizer.compat.watchdog.Observer` in every test module that has it.

At the end it writes how many fsnorm emitters were started to ``$FSNORM_WATCHDOG_REPORT`` (JSON), so the
caller can prove that the substitution happened (a suite that silently ran watchdog's emitter would pass).
``$FSNORM_WATCHDOG_SHARD`` (``I/N``) runs one of N shards of the collected tests.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest

from normalizer.compat import watchdog as compat

_started = {"emitters": 0, "observers": 0}
_orig_start = compat.FsnormEmitter.on_thread_start
_orig_init = compat.Observer.__init__


def _counting_start(self: compat.FsnormEmitter) -> None:
    _orig_start(self)
    _started["emitters"] += 1


def _counting_init(self: compat.Observer, **kwargs: object) -> None:
    _orig_init(self, **kwargs)  # type: ignore[arg-type]
    _started["observers"] += 1


compat.FsnormEmitter.on_thread_start = _counting_start  # type: ignore[method-assign]
compat.Observer.__init__ = _counting_init  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def _fsnorm_emitter(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    import tests.utils as their_utils  # their package: the unpacked sdist is the working directory

    monkeypatch.setattr(their_utils, "Emitter", compat.FsnormEmitter)
    monkeypatch.setattr(their_utils, "InotifyFullEmitter", compat.FsnormFullEmitter)
    if hasattr(request.module, "InotifyObserver"):
        monkeypatch.setattr(request.module, "InotifyObserver", compat.Observer)
    yield


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``$FSNORM_WATCHDOG_SHARD`` = ``I/N``: keep every N-th test from the I-th (the caller runs N shards side
    by side: their tests mostly wait on queue timeouts, so the shards add up in time, not in CPU)."""
    shard = os.environ.get("FSNORM_WATCHDOG_SHARD")
    if shard:
        index, count = map(int, shard.split("/"))
        items[:] = items[index::count]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    report = os.environ.get("FSNORM_WATCHDOG_REPORT")
    if report:
        with open(report, "w") as f:
            json.dump(_started, f)
