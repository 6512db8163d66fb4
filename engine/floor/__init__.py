"""The factory floor: image sources, PASS/FAIL verdicts on a line, and deliveries to line outputs."""

from loupe.floor.line import Line, LineEvents, LineOutcome, recent
from loupe.floor.outputs.delivery import Delivery
from loupe.floor.sources.base import SourceHealth

__all__ = ["Delivery", "Line", "LineEvents", "LineOutcome", "SourceHealth", "recent"]
