"""What produced a run, as the report and ``replay --json`` embed it: never a secret."""

from __future__ import annotations

import hashlib
from pathlib import Path

import orjson

from mmdaemon.config_file import load_config
from mmdaemon.provenance import REDACTED, provenance

REPO = Path(__file__).resolve().parents[2]


def test_provenance_embeds_the_config_but_no_secret_looking_value(tmp_path: Path) -> None:
    """A plugin's free-form params with secret-looking keys (inline tables too) and a
    credentials file holding real keys: the file's hash is of its bytes as read, the text
    and the resolved values carry the other settings, and no secret appears anywhere."""
    text = (REPO / "config" / "dryrun.toml").read_text()
    text += ('\n[strategy]\nclass = "my_strategies:Quoter"\n'
             'params = { api_secret = "hunter2", size = 3, nested = { token = "t0ken" } }\n')
    text = text.replace('[exchange]\n', '[exchange]\ncredentials = "creds.toml"\n', 1)
    path = tmp_path / "desk.toml"
    path.write_text(text)
    (tmp_path / "creds.toml").write_text('api_key = "AKIAKEYKEY"\napi_secret = "s3cr3t"\n')
    config = load_config(path)

    produced = provenance(config, path, mode="replay", recordings=[str(path)])
    dumped = orjson.dumps(produced).decode()
    for secret in ("hunter2", "t0ken", "AKIAKEYKEY", "s3cr3t", "creds.toml"):
        assert secret not in dumped, secret
    assert produced["config"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert produced["config"]["path"] == str(path.resolve())
    assert 'symbol = "BTCUSDT"' in produced["config"]["text"]
    values = produced["config"]["values"]
    assert values["plugin"]["params"] == {"api_secret": REDACTED, "size": 3,
                                          "nested": {"token": REDACTED}}
    assert values["exchange"]["credentials"] == REDACTED
    assert values["instrument"]["symbol"] == "BTCUSDT"
    assert produced["feed"]["recordings"] == [{"path": str(path), "bytes": len(text)}]
    assert produced["version"] and produced["mode"] == "replay"


def test_provenance_without_a_readable_config_file_keeps_the_values(tmp_path: Path) -> None:
    config = load_config(REPO / "config" / "dryrun.toml")
    produced = provenance(config, tmp_path / "gone.toml", mode="run")
    assert produced["config"]["path"] is produced["config"]["sha256"] is None
    assert produced["config"]["values"]["instrument"]["symbol"] == "BTCUSDT"
    assert produced["feed"]["reference"] == []
