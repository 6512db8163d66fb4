"""The model in a supervised child process (loupe.backends.worker), through the real llama.cpp on the tiny models.

Crashes are real: the child raises SIGSEGV inside mtmd's image encode or at the first generated token (the test-only
LOUPE_WORKER_FAULT hook of loupe.backends.worker_child), and the process dies of it as it would of a native fault.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
from loupe.api import AnalyzeRequest, Engine
from loupe.backends.llama_cpp import LlamaCppBackend
from loupe.backends.registry import backend_class
from loupe.backends.worker import ENV, WorkerBackend, describe_exit, enabled
from loupe.backends.worker_child import FAULT_ENV, MARK_ENV
from loupe.core.errors import BackendError, ModelLoadError
from loupe.core.tasks import builtin_task
from loupe.core.types import Status
from loupe.models.synthetic import SyntheticModel


@pytest.fixture(scope="module")
def tiny(tiny_models: dict[str, SyntheticModel]) -> SyntheticModel:
    return tiny_models["smolvlm"]


@pytest.fixture
def worker(tiny: SyntheticModel):
    w = WorkerBackend(tiny.text_path, tiny.mmproj_path, model_id="tiny-smolvlm", n_threads=1)
    yield w
    w.close()


def _defects(engine: Engine, image: Path, **kw):
    return engine.analyze(AnalyzeRequest((image,), builtin_task("defects")), **kw)


def test_the_registry_runs_llama_cpp_in_a_worker_unless_told_not_to(monkeypatch: pytest.MonkeyPatch):
    assert backend_class("llama_cpp") is WorkerBackend
    assert backend_class("llama_cpp", in_process=True) is LlamaCppBackend
    monkeypatch.setenv(ENV, "off")
    assert not enabled() and backend_class("llama_cpp") is LlamaCppBackend


def test_a_worker_gives_the_same_answer_as_the_model_in_process(worker: WorkerBackend, tiny, images):
    assert worker.pid is not None and worker.pid != os.getpid()
    local = LlamaCppBackend(tiny.text_path, tiny.mmproj_path, model_id="tiny-smolvlm", n_threads=1)
    try:
        here = _defects(Engine(local), images["jpeg"])
    finally:
        local.close()
    streamed: list[str] = []
    there = _defects(Engine(worker), images["jpeg"], on_event=lambda kind, data: streamed.append(kind))
    assert there.status is here.status is Status.OK
    assert there.raw == here.raw and there.confidence == here.confidence and there.boxes == here.boxes
    assert there.tokens == here.tokens


@pytest.mark.parametrize("where", ["decode", "encode"])
def test_a_segfault_in_the_worker_is_an_error_result_and_the_next_request_goes_on(
    where: str, worker: WorkerBackend, images, monkeypatch: pytest.MonkeyPatch
):
    engine = Engine(worker)
    first_pid = worker.pid
    monkeypatch.setenv(FAULT_ENV, f"{where}:SIGSEGV")  # read by the child: restart it so that it has the hook
    worker.close()
    crashed = _defects(engine, images["jpeg"])
    assert crashed.status is Status.ERROR
    assert "the model process crashed (SIGSEGV)" in crashed.error and "\n" not in crashed.error
    assert worker.last_exit == "SIGSEGV" and worker.pid is None
    monkeypatch.delenv(FAULT_ENV)
    after = _defects(engine, images["jpeg"])
    assert after.status is Status.OK, after.error
    assert worker.pid not in (None, first_pid) and worker.restarts == 2


def test_a_cancel_inside_an_encode_that_cannot_stop_kills_the_worker_within_a_second(
    worker: WorkerBackend, images, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    mark = tmp_path / "encoding"
    monkeypatch.setenv(FAULT_ENV, "encode:sleep=30")
    monkeypatch.setenv(MARK_ENV, str(mark))
    worker.close()
    engine = Engine(worker)
    cancel = threading.Event()
    future = engine.submit(AnalyzeRequest((images["png"],), builtin_task("defects")), cancel=cancel)
    deadline = time.monotonic() + 60
    while not mark.exists():  # the child is inside the (30 s) encode
        assert time.monotonic() < deadline and not future.done(), "the encode never started"
        time.sleep(0.01)
    t0 = time.monotonic()
    cancel.set()
    result = future.result(timeout=10)
    waited = time.monotonic() - t0
    assert result.status is Status.ERROR and result.error == "cancelled"
    assert waited < 1.0, f"cancel took {waited:.2f} s"
    assert worker.pid is None and "killed" in worker.last_exit
    monkeypatch.delenv(FAULT_ENV)
    assert _defects(engine, images["png"]).status is Status.OK


def test_a_load_that_crashes_is_a_one_line_error_naming_the_file(tiny, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(FAULT_ENV, "load:SIGBUS")
    with pytest.raises(ModelLoadError) as info:
        WorkerBackend(tiny.text_path, tiny.mmproj_path, n_threads=1)
    message = str(info.value)
    assert "(SIGBUS)" in message and str(tiny.text_path) in message and "\n" not in message


def test_a_file_llama_cpp_refuses_is_its_own_error_from_the_worker(tiny, tmp_path: Path):
    bad = tmp_path / "truncated.gguf"
    bad.write_bytes(tiny.text_path.read_bytes()[: tiny.text_path.stat().st_size // 2])
    with pytest.raises(ModelLoadError) as info:
        WorkerBackend(bad, tiny.mmproj_path, n_threads=1)
    assert str(bad) in str(info.value) and "\n" not in str(info.value)


def test_exit_descriptions():
    assert describe_exit(-signal.SIGSEGV) == "SIGSEGV" and describe_exit(-signal.SIGKILL) == "SIGKILL"
    assert describe_exit(3) == "exit code 3" and describe_exit(None) == "no exit code"


def test_the_memory_ceiling_follows_the_model_files_and_the_environment(tmp_path: Path):
    from loupe.backends.worker import MEMORY_ENV, memory_ceiling

    f = tmp_path / "m.gguf"
    f.write_bytes(b"\0" * (1 << 20))
    assert memory_ceiling([str(f)], {}, total=64 << 30) == int(1.5 * (1 << 20)) + (2 << 30)
    assert memory_ceiling([str(f)], {}, total=1 << 30) == int(0.9 * (1 << 30))  # never past the machine's memory
    assert memory_ceiling([str(f)], {MEMORY_ENV: "800M"}) == 800 << 20
    assert memory_ceiling([str(f)], {MEMORY_ENV: "6GiB"}) == 6 << 30
    assert memory_ceiling([str(f)], {MEMORY_ENV: "off"}) is None
    with pytest.raises(BackendError) as info:
        memory_ceiling([str(f)], {MEMORY_ENV: "lots"})
    assert MEMORY_ENV in str(info.value) and "\n" not in str(info.value)


def test_a_model_past_the_memory_ceiling_is_a_clear_load_error_not_an_oom_kill(tiny, monkeypatch):
    """A ceiling below what llama.cpp needs for its buffers: the allocation fails inside the worker, and the error
    says which ceiling and how to raise it."""
    from loupe.backends.worker import MEMORY_ENV

    monkeypatch.setenv(MEMORY_ENV, "1M")  # below the interpreter's own heap: the first large allocation fails
    with pytest.raises((ModelLoadError, BackendError)) as info:
        WorkerBackend(tiny.text_path, tiny.mmproj_path, n_threads=1)
    message = str(info.value)
    assert "memory" in message and MEMORY_ENV in message and "\n" not in message, message


def test_models_import_loads_the_pair_in_a_model_process_first(tiny, tmp_path: Path, monkeypatch):
    import io
    import json

    from loupe.cli import main

    monkeypatch.setenv("LOUPE_MODEL_DIR", str(tmp_path / "models"))
    bad = tmp_path / "cut.gguf"
    bad.write_bytes(tiny.text_path.read_bytes()[:4096])  # a header, then nothing
    out, err = io.StringIO(), io.StringIO()
    assert main(["models", "import", str(bad), "--mmproj", str(tiny.mmproj_path), "--name", "cut"], out, err) == 2
    assert err.getvalue().count("\n") == 1 and str(bad) in err.getvalue() and "Traceback" not in err.getvalue()
    monkeypatch.setenv(FAULT_ENV, "load:SIGSEGV")  # a file that crashes llama.cpp: the parent says so and lives
    err = io.StringIO()
    assert main(["models", "import", str(tiny.text_path), "--mmproj", str(tiny.mmproj_path)], out, err) == 2
    assert "crashed (SIGSEGV)" in err.getvalue() and str(tiny.text_path) in err.getvalue()
    monkeypatch.delenv(FAULT_ENV)
    out = io.StringIO()
    argv = ["models", "import", str(tiny.text_path), "--mmproj", str(tiny.mmproj_path), "--name", "ok", "--json"]
    assert main(argv, out, io.StringIO()) == 0
    assert json.loads(out.getvalue())["name"] == "ok"


def test_a_caller_that_fails_mid_stream_leaves_no_half_answered_worker_behind(worker: WorkerBackend):
    """An on_token callback that raises (a client gone, a bug) abandons the request; the worker, out of step with
    the parent, is replaced, and the next request gets its own answer, not the rest of the previous one."""
    from loupe.backends.base import GenerationRequest

    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    constraint = worker.compile(schema)

    def boom(piece: bytes, step: object) -> None:
        raise RuntimeError("the client went away")

    request = GenerationRequest(text="Give n.", images=(), constraint=constraint, schema=schema, max_tokens=16)
    with pytest.raises(RuntimeError, match="went away"):
        worker.generate(GenerationRequest(**{**request.__dict__, "on_token": boom}))
    assert worker.pid is None and "abandoned" in worker.last_exit
    again = worker.generate(request)
    assert again.text.startswith("{") and again.stop in ("eos", "max_tokens") and worker.restarts == 1
