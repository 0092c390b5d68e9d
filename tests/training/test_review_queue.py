"""The review queue: sampling within the label budget, and validated import of the answers."""

import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from numpy.typing import NDArray

from contracts.store import ObjectStore
from tests.training.conftest import small_config
from training.config import ReviewConfig
from training.data import load_training_data
from training.isolation import Bucket
from training.labelling import label_rows
from training.review_queue import (
    REVIEWS_PATH,
    ReviewImportError,
    import_reviews,
    load_queue,
    load_reviews,
    sample_review_queue,
)

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _candidates(scores: dict[str, NDArray[np.float64]]) -> pl.DataFrame:
    frames = [
        pl.DataFrame(
            {
                "instance_id": [instance] * len(values),
                "timestamp": [T0 + timedelta(minutes=m) for m in range(len(values))],
                "score": values,
                "bucket": [Bucket.MEDIUM_NORMAL.value] * len(values),
            }
        )
        for instance, values in scores.items()
    ]
    return pl.concat(frames).with_columns(pl.col("timestamp").cast(pl.Datetime("ms", "UTC")))


def test_queue_spends_its_budget_on_the_top_scores_and_weights_every_answer() -> None:
    rng = np.random.default_rng(0)
    candidates = _candidates({"web-1": rng.random(1000), "web-2": rng.random(1000)})
    queue = sample_review_queue(candidates, ReviewConfig(), budget=40)
    assert queue.height == 40
    assert queue["row_id"].n_unique() == queue.height
    assert queue["row_id"][0].count("@") == 1
    counts = dict(queue.group_by("reason").len().iter_rows())
    # 30 % of the budget on the top 1 % of scores, 10 % on the bottom 70 %
    assert counts["top 1%"] == 12
    assert counts["top 100%"] == 4
    # inverse inclusion probabilities weigh the answers back to every candidate
    assert (1 / queue["inclusion"]).sum() == pytest.approx(candidates.height, rel=0.01)


def test_likely_anomalies_of_critical_services_come_first() -> None:
    scores = np.zeros(1000)
    scores[:20] = 1.0  # db-1's top rows
    candidates = _candidates({"db-1": scores, "web-1": np.full(1000, 0.5)})
    queue = sample_review_queue(candidates, ReviewConfig(critical_instances=["db-*"]), budget=30)
    critical = queue.filter(pl.col("reason") == "critical_anomaly")
    assert critical.height == 20
    assert (critical["instance_id"] == "db-1").all()
    assert queue.height <= 30
    assert (critical["inclusion"] == 1.0).all()


def test_queue_is_reproducible_for_a_seed() -> None:
    candidates = _candidates({"a": np.random.default_rng(1).random(500)})
    first = sample_review_queue(candidates, ReviewConfig(), budget=25)
    assert first.equals(sample_review_queue(candidates, ReviewConfig(), budget=25))
    other = sample_review_queue(candidates, ReviewConfig(random_state=7), budget=25)
    assert not first["row_id"].equals(other["row_id"])


def _fill_csv(path: Path, answer: dict[str, str]) -> Path:
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        row["label"] = answer.get(row["row_id"], "")
    out = path.with_name("reviewed.csv")
    with out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return out


def test_csv_round_trip_stores_the_answers_and_training_uses_them(
    exported: tuple[ObjectStore, Path],
) -> None:
    store, out = exported
    ids = load_queue(store)["row_id"].to_list()
    answer = {row_id: ("anomaly" if i % 3 == 0 else "normal") for i, row_id in enumerate(ids)}
    del answer[ids[-1]]  # one left unanswered
    imported = import_reviews(store, _fill_csv(out / "review_queue.csv", answer))
    assert imported.unanswered == 1
    reviews = load_reviews(store)
    assert dict(zip(reviews["row_id"], reviews["label"], strict=True)) == {
        row_id: int(label == "anomaly") for row_id, label in answer.items()
    }

    no_oracle = small_config(review={"simulate_reviewer": False})
    labelled = label_rows(load_training_data(store), no_oracle, reviews)
    assert labelled.reviews_imported == len(answer)
    assert labelled.reviews_simulated == 0
    # The next queue does not ask again about rows already reviewed.
    assert not set(labelled.queue["row_id"]) & set(answer)


