"""The engine's public face: what clients (CLI, desktop, features, scripts) import to analyze images.

from loupe import Engine, AnalyzeRequest, ModelSpec, load_task, open_model
with open_model(ModelSpec(model="smolvlm-256m")) as engine:
    result = engine.analyze(AnalyzeRequest(("photo.jpg",), load_task("defects")))
"""

from pathlib import Path

from loupe.api.engine import AnalyzeRequest, Engine, ImageInput
from loupe.api.models import ModelSpec, Opened, format_problem, open_backend, open_model
from loupe.core.tasks import Task, builtin_task, load_task_file
from loupe.core.types import Result, Status


def load_task(name_or_path: str | Path) -> Task:
    """A built-in task by name ("defects"), or a task file (.json, .yaml/.yml, .toml) by path."""
    return load_task_file(name_or_path) if Path(name_or_path).suffix else builtin_task(str(name_or_path))


__all__ = [
    "AnalyzeRequest",
    "Engine",
    "ImageInput",
    "ModelSpec",
    "Opened",
    "Result",
    "Status",
    "Task",
    "format_problem",
    "load_task",
    "open_backend",
    "open_model",
]
