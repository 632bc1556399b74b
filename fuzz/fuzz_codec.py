"""atheris harness: Binance market-data frames through the codec and the book.

The input is a sequence of frames separated by newlines, checked by
:func:`codec_oracle.frames` (the book's invariants after every frame, the compiled codec and
book against the Python ones, the WebSocket API parsers never raising). atheris instruments
the Python code only; ``speedups_target.py`` fuzzes the compiled code with its coverage.

    .venv/bin/python fuzz/fuzz_codec.py -atheris_runs=100000
    .venv/bin/python fuzz/fuzz_codec.py -max_total_time=150 fuzz/corpus/codec
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["mmdaemon"]):
    import codec_oracle

import seeds

TestOneInput = codec_oracle.frames  # atheris' conventional name


def main() -> None:
    atheris.Setup(seeds.prepare("codec", sys.argv), TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
