"""One loopback judgment for the whole app (the API's bind address, LOUPE_OFFLINE's endpoints), without DNS."""

from __future__ import annotations

import pytest
from loupe.core.net import is_loopback


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "127.255.255.254", "::1", "localhost", "LOCALHOST"])
def test_this_machine(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize(
    "host",
    [
        "0.0.0.0",
        "::",
        "::2",
        "10.0.0.1",
        "192.168.1.20",
        "128.0.0.1",
        "app.localhost",
        "localhost.evil.com",
        "example.local",
        "",
        "not a host",
        "[::1]",
    ],
)
def test_anything_else(host: str) -> None:
    assert not is_loopback(host)
