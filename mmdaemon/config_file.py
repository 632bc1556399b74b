"""Reading the config file: the one place a config comes from disk (at start, and on
SIGHUP), with the files it names that shape its parameters (the micro-price table of
``strategy.fair_value.stoikov_table``); validating it is
:func:`mmdaemon.config.parse_config`'s."""

from __future__ import annotations

import dataclasses
import errno
import os
import stat
from pathlib import Path

from mmdaemon.config import Config, ConfigError, parse_config
from mmdaemon.quoting.microprice_fit import MAX_TABLE_BYTES, MicropriceTable, parse_table


def load_config(path: str | Path) -> Config:
    """Read and validate ``path``; raises :class:`~mmdaemon.config.ConfigError` naming the
    bad key (or why the file cannot be read). Relative paths in it are resolved against the
    file's own directory."""
    path = Path(path)
    try:
        text = _read_regular(path).decode()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text: {exc}") from exc
    return load_tables(resolve_paths(parse_config(text, path), path.resolve().parent))


def _read_regular(path: Path, limit: int = -1) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them (-1: all).
    Anything else is refused unread (OSError "not a regular file"): a FIFO would block the
    caller until a writer came (on SIGHUP, the event loop: frames, watchdog pings and a
    kill with it), a device such as ``/dev/zero`` would be read until memory ran out."""
    # O_NONBLOCK: opening a FIFO does not wait for a writer; a regular file ignores it
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
    with open(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # judged on what was opened
            raise OSError(errno.EINVAL, "not a regular file")
        return file.read(limit)


TABLE_KEY = "strategy.fair_value.stoikov_table"


def load_tables(config: Config) -> Config:
    """``config`` with the micro-price table its ``stoikov_table`` names (a resolved path)
    read and checked against its instrument; a ConfigError names the key when the file
    cannot be read or is not a table for this instrument."""
    fair = config.strategy.fair_value
    if not fair.stoikov_table:
        return config
    table = read_table(Path(fair.stoikov_table), config)
    strategy = dataclasses.replace(config.strategy,
                                   fair_value=dataclasses.replace(fair, stoikov=table))
    return dataclasses.replace(config, strategy=strategy)


def read_table(path: Path, config: Config) -> MicropriceTable:
    """The micro-price table at ``path`` for ``config``'s instrument."""
    try:  # bounded: a huge file is not read whole
        body = _read_regular(path, MAX_TABLE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{TABLE_KEY}: cannot read {path}: {exc.strerror or exc} (write it "
                          f"with mmdaemon fit-microprice)") from None
    inst = config.instrument
    if inst.tick_size is None:  # the table's prices are in ticks: it was fitted on one grid
        raise ConfigError(f"instrument.tick_size: missing: {TABLE_KEY} names a fitted table, "
                          f"whose prices are in ticks of its own grid: state the tick size")
    try:
        return parse_table(body, inst.venue, inst.symbol, inst.tick_size)
    except ValueError as exc:
        raise ConfigError(f"{TABLE_KEY}: {path}: {exc}") from None


def resolve_paths(config: Config, base: Path) -> Config:
    """``config`` with its relative file paths made absolute against the directory
    ``base`` (symbolic links resolved)."""
    recordings = tuple(
        _resolve(base, p, f"feed.recordings[{i}]") for i, p in enumerate(config.feed.recordings)
    )
    state_dir = _resolve(base, config.state.dir, "state.dir")
    firm = config.firm
    if firm.tls_ca_file:
        firm = dataclasses.replace(firm, tls_ca_file=_resolve(base, firm.tls_ca_file,
                                                              "firm.tls_ca_file"))
    firm = dataclasses.replace(firm, password=_secret_source(base, firm.password,
                                                             "firm.password"))
    credentials = _secret_source(base, config.exchange.credentials, "exchange.credentials")
    latency_file = config.exchange.latency_file
    if latency_file:
        latency_file = _resolve(base, latency_file, "exchange.latency_file")
    plugin = dataclasses.replace(config.plugin, path=tuple(
        _resolve(base, p, f"strategy.path[{i}]") for i, p in enumerate(config.plugin.path)))
    reference = config.reference
    if reference is not None:
        reference = dataclasses.replace(reference, recordings=tuple(
            _resolve(base, p, f"reference.recordings[{i}]")
            for i, p in enumerate(reference.recordings)))
    strategy = config.strategy
    if strategy.fair_value.stoikov_table:
        fair = dataclasses.replace(strategy.fair_value, stoikov_table=_resolve(
            base, strategy.fair_value.stoikov_table, TABLE_KEY))
        strategy = dataclasses.replace(strategy, fair_value=fair)
    return dataclasses.replace(
        config,
        plugin=plugin,
        reference=reference,
        strategy=strategy,
        feed=dataclasses.replace(config.feed, recordings=recordings),
        state=dataclasses.replace(config.state, dir=state_dir),
        exchange=dataclasses.replace(config.exchange, credentials=credentials,
                                     latency_file=latency_file),
        firm=firm,
    )


def _secret_source(base: Path, text: str, key: str) -> str:
    """A secret's source with a relative path made absolute against ``base``. "env", ""
    and a name without '/' (a systemd credential, found in $CREDENTIALS_DIRECTORY when
    read) stay as they are: which file a name means depends on the process reading it."""
    if "/" not in text or Path(text).is_absolute():
        return text
    return _resolve(base, text, key)


def _resolve(base: Path, text: str, key: str) -> str:
    try:
        return str((base / text).resolve())
    except (OSError, ValueError, RuntimeError) as exc:  # a NUL byte; a symlink loop
        raise ConfigError(f"{key}: expected a file system path, got {text!r}: {exc}") from None
