"""`python -m llama_cpp.server` (llama-cpp-python's OpenAI-compatible server) as a subprocess on 127.0.0.1.

It serves a tiny synthetic GGUF with its mmproj through the `mtmd` chat format (llama.cpp's multimodal
library), so it really takes the image. Readiness and request counts come from the server's own log lines
(read by a thread as they arrive), so nothing polls.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

READY = "Uvicorn running on"
CHAT = '"POST /v1/chat/completions HTTP/1.1"'


def free_port() -> int:
    """A port nobody listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LlamaServer:
    """The server process; `log` grows as it writes; `chat_requests()` counts completions it answered."""

    model: Path
    mmproj: Path
    alias: str = "tiny-server"
    start_timeout_s: float = 60.0
    log: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.port = free_port()
        cmd = [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(self.model),
            "--clip_model_path",
            str(self.mmproj),
            "--chat_format",
            "mtmd",
            "--model_alias",
            self.alias,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--n_ctx",
            "4096",
            "--n_threads",
            "1",
            "--verbose",
            "False",
        ]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "LOUPE_OFFLINE": "1"}
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self._ready = threading.Event()
        self._lock = threading.Condition()
        self._reader = threading.Thread(target=self._read, name="llama-server-log", daemon=True)
        self._reader.start()
        if not self._ready.wait(self.start_timeout_s) or self.proc.poll() is not None:
            self.close()
            raise RuntimeError("llama_cpp.server did not start:\n" + "".join(self.log[-30:]))

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._lock:
                self.log.append(line)
                self._lock.notify_all()
            if READY in line:
                self._ready.set()
        self._ready.set()  # EOF: the process ended (the waiter checks poll())

    @property
    def base_url(self) -> str:
        """http://127.0.0.1:PORT/v1"""
        return f"http://127.0.0.1:{self.port}/v1"

    def chat_requests(self) -> int:
        """Chat completions the server has logged so far."""
        with self._lock:
            return self._count()

    def _count(self) -> int:
        return sum(CHAT in line for line in self.log)

    def wait_chat_requests(self, n: int, timeout: float = 10.0) -> int:
        """Block until the server has logged `n` completions (its access log line may trail the reply)."""
        with self._lock:
            self._lock.wait_for(lambda: self._count() >= n, timeout)
            return self._count()

    def close(self) -> None:
        """Stop the process and the log reader."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(5)
