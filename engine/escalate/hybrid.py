"""The ladder wired for one run: the local engine, the cloud if allowed, the budget, and the audit into the store.

The cloud is wired only when both the task and the settings allow it; the budget is seeded from the audit table, and
every request is audited into the store.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from loupe.api import AnalyzeRequest, Engine
from loupe.backends.cloud import CloudConfig
from loupe.core.errors import BackendError, LoupeError
from loupe.core.images.load import LoadedImage, load_image
from loupe.core.net import is_loopback
from loupe.core.tasks import Task
from loupe.core.types import Result
from loupe.escalate.audit import StoreAudit, spend_history
from loupe.escalate.base import StepRunner
from loupe.escalate.local import BackendFactory, ModelRunner, registry_backend
from loupe.escalate.policy import DAY, Escalation, Ledger, Policy, escalate
from loupe.escalate.runner import EngineRunner
from loupe.store.sqlite import Store


@dataclass
class DisabledCloud:
    """The cloud rung while the cloud is off: `escalate` skips it before calling anything (nothing is built)."""

    model: str = ""
    cloud: bool = True

    def run(
        self, task: Task, images: Sequence[LoadedImage], *, cancel: threading.Event | None = None
    ) -> tuple[Result, float, int]:
        """Never called: a disabled cloud rung is skipped by the policy."""
        raise BackendError("cloud: disabled; nothing is sent")

    def estimate(self, task: Task, images: Sequence[LoadedImage]) -> float:
        """Nothing is ever spent."""
        return 0.0


@dataclass
class LocalRunner:
    """The `local` rung on an engine made on first use (a batch answered from the store never loads it)."""

    engine_of: Callable[[], Engine]
    cloud: bool = False

    @property
    def model(self) -> str:
        """The local model's name."""
        return self.engine_of().model

    def run(
        self, task: Task, images: Sequence[LoadedImage], *, cancel: threading.Event | None = None
    ) -> tuple[Result, float, int]:
        """Analyze locally: no spend, no requests."""
        return EngineRunner(self.engine_of()).run(task, images, cancel=cancel)

    def estimate(self, task: Task, images: Sequence[LoadedImage]) -> float:
        """Local runs cost nothing."""
        return 0.0


def cloud_allowed(policy: Policy, cloud: CloudConfig | None) -> bool:
    """Whether anything may leave the machine: the task's `escalation.cloud` and the settings' `enabled`."""
    return bool(cloud is not None and cloud.enabled and policy.cloud_enabled)


def offline_veto(cloud: CloudConfig | None, environ: Mapping[str, str] | None = None) -> str | None:
    """Why LOUPE_OFFLINE=1 forbids this endpoint (None when it is not set, or the endpoint is on this machine)."""
    env = os.environ if environ is None else environ
    if cloud is None or env.get("LOUPE_OFFLINE", "").lower() not in ("1", "true", "yes"):
        return None
    base_url = cloud.resolved()[0]
    if is_loopback(urlsplit(base_url).hostname or ""):
        return None
    return f"LOUPE_OFFLINE=1 forbids sending to {urlsplit(base_url).netloc or base_url} (not this machine)"


def settings_key(task: Task, policy: Policy, cloud: CloudConfig | None) -> dict[str, Any]:
    """What escalation adds to a job's settings (so escalated and plain results never share a cache entry)."""
    on = cloud_allowed(policy, cloud)
    return {"escalation": {"policy": task.escalation or {}, "cloud": asdict(cloud) if on and cloud else None}}


class Escalator:
    """Runs the task's ladder per request. With the cloud off no cloud backend (nor `openai`) is even made."""

    def __init__(
        self,
        policy: Policy,
        local: Callable[[], Engine],
        cloud: CloudConfig | None = None,
        *,
        api_key: str | None = None,
        store: Store | None = None,
        job_id: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
        threads: int | None = None,
        model_backend: BackendFactory | None = None,
    ) -> None:
        switches = cloud_allowed(policy, cloud)
        self.veto = offline_veto(cloud) if switches else None
        self.cloud_on = switches and self.veto is None
        self.policy = replace(policy, cloud_enabled=switches, cloud_veto=self.veto)
        self.local = local
        self.cloud_engine: Engine | None = None
        make = model_backend or functools.partial(registry_backend, threads=threads)
        self.models = {name: ModelRunner(spec, make) for name, spec in self.policy.models.items()}
        self.runners: dict[str, StepRunner] = {"local": LocalRunner(local), **self.models}
        history: list[tuple[float, float]] = []
        if self.cloud_on and cloud is not None:
            if store is None:
                raise BackendError("cloud: every request is audited; give a results store")
            from loupe.backends.cloud import CloudBackend

            audit = StoreAudit(store, job_id)
            backend = CloudBackend(cloud, api_key=api_key, audit=audit, sleep=sleep)
            self.cloud_engine = Engine(backend)  # type: ignore[arg-type]
            self.runners["cloud"] = EngineRunner(self.cloud_engine, cloud=True, audit=audit)
            history = spend_history(store, since=time.time() - DAY)
        else:
            self.runners["cloud"] = DisabledCloud(model=cloud.resolved()[1] if cloud is not None else "")
        self.ledger = Ledger(self.policy.budget, history=history)

    def __call__(self, paths: Sequence[str], task: Task) -> Escalation:
        """Climb the ladder for one request; an image that cannot be read is answered locally, as an error."""
        try:
            images = [load_image(p) for p in paths]
        except LoupeError:
            return Escalation(self.local().analyze(AnalyzeRequest(tuple(paths), task)), ())
        return escalate(task, images, self.policy, self.runners, self.ledger)

    def close(self) -> None:
        """Close the cloud client and the extra local models (the main local engine belongs to the caller)."""
        for runner in self.models.values():
            runner.close()
        if self.cloud_engine is not None:
            self.cloud_engine.close()
