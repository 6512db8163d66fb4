"""Where the server may listen: loopback freely; anything else only with --allow-remote and a token."""

from __future__ import annotations

import io

import pytest
from loupe.cli import main
from loupe.core.net import is_loopback
from loupe.serve.config import ServeConfig, ServeConfigError, check_config, resolve_token

TOKEN = "a-long-enough-token-0123456789"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1.2.3", "::1", "localhost"])
def test_loopback_needs_nothing(host: str) -> None:
    assert is_loopback(host) and check_config(ServeConfig(host=host)).token is None


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::", "example.local"])
def test_a_remote_bind_needs_the_flag_and_a_token(host: str) -> None:
    with pytest.raises(ServeConfigError, match="--allow-remote"):
        check_config(ServeConfig(host=host, token=TOKEN))
    with pytest.raises(ServeConfigError, match="LOUPE_API_TOKEN"):
        check_config(ServeConfig(host=host, allow_remote=True))
    with pytest.raises(ServeConfigError, match="too short"):
        check_config(ServeConfig(host=host, allow_remote=True, token="short"))
    assert check_config(ServeConfig(host=host, allow_remote=True, token=TOKEN)).allow_remote


def test_the_token_comes_from_the_environment_then_the_keyring_and_is_never_shown() -> None:
    class Ring:
        def __init__(self, key: str | None) -> None:
            self.key = key

        def get_password(self, service: str, name: str) -> str | None:
            return self.key if (service, name) == ("loupe", "loupe-api") else None

        def set_password(self, service: str, name: str, password: str) -> None:
            raise AssertionError("not called")

    # the environment wins: `LOUPE_API_TOKEN=... loupe serve` must not silently serve an older keyring token
    assert resolve_token(ring=Ring("from-keyring"), environ={"LOUPE_API_TOKEN": "env"}) == "env"
    assert resolve_token(ring=Ring("from-keyring"), environ={}) == "from-keyring"
    assert resolve_token(ring=Ring(None), environ={"LOUPE_API_TOKEN": "env"}) == "env"
    assert resolve_token(ring=Ring(None), environ={}) is None
    assert TOKEN not in repr(ServeConfig(token=TOKEN))


def test_cli_refuses_a_remote_bind_before_loading_any_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOUPE_API_TOKEN", raising=False)
    out, err = io.StringIO(), io.StringIO()
    code = main(["serve", "--host", "0.0.0.0", "--model-path", "/nonexistent.gguf", "--mmproj", "/x.gguf"], out, err)
    assert code == 2 and "--allow-remote" in err.getvalue() and "not found" not in err.getvalue()
