"""Hybrid settings from a plain table (task file `escalation` section or a config file), checked strictly."""

from __future__ import annotations

import re
from dataclasses import fields
from typing import Any

from loupe.api.models import ModelSpec
from loupe.backends.cloud import PRESETS, RESPONSE_FORMATS, CloudConfig
from loupe.core.errors import TaskError
from loupe.core.types import Status
from loupe.escalate.policy import ALWAYS_ESCALATE, Budget, Policy, Step, Thresholds

SECRET_NAMES = ("api_key", "key", "token", "password", "secret")
BUILTIN_RUNNERS = ("local", "cloud")
POINTER = re.compile(r"(/([^~/]|~[01])*)+")  # RFC 6901, not empty; a `*` segment is one list item (policy.Thresholds)


def _table(raw: Any, source: str, pointer: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise TaskError(source, "must be a table/object", pointer)
    return raw


def _unknown(raw: dict[str, Any], known: set[str], source: str, pointer: str) -> None:
    for key in raw:
        if key not in known:
            raise TaskError(source, f"unknown setting {key!r} (known: {', '.join(sorted(known))})", f"{pointer}/{key}")


def policy_from_dict(raw: Any, source: str = "<escalation>") -> Policy:
    """A Policy from `{ladder: ["local@low", "local@crop", "local-4b@high", "cloud@high"], models: {local-4b:
    {model | path + mmproj}}, thresholds: {overall, fields, always}, budget: {...}, cloud: bool}`; anything unknown
    or mistyped is refused, naming it by JSON Pointer."""
    raw = _table(raw, source, "")
    _unknown(raw, {"ladder", "models", "thresholds", "budget", "cloud"}, source, "")
    models = _models(raw.get("models"), source)
    ladder = raw.get("ladder", ["local@low"])
    if not isinstance(ladder, list) or not ladder or not all(isinstance(s, str) for s in ladder):
        raise TaskError(source, "ladder must be a non-empty list of 'runner@detail' strings", "/ladder")
    for i, text in enumerate(ladder):
        name = Step.parse(text).runner
        if name not in BUILTIN_RUNNERS and name not in models:
            raise TaskError(
                source,
                f"unknown runner {name!r}: use local, cloud or a name from `models` "
                f"({', '.join(models) or 'none given'})",
                f"/ladder/{i}",
            )
    th = _table(raw.get("thresholds"), source, "/thresholds")
    _unknown(th, {"overall", "fields", "always"}, source, "/thresholds")
    overall = th.get("overall", 0.5)
    if overall is not None and (isinstance(overall, bool) or not isinstance(overall, int | float)):
        raise TaskError(source, "overall must be a number in [0, 1]", "/thresholds/overall")
    per_field = _table(th.get("fields"), source, "/thresholds/fields")
    for ptr, value in per_field.items():
        where = "/thresholds/fields/" + ptr.replace("~", "~0").replace("/", "~1")
        if not POINTER.fullmatch(ptr):
            raise TaskError(
                source,
                f"fields maps JSON Pointers ('/label', '/defects/*/severity') to numbers: "
                f"{ptr!r} is not one ('~' only as ~0 or ~1)",
                where,
            )
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise TaskError(source, f"threshold for {ptr!r} must be a number in [0, 1]", where)
    always = th.get("always", [s.value for s in ALWAYS_ESCALATE])
    try:
        statuses = frozenset(Status(s) for s in always)
    except (ValueError, TypeError):
        raise TaskError(
            source, f"always lists statuses ({', '.join(s.value for s in Status)})", "/thresholds/always"
        ) from None
    b = _table(raw.get("budget"), source, "/budget")
    known_budget = {f.name for f in fields(Budget)}
    _unknown(b, known_budget, source, "/budget")
    for key, value in b.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value < 0):
            raise TaskError(source, "budget caps are non-negative numbers", f"/budget/{key}")
    cloud = raw.get("cloud", False)
    if not isinstance(cloud, bool):
        raise TaskError(source, "cloud must be true or false", "/cloud")
    return Policy(
        tuple(Step.parse(s) for s in ladder),
        Thresholds(None if overall is None else float(overall), {k: float(v) for k, v in per_field.items()}, statuses),
        Budget(**b),
        cloud_enabled=cloud,
        models=models,
    )


def _models(raw: Any, source: str) -> dict[str, ModelSpec]:
    """Extra local rungs by name: `{model: catalog-name}` or `{path: text.gguf, mmproj: mmproj.gguf}`."""
    out = {}
    for name, spec in _table(raw, source, "/models").items():
        where = f"/models/{name}"
        if name in BUILTIN_RUNNERS or "@" in name or not name:
            raise TaskError(source, "a model rung needs its own name (not local or cloud, no '@')", where)
        spec = _table(spec, source, where)
        _unknown(spec, {"model", "path", "mmproj"}, source, where)
        if not all(isinstance(v, str) and v for v in spec.values()):
            raise TaskError(source, "model, path and mmproj are non-empty strings", where)
        if ("model" in spec) == ("path" in spec) or ("path" in spec) != ("mmproj" in spec):
            raise TaskError(source, "give either `model` (a catalog or imported name) or `path` with `mmproj`", where)
        out[name] = ModelSpec(**spec)
    return out


def cloud_config_from_dict(raw: Any, source: str = "<cloud>") -> CloudConfig:
    """A CloudConfig from a settings table; a key in it is refused (keys live in the OS keyring only)."""
    raw = _table(raw, source, "")
    for key in raw:
        if key.lower() in SECRET_NAMES:
            raise TaskError(
                source, "API keys do not belong in settings files; run `loupe cloud key PROVIDER`", f"/{key}"
            )
    _unknown(raw, {f.name for f in fields(CloudConfig)}, source, "")
    if raw.get("preset", "openai") not in PRESETS:
        raise TaskError(source, f"unknown preset (known: {', '.join(PRESETS)})", "/preset")
    config = CloudConfig(**raw)
    if config.response_format and config.response_format not in RESPONSE_FORMATS:
        raise TaskError(source, f"unknown response_format (known: {', '.join(RESPONSE_FORMATS)})", "/response_format")
    for f in fields(CloudConfig):
        value, default = getattr(config, f.name), f.default
        if type(value) is not type(default) and not (isinstance(default, float) and isinstance(value, int)):
            raise TaskError(source, f"{f.name} should be a {type(default).__name__}", f"/{f.name}")
    return config
