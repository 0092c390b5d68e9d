"""``vigil evaluate`` on the vendored dataset slices: document, protocol, budget, baselines."""

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from training.real_evaluation import evaluate_dataset
from training.real_evaluation.evaluate import PEERS
from training.real_evaluation.protocol import (
    HeldOutLabelError,
    Reviewer,
    label_budget,
    split_entity,
)
from training.real_evaluation.scoring import METRIC_KEYS, point_adjusted_f1
from training.review_queue import sample_within_budget

SLICES = Path(__file__).resolve().parents[1] / "data"
SMD_MACHINE = "machine-1-2"
SMD_TRAIN_ROWS, SMD_TEST_ROWS = 1500, 1000  # tests/data/README.md


@pytest.fixture(scope="module")
def smd_document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return evaluate_dataset(
        "smd", SLICES / "smd", work_dir=tmp_path_factory.mktemp("evaluate"), label_fraction=0.02
    )


def test_document_holds_every_metric_for_vigil_its_challenger_and_the_peers(
    smd_document: dict[str, Any],
) -> None:
    assert smd_document["dataset"] == "smd"
    assert smd_document["failed"] == {}
    entity = smd_document["entities"][SMD_MACHINE]
    for part in (entity, smd_document["overall"]):
        for scorer in (part, *(part[name] for name in ("catboost", *PEERS))):
            assert set(METRIC_KEYS) <= set(scorer), sorted(set(METRIC_KEYS) - set(scorer))
            assert 0.0 <= scorer["f1"] <= 1.0
        assert "labels_revealed" in part
    assert entity["rows"] == {
        "history": SMD_TRAIN_ROWS,
        "pool": 300,
        "held_out": 700,
        "held_out_anomalies": 5,  # the late incident of the slice; the early one is in the pool
    }


def test_label_budget_is_respected(smd_document: dict[str, Any]) -> None:
    entity = smd_document["entities"][SMD_MACHINE]
    available = SMD_TRAIN_ROWS + 300
    assert entity["label_budget"] == int(0.02 * available)
    assert 0 < entity["labels_revealed"] <= entity["label_budget"]


def test_semi_supervised_score_beats_a_random_score(smd_document: dict[str, Any]) -> None:
    entity = smd_document["entities"][SMD_MACHINE]
    anomaly_share = entity["rows"]["held_out_anomalies"] / entity["rows"]["held_out"]
    # A random score's PR-AUC is the anomaly share and its ROC-AUC 0.5.
    assert entity["pr_auc"] > 5 * anomaly_share
    assert entity["roc_auc"] > 0.7
    assert entity["event_recall"] == 1.0


def test_held_out_rows_follow_the_pool_and_never_reach_the_reviewer() -> None:
    published_train = np.array([True] * 50 + [False] * 100)
    split = split_entity(published_train)
    assert split.history.tolist() == list(range(50))
    assert split.pool.tolist() == list(range(50, 80))
    assert split.held_out.tolist() == list(range(80, 150))
    labels = np.zeros(150, dtype=np.int8)
    reviewer = Reviewer(labels, split, label_budget(split, 0.05))
    with pytest.raises(HeldOutLabelError, match="not in the review pool"):
        reviewer(np.array([79, 80]))
    reviewer(split.pool[:4])
    with pytest.raises(HeldOutLabelError, match="budget is 4"):
        reviewer(split.pool[4:5])


def test_budgeted_queue_stays_within_budget_and_reaches_the_top_scores() -> None:
    scores = np.random.default_rng(0).random(1000)
    queue = sample_within_budget(scores, budget=50, seed=1)
    assert len(queue.rows) <= 50
    assert len(np.unique(queue.rows)) == len(queue.rows)
    assert np.argmax(scores) in queue.rows  # the top 1 % stratum (10 rows) gets 15 picks
    assert ((queue.inclusion > 0) & (queue.inclusion <= 1)).all()


def test_point_adjustment_credits_a_whole_segment() -> None:
    labels = np.array([0, 1, 1, 1, 1, 0, 0, 0])
    flagged = np.array([0, 0, 1, 0, 0, 0, 0, 0], dtype=bool)
    assert point_adjusted_f1(labels, flagged) == 1.0


def test_bad_arguments_get_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown smd entities"):
        evaluate_dataset("smd", SLICES / "smd", entities=["machine-9-9"], work_dir=tmp_path)
    with pytest.raises(ValueError, match="label_fraction"):
        evaluate_dataset("smd", SLICES / "smd", label_fraction=0.0, work_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown dataset"):
        evaluate_dataset("kdd", SLICES / "smd", work_dir=tmp_path)  # type: ignore[arg-type]
