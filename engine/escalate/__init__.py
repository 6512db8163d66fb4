"""Hybrid mode: escalate doubtful results up a ladder of models, within a budget, auditing what leaves."""

from loupe.escalate.connection import ConnectionCheck, check_connection
from loupe.escalate.hybrid import Escalator, cloud_allowed, offline_veto, settings_key
from loupe.escalate.policy import Budget, Escalation, Ledger, Policy, Step, StepRecord, Thresholds, escalate

__all__ = [
    "Budget",
    "ConnectionCheck",
    "Escalation",
    "Escalator",
    "Ledger",
    "Policy",
    "Step",
    "StepRecord",
    "Thresholds",
    "check_connection",
    "cloud_allowed",
    "escalate",
    "offline_veto",
    "settings_key",
]
