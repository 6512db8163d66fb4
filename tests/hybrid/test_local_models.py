"""A second local model on the ladder (`models: {local-4b: ...}`): tiny SmolVLM-family escalates to tiny Gemma-3.

The second model is loaded through the backend registry once per job and closed with it.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from loupe import taskfile
from loupe.api import Engine
from loupe.backends.worker import WorkerBackend
from loupe.cli import main
from loupe.core.errors import TaskError
from loupe.core.tasks import Task
from loupe.escalate.config import policy_from_dict
from loupe.escalate.hybrid import Escalator
from loupe.escalate.local import ModelSpec, registry_backend
from loupe.models.synthetic import SyntheticModel
from loupe.store.sqlite import Store

from tests.noise import write_noise_pngs

PET_SCHEMA = {
    "type": "object",
    "properties": {"label": {"enum": ["cat", "dog"]}},
    "required": ["label"],
    "additionalProperties": False,
}


def _task(tiny_models: dict[str, SyntheticModel], schema: dict[str, Any] = PET_SCHEMA, **spec: str) -> Task:
    g = tiny_models["gemma3"]
    model = spec or {"path": str(g.text_path), "mmproj": str(g.mmproj_path)}
    return Task(
        name="pet",
        instructions="Which animal is this?",
        schema=schema,
        escalation={
            "ladder": ["local@low", "local-4b@high"],
            "models": {"local-4b": model},
            "thresholds": {"overall": 0.999},
        },
    ).with_options(max_tokens=32, retries=1)


def _images(tmp_path: Path, n: int) -> list[str]:
    return [str(p) for p in write_noise_pngs(tmp_path, n, seed=9)]


@pytest.fixture(scope="module")
def smol(tiny_models: dict[str, SyntheticModel]) -> Any:
    from loupe.backends.llama_cpp import LlamaCppBackend

    m = tiny_models["smolvlm"]
    with Engine(LlamaCppBackend(m.text_path, m.mmproj_path, n_threads=1, n_ctx=2048)) as engine:
        yield engine


def test_second_local_model_is_loaded_once_per_job_and_closed(
    smol: Engine, tiny_models: dict[str, SyntheticModel], tmp_path: Path
) -> None:
    made: list[Any] = []

    def counting(spec: ModelSpec) -> Any:
        made.append(registry_backend(spec, threads=1))
        return made[-1]

    task = _task(tiny_models)
    ladder = Escalator(taskfile.parse(task).policy, lambda: smol, None, model_backend=counting)
    try:
        escs = [ladder([p], task) for p in _images(tmp_path, 3)]
    finally:
        ladder.close()
    gemma = Path(tiny_models["gemma3"].text_path).stem
    for esc in escs:
        assert [(s.runner, s.model, s.outcome) for s in esc.steps] == [
            ("local", smol.model, "escalated"),
            ("local-4b", gemma, "escalated"),
        ]
        assert esc.steps[1].status == "ok" and esc.steps[1].why.startswith("lowest confidence")
        assert esc.result.model == gemma and esc.result.data["label"] in ("cat", "dog") and esc.review
    assert len(made) == 1 and ladder.models["local-4b"].loads == 1  # one load for the whole job
    assert isinstance(made[0], WorkerBackend)  # the registry's llama.cpp runs in a model process
    assert made[0].pid is None and made[0].last_exit == "closed"  # that process ended when the job closed
    assert smol.backend._llm is not None  # the main local engine belongs to the caller


def test_second_model_is_not_loaded_when_nothing_climbs(
    smol: Engine, tiny_models: dict[str, SyntheticModel], tmp_path: Path
) -> None:
    made: list[ModelSpec] = []
    sure = {**PET_SCHEMA, "properties": {"label": {"enum": ["cat"]}}}  # one answer: confidence 1.0
    task = _task(tiny_models, sure)
    ladder = Escalator(taskfile.parse(task).policy, lambda: smol, None, model_backend=lambda spec: made.append(spec))
    esc = ladder(_images(tmp_path, 1), task)
    ladder.close()
    assert [s.outcome for s in esc.steps] == ["accepted"] and made == []


def test_a_model_that_cannot_load_is_an_error_step_once_and_the_local_answer_stays(
    smol: Engine, tiny_models: dict[str, SyntheticModel], tmp_path: Path
) -> None:
    task = _task(tiny_models, path=str(tmp_path / "missing.gguf"), mmproj=str(tmp_path / "missing-mmproj.gguf"))
    calls: list[ModelSpec] = []

    def failing(spec: ModelSpec) -> Any:
        calls.append(spec)
        return registry_backend(spec, threads=1)

    ladder = Escalator(taskfile.parse(task).policy, lambda: smol, None, model_backend=failing)
    escs = [ladder([p], task) for p in _images(tmp_path, 2)]
    ladder.close()
    assert len(calls) == 1  # tried once per job, not once per image
    for esc in escs:
        assert esc.steps[1].status == "error" and "cannot load local model 'missing'" in (esc.steps[1].note or "")
        assert esc.result.model == smol.model and esc.result.status.value == "ok" and esc.review


def test_batch_cli_climbs_to_the_second_model_and_stores_the_ladder(
    tiny_models: dict[str, SyntheticModel], tmp_path: Path
) -> None:
    g, m = tiny_models["gemma3"], tiny_models["smolvlm"]
    task = tmp_path / "pet.json"
    escalation = {
        "ladder": ["local@low", "local-4b@high"],
        "thresholds": {"overall": 0.999},
        "models": {"local-4b": {"path": str(g.text_path), "mmproj": str(g.mmproj_path)}},
    }
    task.write_text(
        json.dumps(
            {
                "name": "pet",
                "instructions": "Which animal is this?",
                "schema": PET_SCHEMA,
                "options": {"max_tokens": 32, "retries": 1},
                "escalation": escalation,
            }
        )
    )
    folder = tmp_path / "imgs"
    folder.mkdir()
    _images(folder, 2)
    out, err = io.StringIO(), io.StringIO()
    db = tmp_path / "loupe.db"
    code = main(
        [
            "batch",
            str(folder),
            "--task-file",
            str(task),
            "--model-path",
            str(m.text_path),
            "--mmproj",
            str(m.mmproj_path),
            "--threads",
            "1",
            "--escalate",
            "--db",
            str(db),
            "--json",
        ],
        out,
        err,
    )
    assert code == 0, err.getvalue()
    with Store(db) as store:
        results = store.results(json.loads(out.getvalue())["job"])
        assert len(results) == 2
        for r in results:
            assert [s.get("runner", s["step"]) for s in r.escalation] == ["local", "local-4b", "review"]
            assert r.escalation[1]["model"] == Path(g.text_path).stem


@pytest.mark.parametrize(
    ("raw", "pointer"),
    [
        ({"ladder": ["local@low", "local-4b@high"]}, "/ladder/1"),
        ({"ladder": ["local@low"], "models": {"cloud": {"model": "x"}}}, "/models/cloud"),
        ({"ladder": ["local@low"], "models": {"big": {"model": "x", "path": "y.gguf"}}}, "/models/big"),
        ({"ladder": ["local@low"], "models": {"big": {"path": "y.gguf"}}}, "/models/big"),
        ({"ladder": ["local@low"], "models": {"big": {"model": "x", "gpu": 1}}}, "/models/big/gpu"),
        ({"ladder": ["local@low"], "models": {"big": "gemma-3-4b"}}, "/models/big"),
    ],
)
def test_model_rungs_are_checked_when_the_task_is_read(raw: dict[str, Any], pointer: str) -> None:
    with pytest.raises(TaskError) as info:
        policy_from_dict(raw)
    assert info.value.pointer == pointer
    ok = policy_from_dict({"ladder": ["local@low", "big@crop"], "models": {"big": {"model": "gemma-3-4b"}}})
    assert ok.models["big"] == ModelSpec(model="gemma-3-4b") and ok.ladder[1].crop and ok.ladder[1].detail == "high"
