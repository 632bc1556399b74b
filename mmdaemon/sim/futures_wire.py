"""The server side of Binance's USD-M futures API, sans-I/O: error codes and the JSON shapes
the futures sim answers and sends (the contract: /work/briefs/usdm-wire.md; the field
names and types are those of Binance's official USD-M SDK models, which the sim's answers
must parse into).

Shapes: order results (``order.place``/``modify``/``cancel``/``status``, REST
``openOrders``), ``ORDER_TRADE_UPDATE``, ``ACCOUNT_UPDATE``, ``listenKeyExpired``,
``exchangeInfo``, ``userTrades`` and ``income`` entries, account, balance and position
answers. Texts are fixed-decimal as Binance prints them: prices with the symbol's
``pricePrecision`` decimals, quantities with ``quantityPrecision``, USDT amounts with 8.
Nothing here does I/O or reads a clock: times (ms) are passed in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from fractions import Fraction
from typing import Any, Final

from mmdaemon.model import Instrument
from mmdaemon.sim.futures_accounts import (
    MAINT_MARGIN_RATE,
    USDT,
    FuturesLedger,
    FuturesOrder,
    FuturesTrade,
    Income,
    price_text,
    usdt,
)

# Binance USD-M error codes the sim answers with
UNKNOWN: Final = -1000
TOO_MANY_REQUESTS: Final = -1003
UNKNOWN_ORDER_COMPOSITION: Final = -1014
TIMESTAMP: Final = -1021
SIGNATURE: Final = -1022
ILLEGAL_CHARS: Final = -1100
TOO_MANY_PARAMETERS: Final = -1101
MANDATORY_PARAM: Final = -1102
BAD_PRECISION: Final = -1111
INVALID_TIF: Final = -1115
INVALID_ORDER_TYPE: Final = -1116
INVALID_SIDE: Final = -1117
BAD_SYMBOL: Final = -1121
INVALID_LISTEN_KEY: Final = -1125
FILTER_FAILURE: Final = -1013
CANCEL_REJECTED: Final = -2011
NO_SUCH_ORDER: Final = -2013
BAD_API_KEY_FMT: Final = -2014
REJECTED_MBX_KEY: Final = -2015
MARGIN_INSUFFICIENT: Final = -2019
REDUCE_ONLY_REJECT: Final = -2022
PRICE_TOO_HIGH: Final = -4016
PRICE_TOO_LOW: Final = -4024
DUPLICATE_CLIENT_ID: Final = -4116
MIN_NOTIONAL: Final = -4164
GTX_WOULD_TAKE: Final = -5022
NO_NEED_TO_MODIFY: Final = -5027
NEW_ORDER_REJECTED: Final = -2010

MESSAGES: Final[Mapping[int, str]] = {
    UNKNOWN: "An unknown error occured while processing the request.",
    TOO_MANY_REQUESTS: "Too many requests; current limit is 2400 requests per minute.",
    TIMESTAMP: "Timestamp for this request is outside of the recvWindow.",
    SIGNATURE: "Signature for this request is not valid.",
    BAD_SYMBOL: "Invalid symbol.",
    INVALID_SIDE: "Invalid side.",
    INVALID_ORDER_TYPE: "Invalid orderType.",
    INVALID_TIF: "Invalid timeInForce.",
    INVALID_LISTEN_KEY: "This listenKey does not exist.",
    CANCEL_REJECTED: "Unknown order sent.",
    NO_SUCH_ORDER: "Order does not exist.",
    BAD_API_KEY_FMT: "API-key format invalid.",
    REJECTED_MBX_KEY: "Invalid API-key, IP, or permissions for action.",
    MARGIN_INSUFFICIENT: "Margin is insufficient.",
    REDUCE_ONLY_REJECT: "ReduceOnly Order is rejected.",
    DUPLICATE_CLIENT_ID: "ClientOrderId is duplicated.",
    MIN_NOTIONAL: "Order's notional must be no smaller than {notional} (unless you choose "
                  "reduce only).",
    GTX_WOULD_TAKE: "Due to the order could not be executed as maker, the Post Only order "
                    "will be rejected.",
    NO_NEED_TO_MODIFY: "No need to modify the order.",
    NEW_ORDER_REJECTED: "Market is closed.",
    BAD_PRECISION: "Precision is over the maximum defined for this asset.",
    PRICE_TOO_HIGH: "Limit price can't be higher than {limit}.",
    PRICE_TOO_LOW: "Limit price can't be lower than {limit}.",
}
"""The text of each code; -4164, -4016 and -4024 take the limit (``str.format``)."""

# PERCENT_PRICE of BTCUSDT: a limit price within [mark x 0.95, mark x 1.05] (the sim's mark
# is its mid); exchangeInfo prints these multipliers, the order check uses them
PERCENT_UP: Final = Fraction(105, 100)
PERCENT_DOWN: Final = Fraction(95, 100)
MAX_NUM_ORDERS: Final = 200
MAX_QTY: Final = "1000"  # BTCUSDT's LIMIT maxQty; applied to every symbol in base units
MAX_PRICE: Final = "4529764"  # BTCUSDT's maxPrice
WEIGHT_LIMIT: Final = 2400
ORDERS_PER_MINUTE: Final = 1200
ORDERS_PER_10S: Final = 300


class Reject(Exception):
    """A request refused with a Binance error: ``code``, ``msg``, HTTP-like ``status``."""

    def __init__(self, code: int, msg: str | None = None, status: int = 400) -> None:
        text = MESSAGES.get(code, "") if msg is None else msg
        super().__init__(code, text)
        self.code, self.msg, self.status = code, text, status


def mandatory_msg(name: str) -> str:
    """The -1102 message for a missing, empty or malformed parameter."""
    return f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."


def either_msg(first: str, second: str) -> str:
    """The -1102 message when neither of two alternative parameters was sent."""
    return f"Param '{first}' or '{second}' must be sent, but both were empty/null!"


def illegal_msg(name: str) -> str:
    """The -1100 message for a parameter's bad value."""
    return f"Illegal characters found in parameter '{name}'; legal range is '{name}'."


