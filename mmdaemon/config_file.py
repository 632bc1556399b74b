"""Reading the config file: the one place a config comes from disk (at start, and on
SIGHUP); validating it is :func:`mmdaemon.config.parse_config`'s."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from mmdaemon.config import Config, ConfigError, parse_config


def load_config(path: str | Path) -> Config:
    """Read and validate ``path``; raises :class:`~mmdaemon.config.ConfigError` naming the
    bad key (or why the file cannot be read). Relative paths in it are resolved against the
    file's own directory."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text: {exc}") from exc
    return resolve_paths(parse_config(text, path), path.resolve().parent)


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
    reference = config.reference
    if reference is not None:
        reference = dataclasses.replace(reference, recordings=tuple(
            _resolve(base, p, f"reference.recordings[{i}]")
            for i, p in enumerate(reference.recordings)))
    return dataclasses.replace(
        config,
        reference=reference,
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
