"""The part of the harnesses that decides what a failure is: known bugs are counted, the rest re-raised."""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from fuzz.checks import known_bug

WORK = Path(__file__).parent / "work"
STRICT = os.environ.get("FSNORM_FUZZ_STRICT") == "1"
seen_known: Counter[str] = Counter()


def guard(harness: str, data: bytes, check: Callable[[], object]) -> None:
    """Run ``check``; an exception that is a known bug is counted (and its first input kept), anything else
    propagates to the fuzzer, which saves the input as a crash."""
    try:
        check()
    except Exception as exc:
        bug = None if STRICT else known_bug(exc)
        if bug is None:
            raise
        seen_known[bug] += 1
        if seen_known[bug] == 1:
            keep = WORK / "known" / harness
            keep.mkdir(parents=True, exist_ok=True)
            (keep / f"{bug}-{hashlib.sha1(data).hexdigest()[:12]}").write_bytes(data)
