"""Helpers shared by more than one test package (``tests/`` is on ``sys.path`` through its conftest)."""
