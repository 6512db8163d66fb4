"""App wiring shared by the CLI and the desktop: models, lines and options built from plain values, never argparse."""

from loupe.wiring import options
from loupe.wiring.line import LineSettings, LineSettingsError, build_line, with_outputs

__all__ = ["LineSettings", "LineSettingsError", "build_line", "options", "with_outputs"]
