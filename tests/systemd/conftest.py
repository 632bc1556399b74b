"""Fixtures for the unit under a real systemd: one booted machine per session with mmdaemon
installed by the runbook's own install steps, and per test an instance of the unit
(``mmdaemon@<name>``) against its own ``mmdaemon sim`` on the host's loopback.

Only ``make test-systemd`` (``pytest -m systemd tests/systemd``) runs these; the normal
``make test`` deselects the ``systemd`` marker. Without root, the tools, the prepared cache,
or a container that boots, every test skips with the reason.
"""

from __future__ import annotations

import hashlib
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import REPO, SPOT_FILES
from tests.helpers import SIM_BALANCES
from tests.process.test_record_sim_cli import free_port
from tests.process.test_sim_processes import open_orders
from tests.process.test_wheel_install import _uv
from tests.systemd.machine import (
    Machine,
    MachineError,
    build_dist,
    missing_prerequisites,
    poll,
    root_dir,
    root_is_built,
    wheelhouse_dir,
)

RUNBOOK = REPO / "deploy" / "README.md"
KEY, SECRET = "sim-key", "sim-secret"  # made up: the sim's account, never a real one
CHECKOUT = "/checkout"  # where the runbook's /path/to/checkout is inside the machine
WHEELHOUSE = "/srv/wheelhouse"

# what the terminal summary prints: the machine's facts and every step's duration
FACTS: dict[str, str] = {}
TIMINGS: list[tuple[str, str, float]] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FACTS and not TIMINGS:
        return
    terminalreporter.section("the unit under a real systemd")
    for key, value in FACTS.items():
        terminalreporter.write_line(f"{key}: {value}")
    for test, step, seconds in TIMINGS:
        terminalreporter.write_line(f"{seconds:7.2f} s  {test}: {step}")


def runbook_install_script(version: str) -> str:
    """The runbook's "## Install" shell block, run as written but for three places where
    an operator acts: ``make ... dist`` ran on the host (its output is bind-mounted at
    /checkout/dist), ``V=`` is the version of the wheel built, and ``/path/to/checkout``
    is /checkout. ``$EDITOR`` comes from the environment."""
    text = RUNBOOK.read_text()
    found = re.search(r"^## Install\n.*?^```sh\n(.*?)^```", text, re.S | re.M)
    assert found, f"{RUNBOOK}: no ```sh block under '## Install'"
    script = found.group(1)
    make = re.compile(r"^make -C /path/to/checkout dist\b.*$", re.M)
    assert make.search(script), "the runbook no longer builds with `make ... dist`"
    script = make.sub("test -f /path/to/checkout/dist/requirements.txt  # made on the host",
                      script)
    assert re.search(r"^V=\S+", script, re.M), "the runbook no longer sets V="
    script = re.sub(r"^V=\S+", f"V={version}", script, flags=re.M)
    return script.replace("/path/to/checkout", CHECKOUT)


EDITOR = f"""#!/bin/sh
# the operator's $EDITOR in the runbook's install steps: the shipped example config already
# says what the unit needs; the credentials get the sim's made-up account
case "$1" in
/etc/mmdaemon/credentials/*) printf 'api_key = "{KEY}"\\napi_secret = "{SECRET}"\\n' > "$1" ;;
esac
"""


