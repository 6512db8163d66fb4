"""API keys live in the OS keyring (env var as fallback), never in config files, logs or the store."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Protocol

SERVICE = "loupe"


class KeyringLike(Protocol):
    """The two calls Loupe needs from `keyring` (injectable so tests never touch the real keyring)."""

    def get_password(self, service_name: str, username: str) -> str | None: ...

    def set_password(self, service_name: str, username: str, password: str) -> None: ...


def _default_keyring() -> Any:
    try:
        import keyring
    except ImportError:
        return None
    return keyring


def get_api_key(
    provider: str, env_var: str = "", *, ring: KeyringLike | None = None, environ: Mapping[str, str] | None = None
) -> str | None:
    """The key for `provider`: `env_var` when set (an explicit setting wins over a stored, possibly stale one), else
    the keyring's; None when neither has one."""
    env = os.environ if environ is None else environ
    if env_var and env.get(env_var):
        return env[env_var]
    ring = ring if ring is not None else _default_keyring()
    if ring is None:
        return None
    try:
        return ring.get_password(SERVICE, provider) or None
    except Exception:  # no usable keyring backend (headless, locked): nothing stored
        return None


def set_api_key(provider: str, key: str, *, ring: KeyringLike | None = None) -> None:
    """Store `key` for `provider` in the OS keyring (raises when no keyring is usable)."""
    ring = ring if ring is not None else _default_keyring()
    if ring is None:
        raise RuntimeError("the `keyring` package is not installed; set the provider's environment variable instead")
    ring.set_password(SERVICE, provider, key)


def redact(text: str, *secrets: str | None) -> str:
    """`text` with every given secret replaced by '***' (for error messages that quote a request)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
