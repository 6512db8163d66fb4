"""`loupe eval`: score models and ladders on a labelled set, calibrate confidence, fit escalation thresholds."""

from loupe.eval.evaluate import Launcher
from loupe.eval.runner import System

__all__ = ["Launcher", "System"]
