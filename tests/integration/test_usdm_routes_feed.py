"""The feed on Binance USD-M's split routes, against a real websockets server on loopback
that serves depth only under /public and trades only under /market: both connections feed
one stream in receive order, and the drop of one replaces both."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from websockets.asyncio.server import ServerConnection, serve

from mmdaemon.feed.websocket import FeedItem, FeedSettings, Reconnected, WebsocketFeed
from mmdaemon.wiring import USDM_ROUTES
from tests.helpers import until
from tests.recorder import Recorder


async def test_split_routes_merge_into_one_stream_and_a_drop_of_either_reconnects_both() -> None:
    opened: list[str] = []  # request paths, in connection order
    closed: list[str] = []

    async def venue(ws: ServerConnection) -> None:
        path = ws.request.path if ws.request else ""
        opened.append(path)
        kind = "depth@0ms" if path.startswith("/public/stream?") else "trade"
        if not path.startswith(("/public/stream?", "/market/stream?")):
            await ws.close(1008, "unknown path")  # Binance's legacy /stream: nothing here
            return
        first_market = kind == "trade" and opened.count(path) == 1
        try:
            for n in range(10_000):
                await ws.send(orjson.dumps({"stream": f"btcusdt@{kind}", "data": {"n": n}}))
                if first_market and n == 5:
                    await ws.close(1011, "gone")  # the /market connection drops alone
                    return
                await asyncio.sleep(0.01)
        finally:
            closed.append(path)

    log = Recorder()
    items: list[FeedItem] = []
    async with serve(venue, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        feed = WebsocketFeed(FeedSettings(ws_url=f"ws://127.0.0.1:{port}",
                                          rest_url="http://127.0.0.1:9", symbol="BTCUSDT",
                                          routes=USDM_ROUTES, backoff_initial_s=0.01),
                             log)

        async def consume() -> None:
            async for item in feed.frames():
                items.append(item)

        task = asyncio.create_task(consume())
        try:
            await until(lambda: feed.connects >= 2 and sum(
                1 for i in items if isinstance(i, Reconnected)) >= 2)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    public = [p for p in opened if p.startswith("/public/")]
    market = [p for p in opened if p.startswith("/market/")]
    assert public[0] == "/public/stream?streams=btcusdt@depth@0ms/btcusdt@bookTicker"
    assert market[0] == "/market/stream?streams=btcusdt@trade"
    # the /market drop replaced the /public connection too: one new connection of each
    assert len(public) >= 2 and len(market) >= 2 and public[0] in closed
    assert log.named("feed_disconnected") and log.named("feed_reconnecting")
    # one stream: both routes' frames between the reconnects, stamped on receipt, in order
    first_gen = items[1:next(i for i, it in enumerate(items) if i and isinstance(it, Reconnected))]
    frames: list[Any] = [f for f in first_gen if not isinstance(f, Reconnected)]
    kinds = {orjson.loads(f[1])["stream"] for f in frames if f[1].startswith(b'{"stream"')}
    assert kinds == {"btcusdt@depth@0ms", "btcusdt@trade"}
    stamps = [f[0] for f in frames]
    assert stamps == sorted(stamps)
