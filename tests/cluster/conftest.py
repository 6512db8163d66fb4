"""Real Ray clusters on this machine for the cluster tests: one started in this process, and one of two nodes
(`ray start --head` plus a second `ray start --address ...`, each in its own process group so a test can kill it)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from loupe.cli import main
from loupe.cli.main import parser
from loupe.cli.store import _start
from loupe.models.synthetic import SyntheticModel
from loupe.store import Store

from tests.hybrid.stub_server import StubCloud
from tests.store.conftest import DIGIT_TASK

MIB = 1024 * 1024
STORE_MB = 100  # object store per node: rows are small


def worker_env(base: Path) -> dict[str, str]:
    """What workers need from the test session: offline, and the model caches in the session's temp dir."""
    return {
        "LOUPE_OFFLINE": "1",
        "HF_HUB_OFFLINE": "1",
        "LOUPE_PREFIX_CACHE": str(base / "prefix-kv"),
        "LOUPE_PROJECTOR_CACHE": str(base / "projectors"),
    }


def run_cli(*argv: str) -> tuple[int, str, str]:
    """`loupe ...` in this process."""
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def wait_for(check: Callable[[], bool], what: str, deadline_s: float = 60.0) -> None:
    """Poll `check` until it holds; fail naming `what` after the deadline."""
    end = time.monotonic() + deadline_s
    pause = threading.Event()
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        pause.wait(0.1)


@pytest.fixture(scope="module")
def digit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("task") / "digit.json"
    path.write_text(json.dumps(DIGIT_TASK))
    return path


@pytest.fixture(scope="module")
def model(tiny_models: dict[str, SyntheticModel]) -> list[str]:
    m = tiny_models["smolvlm"]
    return ["--model-path", str(m.text_path), "--mmproj", str(m.mmproj_path)]


def answers(db: Path, job: int) -> list[tuple[str, str, str | None, float | None, str]]:
    """(file name, status, data, lowest confidence, confidence) per item of a job, in item order."""
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute(
            "SELECT i.path, r.status, r.data, r.min_confidence, r.confidence FROM items i JOIN results r"
            " ON r.item_id = i.id WHERE i.job_id = ? ORDER BY i.seq",
            (job,),
        ).fetchall()
    finally:
        conn.close()
    return [(Path(p).name, s, d, m, c) for p, s, d, m, c in rows]


def once_each(db: Path) -> tuple[int, int, str]:
    """(items, results, integrity): every item has exactly one result when the first two are equal."""
    conn = sqlite3.connect(db)
    try:
        items = conn.execute("SELECT COUNT(*) FROM items").fetchone()[0]
        per_item = conn.execute("SELECT MAX(n) FROM (SELECT COUNT(*) n FROM results GROUP BY item_id)").fetchone()[0]
        results = conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]
        assert per_item == 1
        return items, results, conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


def new_job(db: Path, argv: list[str]) -> tuple[Store, int]:
    """A job created exactly as `loupe batch ARGV` creates it (not run yet)."""
    store = Store(db)
    job_id, _ = _start(store, parser().parse_args(["batch", *argv]))
    return store, job_id


@pytest.fixture
def stub() -> Iterator[StubCloud]:
    """The stub cloud on 127.0.0.1 (tests/hybrid's), fresh per test."""
    server = StubCloud()
    yield server
    server.close()


@pytest.fixture(scope="package", autouse=True)
def no_ray_auth() -> Iterator[None]:
    """Ray's token auth off for every cluster of these tests: a token lives in the user's ~/.ray, and this process
    keeps the first cluster's auth mode for the next one."""
    before = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    yield
    if before is None:
        os.environ.pop("RAY_AUTH_MODE", None)
    else:
        os.environ["RAY_AUTH_MODE"] = before


@pytest.fixture(scope="module")
def ray_local(tmp_path_factory: pytest.TempPathFactory, no_ray_auth: None) -> Iterator[None]:
    """Ray started in this process on the machine's 2 cores, shut down after the module."""
    import ray

    temp = tempfile.mkdtemp(prefix="lr", dir="/tmp")  # Ray's sockets live here: the path must stay short
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=STORE_MB * MIB * 2,
        log_to_driver=False,
        configure_logging=False,
        runtime_env={"env_vars": worker_env(tmp_path_factory.getbasetemp())},
        _temp_dir=temp,
    )
    try:
        yield
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class TwoNodes:
    """A head node and a second node (resource `node2`), 1 CPU each (so one actor each), each a process group."""

    address: str
    head: subprocess.Popen[bytes]
    node2: subprocess.Popen[bytes]
    env: dict[str, str]
    spare: list[subprocess.Popen[bytes]]

    def lose_node2(self) -> None:
        """The second node is lost (its raylet and workers die at once) and, as an autoscaler would, a new node
        joins in its place, where Ray restarts the lost actor."""
        os.killpg(self.node2.pid, signal.SIGKILL)
        node3 = [f"--address={self.address}", "--num-cpus=1", '--resources={"node3": 1}']
        self.spare.append(_ray_start(node3, self.env))


def _ray_start(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    ray_cli = [sys.executable, "-m", "ray.scripts.scripts"]  # this interpreter: workers import this checkout's loupe
    return subprocess.Popen(
        [*ray_cli, "start", *args, "--block", "--disable-usage-stats", f"--object-store-memory={STORE_MB * MIB}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: killed whole, and never by the terminal's Ctrl-C
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    wait_for(lambda: not _group_alive(proc.pid), "the node's processes to end", 30)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory: pytest.TempPathFactory, no_ray_auth: None) -> Iterator[TwoNodes]:
    """Two Ray nodes on 127.0.0.1, this process connected as the driver; everything stopped after the module."""
    import ray

    temp = tempfile.mkdtemp(prefix="lr2", dir="/tmp")
    env = {**os.environ, **worker_env(tmp_path_factory.getbasetemp()), "RAY_BACKEND_LOG_LEVEL": "error"}
    port = _free_port()
    head_args = ["--head", f"--port={port}", "--num-cpus=1", "--include-dashboard=false", f"--temp-dir={temp}"]
    head = _ray_start(head_args, env)
    node2 = None
    spare: list[subprocess.Popen[bytes]] = []
    try:
        wait_for(lambda: _listening(port), "the head node")
        node2 = _ray_start([f"--address=127.0.0.1:{port}", "--num-cpus=1", '--resources={"node2": 1}'], env)
        ray.init(address=f"127.0.0.1:{port}", log_to_driver=False, configure_logging=False)
        wait_for(lambda: sum(1 for n in ray.nodes() if n["Alive"]) == 2, "the second node to join")
        yield TwoNodes(f"127.0.0.1:{port}", head, node2, env, spare)
    finally:
        ray.shutdown()
        for proc in (*spare, node2, head):
            if proc is not None:
                _stop(proc)
        shutil.rmtree(temp, ignore_errors=True)


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False
