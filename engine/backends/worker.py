"""A backend whose model runs in a supervised child process, so a native crash costs one request, not Loupe.

llama.cpp is C++ running on files users bring: a malformed GGUF, a CPU path with a bug (the AMX crash), an
out-of-memory kill or a future regression ends the process it runs in. `WorkerBackend` keeps the Backend protocol
(compile, generate with streamed tokens and a cancel event, close) and runs the real backend in a child process
(engine.backends.worker_child), as Ollama and LM Studio keep their runners apart:

- a crash (SIGSEGV, SIGBUS, SIGILL, SIGABRT, SIGKILL...) becomes a BackendError naming the signal, which the Engine
  turns into an `error` result for that request; the next request starts a new worker and goes on;
- a load that crashes is a ModelLoadError naming the file; the parent stays up;
- cancel is hard: the child is asked to stop, and killed if it has not within `cancel_grace` (0.5 s), e.g. inside an
  image encode that llama.cpp cannot interrupt; the generation comes back `cancelled` with what it had produced;
- images cross as pixels (PIL pickles raw bytes), tokens are streamed back as they come;
- the child has a memory ceiling (RLIMIT_DATA: its heap and anonymous memory, not the mapped model file) of the model
  files' size x 1.5 + 2 GiB, at most 90 % of the machine's memory; past it an allocation fails, which is a one-line
  error naming the ceiling, not the kernel's OOM killer choosing a victim. $LOUPE_WORKER_MEMORY sets it (e.g. `6G`,
  `800M`, or `off`).

$LOUPE_MODEL_WORKER=off runs backends in-process instead (debugging; platforms without a spawn start method).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, ClassVar

from engine.backends.base import Capabilities, Generation, GenerationRequest
from engine.confidence import TokenStep
from engine.errors import BackendError, ConstraintError, LoupeError, ModelLoadError

ENV = "LOUPE_MODEL_WORKER"  # on (default) | off
CANCEL_GRACE_S = 0.5
CRASHED = "the model process crashed"  # how a request's error begins when the worker died on it
LOAD_TIMEOUT_S = 600.0  # a 4B model read from a slow disk; a child stuck longer is killed
MEMORY_ENV = "LOUPE_WORKER_MEMORY"  # e.g. 6G, 800M, off
_UNITS = {"": 1 << 20, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}  # a bare number is MiB
_ERRORS: dict[str, type[LoupeError]] = {
    "ModelLoadError": ModelLoadError,
    "ConstraintError": ConstraintError,
    "BackendError": BackendError,
}


def enabled(environ: Any = os.environ) -> bool:
    """Whether backends run in a worker process: $LOUPE_MODEL_WORKER (default on), on POSIX (the child gets its pipe
    by fd), outside a frozen bundle (whose executable is not a Python to run `-m` with)."""
    wanted = environ.get(ENV, "on").strip().lower() not in {"0", "off", "no", "false"}
    return wanted and os.name == "posix" and not getattr(sys, "frozen", False)


def memory_ceiling(files: list[str], environ: Any = os.environ, total: int | None = None) -> int | None:
    """Bytes the model process may allocate (None: no ceiling): $LOUPE_WORKER_MEMORY, else the model files' size x 1.5
    + 2 GiB (weights repacked into the heap, KV cache, compute buffers, Python), at most 90 % of `total` memory."""
    setting = environ.get(MEMORY_ENV, "").strip().upper().removesuffix("B").removesuffix("I")
    if setting in {"OFF", "0", "NONE", "NO"}:
        return None
    if setting:
        number, unit = setting.rstrip("KMGT"), setting[len(setting.rstrip("KMGT")) :]
        try:
            return int(float(number) * _UNITS[unit])
        except (ValueError, KeyError):
            raise BackendError(f"${MEMORY_ENV} must be a size such as 6G or 800M, or off (got {setting!r})") from None
    size = sum(Path(f).stat().st_size for f in files if Path(f).is_file())
    derived = int(size * 1.5) + (2 << 30)
    total = total if total is not None else _physical_memory()
    return min(derived, int(total * 0.9)) if total else derived


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _reap(proc: subprocess.Popen[bytes]) -> int | None:
    """The exit status of a child that has exited or been killed (None if it will not go)."""
    try:
        return proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        return None


def describe_exit(code: int | None) -> str:
    """'SIGSEGV' for a child killed by signal 11, 'exit code 3' for a plain exit."""
    if code is None:
        return "no exit code"
    if code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


class WorkerCrashed(BackendError):
    """The model process died during a request; `signal` names how (e.g. "SIGSEGV")."""

    def __init__(self, message: str, how: str) -> None:
        super().__init__(message)
        self.how = how


class RemoteConstraint:
    """A schema compiled in the worker, known to the parent by key (the compiled object stays in the child)."""

    def __init__(self, key: str, schema: dict[str, Any] | bool, allow_refusal: bool, source: str) -> None:
        self.key, self.schema, self.allow_refusal, self.source = key, schema, allow_refusal, source

    def matcher(self) -> Any:
        raise BackendError("a worker's constraint is matched in the worker, not here")


class WorkerBackend:
    """Backend protocol over a child process that holds the real backend `module.cls(*args, **kwargs)`."""

    name: ClassVar[str] = "llama_cpp"
    steerable: ClassVar[bool] = True
    module: ClassVar[str] = "engine.backends.llama_cpp"
    cls: ClassVar[str] = "LlamaCppBackend"

    def __init__(self, *args: Any, cancel_grace: float = CANCEL_GRACE_S, **kwargs: Any) -> None:
        self._args, self._kwargs = args, kwargs
        self._files = [str(a) for a in args if isinstance(a, str | Path)]
        self.cancel_grace = cancel_grace
        self._lock = threading.Lock()  # one request at a time, as the in-process backend
        self._proc: Any = None
        self._conn: Connection | None = None
        self.restarts = 0
        self.last_exit = ""
        info = self._start()
        self.model_id: str = info["model_id"]
        self.capabilities: Capabilities = info["capabilities"]
        self.load_ms: float = info["load_ms"]

    @classmethod
    def is_available(cls) -> bool:
        import importlib.util

        return importlib.util.find_spec("llama_cpp") is not None

    @property
    def pid(self) -> int | None:
        """The worker's process id (None while none runs)."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    # -- the child ------------------------------------------------------------------------------
    def _start(self) -> dict[str, Any]:
        # a fresh interpreter (`python -m engine.backends.worker_child FD`), not multiprocessing's spawn: that
        # re-imports the caller's __main__, which breaks any script without an `if __name__ == "__main__"` guard
        ours, theirs = socket.socketpair()
        # the child's last words (a GGML_ASSERT, an abort) for the error; open while it lives, closed in _forget_child
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "engine.backends.worker_child", str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=self._stderr,
                start_new_session=True,  # a Ctrl+C in the terminal is the parent's to handle, not the model's
            )
        finally:
            theirs.close()
        self._proc, self._conn = proc, Connection(ours.detach())
        self.memory_limit = memory_ceiling(self._files)
        self._conn.send(("load", self.module, self.cls, self._args, self._kwargs, self.memory_limit))
        try:
            kind, value = self._reply(timeout=LOAD_TIMEOUT_S)
        except WorkerCrashed as exc:
            files = ", ".join(self._files) or "the model"
            raise ModelLoadError(
                f"the model process crashed ({exc.how}) loading {files}: the file is corrupt or "
                "this llama.cpp cannot run it"
            ) from None
        if kind != "ok":
            self._stop()
            raise value
        return value

    def _last_words(self) -> str:
        """The last line the dead child wrote to stderr (e.g. llama.cpp's GGML_ASSERT), if any."""
        try:
            self._stderr.seek(0, os.SEEK_END)
            self._stderr.seek(max(0, self._stderr.tell() - 2048))
            lines = [ln.strip() for ln in self._stderr.read().decode("utf-8", "replace").splitlines() if ln.strip()]
        except (OSError, ValueError):
            return ""
        return lines[-1][:300] if lines else ""

    def _reply(
        self,
        timeout: float | None = None,
        cancel: threading.Event | None = None,
        on_token: Any = None,
        partial: list[Any] | None = None,
    ) -> tuple[str, Any]:
        """Wait for the child's answer to the request in flight, passing tokens on; a dead child raises
        WorkerCrashed; a cancel not obeyed within the grace period kills it and answers ("cancelled", None)."""
        assert self._conn is not None and self._proc is not None
        conn, proc = self._conn, self._proc
        deadline = None if timeout is None else time.monotonic() + timeout
        cancel_sent: float | None = None
        while True:
            ready = wait([conn], timeout=0.02)
            if conn in ready:
                try:
                    msg = conn.recv()
                except (EOFError, OSError):
                    msg = None
                if msg is not None:
                    if msg[0] == "token":
                        if partial is not None:
                            partial.append(msg[1:])
                        if on_token is not None:
                            on_token(msg[1], msg[2])
                        continue
                    if msg[0] == "ok":
                        return "ok", msg[1]
                    return "error", _ERRORS.get(msg[1], BackendError)(msg[2])
            if conn in ready or proc.poll() is not None:  # EOF or exit: the child is gone
                how = describe_exit(_reap(proc))
                words = self._last_words()
                self._forget_child(how)
                raise WorkerCrashed(f"{CRASHED} ({how}{': ' + words if words else ''})", how)
            now = time.monotonic()
            if cancel is not None and cancel.is_set():
                if cancel_sent is None:
                    cancel_sent = now
                    with contextlib.suppress(OSError):
                        conn.send(("cancel",))
                elif now - cancel_sent > self.cancel_grace:
                    self._kill(f"cancelled: the model did not stop within {self.cancel_grace:.1f} s (it was killed)")
                    return "cancelled", None
            if deadline is not None and now > deadline:
                self._kill("timed out")
                raise WorkerCrashed(
                    f"the model process did not answer within {timeout:.0f} s (it was killed)", "timeout"
                )

    def _forget_child(self, how: str) -> None:
        self.last_exit = how
        if self._conn is not None:
            self._conn.close()
        self._stderr.close()
        self._proc, self._conn = None, None

    def _kill(self, why: str) -> None:
        if self._proc is not None:
            self._proc.kill()
            _reap(self._proc)
        self._forget_child(why)

    def _stop(self) -> None:
        proc, conn = self._proc, self._conn
        if proc is None:
            return
        try:
            if conn is not None:
                conn.send(("close",))
            proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            _reap(proc)
        self._forget_child("closed")

    def _ensure(self) -> None:
        """A worker with the model loaded (a new one after a crash or a hard cancel)."""
        if self._proc is None:
            self.restarts += 1
            self._start()

    # -- the Backend protocol -------------------------------------------------------------------
    def compile(self, schema: dict[str, Any] | bool, *, allow_refusal: bool = True) -> RemoteConstraint:
        key = hashlib.sha256(json.dumps([schema, allow_refusal], sort_keys=True).encode()).hexdigest()
        with self._lock:
            self._ensure()
            assert self._conn is not None
            self._conn.send(("compile", key, schema, allow_refusal))
            kind, value = self._reply()
        if kind != "ok":
            raise value
        return RemoteConstraint(key, schema, allow_refusal, value)

    def generate(self, request: GenerationRequest, *, cancel: threading.Event | None = None) -> Generation:
        from dataclasses import replace

        c = request.constraint
        key, schema, refusal = (
            (c.key, c.schema, c.allow_refusal)
            if isinstance(c, RemoteConstraint)
            else (None, request.schema, request.allow_refusal)
        )
        if c is not None and not isinstance(c, RemoteConstraint):
            raise BackendError("a worker backend takes constraints it compiled itself")
        partial: list[tuple[bytes, TokenStep]] = []
        with self._lock:
            if cancel is not None and cancel.is_set():
                return Generation(text="", stop="cancelled")
            self._ensure()
            assert self._conn is not None
            self._conn.send(("generate", key, schema, refusal, replace(request, constraint=None, on_token=None)))
            try:
                kind, value = self._reply(cancel=cancel, on_token=request.on_token, partial=partial)
            except WorkerCrashed as exc:
                raise WorkerCrashed(f"{exc} on this request; a new one starts for the next", exc.how) from None
        if kind == "cancelled":
            text = b"".join(p for p, _ in partial).decode("utf-8", "replace")
            return Generation(text=text, steps=[s for _, s in partial], stop="cancelled")
        if kind != "ok":
            raise value
        return value

    def close(self) -> None:
        with self._lock:
            self._stop()
