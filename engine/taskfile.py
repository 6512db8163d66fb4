"""The task-file loader: every section of a task file parsed once into the objects its feature uses.

The core's Task keeps the feature tables as written (they are stored with a job and shown in the editor); this
layer, above the features, parses each one once (`escalation` into a Policy, `verdict` into Rules, `outputs`
into an OutputsConfig) and hands the parsed objects to the features. The CLI and the desktop load tasks here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loupe.core.errors import TaskError
from loupe.core.schema.pointers import pointer_problem
from loupe.core.tasks import Task, builtin_task, load_task_file, options_from_dict, task_from_dict
from loupe.core.verdict import Rules, rules_from_dict
from loupe.escalate.config import policy_from_dict
from loupe.escalate.policy import Policy
from loupe.floor.outputs.config import OutputsConfig, outputs_from_dict


@dataclass(frozen=True)
class TaskFile:
    """A task with its feature sections parsed (each one's defaults where the file has no such table)."""

    task: Task
    policy: Policy
    rules: Rules
    outputs: OutputsConfig

    @property
    def escalates(self) -> bool:
        """Whether the file has an `escalation` table (what --escalate and the desktop's ladder need)."""
        return self.task.escalation is not None


def _policy(task: Task, raw: dict[str, Any] | None) -> Policy:
    """The `escalation` table as a Policy whose field thresholds name places in the schema."""
    policy = policy_from_dict(raw or {}, task.source)
    for i, step in enumerate(policy.ladder):
        try:
            options_from_dict(task.source, {"detail": step.detail})
        except TaskError as exc:
            raise TaskError(task.source, f"step {step.label!r}: {exc.problem}", f"/ladder/{i}") from None
    for key in policy.thresholds.fields:
        problem = pointer_problem(task.schema, key)
        if problem:
            raise TaskError(
                task.source,
                f"threshold key {key!r}: {problem}",
                "/thresholds/fields/" + key.replace("~", "~0").replace("/", "~1"),
            )
    return policy


def _rules(task: Task, raw: dict[str, Any] | None) -> Rules:
    return rules_from_dict(raw, task.source)


def _outputs(task: Task, raw: dict[str, Any] | None) -> OutputsConfig:
    return outputs_from_dict(raw, task.source)


SECTIONS: dict[str, Callable[[Task, dict[str, Any] | None], Any]] = {
    "escalation": _policy,
    "verdict": _rules,
    "outputs": _outputs,
}


def parse(task: Task) -> TaskFile:
    """Parse the task's feature tables (errors point into /escalation, /verdict or /outputs)."""
    parsed: dict[str, Any] = {}
    for key, section in SECTIONS.items():
        try:
            parsed[key] = section(task, getattr(task, key))
        except TaskError as exc:
            raise TaskError(task.source, exc.problem, f"/{key}" + exc.pointer) from None
    return TaskFile(task, parsed["escalation"], parsed["verdict"], parsed["outputs"])


def load(path: str | Path) -> TaskFile:
    """Read a user task file (JSON, YAML or TOML) and parse every section."""
    return parse(load_task_file(path))


def builtin(name: str) -> TaskFile:
    """A built-in task by name."""
    return parse(builtin_task(name))


def from_dict(raw: Any, source: str, default_name: str = "task") -> TaskFile:
    """A task given as parsed content (the desktop's editor), every section checked."""
    return parse(task_from_dict(raw, source, default_name=default_name))
