"""Remote fsnotify: wire protocol v1 (wire.py), the journal, ``fsnorm serve`` and the subscriber client."""
