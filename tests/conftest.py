"""Shared fixtures: sample images of every awkward kind, written fresh into tmp dirs."""

from __future__ import annotations

import os

# Qt without a screen in every test that opens a window (desktop, kiosk), whatever the shell has set
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from loupe.models.synthetic import SyntheticModel, build
from PIL import Image

FAMILIES = ("smolvlm", "gemma3")


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, SyntheticModel]:
    """Both tiny synthetic VLM families (text GGUF + mmproj), built once per session in milliseconds."""
    out = tmp_path_factory.mktemp("tiny-models")
    return {fam: build(f"tiny-{fam}", out) for fam in FAMILIES}


@pytest.fixture
def picture(tmp_path: Path) -> Path:
    """A 128x96 PNG of random pixels: an image the tiny models encode in a few milliseconds."""
    arr = np.random.default_rng(5).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    path = tmp_path / "p.png"
    Image.fromarray(arr).save(path)
    return path


def defects_request(backend: Any, path: Path, max_tokens: int = 24) -> Any:
    """A GenerationRequest for the built-in defects task on one image, as the pipeline builds it (greedy)."""
    from loupe.api.pipeline import prepare
    from loupe.backends.base import GenerationRequest
    from loupe.core.images.load import load_image
    from loupe.core.images.resize import image_tokens_for
    from loupe.core.prompt import user_text
    from loupe.core.tasks import builtin_task

    task = builtin_task("defects").with_options(max_tokens=max_tokens)
    prepared, _ = prepare([load_image(path)], task.options.detail)
    return GenerationRequest(
        text=user_text(task.instructions, task.schema, 1, allow_refusal=False),
        images=tuple(prepared),
        constraint=backend.compile(task.schema, allow_refusal=False),
        schema=task.schema,
        max_tokens=max_tokens,
        temperature=0.0,
        image_max_tokens=image_tokens_for(task.options.detail),
    )


@pytest.fixture(autouse=True)
def _prefix_cache_in_tmp(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The prompt-prefix KV files the CLI/app keep between runs go to this session's temp dir, not ~/.cache
    (shared by the session's tests, so later runs of a task load what earlier ones saved, as on a user's machine)."""
    monkeypatch.setenv("LOUPE_PREFIX_CACHE", str(tmp_path_factory.getbasetemp() / "prefix-kv"))
    # BF16 projector copies (loupe.backends.projector_bf16) too; the tiny models' F32 projectors need none
    monkeypatch.setenv("LOUPE_PROJECTOR_CACHE", str(tmp_path_factory.getbasetemp() / "projectors"))


@pytest.fixture(autouse=True)
def _never_online(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may reach the network: Loupe and huggingface_hub are told they are offline."""
    monkeypatch.setenv("LOUPE_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # read once at import, so patch the constant too


def _orientation_test_image() -> Image.Image:
    """A 200x100 image whose left half is red and right half blue (so rotation is visible)."""
    img = Image.new("RGB", (200, 100), (255, 0, 0))
    img.paste((0, 0, 255), (100, 0, 200, 100))
    return img


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Good and bad image files, by name (written once per session; tests must not modify them)."""
    tmp_path = tmp_path_factory.mktemp("images")
    out: dict[str, Path] = {}
    rng = np.random.default_rng(0)
    good = Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8))
    out["jpeg"] = tmp_path / "good.jpg"
    good.save(out["jpeg"], quality=90)
    out["png"] = tmp_path / "good.png"
    good.save(out["png"])
    # EXIF orientation 6: stored landscape, to be shown rotated 90° clockwise (portrait)
    exif = Image.Exif()
    exif[0x0112] = 6
    out["exif6"] = tmp_path / "exif6.jpg"
    _orientation_test_image().save(out["exif6"], exif=exif.tobytes(), quality=95)
    out["text_as_jpg"] = tmp_path / "notes.jpg"
    out["text_as_jpg"].write_text("this is not an image\n")
    buf = io.BytesIO()
    good.save(buf, format="PNG")
    out["truncated_png"] = tmp_path / "truncated.png"
    out["truncated_png"].write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    out["empty"] = tmp_path / "empty.png"
    out["empty"].write_bytes(b"")
    out["bomb"] = tmp_path / "bomb.png"
    Image.new("1", (20000, 20000)).save(out["bomb"], optimize=True)  # 400 Mpx, a few KB on disk
    out["missing"] = tmp_path / "does-not-exist.jpg"
    return out
