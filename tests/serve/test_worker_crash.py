"""`loupe serve` over a model process that dies: the request gets an error naming the signal, the server goes on.

The crash is real: SIGSEGV raised inside the worker's image encode for a 40x30 picture (the test-only hook of
loupe.backends.worker_child); every other image is analyzed normally, by a new worker after the crash.
"""

from __future__ import annotations

import base64
import io

from loupe.api import Engine
from loupe.backends.worker import WorkerBackend
from loupe.backends.worker_child import FAULT_ENV
from loupe.serve.config import ServeConfig
from loupe.serve.server import serve_in_thread
from loupe.serve.worker import Workers
from PIL import Image

from tests.serve.conftest import MODEL
from tests.serve.test_analyze_results import GAUGE, call


def _png(size: tuple[int, int], color: str) -> str:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def test_a_worker_crash_is_one_error_response_and_the_server_goes_on(tiny_models, tmp_path, monkeypatch):
    monkeypatch.setenv(FAULT_ENV, "encode:SIGSEGV@40x30")
    m = tiny_models["smolvlm"]
    backend = WorkerBackend(m.text_path, m.mmproj_path, model_id=MODEL, n_threads=1, n_ctx=4096)
    workers = Workers(Engine(backend, model=MODEL), tmp_path / "loupe.db")
    body = {"schema": GAUGE, "instructions": "Read the gauge.", "options": {"max_tokens": 32}}
    with serve_in_thread(workers, ServeConfig(host="127.0.0.1", port=0)) as server:
        status, r = call(server, "/v1/analyze", {**body, "image": _png((40, 30), "red")})
        assert r["status"] == "error" and "the model process crashed (SIGSEGV)" in r["error"], (status, r)
        assert "\n" not in r["error"] and "Traceback" not in str(r)
        for color in ("white", "blue"):  # the next requests run on a new model process
            status, r = call(server, "/v1/analyze", {**body, "image": _png((48, 36), color)})
            assert status == 200 and r["status"] in ("ok", "truncated"), r
    assert backend.restarts == 1
