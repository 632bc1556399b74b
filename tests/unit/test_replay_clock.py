"""The replay's exchange clock: frames timed by the venue's event time, not the receive time."""

from __future__ import annotations

from itertools import islice
from pathlib import Path

import pytest

from mmdaemon.clock import ManualClock
from mmdaemon.config import ConfigError
from mmdaemon.config_file import load_config
from mmdaemon.feed.recording import RecordedFrame, RecordingError, read_recording
from mmdaemon.feed.replay import ReplaySource, exchange_timed
from mmdaemon.model import Malformed
from mmdaemon.venues.binance import frame_event_ns
from tests.conftest import SPOT_FILES
from tests.helpers import write_config

MS = 1_000_000


def depth(e_ms: int) -> bytes:
    return (b'{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":%d,"s":"BTCUSDT",'
            b'"U":1,"u":2,"b":[],"a":[]}}' % e_ms)


def trade(e_ms: int, t_ms: int) -> bytes:
    return (b'{"stream":"btcusdt@trade","data":{"e":"trade","E":%d,"s":"BTCUSDT","t":7,'
            b'"p":"1.00","q":"1.00","T":%d,"m":true,"M":true}}' % (e_ms, t_ms))


TICKER = (b'{"stream":"btcusdt@bookTicker","data":{"u":3,"s":"BTCUSDT","b":"1.00","B":"1.0",'
          b'"a":"1.01","A":"1.0"}}')
SNAPSHOT = b'{"lastUpdateId":2,"bids":[["1.00","1.0"]],"asks":[["1.01","1.0"]]}'


@pytest.mark.parametrize(("frame", "ns"), [
    (depth(1723161255208), 1723161255208 * MS),
    (trade(1723161255343, 1723161255342), 1723161255343 * MS),  # E, not the trade time T
    (TICKER, 0),  # spot bookTicker: no event time
    (SNAPSHOT, 0),
    (b'{"result":null,"id":1}', 0),
    # USD-M prints E last in a bookTicker: the closing brace ends it
    (b'{"e":"bookTicker","u":3,"s":"BTCUSDT","b":"1","B":"1","a":"2","A":"1","T":5,"E":6}',
     6 * MS),
    (b'{"e":"trade","E":"1723161255343"}', 0),  # a string is no time
    (b'{"e":"trade","E":1723161255343.5}', 0),  # nor a float
    (b'{"e":"trade","E":-5,"T":1}', 0),
    (b'{"e":"trade","E":12345678901234}', 0),  # 14 digits of ms: no int64 in ns
    (b'{"e":"trade","E":9999999999999}', 0),  # 13 digits, beyond an int64 in ns
    (b'{"e":"trade","s":"a\\"E\\":5,"}', 0),  # inside a string value: escaped, no key
])
def test_frame_event_ns(frame: bytes, ns: int) -> None:
    assert frame_event_ns(frame) == ns


E0 = 1723161255208  # ms: an event time of the bundled recording
T0 = 1723161253937085768  # ns: a receive time of it


def test_untimed_frames_take_the_last_event_time_and_time_never_goes_back() -> None:
    bad = Malformed("r.gz:6: not '<recv_ns> <frame>'", T0 + 50)
    frames: list[RecordedFrame | Malformed] = [
        (T0 + 90, TICKER),  # before any event time: takes the first one, which comes next
        (T0 + 10, depth(E0)),
        (T0 + 20, trade(E0 - 1, E0 - 2)),  # another stream's earlier event: the clock stays
        (T0 + 30, TICKER),
        (T0 + 40, SNAPSHOT),
        bad,
        (T0 + 60, depth(E0 + 100)),
        (T0 + 70, TICKER),
    ]
    out = list(exchange_timed(frames, frame_event_ns))
    assert out[5] is bad  # malformed lines pass through, with their receive time
    timed = [item for item in out if not isinstance(item, Malformed)]
    assert [t for t, _ in timed] == [E0 * MS] * 5 + [(E0 + 100) * MS] * 2
    assert [f for _, f in timed] == [f for _, f in frames[:5] + frames[6:]]


def test_a_recording_without_event_times_cannot_be_timed() -> None:
    with pytest.raises(RecordingError, match="no venue event time in the recording"):
        list(exchange_timed([(T0, TICKER), (T0 + 1, SNAPSHOT)], frame_event_ns))
    # held frames are bounded: a stream that never carries one fails early
    untimed: list[RecordedFrame | Malformed] = [(T0 + i, TICKER) for i in range(3)]
    assert len(list(exchange_timed([*untimed, (T0 + 3, depth(E0))], frame_event_ns, 3))) == 4
    with pytest.raises(RecordingError, match="first 3 lines"):
        list(exchange_timed([*untimed, (T0 + 3, TICKER), (T0 + 4, depth(E0))], frame_event_ns,
                            3))
    # nothing but malformed lines: nothing to time, they pass
    bad = Malformed("x", 0)
    assert list(exchange_timed([bad], frame_event_ns)) == [bad]


def test_the_bundled_recording_on_the_exchange_clock() -> None:
    """The real snapshot (line 8, no event time) takes the E of the last diff before it;
    times never decrease, and stay about 1.27 s ahead of the recorder's clock."""
    received = list(islice(read_recording(SPOT_FILES[:1]), 4000))
    timed = list(exchange_timed(received, frame_event_ns))
    assert [f for _, f in timed] == [f for _, f in received]
    times = [t for t, _ in timed]
    assert times == sorted(times)
    assert timed[7][1].startswith(b'{"lastUpdateId":') and times[7] == 1723161255408 * MS
    offsets = [t - r for t, (r, _) in zip(times, received, strict=True)]
    assert min(offsets) > 1.1e9 and max(offsets) < 1.4e9


async def test_replay_source_paces_by_event_time(tmp_path: Path) -> None:
    path = tmp_path / "r.txt"
    # receive times jittered and out of step with the venue's 100 ms batches
    path.write_bytes(b"".join(b"%d %s\n" % line for line in [
        (T0 + 5_000, depth(E0)), (T0 + 5_001, TICKER), (T0 + 5_090, depth(E0 + 100)),
        (T0 + 5_350, depth(E0 + 300)),
    ]))
    clock = ManualClock()
    seen = []
    async for item in ReplaySource([path], 1.0, clock, frame_event_ns).frames():
        assert not isinstance(item, Malformed)
        seen.append((item[0], clock.monotonic_ns()))
    assert seen == [(E0 * MS, 0), (E0 * MS, 0), ((E0 + 100) * MS, 100 * MS),
                    ((E0 + 300) * MS, 300 * MS)]
    # the default is the receive clock, as recorded
    times = [item[0] async for item in ReplaySource([path], None, ManualClock()).frames()]
    assert times == [T0 + 5_000, T0 + 5_001, T0 + 5_090, T0 + 5_350]


def test_clock_config(tmp_path: Path) -> None:
    assert load_config(write_config(tmp_path)).feed.clock == "receive"
    exchange = load_config(write_config(tmp_path, {"feed": {"clock": "exchange"}}))
    assert exchange.feed.clock == "exchange"
    with pytest.raises(ConfigError, match=r"feed\.clock: expected one of 'receive', 'exchange'"):
        load_config(write_config(tmp_path, {"feed": {"clock": "venue"}}))
    live = {"recordings": [], "url": "wss://example.invalid", "rest_url": "https://x.invalid",
            "clock": "exchange"}
    with pytest.raises(ConfigError, match=r"feed\.clock: expected 'receive' for a live feed"):
        load_config(write_config(tmp_path, {"feed": live}))
