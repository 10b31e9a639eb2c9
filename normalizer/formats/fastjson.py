"""The JSON Lines of a read's records in one C call, where the ``_jsonlines`` extension was built.

``fsnorm watch`` formats every read's records into one block of bytes (:class:`normalizer.cli.formatting.Output`).
For the json format that block is ``"".join(rec_to_json(r) + end for r in records)`` encoded to UTF-8; the C
function :func:`encode_lines` (``_jsonlines.c``, built by setup.py with the machine's compiler, optional) writes
the same bytes for the common record in one pass and hands every other record to :func:`rec_to_json`, the
reference. tests/test_compiled.py holds the two to identical bytes. ``encode_lines`` is None where the extension
is missing or ``FSNORM_PURE`` is set (the pure-Python path, :mod:`normalizer._compiled`).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from .._compiled import PURE_ENV
from ..records import Rec

encode_lines: Callable[[list[Rec], str, Callable[[Rec], str]], bytes] | None
try:
    from ._jsonlines import encode_lines
except ImportError:  # not built (no compiler at install time)
    encode_lines = None
if os.environ.get(PURE_ENV, "") not in ("", "0"):
    encode_lines = None