def filter_msg(filter_type: str) -> str:
    """The -1013 message for a symbol filter."""
    return f"Filter failure: {filter_type}"


# ---- orders ------------------------------------------------------------------------------------


def _avg(inst: Instrument, order: FuturesOrder) -> str:
    if not order.executed:
        return price_text(inst, Fraction(0))
    return price_text(inst, Fraction(order.cum_quote, order.executed))


def order_json(inst: Instrument, order: FuturesOrder, *, status_fields: bool = False,
               modify_id: int | None = None) -> dict[str, Any]:
    """An order as ``order.place``/``order.cancel``/``order.modify`` (``modify_id``) answer
    it, or with ``status_fields`` as ``order.status`` and ``openOrders`` list it."""
    notional = Fraction(order.cum_quote) * Fraction(inst.tick_size) * Fraction(inst.lot_size)
    out: dict[str, Any] = {
        "orderId": order.order_id,
        "symbol": inst.symbol,
        "status": order.status,
        "clientOrderId": order.client_id,
        "price": inst.price_str(order.price),
        "avgPrice": _avg(inst, order),
        "origQty": inst.size_str(order.size),
        "executedQty": inst.size_str(order.executed),
        "cumQty": inst.size_str(order.executed),
        "cumQuote": usdt(notional),
        "timeInForce": "GTX",
        "type": "LIMIT",
        "reduceOnly": order.reduce_only,
        "closePosition": False,
        "side": order.side.name,
        "positionSide": "BOTH",
        "stopPrice": inst.price_str(0),
        "workingType": "CONTRACT_PRICE",
        "priceProtect": False,
        "origType": "LIMIT",
        "priceMatch": "NONE",
        "selfTradePreventionMode": "EXPIRE_MAKER",
        "goodTillDate": 0,
        "updateTime": order.update_ms,
    }
    if modify_id is not None:
        out["modifyId"] = modify_id
    if status_fields:
        del out["cumQty"]
        out["time"] = order.created_ms
    return out


