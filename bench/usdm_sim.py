"""Benchmark: the sim as a USD-M futures venue on the real USD-M recording.

Run: ``.venv/bin/python bench/usdm_sim.py [--orders N]``; prints one JSON object and a
readable line. Measures, in this process on uvloop (client and sim share the loop, so a
round trip counts both sides' work):

- ``replay_frames_per_s``: the whole recording played at ``--speed max`` with the order
  entry attached (every frame through the codec, the book and the PaperVenue);
- ``ws_api_rtt_us``: p50/p99 of ``order.place`` + ``order.cancel`` round trips over a
  loopback websocket, signed (HMAC), while the tape plays at 10x;
- ``rest_rtt_us``: p50/p99 of a signed ``GET /fapi/v1/openOrders`` over loopback HTTP.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import sys
import time
import urllib.request
from fractions import Fraction
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
import uvloop
from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPO, percentile_us
from mmdaemon.clock import SystemClock
from mmdaemon.feed.recording import read_recording
from mmdaemon.model import BINANCE_USDM_BTCUSDT
from mmdaemon.sim.usdm import UsdmOrderEntry, UsdmSim
from mmdaemon.venues import binance_api as api

USDM_FILE = REPO.parent / "shared" / "data" / "binance-usdm-btcusdt" / "btcusdt_20240808.gz"
KEY, SECRET = "benchKey", "benchSecret"


def _entry(clock: SystemClock) -> UsdmOrderEntry:
    return UsdmOrderEntry([BINANCE_USDM_BTCUSDT], {KEY: SECRET}, Fraction(1_000_000),
                          lambda: clock.wall_ns() // 1_000_000)


async def replay_rate() -> dict[str, Any]:
    frames = sum(1 for item in read_recording([USDM_FILE]) if type(item) is tuple)
    clock = SystemClock()
    sim = UsdmSim([(BINANCE_USDM_BTCUSDT, [USDM_FILE])], speed=None, clock=clock,
                  order_entry=_entry(clock))
    start = time.perf_counter()
    async with sim:
        await sim.wait_finished()
    elapsed = time.perf_counter() - start
    return {"frames": frames, "wall_s": round(elapsed, 3),
            "replay_frames_per_s": round(frames / elapsed)}


async def round_trips(orders: int) -> dict[str, Any]:
    clock = SystemClock()
    async with UsdmSim([(BINANCE_USDM_BTCUSDT, [USDM_FILE])], speed=10.0, clock=clock,
                       order_entry=_entry(clock)) as sim:
        book = sim.tape.market.book
        while not book.synced:
            await asyncio.sleep(0.01)  # the first snapshot: a bench waits, a test polls
        ws_rtt: list[int] = []
        async with connect(f"{sim.ws_url}/ws-fapi/v1") as ws:
            for n in range(orders):
                bid = book.bids.best()
                assert bid is not None
                for method, extra in (
                        ("order.place", {"side": "BUY", "type": "LIMIT", "timeInForce": "GTX",
                                         "price": BINANCE_USDM_BTCUSDT.price_str(bid - 100),
                                         "quantity": "0.005",
                                         "newClientOrderId": f"b{n}"}),
                        ("order.cancel", {"origClientOrderId": f"b{n}"})):
                    params: dict[str, Any] = {"symbol": "BTCUSDT", **extra, "apiKey": KEY,
                                              "timestamp": clock.wall_ns() // 1_000_000}
                    params["signature"] = api.sign(SECRET, params)
                    frame = orjson.dumps({"id": f"{method}{n}", "method": method,
                                          "params": params}).decode()
                    t0 = time.perf_counter_ns()
                    await ws.send(frame)
                    answer = orjson.loads(await ws.recv())
                    ws_rtt.append(time.perf_counter_ns() - t0)
                    assert answer["status"] == 200, answer
        rest_rtt = await asyncio.to_thread(_rest_round_trips, sim.rest_url, orders)
    ws_rtt.sort()
    rest_rtt.sort()
    return {"orders": orders, "ws_api_rtt_us": {"p50": percentile_us(ws_rtt, 0.5),
                                                "p99": percentile_us(ws_rtt, 0.99)},
            "rest_rtt_us": {"p50": percentile_us(rest_rtt, 0.5),
                            "p99": percentile_us(rest_rtt, 0.99)}}


def _rest_round_trips(base: str, count: int) -> list[int]:
    out = []
    for _ in range(count):
        query = urlencode({"symbol": "BTCUSDT", "timestamp": time.time_ns() // 1_000_000})
        signature = hmac.new(SECRET.encode(), query.encode(), hashlib.sha256).hexdigest()
        request = urllib.request.Request(f"{base}/fapi/v1/openOrders?{query}&signature="
                                         f"{signature}", headers={"X-MBX-APIKEY": KEY})
        t0 = time.perf_counter_ns()
        with urllib.request.urlopen(request, timeout=5) as response:
            response.read()
        out.append(time.perf_counter_ns() - t0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=500)
    args = parser.parse_args()
    result = uvloop.run(replay_rate())
    result.update(uvloop.run(round_trips(args.orders)))
    print(orjson.dumps(result).decode())
    print(f"replay {result['replay_frames_per_s']:,} frames/s ({result['frames']:,} frames in "
          f"{result['wall_s']} s); WS API order.place/cancel RTT p50 "
          f"{result['ws_api_rtt_us']['p50']} us, p99 {result['ws_api_rtt_us']['p99']} us; "
          f"REST openOrders RTT p50 {result['rest_rtt_us']['p50']} us, "
          f"p99 {result['rest_rtt_us']['p99']} us")


if __name__ == "__main__":
    main()
