"""Build configuration beyond pyproject.toml: the optional C reader thread (normalizer/backends/_ringreader.c).

``optional=True``: where it cannot be built (no compiler, no Python headers) the install goes on and fsnorm uses
the Python reader thread (normalizer.backends.reader)."""

from setuptools import Extension, setup

READER = Extension("normalizer.backends._ringreader", ["normalizer/backends/_ringreader.c"], optional=True,
                   extra_compile_args=["-O2", "-Wall", "-std=gnu11"])

setup(ext_modules=[READER])
