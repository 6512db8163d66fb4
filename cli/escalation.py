"""The escalation options of `analyze` and `batch` (--escalate, --cloud-config) turned into a ladder."""

from __future__ import annotations

import argparse
import json
import os
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import yaml
from loupe.core.cloud import PRESETS, CloudConfig
from loupe.core.errors import BackendError, TaskError
from loupe.core.secrets import get_api_key
from loupe.core.types import Result
from loupe.escalate.config import cloud_config_from_dict
from loupe.store import Store, default_db_path
from loupe.taskfile import TaskFile

if TYPE_CHECKING:  # the ladder pulls in the whole engine; loaded only with --escalate
    from loupe.api import Engine
    from loupe.escalate.hybrid import Escalator

CLOUD_CONFIG_ENV = "LOUPE_CLOUD_CONFIG"


Ladder = Callable[[list[str]], tuple[Result, list[dict[str, Any]] | None]]


def add_escalate_args(sp: argparse.ArgumentParser, *, db: bool = False) -> None:
    """`--escalate` and `--cloud-config` (and `--db`, where the command has none, for the audit trail)."""
    sp.add_argument(
        "--escalate",
        action="store_true",
        help="climb the task file's `escalation` ladder for doubtful results (local rungs only unless "
        "both the task and the cloud settings enable the cloud)",
    )
    sp.add_argument(
        "--cloud-config",
        metavar="FILE",
        help=f"cloud settings (.toml, .json, .yaml; default: ${CLOUD_CONFIG_ENV}); keys stay in the keyring",
    )
    if db:
        sp.add_argument(
            "--db", help="where cloud requests are audited (default: $LOUPE_DB, else loupe.db in the user data dir)"
        )


def load_cloud_config(path: str | None) -> CloudConfig | None:
    """The cloud settings from `path` (or $LOUPE_CLOUD_CONFIG): the whole file, or its `cloud` table; None without."""
    path = path or os.environ.get(CLOUD_CONFIG_ENV) or None
    if path is None:
        return None
    p = Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise TaskError(str(p), f"cannot read cloud settings ({exc.strerror or exc})") from None
    try:
        raw = (
            tomllib.loads(text)
            if p.suffix.lower() == ".toml"
            else (json.loads(text) if p.suffix.lower() == ".json" else yaml.safe_load(text))
        )
    except (ValueError, yaml.YAMLError) as exc:
        raise TaskError(
            str(p), f"cannot parse cloud settings: {str(exc).splitlines()[0] if str(exc) else exc}"
        ) from None
    if isinstance(raw, dict) and isinstance(raw.get("cloud"), dict):
        raw = raw["cloud"]
    return cloud_config_from_dict(raw, str(p))


def escalation_settings(args: argparse.Namespace, job: TaskFile) -> dict[str, Any]:
    """What --escalate adds to a batch job's settings (nothing without it)."""
    if not getattr(args, "escalate", False):
        return {}
    from loupe.escalate.hybrid import settings_key

    return settings_key(job.task, job.policy, load_cloud_config(args.cloud_config))


def escalator(
    args: argparse.Namespace,
    job: TaskFile,
    local: Callable[[], Engine],
    err: TextIO,
    *,
    store: Store | None = None,
    job_id: int | None = None,
) -> Escalator:
    """The ladder for --escalate: the API key from the keyring (env fallback), a note on where data may go."""
    from loupe.escalate.hybrid import Escalator, cloud_allowed, offline_veto

    cloud = load_cloud_config(args.cloud_config)
    threads = getattr(args, "threads", None)
    if not cloud_allowed(job.policy, cloud):
        print("note: escalating on this machine only (the cloud is off for this task or in the settings)", file=err)
        return Escalator(job.policy, local, cloud, threads=threads)
    veto = offline_veto(cloud)
    if veto is not None:
        print(f"note: escalating on this machine only: {veto}; cases that need the cloud go to review", file=err)
        return Escalator(job.policy, local, cloud, threads=threads)
    assert cloud is not None
    base_url, model = cloud.resolved()
    env = PRESETS[cloud.preset].key_env
    key = get_api_key(cloud.preset, env)
    if key is None and env:
        raise BackendError(f"cloud: no API key for {cloud.preset}; run `loupe cloud key {cloud.preset}` or set ${env}")
    print(
        f"note: doubtful results may be sent to {base_url} ({model}); every request is audited (`loupe audit`)",
        file=err,
    )
    return Escalator(job.policy, local, cloud, api_key=key, store=store, job_id=job_id, threads=threads)


@contextmanager
def ladder_for(args: argparse.Namespace, job: TaskFile, engine: Engine, err: TextIO) -> Iterator[Ladder | None]:
    """For `analyze`: None without --escalate, else a function (images -> result, its ladder records)."""
    if not getattr(args, "escalate", False):
        yield None
        return
    from loupe.escalate.hybrid import cloud_allowed, offline_veto

    store = None
    cloud = load_cloud_config(args.cloud_config)
    if cloud_allowed(job.policy, cloud) and offline_veto(cloud) is None:  # the audit trail needs the store
        store = Store(Path(args.db).expanduser() if args.db else default_db_path())
    try:
        ladder = escalator(args, job, lambda: engine, err, store=store)
        task = job.task
        try:

            def run(paths: list[str]) -> tuple[Result, list[dict[str, Any]] | None]:
                esc = ladder(paths, task)
                return esc.result, esc.records()

            yield run
        finally:
            ladder.close()
    finally:
        if store is not None:
            store.close()


def ladder_text(steps: list[dict[str, Any]] | None) -> str:
    """One `ladder` line for `--pretty` output (empty without escalation)."""
    if not steps:
        return ""
    parts = [
        f"{s['step']} {s.get('outcome', '')}".strip() + (f" ({s['why']})" if s["step"] == "review" else "")
        for s in steps
    ]
    return "ladder  " + " -> ".join(parts) + "\n"
