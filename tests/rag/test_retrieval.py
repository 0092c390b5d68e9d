"""Retrieval against the indexed runbooks and log history (real model, real Qdrant)."""

from datetime import UTC, datetime, timedelta

import pytest

from contracts.explanation import ExplainRequest
from rag.embeddings import Embedder
from rag.explainer import Explainer
from rag.knowledge_base import KnowledgeBase
from tests.rag.conftest import ANOMALY_START, make_explainer, make_settings

pytestmark = pytest.mark.xdist_group("rag")

# Log lines of each simulated incident type (telemetry/simulator/incident_kinds.py templates)
# and the runbook that should come first.
INCIDENT_LOGS = {
    "error-spike.md": [
        "Unhandled exception in POST /api/v1/orders: NullPointerException",
        "Circuit breaker OPEN for inventory-svc after 41 consecutive failures",
    ],
    "latency-degradation.md": [
        "Slow request GET /api/v1/search took 4200ms",
        "Upstream search-svc degraded: p99 latency 8000ms, queue depth 240",
    ],
    "security-threat.md": [
        "Failed password for admin from 203.0.113.7 port 52144 ssh2",
        "Suspicious query parameter from 203.0.113.7 on /api/v1/search: id=1' OR '1'='1",
    ],
    "resource-exhaustion.md": [
        "Disk usage at 93% on /dev/nvme0n1p1",
        "Failed to write events segment: No space left on device (disk 99%)",
    ],
    "service-outage.md": [
        "Service Unavailable: 0 healthy targets in tg-checkout",
        "upstream connect error or disconnect/reset before headers: payments-api",
    ],
    "data-anomaly.md": [
        "Null value in required field 'customer_id' of record 8812",
        "Failed to parse payload from orders-processor: invalid date '2024-13-45'",
    ],
}


def _request(lines: list[str], service: str | None = None) -> ExplainRequest:
    return ExplainRequest(
        instance_id="i-test",
        service=service,
        window_start=ANOMALY_START,
        window_end=ANOMALY_START + timedelta(minutes=15),
        score=0.95,
        model="xgboost_anomaly",
        log_lines=lines,
    )


@pytest.fixture(scope="module")
def explainer(
    indexed: tuple[KnowledgeBase, object],
    embedder: Embedder,
    tmp_path_factory: pytest.TempPathFactory,
) -> Explainer:
    kb, _ = indexed
    return make_explainer(make_settings(tmp_path_factory.mktemp("s")), embedder, kb)


@pytest.mark.parametrize("runbook", sorted(INCIDENT_LOGS))
def test_each_incident_type_finds_its_runbook(explainer: Explainer, runbook: str) -> None:
    retrieved = explainer.retrieve(_request(INCIDENT_LOGS[runbook]), "general")
    top_documents = [item.document for item in retrieved.runbooks]
    assert runbook in top_documents[:2], top_documents
    assert all(item.score > 0 for item in retrieved.runbooks)


def test_a_database_error_query_returns_a_database_log_first(explainer: Explainer) -> None:
    retrieved = explainer.retrieve(
        _request(["ERROR: statement timeout in the database"]), "database"
    )
    assert retrieved.history[0].kind == "log"
    assert retrieved.history[0].service == "rds"
    scores = [item.score for item in retrieved.history if item.kind == "log"]
    assert scores == sorted(scores, reverse=True)


def test_same_service_is_preferred(explainer: Explainer) -> None:
    request = _request(["request failed with an error"], service="alb")
    logs = [item for item in explainer.retrieve(request, "general").history if item.kind == "log"]
    alb = [item for item in logs if item.service == "alb"]
    assert len(alb) == 2  # the alb instance has two indexed lines
    assert logs[:2] == alb


def test_logs_outside_the_time_window_are_not_retrieved(explainer: Explainer) -> None:
    later = datetime(2026, 4, 1, tzinfo=UTC)
    request = _request(["deadlock detected"]).model_copy(
        update={"window_start": later, "window_end": later + timedelta(minutes=15)}
    )
    history = explainer.retrieve(request, "database").history
    assert [item.kind for item in history] == ["incident"]  # incidents have no time filter
