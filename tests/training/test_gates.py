"""The quality gates a model must pass on the held-out test rows to receive an alias."""

import numpy as np

from training.config import GatesConfig
from training.evaluation import classification_metrics
from training.gates import gate_failures


def test_a_model_below_the_gates_is_told_why() -> None:
    truth = np.array([0, 0, 0, 0, 1, 1, 1, 0])
    scores = np.array([0.1, 0.2, 0.7, 0.1, 0.9, 0.8, 0.3, 0.0])
    metrics = classification_metrics(truth, scores, 0.5)
    assert gate_failures(metrics, GatesConfig()) == [
        "f1 0.667 <= 0.85",
        "precision 0.667 <= 0.9",
    ]
