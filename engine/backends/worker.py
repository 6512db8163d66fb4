"""A backend whose model runs in a supervised child process, so a native crash costs one request, not Loupe.

llama.cpp is C++ running on files users bring: a malformed GGUF, a CPU path with a bug (the AMX crash), an
out-of-memory kill or a future regression ends the process it runs in. `WorkerBackend` keeps the Backend protocol
(compile, generate with streamed tokens and a cancel event, close) and runs the real backend in a child process
(loupe.backends.worker_child), as Ollama and LM Studio keep their runners apart:

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

from loupe.backends.base import Capabilities, Generation, GenerationRequest
from loupe.core.confidence import TokenStep
from loupe.core.errors import BackendError, ConstraintError, LoupeError, ModelLoadError

ENV = "LOUPE_MODEL_WORKER"  # on (default) | off
FROZEN_WORKER_FLAG = "--loupe-model-worker"  # argv[1] of a frozen bundle's executable that runs the model process
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
    by fd; elsewhere in-process)."""
    wanted = environ.get(ENV, "on").strip().lower() not in {"0", "off", "no", "false"}
    return wanted and os.name == "posix"


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


class ModelProcess:
    """One child process (`python -m loupe.backends.worker_child FD`) and the pipe to it; gone once it dies."""

    def __init__(self) -> None:
        # a fresh interpreter, not multiprocessing's spawn: that re-imports the caller's __main__, which breaks any
        # script without an `if __name__ == "__main__"` guard
        ours, theirs = socket.socketpair()
        # the child's last words (a GGML_ASSERT, an abort) for the error; open while it lives
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115
        fd = str(theirs.fileno())
        # in a frozen bundle the executable is Loupe itself, whose entry point (packaging/entry.py) runs the child
        command = (
            [sys.executable, FROZEN_WORKER_FLAG, fd]
            if getattr(sys, "frozen", False)
            else [sys.executable, "-m", "loupe.backends.worker_child", fd]
        )
        try:
            self.proc = subprocess.Popen(
                command,
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=self._stderr,
                start_new_session=True,  # a Ctrl+C in the terminal is the parent's to handle, not the model's
            )
        finally:
            theirs.close()
        self.conn = Connection(ours.detach())
        self.exit = ""  # how it ended, once it has

    @property
    def alive(self) -> bool:
        return not self.exit and self.proc.poll() is None

    def send(self, msg: tuple[Any, ...]) -> None:
        self.conn.send(msg)

    def reply(
        self,
        timeout: float | None = None,
        cancel: threading.Event | None = None,
        grace: float = CANCEL_GRACE_S,
        on_token: Any = None,
        partial: list[Any] | None = None,
    ) -> tuple[str, Any]:
        """Wait for the answer to the request in flight, passing tokens on: ("ok", value), ("error", exception), or
        ("cancelled", None) after killing a child that did not obey a cancel within `grace`. A child that dies
        raises WorkerCrashed naming the signal."""
        deadline = None if timeout is None else time.monotonic() + timeout
        cancel_sent: float | None = None
        while True:
            ready = wait([self.conn], timeout=0.02)
            if ready:
                try:
                    msg = self.conn.recv()
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
                    return "error", _ERRORS.get(msg[1], BackendError)(" ".join(str(msg[2]).splitlines()))
            if ready or self.proc.poll() is not None:  # EOF or exit: the child is gone
                how = describe_exit(_reap(self.proc))
                words = self._last_words()
                self._ended(how)
                raise WorkerCrashed(f"{CRASHED} ({how}{': ' + words if words else ''})", how)
            now = time.monotonic()
            if cancel is not None and cancel.is_set():
                if cancel_sent is None:
                    cancel_sent = now
                    with contextlib.suppress(OSError):
                        self.conn.send(("cancel",))
                elif now - cancel_sent > grace:
                    self.kill(f"canceled: the model did not stop within {grace:.1f} s (it was killed)")
                    return "cancelled", None
            if deadline is not None and now > deadline:
                self.kill("timed out")
                raise WorkerCrashed(
                    f"the model process did not answer within {timeout:.0f} s (it was killed)", "timeout"
                )

    def _last_words(self) -> str:
        """The last line the dead child wrote to stderr (e.g. llama.cpp's GGML_ASSERT), if any."""
        try:
            self._stderr.seek(0, os.SEEK_END)
            self._stderr.seek(max(0, self._stderr.tell() - 2048))
            lines = [ln.strip() for ln in self._stderr.read().decode("utf-8", "replace").splitlines() if ln.strip()]
        except (OSError, ValueError):
            return ""
        return lines[-1][:300] if lines else ""

    def _ended(self, how: str) -> None:
        self.exit = how
        self.conn.close()
        self._stderr.close()

    def kill(self, why: str) -> None:
        if not self.exit:
            self.proc.kill()
            _reap(self.proc)
            self._ended(why)

    def stop(self) -> None:
        """Ask the child to close its model and exit; kill it if it does not within 5 s."""
        if self.exit:
            return
        try:
            self.conn.send(("close",))
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            _reap(self.proc)
        self._ended("closed")


