"""Schemathesis fuzzes the online scorer's OpenAPI (``/feedback``, ``/feedback/batch``,
``/metrics``, ``/healthz``, ``/readyz``) over real HTTP: no request may get a 5xx, a body that
breaks the schema gets a 4xx, and every answer matches the published schema.

The scorer is the real one over a local object store holding one scored window, so feedback
on that window is accepted (200), on any other a 404 or 422. No inference server is running:
nothing here scores, and ``/readyz`` answers its documented 503. A second scorer requires an
API key the fuzzer does not know: everything it sends to the feedback routes is a forgery,
answered 401, and none of it is stored.
"""

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from contracts.serving import XGBOOST_MODEL
from contracts.store import ObjectStore
from serving.scorer.app import create_app
from serving.scorer.feedback import FEEDBACK_EXAMPLE, IDEMPOTENCY_PREFIX
from serving.scorer.prediction_log import FEEDBACK_PREFIX, write_predictions
from tests.serving.scorer.feedback_helpers import scorer_with_key
from tests.serving.scorer_helpers import offline_scorer, sample, scrape, serve_in_thread

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
WINDOW_START = datetime.fromisoformat(str(FEEDBACK_EXAMPLE["window_start"])).astimezone(UTC)
INSTANCE = FEEDBACK_EXAMPLE["instance_id"]


def _scored_store(path: Path) -> ObjectStore:
    """A store holding the predictions of one window: the example instance, flagged."""
    store = ObjectStore.from_uri(str(path))
    predictions = pl.DataFrame(
        {
            "instance_id": [INSTANCE, "i-other"],
            "timestamp": [WINDOW_START, WINDOW_START],
            "window_start": [WINDOW_START, WINDOW_START],
            "model": [XGBOOST_MODEL] * 2,
            "model_version": [1, 1],
            "probability": [0.97, 0.02],
            "result": [1, 0],
            "latency_seconds": [0.002, 0.002],
            "error": [None, None],
        },
        schema_overrides={"error": pl.String},
    )
    write_predictions(store, WINDOW_START, predictions)
    return store


@pytest.fixture(scope="module")
def scorer_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    scorer = offline_scorer(_scored_store(tmp_path_factory.mktemp("scored")), ["cpu"])
    try:
        with serve_in_thread(create_app(scorer)) as url:
            yield url
    finally:
        scorer.close()


@pytest.fixture(scope="module")
def api_schema(scorer_url: str) -> Any:
    return schemathesis.openapi.from_url(f"{scorer_url}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.fixture(scope="module")
def keyed_store(tmp_path_factory: pytest.TempPathFactory) -> ObjectStore:
    return _scored_store(tmp_path_factory.mktemp("keyed"))


@pytest.fixture(scope="module")
def keyed_url(keyed_store: ObjectStore) -> Iterator[str]:
    scorer = scorer_with_key(keyed_store, "a-key-the-fuzzer-does-not-know")
    try:
        with serve_in_thread(create_app(scorer)) as url:
            yield url
    finally:
        scorer.close()


@pytest.fixture(scope="module")
def keyed_schema(keyed_url: str) -> Any:
    return schemathesis.openapi.from_url(f"{keyed_url}/openapi.json")


keyed = schemathesis.pytest.from_fixture("keyed_schema")


@schema.parametrize()
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_no_request_gets_a_5xx_or_an_off_schema_answer(case: Any) -> None:
    checks = CHECKS
    if case.path == "/readyz":
        # Its documented 503 while no inference server answers (as here) is the probe's answer.
        checks = [check for check in CHECKS if check is not not_a_server_error]
    case.call_and_validate(checks=checks)


@keyed.include(method="POST").parametrize()
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_forged_feedback_from_the_fuzzer_is_refused(case: Any, keyed_store: ObjectStore) -> None:
    response = case.call_and_validate(checks=CHECKS)
    # 400 / 422: a body that is not JSON at all (decoded before any check); 405: another
    # method. Never a 2xx, never a 404 that would say which windows were scored.
    assert response.status_code in (400, 401, 405, 422), response.text
    assert keyed_store.list_keys(f"{FEEDBACK_PREFIX}/") == []
    assert keyed_store.list_keys(f"{IDEMPOTENCY_PREFIX}/") == []


def test_forged_valid_feedback_is_counted_and_not_stored(
    keyed_store: ObjectStore, keyed_url: str
) -> None:
    # Valid bodies, so only the key can refuse them; this test does not rely on the fuzzer
    # having run in the same worker.
    before = sample(scrape(keyed_url), "scorer_feedback_unauthorized_total")
    forged = [{}, {"X-API-Key": "not-it"}, {"Authorization": "Bearer not-it"}]
    for headers in forged:
        response = httpx.post(f"{keyed_url}/feedback", json=FEEDBACK_EXAMPLE, headers=headers)
        assert response.status_code == 401, response.text
    assert keyed_store.list_keys(f"{FEEDBACK_PREFIX}/") == []
    assert keyed_store.list_keys(f"{IDEMPOTENCY_PREFIX}/") == []
    after = sample(scrape(keyed_url), "scorer_feedback_unauthorized_total")
    assert after - before == len(forged)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        # What the fuzzer found: each was accepted (a 200) or crashed the scorer (a 500).
        (FEEDBACK_EXAMPLE | {"label": True}, "label"),
        (FEEDBACK_EXAMPLE | {"window_start": 1704139200}, "window_start"),  # Unix time
        (FEEDBACK_EXAMPLE | {"window_start": "0001-01-01T00:00:00+05:00"}, "window_start"),
        (FEEDBACK_EXAMPLE | {"window_start": "9999-12-31T23:55:00-05:00"}, "window_start"),
        (FEEDBACK_EXAMPLE | {"window_start": "2024-01-01T20:03:00Z"}, "window_start"),  # off-grid
    ],
)
def test_found_by_fuzzing_each_gets_a_422_naming_the_field(
    scorer_url: str, body: dict[str, Any], field: str
) -> None:
    response = httpx.post(f"{scorer_url}/feedback", json=body, timeout=10)
    assert response.status_code == 422, response.text
    assert [problem["loc"] for problem in response.json()["detail"]] == [["body", field]]


def test_the_schema_example_is_accepted_in_any_offset(scorer_url: str) -> None:
    body = FEEDBACK_EXAMPLE | {"window_start": "2024-01-01T21:00:00+01:00"}
    response = httpx.post(f"{scorer_url}/feedback", json=body, timeout=10)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "instance_id": INSTANCE,
        "window_start": "2024-01-01T20:00:00Z",
        "label": 1,
        "model": XGBOOST_MODEL,
        "predicted": 1,
        "correct": True,
    }
