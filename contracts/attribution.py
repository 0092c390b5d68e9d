"""Which metrics explain an anomaly, and what kind of anomaly it is, from its feature rows alone.

Written for both the scorer's explanations and ``vigil rag evaluate``, so that the metrics an
explanation names are the ones that were measured. Everything here needs only what the online
scorer holds: the anomaly's contract feature rows (``contracts.features``) and a per-feature
reference, the median and robust scale over the rows the model was trained on
(``robust_reference``). The served detector holds the same two numbers for its state columns,
so the scorer passes ``rows[:, state_columns]`` with those columns' names, ``median`` and
``scale``. TreeSHAP contributions are optional.

Robust z-score of a feature: ``(x - median) / scale``, ``scale = 1.4826 * MAD`` (the standard
deviation where the MAD is 0, 1 where both are), clipped to ``±Z_CLIP`` like the detector's.

**Metric ranking** (``rank_metrics``). A metric's evidence is the mean |robust z| over the
anomaly's rows of its six window statistics ``s_mean_w`` and ``s_std_w`` for w in
``WINDOWS`` (5, 15, 60): the window means catch a level shift, the window standard deviations
a variance burst or a sudden step (a window straddling the step has a large deviation), and
averaging three window lengths smooths single-row noise. Metrics are ranked by that evidence,
strongest first; positive TreeSHAP, when given, only breaks exact ties (mixing it in by rank
made HitRate worse on the design entities). Why not the current value alone: SMD and ASD
metrics are scaled to [0, 1], and a quiet metric has a tiny MAD, so any wiggle of its current
value saturates its z-score; the window statistics rank what truly changed.

Measured with ``vigil evaluate``'s protocol (reference = history + review pool; held-out
incidents with interpretation labels; HitRate@100% / @150%, mean over entities), decided on
SMD machine-1-* and ASD omi-1/2, then confirmed once on SMD machine-2-* and ASD omi-3/4:

================================  =============  =============  =============  =============
named metrics                     SMD design     SMD confirm    ASD design     ASD confirm
================================  =============  =============  =============  =============
current value |z| (baseline)      0.508 / 0.668  0.408 / 0.485  0.723 / 1.000  0.745 / 1.000
model TreeSHAP (before)           0.413 / 0.577  0.377 / 0.461  0.732 / 0.947  0.840 / 0.959
this rule, the incident's rows    0.577 / 0.776  0.548 / 0.682  0.927 / 1.000  0.905 / 1.000
this rule, highest-scored row     0.582 / 0.749  0.626 / 0.705  0.907 / 1.000  0.932 / 1.000
================================  =============  =============  =============  =============

(31 / 23 / 7 / 6 incidents; ASD's @150% names 18 of its 19 metrics, so it says little.) On
every labelled test incident, reference fitted on the published train split only (40 / 24 /
11 / 11 incidents), @100% goes from 0.475 / 0.404 / 0.885 / 0.790 to 0.589 / 0.494 / 0.946 /
0.910.

**Incident kind** (``incident_kind``; ASD's metric / temporal / metric-temporal, as InterFusion
defines them). Temporal evidence is the mean |robust z| of the change and ``zscore_60``
features (metrics left their own recent past); metric evidence that of the current values and
window means (the state left its usual range). One at least ``KIND_DOMINANCE`` times the other
names that kind, else both are present: metric-temporal. The factor is a round number, never
fitted. Accuracy, mean over servers, design / confirm: held-out incidents 0.667 / 0.833
(previous PCA-vs-zscore rule 0.583 / 0.667, always temporal 0.583 / 0.833, always
metric-temporal 0.333 / 0.167, each server's own most common kind, an oracle, 0.833 / 0.833);
every labelled test incident 0.589 / 0.733 (previous 0.268 / 0.450, always temporal 0.446 /
0.533, oracle 0.661 / 0.633). It beats or ties every constant answer, but not the oracle on the
design servers, on 7 + 6 (11 + 11) incidents; and on a single row (the scorer's highest-scored one)
change evidence dominates and it answers temporal: treat the kind as a hint.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from contracts.features import LAGS, WINDOWS, ZSCORE_WINDOW, feature_metrics, metric_slug

MAD_TO_STD = 1.4826
# One saturated feature (a quiet metric's tiny MAD) must not outweigh the rest of its metric;
# the detector clips its z-scores at the same value.
Z_CLIP = 20.0
KIND_DOMINANCE = 2.0
TOP_FEATURES = 10

IncidentKind = Literal["metric", "temporal", "metric-temporal"]
METRIC_KIND: IncidentKind = "metric"
TEMPORAL_KIND: IncidentKind = "temporal"
METRIC_TEMPORAL_KIND: IncidentKind = "metric-temporal"


@dataclass(frozen=True)
class FeatureDeviation:
    """The strongest window feature behind one ranked metric, for an explanation request.

    Attributes:
        name: the feature column.
        metric: the metric it is computed from.
        value: its value at the anomaly row where it was most unusual.
        baseline: its reference median.
        score: its mean |robust z| over the anomaly's rows.
        contribution: its mean positive TreeSHAP contribution, None when none were given.
    """

    name: str
    metric: str
    value: float
    baseline: float
    score: float
    contribution: float | None


def robust_reference(features: NDArray[Any]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Per-column median and robust scale of reference rows (the rows a model was trained on).

    Scale is ``1.4826 * MAD``; a column whose MAD is 0 (flat most of the time) falls back to its
    standard deviation, and a constant column to 1, so every scale is positive.

    Raises:
        ValueError: the rows are not a non-empty 2-D array.
    """
    reference = np.asarray(features, dtype=np.float64)
    if reference.ndim != 2 or len(reference) == 0:
        raise ValueError(f"need a non-empty 2-D array of reference rows, got {reference.shape}")
    median = np.median(reference, axis=0)
    scale = MAD_TO_STD * np.median(np.abs(reference - median), axis=0)
    scale = np.where(scale > 1e-9, scale, reference.std(axis=0))
    return median, np.where(scale > 1e-9, scale, 1.0)