class WorkerBackend:
    """Backend protocol over a child process that holds the real backend `module.cls(*args, **kwargs)`."""

    name: ClassVar[str] = "llama_cpp"
    steerable: ClassVar[bool] = True
    module: ClassVar[str] = "loupe.backends.llama_cpp"
    cls: ClassVar[str] = "LlamaCppBackend"

    def __init__(self, *args: Any, cancel_grace: float = CANCEL_GRACE_S, **kwargs: Any) -> None:
        self._args, self._kwargs = args, kwargs
        self._files = [str(a) for a in args if isinstance(a, str | Path)]
        self.cancel_grace = cancel_grace
        self.memory_limit = memory_ceiling(self._files)
        self._lock = threading.Lock()  # one request at a time, as the in-process backend
        self._child: ModelProcess | None = None
        self.restarts = 0
        self.last_exit = ""
        info = self._start()
        self.model_id: str = info["model_id"]
        self.capabilities: Capabilities = info["capabilities"]
        self.load_ms: float = info["load_ms"]
        self.notes: tuple[str, ...] = info.get("notes", ())

    @classmethod
    def is_available(cls) -> bool:
        import importlib.util

        return importlib.util.find_spec("llama_cpp") is not None

    @property
    def pid(self) -> int | None:
        """The worker's process id (None while none runs)."""
        return self._child.proc.pid if self._child is not None and self._child.alive else None

    def _start(self) -> dict[str, Any]:
        child = ModelProcess()
        self._child = child
        kind, value = _load(child, (self.module, self.cls, self._args, self._kwargs, self.memory_limit), self._files)
        if kind != "ok":
            child.stop()
            self._child = None
            raise value
        return value

    def _request(self, msg: tuple[Any, ...], **wait_kw: Any) -> tuple[str, Any]:
        """Send `msg` to a live worker (a new one after a crash or a hard cancel) and wait for its answer."""
        if self._child is None or not self._child.alive:
            self.restarts += 1
            self._start()
        assert self._child is not None
        child = self._child
        try:
            child.send(msg)
            return child.reply(grace=self.cancel_grace, **wait_kw)
        except WorkerCrashed:
            raise
        except BaseException:  # e.g. an on_token callback raised, or Ctrl+C: the child is mid-request, out of step
            child.kill("abandoned in the middle of a request")
            raise
        finally:
            if child.exit:
                self.last_exit, self._child = child.exit, None

    # -- the Backend protocol -------------------------------------------------------------------
    def compile(self, schema: dict[str, Any] | bool, *, allow_refusal: bool = True) -> RemoteConstraint:
        key = hashlib.sha256(json.dumps([schema, allow_refusal], sort_keys=True).encode()).hexdigest()
        with self._lock:
            kind, value = self._request(("compile", key, schema, allow_refusal))
        if kind != "ok":
            raise value
        return RemoteConstraint(key, schema, allow_refusal, value)

    def generate(self, request: GenerationRequest, *, cancel: threading.Event | None = None) -> Generation:
        from dataclasses import replace

        c = request.constraint
        if c is not None and not isinstance(c, RemoteConstraint):
            raise BackendError("a worker backend takes constraints it compiled itself")
        key, schema, refusal = (
            (c.key, c.schema, c.allow_refusal) if c is not None else (None, request.schema, request.allow_refusal)
        )
        partial: list[tuple[bytes, TokenStep]] = []
        msg = ("generate", key, schema, refusal, replace(request, constraint=None, on_token=None))
        with self._lock:
            if cancel is not None and cancel.is_set():
                return Generation(text="", stop="cancelled")
            try:
                kind, value = self._request(msg, cancel=cancel, on_token=request.on_token, partial=partial)
            except WorkerCrashed as exc:
                raise WorkerCrashed(f"{exc} on this request; a new one starts for the next", exc.how) from None
        if kind == "cancelled":
            text = b"".join(p for p, _ in partial).decode("utf-8", "replace")
            return Generation(text=text, steps=[s for _, s in partial], stop="cancelled")
        if kind != "ok":
            raise value
        return value

    def forget(self) -> None:
        """Drop the worker's reusable state (prompt prefix, image embeddings): the next request runs cold."""
        with self._lock:
            if self._child is not None and self._child.alive:
                self._request(("forget",))

    def close(self) -> None:
        with self._lock:
            if self._child is not None:
                self._child.stop()
                self.last_exit, self._child = self._child.exit, None


def _load(child: ModelProcess, spec: tuple[Any, ...], files: list[str], *, probe: bool = False) -> tuple[str, Any]:
    """Have `child` load (or, probing, load and free) a model; a crash is a ModelLoadError naming the files."""
    child.send(("probe" if probe else "load", *spec))
    try:
        return child.reply(timeout=LOAD_TIMEOUT_S)
    except WorkerCrashed as exc:
        names = ", ".join(files) or "the model"
        raise ModelLoadError(f"{exc} loading {names}: the file is corrupt or this llama.cpp cannot run it") from None


class ModelProbe:
    """Tries model files in a child process before anyone relies on them (`loupe models import`, the GGUF fuzz
    test): each check loads and frees the model there; one child serves many checks and is replaced after a crash."""

    module: ClassVar[str] = WorkerBackend.module
    cls: ClassVar[str] = WorkerBackend.cls

    def __init__(self) -> None:
        self._child: ModelProcess | None = None
        self.crashes = 0

    def check(self, text: str | Path, mmproj: str | Path, **kwargs: Any) -> None:
        """Raise ModelLoadError (one line, naming the file) unless the pair loads; the caller never crashes."""
        files = [str(text), str(mmproj)]
        if self._child is None or not self._child.alive:
            self._child = ModelProcess()
        spec = (self.module, self.cls, (str(text), str(mmproj)), {"n_threads": 1, **kwargs}, memory_ceiling(files))
        try:
            kind, value = _load(self._child, spec, files, probe=True)
        except ModelLoadError:
            self.crashes += 1
            self._child = None
            raise
        if kind != "ok":
            raise value

    def close(self) -> None:
        if self._child is not None:
            self._child.stop()
            self._child = None
