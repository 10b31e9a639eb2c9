"""Live sources, one module per kernel API: its ctypes binding and the source that reads it."""
