"""How many start-ups a SIGUSR1 kills by its default action, by when it is sent.

Two moments: right after ``subprocess.Popen`` returns (the child's execve has committed,
its new image may not have run one instruction yet), and right after the launcher's first
instruction (SIGUSR1 shows up blocked in /proc/PID/status). Before the launcher, the
console script ``mmdaemon`` is measured the same way for comparison.

    .venv/bin/python bench/early_signals.py --trials 50
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

USR1 = 1 << (signal.SIGUSR1 - 1)


def held(pid: int) -> bool:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("SigBlk:", "SigCgt:")) and int(line.split()[1], 16) & USR1:
            return True
    return False


def trial(binary: Path, after_first_instruction: bool) -> int:
    """The exit status of ``binary run`` (a missing config: exit 2) signalled at the chosen
    moment."""
    proc = subprocess.Popen([str(binary), "run", "--config", "/nonexistent.toml"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if after_first_instruction:
        while not held(proc.pid) and proc.poll() is None:
            pass
    os.kill(proc.pid, signal.SIGUSR1)
    return proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=50)
    args = parser.parse_args()
    bin_dir = Path(sys.executable).parent
    for name, after in (("mmdaemon", False), ("mmdaemond", False), ("mmdaemond", True)):
        codes = Counter(trial(bin_dir / name, after) for _ in range(args.trials))
        deaths = codes.get(-signal.SIGUSR1, 0)
        moment = "after its first instruction" if after else "as Popen returns"
        print(f"{name:9} signalled {moment:28}: {deaths}/{args.trials} killed by SIGUSR1 "
              f"(exit codes {dict(codes)})")


if __name__ == "__main__":
    main()
