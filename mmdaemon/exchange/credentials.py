"""API credentials: read at start, from the environment or a file, never from the config.

``exchange.credentials`` names where they are:

- ``"env"``: the variables ``MMDAEMON_API_KEY`` and ``MMDAEMON_API_SECRET``;
- a name without ``/`` (``"binance"``): a systemd credential, the file of that name in
  ``$CREDENTIALS_DIRECTORY`` (where ``LoadCredential=`` puts it; unset outside systemd: an
  error that says to give a path instead);
- a path: the file itself. :func:`~mmdaemon.config.load_config` has made a relative one
  absolute against the config file's directory (``"./binance.toml"`` is the file beside
  the config); one that reaches this module relative (a command-line argument, a config
  not read from a file) is relative to the working directory.

The file holds two TOML keys: ``api_key = "..."`` and ``api_secret = "..."``. Like ssh
with a private key, a file that anyone but this user and root can get at is refused
(:func:`exposure`): group or others with any permission on it (mode bits, or a POSIX ACL
entry), or owned by another user. systemd's credential files pass: 0400, read access for
the service's user granted through an ACL (which ``ls`` shows as 0440). The config can
accept such a file explicitly (``exchange.allow_readable_credentials``,
``firm.allow_readable_password``).

Errors say which source and which key is missing; no message ever contains a value.

The Redis password of the firm risk bus (``firm.password``) is read the same way:
``""`` none, ``"env"`` the variable ``MMDAEMON_REDIS_PASSWORD``, anything else a file
holding ``password = "..."`` (see :func:`load_redis_password`).
"""

from __future__ import annotations

import errno
import os
import stat
import struct
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

ENV_KEY = "MMDAEMON_API_KEY"
ENV_SECRET = "MMDAEMON_API_SECRET"
ENV_REDIS_PASSWORD = "MMDAEMON_REDIS_PASSWORD"
ALLOW_KEYS = {"exchange.credentials": "exchange.allow_readable_credentials",
              "firm.password": "firm.allow_readable_password"}
"""The config key that accepts a file others can read, for each secret's source key."""


class CredentialsError(ValueError):
    """Credentials that cannot be read; the message names the source, never a value."""


class ApiCredentials(NamedTuple):
    api_key: str
    secret: str

    def __repr__(self) -> str:  # keep the secret out of logs and tracebacks
        return f"ApiCredentials(api_key={self.api_key[:4]}..., secret=<redacted>)"


def load_credentials(source: str, environ: Mapping[str, str] = os.environ, *,
                     allow_readable: bool = False) -> ApiCredentials:
    """Read credentials from ``source`` (see the module docstring); ``allow_readable``
    (``exchange.allow_readable_credentials``) accepts a file others can get at."""
    if source == "env":
        key, secret = environ.get(ENV_KEY, ""), environ.get(ENV_SECRET, "")
        missing = [name for name, value in ((ENV_KEY, key), (ENV_SECRET, secret)) if not value]
        if missing:
            raise CredentialsError(f"exchange.credentials = 'env': {missing[0]} is not set")
        return ApiCredentials(key, secret)
    values = _read_file("exchange.credentials", source, ("api_key", "api_secret"), environ,
                        allow_readable)
    return ApiCredentials(*values)


class RedisPassword(str):
    """The Redis password: a str that keeps itself out of reprs (logs, tracebacks)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "RedisPassword(<redacted>)"


def load_redis_password(source: str, environ: Mapping[str, str] = os.environ, *,
                        allow_readable: bool = False) -> RedisPassword | None:
    """The firm risk bus's Redis password from ``source`` (``firm.password``): None for
    ``""`` (no AUTH), ``"env"`` for ``MMDAEMON_REDIS_PASSWORD``, else a file, found and
    guarded like the API credentials' (``allow_readable``: ``firm.allow_readable_password``)."""
    if not source:
        return None
    if source == "env":
        value = environ.get(ENV_REDIS_PASSWORD, "")
        if not value:
            raise CredentialsError(f"firm.password = 'env': {ENV_REDIS_PASSWORD} is not set")
        return RedisPassword(value)
    return RedisPassword(_read_file("firm.password", source, ("password",), environ,
                                    allow_readable)[0])


def secret_file(key: str, source: str, environ: Mapping[str, str] = os.environ) -> Path:
    """The file a secret's ``source`` (neither ``"env"`` nor ``""``) names: a name without
    ``/`` in ``$CREDENTIALS_DIRECTORY``, a path as it is; errors name ``key``."""
    if "/" in source:
        return Path(source)
    base = environ.get("CREDENTIALS_DIRECTORY")
    if not base:
        raise CredentialsError(
            f"{key} = {source!r}: a name without '/' is a systemd credential (LoadCredential=), "
            f"read from $CREDENTIALS_DIRECTORY, which is not set: not started by systemd; for a "
            f"file give a path, e.g. './{source}' for the file beside the config")
    return Path(base) / source


