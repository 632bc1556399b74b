"""API credentials: read at start, from the environment or a file, never from the config.

``exchange.credentials`` names where they are:

- ``"env"``: the variables ``MMDAEMON_API_KEY`` and ``MMDAEMON_API_SECRET``;
- anything else: a file, absolute or relative to ``$CREDENTIALS_DIRECTORY`` (where
  systemd's ``LoadCredential=`` puts it) or else to the working directory, holding two
  TOML keys: ``api_key = "..."`` and ``api_secret = "..."``.

Errors say which source and which key is missing; no message ever contains a value.

The Redis password of the firm risk bus (``firm.password``) is read the same way:
``""`` none, ``"env"`` the variable ``MMDAEMON_REDIS_PASSWORD``, anything else a file
holding ``password = "..."`` (see :func:`load_redis_password`).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

ENV_KEY = "MMDAEMON_API_KEY"
ENV_SECRET = "MMDAEMON_API_SECRET"
ENV_REDIS_PASSWORD = "MMDAEMON_REDIS_PASSWORD"


class CredentialsError(ValueError):
    """Credentials that cannot be read; the message names the source, never a value."""


class ApiCredentials(NamedTuple):
    api_key: str
    secret: str

    def __repr__(self) -> str:  # keep the secret out of logs and tracebacks
        return f"ApiCredentials(api_key={self.api_key[:4]}..., secret=<redacted>)"


def load_credentials(source: str, environ: Mapping[str, str] = os.environ) -> ApiCredentials:
    """Read credentials from ``source`` (see the module docstring)."""
    if source == "env":
        key, secret = environ.get(ENV_KEY, ""), environ.get(ENV_SECRET, "")
        missing = [name for name, value in ((ENV_KEY, key), (ENV_SECRET, secret)) if not value]
        if missing:
            raise CredentialsError(f"exchange.credentials = 'env': {missing[0]} is not set")
        return ApiCredentials(key, secret)
    values = _read_file("exchange.credentials", source, ("api_key", "api_secret"), environ)
    return ApiCredentials(*values)


class RedisPassword(str):
    """The Redis password: a str that keeps itself out of reprs (logs, tracebacks)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "RedisPassword(<redacted>)"


def load_redis_password(source: str,
                        environ: Mapping[str, str] = os.environ) -> RedisPassword | None:
    """The firm risk bus's Redis password from ``source`` (``firm.password``): None for
    ``""`` (no AUTH), ``"env"`` for ``MMDAEMON_REDIS_PASSWORD``, else a file."""
    if not source:
        return None
    if source == "env":
        value = environ.get(ENV_REDIS_PASSWORD, "")
        if not value:
            raise CredentialsError(f"firm.password = 'env': {ENV_REDIS_PASSWORD} is not set")
        return RedisPassword(value)
    return RedisPassword(_read_file("firm.password", source, ("password",), environ)[0])


def _read_file(key: str, source: str, names: tuple[str, ...],
               environ: Mapping[str, str]) -> list[str]:
    """The string values ``names`` of TOML file ``source``, absolute or relative to
    ``$CREDENTIALS_DIRECTORY`` (else the working directory); errors name ``key``."""
    path = Path(source)
    if not path.is_absolute():
        base = environ.get("CREDENTIALS_DIRECTORY")
        path = Path(base) / path if base else path
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise CredentialsError(f"{key}: cannot read {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError:
        raise CredentialsError(f"{key}: {path} is not TOML with {' and '.join(names)}") from None
    values = []
    for name in names:
        value = data.get(name)
        if not isinstance(value, str) or not value:
            raise CredentialsError(f"{key}: {path} has no string '{name}'")
        values.append(value)
    return values
