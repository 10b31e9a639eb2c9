"""The ``fsnorm`` command (see :mod:`normalizer.cli.main`)."""

from .main import main

__all__ = ["main"]
