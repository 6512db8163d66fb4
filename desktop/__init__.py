"""The PySide6 desktop app, a thin client of the engine (built in the desktop issue; nothing here yet)."""
