"""The engine's public face: what clients (CLI, desktop, features) import to analyze images."""

from loupe.api.engine import AnalyzeRequest, Engine, ImageInput

__all__ = ["AnalyzeRequest", "Engine", "ImageInput"]
