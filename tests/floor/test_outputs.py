"""Line outputs against real receivers: mosquitto on 127.0.0.1 (restarted mid-run), an HTTP server, the disk."""

from __future__ import annotations

import json
from pathlib import Path

from loupe.floor.outputs.base import FakeSink
from loupe.floor.outputs.config import build_sinks, outputs_from_dict
from loupe.floor.outputs.delivery import Delivery
from loupe.floor.outputs.filedrop import FileDropSink
from loupe.store.migrations import SCHEMA_VERSION
from loupe.store.outbox import Message, Outbox
from loupe.store.sqlite import Store

from tests.floor.conftest import Broker, Receiver, Subscriber


def queue(store: Store, sinks: list, n: int, start: int = 0) -> None:
    outbox = Outbox(store)
    for i in range(start, start + n):
        outbox.put(
            [Message(s.name, s.destination, {"verdict": "FAIL", "task": "defects", "n": i}) for s in sinks],
            result_id=None,
        )


def test_mqtt_broker_restart_loses_nothing(broker: Broker, tmp_path: Path) -> None:
    config = outputs_from_dict(
        {"mqtt": {"url": f"mqtt://127.0.0.1:{broker.port}", "topic": "line1/{task}", "timeout_s": 2}}
    )
    sinks = build_sinks(config)
    delivery = Delivery(tmp_path / "loupe.db", sinks)
    sub = Subscriber(broker.port, "line1/#")
    with Store(tmp_path / "loupe.db") as store:
        queue(store, sinks, 3)
        assert delivery.deliver_once(store) == 3
        assert sub.wait_for(3)

        broker.stop()  # the outage: messages queue up in the store
        queue(store, sinks, 4, start=3)
        assert delivery.deliver_once(store) == 0
        health = delivery.health(store)[0]
        assert health.pending == 4 and health.last_error and "mqtt 127.0.0.1" in health.last_error
        assert Outbox(store).head("mqtt").attempts == 1

        broker.start()  # same port; the subscriber reconnects and subscribes again
        sub.subscribed.clear()
        assert sub.subscribed.wait(15)
        assert delivery.deliver_once(store, ignore_backoff=True) == 4
        assert sub.wait_for(7)
        assert delivery.health(store)[0].pending == 0 and delivery.health(store)[0].last_error is None
    delivery.stop()
    sub.close()
    numbers = [m["n"] for m in sub.messages]
    assert sorted(set(numbers)) == list(range(7))  # every one arrived (QoS 1: at least once)
    assert numbers[:3] == [0, 1, 2] and numbers[-4:] == [3, 4, 5, 6]  # in order


def test_outbox_survives_a_restart_of_loupe(broker: Broker, tmp_path: Path) -> None:
    db = tmp_path / "loupe.db"
    url = f"mqtt://127.0.0.1:{broker.port}"
    broker.stop()
    first = Delivery(db, build_sinks(outputs_from_dict({"mqtt": {"url": url, "timeout_s": 1}})))
    with Store(db) as store:
        queue(store, list(first.sinks.values()), 2)
        assert first.deliver_once(store) == 0
    first.stop()  # Loupe stops with two messages owed
    broker.start()
    sub = Subscriber(broker.port, "loupe/#")
    second = Delivery(db, build_sinks(outputs_from_dict({"mqtt": {"url": url, "timeout_s": 2}})))
    second.start()  # the background thread finds them in the store
    second.wake()
    assert sub.wait_for(2)
    second.stop()
    sub.close()
    assert [m["n"] for m in sub.messages] == [0, 1]
    assert sub.messages[0]["verdict"] == "FAIL"


