"""atheris harness: TOML config files through ``load_config``.

The input is the file's bytes. ``load_config`` may raise :class:`~mmdaemon.config.ConfigError`
and nothing else; any other exception is a finding. Seeded with the shipped configs in
``config/``, with a dictionary of the config's section and key names.

    .venv/bin/python fuzz/fuzz_config.py -atheris_runs=100000
    .venv/bin/python fuzz/fuzz_config.py -max_total_time=150 fuzz/corpus/config
"""

from __future__ import annotations

import atexit
import shutil
import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["mmdaemon"]):
    from mmdaemon.config import Config, ConfigError
    from mmdaemon.config_file import load_config

import seeds

WORK = Path(tempfile.mkdtemp(prefix="fuzz-config-"))
atexit.register(shutil.rmtree, WORK, ignore_errors=True)
CONFIG = WORK / "mm.toml"


def TestOneInput(data: bytes) -> None:  # atheris' conventional name
    CONFIG.write_bytes(data)
    try:
        config = load_config(CONFIG)
    except ConfigError as exc:
        if not str(exc):
            raise AssertionError("ConfigError without a message") from exc
        return
    if not isinstance(config, Config):
        raise AssertionError(f"load_config returned {config!r}")


def main() -> None:
    atheris.Setup(seeds.prepare("config", sys.argv), TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
