"""Capture logs: the format, writer and reader (:mod:`.log`) and replay (:mod:`.replay`)."""
