"""What produced a run, as the report and ``replay --json`` embed it: never a secret."""

from __future__ import annotations

import hashlib
from pathlib import Path

import orjson

from mmdaemon.config_file import load_config
from mmdaemon.provenance import REDACTED, provenance
from mmdaemon.report_sections import provenance_html

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


def test_provenance_leaks_no_secret_whatever_the_toml_shape(tmp_path: Path) -> None:
    """Secrets in the TOML shapes a desk writes: multi-line strings, an array of tokens, a
    table named like a secret whose keys are not, a URL whose password holds an ``@``, a
    token in a URL's query, a signing key. None appears in the text or the values; the
    rest of the file is still embedded, or the text is withheld and the report says why."""
    text = (REPO / "config" / "dryrun.toml").read_text()
    text += ('\n[strategy]\nclass = "my_strategies:Quoter"\n'
             '[strategy.params]\n'
             'api_key = """MULTI-LINE-KEY"""\n'
             "api_secret = '''LITERAL-SECRET'''\n"
             'tokens = ["FIRST-TOKEN", "SECOND-TOKEN"]\n'
             'venue_url = "wss://desk:Pa55@W0rdX@venue.example/ws?token=QUERY-TOKEN&x=1"\n'
             'signing_key = "SIGNING-KEY"\n'
             'size = 3\n'
             '[strategy.params.credentials]\n'
             'id = "TABLE-ID"\n'
             'value = "TABLE-VALUE"\n')
    path = tmp_path / "desk.toml"
    path.write_text(text)
    config = load_config(path)

    produced = provenance(config, path, mode="run")
    dumped = orjson.dumps(produced).decode()
    for secret in ("MULTI-LINE-KEY", "LITERAL-SECRET", "FIRST-TOKEN", "SECOND-TOKEN", "Pa55",
                   "W0rdX", "QUERY-TOKEN", "SIGNING-KEY", "TABLE-ID", "TABLE-VALUE"):
        assert secret not in dumped, secret
    values = produced["config"]["values"]
    assert values["plugin"]["params"]["size"] == 3
    assert values["plugin"]["params"]["venue_url"] == (
        f"wss://{REDACTED}@venue.example/ws?token={REDACTED}&x=1")
    embedded = produced["config"]["text"]
    assert 'symbol = "BTCUSDT"' in embedded and "size = 3" in embedded
    assert produced["config"]["text_withheld"] is None

    # a shape the redaction does not know (secrets in nested arrays): the text is withheld
    path.write_text(text + '[strategy.params.more]\nsecrets = [["NESTED-1"], ["NESTED-2"]]\n')
    withheld = provenance(load_config(path), path, mode="run")
    dumped = orjson.dumps(withheld).decode()
    assert "NESTED-1" not in dumped and "NESTED-2" not in dumped
    assert withheld["config"]["text"] is None
    assert "not embedded" in withheld["config"]["text_withheld"]
    assert 'id="config-text-withheld"' in provenance_html(withheld)
