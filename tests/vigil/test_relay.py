"""The retrain relay's hardening, in process: its app over the ASGI test client, GitHub's
REST API stood in for by a recording HTTP server on loopback (the relay reaches it over real
HTTP). Alertmanager itself posting to the relay is tests/monitoring/test_alert_routing.py."""

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from vigil.relay import RETRAIN_ALERTS, Relay, RelaySettings, create_app

API_KEY = "relay-key-91b3"
KEYED = {"Authorization": f"Bearer {API_KEY}"}


class FakeGitHub(ThreadingHTTPServer):
    """Answers ``POST /repos/<owner>/<name>/dispatches`` with 204 and keeps each body."""

    def __init__(self) -> None:
        self.dispatches: list[dict[str, Any]] = []
        super().__init__(("127.0.0.1", 0), _GitHubHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _GitHubHandler(BaseHTTPRequestHandler):
    server: FakeGitHub

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path.endswith("/dispatches"):
            self.server.dispatches.append(json.loads(body))
        self.send_response(204 if self.path.endswith("/dispatches") else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    server = FakeGitHub()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def client(github: FakeGitHub) -> Iterator[TestClient]:
    settings = RelaySettings(
        github_repository="vigil-platform/vigil",
        github_token=SecretStr("gh-token"),
        github_api_url=github.url,
        api_key=SecretStr(API_KEY),
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def relay_of(client: TestClient) -> Relay:
    relay: Relay = client.app.state.relay  # type: ignore[attr-defined]
    return relay


def alert(name: str | None, **labels: str) -> dict[str, Any]:
    """One alert as Alertmanager 0.25 posts it."""
    return {
        "status": "firing",
        "labels": ({"alertname": name} if name else {}) | labels,
        "annotations": {"summary": f"{name} fired"},
        "startsAt": "2026-03-02T10:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus/graph",
        "fingerprint": "0123456789abcdef",
    }


def webhook(*alerts: dict[str, Any]) -> dict[str, Any]:
    """A notification as Alertmanager 0.25 posts it (``webhook.Message``)."""
    return {
        "version": "4",
        "groupKey": '{}/{action="retrain"}:{alertname="DataDriftDetected"}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "retrain-relay",
        "groupLabels": {"alertname": "DataDriftDetected"},
        "commonLabels": {"action": "retrain"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": list(alerts),
    }


def test_a_forged_alert_without_the_key_dispatches_nothing(
    client: TestClient, github: FakeGitHub
) -> None:
    forged = webhook(alert("DataDriftDetected", feature="cpu"))
    for headers in (
        {},
        {"X-API-Key": "guess"},
        {"Authorization": "Bearer guess"},
        {"Authorization": f"Basic {API_KEY}"},  # the key, but not as a bearer token
    ):
        response = client.post("/alerts", json=forged, headers=headers)
        assert response.status_code == 401, headers
    assert github.dispatches == []
    assert relay_of(client).last_dispatch == {}
    assert "retrain_webhook_rejected_total 4.0" in client.get("/metrics").text


@pytest.mark.parametrize("headers", [KEYED, {"X-API-Key": API_KEY}])
def test_the_key_lets_a_retrain_alert_dispatch(
    client: TestClient, github: FakeGitHub, headers: dict[str, str]
) -> None:
    response = client.post("/alerts", json=webhook(alert("DataDriftDetected")), headers=headers)
    assert response.status_code == 200, response.text
    assert response.json() == {"dispatched": ["DataDriftDetected"], "skipped": []}
    (dispatch,) = github.dispatches
    assert dispatch["event_type"] == "retrain"


def _without(body: dict[str, Any], field: str) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != field}


VALID = webhook(alert("DataDriftDetected"))


@pytest.mark.parametrize(
    "body",
    [
        VALID | {"version": "3"},
        VALID | {"injected": "junk"},
        VALID | {"alerts": [alert("DataDriftDetected") | {"injected": "junk"}]},
        VALID | {"alerts": [_without(alert("DataDriftDetected"), "labels")]},
        VALID | {"alerts": [alert("DataDriftDetected") | {"status": "pending"}]},
        VALID | {"alerts": [alert("DataDriftDetected") | {"labels": {"alertname": 1}}]},
        _without(VALID, "version"),
        _without(VALID, "groupKey"),
        _without(VALID, "receiver"),
        _without(VALID, "alerts"),
        [VALID],
    ],
)
def test_what_alertmanager_does_not_send_is_a_422(
    client: TestClient, github: FakeGitHub, body: object
) -> None:
    response = client.post("/alerts", json=body, headers=KEYED)
    assert response.status_code == 422, response.text
    assert github.dispatches == []


def test_an_alert_without_alertname_is_skipped(client: TestClient, github: FakeGitHub) -> None:
    response = client.post("/alerts", json=webhook(alert(None, feature="cpu")), headers=KEYED)
    assert response.status_code == 200, response.text
    assert response.json() == {"dispatched": [], "skipped": ["<no alertname>"]}
    assert github.dispatches == []
    assert relay_of(client).last_dispatch == {}


def test_a_changed_label_within_the_cooldown_is_skipped(
    client: TestClient, github: FakeGitHub
) -> None:
    first = client.post("/alerts", json=webhook(alert("DataDriftDetected", feature="cpu")))
    assert first.status_code == 401  # the test client sends no key by default
    first = client.post(
        "/alerts", json=webhook(alert("DataDriftDetected", feature="cpu")), headers=KEYED
    )
    assert first.json()["dispatched"] == ["DataDriftDetected"]
    moved = client.post(
        "/alerts",
        json=webhook(alert("DataDriftDetected", feature="memory", severity="critical")),
        headers=KEYED,
    )
    assert moved.json() == {"dispatched": [], "skipped": ["DataDriftDetected"]}
    other = client.post("/alerts", json=webhook(alert("ModelAccuracyDegraded")), headers=KEYED)
    assert other.json()["dispatched"] == ["ModelAccuracyDegraded"]  # its own cooldown
    assert len(github.dispatches) == 2


def test_one_notification_with_several_label_sets_starts_one_retrain(
    client: TestClient, github: FakeGitHub
) -> None:
    body = webhook(*(alert("DataDriftDetected", feature=f) for f in ("cpu", "memory", "disk")))
    response = client.post("/alerts", json=body, headers=KEYED)
    assert response.json() == {"dispatched": ["DataDriftDetected"], "skipped": []}
    (dispatch,) = github.dispatches
    features = [a["labels"]["feature"] for a in dispatch["client_payload"]["alerts"]]
    assert features == ["cpu", "memory", "disk"]  # the retrain sees every drifted feature


def test_memory_stays_bounded_whatever_the_label_sets(
    client: TestClient, github: FakeGitHub
) -> None:
    for batch in range(20):
        alerts = [
            alert(name, feature=f"f{batch}-{i}", instance=f"i-{i}")
            for i in range(50)
            for name in ("DataDriftDetected", "ModelAccuracyDegraded", f"Noise{batch}-{i}")
        ]
        response = client.post("/alerts", json=webhook(*alerts), headers=KEYED)
        assert response.status_code == 200, response.text
    remembered = relay_of(client).last_dispatch
    assert set(remembered) == RETRAIN_ALERTS  # 3,000 label sets and 1,000 names later
    assert len(github.dispatches) == 1  # both names in one dispatch, once per cooldown
