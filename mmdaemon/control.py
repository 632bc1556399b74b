"""The control socket: a running instance answers ``mmdaemon status`` and ``kill``'s wait.

Where: ``<state_dir>/control.sock``, a Unix stream socket, mode 0600 (only the instance's
user may connect). The daemon creates it only after it holds the state directory's lock
(:mod:`mmdaemon.statedir`), so a socket file found there at that moment is a crashed run's
leftover and is replaced; a live instance's socket is never taken over, because a second
instance cannot get the lock. It is bound in a fresh mode-0700 directory inside the state
directory, set to 0600, then renamed over the final name: at no moment can another user
connect to it, whatever the state directory's mode. It is removed at stop (if it is still
ours). Paths are reached through ``/proc/self/fd/<dir fd>/``: a Unix socket's path is
limited to 107 bytes, a state directory's is not.

Protocol (one request per connection): the client sends one line of JSON, at most
:data:`MAX_REQUEST` bytes with its ``\\n``, within :data:`REQUEST_TIMEOUT_S`; the daemon
answers one line of JSON and closes. Read-only: nothing a client sends changes the
instance (a kill is a signal, :mod:`mmdaemon.commands.operator`).

- ``{"cmd": "status"}`` -> ``{"ok": true, "status": {...}}`` (the dict of
  :func:`mmdaemon.status.running_status`);
- anything else -> ``{"ok": false, "error": "..."}`` saying what was wrong.

A client that sends garbage, too long a line, nothing, or never reads its answer costs the
daemon one bounded read and one bounded write (:data:`WRITE_TIMEOUT_S`); at most
:data:`MAX_CLIENTS` connections are served at once (more are closed at once), and each
problem is logged once per connection as ``control_request_refused`` with its ``why``. The
answer is built synchronously from a snapshot (tens of microseconds): never on a frame's
way to an order, which runs in another task.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

SOCKET_FILE = "control.sock"
MAX_REQUEST = 4096  # bytes of a request line, its newline included
MAX_ANSWER = 1 << 20  # what a client reads at most (a status is ~2 KB)
REQUEST_TIMEOUT_S = 2.0
WRITE_TIMEOUT_S = 2.0
MAX_CLIENTS = 8
BUSY = f"busy: {MAX_CLIENTS} control connections are open already; try again"

Answer = Callable[[dict[str, Any]], dict[str, Any]]


class ControlUnavailable(Exception):
    """No instance answers on the control socket (none, or it cannot be reached)."""


class ControlBusy(ControlUnavailable):
    """The instance answered that it serves :data:`MAX_CLIENTS` connections already: it
    runs, and a later request will be answered."""


class ControlDenied(ControlUnavailable):
    """This user may not reach the control socket (the state directory or the socket is
    the instance's user's): whether an instance answers there is not known."""


def _via_fd(dir_fd: int, name: str) -> str:
    """A path to ``name`` in the directory open as ``dir_fd``, short whatever the
    directory's own path (the kernel resolves the ``/proc`` link)."""
    return f"/proc/self/fd/{dir_fd}/{name}"


class ControlServer:
    """The listening socket of one running instance; :meth:`close` removes it."""

    def __init__(self, path: Path, server: asyncio.AbstractServer, inode: tuple[int, int],
                 log: Any) -> None:
        self.path = path
        self._server = server
        self._inode = inode
        self._log = log

    def close(self) -> None:
        """Stop listening and remove the socket file if it is still the one we bound.
        Synchronous, so that it runs on every way out of the service, a cancelled one
        included (a connection being answered ends within its own timeouts)."""
        self._server.close()
        try:
            st = os.lstat(self.path)
            if (st.st_dev, st.st_ino) == self._inode:
                self.path.unlink()
        except FileNotFoundError:
            pass


