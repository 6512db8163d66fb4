"""The `loupe` command: one module per verb group (analyze, store, floor, eval, hybrid, models, serve, gui,
doctor), their shared helpers in common.py, the parser and dispatch table in main.py."""

from loupe.cli.common import SAMPLE
from loupe.cli.main import main, parser

__all__ = ["SAMPLE", "main", "parser"]