@pytest.fixture(scope="session")
def machine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Machine]:
    """The machine booted, mmdaemon installed in it by the runbook's install steps."""
    reason = missing_prerequisites()
    if reason:
        pytest.skip(reason)
    if not root_is_built():
        pytest.skip(f"no Debian 12 tree in {root_dir()}: `make test-systemd` builds it")
    tmp = tmp_path_factory.mktemp("systemd")
    started = time.monotonic()
    dist = build_dist(tmp / "dist", uv=_uv(), offline=True)
    TIMINGS.append(("setup", "make dist (host, offline)", time.monotonic() - started))
    wheels = wheelhouse_dir(dist / "requirements.txt")
    if not wheels.is_dir():
        pytest.skip(f"no wheelhouse for this requirements.txt ({wheels}): "
                    "`make test-systemd` downloads it")
    wheel = next(dist.glob("mmdaemon-*.whl"))
    version = wheel.name.split("-")[1]
    machine = Machine(root_dir(), tmp / "console.log", binds=[
        (dist, f"{CHECKOUT}/dist"), (REPO / "deploy", f"{CHECKOUT}/deploy"),
        (REPO / "config", f"{CHECKOUT}/config"), (wheels, WHEELHOUSE)])
    try:
        try:
            TIMINGS.append(("setup", "boot to is-system-running", machine.boot()))
        except MachineError as exc:
            pytest.skip(f"systemd-nspawn could not boot the container: {exc}")
        pid1 = machine.run("cat", "/proc/1/comm").stdout.strip()
        assert pid1 == "systemd", f"PID 1 of the container is {pid1!r}"
        FACTS["container"] = machine.run("sh", "-c", ". /etc/os-release && echo "
                                         "$PRETTY_NAME").stdout.strip()
        FACTS["PID 1"] = machine.run("systemctl", "--version").stdout.splitlines()[0]
        FACTS["python"] = machine.run("python3", "--version").stdout.strip()
        machine.write("/usr/local/sbin/runbook-editor", EDITOR, "0755")
        started = time.monotonic()
        # pip as the runbook writes it, offline from the wheelhouse through pip's own
        # environment variables
        done = machine.run("bash", "-euxo", "pipefail", "-c", runbook_install_script(version),
                           env=("EDITOR=/usr/local/sbin/runbook-editor", "PIP_NO_INDEX=1",
                                f"PIP_FIND_LINKS={WHEELHOUSE}",
                                "PIP_DISABLE_PIP_VERSION_CHECK=1"),
                           check=False, timeout=600)
        TIMINGS.append(("setup", "the runbook's install steps", time.monotonic() - started))
        assert done.returncode == 0, (f"the runbook's install steps failed "
                                      f"({done.returncode}):\n{done.stderr[-4000:]}")
        score = re.search(r"Overall exposure level for \S+: (\S+ \S+)", done.stdout)
        FACTS["systemd-analyze security (in the container)"] = (
            score.group(1) if score else "not printed")
        FACTS["installed"] = machine.run("/opt/mmdaemon/.venv/bin/mmdaemon",
                                         "--version").stdout.strip()
        yield machine
    finally:
        machine.shutdown()


# -- the venue -----------------------------------------------------------------------------


class Sim:
    """``mmdaemon sim`` on the host's 127.0.0.1:``port`` (the container shares the host's
    network), serving the bundled recordings at real time with order entry for the made-up
    account. Its output goes to a file: a pipe nobody reads would stall it."""

    def __init__(self, port: int, tmp: Path) -> None:
        self.port, self.tmp = port, tmp
        self.creds = tmp / "sim-credentials.toml"
        self.creds.write_text(f'api_key = "{KEY}"\napi_secret = "{SECRET}"\n')
        self.creds.chmod(0o600)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        out = self.tmp / f"sim-{time.monotonic_ns()}.log"
        with out.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mmdaemon", "sim", *SIM_BALANCES, *map(str, SPOT_FILES),
                 "--port", str(self.port), "--credentials", str(self.creds)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        poll(lambda: self._listening(out), 30, f"the sim listening on {self.port}")

    def _listening(self, out: Path) -> bool:
        assert self.proc is not None
        if b"sim_listening" in out.read_bytes():
            return True
        if self.proc.poll() is not None:
            raise AssertionError(f"the sim exited {self.proc.returncode}: "
                                 f"{out.read_text()[-2000:]}")
        return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def open_orders(self) -> list[object]:
        """Our account's open orders, asked of the venue itself."""
        return open_orders(self.port, KEY, SECRET)


