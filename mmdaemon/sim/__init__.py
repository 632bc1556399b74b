"""The sim venue: a local Binance-compatible exchange served from a recording."""
