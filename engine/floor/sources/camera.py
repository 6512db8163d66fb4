"""A camera through OpenCV (USB index, RTSP/HTTP URL or a video file), as a source of JPEG frames for the engine.

It grabs on an interval or on a trigger, saves each frame as a JPEG for the engine and the store, and reconnects with
backoff when the stream drops.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
from loupe.floor.sources.base import Backoff, Capture, SourceHealth

log = logging.getLogger("loupe.floor.sources")


class CameraSource:
    """Frames from one camera. `interval_s` > 0 grabs one frame that often; `trigger=True` grabs one per `trigger()`
    (a PLC input, a button). A video file ends at its last frame; a live camera that stops is reopened."""

    def __init__(
        self,
        target: str | int,
        out_dir: str | Path,
        *,
        interval_s: float = 1.0,
        trigger: bool = False,
        backoff: Backoff | None = None,
        quality: int = 92,
    ) -> None:
        self.target = int(target) if isinstance(target, str) and target.isdigit() else target
        self.name = f"camera {self.target}"
        self.out_dir = Path(out_dir)
        self.interval_s, self.triggered, self.quality = interval_s, trigger, quality
        self.backoff = backoff or Backoff()
        self.frames = 0
        self._cap: Any = None
        self._retry_at = 0.0
        self._next_at = 0.0
        self._trigger = threading.Event()
        self._ended = False
        self._health = SourceHealth("waiting", f"opening {self.target}")

    def trigger(self) -> None:
        """Grab one frame now (trigger mode); safe from any thread."""
        self._trigger.set()

    # -- the Source protocol -------------------------------------------------------------------------
    def next(self, timeout: float) -> Capture | None:
        """The next grabbed frame saved as a JPEG, or None after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not self._ended:
            left = deadline - time.monotonic()
            if not self._opened():
                if left <= 0:
                    return None
                time.sleep(min(left, max(0.0, self._retry_at - time.monotonic()), 0.25))
                continue
            if self._due(left):
                capture = self._grab()
                if capture is not None:
                    return capture
            elif left <= 0:
                return None
        return None

    def final_path(self, capture: Capture) -> str:
        return capture.path

    def finish(self, capture: Capture) -> str:
        """Frames stay where they were saved (the store and the kiosk show them)."""
        return capture.path

    def health(self) -> SourceHealth:
        """ok while frames come, reconnecting while the camera is away, ended after a video file's last frame."""
        return self._health

    def close(self) -> None:
        """Release the camera."""
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    # -- inside ----------------------------------------------------------------------------------------
    def _is_file(self) -> bool:
        return isinstance(self.target, str) and "://" not in self.target and Path(self.target).is_file()

    def _opened(self) -> bool:
        if self._cap is not None:
            return True
        now = time.monotonic()
        if now < self._retry_at:
            return False
        cap = cv2.VideoCapture(self.target)
        if not cap.isOpened():
            cap.release()
            self._fail(f"cannot open {self.target}")
            return False
        if isinstance(self.target, int):
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # USB (V4L2): hand out the newest frame, not a stale queued one
        self._cap = cap
        if self.backoff.failures:
            log.warning("camera %s is back", self.target)
        self.backoff.reset()
        self._health = SourceHealth("ok", f"connected to {self.target}")
        return True

    def _fail(self, why: str) -> None:
        delay = self.backoff.next_delay()
        self._retry_at = time.monotonic() + delay
        attempt = self.backoff.failures
        self._health = SourceHealth("reconnecting", f"{why}; retrying in {delay:g} s (attempt {attempt})")
        if self.backoff.failures == 1:
            log.warning("%s", self._health.detail)

    def _due(self, left: float) -> bool:
        """Wait (up to `left` s) for the trigger or the next interval tick; True when a frame should be grabbed."""
        if self.triggered:
            fired = self._trigger.wait(max(0.0, min(left, 0.25)))
            if fired:
                self._trigger.clear()
            return fired
        wait = self._next_at - time.monotonic()
        if wait > 0:
            if wait > left:
                return False
            time.sleep(wait)
        self._next_at = time.monotonic() + self.interval_s
        return True

    def _grab(self) -> Capture | None:
        ok, frame = self._cap.read()
        if not ok or frame is None:
            self.close()
            if self._is_file():
                self._ended = True
                self._health = SourceHealth("ended", f"{self.target}: end of video after {self.frames} frame(s)")
            else:
                self._fail(f"{self.target} stopped sending frames")
            return None
        self.frames += 1
        self.out_dir.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        path = self.out_dir / f"frame-{stamp}-{self.frames:06d}.jpg"
        if not cv2.imwrite(str(path), frame, [cv2.IMWRITE_JPEG_QUALITY, self.quality]):
            self._health = SourceHealth("reconnecting", f"cannot write frames to {self.out_dir}")
            return None
        self._health = SourceHealth("ok", f"{self.target}: {self.frames} frame(s)")
        return Capture(str(path), self.name)
