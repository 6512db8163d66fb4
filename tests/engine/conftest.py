"""Fixtures for the engine tests: the fake Hub (kept in fake_hub.py so the desktop tests can share it)."""

from tests.engine.fake_hub import hub

__all__ = ["hub"]
