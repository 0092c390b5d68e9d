"""Invariance: what must not change a served score."""

import numpy as np

from tests.training.conftest import served_scores
from training.run_directory import RunDirectory, TrainingSummary, load_detector, load_holdout


def test_row_order_does_not_change_scores(trained: tuple[TrainingSummary, RunDirectory]) -> None:
    _, run_dir = trained
    features, _ = load_holdout(run_dir, load_detector(run_dir).feature_names)
    order = np.random.default_rng(0).permutation(len(features))
    for kind in ("xgboost", "catboost"):
        assert np.array_equal(
            served_scores(run_dir, kind, features[order]),
            served_scores(run_dir, kind, features)[order],
        )
