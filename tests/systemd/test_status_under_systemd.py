"""`mmdaemon status` and the confirmed `mmdaemon kill` as the runbook runs them: as root in
the machine, against the unit's instance (a DynamicUser, its state directory 0700 and its
control socket 0600), trading on the sim."""

from __future__ import annotations

import json
import re

import pytest

from tests.systemd.conftest import Instance
from tests.systemd.test_unit_under_systemd import running

pytestmark = pytest.mark.systemd

MMDAEMON = "/opt/mmdaemon/.venv/bin/mmdaemon"


def test_status_and_a_confirmed_kill_as_root_reach_the_dynamic_user_instance(
        instance: Instance) -> None:
    pid = running(instance)["MainPID"]
    run = instance.machine.run
    done = run(MMDAEMON, "status", "--config", instance.config_path, "--json", check=False)
    assert done.returncode == 0, (done.stdout, done.stderr)
    status = json.loads(done.stdout)
    assert status["instance"] == "running" and str(status["pid"]) == pid, status
    assert status["open_orders"]["venue"] > 0, status
    sock = f"/var/lib/mmdaemon/{instance.name}/control.sock"
    mode = run("stat", "-L", "-c", "%a %U %F", sock).stdout.split(maxsplit=2)
    assert mode[0] == "600" and mode[1] != "root" and mode[2].strip() == "socket", mode
    done = run(MMDAEMON, "kill", "--config", instance.config_path, check=False)
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert re.search(rf"kill confirmed in \d+ ms: pid {pid} is KILLED", done.stdout), done.stdout
    assert instance.sim.open_orders() == []
    instance.systemctl("stop", instance.unit)
    done = run(MMDAEMON, "status", "--config", instance.config_path, check=False)
    assert done.returncode == 3, (done.stdout, done.stderr)
    assert "stopped, last journal record" in done.stdout and "LATCHED" in done.stdout
