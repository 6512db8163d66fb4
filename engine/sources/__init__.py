"""Where line images come from: a watched folder or a camera, behind one Source protocol."""

from engine.sources.base import Capture, FakeSource, Source, SourceHealth
from engine.sources.resolve import open_source

__all__ = ["Capture", "FakeSource", "Source", "SourceHealth", "open_source"]