def test_webhook_retries_until_accepted(receiver: Receiver, tmp_path: Path) -> None:
    sinks = build_sinks(outputs_from_dict({"webhook": {"url": receiver.url, "headers": {"X-Line": "7"}}}))
    delivery = Delivery(tmp_path / "loupe.db", sinks)
    with Store(tmp_path / "loupe.db") as store:
        queue(store, sinks, 2)
        assert delivery.deliver_once(store) == 0  # 503
        assert "HTTP 503" in (delivery.health(store)[0].last_error or "")
        assert delivery.deliver_once(store) == 0  # backing off: not due yet
        assert delivery.deliver_once(store, ignore_backoff=True) == 0  # 503 again
        assert delivery.deliver_once(store, ignore_backoff=True) == 2
        assert [e.attempts for e in Outbox(store).entries()] == [3, 1]
    assert [b["n"] for b in receiver.bodies] == [0, 1]
    delivery.stop()


def test_webhook_unreachable_is_a_kept_message(tmp_path: Path) -> None:
    from tests.floor.conftest import free_port

    sinks = build_sinks(outputs_from_dict({"webhook": {"url": f"http://127.0.0.1:{free_port()}/x", "timeout_s": 1}}))
    delivery = Delivery(tmp_path / "loupe.db", sinks)
    with Store(tmp_path / "loupe.db") as store:
        queue(store, sinks, 1)
        assert delivery.deliver_once(store) == 0
        assert Outbox(store).counts() == {"webhook": {"pending": 1, "sent": 0, "dropped": 0}}
        assert "refused" in (Outbox(store).head("webhook").last_error or "").lower()


def test_file_drop_writes_json_next_to_the_image(tmp_path: Path) -> None:
    image = tmp_path / "part-1.jpg"
    image.write_bytes(b"jpeg")
    sink = FileDropSink()
    sink.send({"verdict": "PASS", "image": str(image)})
    assert json.loads((tmp_path / "part-1.jpg.json").read_text())["verdict"] == "PASS"
    assert not list(tmp_path.glob(".*.tmp"))


def test_the_queue_is_bounded_and_says_what_it_dropped(tmp_path: Path) -> None:
    sink = FakeSink()
    with Store(tmp_path / "loupe.db") as store:
        outbox = Outbox(store, max_pending=3)
        dropped = sum(outbox.put([Message("fake", "memory", {"n": i})]) for i in range(5))
        assert dropped == 2
        assert outbox.counts()["fake"] == {"pending": 3, "sent": 0, "dropped": 2}
        sink.down = True
        delivery = Delivery(tmp_path / "loupe.db", [sink])
        assert delivery.deliver_once(store) == 0
        sink.down = False
        assert delivery.deliver_once(store, ignore_backoff=True) == 3
    assert [p["n"] for p in sink.sent] == [2, 3, 4]  # the newest kept, in order


def test_a_v2_store_gains_the_outbox_and_keeps_its_rows(tmp_path: Path) -> None:
    import sqlite3

    from loupe.store.migrations import migrate

    db = tmp_path / "v2.db"
    conn = sqlite3.connect(db, isolation_level=None)
    migrate(conn, target=2)
    conn.execute("INSERT INTO audit (at, kind) VALUES ('2026-01-01', 'upload')")
    conn.close()
    with Store(db) as store:
        assert store.migrated_from == 2 and store.version == SCHEMA_VERSION == 5
        assert store.conn.execute("SELECT kind FROM audit").fetchall()[0][0] == "upload"
        assert Outbox(store).counts() == {}


def test_a_topic_mqtt_rejects_is_refused_when_the_task_loads() -> None:
    import pytest
    from loupe.core.errors import TaskError

    for topic in ("line1/{nope}", "line1/#", "line1/+/x", "{0}", ""):
        with pytest.raises(TaskError) as info:
            outputs_from_dict({"mqtt": {"url": "mqtt://127.0.0.1:1883", "topic": topic}})
        assert info.value.pointer == "/mqtt/topic" and "\n" not in str(info.value), topic
    assert outputs_from_dict({"mqtt": {"url": "mqtt://127.0.0.1", "topic": "line1/{task}/{verdict}"}}).sinks


