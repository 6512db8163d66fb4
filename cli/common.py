"""What every `loupe` verb shares: the task and model options turned into objects, one-line errors, printing."""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Callable
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

from loupe import taskfile
from loupe.api.models import BACKENDS, ModelSpec
from loupe.core.confidence import format_confidence
from loupe.core.errors import LoupeError
from loupe.core.images.files import expand
from loupe.core.types import Result, Status
from loupe.store import Store, default_db_path
from loupe.taskfile import TaskFile
from loupe.wiring import options

SAMPLE = Path(str(resources.files("loupe") / "samples" / "scratched-panel.jpg"))  # package data of engine/
BACKEND_CHOICES = BACKENDS

__all__ = [
    "SAMPLE",
    "CliError",
    "declare",
    "examples",
    "expand",
    "model_args",
    "model_files",
    "offline",
    "open_backend",
    "open_store",
    "pick_task",
    "preflight",
    "pretty",
    "progress_bar",
    "short",
]


def offline() -> bool:
    """True when the user (or a test run) asked Loupe never to touch the network."""
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("LOUPE_OFFLINE", "HF_HUB_OFFLINE"))


class CliError(LoupeError):
    """A usage problem reported as one line."""


def pick_task(args: argparse.Namespace) -> TaskFile:
    """The task from --task-file or --task (default: defects), every section parsed, with CLI option overrides."""
    job = taskfile.load(args.task_file) if getattr(args, "task_file", None) else taskfile.builtin(args.task)
    changes: dict[str, Any] = {}
    if getattr(args, "max_tokens", None):
        changes["max_tokens"] = args.max_tokens
    if getattr(args, "detail", None):
        changes["detail"] = int(args.detail) if args.detail.isdigit() else args.detail
    return replace(job, task=job.task.with_options(**changes)) if changes else job


def model_spec(args: argparse.Namespace) -> ModelSpec:
    """The model options of a command (--model, --model-path/--mmproj, --backend, ...) as a ModelSpec."""
    return options.model_spec(vars(args))


def open_backend(args: argparse.Namespace, err: TextIO) -> tuple[Any, str]:
    """Load the model the command's options name (loupe.api.open_backend); directory models are downloaded here
    when missing (unless offline), with a progress bar."""
    from loupe.api.models import open_backend as open_spec

    def fetch(entry: Any, root: Path) -> Path:
        from loupe.models.hf_fetch import fetch as hf_fetch

        return hf_fetch(entry, root, offline=offline(), progress=progress_bar(err, True))

    opened = open_spec(model_spec(args), fetch=fetch)
    if opened.synthetic and not getattr(args, "pretty", False):  # the demo has said so already
        print(f"note: {opened.name} is a synthetic model with random weights: its output is meaningless", file=err)
    for note in opened.notes:
        print(f"note: {note}", file=err)
    return opened.backend, opened.name


def short(result: Result) -> str:
    """One human line for a result."""
    path = ", ".join(i.path for i in result.images)
    if result.status is Status.OK:
        conf = result.min_confidence
        lowest = f", lowest confidence {format_confidence(conf)}" if conf is not None else ""
        return f"{path}: ok ({result.timings.total_ms / 1000:.1f} s{lowest})"
    return f"{path}: {result.status.value}: {result.error}"


def pretty(result: Result) -> str:
    """A readable report of one result (what `loupe demo` shows)."""
    lines = [
        f"image   {', '.join(f'{i.path} ({i.width}x{i.height})' for i in result.images)}",
        f"model   {result.model} ({result.backend})",
        f"status  {result.status.value}",
    ]
    if result.error:
        lines.append(f"reason  {result.error}")
    if result.data is not None:
        text = json.dumps(result.data, indent=2, ensure_ascii=False)
        text = re.sub(r"\[\s+([-0-9.,\s]+?)\s+\]", lambda m: "[" + re.sub(r"\s+", " ", m.group(1)) + "]", text)
        lines.append("data    " + text.replace("\n", "\n        "))
    if result.confidence:
        low = sorted(result.confidence.items(), key=lambda kv: kv[1])[:5]
        lines.append("lowest confidence  " + ", ".join(f"{p} {format_confidence(c)}" for p, c in low))
    for b in result.boxes:
        lines.append(f"box     {b.label or '?'} {list(b.box_2d)} -> pixels {list(b.pixels)}")
    t = result.timings
    lines.append(
        f"time    {t.total_ms / 1000:.2f} s (load {t.load_ms:.0f} ms, image encode {t.encode_ms:.0f} ms, "
        f"prefill {t.prefill_ms:.0f} ms, decode {t.decode_ms:.0f} ms for {result.tokens.completion} tokens)"
    )
    return "\n".join(lines) + "\n"


