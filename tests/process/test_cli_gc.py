"""What a command leaves to the garbage collector: the process's own command line (the
console script, ``python -m mmdaemon``) freezes what is left when it returns, so that the
interpreter's shutdown does not walk every imported object in its full collections; a
caller that hands ``main`` its arguments keeps its collector as it was, and so does a
process whose service failed to start (a sweep's worker runs the next one)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

from tests.helpers import first_lines

# argv[1]: "own" (main() reads sys.argv) or "given" (main(args)); argv[2]: a state directory
# to lock first, or "-"; the rest: the command line. The freeze count is read at exit, after
# main has returned, before the interpreter's own collections (atexit runs first).
PROBE = """
import atexit, gc, os, sys
import orjson
from mmdaemon.cli import main
how, lock, args = sys.argv[1], sys.argv[2], sys.argv[3:]
if lock != "-":
    from pathlib import Path
    from mmdaemon.statedir import lock_state_dir
    held = lock_state_dir(Path(lock))
atexit.register(lambda: os.write(2, orjson.dumps({"frozen": gc.get_freeze_count()}) + b"\\n"))
sys.argv[1:] = args
raise SystemExit(main() if how == "own" else main(args))
"""


def _probe(how: str, lock: str, *args: str) -> tuple[int, bytes, int]:
    """(exit status, stdout, objects frozen at exit) of ``main`` run on ``args``."""
    proc = subprocess.run([sys.executable, "-c", PROBE, how, lock, "--log-level", "error",
                           *args], capture_output=True, timeout=120, check=False)
    return proc.returncode, proc.stdout, orjson.loads(proc.stderr.splitlines()[-1])["frozen"]


def test_the_command_line_freezes_what_is_left_for_the_exit_a_caller_does_not(
    tmp_path: Path,
) -> None:
    recording = str(first_lines(tmp_path / "short.gz", 2_000))
    code, out, frozen = _probe("own", "-", "replay", recording, "--json")
    assert code == 0 and orjson.loads(out)["frames"] > 1_000
    assert frozen > 10_000  # the imported modules' objects, at least
    code, out, frozen = _probe("given", "-", "replay", recording, "--json")
    assert code == 0 and orjson.loads(out)["frames"] > 1_000
    assert frozen == 0


def test_a_service_that_fails_to_start_leaves_nothing_frozen(tmp_path: Path) -> None:
    """A service freezes what its start-up left once it is up (Service.run) and unfreezes
    it when it stops; one that fails before that (its state directory taken) leaves
    nothing frozen for whatever the process runs next (a sweep worker's next run)."""
    recording = str(first_lines(tmp_path / "short.gz", 2_000))
    state = tmp_path / "state"
    code, out, frozen = _probe("given", str(state), "replay", recording, "--json",
                               "--state-dir", str(state))
    assert code == 2 and out == b""  # the state directory is in use
    assert frozen == 0
