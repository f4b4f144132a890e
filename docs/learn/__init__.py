"""The guide's chapters are Markdown; this file makes docs/learn a package only so that its
conftest.py imports as `learn.conftest` and not as a second top-level `conftest` beside
tests/conftest.py (pytest's --doctest-modules imports both)."""
