"""`loupe serve`: the local API (parser and command; the server itself lives in loupe.serve)."""

from __future__ import annotations

import argparse
import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from loupe.core.errors import LoupeError

if TYPE_CHECKING:
    from loupe.serve.config import ServeConfig


class ServeUnavailable(LoupeError):
    """The `serve` extra is not installed."""


def add_parsers(sub: Any, model_args: Callable[[argparse.ArgumentParser], None]) -> None:
    """Register `loupe serve` on the `loupe` parser."""
    from loupe.cli.common import declare, examples

    sp = examples(
        sub.add_parser("serve", help="the local API: OpenAI-compatible chat completions, /v1/analyze, /v1/results"),
        "loupe serve                                  # http://127.0.0.1:8765/docs",
        "loupe serve --model smolvlm-500m --port 9000 --allow-path ~/photos",
        "LOUPE_API_TOKEN=secret loupe serve --host 0.0.0.0 --allow-remote",
    )
    sp.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine)")
    sp.add_argument("--port", type=int, default=8765, help="port (default: 8765; 0 picks a free one)")
    sp.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a non-loopback --host (needs an API token: $LOUPE_API_TOKEN or the keyring)",
    )
    sp.add_argument(
        "--allow-path",
        action="append",
        default=[],
        metavar="DIR",
        help="/v1/analyze may read image and task files under DIR (repeatable; none by default)",
    )
    sp.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="answer to this Host name too (besides localhost and the bound address)",
    )
    sp.add_argument(
        "--max-body-mb",
        type=int,
        default=24,
        help="largest request body in MiB (default 24: a photo as a data URL); larger gets 413",
    )
    model_args(sp)
    sp.add_argument("--db", help="the results store (default: $LOUPE_DB, else loupe.db in the user data dir)")
    sp.add_argument(
        "--max-queue", type=int, default=32, help="model requests that may wait at once; more get 429 (default: 32)"
    )
    sp.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"], help="server log (default: info)"
    )
    sp.add_argument("--json", action="store_true", help="errors as JSON")
    declare(sp, store="write", check=serve_config)


def serve_config(args: argparse.Namespace) -> ServeConfig:
    """The server's settings from the command line, checked (a remote bind needs a token) before any model loads."""
    from loupe.serve.config import ServeConfig, check_config, resolve_token

    roots = tuple(Path(d).expanduser().resolve() for d in args.allow_path)
    missing = [str(r) for r in roots if not r.is_dir()]
    if missing:
        raise ServeUnavailable(f"--allow-path {missing[0]} is not a directory")
    return check_config(
        ServeConfig(
            host=args.host,
            port=args.port,
            token=resolve_token(),
            allow_remote=args.allow_remote,
            allow_paths=roots,
            allow_hosts=tuple(args.allow_host),
            max_body=max(1, args.max_body_mb) << 20,
        )
    )


def cmd_serve(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Check the bind, load the model once, then serve until Ctrl-C / SIGTERM."""
    if not all(importlib.util.find_spec(m) for m in ("fastapi", "uvicorn")):
        raise ServeUnavailable("`loupe serve` needs the serve extra: pip install 'loupe[serve]'")
    from loupe.api import Engine
    from loupe.cli.common import open_backend
    from loupe.serve.server import serve_forever
    from loupe.serve.worker import Workers
    from loupe.store import default_db_path

    config = serve_config(args)
    db = Path(args.db).expanduser() if args.db else default_db_path()
    backend, name = open_backend(args, err)
    workers = Workers(Engine(backend, model=name), db, max_queue=max(1, args.max_queue))
    auth = "bearer token required" if config.token else "no token (loopback only)"
    print(f"loupe serve: model {name}, store {db}, {auth}; http://{config.host}:{config.port}/docs", file=err)
    serve_forever(workers, config, log_level=args.log_level)
    return 0
