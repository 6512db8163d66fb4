"""The text the model reads: image ids, the task's instructions and the compact schema."""

from __future__ import annotations

import json
from typing import Any

from loupe.core.constrain.base import DEFAULT_LAYOUT, LAYOUTS, REFUSAL_PREFIX

MEDIA = "<__media__>"  # placeholder a backend replaces with its own image marker


def image_id(index: int) -> str:
    """`img_01`, `img_02`, ... for the image at 0-based `index`."""
    return f"img_{index + 1:02d}"


def user_text(
    instructions: str,
    schema: dict[str, Any] | bool,
    n_images: int,
    *,
    allow_refusal: bool = True,
    layout: str = DEFAULT_LAYOUT,
) -> str:
    """One user message: the instructions and the contract first, then each image tagged with its id.

    The task's part comes before the images so that every request of a batch with the same task shares
    one prompt prefix, which a backend can keep in its KV cache instead of prefilling it again.
    """
    lines = [instructions]
    shown = json.dumps(schema, separators=LAYOUTS[layout], ensure_ascii=False)  # as the answer will be laid out
    lines.append(f"Answer with one JSON object that matches this JSON Schema: {shown}")
    if "box_2d" in shown:
        lines.append("Boxes are [ymin, xmin, ymax, xmax] normalised to 0-1000.")
    if allow_refusal:
        lines.append(f"If you cannot or must not answer, reply {REFUSAL_PREFIX} followed by the reason.")
    if n_images > 1:
        lines.append("Refer to images by their ids (img_01, img_02, ...).")
    lines += [f"{image_id(i)}: {MEDIA}" for i in range(n_images)]
    return "\n".join(lines)
