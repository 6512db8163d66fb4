"""Fixtures for the local API: the real server (uvicorn in a thread) over a tiny synthetic llama.cpp model."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

pytest.importorskip("fastapi")

from engine.api import Engine
from engine.backends.llama_cpp import LlamaCppBackend
from engine.serve.config import ServeConfig
from engine.serve.server import Running, serve_in_thread
from engine.serve.worker import Workers

MODEL = "tiny-smolvlm"
Start = Callable[..., AbstractContextManager[Running]]


@pytest.fixture(scope="module")
def start_server(tiny_models: dict, tmp_path_factory: pytest.TempPathFactory) -> Start:
    """Start a real server on a free 127.0.0.1 port: `with start_server(db=..., token=...) as running:`."""

    def start(db: Path | None = None, **config: object) -> AbstractContextManager[Running]:
        m = tiny_models["smolvlm"]
        backend = LlamaCppBackend(m.text_path, m.mmproj_path, model_id=MODEL, n_threads=2, n_ctx=4096)
        db = db or tmp_path_factory.mktemp("serve-db") / "loupe.db"
        return serve_in_thread(Workers(Engine(backend, model=MODEL), db),
                               ServeConfig(host="127.0.0.1", port=0, **config))  # type: ignore[arg-type]

    return start


@pytest.fixture(scope="module")
def server(start_server: Start) -> Iterator[Running]:
    """One open (no token) server shared by a module's tests."""
    with start_server() as running:
        yield running


def data_url(path: Path, mime: str = "image/jpeg") -> str:
    """A file as a base64 data URL."""
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode()
