"""The factory floor: image sources, PASS/FAIL verdicts on a line, and deliveries to line outputs."""