def order_trade_update(inst: Instrument, order: FuturesOrder, ledger: FuturesLedger, *,
                       execution: str, event_ms: int, last_qty: int = 0,
                       last_price: int = 0, commission: Fraction = Fraction(0),
                       trade_id: int = 0, maker: bool = False,
                       realized: Fraction = Fraction(0)) -> dict[str, Any]:
    """The ``ORDER_TRADE_UPDATE`` of ``order`` with execution type ``execution`` (NEW,
    TRADE, CANCELED, AMENDMENT, EXPIRED); for TRADE the fill's ``last_qty`` lots at
    ``last_price`` ticks, its ``commission`` and ``realized`` PnL (USDT)."""
    bids = asks = 0
    for o in ledger.open[order.api_key].values():
        if o.symbol == order.symbol:
            if o.side.name == "BUY":
                bids += o.price * o.left
            else:
                asks += o.price * o.left
    unit = ledger.unit(order.symbol)
    return {
        "e": "ORDER_TRADE_UPDATE",
        "E": event_ms,
        "T": event_ms,
        "o": {
            "s": inst.symbol, "c": order.client_id, "S": order.side.name, "o": "LIMIT",
            "f": "GTX", "q": inst.size_str(order.size), "p": inst.price_str(order.price),
            "ap": _avg(inst, order), "sp": inst.price_str(0), "x": execution,
            "X": order.status, "i": order.order_id, "l": inst.size_str(last_qty),
            "z": inst.size_str(order.executed), "L": inst.price_str(last_price),
            "N": USDT, "n": usdt(commission), "T": event_ms, "t": trade_id,
            "b": usdt(bids * unit), "a": usdt(asks * unit), "m": maker,
            "R": order.reduce_only, "wt": "CONTRACT_PRICE", "ot": "LIMIT", "ps": "BOTH",
            "cp": False, "rp": usdt(realized), "pP": False, "si": 0, "ss": 0,
            "V": "EXPIRE_MAKER", "pm": "NONE", "gtd": 0,
        },
    }


def account_update(ledger: FuturesLedger, api_key: str, reason: str, event_ms: int,
                   change: Fraction, symbols: Iterable[str]) -> dict[str, Any]:
    """The ``ACCOUNT_UPDATE`` of ``api_key``'s account for ``reason`` (ORDER,
    FUNDING_FEE, ...): the USDT wallet with ``change``, its balance change other than
    realised PnL and commission (Binance's ``bc``: the funding paid, 0 for a fill), and the
    positions of ``symbols``."""
    account = ledger.accounts[api_key]
    positions = []
    for symbol in symbols:
        inst = ledger.instruments[symbol]
        position = account.positions[symbol]
        positions.append({
            "s": symbol, "pa": inst.size_str(position.amount),
            "ep": price_text(inst, position.entry_ticks),
            "bep": price_text(inst, position.entry_ticks),
            "cr": usdt(position.realized), "up": usdt(ledger.unrealized(api_key, symbol)),
            "mt": "cross", "iw": "0", "ps": "BOTH",
        })
    out: dict[str, Any] = {
        "e": "ACCOUNT_UPDATE", "E": event_ms, "T": event_ms,
        "a": {"m": reason,
              "B": [{"a": USDT, "wb": usdt(account.wallet), "cw": usdt(account.wallet),
                     "bc": usdt(change)}],
              "P": positions},
    }
    return out


def listen_key_expired(listen_key: str, event_ms: int) -> dict[str, Any]:
    """``listenKeyExpired``: the key was not kept alive and its stream ends."""
    return {"e": "listenKeyExpired", "E": event_ms, "listenKey": listen_key}


# ---- account ---------------------------------------------------------------------------------


def trade_json(inst: Instrument, trade: FuturesTrade) -> dict[str, Any]:
    """A ``userTrades`` entry."""
    return {
        "symbol": inst.symbol, "id": trade.trade_id, "orderId": trade.order_id,
        "side": trade.side.name, "price": inst.price_str(trade.price),
        "qty": inst.size_str(trade.qty), "realizedPnl": usdt(trade.realized),
        "quoteQty": usdt(trade.notional), "commission": usdt(trade.commission),
        "commissionAsset": USDT, "time": trade.time_ms, "positionSide": "BOTH",
        "buyer": trade.side.name == "BUY", "maker": trade.maker,
    }


def income_json(entry: Income) -> dict[str, Any]:
    """An ``income`` entry."""
    return {"symbol": entry.symbol, "incomeType": entry.income_type,
            "income": usdt(entry.amount), "asset": USDT, "info": entry.income_type,
            "time": entry.time_ms, "tranId": entry.tran_id, "tradeId": entry.trade_id}


