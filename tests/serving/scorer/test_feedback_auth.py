"""Forged feedback is refused: with a key configured (VIGIL_SCORER_API_KEY), POST /feedback
and POST /feedback/batch answer 401 to a request without it or with a wrong one, store
nothing, leave model_accuracy as it was, and count each refusal. A real scorer over a local
store, over real HTTP."""

from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from contracts.auth import API_KEY_HEADER
from contracts.store import ObjectStore
from serving.scorer.feedback import IDEMPOTENCY_KEY_HEADER, IDEMPOTENCY_PREFIX
from serving.scorer.settings import ScorerSettings
from tests.serving.scorer.feedback_helpers import (
    FLAGGED,
    feedback_files,
    label,
    metric,
    scorer_with_key,
    serving,
    write_scored_window,
)

KEY = "vigil-test-feedback-key"
WINDOW = datetime(2024, 1, 1, 20, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> ObjectStore:
    store = ObjectStore.from_uri(str(tmp_path / "store"))
    write_scored_window(store, WINDOW)
    return store


def test_the_key_is_read_from_the_scorer_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_SCORER_API_KEY", KEY)
    key = ScorerSettings().api_key
    assert key is not None
    assert key.get_secret_value() == KEY
    assert KEY not in repr(ScorerSettings())


def test_forged_feedback_is_refused_and_leaves_no_trace(store: ObjectStore) -> None:
    with serving(scorer_with_key(store, KEY)) as url:
        # One genuine label first: the window's verdict (flagged) was right.
        genuine = httpx.post(
            f"{url}/feedback", json=label(FLAGGED, WINDOW, 1), headers={API_KEY_HEADER: KEY}
        )
        assert genuine.status_code == 200, genuine.text
        assert metric(url, "model_accuracy", model="xgboost_anomaly") == 1.0
        stored = feedback_files(store)
        assert len(stored) == 1

        # Forgeries that would each drag the accuracy down (label 0 on a flagged window).
        wrong_label = label(FLAGGED, WINDOW, 0)
        forged = [
            ("/feedback", wrong_label, {}),
            ("/feedback", wrong_label, {API_KEY_HEADER: KEY + "x"}),
            ("/feedback", wrong_label, {API_KEY_HEADER: ""}),
            ("/feedback", wrong_label, {"Authorization": f"Bearer {KEY}x"}),
            ("/feedback", wrong_label, {"Authorization": f"Basic {KEY}"}),
            # With an idempotency key: nothing is kept under it either.
            ("/feedback", wrong_label, {IDEMPOTENCY_KEY_HEADER: "forged-1"}),
            ("/feedback/batch", {"labels": [wrong_label], "idempotency_key": "forged-2"}, {}),
            (
                "/feedback/batch",
                {"labels": [wrong_label], "idempotency_key": "forged-3"},
                {API_KEY_HEADER: "not-the-key"},
            ),
            # A body that breaks the schema still gets 401: no probing the API without a key.
            ("/feedback", {"label": "yes"}, {}),
        ]
        for path, body, headers in forged:
            response = httpx.post(f"{url}{path}", json=body, headers=headers)
            assert response.status_code == 401, (path, headers, response.text)
            assert KEY not in response.text
        assert feedback_files(store) == stored
        assert store.list_keys(f"{IDEMPOTENCY_PREFIX}/") == []
        assert metric(url, "model_accuracy", model="xgboost_anomaly") == 1.0
        assert metric(
            url, "model_feedback_total", model="xgboost_anomaly", outcome="incorrect"
        ) in (
            None,
            0.0,
        )
        assert metric(url, "scorer_feedback_unauthorized_total") == len(forged)

        # The key as a Bearer token (what Alertmanager-style callers send) is accepted.
        bearer = httpx.post(
            f"{url}/feedback",
            json=label(FLAGGED, WINDOW, 1),
            headers={"Authorization": f"Bearer {KEY}"},
        )
        assert bearer.status_code == 200, bearer.text
        assert len(feedback_files(store)) == 2
        assert metric(url, "scorer_feedback_unauthorized_total") == len(forged)


def test_reads_need_no_key(store: ObjectStore) -> None:
    with serving(scorer_with_key(store, KEY)) as url:
        assert httpx.get(f"{url}/metrics").status_code == 200
        assert httpx.get(f"{url}/healthz").status_code == 200


def test_without_a_configured_key_feedback_is_open(store: ObjectStore) -> None:
    """The loopback-only local stack runs without a key (run_scorer warns about it)."""
    with serving(scorer_with_key(store, None)) as url:
        response = httpx.post(f"{url}/feedback", json=label(FLAGGED, WINDOW, 1))
        assert response.status_code == 200, response.text
        assert metric(url, "scorer_feedback_unauthorized_total") == 0
