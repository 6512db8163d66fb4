"""The Evaluate tab's wiring: the window's current task and model become an `loupe.eval` Launcher."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loupe.core.tasks import Task
from loupe.desktop.runner import LoadedModel
from loupe.desktop.widgets.eval_view import EvalView
from platformdirs import user_data_path

MakeLoader = Callable[[str], Callable[[], LoadedModel]]


def reports_root() -> Path:
    """Where the app writes evaluation reports (one folder per run)."""
    return user_data_path("loupe", appauthor=False) / "eval"


def eval_tab(
    db_path: Path,
    task: Callable[[], Task],
    model: Callable[[], str],
    make_loader: MakeLoader | None,
    out_root: Path | None = None,
) -> EvalView:
    """An EvalView that evaluates the picked task with the picked model (loaded apart from the analysis worker)."""
    if make_loader is None:  # no way to load a model by name (a window built without a model store)
        return EvalView(None)
    loader = make_loader

    def start(labelled: str, stop: threading.Event) -> Path:
        from loupe.eval import Launcher, System

        name = model()
        out = (out_root or reports_root()) / time.strftime("%Y%m%d-%H%M%S")

        def open_engine(wanted: str) -> Any:
            return loader(wanted)().engine

        def settings_of(wanted: str) -> dict[str, Any]:
            return {"backend": "llama_cpp", "model": wanted}

        launch = Launcher(db_path, task(), [System.of_model(name)], open_engine, settings_of, out)
        return launch(labelled, stop)

    return EvalView(start)