def test_label_studio_export_round_trip(exported: tuple[ObjectStore, Path]) -> None:
    store, out = exported
    tasks = json.loads((out / "review_queue.label_studio.json").read_text())
    for index, task in enumerate(tasks):
        choice = "anomaly" if index % 2 else "normal"
        task["annotations"] = [
            {"was_cancelled": True, "result": []},
            {
                "was_cancelled": False,
                "result": [
                    {
                        "from_name": "label",
                        "to_name": "row",
                        "type": "choices",
                        "value": {"choices": [choice]},
                    }
                ],
            },
        ]
    tasks[0]["annotations"] = []  # not reviewed yet
    reviewed = out / "label_studio_export.json"
    reviewed.write_text(json.dumps(tasks))
    imported = import_reviews(store, reviewed)
    assert imported.unanswered == 1
    assert imported.reviews.height == len(tasks) - 1
    assert imported.reviews["label"].to_list() == [index % 2 for index in range(1, len(tasks))]


def test_label_studio_json_min_export(exported: tuple[ObjectStore, Path]) -> None:
    store, out = exported
    ids = load_queue(store)["row_id"].to_list()[:3]
    reviewed = out / "min.json"
    reviewed.write_text(json.dumps([{"row_id": row_id, "label": "anomaly"} for row_id in ids]))
    assert import_reviews(store, reviewed).reviews["label"].to_list() == [1, 1, 1]


def test_disagreeing_annotators_are_a_conflict(exported: tuple[ObjectStore, Path]) -> None:
    store, out = exported
    task = json.loads((out / "review_queue.label_studio.json").read_text())[0]
    task["annotations"] = [
        {"result": [{"from_name": "label", "type": "choices", "value": {"choices": [c]}}]}
        for c in ("anomaly", "normal")
    ]
    reviewed = out / "conflict.json"
    reviewed.write_text(json.dumps([task]))
    with pytest.raises(ReviewImportError, match="both anomaly and normal"):
        import_reviews(store, reviewed)
    assert not store.exists(REVIEWS_PATH)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda ids: {"i-9999@2024-01-01T00:00:00Z": "anomaly"}, "not in the exported review"),
        (lambda ids: {ids[0]: "maybe"}, "unknown label value"),
    ],
)
def test_bad_answers_are_refused_and_nothing_is_saved(
    exported: tuple[ObjectStore, Path], edit: object, message: str
) -> None:
    store, out = exported
    ids = load_queue(store)["row_id"].to_list()
    rows = [{"row_id": row_id, "label": label} for row_id, label in edit(ids).items()]  # type: ignore[operator]
    rows.append({"row_id": ids[1], "label": "normal"})
    reviewed = out / "bad.csv"
    pl.DataFrame(rows).write_csv(reviewed)
    with pytest.raises(ReviewImportError, match=message):
        import_reviews(store, reviewed)
    assert not store.exists(REVIEWS_PATH)


def test_one_row_labelled_twice_differently_is_refused(exported: tuple[ObjectStore, Path]) -> None:
    store, out = exported
    row_id = load_queue(store)["row_id"][0]
    reviewed = out / "twice.csv"
    pl.DataFrame({"row_id": [row_id, row_id], "label": ["anomaly", "normal"]}).write_csv(reviewed)
    with pytest.raises(ReviewImportError, match=r"1 row id\(s\) labelled both"):
        import_reviews(store, reviewed)


def test_a_changed_answer_needs_overwrite(exported: tuple[ObjectStore, Path]) -> None:
    store, out = exported
    row_id = load_queue(store)["row_id"][0]
    first, second = out / "first.csv", out / "second.csv"
    pl.DataFrame({"row_id": [row_id], "label": ["anomaly"]}).write_csv(first)
    pl.DataFrame({"row_id": [row_id], "label": ["normal"]}).write_csv(second)
    import_reviews(store, first)
    with pytest.raises(ReviewImportError, match="reviewed before"):
        import_reviews(store, second)
    assert load_reviews(store)["label"].to_list() == [1]
    import_reviews(store, second, overwrite=True)
    assert load_reviews(store)["label"].to_list() == [0]


def test_a_file_without_the_columns_or_the_queue_is_refused(
    tmp_path: Path, exported: tuple[ObjectStore, Path]
) -> None:
    store, out = exported
    reviewed = out / "columns.csv"
    reviewed.write_text("id,verdict\nx,anomaly\n")
    with pytest.raises(ReviewImportError, match="missing column"):
        import_reviews(store, reviewed)
    with pytest.raises(ReviewImportError, match=r"expected a \.csv or \.json"):
        import_reviews(store, out / "label_studio_config.xml")
    empty = ObjectStore.from_uri(str(tmp_path / "empty"))
    with pytest.raises(ReviewImportError, match="review export"):
        import_reviews(empty, reviewed)
