"""`loupe analyze|batch --escalate`: the task file's ladder, the cloud settings file, the stub cloud on 127.0.0.1."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import loupe.core.secrets
import pytest
from loupe import taskfile
from loupe.cli import main
from loupe.core.errors import TaskError
from loupe.escalate.audit import audit_rows
from loupe.models.synthetic import SyntheticModel
from loupe.store.review import ReviewQueue
from loupe.store.sqlite import Store

from tests.hybrid.conftest import KEY, TASK, refuse_sockets
from tests.hybrid.stub_server import StubCloud, completion
from tests.noise import write_noise_pngs


@pytest.fixture(autouse=True)
def _no_real_keyring(monkeypatch: pytest.MonkeyPatch) -> None:
    """The key comes from the environment here; the OS keyring is never touched."""
    monkeypatch.setattr(loupe.core.secrets, "_default_keyring", lambda: None)
    monkeypatch.delenv("LOUPE_CLOUD_CONFIG", raising=False)


def _task_file(tmp_path: Path, *, cloud: bool, **escalation: Any) -> Path:
    raw = {
        "name": "digit",
        "instructions": TASK.instructions,
        "schema": TASK.schema,
        "options": {"max_tokens": 16, "review_threshold": 0.8, "retries": 1},
        "escalation": {
            "ladder": ["local@low", "cloud@high"],
            "thresholds": {"overall": 0.999},
            "cloud": cloud,
            **escalation,
        },
    }
    path = tmp_path / "digit.json"
    path.write_text(json.dumps(raw))
    return path


def _cloud_file(tmp_path: Path, stub: StubCloud | None, *, enabled: bool = True) -> Path:
    base = stub.base_url if stub is not None else "http://127.0.0.1:9/v1"
    path = tmp_path / "cloud.toml"
    path.write_text(
        f'[cloud]\npreset = "openai"\nbase_url = "{base}"\nmodel = "stub-model"\nenabled = '
        f"{str(enabled).lower()}\nmax_side = 64\ntimeout_s = 5.0\nmax_retries = 0\n"
        "price_in_per_mtok = 1.0\nprice_out_per_mtok = 4.0\n"
    )
    return path


def _images(tmp_path: Path, n: int) -> Path:
    folder = tmp_path / "imgs"
    write_noise_pngs(folder, n, seed=5)
    return folder


def _keyed_stub(stub: StubCloud, monkeypatch: pytest.MonkeyPatch, answer: str) -> None:
    """The API key in the environment and the stub cloud scripted to answer `answer`."""
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    stub.script = [completion(answer)]


def _model(tiny_models: dict[str, SyntheticModel]) -> list[str]:
    m = tiny_models["smolvlm"]
    return ["--model-path", str(m.text_path), "--mmproj", str(m.mmproj_path), "--threads", "1"]


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_analyze_escalates_a_doubtful_tiny_model_result_to_the_cloud(
    tiny_models: dict[str, SyntheticModel], stub: StubCloud, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _keyed_stub(stub, monkeypatch, '{"n": 5}')
    folder, db = _images(tmp_path, 1), tmp_path / "loupe.db"
    code, out, err = _run(
        [
            "analyze",
            str(folder),
            "--task-file",
            str(_task_file(tmp_path, cloud=True)),
            *_model(tiny_models),
            "--escalate",
            "--cloud-config",
            str(_cloud_file(tmp_path, stub)),
            "--db",
            str(db),
            "--json",
        ]
    )
    assert code == 0, err
    (line,) = [json.loads(x) for x in out.splitlines()]
    assert line["backend"] == "cloud" and line["data"] == {"n": 5}
    assert [(s["runner"], s["outcome"]) for s in line["escalation"]] == [("local", "escalated"), ("cloud", "accepted")]
    assert line["escalation"][1]["calls"] == 1 and line["escalation"][1]["cost_usd"] > 0
    assert stub.received[0].headers["authorization"] == f"Bearer {KEY}"
    with Store(db) as store:
        (row,) = audit_rows(store)
        assert row["bytes_out"] == len(stub.received[0].body) and row["model"] == "stub-model"
    assert KEY not in out + err and KEY.encode() not in db.read_bytes()


def test_analyze_without_escalate_is_unchanged(
    tiny_models: dict[str, SyntheticModel], stub: StubCloud, tmp_path: Path
) -> None:
    folder = _images(tmp_path, 1)
    _, out, _ = _run(
        [
            "analyze",
            str(folder),
            "--task-file",
            str(_task_file(tmp_path, cloud=True)),
            *_model(tiny_models),
            "--cloud-config",
            str(_cloud_file(tmp_path, stub)),
            "--json",
        ]
    )
    (line,) = [json.loads(x) for x in out.splitlines()]
    assert "escalation" not in line and line["backend"] != "cloud" and stub.received == []


def test_batch_escalate_stores_the_ladder_and_the_audit_rows(
    tiny_models: dict[str, SyntheticModel], stub: StubCloud, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _keyed_stub(stub, monkeypatch, '{"n": 7}')
    folder, db = _images(tmp_path, 3), tmp_path / "loupe.db"
    task = _task_file(tmp_path, cloud=True, budget={"max_calls_per_job": 2})
    code, out, err = _run(
        [
            "batch",
            str(folder),
            "--task-file",
            str(task),
            *_model(tiny_models),
            "--escalate",
            "--cloud-config",
            str(_cloud_file(tmp_path, stub)),
            "--db",
            str(db),
            "--json",
        ]
    )
    assert code == 0, err
    summary = json.loads(out)
    assert summary["done"] == 3 and len(stub.received) == 2
    with Store(db) as store:
        results = store.results(summary["job"])
        ladders = [[s.get("runner", s["step"]) for s in r.escalation] for r in results]
        assert ladders[:2] == [["local", "cloud"]] * 2 and ladders[2] == ["local", "cloud", "review"]
        assert results[2].escalation[1]["outcome"] == "skipped" and "budget spent" in results[2].escalation[2]["why"]
        assert [r.result.data for r in results[:2]] == [{"n": 7}] * 2
        rows = audit_rows(store, job_id=summary["job"])
        assert len(rows) == 2 and {r["source_sha256"][0] for r in rows} == {results[0].sha256, results[1].sha256}
        assert results[2].id in [s.id for s in ReviewQueue(store).pending(summary["job"])]
    assert KEY.encode() not in db.read_bytes()


def test_escalate_with_the_cloud_disabled_opens_no_socket(
    tiny_models: dict[str, SyntheticModel], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    opened = refuse_sockets(monkeypatch)
    folder = _images(tmp_path, 2)
    db = tmp_path / "loupe.db"
    for task_cloud, settings_on in ((True, False), (False, True)):  # either switch off keeps everything local
        cloud = _cloud_file(tmp_path, None, enabled=settings_on)
        task = _task_file(tmp_path, cloud=task_cloud)
        code, out, err = _run(
            [
                "analyze",
                str(folder),
                "--task-file",
                str(task),
                *_model(tiny_models),
                "--escalate",
                "--cloud-config",
                str(cloud),
                "--db",
                str(db),
                "--json",
            ]
        )
        lines = [json.loads(x) for x in out.splitlines()]
        assert len(lines) == 2 and all(x["backend"] != "cloud" for x in lines)
        for x in lines:
            assert x["escalation"][1]["outcome"] == "skipped" and x["escalation"][-1]["step"] == "review"
            assert x["escalation"][-1]["why"] == "the cloud is not enabled for this task"
        assert "this machine only" in err
        assert not db.exists()  # nothing to audit: not even the store was opened
        monkeypatch.setenv("LOUPE_CLOUD_CONFIG", str(cloud))  # batch reads the env var instead of the flag
        code, out, err = _run(
            [
                "batch",
                str(folder),
                "--task-file",
                str(task),
                *_model(tiny_models),
                "--escalate",
                "--db",
                str(tmp_path / f"b{int(task_cloud)}.db"),
                "--json",
            ]
        )
        assert code == 0, err
        monkeypatch.delenv("LOUPE_CLOUD_CONFIG")
        with Store(tmp_path / f"b{int(task_cloud)}.db") as store:
            assert audit_rows(store) == [] and all(r.escalation for r in store.results())
    assert opened == []


def test_task_file_escalation_errors_point_into_the_table(tmp_path: Path) -> None:
    task = taskfile.load(_task_file(tmp_path, cloud=False)).task
    assert task.escalation is not None and task.escalation["ladder"] == ["local@low", "cloud@high"]
    for bad, pointer in (
        ({"thresholds": {"overall": "high"}}, "/escalation/thresholds/overall"),
        ({"budget": {"max_calls_per_job": -1}}, "/escalation/budget/max_calls_per_job"),
        ({"ladder": ["local@low", "cloud@huge"]}, "/escalation/ladder/1"),
        ({"colud": True}, "/escalation/colud"),
    ):
        with pytest.raises(TaskError) as info:
            taskfile.load(_task_file(tmp_path, cloud=False, **bad))
        assert info.value.pointer == pointer


def test_a_key_in_the_cloud_settings_file_is_refused(tiny_models: dict[str, SyntheticModel], tmp_path: Path) -> None:
    cloud = tmp_path / "cloud.json"
    cloud.write_text(json.dumps({"preset": "openai", "enabled": True, "api_key": KEY}))
    code, out, err = _run(
        [
            "analyze",
            str(_images(tmp_path, 1)),
            "--task-file",
            str(_task_file(tmp_path, cloud=True)),
            *_model(tiny_models),
            "--escalate",
            "--cloud-config",
            str(cloud),
            "--json",
        ]
    )
    assert code == 2 and "loupe cloud key" in err and KEY not in out + err


def test_an_enabled_cloud_without_a_key_stops_before_anything_runs(
    tiny_models: dict[str, SyntheticModel], stub: StubCloud, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    code, _out, err = _run(
        [
            "analyze",
            str(_images(tmp_path, 1)),
            "--task-file",
            str(_task_file(tmp_path, cloud=True)),
            *_model(tiny_models),
            "--escalate",
            "--cloud-config",
            str(_cloud_file(tmp_path, stub)),
            "--db",
            str(tmp_path / "loupe.db"),
            "--json",
        ]
    )
    assert code == 2 and "loupe cloud key openai" in err and "OPENAI_API_KEY" in err and stub.received == []


def test_cloud_test_sends_one_text_probe_audited_and_says_what_it_found(
    stub: StubCloud, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _keyed_stub(stub, monkeypatch, "OK")
    db = tmp_path / "loupe.db"
    code, out, _ = _run(
        ["cloud", "test", "--cloud-config", str(_cloud_file(tmp_path, stub)), "--db", str(db), "--json"]
    )
    assert code == 0 and json.loads(out)["verdict"] == "ok"
    assert len(stub.received) == 1 and stub.received[0].images == []  # text only, nothing of the user's
    assert stub.received[0].headers["authorization"] == f"Bearer {KEY}"
    with Store(db) as store:
        rows = audit_rows(store)
    assert len(rows) == 1 and rows[0]["bytes_out"] == len(stub.received[0].body)
    assert KEY not in json.dumps(rows) and KEY not in out and KEY.encode() not in db.read_bytes()

    code, out, _ = _run(
        ["cloud", "test", "--cloud-config", str(_cloud_file(tmp_path, stub, enabled=False)), "--db", str(db)]
    )
    assert code == 1 and out.startswith("refused: The cloud is switched off") and len(stub.received) == 1
    code, out, _ = _run(["cloud", "test", "--db", str(db)])
    assert code == 1 and "no cloud settings" in out
