"""Locally, the serving side binds to loopback by default: Triton (started by ``triton_argv``
with no host, as the local stack does), the nginx A/B router (``RouterConfig`` with no host)
and the scorer started by the stack's own ``start_scorer``; the kernel is asked what each
listens on."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from serving.router.nginx import RouterConfig
from serving.triton.server import TritonPorts
from tests.listening import assert_loopback_only
from tests.serving.conftest import Registered, Repository
from vigil.local_stack import Serving, start_scorer
from vigil.processes import ServerProcess
from vigil.stack import stop_stack

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("triton")]


def test_triton_listens_on_loopback_only(triton: ServerProcess, triton_ports: TritonPorts) -> None:
    for port in (triton_ports.http, triton_ports.grpc, triton_ports.metrics):
        assert_loopback_only(triton.process.pid, port)


def test_ab_router_listens_on_loopback_only(
    ab_router: ServerProcess, router_config: RouterConfig
) -> None:
    assert router_config.grpc_port is not None
    for port in (router_config.http_port, router_config.grpc_port):
        assert_loopback_only(ab_router.process.pid, port)


@pytest.fixture
def stack_path(tmp_path: Path) -> Iterator[Path]:
    """A stack folder; whatever the test started in it is stopped by ``vigil down``'s code."""
    path = tmp_path / "stack"
    yield path
    stop_stack(path)


def test_scorer_listens_on_loopback_only(
    registered: Registered,
    repository: Repository,
    triton: ServerProcess,
    triton_ports: TritonPorts,
    ab_router: ServerProcess,
    router_config: RouterConfig,
    stack_path: Path,
) -> None:
    assert router_config.grpc_port is not None
    serving = Serving(repository.summary, triton, triton_ports, ab_router, router_config.grpc_port)
    store_path = stack_path / "store"
    scorer = start_scorer(stack_path, str(store_path), registered.tracking_uri, serving)
    assert_loopback_only(scorer.process.pid, int(scorer.url.rsplit(":", 1)[1]))
