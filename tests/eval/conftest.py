"""Fixtures for `loupe eval`: the tiny synthetic models imported under short names, a digit task, labelled images."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from loupe.models.store import ModelStore
from loupe.models.synthetic import SyntheticModel

from tests.store.conftest import DIGIT_TASK as STORE_DIGIT_TASK
from tests.store.conftest import make_images

DIGIT_TASK = {
    **STORE_DIGIT_TASK,
    "options": {"max_tokens": 16},
    "escalation": {"ladder": ["local@low"], "thresholds": {"overall": 0.99}},  # random weights: always climbs
}


@pytest.fixture
def model_dir(tiny_models: dict[str, SyntheticModel], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private model folder where the tiny SmolVLM is `tiny-a` and the tiny Gemma 3 is `tiny-b`."""
    root = tmp_path / "models"
    monkeypatch.setenv("LOUPE_MODEL_DIR", str(root))
    monkeypatch.setenv("LOUPE_DB", str(tmp_path / "default-loupe.db"))
    store = ModelStore(root)
    for name, family in (("tiny-a", "smolvlm"), ("tiny-b", "gemma3")):
        store.import_local(tiny_models[family].text_path, tiny_models[family].mmproj_path, name=name)
    return root


@pytest.fixture
def digit_task_file(tmp_path: Path) -> Path:
    """The digit task as a JSON file (thresholds can be written into it)."""
    path = tmp_path / "digit.json"
    path.write_text(json.dumps(DIGIT_TASK))
    return path


@pytest.fixture
def digit_set(tmp_path: Path) -> Path:
    """Three labelled images as a JSONL of {image, data}: digits 3, 3 and 7."""
    make_images(tmp_path / "set" / "images", 3, seed=5)
    lines = [{"image": f"images/{i:03d}.png", "data": {"n": n}} for i, n in enumerate((3, 3, 7))]
    path = tmp_path / "set" / "labels.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path
