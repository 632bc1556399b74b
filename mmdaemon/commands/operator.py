"""``mmdaemon kill`` and ``mmdaemon rearm``: the operator's switch, sent to the instance that
holds a state directory (a signal, or a latch on disk when none runs), or with ``--global``
to every instance of the desk through Redis."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from mmdaemon import log
from mmdaemon.clock import SystemClock
from mmdaemon.config import Config


def signal_instance(config: Config, command: str, sig: signal.Signals) -> int:
    """``mmdaemon kill``/``rearm``: send ``sig`` to the process that holds the lock on the
    config's state directory (:mod:`mmdaemon.statedir`), whatever the pid file says; the
    pid file is only cross-checked. 0 sent; 1 no instance is running there (the pid file,
    if any, is stale); 2 who holds the lock cannot be told from here."""
    from mmdaemon.statedir import LOCK_FILE, PID_FILE, StateDirLocked, signal_holder

    state_dir = Path(config.state.dir)
    lock_path = state_dir / LOCK_FILE
    pid_path = state_dir / PID_FILE
    named: int | None = None
    try:
        named = int(pid_path.read_text().strip())
        pid_file = f"the pid file {pid_path} names pid {named}"
    except FileNotFoundError:
        pid_file = f"no pid file {pid_path}"
    except (OSError, ValueError) as exc:  # garbled: the lock decides anyway
        pid_file = f"unusable pid file {pid_path}: {exc}"
    try:
        pid = signal_holder(state_dir, sig)
    except (OSError, StateDirLocked) as exc:
        print(f"mmdaemon {command}: cannot tell which process holds {lock_path}: {exc} "
              f"({pid_file})", file=sys.stderr)
        return 2
    if pid is None:
        stale = ("no pid file" if pid_file.startswith("no pid file") else
                 f"stale pid file names pid {named}" if named is not None else pid_file)
        print(f"mmdaemon {command}: no instance is running on {state_dir} ({stale})",
              file=sys.stderr)
        if sig is signal.SIGUSR1:  # between runs, starting, restarting: the next start
            return kill_offline(state_dir, command)
        return 1
    if pid == 0:
        print(f"mmdaemon {command}: {lock_path} is held by a process outside this pid "
              f"namespace: run the command where the instance runs", file=sys.stderr)
        return 2
    if named != pid:  # the lock decided; say what the pid file got wrong
        print(f"mmdaemon {command}: {pid_file}; pid {pid} holds {lock_path}", file=sys.stderr)
    print(f"sent {sig.name} to pid {pid}")
    return 0


def kill_offline(state_dir: Path, command: str) -> int:
    """``mmdaemon kill`` with no instance running: latch the kill in the state directory,
    so the next start (systemd's restart, an instance still starting) is KILLED. Exit 1
    all the same: no process was signalled."""
    from mmdaemon.latch import latch_kill_offline
    from mmdaemon.statedir import StateDirLocked, signal_holder

    if not state_dir.is_dir():  # no instance ever ran here (a config for another host?)
        return 1
    try:
        path = latch_kill_offline(state_dir, "operator_kill_switch", SystemClock().wall_ns())
    except StateDirLocked:  # an instance took the directory meanwhile: signal that one
        pid = signal_holder(state_dir, signal.SIGUSR1)
        if pid:
            print(f"sent SIGUSR1 to pid {pid} (it started meanwhile)")
            return 0
        print(f"mmdaemon {command}: {state_dir} is busy; the kill is not latched",
              file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"mmdaemon {command}: cannot latch the kill in {state_dir}: {exc}",
              file=sys.stderr)
        return 2
    print(f"mmdaemon {command}: the kill is latched in {path}: the next start is KILLED "
          f"(no instance runs: nothing to confirm)", file=sys.stderr)
    return 1


def global_switch(config: Config, command: str, note: str, log_format: str = "auto") -> int:
    """``mmdaemon kill --global`` / ``rearm --global``: set (or clear) the desk's latched
    kill key in Redis and publish it on the control channel. 0 done, 1 Redis unreachable
    or refused, 2 no usable ``[firm]`` section. ``log_format``: ``--log-format``."""
    from mmdaemon.exchange.credentials import CredentialsError, load_redis_password
    from mmdaemon.risk.firm import Keys
    from mmdaemon.risk.redis_bus import BUS_ERRORS, global_kill, global_rearm

    firm = config.firm
    if not firm.enabled:
        print(f"mmdaemon {command} --global: config error: firm.enabled: expected true (the "
              f"global switch lives in the firm risk bus's Redis)", file=sys.stderr)
        return 2
    # the log on stderr: stdout says what was done
    log.configure(config.logging.level, sys.stderr.buffer, log_format=log_format)
    logger = log.get_logger(command=f"{command} --global")
    keys = Keys(firm.namespace, firm.desk)
    try:
        password = load_redis_password(firm.password,
                                       allow_readable=firm.allow_readable_password)
    except CredentialsError as exc:
        print(f"mmdaemon {command} --global: {exc}", file=sys.stderr)
        return 2
    try:
        if command == "kill":
            receivers, sent_ns = asyncio.run(global_kill(firm, password, note))
            logger.warning("global_kill_set", key=keys.kill, channel=keys.channel,
                           receivers=receivers, note=note, sent_ns=sent_ns)
            print(f"global kill switch latched: {keys.kill} set, 'kill' published on "
                  f"{keys.channel} to {receivers} listening instance(s)")
        else:
            was_set, receivers = asyncio.run(global_rearm(firm, password))
            logger.warning("global_kill_cleared", key=keys.kill, channel=keys.channel,
                           receivers=receivers, was_set=was_set)
            print(f"global kill switch cleared: {keys.kill} "
                  f"{'deleted' if was_set else 'was not set'}, 'rearm' published on "
                  f"{keys.channel} to {receivers} listening instance(s) (each re-arms if the "
                  f"global switch killed it and no breaker holds)")
    except BUS_ERRORS as exc:
        logger.error("global_switch_failed", command=command, url=firm.redis_url,
                     error=repr(exc))
        print(f"mmdaemon {command} --global: Redis at {firm.redis_url} unreachable or "
              f"refused: {exc!r}; the switch is NOT confirmed", file=sys.stderr)
        return 1
    return 0
