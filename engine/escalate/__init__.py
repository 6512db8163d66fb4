"""Hybrid mode: escalate doubtful results up a ladder of models, within a budget, auditing what leaves."""

from loupe.escalate.policy import Budget, Escalation, Ledger, Policy, Step, StepRecord, Thresholds, escalate

__all__ = ["Budget", "Escalation", "Ledger", "Policy", "Step", "StepRecord", "Thresholds", "escalate"]
