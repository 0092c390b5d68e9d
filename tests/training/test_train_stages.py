"""Each training stage on its own: scores, buckets, labels, split, metrics, alias decisions."""

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from numpy.typing import NDArray

from contracts.drift_reference import bin_counts, inner_edges
from training.config import ConfidenceConfig, GatesConfig, IsolationForestConfig, SplitConfig
from training.evaluation import classification_metrics, event_recall, gate_failures
from training.isolation import (
    Bucket,
    confidence_buckets,
    fit_isolation_forest,
    raw_scores,
    run_isolation_forest,
)
from training.models import SingleClassError, require_both_classes, split_rows
from training.pipeline import join_labels, require_finite
from training.pseudo_labels import assign_pseudo_labels, label_mix, reveal_known_labels
from training.registry import Holder, decide_aliases, reference_distributions

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _normal_rows(rows: int = 2000, columns: int = 8, seed: int = 0) -> NDArray[np.float32]:
    return np.random.default_rng(seed).normal(0, 1, (rows, columns)).astype(np.float32)


def test_isolation_scores_flag_the_contamination_share_and_a_spike() -> None:
    features = _normal_rows()
    features[7] = 12.0  # a spike on every feature
    result = run_isolation_forest(
        features, np.arange(len(features)), IsolationForestConfig(), ConfidenceConfig()
    )
    assert result.scores.min() >= -1.0
    assert result.scores.max() <= 1.0
    assert np.mean(result.scores < 0) == pytest.approx(0.05, abs=0.005)
    assert result.scores[7] == -1.0
    assert result.buckets[7] == Bucket.HIGH_ANOMALY


def test_isolation_scores_do_not_depend_on_row_order_or_blocks() -> None:
    features = _normal_rows()
    forest = fit_isolation_forest(features, IsolationForestConfig())
    sequential = forest.score_samples(features)
    # Scored in threaded row blocks, each row gets exactly sklearn's sequential score.
    assert np.array_equal(raw_scores(forest, features, chunk_rows=300), sequential)
    order = np.random.default_rng(1).permutation(len(features))
    assert np.array_equal(raw_scores(forest, features[order], chunk_rows=300), sequential[order])


def test_rows_outside_the_fit_are_scored_but_do_not_move_the_scale() -> None:
    features = _normal_rows()
    features[-100:] += 50.0  # held-out rows far away
    fit_rows = np.arange(len(features) - 100)
    result = run_isolation_forest(features, fit_rows, IsolationForestConfig(), ConfidenceConfig())
    assert np.mean(result.scores[fit_rows] < 0) == pytest.approx(0.05, abs=0.005)
    assert (result.scores[-100:] < 0).all()


def test_buckets_follow_the_seed_edges() -> None:
    scores = np.array([-0.9, -0.6, -0.45, -0.1, 0.0, 0.3, 0.31])
    assert confidence_buckets(scores, ConfidenceConfig()).tolist() == [
        Bucket.HIGH_ANOMALY,
        Bucket.MEDIUM_ANOMALY,
        Bucket.MEDIUM_ANOMALY,
        Bucket.LOW_ANOMALY,
        Bucket.MEDIUM_NORMAL,
        Bucket.MEDIUM_NORMAL,
        Bucket.HIGH_NORMAL,
    ]


def _rows(instance: str, minutes: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "instance_id": [instance] * minutes,
            "timestamp": [T0 + timedelta(minutes=m) for m in range(minutes)],
        }
    ).with_columns(pl.col("timestamp").cast(pl.Datetime("ms", "UTC")))


def _incidents(*spans: tuple[str, int, int]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "instance_id": [s[0] for s in spans],
            "start": [T0 + timedelta(minutes=s[1]) for s in spans],
            "end": [T0 + timedelta(minutes=s[2]) for s in spans],
        }
    )


def test_incidents_label_their_rows_inclusively_and_the_rest_normal() -> None:
    rows = pl.concat([_rows("a", 10), _rows("b", 10)])
    # Overlapping incidents on "a": the long one covers minute 7 even though the later short
    # one ended before it.
    labels = join_labels(rows, _incidents(("a", 2, 7), ("a", 3, 4), ("b", 9, 9)), None)
    assert labels.to_list() == [0, 0, 1, 1, 1, 1, 1, 1, 0, 0] + [0] * 9 + [1]


