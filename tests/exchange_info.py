"""Binance exchangeInfo bodies for tests, CONSTRUCTED by hand in the venue's real shapes
(field names, quoting, filter order and the values Binance listed for these symbols; the
official SDKs' response models parse them, a test checks that): spot ``GET
/api/v3/exchangeInfo?symbol=S`` and USD-M ``GET /fapi/v1/exchangeInfo``. Not recorded
answers: the rules a test needs are set by the arguments."""

from __future__ import annotations

from typing import Any


def spot_symbol(symbol: str = "BTCUSDT", *, tick: str = "0.01000000",
                step: str = "0.00001000", min_qty: str = "0.00001000",
                min_notional: str = "5.00000000", base_precision: int = 8,
                status: str = "TRADING") -> dict[str, Any]:
    """One spot ``symbols[]`` entry (BTCUSDT's rules by default)."""
    return {
        "symbol": symbol, "status": status, "baseAsset": symbol[:-4],
        "baseAssetPrecision": base_precision, "quoteAsset": "USDT", "quotePrecision": 8,
        "quoteAssetPrecision": 8, "baseCommissionPrecision": 8, "quoteCommissionPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS", "STOP_LOSS_LIMIT",
                       "TAKE_PROFIT", "TAKE_PROFIT_LIMIT"],
        "icebergAllowed": True, "ocoAllowed": True, "otoAllowed": True,
        "quoteOrderQtyMarketAllowed": True, "allowTrailingStop": True,
        "cancelReplaceAllowed": True, "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": True,
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": tick, "maxPrice": "1000000.00000000",
             "tickSize": tick},
            {"filterType": "LOT_SIZE", "minQty": min_qty, "maxQty": "9000.00000000",
             "stepSize": step},
            {"filterType": "ICEBERG_PARTS", "limit": 10},
            {"filterType": "MARKET_LOT_SIZE", "minQty": "0.00000000",
             "maxQty": "83.37540000", "stepSize": "0.00000000"},
            {"filterType": "TRAILING_DELTA", "minTrailingAboveDelta": 10,
             "maxTrailingAboveDelta": 2000, "minTrailingBelowDelta": 10,
             "maxTrailingBelowDelta": 2000},
            {"filterType": "PERCENT_PRICE_BY_SIDE", "bidMultiplierUp": "5",
             "bidMultiplierDown": "0.2", "askMultiplierUp": "5", "askMultiplierDown": "0.2",
             "avgPriceMins": 5},
            {"filterType": "NOTIONAL", "minNotional": min_notional, "applyMinToMarket": True,
             "maxNotional": "9000000.00000000", "applyMaxToMarket": False,
             "avgPriceMins": 5},
            {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
            {"filterType": "MAX_NUM_ALGO_ORDERS", "maxNumAlgoOrders": 5},
        ],
        "permissions": [], "permissionSets": [["SPOT", "MARGIN"]],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
    }


def usdm_symbol(symbol: str = "BTCUSDT", *, tick: str = "0.10", step: str = "0.001",
                min_qty: str = "0.001", notional: str = "100", quantity_precision: int = 3,
                status: str = "TRADING") -> dict[str, Any]:
    """One USD-M ``symbols[]`` entry (the BTCUSDT perpetual's rules by default)."""
    return {
        "symbol": symbol, "pair": symbol, "contractType": "PERPETUAL",
        "deliveryDate": 4133404800000, "onboardDate": 1569398400000, "status": status,
        "maintMarginPercent": "2.5000", "requiredMarginPercent": "5.0000",
        "baseAsset": symbol[:-4], "quoteAsset": "USDT", "marginAsset": "USDT",
        "pricePrecision": 2, "quantityPrecision": quantity_precision,
        "baseAssetPrecision": 8, "quotePrecision": 8, "underlyingType": "COIN",
        "underlyingSubType": ["PoW"], "settlePlan": 0, "triggerProtect": "0.0500",
        "liquidationFee": "0.012500", "marketTakeBound": "0.05",
        "maxMoveOrderLimit": 10000,
        "filters": [
            {"minPrice": "556.80", "maxPrice": "4529764", "filterType": "PRICE_FILTER",
             "tickSize": tick},
            {"stepSize": step, "filterType": "LOT_SIZE", "maxQty": "1000", "minQty": min_qty},
            {"stepSize": step, "filterType": "MARKET_LOT_SIZE", "maxQty": "120",
             "minQty": min_qty},
            {"limit": 200, "filterType": "MAX_NUM_ORDERS"},
            {"limit": 10, "filterType": "MAX_NUM_ALGO_ORDERS"},
            {"notional": notional, "filterType": "MIN_NOTIONAL"},
            {"multiplierDown": "0.9500", "multiplierUp": "1.0500",
             "multiplierDecimal": "4", "filterType": "PERCENT_PRICE"},
        ],
        "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT",
                       "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET"],
        "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
    }


def spot_body(*symbols: dict[str, Any]) -> dict[str, Any]:
    """A spot exchangeInfo answer listing ``symbols``."""
    return {"timezone": "UTC", "serverTime": 1723075200000,
            "rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE",
                            "intervalNum": 1, "limit": 6000},
                           {"rateLimitType": "ORDERS", "interval": "SECOND",
                            "intervalNum": 10, "limit": 100}],
            "exchangeFilters": [], "symbols": list(symbols)}


def usdm_body(*symbols: dict[str, Any]) -> dict[str, Any]:
    """A USD-M exchangeInfo answer listing ``symbols`` (the venue lists every contract)."""
    return {"timezone": "UTC", "serverTime": 1723075200000, "futuresType": "U_MARGINED",
            "rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE",
                            "intervalNum": 1, "limit": 2400}],
            "exchangeFilters": [],
            "assets": [{"asset": "USDT", "marginAvailable": True,
                        "autoAssetExchange": "-10000"}],
            "symbols": list(symbols)}
