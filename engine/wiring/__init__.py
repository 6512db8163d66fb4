"""App wiring shared by the CLI and the desktop: models, lines and stores built from settings, never from argparse."""
