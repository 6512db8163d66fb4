"""A cancel interrupts a cloud request in flight: the stub server on 127.0.0.1 never answers (a hanging reply),
the backend returns within about a second of the cancel, the request is audited as canceled, and through the
ladder the local result (the real tiny model on llama.cpp) is kept."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from loupe import taskfile
from loupe.api import AnalyzeRequest, Engine
from loupe.backends.cloud import CloudBackend, CloudConfig
from loupe.core.images.load import load_image
from loupe.core.types import Status
from loupe.escalate.audit import audit_rows
from loupe.escalate.hybrid import Escalator
from loupe.escalate.policy import escalate
from loupe.models.synthetic import SyntheticModel
from loupe.store.sqlite import Store
from PIL import Image

from tests.hybrid.conftest import KEY, TASK
from tests.hybrid.stub_server import HANG, StubCloud
from tests.hybrid.test_faults import PET


class Arrivals(list):  # type: ignore[type-arg]
    """The stub's `received` list, also setting an event as each request arrives (no polling in the test)."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived = threading.Event()

    def append(self, item: Any) -> None:
        super().append(item)
        self.arrived.set()


def _cancel_on_arrival(stub: StubCloud, cancel: threading.Event) -> tuple[threading.Thread, dict[str, float]]:
    """A helper thread that sets `cancel` once the server holds the request (the call under test runs on the
    test's own thread, which owns the store); `box["at"]` is when it did."""
    arrivals = Arrivals()
    stub.received = arrivals
    box: dict[str, float] = {}

    def run() -> None:
        if arrivals.arrived.wait(60):
            box["at"] = time.perf_counter()
        cancel.set()  # also when nothing arrived, so the call under test ends either way

    thread = threading.Thread(target=run, name="test-cancel")
    thread.start()
    return thread, box


def _waited(thread: threading.Thread, box: dict[str, float]) -> float:
    """Seconds from the cancel until now (the call has returned)."""
    now = time.perf_counter()
    thread.join(5)
    assert "at" in box, "the request never reached the server"
    return now - box["at"]


def test_cancel_interrupts_a_hanging_request_and_audits_it(
    make_cloud: Callable[..., CloudBackend], stub: StubCloud, store: Store, tmp_path: Path
) -> None:
    stub.script = [HANG]
    path = tmp_path / "in.png"
    Image.fromarray(np.zeros((40, 40, 3), dtype=np.uint8)).save(path)
    engine = Engine(make_cloud(timeout_s=30.0, max_retries=3))
    cancel = threading.Event()
    thread, box = _cancel_on_arrival(stub, cancel)
    try:
        result = engine.analyze(AnalyzeRequest((load_image(path),), TASK), cancel=cancel)
    finally:
        waited = _waited(thread, box)
        engine.close()
    assert waited < 1.0, f"returned {waited:.2f} s after the cancel"
    assert result.status is Status.ERROR and result.error == "cancelled"
    assert len(stub.received) == 1  # no retry after a cancel
    (row,) = audit_rows(store)
    assert row["status"] == "cancelled" and row["bytes_out"] > 100 and row["bytes_in"] == 0
    assert len(row["image_sha256"]) == 1


@pytest.fixture(scope="module")
def local(tiny_models: dict[str, SyntheticModel]) -> Iterator[Engine]:
    from loupe.backends.llama_cpp import LlamaCppBackend

    m = tiny_models["smolvlm"]
    with Engine(LlamaCppBackend(m.text_path, m.mmproj_path, n_threads=1, n_ctx=2048)) as engine:
        yield engine


def test_cancel_during_the_cloud_rung_keeps_the_local_result(
    local: Engine, stub: StubCloud, store: Store, tmp_path: Path
) -> None:
    stub.script = [HANG]
    path = tmp_path / "pet.png"
    Image.fromarray(np.random.default_rng(7).integers(0, 255, (90, 120, 3), dtype=np.uint8)).save(path)
    config = CloudConfig(
        preset="openai",
        base_url=stub.base_url,
        model="stub-model",
        enabled=True,
        max_side=64,
        timeout_s=30.0,
        max_retries=2,
    )
    ladder = Escalator(taskfile.parse(PET).policy, lambda: local, config, api_key=KEY, store=store)
    cancel = threading.Event()
    thread, box = _cancel_on_arrival(stub, cancel)
    try:
        esc = escalate(PET, [load_image(str(path))], ladder.policy, ladder.runners, ladder.ledger, cancel=cancel)
    finally:
        waited = _waited(thread, box)
        ladder.close()
    assert waited < 1.0, f"returned {waited:.2f} s after the cancel"
    local_step, cloud_step = esc.steps
    assert local_step.status == "ok" and cloud_step.status == "error" and cloud_step.note == "cancelled"
    assert esc.result.backend == "llama_cpp" and esc.result.data["label"] in ("cat", "dog")  # the local answer
    assert [r["status"] for r in audit_rows(store)] == ["cancelled"]
