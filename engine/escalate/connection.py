"""'Test connection': one tiny text-only request to the configured endpoint, audited like any other, told plainly."""

from __future__ import annotations

from dataclasses import dataclass, replace

from loupe.backends.cloud import CloudBackend, CloudConfig, Sent, parse_completion
from loupe.core.errors import BackendError
from loupe.escalate.audit import StoreAudit
from loupe.escalate.hybrid import offline_veto
from loupe.store.sqlite import Store

PROBE_TEXT = "Reply with the word OK."


@dataclass(frozen=True)
class ConnectionCheck:
    """The outcome: `verdict` is ok | bad key | unreachable | wrong model | refused | failed; `message` explains."""

    verdict: str
    message: str

    @property
    def ok(self) -> bool:
        """Whether the endpoint answered a chat completion."""
        return self.verdict == "ok"


def _judge(sent: Sent, host: str, model: str) -> ConnectionCheck:
    """What one probe's outcome means to the user."""
    if sent.reply is not None:
        try:
            parse_completion(sent.reply)
        except BackendError:
            return ConnectionCheck("failed", f"{host} answered, but not as an OpenAI-compatible server")
        return ConnectionCheck("ok", f"{host} answered with model {model}")
    if sent.status in ("timeout", "connection"):
        return ConnectionCheck("unreachable", f"{host} cannot be reached: {sent.problem}")
    if sent.status in (401, 403):
        return ConnectionCheck("bad key", f"{host} refused the API key ({sent.problem})")
    if sent.status == 404 or (sent.status in (400, 422) and "model" in sent.problem.lower()):
        return ConnectionCheck(
            "wrong model", f"{host} does not serve model {model!r} (or the base URL is wrong): {sent.problem}"
        )
    return ConnectionCheck("failed", f"{host} answered {sent.problem}")


def check_connection(config: CloudConfig, api_key: str | None, store: Store) -> ConnectionCheck:
    """Send the probe (no image) and judge the answer; refused without sending when the cloud is off or
    LOUPE_OFFLINE forbids the endpoint. The request is audited into `store` (use it on this thread)."""
    if not config.enabled:
        return ConnectionCheck("refused", "The cloud is switched off: turn it on to test the connection.")
    veto = offline_veto(config)
    if veto is not None:
        return ConnectionCheck("refused", f"Not sent: {veto}.")
    probe = replace(config, max_retries=0)
    backend = CloudBackend(probe, api_key=api_key, audit=StoreAudit(store))
    body = {"model": backend.model_id, "messages": [{"role": "user", "content": PROBE_TEXT}], "max_tokens": 5}
    return _judge(backend.send(body), backend.host, backend.model_id)
