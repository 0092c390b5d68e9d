"""Attribution: which metric explains an anomaly, and its kind (behavioural tests).

The feature rows come from the real feature contract (``compute_features``) on synthetic
metrics, with the reference fitted on the rows before the anomaly, as training would.
"""

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from contracts.attribution import (
    METRIC_KIND,
    METRIC_TEMPORAL_KIND,
    TEMPORAL_KIND,
    Z_CLIP,
    incident_kind,
    kind_evidence,
    rank_metrics,
    robust_reference,
    top_features,
)
from contracts.features import LAGS, WINDOWS, ZSCORE_WINDOW, compute_features, feature_columns

METRICS = ["cpu", "memory", "disk", "network"]
STEPS = 600
ONSET = 400  # the anomaly starts here; the rows before it are the reference
REFERENCE = slice(100, ONSET)
MONDAY = datetime(2026, 1, 5, tzinfo=UTC)


def normal_metrics(seed: int = 0) -> dict[str, np.ndarray]:
    """Four independent metrics around 50 with unit noise."""
    rng = np.random.default_rng(seed)
    return {metric: 50 + rng.normal(0, 1, STEPS) for metric in METRICS}


def feature_matrix(values: dict[str, np.ndarray]) -> tuple[np.ndarray, list[str]]:
    """The contract's feature rows of one instance at 1-minute steps, and their names."""
    metrics = list(values)
    wide = pl.DataFrame(
        {
            "instance_id": ["i-1"] * STEPS,
            "timestamp": [MONDAY + i * timedelta(minutes=1) for i in range(STEPS)],
            **values,
        },
        schema_overrides={"timestamp": pl.Datetime("ms", "UTC")},
    )
    names = feature_columns(metrics)
    return compute_features(wide, metrics).select(names).to_numpy(), names


def ranked(
    values: dict[str, np.ndarray], rows: slice, contributions: np.ndarray | None = None
) -> list[tuple[str, float]]:
    features, names = feature_matrix(values)
    median, scale = robust_reference(features[REFERENCE])
    return rank_metrics(features[rows], names, list(values), median, scale, contributions)


def test_a_level_shift_ranks_its_metric_first():
    values = normal_metrics()
    values["disk"][ONSET:] += 6
    ranking = ranked(values, slice(ONSET + 5, ONSET + 20))
    assert ranking[0][0] == "disk"
    assert ranking[0][1] > 3 * ranking[1][1]


def test_a_level_shift_still_ranks_first_after_the_windows_settle():
    # Intent: long after the step every window's deviation is back to normal; the window means
    # still carry the new level.
    values = normal_metrics()
    values["disk"][ONSET:] += 6
    assert ranked(values, slice(ONSET + 120, ONSET + 140))[0][0] == "disk"


def test_a_variance_burst_without_a_level_change_ranks_first():
    values = normal_metrics()
    values["memory"][ONSET:] = 50 + np.random.default_rng(1).normal(0, 6, STEPS - ONSET)
    ranking = ranked(values, slice(ONSET + 5, ONSET + 20))
    assert ranking[0][0] == "memory"


def test_a_single_spike_row_ranks_its_metric_first():
    # Minimum functionality: the scorer often explains one row, the most anomalous one.
    values = normal_metrics()
    values["cpu"][450] += 15
    assert ranked(values, slice(450, 451))[0][0] == "cpu"


def test_every_metric_is_ranked_once_strongest_first():
    values = normal_metrics()
    values["network"][ONSET:] += 4
    ranking = ranked(values, slice(ONSET, ONSET + 30))
    assert sorted(metric for metric, _ in ranking) == sorted(METRICS)
    scores = [score for _, score in ranking]
    assert scores == sorted(scores, reverse=True)


def test_ranking_ignores_a_metrics_unit_and_offset():
    # Invariance: robust z-scores do not change when a metric is reported in other units.
    values = normal_metrics()
    values["disk"][ONSET:] += 6
    rescaled = {**values, "memory": values["memory"] * 1024 + 7}
    rows = slice(ONSET + 5, ONSET + 20)
    original, converted = ranked(values, rows), ranked(rescaled, rows)
    assert [m for m, _ in converted] == [m for m, _ in original]
    np.testing.assert_allclose([s for _, s in converted], [s for _, s in original], rtol=1e-3)


def test_contributions_break_ties_but_never_override_evidence():
    values = normal_metrics()
    features, names = feature_matrix(values)
    median, scale = robust_reference(features[REFERENCE])
    shap = np.zeros(len(names))
    shap[names.index("network_zscore_60")] = 5.0
    # At the median every metric has zero evidence: the contributions decide the order.
    tied = rank_metrics(median, names, METRICS, median, scale, shap)
    assert tied[0] == ("network", 0.0)
    values["disk"][ONSET:] += 6
    features, _ = feature_matrix(values)
    anomaly = features[ONSET + 5 : ONSET + 20]
    shifted = rank_metrics(anomaly, names, METRICS, median, scale, np.tile(shap, (15, 1)))
    assert shifted[0][0] == "disk"


