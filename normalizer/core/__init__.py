"""The sans-IO core: stream items, kernel ABI bits, matcher, path table, normalizers, filters, shadow tree.

Nothing here does I/O or loads a system library (tests/test_layout.py holds it to that), so replay and the
network client import it anywhere."""
