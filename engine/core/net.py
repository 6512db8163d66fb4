"""Network names judged without the network."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and `localhost`, judged without any DNS lookup; False for any other name or
    address (0.0.0.0, `::` and subdomains of localhost included: only these are sure to stay on this machine)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
