"""The kiosk: a fullscreen PASS/FAIL/REVIEW screen for a production line, read at a glance from two metres."""
