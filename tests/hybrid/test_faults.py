"""Every way the cloud can fail, injected by the stub server on 127.0.0.1, through the whole ladder.

The local rung is the real tiny SmolVLM-family model (llama.cpp); the cloud rung is the real `openai` client
over real HTTP. Each fault must end in its specified state, with the local answer kept and the case sent to
review with the reason; every image that reached the server is checked there for metadata.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from loupe import taskfile
from loupe.api import Engine
from loupe.backends.cloud import CloudConfig
from loupe.core.tasks import Task
from loupe.escalate.audit import audit_rows
from loupe.escalate.hybrid import Escalator
from loupe.models.synthetic import SyntheticModel
from loupe.store.review import ReviewQueue
from loupe.store.sqlite import Store
from PIL import Image

from tests.hybrid.conftest import KEY
from tests.hybrid.stub_server import HANG, Reply, StubCloud, completion, error, garbage, refusal
from tests.noise import noise_image

PET = Task(
    name="pet",
    instructions="Which animal is this?",
    schema={
        "type": "object",
        "properties": {"label": {"enum": ["cat", "dog"]}},
        "required": ["label"],
        "additionalProperties": False,
    },
    escalation={"ladder": ["local@low", "cloud@high"], "thresholds": {"overall": 0.999}, "cloud": True},
).with_options(max_tokens=32, review_threshold=0.5, retries=1)

# fault -> (script, cloud step status, words in its error, requests the server sees, backoffs asked for)
FAULTS: dict[str, tuple[list[Reply], str, str, int, list[float]]] = {
    "timeout": ([HANG], "error", "timed out after 0.3 s", 2, [0.5]),
    "429 with Retry-After": ([error(429, retry_after="2")], "error", "failed after 2 attempts: HTTP 429", 2, [2.0]),
    "500": ([error(500)], "error", "failed after 2 attempts: HTTP 500", 2, [0.5]),
    "garbage body": ([garbage()], "error", "not a chat completion", 1, []),
    "schema-violating JSON": ([completion('{"label": "horse"}')], "invalid", "horse", 2, []),
    "non-JSON text": ([completion("It is a cat.")], "invalid", "", 2, []),
    "refusal": ([refusal("I can't help with that.")], "refused", "can't help", 1, []),
}


@pytest.fixture(scope="module")
def local(tiny_models: dict[str, SyntheticModel]) -> Iterator[Engine]:
    from loupe.backends.llama_cpp import LlamaCppBackend

    m = tiny_models["smolvlm"]
    with Engine(LlamaCppBackend(m.text_path, m.mmproj_path, n_threads=1, n_ctx=2048)) as engine:
        yield engine


def _gps_photo(tmp_path: Path) -> Path:
    """A JPEG carrying EXIF (camera make) and GPS, as phones write them."""
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"
    exif[0x8825] = {1: "N", 2: (51.0, 30.0, 0.0), 3: "W", 4: (0.0, 7.0, 0.0)}
    path = tmp_path / "photo.jpg"
    noise_image((120, 90), 4).save(path, exif=exif.tobytes(), icc_profile=b"\0" * 128)
    assert Image.open(path).getexif().get(0x010F) == "SecretCam"
    return path


@pytest.mark.parametrize("fault", list(FAULTS))
def test_cloud_fault_keeps_the_local_result_and_sends_the_case_to_review(
    fault: str, local: Engine, stub: StubCloud, store: Store, tmp_path: Path
) -> None:
    script, status, words, requests, backoffs = FAULTS[fault]
    stub.script = script
    config = CloudConfig(
        preset="openai",
        base_url=stub.base_url,
        model="stub-model",
        enabled=True,
        max_side=64,
        timeout_s=0.3,
        max_retries=1,
        backoff_s=0.5,
        price_in_per_mtok=1.0,
    )
    sleeps: list[float] = []
    ladder = Escalator(taskfile.parse(PET).policy, lambda: local, config, api_key=KEY, store=store, sleep=sleeps.append)
    ladder.runners["cloud"].engine.backend.rand = lambda: 0.0  # type: ignore[union-attr]  # no jitter
    try:
        esc = ladder([str(_gps_photo(tmp_path))], PET)
    finally:
        ladder.close()
    first, second = esc.steps
    assert first.runner == "local" and first.outcome == "escalated" and first.status == "ok"
    assert second.runner == "cloud" and second.status == status and words in (second.note or "")
    assert esc.result.backend == "llama_cpp" and esc.result.data["label"] in ("cat", "dog")  # the local answer
    assert esc.review and (esc.review_reason or "").startswith(f"still doubtful after the last step: status {status}")
    assert len(stub.received) == requests and sleeps == backoffs
    assert len(audit_rows(store)) == requests  # every request that left is on the record, failed or not
    for req in stub.received:  # checked by the server, on the bytes it received
        (seen,) = req.images
        assert seen.exif_tags == 0 and not seen.has_exif_marker and "icc_profile" not in seen.info_keys
        assert seen.format == "PNG" and max(seen.size) == 64
    job = store.create_job(key=fault, task=PET, model="m", settings={}, launch={}, paths=[esc.result.images[0].path])
    (item,) = store.items(job.id)
    rid = store.save_result(
        item.id, esc.result, sha256=esc.result.images[0].sha256, size=1, cache_key=None, escalation=esc.records()
    )
    assert [s.id for s in ReviewQueue(store).pending(job.id)] == [rid]
    assert store.result(rid).result.data == esc.result.data


def test_429_then_success_honours_retry_after(local: Engine, stub: StubCloud, store: Store, tmp_path: Path) -> None:
    stub.script = [error(429, retry_after="3"), completion('{"label": "dog"}')]
    config = CloudConfig(preset="openai", base_url=stub.base_url, model="stub-model", enabled=True, max_side=64)
    sleeps: list[float] = []
    ladder = Escalator(taskfile.parse(PET).policy, lambda: local, config, api_key=KEY, store=store, sleep=sleeps.append)
    try:
        esc = ladder([str(_gps_photo(tmp_path))], PET)
    finally:
        ladder.close()
    assert sleeps == [3.0] and esc.result.backend == "cloud" and esc.result.data == {"label": "dog"}
    assert not esc.review and [r["status"] for r in audit_rows(store)] == [429, 200]
