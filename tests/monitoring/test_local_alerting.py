"""The local stack's alerting path: Prometheus sends to a local Alertmanager that routes with
the repository's configuration and delivers nowhere (no Slack, PagerDuty or GitHub here)."""

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from vigil.local_stack import ALERTMANAGER_CONFIG_PATH, start_alertmanager, start_prometheus
from vigil.processes import ServerProcess
from vigil.stack import stop_stack

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    path = tmp_path_factory.mktemp("alerting") / "stack"
    try:
        alertmanager = start_alertmanager(path)
        prometheus = start_prometheus(path, {}, alertmanager.url.removeprefix("http://"))
        yield alertmanager, prometheus
    finally:
        stop_stack(path)


def _get(url: str) -> Any:
    response = httpx.get(url, timeout=10)
    response.raise_for_status()
    return response.json()


def test_prometheus_sends_its_alerts_to_the_local_alertmanager(
    stack: tuple[ServerProcess, ServerProcess],
) -> None:
    alertmanager, prometheus = stack
    expected = f"{alertmanager.url}/api/v2/alerts"
    deadline = time.monotonic() + 60
    active: list[str] = []
    while time.monotonic() < deadline:
        found = _get(f"{prometheus.url}/api/v1/alertmanagers")["data"]["activeAlertmanagers"]
        active = [entry["url"] for entry in found]
        if expected in active:
            break
        time.sleep(0.5)
    assert expected in active


@pytest.mark.parametrize(
    ("labels", "receivers"),
    [
        (
            {"alertname": "DataDriftDetected", "severity": "warning", "action": "retrain"},
            {"retrain-relay", "slack-ml-ops"},
        ),
        ({"alertname": "HighErrorRate", "severity": "critical"}, {"pagerduty-critical"}),
        ({"alertname": "AnomalyRateSpike", "severity": "info"}, {"slack-anomaly-alerts"}),
    ],
)
def test_alerts_are_routed_as_in_production_and_delivered_nowhere(
    stack: tuple[ServerProcess, ServerProcess], labels: dict[str, str], receivers: set[str]
) -> None:
    alertmanager, _ = stack
    alert = {
        "labels": {**labels, "model": labels["alertname"].lower()},
        "annotations": {"summary": "local routing check"},
        "startsAt": datetime.now(UTC).isoformat(),
    }
    httpx.post(f"{alertmanager.url}/api/v2/alerts", json=[alert], timeout=10).raise_for_status()
    name = labels["alertname"]
    listed = [
        entry
        for entry in _get(f"{alertmanager.url}/api/v2/alerts")
        if entry["labels"]["alertname"] == name
    ]
    assert listed, f"{name} is not listed by Alertmanager"
    assert {receiver["name"] for receiver in listed[0]["receivers"]} == receivers

    loaded = yaml.safe_load(_get(f"{alertmanager.url}/api/v2/status")["config"]["original"])
    production = yaml.safe_load(Path(ALERTMANAGER_CONFIG_PATH).read_text())
    assert [set(receiver) for receiver in loaded["receivers"]] == [{"name"}] * len(
        production["receivers"]
    )
