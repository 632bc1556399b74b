"""Credentials come from the environment or a file, and never show up in messages."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from mmdaemon.config_file import load_config
from mmdaemon.exchange.credentials import CredentialsError, load_credentials, load_redis_password
from tests.helpers import ACL_XATTR, acl_bytes, systemd_credential, write_config, write_secret

SECRET = "s3cr3t-value-that-must-never-print"


def test_from_the_environment() -> None:
    creds = load_credentials("env", {"MMDAEMON_API_KEY": "key1", "MMDAEMON_API_SECRET": SECRET})
    assert creds == ("key1", SECRET)
    assert SECRET not in repr(creds) and SECRET not in str(creds)
    with pytest.raises(CredentialsError, match="MMDAEMON_API_SECRET is not set"):
        load_credentials("env", {"MMDAEMON_API_KEY": "key1"})


def test_from_a_file_in_the_credentials_directory(tmp_path: Path) -> None:
    systemd_credential(tmp_path, "binance", f'api_key = "key2"\napi_secret = "{SECRET}"\n')
    creds = load_credentials("binance", {"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert creds == ("key2", SECRET)
    write_secret(tmp_path / "bad", 'api_key = "key2"\n')
    with pytest.raises(CredentialsError, match="has no string 'api_secret'"):
        load_credentials(str(tmp_path / "bad"), {})
    with pytest.raises(CredentialsError, match="cannot read"):
        load_credentials(str(tmp_path / "absent"), {})
    write_secret(tmp_path / "garbled", f"api_secret = {SECRET}\n")  # not valid TOML
    with pytest.raises(CredentialsError) as err:
        load_credentials(str(tmp_path / "garbled"), {})
    assert SECRET not in str(err.value)


CREDS = f'api_key = "key3"\napi_secret = "{SECRET}"\n'


def check_config(config: Path, cwd: Path, **env: str) -> dict[str, object]:
    """``mmdaemon check-config --json`` run from ``cwd``, no credentials in the environment
    but ``env``."""
    base = {k: v for k, v in os.environ.items()
            if k not in ("MMDAEMON_API_KEY", "MMDAEMON_API_SECRET", "CREDENTIALS_DIRECTORY")}
    proc = subprocess.run([sys.executable, "-m", "mmdaemon", "check-config", str(config),
                           "--price", "60000", "--json"], capture_output=True, text=True,
                          timeout=60, cwd=cwd, env={**base, **env})
    assert proc.returncode == 0, proc.stderr
    assert SECRET not in proc.stdout + proc.stderr
    result: dict[str, object] = orjson.loads(proc.stdout)
    return result


def warnings_of(result: dict[str, object]) -> dict[str, str]:
    found = result["warnings"]
    assert isinstance(found, list)
    return {w["key"]: w["message"] for w in found}


def live_config(directory: Path, source: str, **exchange: object) -> Path:
    return write_config(directory, {"exchange": {
        "adapter": "binance", "ws_api_url": "ws://127.0.0.1:9/ws-api/v3",
        "credentials": source, **exchange}})


def test_a_relative_path_is_the_file_beside_the_config_from_any_working_directory(
        tmp_path: Path) -> None:
    config = live_config(tmp_path / "etc", "./secrets/binance.toml")
    (tmp_path / "etc" / "secrets").mkdir()
    secret = write_secret(tmp_path / "etc" / "secrets" / "binance.toml", CREDS)
    elsewhere = tmp_path / "elsewhere"  # the working directory has a file of that name too
    (elsewhere / "secrets").mkdir(parents=True)
    write_secret(elsewhere / "secrets" / "binance.toml", 'api_key = "wrong"\napi_secret = "x"\n')
    loaded = load_config(config)  # the loader makes it absolute: run, reload, check agree
    assert loaded.exchange.credentials == str(secret)
    assert load_credentials(loaded.exchange.credentials, {}).api_key == "key3"
    result = check_config(config, cwd=elsewhere)
    assert "exchange.credentials" not in warnings_of(result)
    derived = result["derived"]
    assert isinstance(derived, dict)
    assert derived["exchange.credentials"] == f"read from {secret} (not shown)"


def test_a_bare_name_outside_systemd_is_refused_with_the_path_to_give(tmp_path: Path) -> None:
    """A name without '/' is a systemd credential; outside systemd it used to be a file in
    the working directory: now it says what to write instead."""
    with pytest.raises(CredentialsError, match=r"\$CREDENTIALS_DIRECTORY, which is not set.*"
                                               r"'\./binance.toml' for the file beside"):
        load_credentials("binance.toml", {})


def test_a_file_group_or_others_can_read_is_refused_naming_the_file_and_the_fix(
        tmp_path: Path) -> None:
    path = write_secret(tmp_path / "binance.toml", CREDS, mode=0o644)
    with pytest.raises(CredentialsError) as err:
        load_credentials(str(path), {})
    assert str(err.value) == (
        f"exchange.credentials: {path} is open to group or others (mode 0644): only this "
        f"user and root may have access to a secret: chmod 600 {path} (or set "
        f"exchange.allow_readable_credentials = true to accept it)")
    assert SECRET not in str(err.value)
    for mode in (0o640, 0o604, 0o620, 0o601):  # any access, as ssh: a writer can swap it
        path.chmod(mode)
        with pytest.raises(CredentialsError, match=f"mode {mode:04o}"):
            load_credentials(str(path), {})
    path.chmod(0o600)
    assert load_credentials(str(path), {}).api_key == "key3"
    path.chmod(0o400)
    assert load_credentials(str(path), {}).api_key == "key3"


def test_the_config_can_accept_a_readable_file_explicitly(tmp_path: Path) -> None:
    path = write_secret(tmp_path / "binance.toml", CREDS, mode=0o644)
    assert load_credentials(str(path), {}, allow_readable=True).api_key == "key3"
    refused = check_config(live_config(tmp_path / "a", str(path)), cwd=tmp_path)
    assert "chmod 600" in warnings_of(refused)["exchange.credentials"]
    allowed = check_config(live_config(tmp_path / "b", str(path),
                                       allow_readable_credentials=True), cwd=tmp_path)
    assert "exchange.credentials" not in warnings_of(allowed)


def test_the_redis_password_file_is_guarded_the_same_way(tmp_path: Path) -> None:
    path = write_secret(tmp_path / "redis.toml", 'password = "s3cret"\n', mode=0o644)
    with pytest.raises(CredentialsError, match=rf"firm.password: {path} is open to group or "
                                               rf"others .*firm.allow_readable_password"):
        load_redis_password(str(path), {})
    assert load_redis_password(str(path), {}, allow_readable=True) == "s3cret"


def test_a_file_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root can give a file to another user")
    path = write_secret(tmp_path / "binance.toml", CREDS)
    os.chown(path, 54321, 54321)
    with pytest.raises(CredentialsError, match=rf"{path} is owned by uid 54321, not by this "
                                               rf"user \(uid 0\) or root: .*: chown 0 {path}"):
        load_credentials(str(path), {})
    assert load_credentials(str(path), {}, allow_readable=True).api_key == "key3"


def test_access_through_an_acl_counts_and_systemds_own_acl_passes(tmp_path: Path) -> None:
    """systemd gives the service's user read access to a 0400 credential through an ACL
    entry, so the mode reads 0440 though nobody else can read it: accepted. An ACL entry
    for anyone else is refused like a mode bit."""
    path = systemd_credential(tmp_path, "binance", CREDS)
    try:
        os.getxattr(path, ACL_XATTR)
    except OSError:
        pytest.skip("this file system keeps no POSIX ACLs")
    assert oct(path.stat().st_mode & 0o777) == "0o440"
    assert load_credentials("binance", {"CREDENTIALS_DIRECTORY": str(tmp_path)}) == (
        "key3", SECRET)
    unnamed = 0xFFFFFFFF
    for entry, who in (((0x02, 4, 54321), "user 54321"), ((0x08, 4, 54321), "group 54321")):
        os.setxattr(path, ACL_XATTR, acl_bytes([
            (0x01, 4, unnamed), entry, (0x04, 0, unnamed), (0x10, 4, unnamed),
            (0x20, 0, unnamed)]))
        with pytest.raises(CredentialsError, match=rf"is open to {who} \(mode 0440 with an "
                                                   rf"access control list\): .*setfacl -b"):
            load_credentials("binance", {"CREDENTIALS_DIRECTORY": str(tmp_path)})
    # the mask takes the entry's permission away: nobody else can read it
    os.setxattr(path, ACL_XATTR, acl_bytes([
        (0x01, 4, unnamed), (0x02, 4, 54321), (0x04, 0, unnamed), (0x10, 0, unnamed),
        (0x20, 0, unnamed)]))
    assert load_credentials("binance", {"CREDENTIALS_DIRECTORY": str(tmp_path)}).api_key


def test_run_resolves_and_refuses_like_check_config(tmp_path: Path) -> None:
    """`mmdaemon run`, from another working directory, reads the same file check-config
    named and refuses it the same way before anything connects: exit 2 with the fix."""
    config = live_config(tmp_path / "etc", "./binance.toml")
    secret = write_secret(tmp_path / "etc" / "binance.toml", CREDS, mode=0o644)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = subprocess.run([sys.executable, "-m", "mmdaemon", "run", "--config", str(config)],
                          capture_output=True, text=True, timeout=60, cwd=elsewhere)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == (
        f"mmdaemon run: config error: exchange.credentials: {secret} is open to group or "
        f"others (mode 0644): only this user and root may have access to a secret: chmod 600 "
        f"{secret} (or set exchange.allow_readable_credentials = true to accept it)")
    assert SECRET not in proc.stdout + proc.stderr
    assert warnings_of(check_config(config, cwd=elsewhere))["exchange.credentials"].startswith(
        f"{secret} is open to group or others (mode 0644)")


def test_a_fifo_in_place_of_the_credentials_file_is_refused_without_waiting(
    tmp_path: Path
) -> None:
    """A named pipe would block the open until someone writes to it: the start would hang
    with SIGTERM recorded but never acted on. Refused at once instead."""

    fifo = tmp_path / "creds.toml"
    os.mkfifo(fifo, 0o600)
    config = write_config(tmp_path, {"exchange": {
        "adapter": "binance", "ws_api_url": "ws://127.0.0.1:9/ws-api/v3",
        "credentials": str(fifo)}})
    done = subprocess.run([sys.executable, "-m", "mmdaemon", "check-config", str(config)],
                          capture_output=True, text=True, timeout=30)
    assert "is not a regular file" in done.stdout + done.stderr
