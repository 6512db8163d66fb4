"""Run the API with uvicorn: in the foreground for `loupe serve`, or in a thread (tests, embedding)."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace

import uvicorn
from loupe.serve.app import create_app
from loupe.serve.config import ServeConfig, check_config
from loupe.serve.limits import BodyLimit
from loupe.serve.worker import Workers


class _Server(uvicorn.Server):
    """uvicorn's server with an Event set once it accepts connections."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()


def bind(config: ServeConfig) -> socket.socket:
    """A listening socket for `config` (port 0 picks a free one; the socket knows which)."""
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((config.host, config.port))
    except OSError:
        sock.close()
        raise
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _server(workers: Workers, config: ServeConfig, log_level: str) -> _Server:
    app = BodyLimit(create_app(workers, check_config(config)), config.max_body)
    return _Server(
        uvicorn.Config(app, log_level=log_level, access_log=log_level in ("info", "debug"), timeout_graceful_shutdown=5)
    )


def serve_forever(workers: Workers, config: ServeConfig, *, log_level: str = "info") -> None:
    """Listen until Ctrl-C / SIGTERM, then drain and free the model."""
    server = _server(workers, config, log_level)
    sock = bind(config)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        workers.close()


@dataclass(frozen=True)
class Running:
    """A server running in a thread: its base URL and config (with the real port)."""

    url: str
    config: ServeConfig


@contextlib.contextmanager
def serve_in_thread(
    workers: Workers, config: ServeConfig, *, log_level: str = "warning", start_timeout: float = 30.0
) -> Iterator[Running]:
    """Start the API in a background thread; on exit stop it, join the thread and close `workers`."""
    server = _server(workers, config, log_level)
    sock = bind(config)
    port = sock.getsockname()[1]
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="loupe-serve", daemon=True)
    thread.start()
    try:
        if not server.ready.wait(start_timeout):
            raise RuntimeError(f"the API did not start within {start_timeout} s")
        host = f"[{config.host}]" if ":" in config.host else config.host
        yield Running(f"http://{host}:{port}", replace(config, port=port))
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
        workers.close()
