"""Directional expectations: a change that makes a row more anomalous raises its served score."""

import numpy as np
import polars as pl
from numpy.typing import NDArray

from contracts.features import compute_features, feature_columns
from tests.training.conftest import METRICS, fleet_frames, served_scores
from training.run_directory import RunDirectory, TrainingSummary, load_detector


def _features_of(wide: pl.DataFrame) -> NDArray[np.float32]:
    return compute_features(wide, METRICS).select(feature_columns(METRICS)).to_numpy()


def test_an_injected_spike_scores_above_the_threshold(
    trained: tuple[TrainingSummary, RunDirectory],
) -> None:
    # A fleet the models never saw, without incidents; then one CPU + latency + error spike.
    wide, _ = fleet_frames(instances=1, minutes=120, seed=42, incidents_per_instance=0)
    spiked = wide.with_columns(
        pl.when(pl.int_range(pl.len()) >= 100)
        .then(pl.col(name) * factor + shift)
        .otherwise(pl.col(name))
        .alias(name)
        for name, factor, shift in (
            ("CPUUtilization", 1.0, 40.0),
            ("Latency", 3.0, 0.0),
            ("error_count", 1.0, 6.0),
        )
    )
    summary, run_dir = trained
    detector = load_detector(run_dir)
    for kind in ("xgboost", "catboost"):
        calm = served_scores(run_dir, kind, _features_of(wide))[100:]
        spike = served_scores(run_dir, kind, _features_of(spiked))[100:]
        assert (calm < summary.thresholds[kind]).all(), kind
        assert (spike[:5] >= summary.thresholds[kind]).all(), kind
    assert detector.feature_names == feature_columns(METRICS)
