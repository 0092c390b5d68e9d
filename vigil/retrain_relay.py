"""Retrain relay: Alertmanager webhook → GitHub ``repository_dispatch`` (event ``retrain``).

Alertmanager sends firing DataDriftDetected and ModelAccuracyDegraded alerts here (route
``action="retrain"`` in ``monitoring/alertmanager/alertmanager.yml``); the relay starts the
retrain workflow through GitHub's REST API. Alertmanager re-sends a firing group every
``repeat_interval``; the relay dispatches once per alert (name + labels) per cooldown, so a
long drift does not start a retrain an hour.

Run: ``python -m vigil.retrain_relay --port 8080`` with ``VIGIL_RELAY_GITHUB_REPOSITORY``
and ``VIGIL_RELAY_GITHUB_TOKEN`` set (the token has no default and lives in a Secret).
"""

import argparse
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Annotated, Literal

import httpx
import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

RETRAIN_ALERTS = frozenset({"DataDriftDetected", "ModelAccuracyDegraded"})
DISPATCH_EVENT = "retrain"


class RelaySettings(BaseSettings):
    """Where to dispatch and how often; env prefix ``VIGIL_RELAY_``."""

    model_config = SettingsConfigDict(env_prefix="VIGIL_RELAY_", extra="ignore")

    github_repository: str = Field(pattern=r"^[\w.-]+/[\w.-]+$", description="owner/name")
    github_token: SecretStr = Field(description="a token allowed to dispatch; no default")
    github_api_url: str = "https://api.github.com"
    cooldown_seconds: float = Field(default=6 * 3600, ge=0)
    timeout_seconds: float = Field(default=10, gt=0)


@lru_cache
def get_settings() -> RelaySettings:
    return RelaySettings()  # required fields come from the environment


class Alert(BaseModel):
    """One alert of an Alertmanager webhook (version 4), the fields the relay reads."""

    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: str = ""  # noqa: N815  (Alertmanager's field name)
    fingerprint: str = ""


class AlertmanagerWebhook(BaseModel):
    """The body Alertmanager's webhook receiver posts."""

    version: Literal["4"]
    groupKey: str  # noqa: N815
    status: Literal["firing", "resolved"]
    alerts: list[Alert] = Field(max_length=1000)


class RelayAnswer(BaseModel):
    dispatched: list[str]
    skipped: list[str]


class Relay:
    """Remembers what was dispatched when, and talks to GitHub."""

    def __init__(self, settings: RelaySettings, client: httpx.AsyncClient) -> None:
        self.settings = settings
        self.client = client
        self.last_dispatch: dict[tuple[tuple[str, str], ...], float] = {}
        self.registry = CollectorRegistry()
        self.dispatches = Counter(
            "retrain_dispatch_total",
            "repository_dispatch calls by outcome",
            ["outcome"],
            registry=self.registry,
        )

    async def handle(self, webhook: AlertmanagerWebhook) -> RelayAnswer:
        answer = RelayAnswer(dispatched=[], skipped=[])
        now = time.monotonic()
        due = []
        for alert in webhook.alerts:
            name = alert.labels.get("alertname", "")
            key = tuple(sorted(alert.labels.items()))
            recent = (
                now - self.last_dispatch.get(key, -float("inf")) < self.settings.cooldown_seconds
            )
            if alert.status != "firing" or name not in RETRAIN_ALERTS or recent:
                answer.skipped.append(name)
                self.dispatches.labels("skipped").inc()
                continue
            due.append((key, alert))
        if due:
            await self._dispatch(webhook.groupKey, [alert for _, alert in due])
            for key, alert in due:
                self.last_dispatch[key] = now
                answer.dispatched.append(alert.labels["alertname"])
        return answer

    async def _dispatch(self, group_key: str, alerts: list[Alert]) -> None:
        url = f"{self.settings.github_api_url}/repos/{self.settings.github_repository}/dispatches"
        body = {
            "event_type": DISPATCH_EVENT,
            "client_payload": {
                "group_key": group_key,
                "alerts": [
                    {"labels": a.labels, "summary": a.annotations.get("summary", "")}
                    for a in alerts
                ],
            },
        }
        headers = {
            "Authorization": f"Bearer {self.settings.github_token.get_secret_value()}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
        }
        try:
            response = await self.client.post(url, json=body, headers=headers)
        except httpx.HTTPError as error:
            self.dispatches.labels("error").inc()
            raise HTTPException(502, f"GitHub unreachable: {error}") from error
        if response.status_code != 204:
            self.dispatches.labels("error").inc()
            # 502: Alertmanager retries the notification, so the retrain is not lost.
            raise HTTPException(502, f"GitHub answered {response.status_code}: {response.text}")
        self.dispatches.labels("dispatched").inc()


def get_relay(request: Request) -> Relay:
    relay: Relay = request.app.state.relay
    return relay


RelayDep = Annotated[Relay, Depends(get_relay)]


def create_app(settings: RelaySettings | None = None) -> FastAPI:
    """The relay's app; settings from the environment when None."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        resolved = settings or get_settings()
        async with httpx.AsyncClient(timeout=resolved.timeout_seconds) as client:
            app.state.relay = Relay(resolved, client)
            yield

    app = FastAPI(title="Vigil retrain relay", lifespan=lifespan)

    @app.post("/alerts")
    async def alerts(webhook: AlertmanagerWebhook, relay: RelayDep) -> RelayAnswer:
        """Receive an Alertmanager notification; dispatch a retrain for retrain alerts."""
        return await relay.handle(webhook)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        """Liveness."""
        return {"status": "ok"}

    @app.get("/metrics")
    def metrics(relay: RelayDep) -> Response:
        """Prometheus metrics: dispatches by outcome."""
        return Response(generate_latest(relay.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m vigil.retrain_relay", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    uvicorn.run(create_app(), host=args.host, port=args.port, log_level="info")


if __name__ == "__main__":
    main()