def test_top_features_name_each_top_metrics_window_feature():
    values = normal_metrics()
    values["disk"][ONSET:] += 6
    features, names = feature_matrix(values)
    median, scale = robust_reference(features[REFERENCE])
    rows = features[ONSET + 5 : ONSET + 20]
    chosen = top_features(rows, names, METRICS, median, scale, limit=2)
    assert [f.metric for f in chosen] == [
        m for m, _ in rank_metrics(rows, names, METRICS, median, scale)
    ][:2]
    first = chosen[0]
    assert first.name.startswith("disk_")
    assert first.name.rsplit("_", 2)[1] in ("mean", "std")
    column = names.index(first.name)
    assert first.baseline == pytest.approx(median[column])
    assert first.value in rows[:, column]
    assert 0 < first.score <= Z_CLIP
    assert first.contribution is None


def test_top_features_report_the_mean_positive_contribution():
    values = normal_metrics()
    values["disk"][ONSET:] += 6
    features, names = feature_matrix(values)
    median, scale = robust_reference(features[REFERENCE])
    rows = features[ONSET + 5 : ONSET + 7]
    first = top_features(rows, names, METRICS, median, scale, limit=1)[0]
    shap = np.zeros((2, len(names)))
    shap[:, names.index(first.name)] = [0.4, -0.2]  # a negative part pushed the score down
    assert top_features(rows, names, METRICS, median, scale, shap, limit=1)[0].contribution == (
        pytest.approx(0.2)
    )


def test_a_slow_drift_to_an_unusual_level_is_a_metric_anomaly():
    # Directional: every step is ordinary, the state it reaches is not.
    values = normal_metrics()
    for metric in METRICS:
        values[metric][ONSET:] += np.linspace(0, 8, STEPS - ONSET)
    features, names = feature_matrix(values)
    median, scale = robust_reference(features[REFERENCE])
    assert incident_kind(features[-20:], names, METRICS, median, scale) == METRIC_KIND


def kind_rows(temporal: float, state: float) -> tuple[np.ndarray, list[str]]:
    """One row whose change/zscore features sit ``temporal`` and whose level features sit
    ``state`` reference scales away from a reference of median 0, scale 1."""
    names = feature_columns(METRICS)
    row = np.zeros(len(names))
    for metric in METRICS:
        for lag in LAGS:
            row[names.index(f"{metric}_change_{lag}")] = temporal
        row[names.index(f"{metric}_zscore_{ZSCORE_WINDOW}")] = temporal
        row[names.index(metric)] = state
        for window in WINDOWS:
            row[names.index(f"{metric}_mean_{window}")] = state
    return row, names


@pytest.mark.parametrize(
    ("temporal", "state", "kind"),
    [
        (8.0, 1.0, TEMPORAL_KIND),
        (1.0, 8.0, METRIC_KIND),
        (6.0, 5.0, METRIC_TEMPORAL_KIND),
    ],
)
def test_kind_follows_the_dominant_evidence(temporal, state, kind):
    row, names = kind_rows(temporal, state)
    ones = np.ones(len(names))
    assert kind_evidence(row, names, METRICS, np.zeros(len(names)), ones) == (temporal, state)
    assert incident_kind(row, names, METRICS, np.zeros(len(names)), ones) == kind


def test_robust_reference_falls_back_to_the_deviation_then_to_one():
    reference = np.array(
        [[1.0, 5.0, 2.0], [2.0, 5.0, 2.0], [3.0, 5.0, 2.0], [4.0, 5.0, 2.0], [5.0, 5.0, 8.0]]
    )
    median, scale = robust_reference(reference)
    np.testing.assert_allclose(median, [3.0, 5.0, 2.0])
    # column 0: MAD 1; column 1: constant; column 2: MAD 0 (flat but for one value)
    np.testing.assert_allclose(scale, [1.4826, 1.0, reference[:, 2].std()])


def test_rows_of_the_wrong_width_are_refused():
    names = feature_columns(METRICS)
    reference = (np.zeros(len(names)), np.ones(len(names)))
    with pytest.raises(ValueError, match="features"):
        rank_metrics(np.zeros((2, 3)), names, METRICS, *reference)


def test_a_scale_that_is_not_positive_is_refused():
    names = feature_columns(METRICS)
    with pytest.raises(ValueError, match="scale"):
        rank_metrics(
            np.zeros(len(names)), names, METRICS, np.zeros(len(names)), np.zeros(len(names))
        )


def test_a_metric_without_its_window_features_is_refused():
    names = ["cpu", "cpu_mean_5"]
    with pytest.raises(ValueError, match="missing"):
        rank_metrics(np.zeros(2), names, ["cpu"], np.zeros(2), np.ones(2))
