"""Local server processes: started on a free loopback port, waited for, stopped by PID."""

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    """A server this process started; its log is kept for failure reports."""

    name: str
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(
    name: str,
    argv: list[str],
    url: str,
    health_path: str,
    log_dir: Path,
    timeout: float = 60,
    detach: bool = False,
) -> ServerProcess:
    """Start ``argv`` and wait until ``url + health_path`` answers; raise with its log if not.

    ``detach`` puts the server in its own session, so it outlives this process (``vigil up``).
    """
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=detach
        )
    server = ServerProcess(name, process, url, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{server.log()}")
        try:
            with urllib.request.urlopen(url + health_path, timeout=2):
                return server
        except urllib.error.HTTPError:
            return server  # it answers HTTP: it is up
        except OSError:
            time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"{name} did not answer within {timeout}s:\n{server.log()}")


def wait_for_ok(url: str, timeout: float = 120) -> None:
    """Wait until ``url`` answers 200 (a loading llama-server answers its health check 503)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:  # refused, or an HTTP error status while it loads
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer 200 within {timeout:.0f} s")


def venv_tool(name: str) -> str:
    """A console script installed beside this interpreter (mlflow, moto_server, ...)."""
    return str(Path(sys.executable).parent / name)


def start_moto(log_dir: Path) -> ServerProcess:
    """The AWS API emulator (S3, CloudWatch Logs and metrics) on a free loopback port."""
    port = free_port()
    argv = [venv_tool("moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    return start_server("moto", argv, f"http://127.0.0.1:{port}", "/moto-api/", log_dir)


def start_mlflow(
    root: Path, log_dir: Path, detach: bool = False, port: int | None = None
) -> ServerProcess:
    """An MLflow tracking server on loopback (a free port unless given): SQLite backend,
    artifacts in root."""
    port = port or free_port()
    argv = [
        # The job runner would start background consumers that outlive the server's PID.
        "env",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false",
        venv_tool("mlflow"),
        "server",
        "--backend-store-uri",
        f"sqlite:///{root.resolve() / 'mlflow.db'}",
        "--default-artifact-root",
        str(root.resolve() / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    url = f"http://127.0.0.1:{port}"
    return start_server("mlflow", argv, url, "/health", log_dir, 120, detach=detach)