def position_json(ledger: FuturesLedger, api_key: str, symbol: str) -> dict[str, Any]:
    """A position as ``v2/account.position`` and ``/fapi/v2/positionRisk`` list it."""
    inst = ledger.instruments[symbol]
    account = ledger.accounts[api_key]
    position = account.positions[symbol]
    mark = ledger.marks[symbol]
    unit = ledger.unit(symbol)
    notional = mark * position.amount * unit
    margin = ledger.position_margin(api_key, symbol)
    bids = sum(o.price * o.left for o in ledger.open[api_key].values()
               if o.symbol == symbol and o.side.name == "BUY") * unit
    asks = sum(o.price * o.left for o in ledger.open[api_key].values()
               if o.symbol == symbol and o.side.name == "SELL") * unit
    return {
        "symbol": symbol, "positionSide": "BOTH", "positionAmt": inst.size_str(position.amount),
        "entryPrice": price_text(inst, position.entry_ticks),
        "breakEvenPrice": price_text(inst, position.entry_ticks),
        "markPrice": price_text(inst, mark),
        "unRealizedProfit": usdt(ledger.unrealized(api_key, symbol)),
        "liquidationPrice": "0", "isolatedMargin": "0", "notional": usdt(notional),
        "marginAsset": USDT, "isolatedWallet": "0", "initialMargin": usdt(margin),
        "maintMargin": usdt(abs(notional) * MAINT_MARGIN_RATE),
        "positionInitialMargin": usdt(margin),
        "openOrderInitialMargin": usdt(ledger.order_margin(api_key, symbol)),
        "adl": 0, "bidNotional": usdt(bids), "askNotional": usdt(asks),
        "updateTime": position.update_ms,
        "leverage": str(account.leverage[symbol]), "marginType": "cross",
        "isAutoAddMargin": "false", "maxNotionalValue": "1000000",
    }


def balance_json(ledger: FuturesLedger, api_key: str, alias: str) -> dict[str, Any]:
    """The USDT entry of ``account.balance`` and ``/fapi/v2/balance``."""
    account = ledger.accounts[api_key]
    unrealized = sum((ledger.unrealized(api_key, s) for s in ledger.instruments), Fraction(0))
    available = ledger.available(api_key)
    return {"accountAlias": alias, "asset": USDT, "balance": usdt(account.wallet),
            "crossWalletBalance": usdt(account.wallet), "crossUnPnl": usdt(unrealized),
            "availableBalance": usdt(available),
            "maxWithdrawAmount": usdt(max(available, Fraction(0))), "marginAvailable": True,
            "updateTime": account.update_ms}


def account_json(ledger: FuturesLedger, api_key: str) -> dict[str, Any]:
    """``v2/account.status`` and ``/fapi/v2/account``: totals, the USDT asset, positions."""
    account = ledger.accounts[api_key]
    symbols = list(ledger.instruments)
    unrealized = sum((ledger.unrealized(api_key, s) for s in symbols), Fraction(0))
    pos_margin = sum((ledger.position_margin(api_key, s) for s in symbols), Fraction(0))
    ord_margin = sum((ledger.order_margin(api_key, s) for s in symbols), Fraction(0))
    maint = sum((abs(ledger.marks[s] * account.positions[s].amount * ledger.unit(s))
                 * MAINT_MARGIN_RATE for s in symbols), Fraction(0))
    available = ledger.available(api_key)
    wallet = account.wallet
    asset = {
        "asset": USDT, "walletBalance": usdt(wallet), "unrealizedProfit": usdt(unrealized),
        "marginBalance": usdt(wallet + unrealized), "maintMargin": usdt(maint),
        "initialMargin": usdt(pos_margin + ord_margin),
        "positionInitialMargin": usdt(pos_margin),
        "openOrderInitialMargin": usdt(ord_margin), "crossWalletBalance": usdt(wallet),
        "crossUnPnl": usdt(unrealized), "availableBalance": usdt(available),
        "maxWithdrawAmount": usdt(max(available, Fraction(0))), "marginAvailable": True,
        "updateTime": account.update_ms,
    }
    positions = []
    for s in symbols:
        if account.positions[s].amount:
            p = position_json(ledger, api_key, s)
            positions.append({k: p[k] for k in (
                "symbol", "positionSide", "positionAmt", "notional", "isolatedMargin",
                "isolatedWallet", "initialMargin", "maintMargin", "updateTime")}
                | {"unrealizedProfit": p["unRealizedProfit"]})
    return {
        "totalInitialMargin": usdt(pos_margin + ord_margin), "totalMaintMargin": usdt(maint),
        "totalWalletBalance": usdt(wallet), "totalUnrealizedProfit": usdt(unrealized),
        "totalMarginBalance": usdt(wallet + unrealized),
        "totalPositionInitialMargin": usdt(pos_margin),
        "totalOpenOrderInitialMargin": usdt(ord_margin),
        "totalCrossWalletBalance": usdt(wallet), "totalCrossUnPnl": usdt(unrealized),
        "availableBalance": usdt(available), "maxWithdrawAmount": usdt(max(available, Fraction(0))),
        "assets": [asset], "positions": positions,
    }


