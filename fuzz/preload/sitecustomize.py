"""Makes ``mmdaemon._speedups`` an instrumented build, in every Python process started
with this directory on ``PYTHONPATH`` (``make sanitize``, ``make fuzz-c``).

``MMDAEMON_SPEEDUPS_SO`` names the built file. It is loaded here, before anything imports
mmdaemon, and registered as ``mmdaemon._speedups``, so that ``mmdaemon.speedups`` (and every
test) finds it whatever the order of ``sys.path``: pytest puts the repository first, and the
repository holds the normal build. Child processes inherit the environment and load it too.
A file that cannot be loaded ends the process with status 3: the normal build must never
run in its place without a word.
"""

from __future__ import annotations

import importlib.util
import os
import sys


def _load(path: str) -> None:
    spec = importlib.util.spec_from_file_location("mmdaemon._speedups", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"not a loadable extension: {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules["mmdaemon._speedups"] = module


_path = os.environ.get("MMDAEMON_SPEEDUPS_SO", "")
if _path:
    try:
        _load(_path)
    except Exception as exc:  # site.py would only print a warning and go on
        sys.stderr.write(f"MMDAEMON_SPEEDUPS_SO={_path}: cannot load it ({exc}); build it "
                         "with `make sanitize` or `make fuzz-c`\n")
        sys.stderr.flush()
        os._exit(3)
