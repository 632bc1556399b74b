"""Where and how the Binance order gateway reaches the venue, and which connection
failures retrying cannot fix (:mod:`mmdaemon.exchange.binance_gateway` is the shell that
uses them). Nothing here holds a secret in its repr: URLs are shown with their user info
masked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from websockets.exceptions import InvalidProxy, InvalidProxyStatus, InvalidStatus, InvalidURI

from mmdaemon.venues import binance_api as api

# HTTP answers to the websocket handshake that retrying can fix: the WAF's temporary block
# (403), a request timeout (408), rate limits and bans with an end (429, 418); any other
# 4xx (a wrong path, a proxy that wants credentials) is a configuration to fix, 5xx an outage
_HANDSHAKE_RETRYABLE: Final = frozenset({403, 408, 418, 429})
_USERINFO: Final = re.compile(r"(?<=//)[^/@\s]*@")


def redact_url(text: str) -> str:
    """``text`` with the user info of any URL in it (``//user:password@``) masked."""
    return _USERINFO.sub("***@", text)


@dataclass(frozen=True)
class GatewaySettings:
    """Where and how to reach the venue's WebSocket API. Times in seconds unless named ms.

    ``ws_api_url`` is the whole URL (``wss://ws-api.binance.com:443/ws-api/v3``);
    ``client_prefix`` starts every client order id we send and marks the venue's orders
    that are ours (one prefix per daemon instance and account); ``recv_window_ms`` is sent
    with every signed request; ``proxy`` None connects directly (system proxy settings are
    ignored). ``cancel_all_timeout_s`` bounds how long :meth:`BinanceGateway.cancel_all`
    waits for confirmations (and for a connection). A connection attempt waits
    ``backoff_initial_s`` .. ``backoff_max_s`` (jittered, doubling) after a failed one. A
    message longer than ``max_message_bytes`` is refused unread: the connection closes
    (``gateway_frame_too_large``) and is replaced like any other lost one.
    """

    ws_api_url: str
    client_prefix: str
    recv_window_ms: int = api.DEFAULT_RECV_WINDOW_MS
    request_timeout_s: float = 5.0
    backoff_initial_s: float = 0.1
    backoff_max_s: float = 30.0
    proxy: str | None = None
    open_timeout_s: float = 10.0
    cancel_all_timeout_s: float = 10.0
    healthy_after_s: float = 10.0
    max_message_bytes: int = 16 << 20  # a larger message closes the connection unparsed

    def __post_init__(self) -> None:
        api.client_order_id(self.client_prefix, (1 << 64) - 1)  # ValueError: prefix unusable
        if not 0 < self.recv_window_ms <= api.MAX_RECV_WINDOW_MS:
            raise ValueError(f"recv_window_ms must be 1..{api.MAX_RECV_WINDOW_MS}")
        for name in ("request_timeout_s", "backoff_initial_s", "backoff_max_s",
                     "open_timeout_s", "cancel_all_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0")

    def __repr__(self) -> str:
        proxy = None if self.proxy is None else redact_url(self.proxy)
        return (f"GatewaySettings(ws_api_url={redact_url(self.ws_api_url)!r}, "
                f"client_prefix={self.client_prefix!r}, recv_window_ms={self.recv_window_ms}, "
                f"request_timeout_s={self.request_timeout_s}, proxy={proxy!r})")


class GatewayError(Exception):
    """A connection attempt failed in a way that a later attempt may not (the venue down,
    slow or dropping us). The message names the cause; it never holds a secret.
    """


def refusal(exc: Exception) -> str | None:
    """What to fix when a connection error is one that retrying cannot fix (a URL or proxy
    that cannot work, a handshake the venue or proxy refuses for good); None otherwise."""
    if isinstance(exc, InvalidURI | InvalidProxy | ValueError):
        return "exchange.ws_api_url or feed.proxy cannot be used as given"
    if isinstance(exc, InvalidStatus | InvalidProxyStatus):
        status = exc.response.status_code
        if 400 <= status < 500 and status not in _HANDSHAKE_RETRYABLE:
            who = "the proxy (feed.proxy)" if isinstance(exc, InvalidProxyStatus) else (
                "the venue: check exchange.ws_api_url")
            return f"HTTP {status} from {who}"
    return None
