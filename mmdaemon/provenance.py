"""What produced a run: the mmdaemon version, the config and the market data it ran on.

A report or a ``replay --json`` summary that does not say which configuration produced it
cannot be compared with another. The service writes :func:`provenance` into its journal's
state table at start (key :data:`PROVENANCE_KEY`, next to ``instrument``), so
``mmdaemon report STATE_DIR`` of a live or stopped run shows it too; ``replay --json``
carries it as its ``version`` and ``config`` keys.

Nothing secret is embedded. A config never holds keys (the credentials are in a file or
the environment the config only names), but its free-form ``[strategy.params]`` table could
hold anything and a URL could carry a password: every value whose key looks secret
(:data:`SECRET_KEY`; every value of a table so named), every URL's user information and
every secret-looking query parameter of a URL are replaced by :data:`REDACTED`, in the
resolved values and in the file's text alike. The text is redacted by pattern, so it is
embedded only when parsing it back shows every secret-looking value redacted and
everything else unchanged; otherwise it is withheld (``text_withheld`` says why) and the
resolved values stand alone. A credentials file is never read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import platform
import re
import sys
import tomllib
from collections.abc import Sequence
from decimal import Decimal
from fractions import Fraction
from functools import cache
from itertools import pairwise
from pathlib import Path
from typing import Any

from mmdaemon.config import Config
from mmdaemon.status import Versions

PROVENANCE_KEY = "provenance"
"""The journal state key holding :func:`provenance`'s JSON."""
IN_SUMMARY = ("version", "config", "feed")
"""The parts of :func:`provenance` a dry run's summary carries (``replay --json``): what
produced the figures, never a figure (a sweep's rows and the pinned run leave them out)."""

REDACTED = "<redacted>"

_SECRET_WORDS = (r"secret|passw|passphrase|api_?key|token|private|credential|auth|pwd|"
                 r"signature|webhook|dsn|cookie|bearer|[_-]key\b")
SECRET_KEY = re.compile(_SECRET_WORDS, re.IGNORECASE)
"""A key whose value is not embedded (``exchange.credentials`` names where the keys are:
not a secret itself, but a path nobody reading a report needs)."""

# a TOML value: a multi-line or one-line string, an array or inline table of them (one
# level: a nested one is caught by the check that the text parses back), or a bare value
_VALUE = (r'"""[\s\S]*?"""(?!")|\'\'\'[\s\S]*?\'\'\'(?!\')|"(?:[^"\\\n]|\\.)*"|\'[^\'\n]*\''
          r'|\[(?:[^\]"\']|"(?:[^"\\\n]|\\.)*"|\'[^\'\n]*\')*\]'
          r'|\{(?:[^}"\']|"(?:[^"\\\n]|\\.)*"|\'[^\'\n]*\')*\}|[^,}\n]*')
# `key = value` in TOML text whose key looks secret: a key starts a line (a commented-out
# one too) or follows an inline table's `{` or `,`, never inside a string (a URL's query)
_SECRET_ASSIGNMENT = re.compile(
    rf"""(?P<key>(?:^[ \t]*(?:\#[ \t]*)?|(?<=[{{,])[ \t]*)["']?[\w.-]*(?:{_SECRET_WORDS})"""
    rf"""[\w.-]*["']?[ \t]*=[ \t]*)(?P<value>{_VALUE})""",
    re.IGNORECASE | re.MULTILINE)
# any `key = value` line: every one of a table whose name looks secret
_ANY_ASSIGNMENT = re.compile(rf"""(?m)^(?P<key>\s*["']?[\w.-]+["']?\s*=\s*)(?P<value>{_VALUE})""")
_HEADER = re.compile(r"(?m)^[ \t]*\[\[?(?P<name>[^\]\n]+)\]\]?[ \t]*(?:#.*)?$")
# up to the last `@` before the host: an unencoded `@` in a password is read that way too
_URL_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/\s\"'?#]*@", re.IGNORECASE)
_URL_SECRET_PARAM = re.compile(rf"(?P<key>[?&;][\w.-]*(?:{_SECRET_WORDS})[\w.-]*=)[^&#\s\"']*",
                               re.IGNORECASE)
_MAX_ITEMS = 64  # a longer sequence (a fitted table) is described, not embedded


