"""Types of the C capture batch line decoder (normalizer/capture/_capline.c); see normalizer.capture.fastline."""

def parse_batch(
    line: bytes, known_bits: int, /
) -> tuple[int, bool, list[tuple[int, int, int, bytes]], int | None, int] | None: ...
