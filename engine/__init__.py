"""Loupe's engine: image -> JSON that matches a JSON Schema, computed locally (Qt-free)."""
