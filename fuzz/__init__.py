"""Fuzzing harnesses for fsnorm (atheris) and the checks they share with tests/test_fuzz_corpus.py."""
