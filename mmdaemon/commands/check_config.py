"""``mmdaemon check-config``: a config reviewed without running it (:mod:`mmdaemon.config_check`),
at a reference price given or read from a recording."""

from __future__ import annotations

import re
import sys
from decimal import Decimal
from pathlib import Path

import orjson

from mmdaemon.commands.usage import UsageError
from mmdaemon.config import Config
from mmdaemon.feed.recording import RecordingError
from mmdaemon.model import MAX_UNITS


def check_config(config: Config, path: str, price_text: str | None,
                 recordings: list[str] | None, as_json: bool) -> int:
    """``mmdaemon check-config``: 0 valid (warnings or not); a config that does not load
    never gets here (2). 2 also for a reference price or recording that cannot be used."""
    from mmdaemon.config_check import as_json as review_json
    from mmdaemon.config_check import render, review, sample_recording
    from mmdaemon.strategy_loader import load_strategy

    try:  # a strategy that would not load at start (import, class, parameters) fails here
        load_strategy(config, config.instrument.build())
    except ValueError as exc:
        raise UsageError(f"mmdaemon check-config: {path}: {exc}") from None
    price: Decimal | None = None
    source = ""
    sample = None
    if price_text is not None:
        price = _reference_price(price_text, config)
        source = "--price"
    else:
        configured = recordings is None
        paths = recordings or [p for p in config.feed.recordings if Path(p).is_file()]
        missing = [p for p in paths if not Path(p).is_file()]
        if missing:
            raise UsageError(f"mmdaemon check-config: --recording: no such file: {missing[0]}")
        if paths:
            try:
                sample = sample_recording(paths, config)
            except (RecordingError, ValueError) as exc:
                text = str(exc)  # RecordingError names the file itself
                where = "" if paths[0] in text else f"{paths[0]}: "
                raise UsageError(f"mmdaemon check-config: {where}{text}") from None
            if sample.price is None:
                why = (f"; {sample.malformed:,} of its first {sample.frames:,} frames do not "
                       f"decode with this instrument (first: {sample.first_error})"
                       if sample.malformed else "")
                raise UsageError(f"mmdaemon check-config: no price in {' '.join(paths)}{why}")
            price = sample.price
            source = (f"first price of {sample.path}"
                      + (" (the config's feed.recordings)" if configured else ""))
    result = review(config, price, source, sample)
    if as_json:
        sys.stdout.buffer.write(orjson.dumps(review_json(path, result)) + b"\n")
    else:
        print(render(path, result))
    return 0


_PLAIN_DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?")


def _reference_price(text: str, config: Config) -> Decimal:
    """``--price``: a plain positive decimal (quote currency), from one tick up to the
    largest price in ticks the core holds."""
    instrument = config.instrument.build()
    if _PLAIN_DECIMAL.fullmatch(text):
        price = Decimal(text)
        if instrument.tick_size <= price <= instrument.tick_size * MAX_UNITS:
            return price
    raise UsageError(f"mmdaemon check-config: --price: expected a plain decimal number in "
                     f"the quote currency, from one tick ({instrument.tick_size}) to "
                     f"{MAX_UNITS:,} ticks, got {text!r}")