async def serve_control(state_dir: Path, answer: Answer, log: Any) -> ControlServer:
    """Listen on ``state_dir``/control.sock (see the module docstring); the caller holds
    the state directory's lock. ``answer(request)`` builds the reply of a well-formed
    request (a JSON object); it must not block. Raises OSError if the socket cannot be
    made (the caller decides whether to run without it)."""
    path = state_dir / SOCKET_FILE
    clients = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal clients
        if clients >= MAX_CLIENTS:
            log.warning("control_request_refused", why="too many connections",
                        max_clients=MAX_CLIENTS)
            # said, not just hung up on: the client tells "busy" from "stuck"
            writer.write(orjson.dumps({"ok": False, "error": BUSY}) + b"\n")
            writer.close()  # after the buffered answer (a few bytes: the socket takes them)
            return
        clients += 1
        try:
            reply = await _read_request(reader, answer, log)
            if reply is not None:
                writer.write(orjson.dumps(reply) + b"\n")
                async with asyncio.timeout(WRITE_TIMEOUT_S):
                    await writer.drain()
        except TimeoutError:
            log.warning("control_request_refused", why="client did not read its answer",
                        timeout_s=WRITE_TIMEOUT_S)
        except OSError as exc:  # the client went away
            log.info("control_request_refused", why="connection lost", error=repr(exc))
        finally:
            clients -= 1
            writer.transport.abort()  # never wait on a client that does not read

    try:
        previous = os.lstat(path)
    except FileNotFoundError:
        previous = None
    dir_fd = os.open(state_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        private = Path(tempfile.mkdtemp(prefix=".control-", dir=state_dir))  # mode 0700
        try:
            tmp = _via_fd(dir_fd, f"{private.name}/{SOCKET_FILE}")
            server = await asyncio.start_unix_server(handle, path=tmp, limit=MAX_REQUEST)
            try:
                os.chmod(tmp, 0o600)
                os.rename(tmp, _via_fd(dir_fd, SOCKET_FILE))  # replaces a crashed run's
                st = os.lstat(path)
            except BaseException:
                server.close()
                raise
        finally:
            for leftover in private.iterdir():
                leftover.unlink()
            private.rmdir()
    finally:
        os.close(dir_fd)
    if previous is not None:
        log.warning("control_socket_replaced", path=str(path),
                    why="left by an instance that is gone (this one holds the state "
                        "directory's lock)")
    log.info("control_socket_listening", path=str(path))
    return ControlServer(path, server, (st.st_dev, st.st_ino), log)


async def _read_request(reader: asyncio.StreamReader, answer: Answer,
                        log: Any) -> dict[str, Any] | None:
    """One request line read and answered; None when there is nothing to answer (the
    client sent nothing, or too slowly)."""
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT_S):
            line = await reader.readuntil(b"\n")
    except TimeoutError:
        log.warning("control_request_refused", why="no request line in time",
                    timeout_s=REQUEST_TIMEOUT_S)
        return None
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            log.warning("control_request_refused", why="request without its newline",
                        bytes=len(exc.partial))
        return None
    except asyncio.LimitOverrunError:
        log.warning("control_request_refused", why="request line too long",
                    max_bytes=MAX_REQUEST)
        return {"ok": False, "error": f"request line longer than {MAX_REQUEST} bytes"}
    try:
        request = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        log.warning("control_request_refused", why="not JSON", error=str(exc))
        return {"ok": False, "error": f"not a JSON line: {exc}"}
    if not isinstance(request, dict) or request.get("cmd") != "status":
        log.warning("control_request_refused", why="unknown command",
                    request=repr(request)[:200])
        return {"ok": False, "error": 'unknown request: expected {"cmd": "status"}'}
    try:
        return answer(request)
    except Exception as exc:  # a bug in building the answer must not end the daemon
        log.error("control_answer_failed", error=repr(exc))
        return {"ok": False, "error": f"the instance could not build its answer: {exc!r}"}


def request_status(state_dir: Path, timeout_s: float = 2.0) -> dict[str, Any]:
    """Ask the instance running on ``state_dir`` for its status (blocking, for the
    command line): the ``status`` dict. Raises :class:`ControlUnavailable` when no
    instance answers (no socket file, nobody listening, a timeout, a garbled answer);
    :class:`ControlDenied` when this user may not reach it."""
    try:
        dir_fd = os.open(state_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except PermissionError as exc:
        raise ControlDenied(f"cannot read {state_dir}: {exc.strerror}") from None
    except OSError as exc:
        raise ControlUnavailable(f"cannot open {state_dir}: {exc.strerror or exc}") from None
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout_s)
            sock.connect(_via_fd(dir_fd, SOCKET_FILE))
            # a busy instance answers before it reads us and closes: its answer is there
            with contextlib.suppress(BrokenPipeError):
                sock.sendall(orjson.dumps({"cmd": "status"}) + b"\n")
            data = b""
            while not data.endswith(b"\n") and len(data) < MAX_ANSWER:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    except FileNotFoundError:
        raise ControlUnavailable(f"no control socket {state_dir / SOCKET_FILE}") from None
    except PermissionError as exc:
        raise ControlDenied(f"{state_dir / SOCKET_FILE}: {exc.strerror}") from None
    except TimeoutError:
        raise ControlUnavailable(f"{state_dir / SOCKET_FILE}: no answer within "
                                 f"{timeout_s:.3g} s") from None
    except OSError as exc:  # refused (a stale file), permission
        raise ControlUnavailable(f"{state_dir / SOCKET_FILE}: "
                                 f"{exc.strerror or repr(exc)}") from None
    finally:
        os.close(dir_fd)
    try:
        reply = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise ControlUnavailable(f"{state_dir / SOCKET_FILE}: no answer "
                                 f"({len(data)} bytes, not a JSON line)") from None
    if isinstance(reply, dict) and reply.get("error") == BUSY:
        raise ControlBusy(f"{state_dir / SOCKET_FILE}: {BUSY}")
    if not isinstance(reply, dict) or not reply.get("ok") or \
            not isinstance(reply.get("status"), dict):
        raise ControlUnavailable(f"{state_dir / SOCKET_FILE}: refused: {reply!r}"[:300])
    status: dict[str, Any] = reply["status"]
    return status
