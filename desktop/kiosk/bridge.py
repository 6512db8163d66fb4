"""The line's callbacks (from its worker thread) re-emitted as Qt signals delivered on the GUI thread."""

from __future__ import annotations

from loupe.floor import LineOutcome, SourceHealth
from PySide6.QtCore import QObject, Signal


class LineBridge(QObject):
    """Implements loupe.floor.line.LineEvents; connect the signals, hand the bridge to the Line as its events."""

    modelState = Signal(str, str)  # state, detail
    sourceState = Signal(object)  # SourceHealth
    outcome = Signal(object)  # LineOutcome
    problem = Signal(str)
    synthetic = Signal(str)  # the model's name: it has random weights (a synthetic test model)

    def model_state(self, state: str, detail: str) -> None:
        self.modelState.emit(state, detail)

    def source_state(self, health: SourceHealth) -> None:
        self.sourceState.emit(health)

    def outcome_ready(self, outcome: LineOutcome) -> None:
        self.outcome.emit(outcome)

    def problem_seen(self, message: str) -> None:
        self.problem.emit(message)

    def synthetic_model(self, name: str) -> None:
        self.synthetic.emit(name)


class LineEventsAdapter:
    """LineEvents for the Line, forwarding to the bridge (the bridge's signal names shadow the method names)."""

    def __init__(self, bridge: LineBridge) -> None:
        self.bridge = bridge

    def model_state(self, state: str, detail: str) -> None:
        self.bridge.model_state(state, detail)

    def source_state(self, health: SourceHealth) -> None:
        self.bridge.source_state(health)

    def outcome(self, outcome: LineOutcome) -> None:
        self.bridge.outcome_ready(outcome)

    def problem(self, message: str) -> None:
        self.bridge.problem_seen(message)
