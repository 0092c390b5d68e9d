"""The local stack's bookkeeping: which services run, where, with which PID (``vigil status``,
``vigil down``).

Services are started detached (their own session) so they outlive the command that started
them; each one's PID, URL, health path and log file go to ``state.json`` in the stack folder.
``vigil down`` stops exactly those PIDs (SIGTERM, then SIGKILL after a grace period), newest
first, and never anything it did not start.
"""

import contextlib
import json
import os
import signal
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from vigil.processes import ServerProcess

STACK_PATH = Path(".vigil/stack")
STOP_GRACE_SECONDS = 15.0


@dataclass(frozen=True)
class RunningService:
    """One service of the stack as recorded in the state file."""

    name: str
    pid: int
    url: str
    health_path: str
    log_path: str


@dataclass(frozen=True)
class ServiceStatus:
    service: RunningService
    alive: bool
    healthy: bool


def state_path(stack_path: Path) -> Path:
    return stack_path / "state.json"


def read_state(stack_path: Path) -> list[RunningService]:
    """The services recorded as started, oldest first; empty when none."""
    path = state_path(stack_path)
    if not path.exists():
        return []
    return [RunningService(**entry) for entry in json.loads(path.read_text())]


def record(stack_path: Path, server: ServerProcess, health_path: str) -> None:
    """Add a started server to the state file (written atomically)."""
    services = [s for s in read_state(stack_path) if s.name != server.name]
    services.append(
        RunningService(
            server.name, server.process.pid, server.url, health_path, str(server.log_path)
        )
    )
    stack_path.mkdir(parents=True, exist_ok=True)
    tmp = state_path(stack_path).with_suffix(".tmp")
    tmp.write_text(json.dumps([asdict(s) for s in services], indent=2))
    tmp.replace(state_path(stack_path))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3):
            return True
    except urllib.error.HTTPError as error:
        return error.code < 500
    except OSError:
        return False


def stack_status(stack_path: Path = STACK_PATH) -> list[ServiceStatus]:
    """Each recorded service: is its process alive, does its health endpoint answer."""
    statuses = []
    for service in read_state(stack_path):
        alive = _alive(service.pid)
        healthy = alive and _healthy(service.url + service.health_path)
        statuses.append(ServiceStatus(service, alive, healthy))
    return statuses


def stop_stack(stack_path: Path = STACK_PATH) -> list[str]:
    """Stop every recorded service, newest first; returns the names stopped."""
    services = read_state(stack_path)
    stopped = []
    for service in reversed(services):
        if _alive(service.pid):
            _terminate(service.pid)
            stopped.append(service.name)
    state_path(stack_path).unlink(missing_ok=True)
    return stopped


def _terminate(pid: int) -> None:
    # Each service leads its own session (started detached): signal the whole group, so
    # helper children (tritonserver under its launcher, nginx workers) stop with it.
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.2)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