# ---- exchangeInfo ----------------------------------------------------------------------------


def _plain(value: Decimal) -> str:
    """A filter value as Binance's exchangeInfo prints it (no trailing zeros)."""
    return format(value.normalize(), "f")


def rate_limits() -> list[dict[str, Any]]:
    """The venue's limits as exchangeInfo lists them."""
    return [
        {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
         "limit": WEIGHT_LIMIT},
        {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1,
         "limit": ORDERS_PER_MINUTE},
        {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10,
         "limit": ORDERS_PER_10S},
    ]


def symbol_info(inst: Instrument, onboard_ms: int) -> dict[str, Any]:
    """One symbol of ``/fapi/v1/exchangeInfo``, in the real shape."""
    tick = inst.tick_size
    step = inst.lots.to_decimal(inst.size_step_lots)
    min_qty = inst.lots.to_decimal(inst.min_size_lots)
    base = inst.symbol.removesuffix(USDT)
    min_notional = inst.min_notional
    return {
        "symbol": inst.symbol, "pair": inst.symbol, "contractType": "PERPETUAL",
        "deliveryDate": 4133404800000, "onboardDate": onboard_ms, "status": "TRADING",
        "maintMarginPercent": "2.5000", "requiredMarginPercent": "5.0000",
        "baseAsset": base, "quoteAsset": USDT, "marginAsset": USDT,
        "pricePrecision": inst.price_precision, "quantityPrecision": inst.size_precision,
        "baseAssetPrecision": 8, "quotePrecision": 8, "underlyingType": "COIN",
        "underlyingSubType": ["PoW"], "settlePlan": 0, "triggerProtect": "0.0500",
        "liquidationFee": "0.012500", "marketTakeBound": "0.05", "maxMoveOrderLimit": 10000,
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": _plain(tick),
             "maxPrice": MAX_PRICE, "tickSize": _plain(tick)},
            {"filterType": "LOT_SIZE", "minQty": _plain(min_qty),
             "maxQty": MAX_QTY, "stepSize": _plain(step)},
            {"filterType": "MARKET_LOT_SIZE", "minQty": _plain(min_qty),
             "maxQty": "120", "stepSize": _plain(step)},
            {"filterType": "MAX_NUM_ORDERS", "limit": MAX_NUM_ORDERS},
            {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
            {"filterType": "MIN_NOTIONAL", "notional": _plain(Decimal(min_notional))},
            {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500",
             "multiplierDown": "0.9500", "multiplierDecimal": "4"},
        ],
        # what the sim takes: post-only limit orders (its matching is post-only)
        "orderTypes": ["LIMIT"],
        "timeInForce": ["GTX"],
        "permissionSets": ["GRID", "COPY"],
    }


def exchange_info(instruments: Iterable[Instrument], server_ms: int) -> dict[str, Any]:
    """``/fapi/v1/exchangeInfo`` for ``instruments``."""
    return {
        "timezone": "UTC", "serverTime": server_ms, "futuresType": "U_MARGINED",
        "rateLimits": rate_limits(), "exchangeFilters": [],
        "assets": [{"asset": USDT, "marginAvailable": True, "autoAssetExchange": "-10000"}],
        "symbols": [symbol_info(inst, server_ms) for inst in instruments],
    }

