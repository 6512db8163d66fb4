"""The ladder: local first, the cloud stub (127.0.0.1) only for doubtful results, within budget, all recorded."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from loupe.api import Engine
from loupe.backends.cloud import CloudBackend
from loupe.backends.fake import FakeBackend
from loupe.core.images.load import LoadedImage, load_image
from loupe.core.types import Status
from loupe.escalate import Budget, Ledger, Policy, Step, Thresholds, escalate
from loupe.escalate.audit import StoreAudit, audit_rows, spend_history
from loupe.escalate.runner import EngineRunner
from loupe.models.synthetic import SyntheticModel
from loupe.store.review import ReviewQueue
from loupe.store.sqlite import Store

from tests.hybrid.conftest import TASK, refuse_sockets
from tests.hybrid.stub_server import StubCloud, completion, error
from tests.noise import write_noise_pngs

LADDER = (Step("local", "low"), Step("cloud", "high"))


def _images(tmp_path: Path, n: int) -> list[LoadedImage]:
    return [load_image(p) for p in write_noise_pngs(tmp_path, n, seed=3)]


def _runners(local: Engine, cloud: CloudBackend | None) -> dict[str, Any]:
    runners: dict[str, Any] = {"local": EngineRunner(local)}
    if cloud is not None:
        runners["cloud"] = EngineRunner(Engine(cloud), cloud=True, audit=cloud.audit)  # type: ignore[arg-type]
    return runners


def _save(store: Store, img: LoadedImage, esc: Any) -> int:
    job = store.create_job(key="k", task=TASK, model="m", settings={}, launch={}, paths=[img.path])
    (item,) = store.items(job.id)
    return store.save_result(item.id, esc.result, sha256=img.sha256, size=1, cache_key=None, escalation=esc.records())


def test_low_confidence_tiny_model_escalates_to_cloud(
    tiny_models: dict[str, SyntheticModel],
    stub: StubCloud,
    make_cloud: Callable[..., CloudBackend],
    store: Store,
    tmp_path: Path,
) -> None:
    from loupe.backends.llama_cpp import LlamaCppBackend

    m = tiny_models["smolvlm"]
    stub.script = [completion('{"n": 5}')]
    (img,) = _images(tmp_path, 1)
    with Engine(LlamaCppBackend(m.text_path, m.mmproj_path, n_threads=1, n_ctx=2048)) as local:
        policy = Policy(LADDER, Thresholds(overall=0.999), cloud_enabled=True)
        esc = escalate(TASK, [img], policy, _runners(local, make_cloud()), Ledger(Budget(max_calls_per_job=5)))
    first, second = esc.steps
    assert first.runner == "local" and first.outcome == "escalated" and first.cost_usd == 0
    assert first.why == "first step" and second.why.startswith(("lowest confidence", "status"))
    assert second.runner == "cloud" and second.outcome == "accepted" and second.calls == 1 and second.cost_usd > 0
    assert esc.result.backend == "cloud" and esc.result.data == {"n": 5} and not esc.review
    rid = _save(store, img, esc)
    stored = store.result(rid)
    assert [s["runner"] for s in stored.escalation] == ["local", "cloud"]
    (row,) = audit_rows(store)
    assert row["source_sha256"] == [img.sha256] and row["bytes_out"] == len(stub.received[0].body)


def test_confident_local_result_does_not_escalate(
    stub: StubCloud, make_cloud: Callable[..., CloudBackend], store: Store, tmp_path: Path
) -> None:
    (img,) = _images(tmp_path, 1)
    local = Engine(FakeBackend(['{"n": 4}'], prob=0.99))
    policy = Policy(LADDER, Thresholds(overall=0.9, fields={"/n": 0.95}), cloud_enabled=True)
    esc = escalate(TASK, [img], policy, _runners(local, make_cloud()), Ledger(Budget()))
    assert [s.outcome for s in esc.steps] == ["accepted"] and esc.result.data == {"n": 4} and not esc.review
    assert stub.received == [] and audit_rows(store) == []


def test_per_field_threshold_escalates(
    stub: StubCloud, make_cloud: Callable[..., CloudBackend], tmp_path: Path
) -> None:
    stub.script = [completion('{"n": 6}')]
    (img,) = _images(tmp_path, 1)
    local = Engine(FakeBackend(['{"n": 4}'], prob=0.9))
    policy = Policy(LADDER, Thresholds(overall=0.5, fields={"/n": 0.95}), cloud_enabled=True)
    esc = escalate(TASK, [img], policy, _runners(local, make_cloud()), Ledger(Budget()))
    assert esc.steps[1].why == "/n confidence 0.90 < 0.95" and esc.result.data == {"n": 6}


def test_budget_exhaustion_sends_cases_to_review(
    stub: StubCloud, make_cloud: Callable[..., CloudBackend], store: Store, tmp_path: Path
) -> None:
    stub.script = [completion('{"n": 1}')]
    imgs = _images(tmp_path, 3)
    local = Engine(FakeBackend(['{"n": 4}'], prob=0.6))  # under the review threshold (0.8) too
    runners = _runners(local, make_cloud())
    ledger = Ledger(Budget(max_calls_per_job=1))
    policy = Policy(LADDER, Thresholds(overall=0.8), cloud_enabled=True)
    escs = [escalate(TASK, [img], policy, runners, ledger) for img in imgs]
    assert [e.review for e in escs] == [False, True, True] and len(stub.received) == 1
    assert escs[1].steps[1].outcome == "skipped"
    assert escs[1].review_reason == "budget spent: at most 1 cloud calls per job, 1 made"
    assert escs[1].result.backend == "fake" and escs[1].result.data == {"n": 4}  # the local answer is kept
    assert escs[1].records()[-1] == {"step": "review", "why": escs[1].review_reason}
    rid = _save(store, imgs[1], escs[1])
    assert [s.id for s in ReviewQueue(store).pending()] == [rid]


def test_spend_cap_and_hour_window_with_an_injected_clock() -> None:
    now = [10_000.0]
    ledger = Ledger(
        Budget(max_spend_per_hour=0.01, max_calls_per_day=3),
        clock=lambda: now[0],
        history=[(now[0] - 7200, 0.009), (now[0] - 60, 0.008)],
    )
    assert ledger.refusal(0.001) is None
    assert "per hour" in (ledger.refusal(0.003) or "")
    now[0] += 3600  # the recent call leaves the hour window
    assert ledger.refusal(0.003) is None
    ledger.charge(0.003)
    assert "3 cloud calls per day" in (ledger.refusal(0.0) or "")


def test_cloud_failure_keeps_the_local_result(
    stub: StubCloud, make_cloud: Callable[..., CloudBackend], sleeps: list[float], tmp_path: Path
) -> None:
    stub.script = [error(503)]
    (img,) = _images(tmp_path, 1)
    local = Engine(FakeBackend(['{"n": 4}'], prob=0.6))
    policy = Policy(LADDER, Thresholds(overall=0.8), cloud_enabled=True)
    esc = escalate(TASK, [img], policy, _runners(local, make_cloud(max_retries=1)), Ledger(Budget()))
    assert esc.result.backend == "fake" and esc.result.status is Status.OK and esc.review
    assert esc.steps[1].status == "error" and "HTTP 503" in (esc.steps[1].note or "")
    assert "still doubtful" in (esc.review_reason or "") and len(sleeps) == 1


def test_cloud_disabled_opens_no_socket(
    make_cloud: Callable[..., CloudBackend], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cloud = make_cloud()  # built before the trap: the stub server's own socket is already open
    opened = refuse_sockets(monkeypatch)
    (img,) = _images(tmp_path, 1)
    local = Engine(FakeBackend(['{"n": 4}'], prob=0.6))
    esc = escalate(TASK, [img], Policy(LADDER, Thresholds(overall=0.8)), _runners(local, cloud), Ledger(Budget()))
    assert opened == [] and esc.review and esc.review_reason == "the cloud is not enabled for this task"
    assert esc.steps[1].outcome == "skipped"


def test_spend_history_reads_the_audit_table(store: Store) -> None:
    StoreAudit(store, sources=("abc",))({"host": "h", "cost_usd": 0.25, "bytes_out": 10, "bytes_in": 5})
    ((t, cost),) = spend_history(store)
    assert cost == 0.25 and t > 0 and audit_rows(store)[0]["source_sha256"] == ["abc"]


def test_step_parse() -> None:
    assert Step.parse("local@high") == Step("local", "high")
    assert Step.parse("cloud") == Step("cloud", "low") and Step.parse("local@768").detail == 768
