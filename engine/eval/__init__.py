"""`loupe eval`: score models and ladders on a labelled set, calibrate confidence, fit escalation thresholds."""
