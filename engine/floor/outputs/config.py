"""A task file's `outputs` table, checked strictly, and the sinks it asks for (built by table)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from loupe.core.errors import TaskError
from loupe.core.verdict import Verdict
from loupe.floor.outputs.base import Sink
from loupe.store.outbox import DEFAULT_MAX_PENDING

SINK_SETTINGS: dict[str, dict[str, tuple[type, ...]]] = {
    "mqtt": {
        "url": (str,),
        "topic": (str,),
        "qos": (int,),
        "retain": (bool,),
        "client_id": (str,),
        "timeout_s": (int, float),
        "password": (dict,),
    },
    "webhook": {"url": (str,), "timeout_s": (int, float), "headers": (dict,)},
    "file": {"suffix": (str,)},
}
TOP = {"on", "max_pending", "max_backoff_s", *SINK_SETTINGS}


@dataclass(frozen=True)
class OutputsConfig:
    """Which verdicts are sent, to which sinks (settings per sink), and the queue's bounds."""

    sinks: dict[str, dict[str, Any]] = field(default_factory=dict)
    on: frozenset[Verdict] = frozenset(Verdict)
    max_pending: int = DEFAULT_MAX_PENDING
    max_backoff_s: float = 30.0


def outputs_from_dict(raw: Any, source: str = "<outputs>") -> OutputsConfig:
    """`{on: [FAIL, REVIEW], mqtt: {url, topic, qos}, webhook: {url, headers}, file: {suffix}, max_pending}`;
    anything unknown or mistyped is refused, naming it by JSON Pointer (relative to the table)."""
    if raw is None:
        return OutputsConfig()
    if not isinstance(raw, dict):
        raise TaskError(source, "must be a table/object", "")
    for key in raw:
        if key not in TOP:
            raise TaskError(source, f"unknown setting {key!r} (known: {', '.join(sorted(TOP))})", f"/{key}")
    on = raw.get("on", [v.value for v in Verdict])
    if not isinstance(on, list) or not all(isinstance(v, str) and v.upper() in Verdict.__members__ for v in on):
        raise TaskError(source, "on lists verdicts (PASS, FAIL, REVIEW)", "/on")
    sinks: dict[str, dict[str, Any]] = {}
    for name, settings in SINK_SETTINGS.items():
        if name not in raw:
            continue
        table = raw[name]
        if not isinstance(table, dict):
            raise TaskError(source, "must be a table/object", f"/{name}")
        for key, value in table.items():
            if key not in settings:
                raise TaskError(
                    source, f"unknown setting {key!r} (known: {', '.join(sorted(settings))})", f"/{name}/{key}"
                )
            types = settings[key]
            if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
                raise TaskError(source, f"{key} has the wrong type ({type(value).__name__})", f"/{name}/{key}")
        _check_sink(name, table, source)
        sinks[name] = dict(table)
    max_pending = raw.get("max_pending", DEFAULT_MAX_PENDING)
    if isinstance(max_pending, bool) or not isinstance(max_pending, int) or max_pending < 1:
        raise TaskError(source, "max_pending must be a whole number >= 1", "/max_pending")
    backoff = raw.get("max_backoff_s", 30.0)
    if isinstance(backoff, bool) or not isinstance(backoff, int | float) or backoff <= 0:
        raise TaskError(source, "max_backoff_s must be a number > 0", "/max_backoff_s")
    return OutputsConfig(sinks, frozenset(Verdict(v.upper()) for v in on), max_pending, float(backoff))


# header names whose values are credentials: never written in a task file (it is stored with every job)
SECRET_HEADER = re.compile(r"auth|token|key|secret|passw|cookie|session|signature", re.IGNORECASE)
SECRET_REF = 'a secret is named, not written: {env = "NAME"} (an environment variable) or {keyring = "NAME"}'


def _check_secret_ref(value: Any, source: str, pointer: str) -> None:
    if not (
        isinstance(value, dict)
        and len(value) == 1
        and set(value) <= {"env", "keyring"}
        and isinstance(next(iter(value.values())), str)
        and next(iter(value.values()))
    ):
        raise TaskError(source, SECRET_REF, pointer)


