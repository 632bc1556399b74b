"""Recordings no command can use, shared by the verify-book and replay tests."""

from __future__ import annotations

import random
from pathlib import Path

from tests.conftest import SPOT_FILES

UNUSABLE = ["random_bytes", "empty", "missing", "corrupt_gzip_body", "no_decodable_frame"]


def write_unusable(case: str, path: Path) -> None:
    """Write the unusable recording ``case`` (one of :data:`UNUSABLE`) at ``path``."""
    if case == "random_bytes":
        path.write_bytes(random.Random(15).randbytes(1 << 20))  # 1 MB
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "corrupt_gzip_body":
        data = bytearray(SPOT_FILES[0].read_bytes())
        for i in range(len(data) // 2, len(data) // 2 + 64):
            data[i] ^= 0x5A  # damage in the middle: found by zlib or the CRC, not a cut
        path.write_bytes(bytes(data))
    elif case == "no_decodable_frame":  # the line shape, but nothing Binance sends
        path.write_bytes(b"".join(b'%d {"hello":%d}\n' % (10**18 + i, i) for i in range(50)))
    else:
        assert case == "missing"  # nothing written


def messages(stderr: str) -> list[str]:
    """The lines of stderr that are not JSON log lines: what a person reads."""
    return [line for line in stderr.splitlines() if not line.startswith("{")]