def robust_z(rows: NDArray[Any], median: NDArray[Any], scale: NDArray[Any]) -> NDArray[np.float64]:
    """Robust z-scores of feature rows against a reference, clipped to ``±Z_CLIP``."""
    z = (np.asarray(rows, dtype=np.float64) - median) / scale
    return np.asarray(np.clip(z, -Z_CLIP, Z_CLIP))


def rank_metrics(
    rows: NDArray[Any],
    feature_names: Sequence[str],
    metrics: Sequence[str],
    median: NDArray[Any],
    scale: NDArray[Any],
    contributions: NDArray[Any] | None = None,
) -> list[tuple[str, float]]:
    """Every metric with its evidence, strongest first (the rule is in the module docstring).

    Args:
        rows: the anomaly's feature rows (rows x features, or one row), columns
            ``feature_names``.
        feature_names: the columns of ``rows``, ``median`` and ``scale``; they must hold each
            metric's window means and standard deviations (the contract's columns do).
        metrics: the metric names the features were computed from.
        median: reference median per column (``robust_reference``).
        scale: reference robust scale per column, positive.
        contributions: optional TreeSHAP contributions per column (one row, or one per row of
            ``rows``); their positive part only breaks ties between equal evidence.

    Raises:
        ValueError: mismatched shapes, a scale that is not positive, or a metric whose window
            features are missing.
    """
    z = _anomaly_z(rows, feature_names, median, scale)
    evidence = np.abs(z[:, _role_columns(feature_names, metrics, _window_roles())]).mean(
        axis=(0, 2)
    )
    shap = _metric_contributions(contributions, feature_names, metrics, len(z))
    order = np.lexsort((-shap, -evidence))  # the last key sorts first; ties keep metric order
    return [(metrics[i], float(evidence[i])) for i in order]


def top_features(
    rows: NDArray[Any],
    feature_names: Sequence[str],
    metrics: Sequence[str],
    median: NDArray[Any],
    scale: NDArray[Any],
    contributions: NDArray[Any] | None = None,
    limit: int = TOP_FEATURES,
) -> list[FeatureDeviation]:
    """The features behind ``rank_metrics``: each top metric's most unusual window feature.

    One feature per metric, metrics in ``rank_metrics`` order, at most ``limit`` of them. Same
    arguments and errors as ``rank_metrics``.
    """
    ranking = rank_metrics(rows, feature_names, metrics, median, scale, contributions)
    z = np.abs(_anomaly_z(rows, feature_names, median, scale))
    values = np.atleast_2d(np.asarray(rows, dtype=np.float64))
    columns = _role_columns(feature_names, metrics, _window_roles())
    shap = None if contributions is None else _positive_mean(contributions, len(z))
    position = {metric: i for i, metric in enumerate(metrics)}
    chosen = []
    for metric, _ in ranking[: max(limit, 0)]:
        candidates = columns[position[metric]]
        column = int(candidates[np.argmax(z[:, candidates].mean(axis=0))])
        row = int(np.argmax(z[:, column]))
        chosen.append(
            FeatureDeviation(
                name=feature_names[column],
                metric=metric,
                value=float(values[row, column]),
                baseline=float(np.asarray(median, dtype=np.float64)[column]),
                score=float(z[:, column].mean()),
                contribution=None if shap is None else float(shap[column]),
            )
        )
    return chosen


