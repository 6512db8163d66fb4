"""Tasks (schema + instructions + options): built-ins are JSON files beside this module, users bring files."""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from loupe.core.constrain.base import DEFAULT_LAYOUT, LAYOUTS
from loupe.core.constrain.llguidance import relaxation_notes
from loupe.core.errors import ConstraintError, TaskError
from loupe.core.schema.formats import FORMAT_MODES, with_formats
from loupe.core.schema.limits import document_problem
from loupe.core.schema.validate import format_note, schema_problem

DETAILS = ("low", "high")


@dataclass(frozen=True)
class TaskOptions:
    """Per-task knobs; every one can be set in a task file's `options` table."""

    max_tokens: int = 1024
    detail: str | int = "low"  # "low" | "high" | longest edge in pixels
    review_threshold: float = 0.5  # lowest leaf confidence below this -> review
    temperature: float = 0.0
    seed: int = 0
    retries: int = 1  # extra attempts when the result fails validation
    allow_refusal: bool = True  # the model may answer "REFUSE: <reason>" instead of JSON
    runaway_guard: bool = True  # end values that run away or loop (loupe.core.constrain.runaway)
    layout: str = DEFAULT_LAYOUT  # "spaced" or "compact" JSON (loupe.core.constrain.base.LAYOUTS)
    format: str = "assertion"  # `format` checked ("assertion") or only describing ("annotation"); FORMAT_MODES


@dataclass(frozen=True)
class Task:
    """What to extract: a JSON Schema (the contract), instructions for the model, and options."""

    name: str
    schema: dict[str, Any] | bool
    instructions: str
    options: TaskOptions = field(default_factory=TaskOptions)
    description: str = ""
    source: str = "<built-in>"
    notes: tuple[str, ...] = ()  # what `format` means here, and parts enforced only by validation after decoding
    # the feature tables as written (stored with a job, shown in the editor); loupe.taskfile parses them once
    escalation: dict[str, Any] | None = None  # the ladder (loupe.escalate), used with --escalate
    verdict: dict[str, Any] | None = None  # PASS/FAIL/REVIEW rules (loupe.core.verdict)
    outputs: dict[str, Any] | None = None  # line outputs (loupe.floor.outputs)

    def with_options(self, **changes: Any) -> Task:
        """A copy with some options changed (validated like a task file's; the notes follow the `format` option)."""
        options = options_from_dict(self.source, {**_as_dict(self.options), **changes})
        if options.format == self.options.format:
            return replace(self, options=options)
        return replace(self, options=options, notes=load_notes(self.schema, options, self.source))


def _as_dict(opts: TaskOptions) -> dict[str, Any]:
    return {f.name: getattr(opts, f.name) for f in fields(opts)}


_OPTION_TYPES: dict[str, tuple[type, ...]] = {
    "max_tokens": (int,),
    "detail": (str, int),
    "review_threshold": (int, float),
    "temperature": (int, float),
    "seed": (int,),
    "retries": (int,),
    "allow_refusal": (bool,),
    "runaway_guard": (bool,),
    "layout": (str,),
    "format": (str,),
}


def options_from_dict(source: str, raw: Any) -> TaskOptions:
    """A task's `options` table, checked (errors point into /options)."""
    if raw is None:
        return TaskOptions()
    if not isinstance(raw, dict):
        raise TaskError(source, "`options` must be a table/object", "/options")
    for key, value in raw.items():
        ptr = f"/options/{key}"
        if key not in _OPTION_TYPES:
            raise TaskError(source, f"unknown option {key!r} (known: {', '.join(_OPTION_TYPES)})", ptr)
        types = _OPTION_TYPES[key]
        if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
            raise TaskError(source, f"option {key!r} has the wrong type ({type(value).__name__})", ptr)
    opts = TaskOptions(**raw)
    if opts.max_tokens < 1:
        raise TaskError(source, "max_tokens must be at least 1", "/options/max_tokens")
    if isinstance(opts.detail, str) and opts.detail not in DETAILS:
        raise TaskError(source, f"detail must be one of {DETAILS} or a pixel count", "/options/detail")
    if isinstance(opts.detail, int) and not 64 <= opts.detail <= 8192:
        raise TaskError(source, "detail in pixels must be within 64..8192", "/options/detail")
    if opts.layout not in LAYOUTS:
        raise TaskError(source, f"layout must be one of {', '.join(LAYOUTS)}", "/options/layout")
    if opts.format not in FORMAT_MODES:
        raise TaskError(source, f"format must be one of {', '.join(FORMAT_MODES)}", "/options/format")
    if not 0.0 <= opts.review_threshold <= 1.0:
        raise TaskError(source, "review_threshold must be within 0..1", "/options/review_threshold")
    if opts.temperature < 0 or opts.retries < 0:
        raise TaskError(source, "temperature and retries must not be negative", "/options")
    return opts


