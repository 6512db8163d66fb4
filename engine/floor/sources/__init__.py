"""Where line images come from: a watched folder or a camera, behind one Source protocol."""

from loupe.floor.sources.base import Capture, FakeSource, Source, SourceHealth
from loupe.floor.sources.resolve import open_source

__all__ = ["Capture", "FakeSource", "Source", "SourceHealth", "open_source"]
