"""Types of the C JSON Lines writer (normalizer/formats/_jsonlines.c); see normalizer.formats.fastjson."""

from collections.abc import Callable

from normalizer.records import Rec

def encode_lines(records: list[Rec], end: str, reference: Callable[[Rec], str], /) -> bytes: ...
