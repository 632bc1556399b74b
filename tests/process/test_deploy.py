"""The systemd unit (deploy/mmdaemon@.service) and the runbook (deploy/README.md).

Pure-Python checks read the unit with configparser: the life cycle, the hardening set and
the timeouts measured against the code's own bounds. With ``systemd-analyze`` installed
(Debian/Ubuntu package ``systemd``) the unit is also verified and its exposure score
checked. Without it those tests skip with the reason. The Prometheus rules and the Grafana
dashboard the runbook points to are tested in tests/process/test_prometheus_cockpit.py.
"""

from __future__ import annotations

import configparser
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mmdaemon import cli
from mmdaemon.config import ExchangeConfig
from mmdaemon.exchange.binance_gateway import GatewaySettings
from mmdaemon.exchange.credentials import load_credentials
from mmdaemon.feed.websocket import FeedSettings
from mmdaemon.readiness import START_RETRY_GRACE_S
from tests.conftest import REPO
from tests.helpers import systemd_credential

DEPLOY = REPO / "deploy"
UNIT = DEPLOY / "mmdaemon@.service"
RUNBOOK = DEPLOY / "README.md"
INSTALLED_BINARY = "/opt/mmdaemon/.venv/bin/mmdaemond"  # the launcher (early_signals)
MAX_EXPOSURE = 2.0


class _MultiDict(dict[str, Any]):
    """configparser storage that keeps every value of a repeated key.

    configparser collects each option's lines in a list before joining them; appending to
    the list of a key seen before makes ``SystemCallFilter=a`` + ``SystemCallFilter=b``
    read back as ``"a\\nb"`` instead of the last one winning.
    """

    def __setitem__(self, key: str, value: Any) -> None:
        if isinstance(value, list) and key in self:
            super().__getitem__(key).extend(value)
        else:
            super().__setitem__(key, value)


class _UnitParser(configparser.RawConfigParser):
    def optionxform(self, optionstr: str) -> str:
        return optionstr  # systemd keys are case-sensitive


def read_unit(path: Path = UNIT) -> configparser.RawConfigParser:
    parser = _UnitParser(strict=False, interpolation=None, dict_type=_MultiDict,
                         delimiters=("=",), empty_lines_in_values=False)
    parser.read_string(path.read_text(), source=str(path))
    return parser


def values(unit: configparser.RawConfigParser, section: str, key: str) -> list[str]:
    """Every value ``key`` has in ``section``, in file order ([] if absent)."""
    if not unit.has_option(section, key):
        return []
    return unit.get(section, key).split("\n")


def value(unit: configparser.RawConfigParser, section: str, key: str) -> str:
    found = values(unit, section, key)
    assert found, f"[{section}] {key}= is not set"
    return found[-1]


_SPAN_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "sec": 1.0, "min": 60.0, "m": 60.0,
               "h": 3600.0, "hr": 3600.0}


def seconds(span: str) -> float:
    """A systemd time span ("40s", "10min", "1min 30s", "90") in seconds."""
    total = 0.0
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", span)
    assert parts and re.fullmatch(r"(\s*\d+(?:\.\d+)?\s*[a-z]*)+\s*", span), span
    for number, unit in parts:
        total += float(number) * _SPAN_UNITS[unit or "s"]
    return total


@pytest.fixture(scope="module")
def unit() -> configparser.RawConfigParser:
    return read_unit()


# -- the unit, read as text --------------------------------------------------------------


