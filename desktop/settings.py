"""The app's settings: what persists in QSettings between runs, and what never does (the API key: OS keyring)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Protocol

from loupe import taskfile
from loupe.core.cloud import PRESETS, CloudConfig
from loupe.core.tasks import Task
from loupe.escalate import cloud_allowed

MAX_RECENT = 10


class SettingsLike(Protocol):
    """The QSettings calls used (a plain dict-backed fake fits too)."""

    def value(self, key: str, default: Any = None) -> Any: ...
    def setValue(self, key: str, value: Any) -> None: ...
    def contains(self, key: str) -> bool: ...


@dataclass(frozen=True)
class CloudSettings:
    """The cloud part of hybrid mode as the settings dialog edits it (never the key)."""

    enabled: bool = False
    preset: str = "openai"
    base_url: str = ""
    model: str = ""
    timeout_s: float = CloudConfig.timeout_s
    max_retries: int = CloudConfig.max_retries
    max_side: int = CloudConfig.max_side  # longest image edge sent, in pixels
    price_in_per_mtok: float = 0.0  # USD per million prompt tokens, as price lists and cloud.toml give it
    price_out_per_mtok: float = 0.0  # USD per million completion tokens

    def config(self) -> CloudConfig:
        """The engine's cloud configuration (the same prices, per million tokens)."""
        return CloudConfig(
            preset=self.preset,
            base_url=self.base_url,
            model=self.model,
            enabled=self.enabled,
            timeout_s=self.timeout_s,
            max_retries=self.max_retries,
            max_side=self.max_side,
            price_in_per_mtok=self.price_in_per_mtok,
            price_out_per_mtok=self.price_out_per_mtok,
        )

    def key_env(self) -> str:
        """The environment variable the key falls back to."""
        return PRESETS[self.preset].key_env if self.preset in PRESETS else ""


@dataclass(frozen=True)
class AppSettings:
    """Everything the settings dialog edits, plus the last model and recent files."""

    threads: int = 0  # 0: automatic (one per physical core, fewer while other programs keep cores busy)
    model_dir: str = ""  # "": $LOUPE_MODEL_DIR or the user data directory
    default_task: str = "defects"
    review_threshold: float = 0.0  # 0: each task's own
    model: str = ""  # the last model chosen ("" : the catalog default)
    recent_files: tuple[str, ...] = ()
    cloud: CloudSettings = field(default_factory=CloudSettings)

    def with_recent(self, paths: list[str]) -> AppSettings:
        """`paths` first in the recent files, without duplicates, at most MAX_RECENT."""
        merged = tuple(dict.fromkeys([*paths, *self.recent_files]))[:MAX_RECENT]
        return replace(self, recent_files=merged)

    def task_for_run(self, task: Task) -> Task:
        """The task with the review-threshold override applied."""
        return task.with_options(review_threshold=self.review_threshold) if self.review_threshold else task

    def sends_data(self, task: Task) -> bool:
        """Whether running `task` may send images off this machine."""
        return cloud_allowed(taskfile.parse(task).policy, self.cloud.config())


_SCALARS = {"threads": int, "model_dir": str, "default_task": str, "review_threshold": float, "model": str}
_CLOUD = {
    "enabled": bool,
    "preset": str,
    "base_url": str,
    "model": str,
    "timeout_s": float,
    "max_retries": int,
    "max_side": int,
    "price_in_per_mtok": float,
    "price_out_per_mtok": float,
}
_CLOUD_MIN = {"timeout_s": 1.0, "max_retries": 0, "max_side": 64, "price_in_per_mtok": 0.0, "price_out_per_mtok": 0.0}
_CLOUD_PER_1K = {"price_in_per_mtok": "price_in_per_1k", "price_out_per_mtok": "price_out_per_1k"}  # before 0.x


def _read(store: SettingsLike, key: str, kind: type, default: Any) -> Any:
    raw = store.value(key, default)
    if kind is bool:
        return raw if isinstance(raw, bool) else str(raw).lower() in ("true", "1", "yes")
    try:
        return kind(raw)
    except (TypeError, ValueError):  # a hand-edited or older settings file: fall back, never crash
        return default


def load_settings(store: SettingsLike) -> AppSettings:
    """Read the settings (defaults for anything absent or unreadable)."""
    base = AppSettings()
    values = {k: _read(store, k, kind, getattr(base, k)) for k, kind in _SCALARS.items()}
    cloud = {k: _read(store, f"cloud/{k}", kind, getattr(base.cloud, k)) for k, kind in _CLOUD.items()}
    for key, old in _CLOUD_PER_1K.items():  # a settings file from when prices were typed per 1k tokens
        if store.value(f"cloud/{key}") is None and store.value(f"cloud/{old}") is not None:
            cloud[key] = _read(store, f"cloud/{old}", float, 0.0) * 1000
    if cloud["preset"] not in PRESETS:
        cloud["preset"] = base.cloud.preset
    for key, least in _CLOUD_MIN.items():  # a hand-edited file with a nonsense number gets the default back
        if cloud[key] < least:
            cloud[key] = getattr(base.cloud, key)
    recent = store.value("recent_files", [])
    recent = [recent] if isinstance(recent, str) else list(recent or [])
    return AppSettings(**values, recent_files=tuple(str(p) for p in recent)[:MAX_RECENT], cloud=CloudSettings(**cloud))


def save_settings(store: SettingsLike, settings: AppSettings) -> None:
    """Write the settings; there is no field for a key, so none can be written."""
    for key in _SCALARS:
        store.setValue(key, getattr(settings, key))
    for f in fields(CloudSettings):
        store.setValue(f"cloud/{f.name}", getattr(settings.cloud, f.name))
    store.setValue("recent_files", list(settings.recent_files))
