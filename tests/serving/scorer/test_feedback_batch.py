"""POST /feedback/batch and idempotent feedback, over real HTTP against a real scorer and a
local store: per-item verdicts (valid labels stored in one Parquet file, the others reported
with their status), and a retried request with the same Idempotency-Key stores and counts
nothing new and gets the same answer, also after a restart and when the copies race."""

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from contracts.store import ObjectStore
from serving.scorer.app import REPLAYED_HEADER
from serving.scorer.feedback import FEEDBACK_BATCH_MAX, IDEMPOTENCY_KEY_HEADER
from serving.scorer.prediction_log import read_feedback
from tests.serving.scorer.feedback_helpers import (
    FLAGGED,
    NORMAL,
    feedback_files,
    label,
    metric,
    scorer_with_key,
    serving,
    write_scored_window,
)

MODEL = "xgboost_anomaly"
WINDOW = datetime(2024, 1, 1, 20, 0, tzinfo=UTC)
LAST_OF_DAY = datetime(2024, 1, 1, 23, 55, tzinfo=UTC)
NEXT_DAY = datetime(2024, 1, 2, 0, 0, tzinfo=UTC)
UNSCORED = datetime(2024, 1, 1, 20, 5, tzinfo=UTC)
PLUS_ONE = timezone(timedelta(hours=1))


@pytest.fixture
def store(tmp_path: Path) -> ObjectStore:
    store = ObjectStore.from_uri(str(tmp_path / "store"))
    for start in (WINDOW, LAST_OF_DAY, NEXT_DAY):
        write_scored_window(store, start)
    return store


def _batch(url: str, body: dict[str, Any], key: str | None = None) -> httpx.Response:
    headers = {IDEMPOTENCY_KEY_HEADER: key} if key else {}
    return httpx.post(f"{url}/feedback/batch", json=body, headers=headers, timeout=30)


def _counts(url: str) -> tuple[float | None, ...]:
    return (
        metric(url, "model_accuracy", model=MODEL),
        metric(url, "model_feedback_total", model=MODEL, outcome="correct"),
        metric(url, "model_feedback_total", model=MODEL, outcome="incorrect"),
    )


MIXED = [
    label(FLAGGED, WINDOW, 1),  # 0: stored, the verdict was right
    label(NORMAL, WINDOW, 1),  # 1: stored, the verdict was wrong
    label(FLAGGED, WINDOW + timedelta(minutes=3), 1),  # 2: not a window start → 422
    label("i-never-scored", WINDOW, 1),  # 3: not scored in that window → 404
    label(FLAGGED, WINDOW, 0),  # 4: repeats item 0 → 422
    label(FLAGGED, UNSCORED, 1),  # 5: a window nobody scored → 404
]


def test_a_batch_stores_its_valid_labels_in_one_file_and_reports_the_others(
    store: ObjectStore,
) -> None:
    with serving(scorer_with_key(store, None)) as url:
        response = _batch(url, {"labels": MIXED}, key="batch-1")
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["idempotency_key"] == "batch-1"
        assert [(a["index"], a["correct"]) for a in answer["accepted"]] == [(0, True), (1, False)]
        assert [(r["index"], r["status"]) for r in answer["rejected"]] == [
            (2, 422),
            (3, 404),
            (4, 422),
            (5, 404),
        ]
        assert "repeats item 0" in answer["rejected"][2]["detail"]
        assert "i-never-scored" in answer["rejected"][1]["detail"]
        assert len(feedback_files(store)) == 1  # one file for the batch, not one per label
        stored = read_feedback(store, WINDOW, WINDOW + timedelta(minutes=5))
        assert sorted(stored.select("instance_id", "label").rows()) == [(FLAGGED, 1), (NORMAL, 1)]
        assert _counts(url) == (0.5, 1.0, 1.0)


def test_a_retried_batch_gets_the_same_answer_and_stores_nothing_new(store: ObjectStore) -> None:
    with serving(scorer_with_key(store, None)) as url:
        first = _batch(url, {"labels": MIXED}, key="batch-2")
        assert first.status_code == 200, first.text
        assert REPLAYED_HEADER not in first.headers
        files, counts = feedback_files(store), _counts(url)

        # The same labels, spelled differently (another offset), the key in the body now.
        respelled = [item | {"window_start": _in_plus_one(item["window_start"])} for item in MIXED]
        retry = _batch(url, {"labels": respelled, "idempotency_key": "batch-2"})
        assert retry.status_code == 200, retry.text
        assert retry.headers[REPLAYED_HEADER] == "true"
        assert retry.json() == first.json()
        assert feedback_files(store) == files
        assert _counts(url) == counts
        assert metric(url, "scorer_feedback_idempotent_replays_total") == 1

        # The same key on other labels is a conflict: nothing stored, nothing counted.
        other = _batch(url, {"labels": [label(FLAGGED, LAST_OF_DAY, 1)]}, key="batch-2")
        assert other.status_code == 409, other.text
        assert feedback_files(store) == files
        assert _counts(url) == counts

    # The kept answer outlives the process: a restarted scorer answers the retry from it.
    with serving(scorer_with_key(store, None)) as url:
        after_restart = _batch(url, {"labels": MIXED}, key="batch-2")
        assert after_restart.status_code == 200
        assert after_restart.json() == first.json()
        assert feedback_files(store) == files
        assert _counts(url) == (None, None, None)


