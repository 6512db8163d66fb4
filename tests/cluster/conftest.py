"""Real Ray clusters on this machine for the cluster tests: one started in this process, and one of two nodes
(`ray start --head` plus a second `ray start --address ...`, each in its own process group so a test can kill it)."""

from __future__ import annotations

import io
import os
import shutil
import signal
import socket
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
    t0 = time.monotonic()
    code = main(list(argv), out=out, err=err)
    print("TIMING", f"{time.monotonic() - t0:.1f}", " ".join(a for a in argv if a.startswith("--r")), out.getvalue()[-200:])
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
def ray_local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
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
        self.spare.append(_start([f"--address={self.address}", "--num-cpus=1", '--resources={"node3": 1}'], self.env))


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    ray_cli = [sys.executable, "-m", "ray.scripts.scripts"]  # this interpreter: workers import this checkout's loupe
    return subprocess.Popen(
        [*ray_cli, "start", *args, "--block", "--disable-usage-stats", f"--object-store-memory={STORE_MB * MIB}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: killed whole, and never by the terminal's Ctrl-C
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoNodes]:
    """Two Ray nodes on 127.0.0.1, this process connected as the driver; everything stopped after the module."""
    import ray

    temp = tempfile.mkdtemp(prefix="lr2", dir="/tmp")
    # no auth token: the test cluster and this driver must not share the user's ~/.ray/auth_token
    auth = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    env = {**os.environ, **worker_env(tmp_path_factory.getbasetemp()), "RAY_BACKEND_LOG_LEVEL": "error"}
    port = _free_port()
    head = _start(
        ["--head", f"--port={port}", "--num-cpus=1", "--include-dashboard=false", f"--temp-dir={temp}"], env
    )
    node2 = None
    spare: list[subprocess.Popen[bytes]] = []
    try:
        wait_for(lambda: _listening(port), "the head node")
        node2 = _start([f"--address=127.0.0.1:{port}", "--num-cpus=1", '--resources={"node2": 1}'], env)
        ray.init(address=f"127.0.0.1:{port}", log_to_driver=False, configure_logging=False)
        wait_for(lambda: sum(1 for n in ray.nodes() if n["Alive"]) == 2, "the second node to join")
        yield TwoNodes(f"127.0.0.1:{port}", head, node2, env, spare)
    finally:
        ray.shutdown()
        for proc in (*spare, node2, head):
            if proc is not None:
                _stop(proc)
        shutil.rmtree(temp, ignore_errors=True)
        if auth is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = auth


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False
