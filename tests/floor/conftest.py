"""Real parts for the factory-floor tests: an MQTT broker (mosquitto, else amqtt) and an HTTP receiver on 127.0.0.1,
image writers."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from loupe import taskfile
from loupe.api import Engine
from loupe.backends.fake import FakeBackend
from loupe.core.tasks import builtin_task

from tests.noise import noise_image

DEFECTS = builtin_task("defects")
DEFECTS_FILE = taskfile.parse(DEFECTS)  # its verdict and outputs, parsed once as the task-file loader does


def defects_json(*severities: int) -> str:
    """What the fake backend answers for the defects task: one scratch per severity."""
    return json.dumps(
        {
            "defects": [
                {"label": "scratch", "box_2d": [100, 100, 400, 500], "severity": s, "reason": "a visible scratch"}
                for s in severities
            ]
        }
    )


def fake_engine(*answers: str, prob: float = 0.95) -> Engine:
    """An engine on the scripted backend: the verdict tests need chosen answers, which random weights cannot give."""
    return Engine(FakeBackend(list(answers), prob=prob), model="fake")


def png_bytes(seed: int, size: tuple[int, int] = (64, 48)) -> bytes:
    """A distinct small PNG (different seeds give different bytes)."""
    import io

    buf = io.BytesIO()
    noise_image(size, seed).save(buf, format="PNG")
    return buf.getvalue()


def write_video(path: Path, frames: int = 5) -> None:
    """A short MJPG .avi (written by OpenCV) whose frame i is filled with grey level 40 * i."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    assert writer.isOpened()
    for i in range(frames):
        writer.write(np.full((48, 64, 3), 40 * i, dtype=np.uint8))
    writer.release()


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    """Debian's mosquitto on 127.0.0.1:port, started and restarted on the same port."""

    def __init__(self, workdir: Path, exe: str = "mosquitto") -> None:
        self.exe = exe
        self.port = free_port()
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        """Start it and return once it listens (mosquitto says so on stderr with -v)."""
        proc = subprocess.Popen([self.exe, "-v", "-c", str(self.conf)], stderr=subprocess.PIPE, text=True)
        listening = threading.Event()

        def read() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                if line.rstrip().endswith(" running"):
                    listening.set()
            listening.set()  # it exited: let the waiter see that

        threading.Thread(target=read, name="mosquitto-log", daemon=True).start()
        assert listening.wait(10) and proc.poll() is None, "mosquitto did not start"
        self.proc = proc

    def stop(self) -> None:
        """Stop it (a broker outage)."""
        if self.proc is not None:
            for _ in range(5):  # a SIGTERM right after start can be lost (mosquitto resets its run flag)
                self.proc.terminate()
                try:
                    self.proc.wait(1)
                    break
                except subprocess.TimeoutExpired:
                    continue
            else:
                self.proc.kill()
                self.proc.wait(5)
            self.proc = None


class PyBroker:
    """amqtt, a pure-Python MQTT broker from PyPI (in the dev extra), on 127.0.0.1:port in its own event loop thread:
    what the tests use where Debian's mosquitto is not installed. Started and restarted on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self._running: tuple[asyncio.AbstractEventLoop, threading.Thread, Any] | None = None

    def start(self) -> None:
        """Start it and return once it listens."""
        from amqtt.broker import Broker as Amqtt

        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="amqtt", daemon=True)
        thread.start()

        async def boot() -> Any:
            broker = Amqtt(config)
            await broker.start()
            return broker

        self._running = (loop, thread, asyncio.run_coroutine_threadsafe(boot(), loop).result(10))

    def stop(self) -> None:
        """Stop it (a broker outage): the port is closed and every client is dropped."""
        if self._running is not None:
            loop, thread, broker = self._running
            asyncio.run_coroutine_threadsafe(broker.shutdown(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
            loop.close()
            self._running = None


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker | PyBroker]:
    """A running MQTT broker on a free port: Debian's mosquitto where it is installed, else amqtt from PyPI."""
    exe = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin")
    if exe is None or os.environ.get("LOUPE_TEST_BROKER") == "amqtt":
        b: Broker | PyBroker = PyBroker()
    else:
        b = Broker(tmp_path, exe)
    b.start()
    yield b
    b.stop()


class Subscriber:
    """A paho client collecting every message on a topic filter; `wait_for(n)` blocks until n have arrived."""

    def __init__(self, port: int, topic: str) -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-subscriber")
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.subscribed.wait(10)

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self._cond:
            self.messages.append(json.loads(msg.payload))
            self._cond.notify_all()

    def wait_for(self, n: int, timeout: float = 15) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.messages) >= n, timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Receiver:
    """An HTTP server on 127.0.0.1 that records JSON POSTs; the first `fail_first` answer 503."""

    def __init__(self, fail_first: int = 0) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.fail_first = fail_first
        self.got = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if receiver.fail_first > 0:
                    receiver.fail_first -= 1
                    self.send_response(503)
                    self.end_headers()
                    return
                receiver.bodies.append(json.loads(body))
                receiver.headers.append(dict(self.headers))
                receiver.got.set()
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, name="test-webhook", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook receiver that fails its first two requests (so retries are exercised)."""
    r = Receiver(fail_first=2)
    yield r
    r.close()
