"""A Debian 12 machine with systemd as PID 1, booted by ``systemd-nspawn``, for running the
unit (deploy/mmdaemon@.service) under the real service manager.

The tree is ``debootstrap --variant=minbase`` of bookworm plus what the unit and the runbook
need (:data:`PACKAGES`), built once into ``.cache/systemd/root`` (gitignored) and reused
while :data:`RECIPE` is unchanged. The wheelhouse beside it holds the locked runtime
dependencies of ``dist/requirements.txt`` downloaded by the container's own pip (so the
markers and wheel tags are those of the Python that installs them: Debian 12's 3.11.2 needs
``async-timeout``, a newer 3.11 does not), one directory per requirements hash. Building
both needs the network (Debian's mirror, PyPI): ``python -m tests.systemd.machine prepare``,
which ``make test-systemd`` runs; the tests themselves use loopback only.

Each boot is ``--volatile=overlay``: the cached tree stays read-only under a tmpfs overlay,
so every run starts from the same pristine OS and leaves nothing behind. The machine shares
the host's network namespace (no ``--private-network``): the sim a test runs on the host's
127.0.0.1 is the venue the daemon in the container reaches, and the daemon's metrics port
is scraped from the host. ``--register=no --keep-unit`` because the host need not run
systemd (no machined, no bus): commands enter the container with ``nsenter`` into the
namespaces of its PID 1, where ``systemctl`` and ``journalctl`` talk to the container's
systemd, as an operator's shell on that host would.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from tests.conftest import REPO

CACHE = REPO / ".cache" / "systemd"
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"  # the host's apt source
# procps: /bin/kill, which the unit's ExecReload= runs (not in a minimal image)
PACKAGES = ("systemd", "systemd-sysv", "dbus", "python3-venv", "procps")
RECIPE = (f"debootstrap --variant=minbase --include={','.join(PACKAGES)} {SUITE} {MIRROR}\n")
# the environment of every command run inside: nothing of the host's leaks in (its
# REQUESTS_CA_BUNDLE or PIP_* would point pip at host paths)
INSIDE_ENV = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
              "HOME=/root", "LANG=C.UTF-8")
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")

T = TypeVar("T")


class MachineError(RuntimeError):
    """The machine could not be built, booted or driven; the message says which step."""


def poll(probe: Callable[[], T | None], timeout: float, what: str,
         interval: float = 0.1) -> T:
    """``probe()`` until it returns something other than None (or False); that value.

    Raises AssertionError naming ``what`` after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        time.sleep(interval)  # the poll interval


def missing_prerequisites() -> str | None:
    """Why this host cannot run the machine (not root, tools absent), or None."""
    if os.geteuid() != 0:
        return "systemd-nspawn boots a container only as root"
    for tool, package in (("systemd-nspawn", "systemd-container"),
                          ("debootstrap", "debootstrap"), ("nsenter", "util-linux")):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian package {package})"
    return None


# -- the cached tree and wheelhouse ------------------------------------------------------


def root_dir() -> Path:
    return CACHE / "root"


def root_is_built() -> bool:
    """The cached tree exists and was made by the current :data:`RECIPE`."""
    stamp = CACHE / "root.recipe"
    return root_dir().is_dir() and stamp.is_file() and stamp.read_text() == RECIPE


def build_root() -> Path:
    """The cached tree, debootstrapped now unless :func:`root_is_built` (about 70 s and
    ~300 MB; the network). A partial tree from an interrupted build is removed first."""
    if root_is_built():
        return root_dir()
    CACHE.mkdir(parents=True, exist_ok=True)
    building = CACHE / "root.new"
    for stale in (building, root_dir(), CACHE / "root.recipe"):
        if stale.is_dir():
            shutil.rmtree(stale)
        elif stale.exists():
            stale.unlink()
    started = time.monotonic()
    done = subprocess.run(["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}",
                           SUITE, str(building), MIRROR], capture_output=True, text=True)
    if done.returncode != 0:
        raise MachineError(f"debootstrap failed ({done.returncode}):\n{done.stdout[-3000:]}"
                           f"\n{done.stderr[-3000:]}")
    building.rename(root_dir())
    (CACHE / "root.recipe").write_text(RECIPE)
    print(f"debootstrap: {time.monotonic() - started:.0f} s -> {root_dir()}")
    return root_dir()


def wheelhouse_dir(requirements: Path) -> Path:
    """Where the wheels of exactly this ``requirements.txt`` are kept (keyed by its pins and
    hashes: the header comment names the output path, which differs per build)."""
    pins = [line for line in requirements.read_text().splitlines()
            if not line.lstrip().startswith("#")]
    digest = hashlib.sha256("\n".join(pins).encode()).hexdigest()[:16]
    return CACHE / f"wheelhouse-{digest}"