def progress_bar(err: TextIO, enabled: bool) -> Callable[[str, int, int | None], None] | None:
    """A rich progress bar per file, on stderr, when it is a terminal."""
    if not enabled or not err.isatty():
        return None
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    bar = Progress(
        "{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=Console(file=err),
        transient=True,
    )
    jobs: dict[str, Any] = {}

    def update(label: str, done: int, total: int | None) -> None:
        if not bar.live.is_started:
            bar.start()
        if label not in jobs:
            jobs[label] = bar.add_task(label, total=total)
        bar.update(jobs[label], completed=done, total=total)
        if total is not None and done >= total:
            bar.refresh()
            if bar.finished:  # every file so far is done: clear the bars, so what is printed next starts clean
                bar.stop()

    return update


def add_backend_args(sp: argparse.ArgumentParser) -> None:
    """The options every model-loading command takes for the non-llama.cpp backends."""
    sp.add_argument(
        "--backend",
        choices=BACKEND_CHOICES,
        default="auto",
        help="auto: from the catalog entry's format, or from --model-path (a GGUF file: llama_cpp; a "
        "directory: onnx if it has onnx/, else mlx)",
    )
    sp.add_argument(
        "--ep",
        choices=["cpu", "openvino", "qnn", "dml", "coreml"],
        default=None,
        help="ONNX Runtime execution provider (default: the best available)",
    )
    sp.add_argument(
        "--quant",
        choices=["fp32", "fp16", "q4", "q8"],
        default=None,
        help="which ONNX files of a --model-path directory to load (default fp32)",
    )


def model_args(sp: argparse.ArgumentParser) -> None:
    """The model options every model-loading command takes (loupe.wiring.options.MODEL, then the backends')."""
    options.add(sp, options.MODEL)
    add_backend_args(sp)


def store_path(args: argparse.Namespace) -> Path:
    """The results store a command's --db names (default: $LOUPE_DB, else loupe.db in the user data dir)."""
    return Path(args.db).expanduser() if getattr(args, "db", None) else default_db_path()


def open_store(args: argparse.Namespace) -> Store:
    return Store(store_path(args))


# -- help and checks before a command runs ---------------------------------------------------------

OutputKind = str | Callable[[argparse.Namespace], str]


def examples(sp: argparse.ArgumentParser, *lines: str) -> argparse.ArgumentParser:
    """Give a command's --help an `examples:` section (kept as written)."""
    sp.formatter_class = argparse.RawDescriptionHelpFormatter
    sp.epilog = "examples:\n" + "\n".join(f"  {line}" for line in lines)
    return sp


def declare(
    sp: argparse.ArgumentParser,
    *,
    outputs: dict[str, OutputKind] | None = None,
    store: str | None = None,
    check: Callable[[argparse.Namespace], object] | None = None,
) -> None:
    """Say what a command writes and whether it needs an existing results store, for `preflight`: `outputs` maps an
    option's dest to "file" or "dir" (or a function of the parsed arguments giving one); `store` is "read" (the store
    must exist already) or "write" (it is created, so its folder must be writable); `check` runs first, for the
    command's own settings (e.g. `serve` refusing a remote bind without a token)."""
    sp.set_defaults(loupe_outputs=outputs or {}, loupe_store=store, loupe_check=check)


def _probe(folder: Path, option: str, value: str) -> None:
    """Raise a one-line CliError unless a file can be created in `folder` (read-only mounts included)."""
    import tempfile

    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".loupe-probe-"):
            pass
    except OSError as exc:
        raise CliError(f"{option} {value}: cannot write in {folder} ({exc.strerror or exc})") from None


