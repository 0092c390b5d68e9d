"""Every Grafana panel query returns data from a real Prometheus scraping the real local stack.

The stack is the demo's: Triton behind the A/B router, the explainer (llama.cpp LLM, runbook
index in Qdrant, API) and the scorer replaying the labelled fleet through the router, with
ground-truth feedback; Prometheus scrapes all three with the repository's rules.
"""

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from serving.router.nginx import RouterConfig
from serving.triton.server import TritonPorts
from tests.serving.conftest import Registered, Repository
from tests.training.conftest import START, fleet_frames
from vigil.dashboard_check import stack_panel_queries, wait_for_panel_data
from vigil.demo.replay import send_feedback, wait_for_replay
from vigil.local_stack import Serving, start_explainer, start_prometheus, start_scorer
from vigil.processes import ServerProcess
from vigil.stack import stop_stack

pytestmark = pytest.mark.xdist_group("triton")


@pytest.fixture(scope="module")
def stack_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("stack")
    yield path
    stop_stack(path)


@dataclass(frozen=True)
class LiveStack:
    prometheus: ServerProcess
    targets: dict[str, list[str]]  # Prometheus job → host:port


@pytest.fixture(scope="module")
def live(
    stack_path: Path,
    registered: Registered,
    repository: Repository,
    triton: ServerProcess,
    triton_ports: TritonPorts,
    ab_router: ServerProcess,
    router_config: RouterConfig,
) -> LiveStack:
    """The stack after a replay of the whole fleet with feedback, and Prometheus scraping it."""
    assert router_config.grpc_port is not None
    serving = Serving(repository.summary, triton, triton_ports, ab_router, router_config.grpc_port)
    explainer = start_explainer(stack_path)
    minutes = fleet_frames()[0]["timestamp"].n_unique()
    replay = (START, START + timedelta(minutes=minutes))
    scorer = start_scorer(
        stack_path,
        registered.store.uri,
        registered.tracking_uri,
        serving,
        replay,
        explainer.service.url,
    )
    wait_for_replay(scorer.url, replay[1], timeout=300)
    outcome = send_feedback(registered.store, scorer.url, *replay, timedelta(minutes=5))
    assert outcome.feedback_sent > 0
    targets = {
        "triton": [f"127.0.0.1:{triton_ports.metrics}"],
        "scorer": [scorer.url.removeprefix("http://")],
        "explainer": [explainer.service.url.removeprefix("http://")],
    }
    return LiveStack(start_prometheus(stack_path, targets), targets)


def test_every_panel_query_returns_data_from_the_live_stack(live: LiveStack) -> None:
    checked = wait_for_panel_data(live.prometheus.url, timeout=240)
    assert checked == len(stack_panel_queries()) > 20


def test_prometheus_scrapes_every_service_of_the_stack(live: LiveStack) -> None:
    wait_for_panel_data(live.prometheus.url, timeout=240)  # every target scraped at least twice
    targets = httpx.get(f"{live.prometheus.url}/api/v1/targets", timeout=10).json()["data"]
    health = {t["labels"]["job"]: t["health"] for t in targets["activeTargets"]}
    assert health == dict.fromkeys(["triton", "scorer", "explainer", "prometheus"], "up")


def _firing(prometheus_url: str) -> set[tuple[str, str]]:
    """Every firing alert: (alert name, its labels). Pending ones are left out: a condition
    that turns true during the drill (a slow LLM answer on a busy machine) is not the
    restart's doing, while a restart that restored alert state wrongly would fire."""
    body = httpx.get(f"{prometheus_url}/api/v1/alerts", timeout=10).json()
    return {
        (a["labels"]["alertname"], str(sorted(a["labels"].items())))
        for a in body["data"]["alerts"]
        if a["state"] == "firing"
    }


def _wait_for_rule_evaluations(prometheus_url: str, count: int, timeout: float = 180) -> None:
    """Until every rule group has been evaluated ``count`` times by this Prometheus process
    (its own scrape, so the series the previous process left in the TSDB do not count)."""
    instance = prometheus_url.removeprefix("http://")
    query = f'min(prometheus_rule_group_iterations_total{{instance="{instance}"}})'
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        params = {"query": query}
        result = httpx.get(f"{prometheus_url}/api/v1/query", params=params, timeout=10).json()
        values = result["data"]["result"]
        if values and float(values[0]["value"][1]) >= count:
            return
        time.sleep(2)
    raise TimeoutError(f"rule groups not evaluated {count} times in {timeout:.0f} s")


def test_a_prometheus_restart_raises_no_new_alert(live: LiveStack, stack_path: Path) -> None:
    """Drill: Prometheus restarts on its own data; no alert appears that was not there."""
    wait_for_panel_data(live.prometheus.url, timeout=240)
    before = _firing(live.prometheus.url)
    live.prometheus.stop()
    restarted = start_prometheus(stack_path, live.targets)
    _wait_for_rule_evaluations(restarted.url, 3)
    assert _firing(restarted.url) <= before