def task_from_dict(raw: Any, source: str, default_name: str = "task") -> Task:
    """Build a Task from parsed file content, refusing bad parts with their JSON Pointer."""
    if not isinstance(raw, dict):
        raise TaskError(source, "a task file must hold an object/table with `schema` and `instructions`")
    too_big = document_problem(raw)
    if too_big:
        raise TaskError(source, too_big[0], too_big[1])
    unknown = set(raw) - {
        "name",
        "description",
        "schema",
        "instructions",
        "options",
        "escalation",
        "verdict",
        "outputs",
    }
    if unknown:
        key = sorted(unknown)[0]
        raise TaskError(source, f"unknown key {key!r}", f"/{key}")
    if "schema" not in raw:
        raise TaskError(source, "missing `schema`", "/schema")
    instructions = raw.get("instructions")
    if not isinstance(instructions, str) or not instructions.strip():
        raise TaskError(source, "`instructions` must be a non-empty string", "/instructions")
    schema = raw["schema"]
    problem = schema_problem(schema)
    if problem:
        message, pointer = problem
        raise TaskError(source, f"invalid JSON Schema: {message}", "/schema" + pointer)
    options = options_from_dict(source, raw.get("options"))
    notes = load_notes(schema, options, source)
    name = raw.get("name", default_name)
    if not isinstance(name, str) or not name:
        raise TaskError(source, "`name` must be a non-empty string", "/name")
    return Task(
        name=name,
        schema=schema,
        instructions=instructions.strip(),
        options=options,
        description=str(raw.get("description", "")),
        source=source,
        notes=notes,
        escalation=_table(source, "escalation", raw.get("escalation")),
        verdict=_table(source, "verdict", raw.get("verdict")),
        outputs=_table(source, "outputs", raw.get("outputs")),
    )


def load_notes(schema: dict[str, Any] | bool, options: TaskOptions, source: str) -> tuple[str, ...]:
    """What a task says when it loads: what `format` means in it (when its schema names one), then what the grammar
    leaves to validation after decoding (under that meaning of `format`)."""
    try:
        relaxed = relaxation_notes(with_formats(schema, options.format))
    except ConstraintError as exc:
        raise TaskError(source, f"the decoding constraint cannot enforce this schema: {exc}", "/schema") from None
    except RecursionError:
        raise TaskError(source, "the schema refers to itself without end ($ref cycle)", "/schema") from None
    note = format_note(schema, options.format)
    return (note, *relaxed) if note else relaxed


def _table(source: str, key: str, raw: Any) -> dict[str, Any] | None:
    """A feature's table (`escalation`, `verdict`, `outputs`) as given: its feature parses it once, in
    loupe.taskfile, which loads task files for the CLI and the desktop (the core never imports a feature)."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise TaskError(source, f"`{key}` must be a table/object", f"/{key}")
    return dict(raw)


class _NoAliasLoader(yaml.SafeLoader):
    """YAML without anchors' aliases: a task file has no need of them, and a few nested aliases expand to billions
    of nodes (the "billion laughs") the moment anything walks the document."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.composer.ComposerError(None, None, "YAML aliases (*name) are not accepted in task files", mark)
        return super().compose_node(parent, index)


def _yaml(text: str) -> Any:
    return yaml.load(text, Loader=_NoAliasLoader)


_PARSERS = {
    ".json": lambda text: json.loads(text),
    ".yaml": _yaml,
    ".yml": _yaml,
    ".toml": lambda text: tomllib.loads(text),
}
MAX_TASK_FILE_BYTES = 4 << 20  # a task with a long enum is ~1 MB; more is a mistake or an attack


def load_task_file(path: str | Path) -> Task:
    """Read a user task file (JSON, YAML or TOML)."""
    p = Path(path)
    parser = _PARSERS.get(p.suffix.lower())
    if parser is None:
        raise TaskError(str(p), f"unknown task file type {p.suffix!r}; use .json, .yaml/.yml or .toml")
    try:
        if p.stat().st_size > MAX_TASK_FILE_BYTES:
            raise TaskError(
                str(p),
                f"task file is {p.stat().st_size / 2**20:.1f} MiB, over the {MAX_TASK_FILE_BYTES >> 20} MiB limit",
            )
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TaskError(str(p), "no such task file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TaskError(str(p), f"cannot read task file ({exc})") from None
    try:
        raw = parser(text)
    except (ValueError, yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
        first = " ".join(str(exc).split()) if str(exc) else type(exc).__name__
        raise TaskError(str(p), f"not valid {p.suffix.lstrip('.').upper()}: {first[:300]}") from None
    except RecursionError:  # the parsers recurse per nesting level
        raise TaskError(str(p), "nested too deeply for its parser") from None
    return task_from_dict(raw, str(p), default_name=p.stem)


def builtin_names() -> list[str]:
    """Names of the tasks shipped with Loupe."""
    files = resources.files(__package__).iterdir()
    return sorted(f.name.removesuffix(".json") for f in files if f.name.endswith(".json"))


def builtin_task(name: str) -> Task:
    """A built-in task by name."""
    if name not in builtin_names():
        raise TaskError(name, f"no built-in task {name!r} (built-in: {', '.join(builtin_names())})")
    text = resources.files(__package__).joinpath(f"{name}.json").read_text(encoding="utf-8")
    return task_from_dict(json.loads(text), f"<built-in task {name}>", default_name=name)
