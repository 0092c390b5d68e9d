"""The Isolation Forest stage: normalised scores, scoring in blocks, confidence buckets."""

import numpy as np
import pytest
from numpy.typing import NDArray

from training.config import ConfidenceConfig, IsolationForestConfig
from training.isolation import (
    Bucket,
    confidence_buckets,
    fit_isolation_forest,
    raw_scores,
    run_isolation_forest,
)


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
