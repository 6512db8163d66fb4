"""Fixtures for the results store: a tiny task, folders of distinct images, a fake engine, a real tiny model."""

from __future__ import annotations

import json
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from loupe.api import AnalyzeRequest, Engine
from loupe.backends.fake import FakeBackend
from loupe.core.tasks import Task, builtin_task
from loupe.core.types import Result
from loupe.models.synthetic import SyntheticModel, build

from tests.noise import write_noise_pngs

REPO = Path(__file__).resolve().parents[2]
DIGIT_TASK = {
    "name": "digit",
    "instructions": "Give one digit.",
    "schema": {
        "type": "object",
        "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 9}},
        "required": ["n"],
        "additionalProperties": False,
    },
    "options": {"max_tokens": 16, "review_threshold": 0.5},
}
DEFECTS_OUT = (
    '{"defects": [{"label": "scratch", "box_2d": [100, 200, 500, 600], "severity": 2, "reason": "line"},'
    ' {"label": "dent", "box_2d": [600, 100, 900, 400], "severity": 4, "reason": "bump"}]}'
)


@pytest.fixture(autouse=True)
def _private_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test touches the user's real store: the default location is a temp file."""
    db = tmp_path / "default-loupe.db"
    monkeypatch.setenv("LOUPE_DB", str(db))
    return db


def make_images(folder: Path, n: int, *, seed: int = 0, size: int = 16, start: int = 0) -> Path:
    """`n` distinct small PNGs named 000.png, 001.png, ... in `folder`."""
    write_noise_pngs(folder, n, seed=seed, size=(size + 8, size), name="{i:03d}.png", start=start)
    return folder


def fake_analyze(outputs: list[str], *, prob: float = 0.9) -> tuple[Callable[[str, Task], Result], list[str]]:
    """An analyze function over the scripted fake backend, and the list of paths it was called with."""
    engine = Engine(FakeBackend(outputs, prob=prob), model="fake")
    calls: list[str] = []

    def analyze(path: str, task: Task) -> Result:
        calls.append(path)
        return engine.analyze(AnalyzeRequest((path,), task))

    return analyze, calls


def result_count(db: Path) -> int:
    """Committed results in a store another process is writing (0 before it exists)."""
    if not db.exists():
        return 0
    conn = sqlite3.connect(db, timeout=30)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM results").fetchone()[0])
    except sqlite3.OperationalError:  # the schema is not there yet
        return 0
    finally:
        conn.close()


@pytest.fixture(scope="session")
def store_model(tmp_path_factory: pytest.TempPathFactory) -> SyntheticModel:
    """The tiny random-weight SmolVLM (text + mmproj GGUF), built in milliseconds."""
    return build("tiny-smolvlm", tmp_path_factory.mktemp("store-model"))


@pytest.fixture(scope="session")
def model_args(store_model: SyntheticModel) -> list[str]:
    """CLI arguments that load the tiny model on one thread."""
    return ["--model-path", str(store_model.text_path), "--mmproj", str(store_model.mmproj_path), "--threads", "1"]


@pytest.fixture(scope="session")
def digit_task(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A task file whose answers take a handful of tokens (fast items)."""
    path = tmp_path_factory.mktemp("tasks") / "digit.json"
    path.write_text(json.dumps(DIGIT_TASK))
    return path


@pytest.fixture
def defects() -> Task:
    """The built-in defects task (boxes with labels)."""
    return builtin_task("defects")


def batch_command(*args: str) -> list[str]:
    """`loupe batch ...` as a child process."""
    return [sys.executable, "-m", "loupe.cli", "batch", *args]
