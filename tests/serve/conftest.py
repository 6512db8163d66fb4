"""Fixtures for the local API: the real server (uvicorn in a thread) over a tiny synthetic llama.cpp model, one whose
context fits a very long generation, and the server log's canceled-request records."""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

pytest.importorskip("fastapi")

from loupe.api import Engine
from loupe.backends.llama_cpp import LlamaCppBackend
from loupe.serve.config import ServeConfig
from loupe.serve.server import Running, serve_in_thread
from loupe.serve.streaming import log as serve_log
from loupe.serve.worker import Workers

MODEL = "tiny-smolvlm"
LONG = {"type": "object", "properties": {"s": {"type": "string", "minLength": 9000}}, "required": ["s"]}
LONG_MAX = 8000  # seconds of decoding even for the tiny model (~2,000 tokens/s here): far past any client's patience
Start = Callable[..., AbstractContextManager[Running]]


def roots(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ...]:
    """What the test servers may read files under (as `loupe serve --allow-path`): the samples and the test temp."""
    from loupe.cli import SAMPLE

    return (SAMPLE.parent.resolve(), tmp_path_factory.getbasetemp().resolve())


@pytest.fixture(scope="module")
def start_server(tiny_models: dict, tmp_path_factory: pytest.TempPathFactory) -> Start:
    """Start a real server on a free 127.0.0.1 port: `with start_server(db=..., token=...) as running:`."""

    def start(db: Path | None = None, **config: object) -> AbstractContextManager[Running]:
        m = tiny_models["smolvlm"]
        backend = LlamaCppBackend(m.text_path, m.mmproj_path, model_id=MODEL, n_threads=2, n_ctx=4096)
        db = db or tmp_path_factory.mktemp("serve-db") / "loupe.db"
        config.setdefault("allow_paths", roots(tmp_path_factory))
        return serve_in_thread(
            Workers(Engine(backend, model=MODEL), db), ServeConfig(host="127.0.0.1", port=0, **config)
        )  # type: ignore[arg-type]

    return start


@pytest.fixture(scope="module")
def server(start_server: Start) -> Iterator[Running]:
    """One open (no token) server shared by a module's tests."""
    with start_server() as running:
        yield running


@pytest.fixture(scope="module")
def long_server(tiny_models: dict, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """A real server whose context fits LONG_MAX tokens, so a long generation is still running when a client leaves."""
    m = tiny_models["smolvlm"]
    backend = LlamaCppBackend(m.text_path, m.mmproj_path, model_id=MODEL, n_threads=2, n_ctx=LONG_MAX + 512)
    workers = Workers(Engine(backend, model=MODEL), tmp_path_factory.mktemp("serve-db") / "loupe.db")
    config = ServeConfig(host="127.0.0.1", port=0, max_tokens_cap=LONG_MAX, allow_paths=roots(tmp_path_factory))
    with serve_in_thread(workers, config) as running:
        yield running


class Canceled(logging.Handler):
    """Collects the server log's canceled-request records; `wait(n)` blocks until there are n of them."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []
        self._more = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        if hasattr(record, "loupe_request"):
            with self._more:
                self.records.append(record)
                self._more.notify_all()

    def wait(self, n: int = 1, timeout: float = 30) -> list[logging.LogRecord]:
        with self._more:
            assert self._more.wait_for(lambda: len(self.records) >= n, timeout), "no canceled request was logged"
            return list(self.records)


@pytest.fixture
def canceled() -> Iterator[Canceled]:
    """The canceled requests the server logs during one test."""
    handler, level = Canceled(), serve_log.level
    serve_log.addHandler(handler)
    serve_log.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        serve_log.removeHandler(handler)
        serve_log.setLevel(level)


def data_url(path: Path, mime: str = "image/jpeg") -> str:
    """A file as a base64 data URL."""
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode()
