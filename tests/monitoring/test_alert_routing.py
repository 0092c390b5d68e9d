"""Alertmanager routing and the retrain relay, with real Alertmanager and the real relay.

GitHub, Slack and PagerDuty cannot be reached from here: one recording HTTP server on loopback
stands in for all three, so the test sees exactly what each would have received.
"""

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import yaml

from vigil.local_stack import alertmanager_argv
from vigil.processes import ServerProcess, free_port, start_server

ALERTMANAGER_CONFIG = (
    Path(__file__).resolve().parents[2] / "monitoring" / "alertmanager" / "alertmanager.yml"
)
SECRETS = "/etc/alertmanager/secrets/vigil-alertmanager/"

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("alertmanager")]


class Recorder(ThreadingHTTPServer):
    """Records every POST as (path, headers, JSON body)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, str], object]] = []
        super().__init__(("127.0.0.1", 0), _RecordingHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def paths(self) -> list[str]:
        return [path for path, _, _ in self.calls]


class _RecordingHandler(BaseHTTPRequestHandler):
    server: Recorder

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.calls.append((self.path, dict(self.headers), json.loads(body or b"null")))
        self.send_response(204 if self.path.endswith("/dispatches") else 200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def recorder() -> Iterator[Recorder]:
    server = Recorder()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


@pytest.fixture(scope="module")
def relay(recorder: Recorder, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    port = free_port()
    env = {
        "VIGIL_RELAY_GITHUB_REPOSITORY": "vigil-platform/vigil",
        "VIGIL_RELAY_GITHUB_TOKEN": "test-token",
        "VIGIL_RELAY_GITHUB_API_URL": f"{recorder.url}/github",
    }
    argv = [
        "env",
        *(f"{k}={v}" for k, v in env.items()),
        sys.executable,
        "-m",
        "vigil.retrain_relay",
        "--port",
        str(port),
    ]
    server = start_server(
        "relay", argv, f"http://127.0.0.1:{port}", "/healthz", tmp_path_factory.mktemp("relay")
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def alertmanager(
    recorder: Recorder, relay: ServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """Alertmanager on the repository's config, secrets and URLs pointed at loopback."""
    root = tmp_path_factory.mktemp("alertmanager")
    secrets = root / "secrets"
    secrets.mkdir()
    for channel in ("incidents", "ml-ops", "anomaly-alerts"):
        (secrets / f"slack-{channel}-url").write_text(f"{recorder.url}/slack/{channel}")
    (secrets / "pagerduty-routing-key").write_text("test-routing-key")
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text().replace(SECRETS, f"{secrets}/"))
    for route in [config["route"], *config["route"]["routes"]]:
        route["group_wait"] = "1s"  # the production waits would only slow the test down
    for receiver in config["receivers"]:
        for webhook in receiver.get("webhook_configs", []):
            webhook["url"] = f"{relay.url}/alerts"
        for pagerduty in receiver.get("pagerduty_configs", []):
            pagerduty["url"] = f"{recorder.url}/pagerduty"
    config_path = root / "alertmanager.yml"
    config_path.write_text(yaml.safe_dump(config))
    port = free_port()
    argv = alertmanager_argv(config_path, root / "data", port)
    server = start_server("alertmanager", argv, f"http://127.0.0.1:{port}", "/-/ready", root)
    yield server
    server.stop()


def fire(alertmanager: ServerProcess, name: str, **labels: str) -> None:
    alert = {
        "labels": {"alertname": name, **labels},
        "annotations": {"summary": f"{name} test", "description": "d", "runbook_url": "u"},
        "startsAt": datetime.now(UTC).isoformat(),
    }
    response = httpx.post(f"{alertmanager.url}/api/v2/alerts", json=[alert], timeout=10)
    response.raise_for_status()


def wait_for(recorder: Recorder, path: str, count: int = 1, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if recorder.paths().count(path) >= count:
            return
        time.sleep(0.2)
    raise AssertionError(
        f"{path} received {recorder.paths().count(path)} calls: {recorder.paths()}"
    )


def test_drift_alert_dispatches_one_retrain_and_notifies_ml_ops(
    alertmanager: ServerProcess, recorder: Recorder
) -> None:
    fire(alertmanager, "DataDriftDetected", severity="warning", action="retrain", feature="cpu")

    wait_for(recorder, "/github/repos/vigil-platform/vigil/dispatches")
    wait_for(recorder, "/slack/ml-ops")
    _, headers, body = next(c for c in recorder.calls if c[0].endswith("/dispatches"))
    assert headers["Authorization"] == "Bearer test-token"
    assert isinstance(body, dict)
    assert body["event_type"] == "retrain"
    assert body["client_payload"]["alerts"][0]["labels"]["feature"] == "cpu"


def test_critical_alert_pages_and_posts_to_incidents_without_a_retrain(
    alertmanager: ServerProcess, recorder: Recorder
) -> None:
    dispatches_before = sum(p.endswith("/dispatches") for p in recorder.paths())

    fire(alertmanager, "HighErrorRate", severity="critical", model="xgboost_anomaly")

    wait_for(recorder, "/pagerduty")
    wait_for(recorder, "/slack/incidents")
    assert sum(p.endswith("/dispatches") for p in recorder.paths()) == dispatches_before


def test_relay_dispatches_a_repeated_alert_once_per_cooldown(relay: ServerProcess) -> None:
    webhook = {
        "version": "4",
        "groupKey": "g",
        "status": "firing",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "ModelAccuracyDegraded", "model": "catboost_anomaly"},
            }
        ],
    }
    first = httpx.post(f"{relay.url}/alerts", json=webhook, timeout=10).json()
    again = httpx.post(f"{relay.url}/alerts", json=webhook, timeout=10).json()
    assert first["dispatched"] == ["ModelAccuracyDegraded"]
    assert again == {"dispatched": [], "skipped": ["ModelAccuracyDegraded"]}


def test_relay_rejects_a_malformed_notification(relay: ServerProcess) -> None:
    response = httpx.post(f"{relay.url}/alerts", json={"version": "3", "alerts": []}, timeout=10)
    assert response.status_code == 422


def test_relay_refuses_to_start_without_a_token(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_RELAY_")}
    env["VIGIL_RELAY_GITHUB_REPOSITORY"] = "a/b"
    result = subprocess.run(
        [sys.executable, "-m", "vigil.retrain_relay", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "github_token" in result.stderr
