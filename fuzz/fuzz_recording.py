"""atheris harness: recording files through ``read_recording``.

The first input byte says how the rest is stored (0 as it is, 1 gzip, 2 gzip cut short,
3 two files split at the first NUL pair); then every item is read. Only
:class:`~mmdaemon.feed.recording.RecordingError` may escape, and only for damaged
compression; items are ``(recv_ns, frame)`` with an int64 time and a non-empty frame, or
:class:`~mmdaemon.model.Malformed`.

    .venv/bin/python fuzz/fuzz_recording.py -atheris_runs=100000
    .venv/bin/python fuzz/fuzz_recording.py -max_total_time=150 fuzz/corpus/recording
"""

from __future__ import annotations

import atexit
import gzip
import shutil
import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["mmdaemon"]):
    from mmdaemon.feed.recording import GZIP_MAGIC, RecordingError, read_recording
    from mmdaemon.model import Malformed

import seeds

WORK = Path(tempfile.mkdtemp(prefix="fuzz-recording-"))
atexit.register(shutil.rmtree, WORK, ignore_errors=True)
FILES = [WORK / "a.gz", WORK / "b.gz"]


def contents(data: bytes) -> list[bytes]:
    mode, body = (data[0] % 4, data[1:]) if data else (0, b"")
    if mode == 1:
        return [gzip.compress(body, mtime=0)]
    if mode == 2:
        packed = gzip.compress(body, mtime=0)
        return [packed[: len(packed) // 2]]
    if mode == 3:
        first, _, second = body.partition(b"\x00\x00")
        return [first, second]
    return [body]


def TestOneInput(data: bytes) -> None:  # atheris' conventional name
    files = contents(data)
    for path, content in zip(FILES, files, strict=False):
        path.write_bytes(content)
    try:
        for item in read_recording(FILES[: len(files)]):
            if isinstance(item, Malformed):
                if type(item.reason) is not str or type(item.recv_ns) is not int:
                    raise AssertionError(f"bad Malformed {item!r}")
                continue
            recv_ns, frame = item
            if type(recv_ns) is not int or not 0 <= recv_ns < 2**64:
                raise AssertionError(f"bad recv_ns {recv_ns!r}")
            if type(frame) is not bytes or not frame or frame.endswith((b"\r", b"\n")):
                raise AssertionError(f"bad frame {frame!r}")
    except RecordingError:
        # only damaged compression may stop a replay: plain text and a gzip that is merely
        # cut short never do
        whole_or_cut_gzip = bool(data) and data[0] % 4 in (1, 2)
        if whole_or_cut_gzip or not any(c.startswith(GZIP_MAGIC) for c in files):
            raise


def main() -> None:
    atheris.Setup(seeds.prepare("recording", sys.argv), TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
