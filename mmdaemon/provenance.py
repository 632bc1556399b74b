"""What produced a run: the mmdaemon version, the config and the market data it ran on.

A report or a ``replay --json`` summary that does not say which configuration produced it
cannot be compared with another. The service writes :func:`provenance` into its journal's
state table at start (key :data:`PROVENANCE_KEY`, next to ``instrument``), so
``mmdaemon report STATE_DIR`` of a live or stopped run shows it too; ``replay --json``
carries it as its ``version`` and ``config`` keys.

Nothing secret is embedded. A config never holds keys (the credentials are in a file or
the environment the config only names), but its free-form ``[strategy.params]`` table could
hold anything and a URL could carry a password: every value whose key looks secret
(:data:`SECRET_KEY`) and every URL's user information is replaced by :data:`REDACTED`, in
the resolved values and in the file's text alike. A credentials file is never read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import sys
from collections.abc import Sequence
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

from mmdaemon.config import Config

PROVENANCE_KEY = "provenance"
"""The journal state key holding :func:`provenance`'s JSON."""
IN_SUMMARY = ("version", "config", "feed")
"""The parts of :func:`provenance` a dry run's summary carries (``replay --json``): what
produced the figures, never a figure (a sweep's rows and the pinned run leave them out)."""

REDACTED = "<redacted>"

SECRET_KEY = re.compile(r"secret|passw|passphrase|api_?key|token|private|credential|auth",
                        re.IGNORECASE)
"""A key whose value is not embedded (``exchange.credentials`` names where the keys are:
not a secret itself, but a path nobody reading a report needs)."""

# `key = value` in TOML text (a line, or inside an inline table) whose key looks secret:
# the value (a quoted string, or anything up to a comma, brace or line end) is replaced
_SECRET_ASSIGNMENT = re.compile(
    r"""(?P<key>["']?[\w.-]*(?:secret|passw|passphrase|api_?key|token|private|credential|"""
    r"""auth)[\w.-]*["']?\s*=\s*)(?P<value>"(?:[^"\\\n]|\\.)*"|'[^'\n]*'|[^,}\n]*)""",
    re.IGNORECASE)
_URL_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s\"']+@", re.IGNORECASE)
_MAX_ITEMS = 64  # a longer sequence (a fitted table) is described, not embedded


def package_version() -> str:
    """This mmdaemon's version as installed, or why it is unknown."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mmdaemon")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def redact_text(text: str) -> str:
    """``text`` (TOML) with the values of secret-looking keys and URLs' user information
    replaced by :data:`REDACTED`."""
    text = _SECRET_ASSIGNMENT.sub(lambda m: f'{m.group("key")}"{REDACTED}"', text)
    return _URL_USERINFO.sub(lambda m: f"{m.group('scheme')}{REDACTED}@", text)


def _plain(value: Any, key: str = "") -> Any:
    """``value`` as JSON-ready data, secret-looking keys and URL passwords redacted."""
    if key and SECRET_KEY.search(key) and not isinstance(value, bool):
        return REDACTED if value not in ("", None) else value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name), f.name)
                for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        if len(value) > _MAX_ITEMS:
            return f"<{len(value):,} values>"
        return [_plain(v) for v in value]
    if isinstance(value, str):
        return _URL_USERINFO.sub(lambda m: f"{m.group('scheme')}{REDACTED}@", value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, Decimal | Fraction | Path):
        return str(value)
    return repr(value)


def _files(paths: Sequence[str]) -> list[dict[str, Any]]:
    """Each path with its size in bytes (None: not readable now), not its hash: a day's
    recording is gigabytes, and its path and size tell it apart from another."""
    out: list[dict[str, Any]] = []
    for p in paths:
        try:
            size: int | None = Path(p).stat().st_size
        except OSError:
            size = None
        out.append({"path": str(p), "bytes": size})
    return out


def provenance(config: Config, config_path: Path | str | None, *, mode: str,
               recordings: Sequence[str] = (),
               reference: Sequence[str] = ()) -> dict[str, Any]:
    """What produced a run, JSON-ready: ``version`` (mmdaemon's, and Python's), ``mode``
    (``run`` or ``replay``), ``config`` (``path`` absolute, ``sha256`` of the file's bytes,
    ``text`` as read and redacted, ``values``: the resolved configuration the service ran
    with, e.g. a replay's paper adapter; ``path``/``sha256``/``text`` None without a
    readable file) and ``feed`` (``recordings`` and ``reference`` recordings, each path with
    its size in bytes, and the live ``url`` when there are none)."""
    path = sha = text = None
    if config_path is not None:
        try:
            raw = Path(config_path).read_bytes()
        except OSError:
            raw = None
        if raw is not None:
            path = str(Path(config_path).resolve())
            sha = hashlib.sha256(raw).hexdigest()
            text = redact_text(raw.decode("utf-8", errors="replace"))
    feed: dict[str, Any] = {"recordings": _files(recordings), "reference": _files(reference)}
    if not recordings:
        feed["url"] = _plain(config.feed.url)
    return {
        "version": package_version(),
        "python": sys.version.split()[0],
        "mode": mode,
        "config": {"path": path, "sha256": sha, "text": text, "values": _plain(config)},
        "feed": feed,
    }
