"""Small, single-purpose widgets the main window is composed of."""