def build_wheelhouse(requirements: Path) -> Path:
    """The wheels ``requirements`` pins (hash-checked), downloaded by the container's pip
    in a one-shot nspawn of the cached tree (the network). Kept per requirements hash;
    those of other hashes are removed."""
    target = wheelhouse_dir(requirements)
    if target.is_dir():
        return target
    for old in CACHE.glob("wheelhouse-*"):
        shutil.rmtree(old)
    building = Path(tempfile.mkdtemp(prefix="wheelhouse.", dir=CACHE))
    script = ("python3 -m venv /tmp/download && /tmp/download/bin/pip download --quiet "
              "--disable-pip-version-check --require-hashes -r /run/requirements.txt "
              "-d /run/wheelhouse")
    args = ["systemd-nspawn", "--quiet", "--register=no", "--keep-unit", "--volatile=overlay",
            f"--directory={root_dir()}", f"--bind={building}:/run/wheelhouse",
            f"--bind-ro={requirements.resolve()}:/run/requirements.txt"]
    if HOST_CA.is_file():  # the host's trust store: it may hold an intercepting proxy's CA
        args += [f"--bind-ro={HOST_CA}:/run/host-ca.crt", "--setenv=PIP_CERT=/run/host-ca.crt"]
    for name in ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY",
                 "NO_PROXY"):
        if name in os.environ:
            args.append(f"--setenv={name}={os.environ[name]}")
    done = subprocess.run([*args, "/bin/sh", "-c", script], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        shutil.rmtree(building)
        raise MachineError(f"pip download in the container failed ({done.returncode}):\n"
                           f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    building.rename(target)
    return target


def build_dist(dest: Path, uv: str | None = None, offline: bool = False) -> Path:
    """``make dist DIST=dest``: the wheel, the sdist and requirements.txt (the runbook's
    first install step, on the host); ``dest``."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT")}
    env["UV_PYTHON_DOWNLOADS"] = "never"
    if offline:
        env["UV_OFFLINE"] = "1"
    args = ["make", "-C", str(REPO), "dist", f"DIST={dest}"] + ([f"UV={uv}"] if uv else [])
    done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    if done.returncode != 0:
        raise MachineError(f"make dist failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return dest


def prepare() -> int:
    """What needs the network, done once: the tree, the wheelhouse. Not root: nothing to
    do (the tests skip with the reason); 0. A failure as root: non-zero."""
    reason = missing_prerequisites()
    if reason:
        print(f"tests/systemd: not prepared: {reason}; its tests will skip")
        return 0
    started = time.monotonic()
    build_root()
    with tempfile.TemporaryDirectory() as tmp:
        dist = build_dist(Path(tmp) / "dist")
        wheels = build_wheelhouse(dist / "requirements.txt")
    print(f"tests/systemd: prepared in {time.monotonic() - started:.0f} s: {root_dir()}, "
          f"{wheels}")
    return 0


# -- the booted machine ------------------------------------------------------------------


class Machine:
    """The cached tree booted with systemd as PID 1 (``systemd-nspawn --boot``).

    ``binds`` are (host path, container path) pairs mounted read-only. :meth:`run` executes
    a command inside (every namespace of the container's PID 1, a clean environment).
    """

    def __init__(self, root: Path, log: Path, binds: Sequence[tuple[Path, str]] = (),
                 name: str = "mmdaemon-test") -> None:
        self.root, self.log_path, self.name = root, log, name
        self.binds = list(binds)
        self.proc: subprocess.Popen[bytes] | None = None
        self.leader = 0  # the container's PID 1, as the host sees it

    def boot(self, timeout: float = 90.0) -> float:
        """Start the container and wait until its systemd reports the boot finished
        (``running``, or ``degraded`` with the failed units named); the seconds it took.
        MachineError with the console log if it does not come up."""
        args = ["systemd-nspawn", "--quiet", "--boot", "--register=no", "--keep-unit",
                "--volatile=overlay", f"--directory={self.root}", f"--machine={self.name}",
                "--console=pipe"]
        args += [f"--bind-ro={host}:{inside}" for host, inside in self.binds]
        started = time.monotonic()
        with self.log_path.open("wb") as log:
            # its own session: a Ctrl-C of pytest reaches us, and we stop it in order
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self.leader = poll(self._find_leader, timeout, "the container's PID 1 started")
            state = poll(self._booted, timeout, "the container's systemd finished booting")
        except AssertionError as exc:
            raise MachineError(f"{exc}\n{self.console_tail()}") from None
        if state == "degraded":
            failed = self.run("systemctl", "--failed", "--no-legend", check=False).stdout
            print(f"container boot degraded; failed units:\n{failed}")
        return time.monotonic() - started

    def _find_leader(self) -> int | None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise MachineError(f"systemd-nspawn exited {self.proc.returncode}\n"
                               f"{self.console_tail()}")
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                comm = (entry / "comm").read_text().strip()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == self.proc.pid and comm == "systemd":
                return int(entry.name)
        return None

    def _booted(self) -> str | None:
        state = self.run("systemctl", "is-system-running", check=False).stdout.strip()
        return state if state in ("running", "degraded") else None

    def console_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def run(self, *argv: str, input: str | None = None, check: bool = True,
            timeout: float = 120.0, env: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
        """``argv`` inside the container as root, with only :data:`INSIDE_ENV` and ``env``
        (``NAME=value``) set; CompletedProcess with text output. ``check``: a non-zero exit
        raises MachineError with both outputs."""
        assert self.leader, "boot() first"
        done = subprocess.run(
            ["nsenter", f"--target={self.leader}", "--all", "--root", "--wd",
             "env", "-i", *INSIDE_ENV, *env, *argv],
            input=input, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise MachineError(f"{' '.join(argv)} exited {done.returncode}\n"
                               f"stdout: {done.stdout[-3000:]}\nstderr: {done.stderr[-3000:]}")
        return done

    def write(self, path: str, text: str, mode: str) -> None:
        """``text`` into ``path`` inside, created with ``mode`` (never readable by others
        before the mode is set: written under umask 077)."""
        self.run("sh", "-c", f'umask 077 && cat > "$0" && chmod {mode} "$0"', path, input=text)

    def shutdown(self, timeout: float = 60.0) -> None:
        """Power the container off (nspawn turns SIGTERM into a clean halt of its systemd);
        SIGKILL if it has not ended within ``timeout`` s."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.systemd.machine")
    parser.add_argument("command", choices=["prepare"],
                        help="prepare: debootstrap the tree and download the wheelhouse")
    parser.parse_args(argv)
    try:
        return prepare()
    except MachineError as exc:
        print(f"tests/systemd: prepare failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
