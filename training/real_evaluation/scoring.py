"""The metrics of ``vigil evaluate``, computed on one entity's held-out rows.

Point-wise precision / recall / F1 are measured without point adjustment. The point-adjusted
F1 (an event counts as fully found once any of its rows is flagged) is reported only to compare
with published tables, beside the same metric for random flags at the same alarm rate, which
shows how much of it point adjustment alone gives away.
"""

from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.metrics import precision_recall_curve

from telemetry.datasets.segments import label_segments
from training.evaluation import classification_metrics, event_recall

METRIC_KEYS = (
    "precision",
    "recall",
    "f1",
    "event_recall",
    "pr_auc",
    "roc_auc",
    "pa_f1",
    "random_pa_f1",
    "best_f1",
)
RANDOM_DRAWS = 5


def score_metrics(
    labels: NDArray[Any], scores: NDArray[Any], threshold: float, seed: int = 0
) -> dict[str, float | None]:
    """Every metric of one scorer on one entity's held-out rows (in time order).

    Args:
        labels: 0/1 per held-out row.
        scores: higher = more anomalous.
        threshold: chosen without these rows; a row is flagged when its score >= threshold.
        seed: seeds the random flags of ``random_pa_f1``.

    Returns:
        ``METRIC_KEYS`` plus the threshold; AUCs and event recall are None without anomalies.
    """
    if not labels.any():
        # No anomaly held out: F1, precision, recall and the AUCs are undefined.
        return {**dict.fromkeys(METRIC_KEYS), "threshold": float(threshold)}
    flagged = scores >= threshold
    metrics = classification_metrics(labels, scores, threshold)
    rng = np.random.default_rng(seed)
    random_pa = [point_adjusted_f1(labels, rng.permutation(flagged)) for _ in range(RANDOM_DRAWS)]
    return {
        "precision": metrics.precision,
        "recall": metrics.recall,
        "f1": metrics.f1,
        "event_recall": event_recall(np.zeros(len(labels), dtype=np.int8), labels, flagged),
        "pr_auc": metrics.pr_auc,
        "roc_auc": metrics.roc_auc,
        "pa_f1": point_adjusted_f1(labels, flagged),
        "random_pa_f1": float(np.mean(random_pa)),
        "best_f1": best_f1(labels, scores),
        "threshold": float(threshold),
    }


def point_adjusted_f1(labels: NDArray[Any], flagged: NDArray[Any]) -> float:
    """F1 after marking every row of an anomalous segment flagged when one of its rows is."""
    adjusted = flagged.astype(bool).copy()
    for first, last in label_segments(labels):
        if adjusted[first : last + 1].any():
            adjusted[first : last + 1] = True
    return _f1(labels.astype(bool), adjusted)


def best_f1(labels: NDArray[Any], scores: NDArray[Any]) -> float | None:
    """F1 at the oracle threshold on these rows (comparison with published tables only)."""
    if not labels.any():
        return None
    precision, recall, _ = precision_recall_curve(labels, scores)
    f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall + 1e-12), 0)
    return float(f1.max())


def _f1(truth: NDArray[np.bool_], flagged: NDArray[np.bool_]) -> float:
    tp = int((truth & flagged).sum())
    if tp == 0:
        return 0.0
    precision, recall = tp / int(flagged.sum()), tp / int(truth.sum())
    return 2 * precision * recall / (precision + recall)


def mean_metrics(documents: list[dict[str, Any]]) -> dict[str, float | None]:
    """The mean of each metric over entities, skipping entities where it is undefined."""
    means: dict[str, float | None] = {}
    for key in METRIC_KEYS:
        values = [d[key] for d in documents if d.get(key) is not None]
        means[key] = float(np.mean(values)) if values else None
    return means