def resolve_secret(ref: dict[str, str], what: str) -> str:
    """The value a {env = NAME} / {keyring = NAME} reference names, read now (never stored)."""
    import os

    from loupe.core.secrets import get_api_key

    kind, name = next(iter(ref.items()))
    value = os.environ.get(name) if kind == "env" else get_api_key(name, "")
    if not value:
        where = f"${name}" if kind == "env" else f"the keyring entry loupe/{name}"
        raise TaskError("<outputs>", f"{what}: {where} is not set")
    return value


def _check_sink(name: str, table: dict[str, Any], source: str) -> None:
    if name in ("mqtt", "webhook"):
        url = table.get("url")
        schemes = ("mqtt", "tcp") if name == "mqtt" else ("http", "https")
        if not url or urlsplit(url).scheme not in schemes or not urlsplit(url).hostname:
            raise TaskError(source, f"url must look like {schemes[0]}://host[:port]...", f"/{name}/url")
        if urlsplit(url).password is not None:
            raise TaskError(
                source,
                "the url holds a password, which would be stored with every job: keep the "
                'user in the url and give `password` as {env = "NAME"} or {keyring = "NAME"}',
                f"/{name}/url",
            )
    if name == "mqtt" and "password" in table:
        _check_secret_ref(table["password"], source, "/mqtt/password")
    if name == "webhook":
        for header, value in (table.get("headers") or {}).items():
            pointer = "/webhook/headers/" + str(header).replace("~", "~0").replace("/", "~1")
            if isinstance(value, dict):
                _check_secret_ref(value, source, pointer)
            elif not isinstance(value, str):
                raise TaskError(source, "a header value is a string or a secret reference", pointer)
            elif SECRET_HEADER.search(str(header)):
                raise TaskError(source, f"header {header!r} carries a credential: {SECRET_REF}", pointer)
    if name == "mqtt" and table.get("qos", 1) not in (0, 1, 2):
        raise TaskError(source, "qos is 0, 1 or 2", "/mqtt/qos")
    if name == "mqtt" and "topic" in table:
        problem = topic_problem(table["topic"])
        if problem:
            raise TaskError(source, problem, "/mqtt/topic")


def topic_problem(topic: str) -> str | None:
    """Why an MQTT topic template cannot be published to (None when it can): its only fields are {task} and
    {verdict}, and a publish topic has no wildcards (+, #), no NUL and is not empty."""
    try:
        sample = topic.format(task="task", verdict="FAIL")
    except (KeyError, IndexError, ValueError, AttributeError) as exc:
        return f"topic {topic!r} has a field other than {{task}} and {{verdict}} ({type(exc).__name__}: {exc})"
    if not sample or "+" in sample or "#" in sample or "\0" in sample:
        return f"topic {topic!r} is not a topic one can publish to (empty, or a wildcard + or #)"
    if len(sample.encode()) > 65535:
        return "topic is longer than MQTT allows"
    return None


def _mqtt(settings: dict[str, Any]) -> Sink:
    from loupe.floor.outputs.mqtt import MqttSink  # paho-mqtt is imported only there

    settings = dict(settings)
    if "password" in settings:
        settings["password"] = resolve_secret(settings["password"], "mqtt password")
    return MqttSink(**settings)


def _webhook(settings: dict[str, Any]) -> Sink:
    from loupe.floor.outputs.webhook import WebhookSink

    headers = {
        k: resolve_secret(v, f"webhook header {k}") if isinstance(v, dict) else v
        for k, v in (settings.get("headers") or {}).items()
    }
    return WebhookSink(**{**settings, "headers": headers})


def _file(settings: dict[str, Any]) -> Sink:
    from loupe.floor.outputs.filedrop import FileDropSink

    return FileDropSink(**settings)


BUILDERS: dict[str, Callable[[dict[str, Any]], Sink]] = {"mqtt": _mqtt, "webhook": _webhook, "file": _file}


def build_sinks(config: OutputsConfig) -> list[Sink]:
    """The sinks a config asks for (nothing connects yet: each sink connects when it first sends)."""
    return [BUILDERS[name](settings) for name, settings in config.sinks.items()]