def incident_kind(
    rows: NDArray[Any],
    feature_names: Sequence[str],
    metrics: Sequence[str],
    median: NDArray[Any],
    scale: NDArray[Any],
) -> IncidentKind:
    """metric, temporal or metric-temporal (the rule is in the module docstring).

    Same arguments and errors as ``rank_metrics``; the rows must also hold each metric's
    current value, changes and ``zscore_60``.
    """
    temporal, state = kind_evidence(rows, feature_names, metrics, median, scale)
    if temporal >= KIND_DOMINANCE * state:
        return TEMPORAL_KIND
    if state >= KIND_DOMINANCE * temporal:
        return METRIC_KIND
    return METRIC_TEMPORAL_KIND


def kind_evidence(
    rows: NDArray[Any],
    feature_names: Sequence[str],
    metrics: Sequence[str],
    median: NDArray[Any],
    scale: NDArray[Any],
) -> tuple[float, float]:
    """(temporal, metric) evidence: mean |robust z| of the change and zscore features, and of
    the current values and window means, over the rows and every metric."""
    z = np.abs(_anomaly_z(rows, feature_names, median, scale))
    temporal = z[:, _role_columns(feature_names, metrics, _temporal_roles())].mean()
    state = z[:, _role_columns(feature_names, metrics, _state_roles())].mean()
    return float(temporal), float(state)


def _window_roles() -> list[str]:
    return [f"{stat}_{w}" for w in WINDOWS for stat in ("mean", "std")]


def _temporal_roles() -> list[str]:
    return [*(f"change_{k}" for k in LAGS), f"zscore_{ZSCORE_WINDOW}"]


def _state_roles() -> list[str]:
    return ["", *(f"mean_{w}" for w in WINDOWS)]


def _role_columns(
    feature_names: Sequence[str], metrics: Sequence[str], roles: Sequence[str]
) -> NDArray[np.int64]:
    """Positions of each metric's features of the given roles: metrics x roles."""
    index = {name: j for j, name in enumerate(feature_names)}
    wanted = [[metric_slug(m) + (f"_{role}" if role else "") for role in roles] for m in metrics]
    missing = sorted({name for names in wanted for name in names if name not in index})
    if missing:
        raise ValueError(f"feature columns missing for the metrics: {missing[:5]}")
    return np.array([[index[name] for name in names] for names in wanted], dtype=np.int64)


def _anomaly_z(
    rows: NDArray[Any], feature_names: Sequence[str], median: NDArray[Any], scale: NDArray[Any]
) -> NDArray[np.float64]:
    matrix = np.atleast_2d(np.asarray(rows, dtype=np.float64))
    width = len(feature_names)
    if matrix.ndim != 2 or len(matrix) == 0 or matrix.shape[1] != width:
        raise ValueError(f"expected rows of {width} features, got shape {matrix.shape}")
    median, scale = np.asarray(median, dtype=np.float64), np.asarray(scale, dtype=np.float64)
    if median.shape != (width,) or scale.shape != (width,):
        raise ValueError(
            f"median {median.shape} and scale {scale.shape} must have one value per feature"
        )
    if not (scale > 0).all():
        raise ValueError("every reference scale must be positive (see robust_reference)")
    return robust_z(matrix, median, scale)


def _positive_mean(contributions: NDArray[Any], rows: int) -> NDArray[np.float64]:
    """Mean positive contribution per column over the rows."""
    shap = np.atleast_2d(np.asarray(contributions, dtype=np.float64))
    if shap.ndim != 2 or len(shap) not in (1, rows):
        raise ValueError(f"contributions must be one row or one per anomaly row, got {shap.shape}")
    return np.asarray(np.clip(shap, 0.0, None).mean(axis=0))


def _metric_contributions(
    contributions: NDArray[Any] | None,
    feature_names: Sequence[str],
    metrics: Sequence[str],
    rows: int,
) -> NDArray[np.float64]:
    """Summed positive contribution of every feature computed from each metric (0 without)."""
    totals = np.zeros(len(metrics))
    if contributions is None:
        return totals
    shap = _positive_mean(contributions, rows)
    if shap.shape != (len(feature_names),):
        raise ValueError(f"expected {len(feature_names)} contributions, got {shap.shape}")
    owners = feature_metrics(metrics)
    position = {metric: i for i, metric in enumerate(metrics)}
    for name, value in zip(feature_names, shap, strict=True):
        if name in owners:
            totals[position[owners[name]]] += value
    return totals