def check_output(value: str | Path, option: str, kind: str) -> None:
    """An output path, checked before any work (so before a model loads): a file's folder must exist and be writable;
    a folder is created if missing, so its nearest existing parent must be a writable folder."""
    path = Path(value).expanduser()
    if kind == "file":
        if path.is_dir():
            raise CliError(f"{option} {value}: is a folder; give a file name")
        if not path.parent.is_dir():
            raise CliError(f"{option} {value}: the folder {path.parent} does not exist")
        if path.exists() and not os.access(path, os.W_OK):
            raise CliError(f"{option} {value}: the file is read-only")
        _probe(path.parent, option, str(value))
        return
    if path.exists() and not path.is_dir():
        raise CliError(f"{option} {value}: is a file, not a folder")
    existing = path if path.exists() else next((p for p in path.absolute().parents if p.exists()), Path("/"))
    if not existing.is_dir():
        raise CliError(f"{option} {value}: {existing} is a file, not a folder")
    _probe(existing, option, str(value))


def check_model_name(args: argparse.Namespace) -> None:
    """A model named on the command line that Loupe does not know is a one-line error before anything runs."""
    names = [getattr(args, "model", None), *(getattr(args, "models", None) or [])]
    names = [n for n in names if isinstance(n, str) and n]
    if not names or getattr(args, "model_path", None) or getattr(args, "mmproj", None):
        return
    from loupe.models.catalog import UnknownModelError
    from loupe.models.store import ModelStore, default_model_root

    store = ModelStore(default_model_root())
    for name in names:
        if name not in store.names() and name not in store.directories:
            raise UnknownModelError(name, store.names() + store.directories.names())


def preflight(args: argparse.Namespace) -> None:
    """What can be checked before a command runs, so that a typo fails in a line and before a model loads: output
    paths (`declare`), the results store, the task, the model name and model files."""
    check = getattr(args, "loupe_check", None)
    if check is not None:
        check(args)
    for dest, kind in getattr(args, "loupe_outputs", {}).items():
        value = getattr(args, dest, None)
        if value:
            check_output(value, "--" + dest.replace("_", "-"), kind(args) if callable(kind) else kind)
    need = getattr(args, "loupe_store", None)
    if need == "read" and not store_path(args).is_file():
        path = store_path(args)
        raise CliError(
            f"no jobs in {path}: there is no results store there (check --db or $LOUPE_DB; `loupe batch` creates one)"
        )
    if need == "write" and getattr(args, "db", None):
        check_output(args.db, "--db", "dir" if not Path(args.db).expanduser().parent.exists() else "file")
    if getattr(args, "task_file", None):
        taskfile.load(args.task_file)
    elif isinstance(getattr(args, "task", None), str):
        taskfile.builtin(args.task)
    for option in ("model_path", "mmproj"):
        value = getattr(args, option, None)
        if not value or (option == "mmproj" and Path(getattr(args, "model_path", None) or "").expanduser().is_dir()):
            continue  # (a model directory takes no --mmproj: its backend says so)
        path = Path(value).expanduser()
        found = path.exists() if option == "model_path" else path.is_file()  # --model-path: a GGUF or a directory
        if not found:
            raise CliError(f"the model cannot be loaded: --{option.replace('_', '-')} {value}: model file not found")
    check_model_name(args)


def model_files(args: argparse.Namespace) -> tuple[str, list[Path]]:
    """The model's name and files, found without loading it (its file names and sizes key the cache)."""
    if args.model_path or args.mmproj:
        if not (args.model_path and args.mmproj):
            raise CliError("--model-path and --mmproj go together")
        files = [Path(args.model_path).resolve(), Path(args.mmproj).resolve()]
        name = files[0].stem
    else:
        from loupe.models.catalog import load_catalog
        from loupe.models.store import ModelStore, default_model_root

        name = args.model or load_catalog().default
        resolved = ModelStore(default_model_root()).resolve(name)
        files = [resolved.text_path, resolved.mmproj_path]
    for f in files:
        if not f.is_file():
            raise CliError(f"model file not found: {f}")
    return name, files
