"""The station loop end to end: verdicts, outputs queued once, restarts that repeat nothing; `loupe watch` for real."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path

import pytest
from loupe.cli import main
from loupe.core.verdict import Verdict
from loupe.floor.line import Line, RecordingEvents, line_job_key, recent
from loupe.floor.outputs.base import FakeSink
from loupe.floor.outputs.delivery import Delivery
from loupe.floor.sources.base import Capture, FakeSource
from loupe.models.synthetic import SyntheticModel
from loupe.store.outbox import Outbox
from loupe.store.sqlite import Store

from tests.floor.conftest import DEFECTS, DEFECTS_FILE, defects_json, fake_engine, png_bytes


def make_line(tmp_path: Path, source: FakeSource, engine, sink: FakeSink, events: RecordingEvents) -> Line:
    delivery = Delivery(tmp_path / "loupe.db", [sink])
    line = Line(
        source=source,
        task=DEFECTS,
        rules=DEFECTS_FILE.rules,
        outputs=DEFECTS_FILE.outputs,
        db_path=tmp_path / "loupe.db",
        load=lambda: engine,
        model="fake",
        events=events,
        delivery=delivery,
    )
    return line


def images(folder: Path, n: int, seed: int = 0) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        p = folder / f"img-{seed}-{i}.png"
        p.write_bytes(png_bytes(seed * 100 + i))
        out.append(str(p))
    return out


def test_each_capture_is_judged_stored_and_announced(tmp_path: Path) -> None:
    paths = images(tmp_path / "in", 3)
    engine = fake_engine(defects_json(), defects_json(1, 4), defects_json(2))
    source, sink = FakeSource(), FakeSink()
    events = RecordingEvents()
    line = make_line(tmp_path, source, engine, sink, events)
    with Store(tmp_path / "loupe.db") as store:
        line.job_id = line.open_job(store)
        line.engine = engine
        outcomes = [line.process(store, Capture(p, "fake")) for p in paths]
        assert [o.judgement.verdict for o in outcomes if o] == [Verdict.PASS, Verdict.FAIL, Verdict.PASS]
        assert [len(r.result.boxes) for r in store.results(line.job_id)] == [0, 2, 1]
        assert line.delivery is not None and line.delivery.deliver_once(store) == 3
        history, counts = recent(store, line.job_id, DEFECTS, DEFECTS_FILE.rules, limit=2)
    assert counts == {"PASS": 2, "FAIL": 1, "REVIEW": 0}
    assert [h.image for h in history] == [paths[2], paths[1]]  # newest first
    assert [m["verdict"] for m in sink.sent] == ["PASS", "FAIL", "PASS"]
    assert sink.sent[1]["reason"] == "/defects/*/severity >= 3 (4)" and sink.sent[1]["image"] == paths[1]
    assert sink.sent[1]["boxes"][0]["label"] == "scratch"
    assert source.finished == paths


def test_low_confidence_and_broken_images_go_to_review(tmp_path: Path, images: dict[str, Path]) -> None:
    engine = fake_engine(defects_json(), prob=0.2)
    source, sink, events = FakeSource(), FakeSink(), RecordingEvents()
    line = make_line(tmp_path, source, engine, sink, events)
    with Store(tmp_path / "loupe.db") as store:
        line.job_id, line.engine = line.open_job(store), engine
        low = line.process(store, Capture(str(images["png"]), "fake"))
        broken = line.process(store, Capture(str(images["truncated_png"]), "fake"))
    assert low is not None and low.judgement.verdict is Verdict.REVIEW and "confidence" in low.judgement.reason
    assert broken is not None and broken.judgement.verdict is Verdict.REVIEW
    assert broken.result.status.value == "error"


def test_a_restart_after_a_crash_repeats_neither_the_model_nor_the_outputs(tmp_path: Path) -> None:
    paths = images(tmp_path / "in", 2)

    class CrashingSource(FakeSource):
        def finish(self, capture: Capture) -> str:  # the power goes after the result was committed
            raise KeyboardInterrupt

    engine = fake_engine(defects_json(5))
    sink, events = FakeSink(), RecordingEvents()
    line = make_line(tmp_path, CrashingSource(), engine, sink, events)
    with Store(tmp_path / "loupe.db") as store:
        line.job_id, line.engine = line.open_job(store), engine
        with pytest.raises(KeyboardInterrupt):
            line.process(store, Capture(paths[0], "fake"))
        first_job = line.job_id
    assert len(engine.backend.requests) == 1

    # Loupe starts again on the same line: same job, the file is found again and answered from the store
    both = threading.Event()
    source2 = FakeSource()
    events2 = RecordingEvents(on_outcome=lambda o: both.set() if len(events2.outcomes) == 2 else None)
    line2 = make_line(tmp_path, source2, engine, sink, events2)
    for p in paths:
        source2.put(p)
    line2.start()
    try:
        assert both.wait(20)
    finally:
        assert line2.stop()
    assert line2.job_id == first_job
    assert [o.cached for o in events2.outcomes] == [True, False]
    assert len(engine.backend.requests) == 2  # only the second image needed the model
    with Store(tmp_path / "loupe.db") as store:
        queued = Outbox(store).entries()
        assert [e.result_id for e in queued] == [o.result_id for o in events2.outcomes]  # one message per image
        assert store.job(first_job).state == "interrupted"
    assert [s for s, _ in events2.models] == ["loading", "ready"]


def test_a_model_that_cannot_load_is_reported_and_retried(tmp_path: Path) -> None:
    calls: list[int] = []

    def load():
        calls.append(1)
        raise FileNotFoundError("model.gguf is not there")

    failed = threading.Event()

    class Events(RecordingEvents):
        def model_state(self, state: str, detail: str) -> None:
            super().model_state(state, detail)
            if state == "failed":
                failed.set()

    events = Events()
    line = Line(
        source=FakeSource(),
        task=DEFECTS,
        rules=DEFECTS_FILE.rules,
        outputs=DEFECTS_FILE.outputs,
        db_path=tmp_path / "loupe.db",
        load=load,
        model="m",
        events=events,
    )
    line.start()
    assert failed.wait(10)
    assert line.stop(10)
    assert ("failed", "FileNotFoundError: model.gguf is not there; retrying in 2 s") in events.models


def test_loupe_watch_with_the_real_tiny_model(tiny_models: dict[str, SyntheticModel], tmp_path: Path) -> None:
    folder = tmp_path / "line"
    paths = images(folder, 2)
    model = tiny_models["smolvlm"]
    argv = [
        "watch",
        str(folder),
        "--model-path",
        str(model.text_path),
        "--mmproj",
        str(model.mmproj_path),
        "--threads",
        "1",
        "--db",
        str(tmp_path / "loupe.db"),
        "--max",
        "2",
        "--json",
        "--drop",
        "--settle",
        "0.05",
        "--task",
        "describe",
    ]
    out, err = io.StringIO(), io.StringIO()
    assert main(argv, out, err) == 0, err.getvalue()
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    assert len(lines) == 2 and {x["verdict"] for x in lines} <= {"PASS", "REVIEW", "FAIL"}
    for x in lines:
        moved = Path(x["image"])
        assert moved.parent == folder / "processed" and moved.exists()
        dropped = json.loads(Path(str(moved) + ".json").read_text())
        assert dropped["verdict"] == x["verdict"] and dropped["result_id"] == x["result_id"]
    assert not any(Path(p).exists() for p in paths)
    with Store(tmp_path / "loupe.db") as store:
        assert Outbox(store).counts() == {"file": {"pending": 0, "sent": 2, "dropped": 0}}
        jobs = store.jobs()
        assert len(jobs) == 1 and jobs[0].key == line_job_key(str(folder), jobs[0].task, "tiny-smolvlm-f32")
    out2 = io.StringIO()
    assert main(["outbox", "--db", str(tmp_path / "loupe.db")], out2, err) == 0
    assert "file     pending     0  sent      2" in out2.getvalue()


def test_loupe_watch_refuses_what_it_cannot_use(tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert main(["watch", str(tmp_path / "nope"), "--db", str(tmp_path / "db")], out, err) == 2
    assert "not a folder, a camera index" in err.getvalue()
    err = io.StringIO()
    assert main(["watch", str(tmp_path), "--mqtt", "http://x", "--db", str(tmp_path / "db")], out, err) == 2
    assert "outputs: url must look like mqtt://" in err.getvalue()
    err = io.StringIO()
    assert (
        main(
            [
                "watch",
                str(tmp_path),
                "--model-path",
                str(tmp_path / "m.gguf"),
                "--mmproj",
                str(tmp_path / "p"),
                "--db",
                str(tmp_path / "db"),
            ],
            out,
            err,
        )
        == 2
    )
    assert "the model cannot be loaded" in err.getvalue()


def test_loupe_watch_publishes_verdicts_to_a_real_broker(
    broker, tiny_models: dict[str, SyntheticModel], tmp_path: Path
) -> None:
    from tests.floor.conftest import Subscriber

    folder = tmp_path / "line"
    images(folder, 2, seed=7)
    sub = Subscriber(broker.port, "line9/#")
    model = tiny_models["smolvlm"]
    argv = [
        "watch",
        str(folder),
        "--model-path",
        str(model.text_path),
        "--mmproj",
        str(model.mmproj_path),
        "--threads",
        "1",
        "--db",
        str(tmp_path / "loupe.db"),
        "--max",
        "2",
        "--json",
        "--settle",
        "0.05",
        "--task",
        "describe",
        "--mqtt",
        f"mqtt://127.0.0.1:{broker.port}/line9/{{task}}/{{verdict}}",
    ]
    out, err = io.StringIO(), io.StringIO()
    assert main(argv, out, err) == 0, err.getvalue()
    assert sub.wait_for(2)
    sub.close()
    printed = [json.loads(x) for x in out.getvalue().splitlines()]
    assert sorted(m["result_id"] for m in sub.messages) == sorted(x["result_id"] for x in printed)
    assert all(m["task"] == "describe" and m["image"].startswith(str(folder / "processed")) for m in sub.messages)


def test_a_file_that_vanishes_is_reported_and_forgotten(tmp_path: Path) -> None:
    source, events = FakeSource(), RecordingEvents()
    engine = fake_engine(defects_json())
    line = make_line(tmp_path, source, engine, FakeSink(), events)
    with Store(tmp_path / "loupe.db") as store:
        line.job_id, line.engine = line.open_job(store), engine
        assert line.process(store, Capture(str(tmp_path / "gone.png"), "fake")) is None
    assert "gone before it could be read" in events.problems[0]
    assert source.finished == [str(tmp_path / "gone.png")]


def test_stopping_the_station_mid_image_leaves_that_capture_for_the_next_start(tmp_path: Path) -> None:
    paths = images(tmp_path / "in", 1)
    engine = fake_engine(defects_json())
    source, sink, events = FakeSource(), FakeSink(), RecordingEvents()
    line = make_line(tmp_path, source, engine, sink, events)
    with Store(tmp_path / "loupe.db") as store:
        line.job_id, line.engine = line.open_job(store), engine
        line.stop_event.set()  # the stop came while this capture was being analyzed
        assert line.process(store, Capture(paths[0], "fake")) is None
        assert store.results(line.job_id) == [] and source.finished == [] and events.outcomes == []
        assert engine.backend.requests == []  # a set cancel never reaches the model
        line.stop_event.clear()  # the next start
        again = line.process(store, Capture(paths[0], "fake"))
        assert again is not None and again.judgement.verdict is Verdict.PASS and not again.cached
        assert len(store.results(line.job_id)) == 1 and source.finished == paths
