"""The model process: loads one backend and serves compile/generate requests from the parent over a pipe.

Runs as `python -m loupe.backends.worker_child FD`, started by loupe.backends.worker with its end of a socket
pair. Native code lives only here, so a segfault, an abort or a kill of this process costs the parent one request,
never its own life. Messages are tuples:

    parent -> child   ("load" | "probe", module, cls, args, kwargs, memory_limit) ("probe": load, then free)
                      ("compile", key, schema, allow_refusal) | ("forget",)
                      ("generate", key, schema, allow_refusal, request) | ("cancel",) | ("close",)
    child -> parent   ("ok", value) | ("error", kind, message) | ("token", piece, step)

A reader thread takes "cancel" at any time (it sets the running generation's cancel event); everything else is
served in order on the main thread. The child exits when the parent goes away (its end of the pipe closes).

`LOUPE_WORKER_FAULT` (tests only) makes the child misbehave on purpose: `load:SIGSEGV`, `encode:SIGSEGV`,
`decode:SIGSEGV` (any signal name) raise that signal before loading the model, inside image encoding or at the first
generated token; `encode:sleep=S` slows every image encode by S seconds (an encode that cannot be interrupted, as
mtmd's is); a suffix `@WxH` limits the fault to requests whose first image is W x H pixels. With
`LOUPE_WORKER_FAULT_MARK=PATH` the child creates PATH as it enters the faulty encode.
"""

from __future__ import annotations

import os
import queue
import signal
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

from loupe.core.errors import BackendError, LoupeError, ModelLoadError

MEMORY_ENV = "LOUPE_WORKER_MEMORY"  # (loupe.backends.worker sets the ceiling; named here in errors)
FAULT_ENV = "LOUPE_WORKER_FAULT"
MARK_ENV = "LOUPE_WORKER_FAULT_MARK"


def _llama_cpp() -> type:
    from loupe.backends.llama_cpp import LlamaCppBackend

    return LlamaCppBackend


# what a parent may ask this process to load: (module, class) as loupe.backends.worker names it -> the class
_CLASSES: dict[tuple[str, str], Any] = {("loupe.backends.llama_cpp", "LlamaCppBackend"): _llama_cpp}


def _backend_class(module: str, cls: str) -> type:
    """The class the parent named, from the table (never a module looked up by name)."""
    load = _CLASSES.get((module, cls))
    if load is None:
        raise BackendError(f"the model process cannot load {module}.{cls}")
    return load()


