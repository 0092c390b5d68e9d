"""Alertmanager routing and the retrain relay, with real Alertmanager and the real relay.

GitHub, Slack and PagerDuty cannot be reached from here: one recording HTTP server on loopback
stands in for all three, so the test sees exactly what each would have received. The relay
requires its API key, which Alertmanager reads from the Secret's file as in production.
"""

import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import yaml

from contracts.auth import SECRET_KEY
from vigil.local_stack import alertmanager_argv
from vigil.processes import ServerProcess, free_port, start_server, venv_tool

ALERTMANAGER_CONFIG = (
    Path(__file__).resolve().parents[2] / "monitoring" / "alertmanager" / "alertmanager.yml"
)
SECRETS = "/etc/alertmanager/secrets/vigil-alertmanager/"
API_KEY_FILE = "/etc/alertmanager/secrets/vigil-api-key/api-key"
RELAY_API_KEY = "relay-key-4d2a"

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
        "VIGIL_RELAY_API_KEY": RELAY_API_KEY,
    }
    argv = [
        "env",
        *(f"{k}={v}" for k, v in env.items()),
        venv_tool("vigil"),
        "relay",
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
    (secrets / "api-key").write_text(RELAY_API_KEY + "\n")  # as `kubectl create secret` may
    text = ALERTMANAGER_CONFIG.read_text().replace(SECRETS, f"{secrets}/")
    config = yaml.safe_load(text.replace(API_KEY_FILE, str(secrets / "api-key")))
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


def _webhook(*alerts: dict[str, object]) -> dict[str, object]:
    """A notification shaped exactly as Alertmanager 0.25 posts it."""
    return {
        "version": "4",
        "groupKey": "g",
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "retrain-relay",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager",
        "alerts": [
            {
                "status": "firing",
                "annotations": {},
                "startsAt": "2026-03-02T10:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus",
                "fingerprint": "f",
                **alert,
            }
            for alert in alerts
        ],
    }


def test_relay_dispatches_a_repeated_alert_once_per_cooldown(relay: ServerProcess) -> None:
    webhook = _webhook(
        {"labels": {"alertname": "ModelAccuracyDegraded", "model": "catboost_anomaly"}}
    )
    headers = {"Authorization": f"Bearer {RELAY_API_KEY}"}
    first = httpx.post(f"{relay.url}/alerts", json=webhook, headers=headers, timeout=10).json()
    again = httpx.post(f"{relay.url}/alerts", json=webhook, headers=headers, timeout=10).json()
    assert first["dispatched"] == ["ModelAccuracyDegraded"]
    assert again == {"dispatched": [], "skipped": ["ModelAccuracyDegraded"]}


def test_relay_rejects_a_malformed_notification(relay: ServerProcess) -> None:
    headers = {"X-API-Key": RELAY_API_KEY}
    response = httpx.post(
        f"{relay.url}/alerts", json={"version": "3", "alerts": []}, headers=headers, timeout=10
    )
    assert response.status_code == 422


def test_relay_rejects_a_forged_alert_without_its_key(
    relay: ServerProcess, recorder: Recorder
) -> None:
    dispatches_before = sum(p.endswith("/dispatches") for p in recorder.paths())
    forged = _webhook({"labels": {"alertname": "DataDriftDetected", "feature": "forged"}})
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"X-API-Key": "wrong"}):
        response = httpx.post(f"{relay.url}/alerts", json=forged, headers=headers, timeout=10)
        assert response.status_code == 401, headers
    assert sum(p.endswith("/dispatches") for p in recorder.paths()) == dispatches_before


def test_config_is_valid_and_sends_the_relay_its_key() -> None:
    """amtool accepts the shipped file as is, and the relay's webhook carries the key from the
    mounted Secret (``contracts.auth.SECRET_KEY`` inside it) as a Bearer token."""
    check = subprocess.run(
        ["amtool", "check-config", str(ALERTMANAGER_CONFIG)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    (relay,) = [r for r in config["receivers"] if r["name"] == "retrain-relay"]
    (webhook,) = relay["webhook_configs"]
    authorization = webhook["http_config"]["authorization"]
    assert authorization["credentials_file"] == API_KEY_FILE
    assert API_KEY_FILE.endswith(f"/{SECRET_KEY}")
    assert authorization.get("type", "Bearer") == "Bearer"  # what contracts.auth reads
    assert "credentials" not in authorization  # the key itself never lives in the file


def test_relay_refuses_to_start_without_a_token(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_RELAY_")}
    env["VIGIL_RELAY_GITHUB_REPOSITORY"] = "a/b"
    result = subprocess.run(
        [venv_tool("vigil"), "relay", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "github_token" in result.stderr