def test_a_failing_sink_fails_alone_and_visibly_beside_a_working_one(broker: Broker, tmp_path: Path) -> None:
    """A real MQTT sink whose topic template breaks at send time (built past the load-time check, as an older task
    file or a bug would) next to a file drop: the file drop delivers everything; the MQTT sink keeps its messages
    and its health says why."""
    from loupe.floor.outputs.mqtt import MqttSink

    image = tmp_path / "part.jpg"
    image.write_bytes(b"jpeg")
    broken = MqttSink(url=f"mqtt://127.0.0.1:{broker.port}", topic="line1/{nope}")
    files = FileDropSink()
    delivery = Delivery(tmp_path / "loupe.db", [broken, files])
    with Store(tmp_path / "loupe.db") as store:
        outbox = Outbox(store)
        for i in range(3):
            outbox.put(
                [
                    Message(s.name, s.destination, {"verdict": "FAIL", "task": "defects", "n": i, "image": str(image)})
                    for s in (broken, files)
                ]
            )
        assert delivery.deliver_once(store) == 3  # all three through the file drop
        counts = outbox.counts()
        assert counts["file"]["sent"] == 3 and counts["mqtt"]["pending"] == 3
        health = {h.name: h for h in delivery.health(store)}
        assert "KeyError" in (health["mqtt"].last_error or "") and not health["file"].last_error
    assert json.loads((tmp_path / "part.jpg.json").read_text())["n"] == 2


def test_output_credentials_are_named_never_written_and_never_stored(
    receiver: Receiver, tmp_path: Path, monkeypatch
) -> None:
    import sqlite3

    import pytest
    from loupe.core.errors import TaskError
    from loupe.core.tasks import task_from_dict

    for outputs, pointer in (
        ({"mqtt": {"url": "mqtt://line:hunter2@127.0.0.1"}}, "/mqtt/url"),
        (
            {"webhook": {"url": receiver.url, "headers": {"Authorization": "Bearer s3cret"}}},
            "/webhook/headers/Authorization",
        ),
        ({"webhook": {"url": receiver.url, "headers": {"X-Api-Key": "s3cret"}}}, "/webhook/headers/X-Api-Key"),
        ({"mqtt": {"url": "mqtt://line@127.0.0.1", "password": "hunter2"}}, "/mqtt/password"),
    ):
        with pytest.raises(TaskError) as info:
            outputs_from_dict(outputs)
        assert info.value.pointer == pointer and "s3cret" not in str(info.value) and "hunter2" not in str(info.value)

    monkeypatch.setenv("LINE_TOKEN", "Bearer s3cret")
    raw = {
        "schema": {"type": "object"},
        "instructions": "x",
        "outputs": {
            "webhook": {"url": receiver.url, "headers": {"Authorization": {"env": "LINE_TOKEN"}, "X-Line": "7"}}
        },
    }
    task = task_from_dict(raw, "t.json")
    sinks = build_sinks(outputs_from_dict(task.outputs))
    with Store(tmp_path / "loupe.db") as store:
        store.create_job(key="k", task=task, model="m", settings={}, launch={}, paths=["a.png"])
        queue(store, sinks, 1)
        delivery = Delivery(tmp_path / "loupe.db", sinks)
        sent = [delivery.deliver_once(store, ignore_backoff=True) for _ in range(3)]  # the receiver 503s twice first
        assert sent == [0, 0, 1]
    assert receiver.headers[0]["Authorization"] == "Bearer s3cret" and receiver.headers[0]["X-Line"] == "7"
    stored = sqlite3.connect(tmp_path / "loupe.db").execute("SELECT task FROM jobs").fetchone()[0]
    assert "LINE_TOKEN" in stored and "s3cret" not in stored
    monkeypatch.delenv("LINE_TOKEN")
    with pytest.raises(TaskError, match=r"\$LINE_TOKEN is not set"):
        build_sinks(outputs_from_dict(task.outputs))