def test_point_labels_take_precedence_and_unlabelled_rows_stay_null() -> None:
    rows = _rows("a", 4)
    points = pl.DataFrame(
        {
            "instance_id": ["a", "a"],
            "timestamp": [T0, T0 + timedelta(minutes=1)],
            "label": [1, None],
            "split": ["test", "train"],
        },
        schema_overrides={"label": pl.Int8},
    )
    assert join_labels(rows, None, points).to_list() == [1, None, None, None]
    with_incident = join_labels(rows, _incidents(("a", 0, 1)), points)
    assert with_incident.to_list() == [1, None, 0, 0]
    assert join_labels(rows, None, None).to_list() == [None] * 4


def test_bad_label_files_are_refused() -> None:
    with pytest.raises(ValueError, match="ends before it starts"):
        join_labels(_rows("a", 3), _incidents(("a", 2, 1)), None)
    points = pl.DataFrame(
        {"instance_id": ["a", "a"], "timestamp": [T0, T0], "label": [1, 0], "split": ["t", "t"]}
    )
    with pytest.raises(ValueError, match="repeat"):
        join_labels(_rows("a", 3), None, points)


def test_non_finite_features_are_named() -> None:
    features = np.zeros((5, 3), dtype=np.float32)
    features[1, 2] = np.nan
    features[3, 2] = np.inf
    with pytest.raises(ValueError, match=r"c \(2 rows\)"):
        require_finite(features, ["a", "b", "c"])


def test_known_labels_are_revealed_only_on_eligible_rows() -> None:
    true = pl.Series([1, 0, 0, 1, None, 0] * 100, dtype=pl.Int8)
    eligible = np.arange(600) < 480
    known = reveal_known_labels(true, eligible, 0.5, seed=3)
    revealed = known.is_not_null().to_numpy()
    assert not revealed[~eligible].any()
    assert revealed.sum() == round(0.5 * 400)  # 400 labelled eligible rows
    assert (known.filter(pl.Series(revealed)) == true.filter(pl.Series(revealed))).all()


def test_pseudo_labels_prefer_original_then_review_then_unsupervised() -> None:
    pseudo = assign_pseudo_labels(
        pl.Series([0, None, None, None, None], dtype=pl.Int8),
        pl.Series([1, 1, None, None, None], dtype=pl.Int8),
        pl.Series([1, 0, 1, 0, None], dtype=pl.Int8),
    )
    assert pseudo["train_label"].to_list() == [0, 1, 1, 0, None]
    assert pseudo["label_source"].to_list() == [
        "original",
        "review",
        "unsupervised",
        "unsupervised",
        None,
    ]
    mix = label_mix(pseudo)
    assert mix.anomalies == {"original": 0, "review": 1, "unsupervised": 1}
    assert mix.normals == {"original": 1, "review": 0, "unsupervised": 1}
    assert mix.unlabelled == 1
    assert mix.labelled == 4


def test_time_split_puts_the_latest_minutes_in_test_without_straddling() -> None:
    timestamps = np.repeat(np.arange(100), 3).astype("datetime64[m]")  # 3 instances per minute
    split = split_rows(timestamps, np.zeros(300), SplitConfig())
    assert timestamps[split.train].max() < timestamps[split.validation].min()
    assert timestamps[split.validation].max() < timestamps[split.test].min()
    assert (len(split.train), len(split.validation), len(split.test)) == (240, 30, 30)


def test_stratified_split_keeps_each_class_share() -> None:
    strata = np.array([1] * 100 + [0] * 900)
    split = split_rows(
        np.zeros(1000).astype("datetime64[m]"), strata, SplitConfig(method="stratified")
    )
    for part in (split.train, split.validation, split.test):
        assert strata[part].mean() == pytest.approx(0.1)
    assert len(np.unique(np.concatenate([split.train, split.validation, split.test]))) == 1000


def test_a_split_with_an_empty_part_is_refused() -> None:
    with pytest.raises(ValueError, match="would be empty"):
        split_rows(np.zeros(50).astype("datetime64[m]"), np.zeros(50), SplitConfig())


def test_single_class_labels_are_refused() -> None:
    with pytest.raises(SingleClassError, match="all normal"):
        require_both_classes(np.zeros(10), "training")
    require_both_classes(np.array([0, 1]), "training")


