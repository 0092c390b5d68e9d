"""Out-of-fold scores of the human labels, each model's weight in the served score, and the
threshold at which it flags a row."""

from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.metrics import average_precision_score

from contracts.detector import MODEL_WEIGHTS, stack
from training.config import TrainingConfig
from training.evaluation import ClassificationMetrics, choose_threshold, classification_metrics
from training.models import XGBOOST, TrainingSet, fit_model, predict_proba

# With no human-labelled anomaly, the share of trainable rows a model flags (see
# decision_threshold; ``vigil evaluate``'s peers use it too).
NO_ANOMALY_FLAG_SHARE = 0.05
# Labelled anomalies of one instance closer than this belong to one incident (see human_folds).
INCIDENT_GAP = np.timedelta64(1, "h")


def human_folds(
    instances: NDArray[Any], timestamps: NDArray[Any], labels: NDArray[Any], folds: int
) -> NDArray[np.int64]:
    """The fold (0..folds-1) of each human-labelled row, whole incidents kept together.

    Labelled anomalies of one instance less than ``INCIDENT_GAP`` apart form one incident; each
    incident, and each labelled normal row, is a group, and groups are dealt to the folds in
    time order. A fold's rows are then scored by models that never saw their incident, so the
    out-of-fold scores measure what matters: finding an incident not reviewed before.
    """
    order = np.lexsort((timestamps, instances))
    anomalous = labels[order] == 1
    same_instance = np.r_[False, instances[order][1:] == instances[order][:-1]]
    close = np.r_[False, np.diff(timestamps[order]) < INCIDENT_GAP]
    continues = same_instance & close & anomalous & np.r_[False, anomalous[:-1]]
    group = np.cumsum(~continues) - 1
    if not len(order):
        return np.empty(0, dtype=np.int64)
    # rows are in time order inside a group: its first row is its start
    first_seen = timestamps[order][np.r_[True, group[1:] != group[:-1]]]
    rank = np.argsort(np.argsort(first_seen, kind="stable"), kind="stable")
    result = np.empty(len(order), dtype=np.int64)
    result[order] = rank[group] % folds
    return result


def out_of_fold_scores(
    kind: str,
    training_set: TrainingSet,
    human_rows: NDArray[Any],
    folds: NDArray[Any],
    names: list[str],
    config: TrainingConfig,
) -> NDArray[np.float64]:
    """Each human-labelled row's probability from a model fitted without its time block.

    Only human labels are held out; pseudo-normals of the block stay in training. A block
    whose training part lacks an anomaly is NaN: nothing could be learnt without it.
    """
    scores = np.full(len(human_rows), np.nan)
    for fold in np.unique(folds):
        held = np.zeros(len(training_set.labels), dtype=bool)
        held[human_rows[folds == fold]] = True
        kept = training_set.subset(np.flatnonzero(~held))
        if not 0 < int(kept.labels.sum()) < len(kept.labels):
            continue
        model = fit_model(kind, kept, names, config, None, []).model
        scores[folds == fold] = predict_proba(model, training_set.inputs[human_rows[folds == fold]])
    return scores


def model_weight(
    learnt: NDArray[Any], unsupervised: NDArray[Any], truth: NDArray[Any], weights: NDArray[Any]
) -> float:
    """The model's weight in the served score (``contracts.detector.MODEL_WEIGHTS``): the best
    weighted average precision of the human labels' out-of-fold served scores; ties go to the
    lowest weight. Without a human-labelled anomaly the model learnt only the unsupervised
    score's own top rows: it gets no weight, and the served score is the unsupervised one."""
    if not truth.any():
        return 0.0
    if truth.all():
        return MODEL_WEIGHTS[0]
    precision = [
        average_precision_score(truth, stack(learnt, unsupervised, w), sample_weight=weights)
        for w in MODEL_WEIGHTS
    ]
    return MODEL_WEIGHTS[int(np.argmax(np.round(precision, 6)))]


def decision_threshold(
    truth: NDArray[Any],
    scores: NDArray[Any],
    weights: NDArray[Any],
    fitted_scores: NDArray[Any],
    config: TrainingConfig,
) -> float:
    """The served score at which a model flags a row.

    A number in the config is used as it is. ``reviewed`` maximises the F1 of the human
    labels (known and reviewed rows, weighted back to the trainable population by their
    inverse inclusion probability) over their out-of-fold served scores, so the model is never
    judged on rows it learnt. Without a human-labelled anomaly there is no F1 to maximise:
    the threshold sits above every human-labelled row and above the top
    ``NO_ANOMALY_FLAG_SHARE`` of the trainable rows' scores (``fitted_scores``).
    """
    if not isinstance(config.threshold, str):
        return config.threshold
    if not truth.any():
        top = float(np.quantile(fitted_scores, 1 - NO_ANOMALY_FLAG_SHARE))
        return float(np.clip(max(top, float(np.max(scores, initial=0.0))), 1e-6, 1 - 1e-6))
    chosen = choose_threshold(truth, scores, weights)
    # A probability threshold outside (0, 1) would flag everything or nothing.
    return float(np.clip(chosen, 1e-6, 1 - 1e-6))


def fold_metrics(
    truth: NDArray[Any],
    scores: NDArray[Any],
    folds: NDArray[Any],
    thresholds: dict[str, float],
) -> list[ClassificationMetrics | None]:
    """XGBoost's out-of-fold metrics per block; None where a block lacks a class."""
    results: list[ClassificationMetrics | None] = []
    for fold in np.unique(folds):
        block = folds == fold
        if not 0 < int(truth[block].sum()) < int(block.sum()):
            results.append(None)
            continue
        results.append(classification_metrics(truth[block], scores[block], thresholds[XGBOOST]))
    return results


def scored_log_loss(labels: NDArray[Any], probabilities: NDArray[Any]) -> float:
    """Mean log loss of the scored rows (NaN when none was scored)."""
    scored = ~np.isnan(probabilities)
    if not scored.any():
        return float("nan")
    labels, probabilities = labels[scored], probabilities[scored]
    clipped = np.clip(probabilities, 1e-7, 1 - 1e-7)
    return float(-np.mean(labels * np.log(clipped) + (1 - labels) * np.log(1 - clipped)))
