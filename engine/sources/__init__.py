"""Where line images come from: a watched folder or a camera, behind one Source protocol."""

from loupe.sources.base import Capture, FakeSource, Source, SourceHealth
from loupe.sources.resolve import open_source

__all__ = ["Capture", "FakeSource", "Source", "SourceHealth", "open_source"]