@cache
def package_version() -> str:
    """This mmdaemon's version as installed, or why it is unknown; read once (a run asks
    for it more than once, and its code is the version it loaded, whatever is installed
    later)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mmdaemon")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def _redact_urls(text: str) -> str:
    """``text`` with every URL's user information and secret-looking query values
    redacted."""
    text = _URL_USERINFO.sub(lambda m: f"{m.group('scheme')}{REDACTED}@", text)
    return _URL_SECRET_PARAM.sub(lambda m: f"{m.group('key')}{REDACTED}", text)


def redact_text(text: str) -> str:
    """``text`` (TOML) with the values of secret-looking keys (every value of a table whose
    name looks secret), URLs' user information and secret-looking query values replaced by
    :data:`REDACTED`. By pattern: :func:`provenance` checks the result before using it."""
    def replace(m: re.Match[str]) -> str:
        return f'{m.group("key")}"{REDACTED}"'

    headers = list(_HEADER.finditer(text))
    cuts = [0, *(h.start() for h in headers), len(text)]
    secret_table = [False, *(bool(SECRET_KEY.search(h.group("name"))) for h in headers)]
    parts = []
    for (a, b), secret in zip(pairwise(cuts), secret_table, strict=True):
        part = text[a:b]
        if secret:  # the header line itself holds no value; every assignment below it does
            head, _, rest = part.partition("\n")
            part = f"{head}\n{_ANY_ASSIGNMENT.sub(replace, rest)}"
        parts.append(_SECRET_ASSIGNMENT.sub(replace, part))
    return _redact_urls("".join(parts))


def _redaction_holds(original: Any, redacted: Any, secret: bool = False) -> bool:
    """Whether ``redacted`` (the redacted text, parsed) is ``original`` (the file, parsed)
    with every value under a secret-looking key :data:`REDACTED` (whole or leaf by leaf)
    and every other string's URLs redacted, everything else unchanged."""
    if secret and redacted == REDACTED:
        return True
    if isinstance(original, dict):
        return (isinstance(redacted, dict) and original.keys() == redacted.keys()
                and all(_redaction_holds(v, redacted[k], secret or bool(SECRET_KEY.search(k)))
                        for k, v in original.items()))
    if isinstance(original, list):
        return (isinstance(redacted, list) and len(original) == len(redacted)
                and all(_redaction_holds(o, r, secret)
                        for o, r in zip(original, redacted, strict=True)))
    if secret:
        return False
    if isinstance(original, str):
        return bool(redacted == _redact_urls(original))
    return bool(original == redacted or (original != original and redacted != redacted))


def _checked_text(raw: str) -> tuple[str | None, str | None]:
    """``(text, None)``: ``raw`` redacted, checked by parsing it back; ``(None, why)`` when
    that check fails (a TOML shape the patterns do not know: the text is withheld)."""
    text = redact_text(raw)
    try:
        holds = _redaction_holds(tomllib.loads(raw), tomllib.loads(text))
    except tomllib.TOMLDecodeError:
        holds = False
    if holds:
        return text, None
    return None, ("the file's text is not embedded: its secret-looking values could not "
                  "be redacted with certainty (the resolved values below are)")


def _plain(value: Any, key: str = "") -> Any:
    """``value`` as JSON-ready data, secret-looking keys and URL secrets redacted."""
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
        return _redact_urls(value)
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
    path = sha = text = withheld = None
    if config_path is not None:
        try:
            raw = Path(config_path).read_bytes()
        except OSError:
            raw = None
        if raw is not None:
            path = str(Path(config_path).resolve())
            sha = hashlib.sha256(raw).hexdigest()
            text, withheld = _checked_text(raw.decode("utf-8", errors="replace"))
    feed: dict[str, Any] = {"recordings": _files(recordings), "reference": _files(reference)}
    if not recordings:
        feed["url"] = _plain(config.feed.url)
    return {
        "version": package_version(),
        "python": sys.version.split()[0],
        "mode": mode,
        "config": {"path": path, "sha256": sha, "text": text, "text_withheld": withheld,
                   "values": _plain(config)},
        "feed": feed,
    }


def run_versions(config_path: Path | None, produced: dict[str, Any] | None = None) -> Versions:
    """The versions ``status`` shows: those of ``produced`` (a run's :func:`provenance`,
    as the service has it or its journal kept it: what that run read at its start) when
    it has them, else the package's and Python's here and the config file's path and the
    SHA-256 of its bytes as read now."""
    try:
        if produced is not None:
            config = produced["config"]
            return Versions(str(produced["version"]), str(produced["python"]),
                            str(config["path"] or ""), str(config["sha256"] or ""))
    except (KeyError, TypeError):  # written by another version: what can be read now
        pass
    digest = ""
    if config_path is not None:
        try:
            digest = hashlib.sha256(config_path.read_bytes()).hexdigest()
        except OSError:
            digest = "unreadable"
    return Versions(package_version(), platform.python_version(),
                    str(config_path.resolve()) if config_path else "", digest)
