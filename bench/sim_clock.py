"""Benchmark: the sim's one clock, as a client measures it. A fill against the public
market event that filled it, and both against the client's wall clock.

Run: ``.venv/bin/python bench/sim_clock.py [--fills 10]`` (one JSON object). The sim
(SimVenue in this process, speed 1, the bundled recording) takes a buy at the best bid,
replaced as the bid moves, until ``--fills`` fills. Reported, in ms, sorted: ``e_minus_t``,
each fill's event time ``E`` minus its transaction time ``T`` (T is the venue time of the
market event that filled it, E when the report went out); ``t_minus_trade_t``, T minus the
``T`` of the last public trade at or through the order's price sent by then; and
``received_minus_e``, the client's wall clock on receipt minus the fill's E (what a client
would take for its feed latency from the sim).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import SPOT_FILES
from mmdaemon.clock import SystemClock
from mmdaemon.exchange.fill_model import PaperVenue
from mmdaemon.model import BINANCE_SPOT_BTCUSDT, Side
from mmdaemon.sim.orders import OrderEntry
from mmdaemon.sim.server import SimVenue
from mmdaemon.venues import binance_api as api

INSTR = BINANCE_SPOT_BTCUSDT

def wall_ms() -> int:
    return time.time_ns() // 1_000_000


async def measure(fills_wanted: int) -> dict[str, Any]:
    creds = api.Credentials("bench", "bench-secret")
    entry = OrderEntry(INSTR, PaperVenue(INSTR, 0, "1", "0"), {"bench": "bench-secret"},
                       base_balance="1", quote_balance="100000")
    frames: list[dict[str, Any]] = []
    events: list[tuple[int, dict[str, Any]]] = []  # (received ms, event)
    async with SimVenue(SPOT_FILES[:1], INSTR, speed=1.0, clock=SystemClock(),
                        order_entry=entry, wait_for_subscriber=True) as sim:
        market = await connect(f"{sim.ws_url}/ws/btcusdt@trade/btcusdt@depth@100ms",
                               compression=None)
        ws = await connect(f"{sim.ws_url}/ws-api/v3", compression=None)

        async def read_market() -> None:
            async for raw in market:
                frames.append(orjson.loads(raw))

        async def read_events() -> None:
            async for raw in ws:
                obj = orjson.loads(raw)
                if "event" in obj:
                    events.append((wall_ms(), obj["event"]))

        tasks = [asyncio.create_task(read_market()), asyncio.create_task(read_events())]
        n = 0

        def kw() -> dict[str, Any]:
            nonlocal n
            n += 1
            return {"request_id": f"r{n}", "creds": creds, "timestamp_ms": wall_ms()}

        await ws.send(api.user_data_subscribe(**kw()).decode())
        book = sim.tape.market.book
        while not (book.synced and book.bids.best() is not None):
            await asyncio.sleep(0.01)
        rows: list[tuple[int, int, int]] = []
        deadline = time.monotonic() + 600
        seq = 0
        while len(rows) < fills_wanted and time.monotonic() < deadline:
            seq += 1
            cid = api.client_order_id("b", seq)
            bid = book.bids.best()
            assert bid is not None
            await ws.send(api.order_place(INSTR, Side.BUY, bid, 100_000, cid, **kw()).decode())

            def filled(cid: str = cid) -> list[tuple[int, dict[str, Any]]]:
                return [(r, e) for r, e in events if e.get("x") == "TRADE" and e["c"] == cid]

            while book.bids.best() == bid and not filled():
                await asyncio.sleep(0.002)
            await asyncio.sleep(0.05)
            got = filled()
            if not got:
                await ws.send(api.order_cancel(INSTR, cid, **kw()).decode())
                continue
            received, fill = got[0]
            price = Decimal(fill["L"])
            trades = [f for f in frames if f["e"] == "trade" and Decimal(f["p"]) <= price
                      and f["E"] <= fill["T"]]
            rows.append((fill["E"] - fill["T"], fill["T"] - trades[-1]["T"],
                         received - fill["E"]))
        for task in tasks:
            task.cancel()
    return {"fills": len(rows),
            "e_minus_t": sorted(r[0] for r in rows),
            "t_minus_trade_t": sorted(r[1] for r in rows),
            "received_minus_e": sorted(r[2] for r in rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fills", type=int, default=10)
    args = parser.parse_args()
    print(orjson.dumps(asyncio.run(measure(args.fills))).decode())


if __name__ == "__main__":
    main()
