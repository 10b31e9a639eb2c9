"""The common capture batch line decoded in one C call, where the ``_capline`` extension was built.

:class:`normalizer.capture.log.CaptureReader` reads an inotify capture's batch lines (``B``) with
:func:`parse_batch` first (``_capline.c``, built by setup.py with the machine's compiler, optional): for the
shape the writer produces it returns the batch's fields in one pass; for anything else it returns None and the
reader takes the reference path, ``json.loads`` and ``CaptureReader._batch``, which also reports every issue.
tests/test_capline.py and tests/test_compiled.py hold the two to identical items and issues. ``parse_batch``
is None where the extension is missing or ``FSNORM_PURE`` is set (the pure-Python path, :mod:`normalizer._compiled`).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from .._compiled import PURE_ENV

BatchFields = tuple[int, bool, list[tuple[int, int, int, bytes]], int | None, int]

parse_batch: Callable[[bytes, int], BatchFields | None] | None
try:
    from ._capline import parse_batch
except ImportError:  # not built (no compiler at install time)
    parse_batch = None
if os.environ.get(PURE_ENV, "") not in ("", "0"):
    parse_batch = None