def exposure(fd: int, info: os.stat_result, path: Path) -> tuple[str, str] | None:
    """Who besides this user and root can get at the file ``path``, open as ``fd`` with
    stat ``info``, as (what, the command that fixes it); None if nobody. Like ssh with
    private keys: group and others must have no permission at all, and the owner must be
    this user or root (an owner can change the mode, and read the file, at will)."""
    euid = os.geteuid()
    if info.st_uid not in (euid, 0):
        return (f"is owned by uid {info.st_uid}, not by this user (uid {euid}) or root",
                f"chown {euid} {path}")
    acl = _acl(fd)
    if acl is None:
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            return f"is open to group or others (mode {mode:04o})", f"chmod 600 {path}"
        return None
    mask = acl.get((_ACL_MASK, None), 0o7)
    others = []
    for (tag, ident), perm in acl.items():
        if tag == _ACL_USER and ident not in (euid, 0) and perm & mask:
            others.append(f"user {ident}")
        elif tag == _ACL_GROUP_OBJ and perm & mask:
            others.append(f"group {info.st_gid}")
        elif tag == _ACL_GROUP and perm & mask:
            others.append(f"group {ident}")
        elif tag == _ACL_OTHER and perm:
            others.append("others")
    if others:
        return (f"is open to {', '.join(others)} (mode {stat.S_IMODE(info.st_mode):04o} with "
                f"an access control list)", f"setfacl -b {path} && chmod 600 {path}")
    return None


# POSIX ACL entry tags as Linux stores them in the system.posix_acl_access attribute
# (the owner's own entry, tag 0x01, is the mode's owner bits and never matters here)
_ACL_USER, _ACL_GROUP_OBJ, _ACL_GROUP, _ACL_MASK, _ACL_OTHER = 0x02, 0x04, 0x08, 0x10, 0x20
_ACL_VERSION = 2
_ACL_ENTRY = struct.Struct("<HHI")  # tag, permission bits (rwx = 4 2 1), uid/gid


def _acl(fd: int) -> dict[tuple[int, int | None], int] | None:
    """The file's POSIX access ACL as {(tag, uid/gid or None): rwx bits}; None if it has
    none beyond its mode (or the file system keeps none)."""
    try:
        raw = os.getxattr(fd, "system.posix_acl_access")
    except OSError as exc:
        if exc.errno in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP):
            return None
        raise
    body = raw[4:]
    if (len(raw) < 4 or int.from_bytes(raw[:4], "little") != _ACL_VERSION
            or len(body) % _ACL_ENTRY.size):
        raise OSError(errno.EINVAL, "unreadable access control list")
    acl: dict[tuple[int, int | None], int] = {}
    for tag, perm, ident in _ACL_ENTRY.iter_unpack(body):
        named = tag in (_ACL_USER, _ACL_GROUP)
        acl[(tag, ident if named else None)] = perm & 0o7
    return acl


def _read_file(key: str, source: str, names: tuple[str, ...], environ: Mapping[str, str],
               allow_readable: bool) -> list[str]:
    """The string values ``names`` of the TOML file ``source`` names (:func:`secret_file`),
    refused if others can get at it unless ``allow_readable``; errors name ``key``."""
    path = secret_file(key, source, environ)
    try:
        # O_NONBLOCK: a FIFO in its place must not hang the start (it is refused below);
        # on a regular file the flag changes nothing
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError as exc:
        raise CredentialsError(f"{key}: cannot read {path}: {exc.strerror or exc}") from None
    try:
        # judged on the open file: what is checked is what is read
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise CredentialsError(f"{key}: {path} is not a regular file")
        if not allow_readable:
            try:
                found = exposure(fd, info, path)
            except OSError as exc:
                raise CredentialsError(f"{key}: cannot read the permissions of {path}: "
                                       f"{exc.strerror or exc}") from None
            if found is not None:
                what, fix = found
                raise CredentialsError(
                    f"{key}: {path} {what}: only this user and root may have access to a "
                    f"secret: {fix} (or set {ALLOW_KEYS[key]} = true to accept it)")
        with open(fd, "rb", closefd=False) as f:
            data = f.read()
    except OSError as exc:
        raise CredentialsError(f"{key}: cannot read {path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    try:
        parsed = tomllib.loads(data.decode())
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        raise CredentialsError(f"{key}: {path} is not TOML with {' and '.join(names)}") from None
    values = []
    for name in names:
        value = parsed.get(name)
        if not isinstance(value, str) or not value:
            raise CredentialsError(f"{key}: {path} has no string '{name}'")
        values.append(value)
    return values
