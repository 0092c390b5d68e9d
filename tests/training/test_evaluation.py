"""Metrics against true labels: point-wise at a threshold, and incidents caught."""

import numpy as np
import pytest

from training.evaluation import classification_metrics, event_recall


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


def test_event_recall_counts_incidents_per_instance() -> None:
    instances = np.array(["a"] * 6 + ["b"] * 4)
    truth = np.array([0, 1, 1, 0, 1, 1, 1, 1, 0, 0])
    flagged = np.array([0, 0, 1, 0, 0, 0, 0, 0, 0, 0])
    # Three incidents: a[1:3] caught, a[4:6] and b[0:2] (a run across instances splits) missed.
    assert event_recall(instances, truth, flagged) == pytest.approx(1 / 3)
    assert event_recall(instances, np.zeros(10, dtype=int), flagged) is None
