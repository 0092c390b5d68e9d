"""Locally, every server binds to loopback by default: each is started for real the way the
local stack (``vigil.local_stack``, the demo) or its command starts it, with no address
given where the stack gives none, and the kernel is asked what it listens on.

Triton, the A/B router in front of it and the scorer need registered models: they are checked
the same way in ``tests/serving/test_loopback.py``.
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main

from contracts.serving import CATBOOST_MODEL, XGBOOST_MODEL
from serving.router.nginx import LIVE_PATH
from tests.listening import assert_loopback_only
from vigil.cli import app
from vigil.local_stack import (
    start_alertmanager,
    start_explainer,
    start_local_mlflow,
    start_prometheus,
)
from vigil.processes import ServerProcess, free_port, start_moto, start_server, venv_tool
from vigil.stack import stop_stack

pytestmark = pytest.mark.slow


def _port(server: ServerProcess) -> int:
    return int(server.url.rsplit(":", 1)[1])


@pytest.fixture
def stack_path(tmp_path: Path) -> Iterator[Path]:
    """A stack folder; whatever the test started in it is stopped by ``vigil down``'s code."""
    path = tmp_path / "stack"
    yield path
    stop_stack(path)


def test_mlflow_listens_on_loopback_only(stack_path: Path) -> None:
    server = start_local_mlflow(stack_path)
    assert_loopback_only(server.process.pid, _port(server))


def test_prometheus_listens_on_loopback_only(stack_path: Path) -> None:
    server = start_prometheus(stack_path, {})
    assert_loopback_only(server.process.pid, _port(server))


def test_alertmanager_listens_on_loopback_only(stack_path: Path) -> None:
    server = start_alertmanager(stack_path)
    assert_loopback_only(server.process.pid, _port(server))  # and no cluster gossip port


def test_explainer_and_its_llm_server_listen_on_loopback_only(stack_path: Path) -> None:
    explainer = start_explainer(stack_path)
    assert_loopback_only(explainer.llm.process.pid, _port(explainer.llm))
    assert_loopback_only(explainer.service.process.pid, _port(explainer.service))


def test_aws_emulator_listens_on_loopback_only(tmp_path: Path) -> None:
    server = start_moto(tmp_path)
    try:
        assert_loopback_only(server.process.pid, _port(server))
    finally:
        server.stop()


def test_router_command_without_host_listens_on_loopback_only(tmp_path: Path) -> None:
    """``vigil serving router`` renders nginx.conf and runs nginx; no Triton is needed."""
    http_port, grpc_port = free_port(), free_port()
    argv = [
        venv_tool("vigil"),
        "serving",
        "router",
        "--champion-model",
        XGBOOST_MODEL,
        "--challenger-model",
        CATBOOST_MODEL,
        "--upstream",
        f"127.0.0.1:{free_port()}",
        "--grpc-upstream",
        f"127.0.0.1:{free_port()}",
        "--port",
        str(http_port),
        "--grpc-port",
        str(grpc_port),
        "--prefix",
        str(tmp_path),
    ]
    server = start_server("nginx", argv, f"http://127.0.0.1:{http_port}", LIVE_PATH, tmp_path)
    try:
        assert_loopback_only(server.process.pid, http_port)
        assert_loopback_only(server.process.pid, grpc_port)
    finally:
        server.stop()


def test_retrain_relay_listens_on_loopback_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not part of the local stack (the chart runs it), but runnable locally the same way."""
    monkeypatch.setenv("VIGIL_RELAY_GITHUB_REPOSITORY", "example/vigil")
    monkeypatch.setenv("VIGIL_RELAY_GITHUB_TOKEN", "unused")
    port = free_port()
    argv = [venv_tool("vigil"), "relay", "--port", str(port)]
    server = start_server("relay", argv, f"http://127.0.0.1:{port}", "/healthz", tmp_path)
    try:
        assert_loopback_only(server.process.pid, port)
    finally:
        server.stop()


def _host_defaults(command: Any, path: str) -> Iterator[tuple[str, object]]:
    for name, sub in getattr(command, "commands", {}).items():
        yield from _host_defaults(sub, f"{path} {name}")
    for param in getattr(command, "params", []):
        if param.name == "host":
            yield path, param.default


def test_every_command_that_binds_defaults_to_loopback() -> None:
    defaults = dict(_host_defaults(typer.main.get_command(app), "vigil"))
    assert {"vigil serving triton", "vigil rag serve", "vigil rag llm-server"} <= set(defaults)
    assert {command: "127.0.0.1" for command in defaults} == defaults
