"""Reading the venue's exchangeInfo (mmdaemon.venue_rules.fetch_once) from a real TCP
server on 127.0.0.1 that answers badly: something that is not HTTP at all, an answer cut
off mid-body, a page that is not JSON. All are outages that may pass (RulesUnavailable: a
config leaving grids out retries then exits 1, a running service waits HALTED), never a
traceback nor the final 'config error' (exit 2) a body without the rules gets."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mmdaemon.config_file import load_config
from mmdaemon.venue_rules import RulesUnavailable, fetch_once
from tests.exchange_info import spot_body, spot_symbol
from tests.helpers import write_config


def _serving(answer: bytes) -> Iterator[int]:
    """A server on a free loopback port that reads one request per connection, writes
    ``answer`` and hangs up."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.05)  # accept() wakes to see the stop: closing does not wake it
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:  # the server closed at the end of the test
                return
            conn.settimeout(5)
            with conn:
                conn.recv(65536)
                conn.sendall(answer)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        server.close()
        thread.join(5)


NOT_HTTP = b"SSH-2.0-OpenSSH_9.6\r\n\r\n"
BODY = b'{"symbols":[' + b" " * 100
PAGE = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
HTML = (b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n"
        % len(PAGE)) + PAGE
CUT_OFF = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n"
           + BODY)


@pytest.mark.parametrize(("answer", "reason"), [
    (NOT_HTTP, "not an HTTP answer: BadStatusLine"),
    (CUT_OFF, f"the answer was cut off: {len(BODY)} of 5000 bytes"),
    (HTML, "not JSON (a proxy's or a maintenance page?): b'<html><body><h1>502"),
])
def test_a_venue_answering_garbage_or_hanging_up_mid_body_is_an_outage_not_a_crash(
        tmp_path: Path, answer: bytes, reason: str) -> None:
    for port in _serving(answer):
        config = load_config(write_config(tmp_path, {"feed": {
            "recordings": [], "url": f"ws://127.0.0.1:{port}",
            "rest_url": f"http://127.0.0.1:{port}"}}))
        with pytest.raises(RulesUnavailable) as err:
            fetch_once(config, "spot")
        assert str(err.value).startswith(reason), str(err.value)


def test_a_whole_answer_is_read_as_it_is(tmp_path: Path) -> None:
    """The control: the same server with a complete answer gives its body."""
    import orjson

    body = orjson.dumps(spot_body(spot_symbol()))
    answer = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
              % len(body)) + body
    for port in _serving(answer):
        config = load_config(write_config(tmp_path, {"feed": {
            "recordings": [], "url": f"ws://127.0.0.1:{port}",
            "rest_url": f"http://127.0.0.1:{port}"}}))
        url, got = fetch_once(config, "spot")
        assert got == body and url.endswith("/api/v3/exchangeInfo?symbol=BTCUSDT")


def test_record_keeps_only_the_symbols_entry_whatever_else_the_list_holds(
        tmp_path: Path) -> None:
    """``save`` writes the recorded symbol's entry alone, even when the venue's list holds
    entries that are not objects (the parser skips them; save must too)."""
    import orjson

    from mmdaemon.venue_rules import Settled, save

    config = load_config(write_config(tmp_path))
    doc = spot_body(spot_symbol("ETHUSDT"), spot_symbol())
    doc["symbols"].insert(0, "BTCUSDT")
    path = save(Settled(config, "test", None, (), orjson.dumps(doc)), tmp_path / "out")
    assert path == tmp_path / "out" / "exchangeInfo-BTCUSDT.json"
    assert orjson.loads(path.read_bytes())["symbols"] == [spot_symbol()]
