"""Turns a `--source` argument into a Source: a folder is watched, anything else is a camera."""

from __future__ import annotations

from pathlib import Path

from loupe.core.errors import InputError
from loupe.floor.sources.base import Source

CAMERA_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "udp://", "tcp://")


def open_source(
    spec: str,
    *,
    frames_dir: str | Path,
    after: str = "move",
    settle_s: float = 1.0,
    poll: bool = False,
    interval_s: float = 1.0,
    trigger: bool = False,
    allow_missing: bool = False,
) -> Source:
    """DIR -> a watched folder; a USB index (`0`), a stream URL or a video file -> a camera whose frames are saved
    under `frames_dir`. A path that does not exist and is not a URL is refused (a typo should not wait forever),
    unless `allow_missing` (the kiosk at boot, before the share is mounted): then it is a folder to wait for."""
    if spec.isdigit() or spec.startswith(CAMERA_SCHEMES) or Path(spec).is_file():
        from loupe.floor.sources.camera import CameraSource  # OpenCV is imported only for cameras

        return CameraSource(spec, frames_dir, interval_s=interval_s, trigger=trigger)
    if Path(spec).is_dir() or (allow_missing and not Path(spec).exists()):
        from loupe.floor.sources.watch import WatchSource

        return WatchSource(spec, after=after, settle_s=settle_s, poll=poll)
    raise InputError(f"{spec}: not a folder, a camera index, a stream URL (rtsp://, http://) or a video file")
