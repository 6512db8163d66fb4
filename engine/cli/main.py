"""The `loupe` command's parser and dispatch table: each verb group's module registers its own subcommands."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

from loupe.cli import analyze, gui
from loupe.cli import eval as cli_eval
from loupe.cli.common import model_args
from loupe.cli.serve import cmd_serve
from loupe.core.errors import LoupeError


def cmd_models(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Delegate to the models command set."""
    from loupe.cli.models import run_models

    return run_models(args, out, err)


def cmd_store(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Delegate to the results-store command set (batch, review, export)."""
    from loupe.cli.store import run_store

    return run_store(args, out, err)


def cmd_hybrid(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Delegate to the hybrid-mode commands (audit, cloud)."""
    from loupe.cli.hybrid import run_hybrid

    return run_hybrid(args, out, err)


def cmd_doctor(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Delegate to `loupe doctor` (llama.cpp's CPU features and weight buffers here)."""
    from loupe.cli.doctor import run_doctor

    return run_doctor(args, out, err)


def cmd_floor(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Delegate to the factory-floor commands (watch, kiosk, outbox)."""
    from loupe.cli.floor import run_floor

    return run_floor(args, out, err)


COMMANDS: dict[str, Callable[[argparse.Namespace, TextIO, TextIO], int]] = {
    "analyze": analyze.cmd_analyze,
    "demo": analyze.cmd_demo,
    "tasks": analyze.cmd_tasks,
    "models": cmd_models,
    "batch": cmd_store,
    "review": cmd_store,
    "export": cmd_store,
    "audit": cmd_hybrid,
    "cloud": cmd_hybrid,
    **dict.fromkeys(("watch", "kiosk", "outbox"), cmd_floor),
    "eval": cli_eval.run_eval,
    "gui": gui.run_gui,
    "serve": cmd_serve,
    "doctor": cmd_doctor,
}


def parser() -> argparse.ArgumentParser:
    """The argument parser for every command."""
    p = argparse.ArgumentParser(prog="loupe", description="Images in, schema-valid JSON out, on your machine.")
    p.add_argument("--version", action="version", version=f"loupe {importlib.metadata.version('loupe')}")
    sub = p.add_subparsers(dest="command", required=True)

    analyze.add_parsers(sub)
    from loupe.cli.models import add_parsers as add_model_parsers

    add_model_parsers(sub)
    from loupe.cli.store import add_parsers

    add_parsers(sub, model_args)
    from loupe.cli.hybrid import add_parsers as add_hybrid_parsers

    add_hybrid_parsers(sub)
    from loupe.cli.floor import add_parsers as add_floor_parsers

    add_floor_parsers(sub, model_args)
    cli_eval.add_parsers(sub)
    gui.add_parsers(sub)
    from loupe.cli.serve import add_parsers as add_serve_parsers

    add_serve_parsers(sub, model_args)
    from loupe.cli.doctor import add_parsers as add_doctor_parsers

    add_doctor_parsers(sub)
    return p


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Entry point of the `loupe` console script; returns the exit code."""
    out = out or sys.stdout
    err = err or sys.stderr
    args = parser().parse_args(argv)
    from loupe.models.store import ModelError

    try:
        return COMMANDS[args.command](args, out, err)
    except (LoupeError, ModelError) as exc:
        if getattr(args, "json", False):
            out.write(json.dumps({"error": str(exc), "kind": type(exc).__name__}) + "\n")
        print(f"error: {exc}", file=err)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=err)
        return 130