def test_life_cycle(unit: configparser.RawConfigParser) -> None:
    assert value(unit, "Service", "Type") in {"notify", "notify-reload"}
    assert value(unit, "Service", "NotifyAccess") == "main"
    assert value(unit, "Service", "ExecStart") == (
        f"{INSTALLED_BINARY} --log-format json run --config /etc/mmdaemon/%i.toml")
    if value(unit, "Service", "Type") == "notify":  # systemd < 253: SIGHUP from ExecReload
        assert re.fullmatch(r"(/usr)?/bin/kill -(s )?(SIG)?HUP \$MAINPID",
                            value(unit, "Service", "ExecReload"))
    assert value(unit, "Service", "Restart") == "on-failure"
    assert seconds(value(unit, "Service", "RestartSec")) >= 1
    # a configuration error (exit 2) is not retried
    assert "2" in value(unit, "Service", "RestartPreventExitStatus").split()
    # a crash loop ends: StartLimit* belong to [Unit]
    assert 1 <= int(value(unit, "Unit", "StartLimitBurst")) <= 10
    assert seconds(value(unit, "Unit", "StartLimitIntervalSec")) > 0
    assert value(unit, "Service", "KillSignal") == "SIGTERM"
    assert value(unit, "Service", "SendSIGKILL") == "yes"
    assert value(unit, "Install", "WantedBy") == "multi-user.target"


def test_the_unit_pins_json_logs(unit: configparser.RawConfigParser) -> None:
    """The journal and the runbook's jq filters read JSON lines: ExecStart= asks for them
    in a form the daemon's own command line accepts, whatever stdout turns out to be."""
    binary, *argv = value(unit, "Service", "ExecStart").replace("%i", "btcusdt").split()
    assert binary == INSTALLED_BINARY
    args = cli._parser().parse_args(argv)
    assert args.command == "run" and args.log_format == "json"


def test_watchdog_and_timeouts_cover_the_code(unit: configparser.RawConfigParser) -> None:
    """Timeouts against the code's own bounds: a change there must revisit the unit."""
    watchdog = seconds(value(unit, "Service", "WatchdogSec"))
    assert 2 <= watchdog <= 60  # the daemon pings at half of it
    gw = GatewaySettings(ws_api_url="wss://example.invalid/ws-api/v3", client_prefix="mm")
    # stop: the daemon bounds the whole of it by exchange.stop_timeout_ms; 5 s on top for
    # the journal, the interpreter's exit and a loaded host, and no more: a stop the daemon
    # gave up on is not to be waited for any longer
    budget = ExchangeConfig().stop_timeout_ms / 1000
    stop = seconds(value(unit, "Service", "TimeoutStopSec"))
    assert budget + 5 <= stop <= budget + 10, (stop, budget)
    # start: one attempt that reports no failure may use the open timeout and the
    # subscription and reconciliation requests (the feed's connect and snapshot run beside
    # it); every failed attempt moves systemd's timeout past the next one, by no less
    start = seconds(value(unit, "Service", "TimeoutStartSec"))
    one_attempt = gw.open_timeout_s + 3 * gw.request_timeout_s
    assert start >= one_attempt + 30, start
    feed = FeedSettings(ws_url="wss://example.invalid", rest_url="https://example.invalid",
                        symbol="BTCUSDT")
    assert one_attempt + feed.open_timeout_s + feed.snapshot_timeout_s <= START_RETRY_GRACE_S
    assert seconds(value(unit, "Service", "TimeoutAbortSec")) > 0


