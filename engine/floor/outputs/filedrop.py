"""File-drop output: the verdict as JSON next to the image (written whole, then renamed into place)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from loupe.floor.outputs.base import OutputError


class FileDropSink:
    """Writes `<image><suffix>` (default `photo.jpg.json`) beside each image the message names."""

    name = "file"

    def __init__(self, suffix: str = ".json") -> None:
        self.suffix = suffix
        self.destination = f"<image>{suffix}"

    def target(self, image: str) -> Path:
        """Where the JSON for an image goes."""
        return Path(image + self.suffix)

    def send(self, payload: dict[str, Any]) -> None:
        image = payload.get("image")
        if not image:
            raise OutputError("file drop: the message names no image")
        target = self.target(str(image))
        tmp = target.with_name(f".{target.name}.tmp")
        try:
            tmp.write_text(json.dumps(payload, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
            os.replace(tmp, target)
        except OSError as exc:
            raise OutputError(f"file drop {target}: {exc.strerror or exc}") from None

    def close(self) -> None:
        pass
