"""Credentials come from the environment or a file, and never show up in messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmdaemon.exchange.credentials import CredentialsError, load_credentials

SECRET = "s3cr3t-value-that-must-never-print"


def test_from_the_environment() -> None:
    creds = load_credentials("env", {"MMDAEMON_API_KEY": "key1", "MMDAEMON_API_SECRET": SECRET})
    assert creds == ("key1", SECRET)
    assert SECRET not in repr(creds) and SECRET not in str(creds)
    with pytest.raises(CredentialsError, match="MMDAEMON_API_SECRET is not set"):
        load_credentials("env", {"MMDAEMON_API_KEY": "key1"})


def test_from_a_file_in_the_credentials_directory(tmp_path: Path) -> None:
    (tmp_path / "binance").write_text(f'api_key = "key2"\napi_secret = "{SECRET}"\n')
    creds = load_credentials("binance", {"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert creds == ("key2", SECRET)
    (tmp_path / "bad").write_text('api_key = "key2"\n')
    with pytest.raises(CredentialsError, match="has no string 'api_secret'"):
        load_credentials(str(tmp_path / "bad"), {})
    with pytest.raises(CredentialsError, match="cannot read"):
        load_credentials(str(tmp_path / "absent"), {})
    (tmp_path / "garbled").write_text(f"api_secret = {SECRET}\n")  # not valid TOML
    with pytest.raises(CredentialsError) as err:
        load_credentials(str(tmp_path / "garbled"), {})
    assert SECRET not in str(err.value)