def test_state_directory_and_credentials(unit: configparser.RawConfigParser,
                                         tmp_path: Path) -> None:
    assert value(unit, "Service", "StateDirectory") == "mmdaemon/%i"
    assert value(unit, "Service", "UMask") == "0077"
    credential = value(unit, "Service", "LoadCredential")
    assert credential == "binance:/etc/mmdaemon/credentials/%i.toml"
    # what the daemon reads with exchange.credentials = "binance" under that credential
    name = credential.split(":", 1)[0]
    systemd_credential(tmp_path, name, 'api_key = "k-123"\napi_secret = "s-456"\n')
    creds = load_credentials(name, {"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert (creds.api_key, creds.secret) == ("k-123", "s-456")


HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "ProtectClock": "yes",
    "ProtectHostname": "yes",
    "RestrictNamespaces": "yes",
    "LockPersonality": "yes",
    "RestrictRealtime": "yes",
    "SystemCallArchitectures": "native",
    "MemoryDenyWriteExecute": "yes",
    "CapabilityBoundingSet": "",
    "AmbientCapabilities": "",
    "DynamicUser": "yes",
    "RestrictSUIDSGID": "yes",
    "ProtectProc": "invisible",
    "ProcSubset": "pid",
    "PrivateUsers": "yes",
    "UMask": "0077",
}


@pytest.mark.parametrize("key", sorted(HARDENING))
def test_hardening_directive(unit: configparser.RawConfigParser, key: str) -> None:
    assert value(unit, "Service", key) == HARDENING[key]


def test_network_and_system_calls(unit: configparser.RawConfigParser) -> None:
    families = value(unit, "Service", "RestrictAddressFamilies").split()
    assert sorted(families) == ["AF_INET", "AF_INET6", "AF_UNIX"]
    filters = values(unit, "Service", "SystemCallFilter")
    allowed = [f for f in filters if not f.startswith("~")]
    denied = {g for f in filters if f.startswith("~") for g in f[1:].split()}
    assert allowed == ["@system-service"]
    assert {"@privileged", "@resources"} <= denied
    assert value(unit, "Service", "SystemCallErrorNumber") == "EPERM"


def test_log_rate_limits(unit: configparser.RawConfigParser) -> None:
    assert seconds(value(unit, "Service", "LogRateLimitIntervalSec")) == 30
    # above the daemon's assumed worst 30 s (~1,500 lines, see the unit's comment)
    assert int(value(unit, "Service", "LogRateLimitBurst")) >= 1500
    # the log is flushed per line: no PYTHONUNBUFFERED needed (or wanted)
    environment = " ".join(values(unit, "Service", "Environment"))
    assert "PYTHONUNBUFFERED" not in environment


def test_user_is_per_instance(unit: configparser.RawConfigParser) -> None:
    # a dynamic user per instance: one instance cannot read another's journal
    assert value(unit, "Service", "User") == "mmdaemon-%i"


# -- systemd-analyze ---------------------------------------------------------------------


def _systemd_analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze not installed (Debian/Ubuntu package 'systemd')")
    return tool


def _instance(tmp_path: Path) -> Path:
    """The template as instance mmdaemon@test.service, its ExecStart pointing at a binary
    that exists here (verify checks that executables exist): this venv's launcher."""
    binary = Path(sys.executable).with_name("mmdaemond")
    if not binary.is_file():
        binary = Path("/bin/true")
    text = UNIT.read_text().replace(INSTALLED_BINARY, str(binary))
    path = tmp_path / "mmdaemon@test.service"
    path.write_text(text)
    return path


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C", "SYSTEMD_COLORS": "0",
           "SYSTEMD_PAGER": "", "SYSTEMD_LOG_COLOR": "0"}
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120, env=env)


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    tool = _systemd_analyze()
    path = _instance(tmp_path)
    proc = _run([tool, "verify", "--man=no", str(path)], tmp_path)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    # nothing said about our unit: no unknown directive, bad value or missing executable
    # (lines about the host's own units, which verify loads as dependencies, are not ours)
    ours = [line for line in output.splitlines() if "mmdaemon" in line]
    assert not ours, output


