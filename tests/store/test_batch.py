"""The batch runner through its Python API, on the scripted fake backend: cache, resume, stop, new files."""

from __future__ import annotations

import os
import shutil
import signal
import threading

import pytest
from loupe.batch import BatchRunner, ItemOutcome, LazyEngine, open_job, stop_on_sigint
from loupe.core.images.files import expand
from loupe.core.tasks import builtin_task
from loupe.store import Store

from tests.store.conftest import fake_analyze, make_images

CAPTION = '{"caption": "noise", "tags": ["noise"]}'
SETTINGS = {"backend": "fake"}


def _open(store: Store, folder, task=None, model="fake"):
    inputs = [os.path.abspath(folder)]
    paths = [os.path.abspath(p) for p in expand(inputs)]
    return open_job(
        store,
        inputs=inputs,
        paths=paths,
        task=task or builtin_task("describe"),
        model=model,
        settings=SETTINGS,
        launch={"inputs": inputs},
    )


def test_identical_image_task_model_and_settings_is_answered_from_the_store(tmp_path):
    folder = make_images(tmp_path / "imgs", 4)
    shutil.copyfile(folder / "000.png", folder / "copy-of-000.png")  # same bytes, another name
    analyze, calls = fake_analyze([CAPTION])
    with Store(tmp_path / "s.db") as store:
        job, resumed = _open(store, folder)
        first = BatchRunner(store, analyze).run(job.id)
        assert not resumed and len(calls) == 4  # the copy was a cache hit within the same job
        assert first.to_dict() == {"job": job.id, "items": 5, "done": 5, "cached": 1, "errors": 0, "review": 0}
        (copy,) = [s for s in store.results(job.id) if s.cached_from is not None]
        assert copy.path.endswith("copy-of-000.png") and copy.result.images[0].path == copy.path

        again, resumed = _open(store, folder)  # the finished job is not resumed: a new one, all from the store
        loads = []
        lazy = LazyEngine(lambda: loads.append(1))  # type: ignore[arg-type,return-value]
        second = BatchRunner(store, lazy.analyze).run(again.id)
        assert not resumed and again.id != job.id and second.cached == second.items == 5 and not loads

        other_task = builtin_task("describe").with_options(max_tokens=300)  # another task key: computed again
        third, _ = _open(store, folder, other_task)
        assert BatchRunner(store, analyze).run(third.id).cached == 1 and len(calls) == 8
        fourth, _ = _open(store, folder, model="another-model")  # another model: computed again
        assert BatchRunner(store, analyze).run(fourth.id).cached == 1 and len(calls) == 12


def test_stop_then_rerun_resumes_the_same_job_without_doing_an_item_twice(tmp_path):
    folder = make_images(tmp_path / "imgs", 6)
    analyze, calls = fake_analyze([CAPTION])
    stop = threading.Event()
    seen: list[ItemOutcome] = []

    def on_item(outcome: ItemOutcome) -> None:
        seen.append(outcome)
        if len(seen) == 2:
            stop.set()

    with Store(tmp_path / "s.db") as store:
        job, _ = _open(store, folder)
        part = BatchRunner(store, analyze).run(job.id, stop=stop, on_item=on_item)
        assert part.stopped and part.done == 2 and store.job(job.id).state == "interrupted"
        make_images(folder, 1, seed=9, start=6)  # the folder gained a file meanwhile
        resumed_job, resumed = _open(store, folder)
        rest = BatchRunner(store, analyze).run(resumed_job.id)
        assert resumed and resumed_job.id == job.id and not rest.stopped
        assert rest.done == rest.items == 7 and store.job(job.id).state == "done"
        assert sorted(calls) == sorted(os.path.abspath(p) for p in expand([str(folder)]))  # each exactly once
        assert len({s.item_id for s in store.results(job.id)}) == 7


def test_unreadable_images_are_errors_and_are_tried_again_next_time(tmp_path):
    folder = make_images(tmp_path / "imgs", 2)
    (folder / "broken.png").write_bytes(b"not a png")
    analyze, calls = fake_analyze([CAPTION])
    with Store(tmp_path / "s.db") as store:
        job, _ = _open(store, folder)
        summary = BatchRunner(store, analyze).run(job.id)
        assert summary.errors == 1 and summary.review == 1  # not ok -> review
        again, _ = _open(store, folder)
        assert BatchRunner(store, analyze).run(again.id).cached == 2 and calls.count(str(folder / "broken.png")) == 2


def test_low_confidence_results_go_to_review(tmp_path):
    folder = make_images(tmp_path / "imgs", 3)
    analyze, _ = fake_analyze([CAPTION], prob=0.3)  # under describe's review_threshold 0.4
    with Store(tmp_path / "s.db") as store:
        job, _ = _open(store, folder)
        assert BatchRunner(store, analyze).run(job.id).review == 3


def test_first_ctrl_c_asks_to_stop_the_second_interrupts_and_the_handler_is_restored():
    stop = threading.Event()
    notices: list[str] = []
    before = signal.getsignal(signal.SIGINT)
    with stop_on_sigint(stop, lambda: notices.append("stopping")):
        signal.raise_signal(signal.SIGINT)
        assert stop.is_set() and notices == ["stopping"]
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before
