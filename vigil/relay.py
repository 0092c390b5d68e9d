"""Retrain relay: Alertmanager webhook → GitHub ``repository_dispatch`` (event ``retrain``).

Alertmanager sends firing DataDriftDetected and ModelAccuracyDegraded alerts here (route
``action="retrain"`` in ``monitoring/alertmanager/alertmanager.yml``); the relay starts the
retrain workflow through GitHub's REST API. Alertmanager re-sends a firing group every
``repeat_interval``; the relay dispatches once per alert *name* per cooldown (a label that
changes, say a new drifted feature, does not start another retrain), so a long drift does not
start a retrain an hour, and what it remembers is bounded by ``RETRAIN_ALERTS``.

``POST /alerts`` requires the API key (``contracts.auth``; Alertmanager sends it as
``Authorization: Bearer`` from the Secret's file) and the exact shape of Alertmanager's
webhook (version 4): anything else is a 401 or a 422 and dispatches nothing.

Run: ``vigil relay`` (on ``contracts.ports.RELAY_PORT`` by default) with
``VIGIL_RELAY_GITHUB_REPOSITORY``, ``VIGIL_RELAY_GITHUB_TOKEN`` and ``VIGIL_RELAY_API_KEY`` set
(both secrets have no default and live in Secrets).
"""

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Annotated, Literal

import httpx
from fastapi import Depends, FastAPI, HTTPException, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.auth import api_key_guard

RETRAIN_ALERTS = frozenset({"DataDriftDetected", "ModelAccuracyDegraded"})
DISPATCH_EVENT = "retrain"
NO_ALERTNAME = "<no alertname>"  # how an alert without the label is reported as skipped


class RelaySettings(BaseSettings):
    """Where to dispatch and how often; env prefix ``VIGIL_RELAY_``."""

    model_config = SettingsConfigDict(env_prefix="VIGIL_RELAY_", extra="ignore")

    github_repository: str = Field(pattern=r"^[\w.-]+/[\w.-]+$", description="owner/name")
    github_token: SecretStr = Field(description="a token allowed to dispatch; no default")
    github_api_url: str = "https://api.github.com"
    api_key: SecretStr | None = Field(
        default=None,
        description="Key POST /alerts requires (X-API-Key or Bearer); None: no key (tests).",
    )
    cooldown_seconds: float = Field(default=6 * 3600, ge=0)
    timeout_seconds: float = Field(default=10, gt=0)


@lru_cache
def get_settings() -> RelaySettings:
    return RelaySettings()  # required fields come from the environment


class Alert(BaseModel):
    """One alert of an Alertmanager webhook (version 4): every field Alertmanager sends, none
    other (``template.Alert`` in Alertmanager's source)."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str]
    startsAt: str  # noqa: N815  (Alertmanager's field names)
    endsAt: str  # noqa: N815
    generatorURL: str  # noqa: N815
    fingerprint: str


class AlertmanagerWebhook(BaseModel):
    """The body Alertmanager's webhook receiver posts (``webhook.Message``), exactly."""

    model_config = ConfigDict(extra="forbid")

    version: Literal["4"]
    groupKey: str  # noqa: N815
    truncatedAlerts: int = Field(ge=0)  # noqa: N815
    status: Literal["firing", "resolved"]
    receiver: str
    groupLabels: dict[str, str]  # noqa: N815
    commonLabels: dict[str, str]  # noqa: N815
    commonAnnotations: dict[str, str]  # noqa: N815
    externalURL: str  # noqa: N815
    alerts: list[Alert] = Field(max_length=1000)


class RelayAnswer(BaseModel):
    dispatched: list[str]
    skipped: list[str]


class Relay:
    """Remembers when each retrain alert name was last dispatched, and talks to GitHub."""

    def __init__(
        self, settings: RelaySettings, client: httpx.AsyncClient, dispatches: Counter
    ) -> None:
        self.settings = settings
        self.client = client
        self.dispatches = dispatches
        # Keyed by alert name, never by label set: only names in RETRAIN_ALERTS get here, so
        # however many label sets Alertmanager sends, this holds at most len(RETRAIN_ALERTS).
        self.last_dispatch: dict[str, float] = {}
        # One notification at a time: two concurrent ones for the same name would both find
        # it out of its cooldown while the first awaits GitHub.
        self._lock = asyncio.Lock()

    async def handle(self, webhook: AlertmanagerWebhook) -> RelayAnswer:
        async with self._lock:
            return await self._handle(webhook)

    async def _handle(self, webhook: AlertmanagerWebhook) -> RelayAnswer:
        answer = RelayAnswer(dispatched=[], skipped=[])
        now = time.monotonic()
        due: dict[str, list[Alert]] = {}
        for alert in webhook.alerts:
            name = alert.labels.get("alertname", NO_ALERTNAME)
            if alert.status != "firing" or name not in RETRAIN_ALERTS:
                answer.skipped.append(name)
                self.dispatches.labels("skipped").inc()
                continue
            since = now - self.last_dispatch.get(name, -float("inf"))
            if since < self.settings.cooldown_seconds:
                answer.skipped.append(name)
                self.dispatches.labels("skipped").inc()
                continue
            # Every firing alert of a due name rides along (the drifted features, say), but
            # the name starts one retrain.
            due.setdefault(name, []).append(alert)
        if due:
            await self._dispatch(webhook.groupKey, [a for alerts in due.values() for a in alerts])
            for name in due:
                self.last_dispatch[name] = now
                answer.dispatched.append(name)
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
    registry = CollectorRegistry()
    dispatches = Counter(
        "retrain_dispatch_total",
        "Alerts by outcome: dispatched, skipped (not a retrain alert, or in its cooldown), error",
        ["outcome"],
        registry=registry,
    )
    rejected = Counter(
        "retrain_webhook_rejected_total",
        "Notifications refused for a missing or wrong API key",
        registry=registry,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        resolved = settings or get_settings()
        async with httpx.AsyncClient(timeout=resolved.timeout_seconds) as client:
            app.state.relay = Relay(resolved, client, dispatches)
            yield

    app = FastAPI(title="Vigil retrain relay", lifespan=lifespan)
    require_api_key = api_key_guard(
        lambda request: get_relay(request).settings.api_key, on_reject=rejected.inc
    )

    @app.post(
        "/alerts",
        dependencies=[Depends(require_api_key)],
        responses={401: {"description": "Missing or wrong API key"}},
    )
    async def alerts(webhook: AlertmanagerWebhook, relay: RelayDep) -> RelayAnswer:
        """Receive an Alertmanager notification; dispatch a retrain for retrain alerts."""
        return await relay.handle(webhook)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        """Liveness."""
        return {"status": "ok"}

    @app.get("/metrics")
    def metrics() -> Response:
        """Prometheus metrics: alerts by outcome, rejected notifications."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app