def _security(tool: str, path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    proc = _run([tool, "security", "--offline=yes", *extra, str(path)], path.parent)
    if proc.returncode != 0 and "offline" in proc.stderr and "unrecognized" in proc.stderr:
        pytest.skip("this systemd-analyze has no --offline (systemd < 250)")
    return proc


def test_systemd_analyze_security_exposure(tmp_path: Path) -> None:
    tool = _systemd_analyze()
    path = _instance(tmp_path)
    proc = _security(tool, path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", proc.stdout)
    assert match, proc.stdout
    score = float(match.group(1))
    assert score <= MAX_EXPOSURE, proc.stdout
    # no worse than the unit's header says (a removed directive shows here first)
    stated = re.search(r"rates it (\d+(?:\.\d+)?)", UNIT.read_text())
    assert stated, "the unit's header should state its exposure score"
    assert score <= float(stated.group(1)), (score, proc.stdout)


def test_every_unset_directive_is_explained(tmp_path: Path) -> None:
    """What `security` still counts against the unit is named in its comments with a reason
    (a newer systemd may add checks: set the directive, or say why not)."""
    tool = _systemd_analyze()
    path = _instance(tmp_path)
    proc = _security(tool, path, "--json=short")
    if proc.returncode != 0 and "json" in proc.stderr:
        pytest.skip("this systemd-analyze cannot print the security table as JSON")
    assert proc.returncode == 0, proc.stderr
    table = json.loads(proc.stdout)
    unset = {row["name"].split("=", 1)[0] for row in table if row["set"] is False}
    text = UNIT.read_text()
    start = text.index("Not set, and why")
    reasons = text[start:text.index("[Install]", start)]
    unexplained = sorted(name for name in unset if f"{name}=" not in reasons)
    assert not unexplained, f"not set and not explained in the unit's comments: {unexplained}"


# -- the runbook -------------------------------------------------------------------------


def _code_text() -> str:
    return "\n".join(p.read_text() for p in sorted((REPO / "mmdaemon").rglob("*.py")))


def test_runbook_event_names_exist_in_the_code() -> None:
    """Every event name the runbook filters on or lists is one the daemon logs."""
    text = RUNBOOK.read_text()
    names = set(re.findall(r'\.event\s*==\s*"([a-z_]+)"', text))
    names |= set(re.findall(r'^\| `([a-z_]+)` \|', text, flags=re.MULTILINE))
    for listed in re.findall(r"\.event\s*\|\s*IN\(([^)]*)\)", text):
        names |= set(re.findall(r'"([a-z_]+)"', listed))
    assert len(names) >= 15, names
    code = _code_text()
    missing = sorted(n for n in names if f'"{n}"' not in code)
    assert not missing, f"the runbook cites events the code never logs: {missing}"


def test_runbook_metric_names_exist_in_the_code() -> None:
    text = RUNBOOK.read_text()
    metrics = (REPO / "mmdaemon" / "metrics.py").read_text()
    names = set(re.findall(r"\bmmdaemon_[a-z0-9_]+", text))
    assert len(names) >= 5, names

    def known(name: str) -> bool:
        candidates = {name}
        for suffix in ("_bucket", "_count", "_sum", "_total", "_info"):
            if name.endswith(suffix):
                candidates.add(name.removesuffix(suffix))
        return any(f'"{c}"' in metrics for c in candidates)

    missing = sorted(n for n in names if not known(n))
    assert not missing, f"the runbook cites metrics the daemon does not export: {missing}"


def test_the_runbook_points_to_the_rule_files_and_the_dashboard() -> None:
    """The rules live in deploy/prometheus/ (tested by promtool there:
    tests/process/test_prometheus_cockpit.py); the runbook names the files, says what each
    alert means, and embeds no copy that could drift from them."""
    text = RUNBOOK.read_text()
    for path in ("deploy/prometheus/mmdaemon.rules.yml", "deploy/prometheus/prometheus.yml",
                 "deploy/prometheus/mmdaemon.rules.test.yml", "deploy/grafana/mmdaemon.json"):
        assert path in text, f"the runbook does not name {path}"
        assert (REPO / path).is_file(), path
    assert not re.search(r"^\s*- (alert|record):", text, flags=re.MULTILINE), \
        "the runbook embeds rules: point to deploy/prometheus/mmdaemon.rules.yml instead"
    rules = (DEPLOY / "prometheus" / "mmdaemon.rules.yml").read_text()
    alerts = re.findall(r"^\s*- alert: (\S+)$", rules, flags=re.MULTILINE)
    assert len(alerts) >= 9, alerts
    unexplained = sorted(a for a in alerts if f"`{a}`" not in text)
    assert not unexplained, f"alerts the runbook does not explain: {unexplained}"
