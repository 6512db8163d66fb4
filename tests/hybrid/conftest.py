"""Fixtures for hybrid mode: the stub cloud on 127.0.0.1, a cloud backend pointed at it, a temp store."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from loupe.backends.cloud import CloudBackend, CloudConfig
from loupe.core.tasks import Task
from loupe.escalate.audit import StoreAudit
from loupe.models.synthetic import SyntheticModel
from loupe.store.sqlite import Store

from tests.hybrid.llama_server import LlamaServer
from tests.hybrid.stub_server import StubCloud

KEY = "sk-test-SECRET-do-not-leak-0123456789"
TASK = Task(
    name="digit",
    instructions="Give one digit.",
    schema={
        "type": "object",
        "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 9}},
        "required": ["n"],
        "additionalProperties": False,
    },
).with_options(max_tokens=16, review_threshold=0.8, retries=1)


def refuse_sockets(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """From now on every outgoing connection attempt is refused (a leak fails loudly); returns the attempts."""
    opened: list[Any] = []

    def trap(self: socket.socket, *args: Any, **kwargs: Any) -> None:
        opened.append(args)
        raise AssertionError("a socket connection was attempted")

    monkeypatch.setattr(socket.socket, "connect", trap)
    monkeypatch.setattr(socket.socket, "connect_ex", trap)
    return opened


@pytest.fixture
def no_sockets(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every outgoing connection attempt, refused (so a leak fails loudly instead of reaching the network)."""
    return refuse_sockets(monkeypatch)


@pytest.fixture
def stub() -> Iterator[StubCloud]:
    """A fresh stub server per test (no shared script)."""
    server = StubCloud()
    yield server
    server.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """An empty results store in a temp dir."""
    with Store(tmp_path / "loupe.db") as s:
        yield s


@pytest.fixture
def sleeps() -> list[float]:
    """Every backoff the backend asked for (nothing actually sleeps)."""
    return []


@pytest.fixture
def make_cloud(stub: StubCloud, store: Store, sleeps: list[float]) -> Iterator[Callable[..., CloudBackend]]:
    """Build a CloudBackend against the stub, audited into `store`; keyword args override the config."""
    made: list[CloudBackend] = []

    def make(**overrides: object) -> CloudBackend:
        config = CloudConfig(
            **{
                "preset": "llama_cpp_server",
                "base_url": stub.base_url,
                "model": "stub-model",
                "enabled": True,
                "max_side": 64,
                "timeout_s": 5.0,
                "max_retries": 3,
                "price_in_per_mtok": 1.0,
                "price_out_per_mtok": 4.0,
                **overrides,
            }
        )
        backend = CloudBackend(config, api_key=KEY, audit=StoreAudit(store), sleep=sleeps.append, rand=lambda: 0.0)
        made.append(backend)
        return backend

    yield make
    for b in made:
        b.close()


@pytest.fixture(scope="module")
def llama_server(tiny_models: dict[str, SyntheticModel]) -> Iterator[LlamaServer]:
    """`llama_cpp.server` serving the tiny SmolVLM-family model with its mmproj (images accepted), per module."""
    for dep in ("fastapi", "uvicorn", "sse_starlette", "starlette_context", "pydantic_settings"):
        pytest.importorskip(dep, reason="llama_cpp.server needs the `server` extra: pip install -e '.[server]'")
    m = tiny_models["smolvlm"]
    server = LlamaServer(m.text_path, m.mmproj_path)
    yield server
    server.close()