def _in_plus_one(moment: str) -> str:
    return datetime.fromisoformat(moment).astimezone(PLUS_ONE).isoformat()


def test_copies_of_a_batch_racing_each_other_store_it_once(store: ObjectStore) -> None:
    body = {"labels": MIXED[:2], "idempotency_key": "batch-race"}
    with serving(scorer_with_key(store, None)) as url, ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: _batch(url, body), range(6)))
        assert {a.status_code for a in answers} == {200}
        assert len({a.text for a in answers}) == 1
        assert sum(REPLAYED_HEADER in a.headers for a in answers) == 5
        assert len(feedback_files(store)) == 1
        assert _counts(url) == (0.5, 1.0, 1.0)


def test_a_batch_across_midnight_is_read_back_on_both_days(store: ObjectStore) -> None:
    """The feedback log is read day by day: a batch is kept as one file per window day."""
    labels = [label(FLAGGED, LAST_OF_DAY, 1), label(FLAGGED, NEXT_DAY, 0)]
    with serving(scorer_with_key(store, None)) as url:
        response = _batch(url, {"labels": labels}, key="batch-midnight")
        assert response.status_code == 200, response.text
        assert len(response.json()["accepted"]) == 2
    assert len(feedback_files(store)) == 2
    day_two = read_feedback(store, NEXT_DAY, NEXT_DAY + timedelta(days=1))
    assert day_two.select("instance_id", "label").rows() == [(FLAGGED, 0)]
    day_one = read_feedback(store, WINDOW, NEXT_DAY)
    assert day_one.select("instance_id", "label").rows() == [(FLAGGED, 1)]


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ({"labels": [label(FLAGGED, WINDOW, 1)]}, None),  # no idempotency key at all
        ({"labels": [label(FLAGGED, WINDOW, 1)], "idempotency_key": "a"}, "b"),  # two keys
        ({"labels": [], "idempotency_key": "empty"}, None),
        ({"labels": [label(FLAGGED, WINDOW, 2)], "idempotency_key": "bad-label"}, None),
        ({"labels": [label(FLAGGED, WINDOW, 1) | {"x": 1}], "idempotency_key": "extra"}, None),
        ({"labels": [label(FLAGGED, WINDOW, 1)], "idempotency_key": "with space"}, None),
        (
            {
                "labels": [label(FLAGGED, WINDOW, 1)] * (FEEDBACK_BATCH_MAX + 1),
                "idempotency_key": "too-many",
            },
            None,
        ),
    ],
    ids=["no-key", "two-keys", "empty", "bad-label", "extra-field", "bad-key", "too-many"],
)
def test_a_batch_that_breaks_the_schema_is_refused_whole(
    store: ObjectStore, body: dict[str, Any], key: str | None
) -> None:
    with serving(scorer_with_key(store, None)) as url:
        response = _batch(url, body, key=key)
        assert response.status_code == 422, response.text
        assert feedback_files(store) == []
        assert _counts(url) == (None, None, None)


def test_the_largest_batch_is_accepted(store: ObjectStore) -> None:
    windows = [WINDOW + timedelta(minutes=5 * i) for i in range(FEEDBACK_BATCH_MAX // 2)]
    for start in windows:
        write_scored_window(store, start)
    labels = [label(i, start, 1) for start in windows for i in (FLAGGED, NORMAL)]
    assert len(labels) == FEEDBACK_BATCH_MAX
    with serving(scorer_with_key(store, None)) as url:
        response = _batch(url, {"labels": labels}, key="largest")
        assert response.status_code == 200, response.text
        assert len(response.json()["accepted"]) == FEEDBACK_BATCH_MAX
        assert _counts(url) == (0.5, 500.0, 500.0)
    # One file per window day the batch covers (the log is read day by day): 3, not 1,000.
    days = {start.date() for start in windows}
    assert len(days) == 3
    assert [key.split("/")[2] for key in feedback_files(store)] == sorted(map(str, days))


def test_a_single_label_with_an_idempotency_key_is_stored_once(store: ObjectStore) -> None:
    body = label(FLAGGED, WINDOW, 1)
    with serving(scorer_with_key(store, None)) as url:

        def post(body: dict[str, Any], key: str) -> httpx.Response:
            return httpx.post(f"{url}/feedback", json=body, headers={IDEMPOTENCY_KEY_HEADER: key})

        first = post(body, "single-1")
        assert first.status_code == 200, first.text
        retry = post(body, "single-1")
        assert retry.status_code == 200
        assert retry.json() == first.json()
        assert retry.headers[REPLAYED_HEADER] == "true"
        assert len(feedback_files(store)) == 1
        assert _counts(url) == (1.0, 1.0, None)
        assert post(label(NORMAL, WINDOW, 1), "single-1").status_code == 409
        # A key is per route: a batch reusing it is another request.
        assert _batch(url, {"labels": [body]}, key="single-1").status_code == 409

        # An error answer is not kept: once the window is scored, the retry succeeds.
        late = label(FLAGGED, UNSCORED, 1)
        assert post(late, "single-2").status_code == 404
        write_scored_window(store, UNSCORED)
        assert post(late, "single-2").status_code == 200
        assert len(feedback_files(store)) == 2
        assert _counts(url) == (1.0, 2.0, None)

        # Without a key nothing is deduplicated, as before.
        assert httpx.post(f"{url}/feedback", json=body).status_code == 200
        assert httpx.post(f"{url}/feedback", json=body).status_code == 200
        assert len(feedback_files(store)) == 4
