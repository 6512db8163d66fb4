"""Where the API listens and who may call it: loopback by default, a remote bind needs a flag and a token."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from loupe.core.errors import LoupeError
from loupe.core.net import is_loopback
from loupe.core.secrets import KeyringLike, get_api_key

TOKEN_ENV = "LOUPE_API_TOKEN"
TOKEN_KEYRING_NAME = "loupe-api"  # `keyring set loupe loupe-api` stores it in the OS keyring


class ServeConfigError(LoupeError):
    """A server configuration that must not start (e.g. a remote bind without a token)."""


@dataclass(frozen=True)
class ServeConfig:
    """How the server binds and authenticates; `token` None means no auth (loopback only)."""

    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = None
    allow_remote: bool = False
    max_tokens_cap: int = 4096  # chat completions: the most tokens one request may ask for (and the default's cap)
    allow_paths: tuple[Path, ...] = ()  # /v1/analyze reads image and task files only under these (none by default)
    allow_hosts: tuple[str, ...] = ()  # Host header names accepted besides localhost and the bound address
    max_body: int = 24 << 20  # bytes of one request body (loupe.serve.limits)

    def hosts(self) -> frozenset[str]:
        """Host header names this server answers to without a token (a DNS-rebound page sends its own name)."""
        return frozenset(
            {"localhost", "127.0.0.1", "::1", self.host.lower().strip("[]"), *(h.lower() for h in self.allow_hosts)}
        )

    def allowed_path(self, value: str) -> Path | None:
        """`value` resolved (symlinks followed), if it lies under an --allow-path root; else None."""
        try:
            path = Path(value).expanduser().resolve()
        except (OSError, RuntimeError, ValueError):
            return None
        return path if any(path.is_relative_to(root) for root in self.allow_paths) else None

    def __repr__(self) -> str:  # never print the token
        return (
            f"ServeConfig(host={self.host!r}, port={self.port}, token={'***' if self.token else None}, "
            f"allow_remote={self.allow_remote})"
        )


def resolve_token(*, ring: KeyringLike | None = None, environ: Mapping[str, str] | None = None) -> str | None:
    """The API token: $LOUPE_API_TOKEN when set (what the operator just said wins), else the OS keyring's
    (service `loupe`, name `loupe-api`)."""
    return get_api_key(TOKEN_KEYRING_NAME, TOKEN_ENV, ring=ring, environ=environ)


def check_config(config: ServeConfig) -> ServeConfig:
    """Refuse to listen beyond this machine unless both --allow-remote and a token are given."""
    if not 0 <= config.port <= 65535:
        raise ServeConfigError(f"port {config.port} is out of range 0..65535")
    if is_loopback(config.host):
        return config
    if not config.allow_remote:
        raise ServeConfigError(
            f"{config.host} is not a loopback address: other machines could call the model. Pass --allow-remote "
            f"(and set an API token in ${TOKEN_ENV} or the keyring) to do so on purpose"
        )
    if not config.token:
        raise ServeConfigError(
            f"a bind to {config.host} needs an API token: set ${TOKEN_ENV}, or store one with "
            f"`keyring set loupe {TOKEN_KEYRING_NAME}`"
        )
    if len(config.token) < 16:
        raise ServeConfigError("the API token is too short for a remote bind (use at least 16 characters)")
    return config