# -- an instance of the unit ----------------------------------------------------------------


def stamp(text: str) -> datetime:
    """A systemctl ``--timestamp=us+utc`` value or a daemon log ``timestamp`` as a UTC
    datetime (microseconds, both from the same kernel clock)."""
    if text.endswith("Z"):
        return datetime.fromisoformat(text[:-1]).replace(tzinfo=UTC)
    return datetime.strptime(text, "%a %Y-%m-%d %H:%M:%S.%f UTC").replace(tzinfo=UTC)


SHOWN = ("ActiveState", "SubState", "StatusText", "MainPID", "NRestarts", "Result",
         "ActiveEnterTimestamp", "ExecMainStartTimestamp")


@dataclass
class Instance:
    """``mmdaemon@<name>`` in the machine, configured as the runbook's "The local sim"
    section does (config/sim.toml with the state dir and credentials the unit gives), plus
    a metrics port and debug logs; its venue is ``sim``."""

    machine: Machine
    name: str
    sim: Sim
    metrics_port: int
    test: str
    started: float = field(default_factory=time.monotonic)

    @property
    def unit(self) -> str:
        return f"mmdaemon@{self.name}.service"

    @property
    def config_path(self) -> str:
        return f"/etc/mmdaemon/{self.name}.toml"

    def config_text(self, base_bps: str = "1.0") -> str:
        text = (REPO / "config" / "sim.toml").read_text()
        # the runbook's sed for an instance of the real unit against the sim
        text = re.sub(r"(?m)^dir = .*", f'dir = "/var/lib/mmdaemon/{self.name}"', text)
        text = re.sub(r"(?m)^credentials = .*", 'credentials = "binance"', text)
        text = text.replace("9443", str(self.sim.port))
        # a venue that comes back is found within a second (the start-through-outage step)
        text = re.sub(r"(?m)^backoff_max_ms = .*", "backoff_max_ms = 1000", text)
        text = re.sub(r"(?m)^base_bps = .*", f"base_bps = {base_bps}", text)
        return text + (f"\n[metrics]\nport = {self.metrics_port}\n\n"
                       '[logging]\nlevel = "debug"\n')

    def install(self) -> None:
        self.machine.write(self.config_path, self.config_text(), "0644")
        self.machine.write(f"/etc/mmdaemon/credentials/{self.name}.toml",
                           f'api_key = "{KEY}"\napi_secret = "{SECRET}"\n', "0600")

    def step(self, what: str, since: float) -> float:
        """Record how long ``what`` took (for the summary); now."""
        now = time.monotonic()
        TIMINGS.append((self.test, what, now - since))
        return now

    def systemctl(self, *args: str, check: bool = True,
                  timeout: float = 180.0) -> subprocess.CompletedProcess[str]:
        return self.machine.run("systemctl", *args, check=check, timeout=timeout)

    def show(self) -> dict[str, str]:
        """systemd's view: ``systemctl show -p ActiveState,SubState,StatusText,...``."""
        out = self.machine.run("systemctl", "show", "--timestamp=us+utc", "-p",
                               ",".join(SHOWN), self.unit).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def journal(self) -> list[dict[str, Any]]:
        """Every journal entry of the unit (``journalctl -u ... -o json``: the MESSAGE is
        the line ``-o cat`` prints, with the sender's _PID)."""
        out = self.machine.run("journalctl", "--no-pager", "-u", self.unit, "-o", "json",
                               "--output-fields=MESSAGE,_PID").stdout
        return [orjson.loads(line) for line in out.splitlines() if line.strip()]

    def events(self, pid: int | str | None = None) -> list[dict[str, Any]]:
        """The daemon's JSON log lines (of process ``pid`` if given), in order."""
        found = []
        for entry in self.journal():
            message = entry.get("MESSAGE")
            if not isinstance(message, str) or not message.startswith("{"):
                continue
            if pid is not None and entry.get("_PID") != str(pid):
                continue
            found.append(orjson.loads(message))
        return found

    def manager_lines(self) -> list[str]:
        """systemd's own lines about the unit ("Failed with result 'watchdog'", ...)."""
        return [e["MESSAGE"] for e in self.journal()
                if e.get("_PID") == "1" and isinstance(e.get("MESSAGE"), str)]

    def event(self, name: str, pid: int | str | None = None,
              **fields: Any) -> dict[str, Any] | None:
        """The first ``name`` event (of ``pid``) whose fields include ``fields``."""
        for e in self.events(pid):
            if e.get("event") == name and all(e.get(k) == v for k, v in fields.items()):
                return e
        return None

    def wait_event(self, name: str, pid: int | str | None = None, timeout: float = 30.0,
                   **fields: Any) -> dict[str, Any]:
        return poll(lambda: self.event(name, pid, **fields), timeout,
                    f"{name} {fields} in the journal of {self.unit}\n{self.context()}",
                    interval=0.2)

    def wait_show(self, timeout: float, what: str, **want: str) -> dict[str, str]:
        """systemd's view once every property in ``want`` has that value (a value ending
        in ``*`` is a prefix)."""

        def matches() -> dict[str, str] | None:
            shown = self.show()
            for key, value in want.items():
                got = shown.get(key, "")
                if not (got.startswith(value[:-1]) if value.endswith("*") else got == value):
                    return None
            return shown

        return poll(matches, timeout, f"{what}: {want}\n{self.context()}", interval=0.2)

    def metrics(self) -> dict[str, float]:
        """The daemon's Prometheus samples by name with labels, scraped from the host."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:  # loopback only
            text = response.read().decode()
        samples = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                samples[name] = float(value)
        return samples

    def scrape(self) -> dict[str, float] | None:
        try:
            return self.metrics()
        except OSError:
            return None

    def context(self) -> str:
        """systemd's view and the journal's tail, for a failure message."""
        try:
            lines = [e.get("MESSAGE") for e in self.journal()[-25:]]
            return f"show: {self.show()}\njournal tail:\n" + "\n".join(map(str, lines))
        except (MachineError, subprocess.TimeoutExpired) as exc:
            return f"(no context: {exc})"

    def start(self) -> dict[str, str]:
        """``systemctl start`` (returns once the unit is active or failed); systemd's view."""
        begin = time.monotonic()
        done = self.systemctl("start", self.unit, check=False)
        assert done.returncode == 0, f"systemctl start: {done.stderr}\n{self.context()}"
        self.step("systemctl start -> returned", begin)
        return self.show()

    def quoting(self, timeout: float = 30.0) -> list[object]:
        """Wait until the venue holds an order of ours; the open orders."""
        return poll(lambda: self.sim.open_orders() or None, timeout,
                    f"an open order of {self.unit} at the sim\n{self.context()}")


def instance_name(test: str) -> str:
    """A valid instance name (the unit's rules: [a-z0-9_-], at most 22) unique per test."""
    slug = re.sub(r"[^a-z0-9]+", "-", test.removeprefix("test_").lower()).strip("-")
    if len(slug) > 22:
        slug = f"{slug[:15]}-{hashlib.sha256(slug.encode()).hexdigest()[:6]}"
    return slug


@pytest.fixture
def instance(machine: Machine, tmp_path: Path,
             request: pytest.FixtureRequest) -> Iterator[Instance]:
    """A fresh instance of the unit (named after the test) and its sim, which the test
    starts when it wants it. Afterwards the unit is stopped before its venue."""
    name = instance_name(request.node.name)
    sim = Sim(free_port(), tmp_path)
    inst = Instance(machine, name, sim, free_port(), request.node.name)
    inst.install()
    try:
        yield inst
    finally:
        inst.systemctl("stop", inst.unit, check=False, timeout=120)
        inst.systemctl("reset-failed", inst.unit, check=False)
        sim.stop()
