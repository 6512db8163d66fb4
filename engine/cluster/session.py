"""Joining a Ray cluster (or starting one in this process) quietly: Ray's logs in its temp dir, no progress bars."""

from __future__ import annotations

import gc
import importlib.util
import logging
import os
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from loupe.core.errors import LoupeError

INSTALL_HINT = "Ray is not installed: pip install 'loupe[ray]'"


class ClusterError(LoupeError):
    """The cluster cannot be used as asked (Ray missing, address unreachable, a job that failed there)."""


def ray_available() -> bool:
    """Whether Ray (with Ray Data) can be imported, without importing it."""
    return importlib.util.find_spec("ray") is not None and importlib.util.find_spec("ray.data") is not None


def quiet_data() -> None:
    """Ray Data's progress bars and verbose progress off (the CLI draws its own bar, and --json prints only JSON)."""
    from ray.data import DataContext

    for handler in logging.getLogger("ray.data").handlers:  # its console handler only; its log file keeps all
        if type(handler).__name__ != "SessionFileHandler":
            handler.setLevel(logging.CRITICAL)
    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.enable_operator_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.verbose_stats_logs = False
    ctx.max_consecutive_actor_init_deaths = 2  # a model missing on every node fails the job, not an endless retry
    ctx.actor_init_retry_on_errors = False


REACH_TIMEOUT_S = 5.0


def reachable(address: str) -> None:
    """A `host:port` (or `ray://host:port`) that nothing answers on is a one-line error now, not Ray's long retry."""
    if address == "auto":
        return
    hostport = address.removeprefix("ray://")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(f"--ray {address}: give auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=REACH_TIMEOUT_S).close()
    except OSError as exc:
        raise ClusterError(f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}") from None


@contextmanager
def _stderr_to_file() -> Iterator[None]:
    """What Ray's C++ core prints on this process's stderr while it starts goes to a temp file instead."""
    import tempfile

    with tempfile.TemporaryFile() as sink:
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


@contextmanager
def connected(address: str | None, *, init_args: Mapping[str, Any] | None = None) -> Iterator[None]:
    """Ray for the duration: `address` None starts a local cluster in this process; "auto", "host:port" or
    "ray://host:port" joins one. A Ray already initialised by the caller (tests, notebooks) is used as it is."""
    if not ray_available():
        raise ClusterError(INSTALL_HINT)
    import ray

    if address is not None:
        reachable(address)
    # Ray's notes and tracebacks go to its log files, not the user's terminal (a failure is one ClusterError line)
    logging.getLogger("ray").setLevel(logging.CRITICAL)
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")  # this process's Ray core, which writes to stderr
    if ray.is_initialized():
        quiet_data()
        yield
        return
    args: dict[str, Any] = {"log_to_driver": False, "include_dashboard": False, "configure_logging": False}
    if address is not None:
        args["address"] = address
    args.update(init_args or {})
    try:
        with _stderr_to_file():
            ray.init(**args)
    except (ConnectionError, TimeoutError, RuntimeError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        where = address or "a local Ray cluster"
        raise ClusterError(f"cannot reach the Ray cluster at {where}: {first}") from None
    try:
        quiet_data()
        yield
    finally:
        ray.shutdown()
        gc.collect()  # Ray's handles to the cluster just shut down are freed here, not at some later, deeper frame
