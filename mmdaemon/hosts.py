"""Which hosts a server of ours may listen on: a rule the config checks and the servers apply.

A neutral module (no shell imports it for anything else), so the config can check a key
without importing the server that uses it.
"""

from __future__ import annotations

import ipaddress


def check_host(host: str, allow_non_loopback: bool = False) -> None:
    """Refuse (ValueError) to serve on ``host`` unless it is a loopback address.

    Metrics reveal position and PnL: they stay on the machine unless the operator says
    otherwise (``allow_non_loopback``). Accepted: IPv4/IPv6 loopback literals and
    ``localhost``; a name that would need resolving, ``0.0.0.0`` and ``""`` (all
    interfaces) are not loopback.
    """
    if allow_non_loopback or host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(
            f"metrics host {host!r} is not a loopback address; metrics expose position and "
            f"PnL: serve them on 127.0.0.1 or ::1, or allow other hosts explicitly")
