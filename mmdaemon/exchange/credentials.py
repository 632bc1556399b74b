"""API credentials: read at start, from the environment or a file, never from the config.

``exchange.credentials`` names where they are:

- ``"env"``: the variables ``MMDAEMON_API_KEY`` and ``MMDAEMON_API_SECRET``;
- anything else: a file, absolute or relative to ``$CREDENTIALS_DIRECTORY`` (where
  systemd's ``LoadCredential=`` puts it) or else to the working directory, holding two
  TOML keys: ``api_key = "..."`` and ``api_secret = "..."``.

Errors say which source and which key is missing; no message ever contains a value.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

ENV_KEY = "MMDAEMON_API_KEY"
ENV_SECRET = "MMDAEMON_API_SECRET"


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
    path = Path(source)
    if not path.is_absolute():
        base = environ.get("CREDENTIALS_DIRECTORY")
        path = Path(base) / path if base else path
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise CredentialsError(
            f"exchange.credentials: cannot read {path}: {exc.strerror or exc}"
        ) from None
    except tomllib.TOMLDecodeError:
        raise CredentialsError(
            f"exchange.credentials: {path} is not TOML with api_key and api_secret"
        ) from None
    values = []
    for name in ("api_key", "api_secret"):
        value = data.get(name)
        if not isinstance(value, str) or not value:
            raise CredentialsError(f"exchange.credentials: {path} has no string '{name}'")
        values.append(value)
    return ApiCredentials(*values)
