"""A journal that is damaged, not a database, or another instance's refuses the start:
exit 2, one line naming the file and the remedy, nothing sent. Real processes on a real
journal written by a real replay."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from mmdaemon.journal import Journal, JournalCorrupt, JournalForeign
from tests.helpers import first_lines, write_config

PAGE = 4096


def mmdaemon(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mmdaemon", *args], capture_output=True,
                          text=True, timeout=120)


@pytest.fixture
def journal_dir(tmp_path: Path) -> tuple[Path, Path]:
    """A state directory holding the journal of a real dry run (many pages of samples),
    and the config that wrote it (debug logging: every order request is a line)."""
    rec = first_lines(tmp_path / "slice.gz", 40_000)
    config = write_config(tmp_path, {"feed": {"recordings": [str(rec)]},
                                     "logging": {"level": "debug"}})
    state = tmp_path / "state"
    done = mmdaemon("replay", str(rec), "--config", str(config), "--state-dir", str(state))
    assert done.returncode == 0, done.stderr
    assert (state / "journal.sqlite").stat().st_size > 8 * PAGE
    return state, config


def refused_run(config: Path) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """``mmdaemon run`` on ``config``; the result and the events it logged."""
    done = mmdaemon("run", "--config", str(config))
    events = [orjson.loads(line)["event"] for line in done.stdout.splitlines() if line]
    return done, events


def test_damaged_inner_pages_refuse_the_start_before_anything_is_sent(
    journal_dir: tuple[Path, Path]
) -> None:
    state, config = journal_dir
    journal = state / "journal.sqlite"
    with journal.open("r+b") as f:  # pages 3-5 overwritten; the header (page 1) intact
        f.seek(2 * PAGE)
        f.write(bytes(range(256)) * (3 * PAGE // 256))
    done, events = refused_run(config)
    assert done.returncode == 2
    assert str(journal) in done.stderr and "fails its integrity check" in done.stderr
    assert "restore it from a backup or retire it" in done.stderr
    assert "Restoring or retiring a journal" in done.stderr
    assert "journal_refused" in events
    assert "service_started" not in events and "order_sent" not in events


def test_a_file_that_is_not_a_database_refuses_the_start(
    journal_dir: tuple[Path, Path]
) -> None:
    state, config = journal_dir
    (state / "journal.sqlite-wal").unlink(missing_ok=True)
    (state / "journal.sqlite").write_bytes(b"this is not sqlite " * 1000)
    done, events = refused_run(config)
    assert done.returncode == 2
    assert "cannot be read as an SQLite database" in done.stderr
    assert "service_started" not in events


@pytest.mark.parametrize(("section", "key", "value", "named"), [
    ("instrument", "symbol", "ETHUSDT", "symbol 'BTCUSDT' (this config: 'ETHUSDT')"),
    ("instrument", "tick_size", "0.1", "tick_size '0.01' (this config: '0.1')"),
    ("firm", "instance", "desk-b", "instance '' (this config: 'desk-b')"),
])
def test_a_journal_of_another_instance_refuses_the_start(
    journal_dir: tuple[Path, Path], tmp_path: Path, section: str, key: str, value: str,
    named: str
) -> None:
    state, _ = journal_dir
    rec = tmp_path / "slice.gz"
    other = write_config(tmp_path, {"feed": {"recordings": [str(rec)]},
                                    "logging": {"level": "debug"}, section: {key: value}},
                         name="other.toml")  # the same state directory
    done, events = refused_run(other)
    assert done.returncode == 2, done.stderr
    assert "belongs to another instance" in done.stderr and named in done.stderr
    assert str(state / "journal.sqlite") in done.stderr
    assert "service_started" not in events and "order_sent" not in events


def test_an_older_journal_is_judged_on_the_instrument_it_recorded(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    journal = Journal(path)
    journal.put("instrument", orjson.dumps({"symbol": "BTCUSDT", "tick_size": "0.01",
                                             "lot_size": "0.00000001",
                                             "venue": "binance-spot"}).decode(), 1)
    mine = {"venue": "binance-spot", "symbol": "BTCUSDT", "tick_size": "0.01",
            "lot_size": "0.00000001", "adapter": "paper", "instance": ""}
    journal.check_identity(mine, 2)  # matches what it kept: adopted, identity recorded
    assert orjson.loads(journal.get("identity", "")) == mine
    with pytest.raises(JournalForeign, match="adapter 'paper' \\(this config: 'binance'\\)"):
        journal.check_identity({**mine, "adapter": "binance"}, 3)
    journal.close()


def test_a_damaged_page_names_the_file_and_leaves_the_directory_unlocked(
    tmp_path: Path
) -> None:
    path = tmp_path / "journal.sqlite"
    journal = Journal(path)
    journal._db.execute("CREATE TABLE big (x TEXT)")
    journal._db.executemany("INSERT INTO big VALUES (?)", [("x" * 500,)] * 200)
    journal.close()
    with path.open("r+b") as f:
        f.seek(3 * PAGE)  # a b-tree page's header and cell pointers
        f.write(b"\x0d\xff\xff" * 40)
    with pytest.raises(JournalCorrupt) as raised:
        Journal(path)
    assert str(path) in str(raised.value) and "malformed" in str(raised.value)
    # the refused open leaves the state directory unlocked
    Journal(tmp_path / "other.sqlite").close()


def test_a_journal_of_another_account_is_refused_and_an_older_identity_learns_it(
    tmp_path: Path
) -> None:
    """A state directory copied to an instance trading another account (another API key):
    refused. An identity recorded before accounts were (no ``account``) adopts this one."""
    journal = Journal(tmp_path / "journal.sqlite")
    older = {"venue": "binance-spot", "symbol": "BTCUSDT", "tick_size": "0.01",
             "lot_size": "0.00000001", "adapter": "binance", "instance": ""}
    journal.put("identity", orjson.dumps(older).decode(), 1)
    mine = {**older, "account": "key:0123456789abcdef"}
    journal.check_identity(mine, 2)
    assert orjson.loads(journal.get("identity", "")) == mine
    with pytest.raises(JournalForeign, match="account 'key:0123456789abcdef' \\(this config: "
                                             "'key:fedcba9876543210'\\)"):
        journal.check_identity({**mine, "account": "key:fedcba9876543210"}, 3)
    journal.close()


def test_the_gateways_account_is_a_fingerprint_not_the_key() -> None:
    from mmdaemon.exchange.binance_gateway import BinanceGateway, GatewaySettings
    from mmdaemon.model import BINANCE_SPOT_BTCUSDT
    from mmdaemon.venues.binance_api import Credentials

    def account(key: str) -> str:
        gw = BinanceGateway(GatewaySettings(ws_api_url="ws://127.0.0.1:1/ws-api/v3",
                                            client_prefix="mm"), BINANCE_SPOT_BTCUSDT,
                            Credentials(key, "secret"), None)
        return gw.account()

    assert account("key-a") == account("key-a") != account("key-b")
    assert "key-a" not in account("key-a") and account("key-a").startswith("key:")
