"""Fixtures for the MLX / ONNX backend tests: the committed tiny HF-format models and their goldens."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from loupe.backends.base import GenerationRequest, PreparedImage
from loupe.core.prompt import MEDIA
from loupe.models.hf_synthetic import GOLDEN_TEXT, golden_image

TINY = Path(__file__).parent / "tiny"


def golden(family: str) -> dict[str, Any]:
    """golden.json plus the two logits arrays, as transformers computed them at build time."""
    info = json.loads((TINY / family / "golden.json").read_text())
    info["logits"] = np.load(TINY / family / "golden_logits.npy")
    info["text_logits"] = np.load(TINY / family / "golden_text_logits.npy")
    return info


def golden_request(with_image: bool = True) -> GenerationRequest:
    """The request the goldens were computed for (image first, then the text)."""
    images = (PreparedImage("img_01", golden_image()),) if with_image else ()
    text = (MEDIA if with_image else "") + GOLDEN_TEXT
    return GenerationRequest(text=text, images=images, constraint=None, schema={})


@pytest.fixture(scope="session")
def tiny_hf() -> Path:
    """The directory holding tiny/<family>/hf."""
    return TINY