def test_metrics_against_true_labels() -> None:
    truth = np.array([0, 0, 0, 0, 1, 1, 1, 0])
    scores = np.array([0.1, 0.2, 0.7, 0.1, 0.9, 0.8, 0.3, 0.0])
    metrics = classification_metrics(truth, scores, 0.5)
    assert (metrics.true_positives, metrics.false_positives, metrics.false_negatives) == (2, 1, 1)
    assert metrics.precision == pytest.approx(2 / 3)
    assert metrics.recall == pytest.approx(2 / 3)
    assert metrics.false_positive_rate == pytest.approx(1 / 5)
    assert metrics.roc_auc is not None
    assert 0.5 < metrics.roc_auc < 1.0
    assert classification_metrics(np.zeros(3), scores[:3], 0.5).roc_auc is None
    assert gate_failures(metrics, GatesConfig()) == [
        "f1 0.667 <= 0.85",
        "precision 0.667 <= 0.9",
    ]


def test_event_recall_counts_incidents_per_instance() -> None:
    instances = np.array(["a"] * 6 + ["b"] * 4)
    truth = np.array([0, 1, 1, 0, 1, 1, 1, 1, 0, 0])
    flagged = np.array([0, 0, 1, 0, 0, 0, 0, 0, 0, 0])
    # Three incidents: a[1:3] caught, a[4:6] and b[0:2] (a run across instances splits) missed.
    assert event_recall(instances, truth, flagged) == pytest.approx(1 / 3)
    assert event_recall(instances, np.zeros(10, dtype=int), flagged) is None


def test_reference_distributions_bin_every_training_row() -> None:
    features = np.column_stack([np.arange(1000.0), np.full(1000, 3.0)]).astype(np.float32)
    reference = reference_distributions(features, ["ramp", "constant"], bins=10)
    ramp, constant = reference["features"]["ramp"], reference["features"]["constant"]  # type: ignore[index]
    assert len(ramp["edges"]) == 11
    assert sum(ramp["counts"]) == 1000
    assert max(ramp["counts"]) - min(ramp["counts"]) <= 1
    assert constant == {"edges": [3.0, 3.0], "counts": [1000]}
    # The shared rule puts a serving-time value in a bin even outside the training range.
    outside = bin_counts(inner_edges(ramp["edges"]), np.array([-5.0, 5000.0]))
    assert outside.tolist() == [1, 0, 0, 0, 0, 0, 0, 0, 0, 1]


def _holder(kind: str, version: str, score: float) -> Holder:
    return Holder(kind, version, score)


def test_first_passing_run_takes_both_aliases() -> None:
    target, _ = decide_aliases([_holder("xgboost", "1", 0.9), _holder("catboost", "1", 0.8)], {})
    assert target == {
        "champion": _holder("xgboost", "1", 0.9),
        "challenger": _holder("catboost", "1", 0.8),
    }


def test_a_run_that_does_not_beat_the_champion_changes_nothing() -> None:
    current = {
        "champion": _holder("xgboost", "1", 0.9),
        "challenger": _holder("catboost", "1", 0.8),
    }
    target, decision = decide_aliases(
        [_holder("xgboost", "2", 0.9), _holder("catboost", "2", 0.7)], current
    )
    assert target == current
    assert "unchanged" in decision


def test_a_better_challenger_alone_moves_nothing() -> None:
    # The arms must read one run's detector: a new challenger beside an old champion would not.
    current = {
        "champion": _holder("xgboost", "1", 0.9),
        "challenger": _holder("catboost", "1", 0.8),
    }
    target, decision = decide_aliases(
        [_holder("xgboost", "2", 0.85), _holder("catboost", "2", 0.88)], current
    )
    assert target == current
    assert "unchanged" in decision


def test_a_new_champion_brings_its_run_mate_as_challenger() -> None:
    current = {
        "champion": _holder("catboost", "1", 0.8),
        "challenger": _holder("xgboost", "1", 0.7),
    }
    target, _ = decide_aliases(
        [_holder("catboost", "2", 0.85), _holder("xgboost", "2", 0.9)], current
    )
    assert target == {
        "champion": _holder("xgboost", "2", 0.9),
        "challenger": _holder("catboost", "2", 0.85),
    }


def test_a_lone_new_champion_serves_alone() -> None:
    # Its run mate failed its gates: the old challenger (another run's detector) is dropped.
    current = {
        "champion": _holder("xgboost", "1", 0.8),
        "challenger": _holder("catboost", "1", 0.7),
    }
    target, _ = decide_aliases([_holder("catboost", "3", 0.9)], current)
    assert target == {"champion": _holder("catboost", "3", 0.9), "challenger": None}


def test_no_passing_model_means_no_alias() -> None:
    target, decision = decide_aliases([], {})
    assert target == {"champion": None, "challenger": None}
    assert "gates" in decision