def main(conn: Connection) -> None:
    """Serve until "close" or until the parent is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C is the parent's to handle; it stops us itself
    inbox: queue.Queue[tuple[Any, ...] | None] = queue.Queue()
    cancel = threading.Event()
    threading.Thread(target=_read, args=(conn, inbox, cancel), daemon=True, name="loupe-worker-reader").start()
    backend: Any = None
    ceiling: int | None = None
    constraints: dict[str, Any] = {}
    while True:
        msg = inbox.get()
        if msg is None or msg[0] == "close":
            break
        try:
            if msg[0] in ("load", "probe"):
                op, module, cls, args, kwargs, limit = msg
                if os.environ.get(FAULT_ENV, "").startswith("load:"):
                    os.kill(os.getpid(), getattr(signal, os.environ[FAULT_ENV].partition(":")[2]))
                ceiling = _limit_memory(limit)
                try:
                    backend = _backend_class(module, cls)(*args, **kwargs)
                except ModelLoadError as exc:
                    if ceiling is None:
                        raise
                    raise ModelLoadError(
                        f"{exc}; or it needs more than the model process's memory ceiling of "
                        f"{ceiling >> 20} MiB (${MEMORY_ENV})"
                    ) from None
                if op == "probe":  # loaded: that was the question
                    backend.close()
                    backend = None
                    conn.send(("ok", None))
                    continue
                _install_fault(os.environ.get(FAULT_ENV, ""))
                conn.send(
                    (
                        "ok",
                        {
                            "model_id": backend.model_id,
                            "capabilities": backend.capabilities,
                            "load_ms": backend.load_ms,
                            "notes": tuple(getattr(backend, "notes", ())),
                            "pid": os.getpid(),
                        },
                    )
                )
            elif msg[0] == "forget":  # drop reusable state (KV prefix, image embeddings): the next request runs cold
                if hasattr(backend, "forget"):
                    backend.forget()
                conn.send(("ok", None))
            elif msg[0] == "compile":
                _, key, schema, allow_refusal = msg
                constraints[key] = backend.compile(schema, allow_refusal=allow_refusal)
                conn.send(("ok", getattr(constraints[key], "source", "")))
            elif msg[0] == "generate":
                _, key, schema, allow_refusal, request = msg
                if key is not None and key not in constraints:  # compiled before a restart: compile again here
                    constraints[key] = backend.compile(schema, allow_refusal=allow_refusal)
                cancel.clear()
                conn.send(("ok", _generate(conn, backend, request, constraints.get(key), cancel)))
        except LoupeError as exc:
            conn.send(("error", type(exc).__name__, str(exc)))
        except MemoryError:
            where = f" of {ceiling >> 20} MiB (${MEMORY_ENV} raises it)" if ceiling else ""
            conn.send(("error", "BackendError", f"the model process ran out of memory: its ceiling{where}"))
        except Exception as exc:  # a bug or a library error: one line to the parent, the process stays up
            if msg[0] in ("load", "probe"):  # whatever a model file made the loader raise, it is that file's fault
                names = ", ".join(str(a) for a in msg[3])
                conn.send(("error", "ModelLoadError", f"could not load {names}: {type(exc).__name__}: {exc}"))
            else:
                conn.send(("error", "BackendError", f"{type(exc).__name__}: {exc}"))
    if backend is not None:
        backend.close()


def _limit_memory(limit: int | None) -> int | None:
    """Cap this process's heap and anonymous memory (RLIMIT_DATA; the mapped model file is not counted); the ceiling
    in force, or None."""
    if limit is None:
        return None
    import resource

    try:
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    except (ValueError, OSError):
        return None
    return limit


def _read(conn: Connection, inbox: queue.Queue[tuple[Any, ...] | None], cancel: threading.Event) -> None:
    """Take messages off the pipe as they come; "cancel" acts at once."""
    try:
        while True:
            msg = conn.recv()
            if msg[0] == "cancel":
                cancel.set()
            else:
                inbox.put(msg)
    except (EOFError, OSError):  # the parent is gone: nobody to serve
        os._exit(0)


def _generate(conn: Connection, backend: Any, request: Any, constraint: Any, cancel: threading.Event) -> Any:
    """One generation, each token sent to the parent as it is produced."""
    from dataclasses import replace

    where, action = _fault_for(request)
    _ENCODE_FAULT[0] = action if where == "encode" else ""

    def on_token(piece: bytes, step: Any) -> None:
        if where == "decode":
            os.kill(os.getpid(), getattr(signal, action))
        conn.send(("token", piece, step))

    return backend.generate(replace(request, constraint=constraint, on_token=on_token), cancel=cancel)


# -- test-only faults ($LOUPE_WORKER_FAULT) -------------------------------------------------------------------------
_ENCODE_FAULT = [""]  # the action the wrapped encoder takes during this request ("" = none)


def _fault_for(request: Any) -> tuple[str, str]:
    """(where, action) of $LOUPE_WORKER_FAULT for this request: `where:ACTION` always, `where:ACTION@WxH` only when
    the request's first image is W x H pixels (one poison picture among good ones); ("", "") for none."""
    spec = os.environ.get(FAULT_ENV, "")
    where, _, action = spec.partition(":")
    action, _, size = action.partition("@")
    if size:
        first = request.images[0].image.size if request.images else None
        if first is None or "x".join(map(str, first)) != size:
            return "", ""
    return where, action


def _install_fault(fault: str) -> None:
    """Wrap mtmd's image encoder so that it crashes or takes longer when the request's fault says so."""
    if not fault.startswith("encode:"):
        return
    import llama_cpp.mtmd_cpp as mtmd

    encode = mtmd.mtmd_encode_chunk

    def faulty(*args: Any) -> Any:
        action = _ENCODE_FAULT[0]
        if action and os.environ.get(MARK_ENV):
            open(os.environ[MARK_ENV], "w").close()
        if action.startswith("sleep="):
            time.sleep(float(action.partition("=")[2]))
        elif action:
            os.kill(os.getpid(), getattr(signal, action))
        return encode(*args)

    mtmd.mtmd_encode_chunk = faulty


if __name__ == "__main__":
    import sys

    main(Connection(int(sys.argv[1])))
