"""Options the CLI and the desktop launchers share, as data, and their values turned into the objects that run.

`loupe gui` and `loupe-app`, `loupe kiosk` and `loupe-kiosk` take the same options: each declares them from these
tables (flag, argparse keyword arguments), and hands the parsed values (a plain mapping) to the functions below.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

from loupe import taskfile
from loupe.api.models import ModelSpec
from loupe.store import default_db_path
from loupe.taskfile import TaskFile
from loupe.wiring.line import LineSettings, with_outputs

Option = tuple[str, dict[str, Any]]


class Parser(Protocol):
    """What the tables are added to (an argparse parser or group)."""

    def add_argument(self, *flags: str, **kwargs: Any) -> Any: ...


THREADS_HELP = "CPU threads, fixed (default: one per physical core, fewer while others keep cores busy)"

MODEL: tuple[Option, ...] = (
    ("--model", {"default": None, "help": "catalog or imported model name (see `loupe models list`)"}),
    ("--model-path", {"help": "a text-model GGUF file (with --mmproj)"}),
    ("--mmproj", {"help": "the matching mmproj GGUF file"}),
    ("--threads", {"type": int, "default": None, "metavar": "N", "help": THREADS_HELP}),
)

GUI: tuple[Option, ...] = (
    (
        "--model",
        {"help": "installed model name (default: the last one used, else the catalog default, else synthetic)"},
    ),
    ("--model-path", {"help": "text model GGUF (with --mmproj)"}),
    ("--mmproj", {"help": "vision projector GGUF (with --model-path)"}),
    ("--threads", {"type": int, "default": None, "metavar": "N", "help": THREADS_HELP}),
    ("--db", {"help": "results store (default: $LOUPE_DB or the user data directory)"}),
    ("--task", {"help": "task selected at start (a built-in name; default: the last one used)"}),
    ("--settings", {"metavar": "INI", "help": "settings file (default: the platform's place for Loupe)"}),
    ("--screenshot", {"metavar": "PNG", "help": "save the window to PNG once the first result is shown, quit"}),
)

LINE: tuple[Option, ...] = (
    ("--db", {"help": "the results store (default: $LOUPE_DB, else loupe.db in the user data dir)"}),
    (
        "--after",
        {
            "choices": ["move", "mark"],
            "default": "move",
            "help": "what happens to a judged file in a watched folder: move it to processed/ (default) or "
            "leave it and write a hidden .NAME.loupe-done marker",
        },
    ),
    (
        "--settle",
        {
            "type": float,
            "default": 1.0,
            "metavar": "S",
            "help": "a file found without a close event is ready once unchanged this long (default 1 s)",
        },
    ),
    ("--poll", {"action": "store_true", "help": "poll the folder instead of inotify (network shares)"}),
    ("--interval", {"type": float, "default": 1.0, "metavar": "S", "help": "camera: seconds between grabs"}),
    (
        "--trigger",
        {
            "action": "store_true",
            "help": "camera: grab a frame only when triggered (in the kiosk: the space bar or a foot pedal)",
        },
    ),
    ("--frames", {"metavar": "DIR", "help": "camera: where grabbed frames are saved (default: beside the db)"}),
    ("--mqtt", {"metavar": "URL", "help": "publish verdicts: mqtt://host[:port]/topic (adds to the task's)"}),
    ("--webhook", {"metavar": "URL", "help": "POST verdicts as JSON to this URL (adds to the task's)"}),
    ("--drop", {"action": "store_true", "help": "write each verdict as JSON next to its image"}),
)

KIOSK: tuple[Option, ...] = (
    (
        "--pin",
        {"default": None, "help": "operator PIN to leave (required: this or $LOUPE_KIOSK_PIN; there is no default)"},
    ),
    ("--last", {"type": int, "default": 8, "metavar": "N", "help": "how many recent results to list"}),
    ("--shift-hours", {"type": float, "default": 8.0, "help": "shift length; counts reset each shift (from 06:00)"}),
    ("--windowed", {"action": "store_true", "help": "a normal window instead of fullscreen"}),
    ("--screenshot", {"metavar": "PNG", "help": "save the window after the first result, then quit"}),
)


def add(parser: Parser, options: Iterable[Option]) -> None:
    """Declare `options` on `parser`."""
    for flag, kwargs in options:
        parser.add_argument(flag, **kwargs)


def argv_of(values: Mapping[str, Any], options: Iterable[Option]) -> list[str]:
    """Parsed values back into a command line for `options` (what `loupe gui` hands the app)."""
    argv: list[str] = []
    for flag, _ in options:
        value = values.get(flag[2:].replace("-", "_"))
        if value is not None:
            argv += [flag, str(value)]
    return argv


def model_spec(values: Mapping[str, Any]) -> ModelSpec:
    """The model options (--model, --model-path/--mmproj, --backend, ...) as a ModelSpec."""
    return ModelSpec(
        model=values.get("model") or "",
        path=values.get("model_path") or "",
        mmproj=values.get("mmproj") or "",
        backend=values.get("backend") or "auto",
        threads=values.get("threads"),
        ep=values.get("ep"),
        quant=values.get("quant"),
        constraint=values.get("constraint") or "llguidance",
    )


def task_of(values: Mapping[str, Any]) -> TaskFile:
    """--task-file, else --task (default: defects), every section parsed."""
    if values.get("task_file"):
        return taskfile.load(values["task_file"])
    return taskfile.builtin(values.get("task") or "defects")


def line_settings(values: Mapping[str, Any], job: TaskFile) -> LineSettings:
    """The LINE options (and the source) as LineSettings, the outputs given on the command line added."""
    job = with_outputs(job, mqtt=values.get("mqtt"), webhook=values.get("webhook"), drop=bool(values.get("drop")))
    return LineSettings(
        source=str(values["source"]),
        job=job,
        db=Path(values.get("db") or default_db_path()),
        frames=Path(values["frames"]) if values.get("frames") else None,
        after=values.get("after") or "move",
        settle_s=float(values.get("settle", 1.0)),
        poll=bool(values.get("poll")),
        interval_s=float(values.get("interval", 1.0)),
        trigger=bool(values.get("trigger")),
    )


def model_name(spec: ModelSpec) -> str:
    """The model's name as a job records it, known without loading it (the catalog default when none is named)."""
    if spec.label:
        return spec.label
    from loupe.models.catalog import load_catalog

    return load_catalog().default
