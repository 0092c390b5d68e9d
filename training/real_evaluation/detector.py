"""Vigil's semi-supervised detector on one entity, and the unsupervised scores it builds on.

Everything here is fitted on the rows training may see (the entity's unlabelled history and
the review pool); the held-out rows are only scored.

1. Per-entity robust normalisation: every feature becomes a robust z-score against the
   entity's own history (median, MAD), clipped, so one model input means the same on every
   machine.
2. Unsupervised scores: the pipeline's Isolation Forest on the normalised features and a PCA
   reconstruction error on the normalised metrics.
3. Review queue within the label budget, stratified by the unsupervised score (known
   inclusion probabilities).
4. Pseudo-labels: the reviewed rows, plus the Isolation Forest's high-confidence normals.
5. XGBoost on the normalised features stacked with the unsupervised scores.
6. Threshold: F1 on the reviewed rows, weighted back to the pool, out-of-fold for the model.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xgboost as xgb
from numpy.typing import NDArray
from sklearn.decomposition import PCA

from training.config import ConfidenceConfig, IsolationForestConfig
from training.evaluation import choose_threshold
from training.isolation import Bucket, run_isolation_forest
from training.review_queue import sample_within_budget

CLIP = 20.0
NO_ANOMALY_FLAG_SHARE = IsolationForestConfig().contamination


@dataclass(frozen=True)
class DetectorOptions:
    """What the research compared; the defaults are what ``vigil evaluate`` runs."""

    pca_variance: float = 0.9
    pseudo_normals: int = 3000
    pseudo_normal_weight: float = 0.3
    smooth_steps: tuple[int, ...] = (1, 3, 10)
    folds: int = 4
    min_positive_labels: int = 3
    pca_standardise: bool = False
    stack: bool = True
    model_weight: float = 0.5
    pca_in_unsupervised: bool = True
    xgb_rounds: int = 100
    xgb_params: dict[str, Any] = field(
        default_factory=lambda: {
            "objective": "binary:logistic",
            "tree_method": "hist",
            "max_depth": 4,
            "learning_rate": 0.05,
            "subsample": 0.8,
            "colsample_bytree": 0.5,
            "min_child_weight": 1.0,
            "max_bin": 64,
            # one thread: the machine is shared and xgboost oversubscribes badly under load
            "nthread": 1,
            "seed": 42,
        }
    )


@dataclass(frozen=True)
class Scored:
    """One scorer's output on every row of the entity and its threshold."""

    scores: NDArray[np.float64]
    threshold: float


@dataclass(frozen=True)
class DetectorResult:
    vigil: Scored
    isolation_forest: Scored
    pca: Scored
    queue_rows: NDArray[np.int64]  # row positions whose labels were revealed
    notes: list[str]
    # What the model sees per row: the normalised detector columns, then the Isolation Forest
    # score and the PCA error; the model is None when too few anomalies were reviewed.
    inputs: NDArray[np.float32]
    model: xgb.Booster | None


def robust_normalise(features: NDArray[Any], fit_rows: NDArray[Any]) -> NDArray[np.float32]:
    """Robust z-scores of every column against ``fit_rows``, clipped to ±CLIP."""
    reference = features[fit_rows].astype(np.float64)
    median = np.median(reference, axis=0)
    spread = 1.4826 * np.median(np.abs(reference - median), axis=0)
    # A column that is flat most of the time has MAD 0: fall back to its standard deviation.
    spread = np.where(spread > 1e-9, spread, reference.std(axis=0))
    scaled = (features - median) / np.where(spread > 1e-9, spread, 1.0)
    return np.asarray(np.clip(scaled, -CLIP, CLIP), dtype=np.float32)


def pca_error(
    values: NDArray[Any], fit_rows: NDArray[Any], variance: float, standardise: bool = True
) -> NDArray[np.float64]:
    """Squared reconstruction error of each row by a PCA fitted on ``fit_rows``."""
    mean = values[fit_rows].mean(axis=0)
    scale = values[fit_rows].std(axis=0) if standardise else np.ones(values.shape[1])
    standard = (values - mean) / np.where(scale > 1e-9, scale, 1.0)
    if standard.shape[1] == 1:
        return np.asarray(standard[:, 0] ** 2, dtype=np.float64)
    pca = PCA(n_components=variance, svd_solver="full").fit(standard[fit_rows])
    rebuilt = pca.inverse_transform(pca.transform(standard))
    return np.asarray(((standard - rebuilt) ** 2).sum(axis=1), dtype=np.float64)


def trailing_mean(scores: NDArray[Any], steps: int) -> NDArray[np.float64]:
    """Mean of each row's score and the ``steps - 1`` before it (causal smoothing)."""
    if steps <= 1:
        return np.asarray(scores, dtype=np.float64)
    total = np.cumsum(np.concatenate(([0.0], scores)))
    end = np.arange(1, len(scores) + 1)
    start = np.maximum(0, end - steps)
    return np.asarray((total[end] - total[start]) / (end - start), dtype=np.float64)


def rank_scale(scores: NDArray[Any], fit_rows: NDArray[Any]) -> NDArray[np.float64]:
    """Each score's empirical quantile among the ``fit_rows`` scores (0..1)."""
    reference = np.sort(scores[fit_rows])
    return np.searchsorted(reference, scores, side="right") / len(reference)


def run_detector(
    features: NDArray[Any],
    metric_columns: NDArray[Any],
    detector_columns: NDArray[Any],
    history: NDArray[Any],
    pool: NDArray[Any],
    reveal: Callable[[NDArray[Any]], NDArray[Any]],
    budget: int,
    options: DetectorOptions | None = None,
    seed: int = 42,
) -> DetectorResult:
    """Fit everything on ``history`` + ``pool`` and score every row.

    Args:
        features: the entity's feature matrix, rows in time order.
        metric_columns: columns of the current metric values (the PCA's input).
        detector_columns: columns the unsupervised detectors and the model use.
        history: positions of unlabelled rows training may see.
        pool: positions of rows the review queue may ask about.
        reveal: the reviewer: called with pool positions, returns their 0/1 labels.
        budget: the most labels the queue may ask for.
        options: research switches.
        seed: random seed of the queue.
    """
    options = options or DetectorOptions()
    notes: list[str] = []
    fit_rows = np.sort(np.concatenate([history, pool]))
    normalised = robust_normalise(features[:, detector_columns], fit_rows)
    isolation = run_isolation_forest(
        normalised, fit_rows, IsolationForestConfig(), ConfidenceConfig()
    )
    if_score = -isolation.scores  # higher = more anomalous
    pca_score = pca_error(
        features[:, metric_columns].astype(np.float64),
        fit_rows,
        options.pca_variance,
        options.pca_standardise,
    )
    unsupervised = rank_scale(if_score, fit_rows)
    if options.pca_in_unsupervised:
        unsupervised = (unsupervised + rank_scale(pca_score, fit_rows)) / 2

    queue = sample_within_budget(unsupervised[pool], budget, seed)
    asked = pool[queue.rows]
    answers = np.asarray(reveal(asked), dtype=np.int8)
    weights = 1.0 / queue.inclusion

    def honest(scores: NDArray[Any]) -> Scored:
        return Scored(scores, _threshold(answers, scores[asked], weights, scores[fit_rows]))

    baseline_if, baseline_pca = honest(if_score), honest(pca_score)
    inputs = np.column_stack([normalised, if_score, pca_score]).astype(np.float32)
    positives = int(answers.sum())
    if positives < options.min_positive_labels:
        notes.append(
            f"{positives} anomalies among {len(asked)} reviewed rows: too few to learn from, "
            "the unsupervised score is used"
        )
        return DetectorResult(
            _best_smoothing(unsupervised, None, answers, asked, weights, fit_rows, options),
            baseline_if,
            baseline_pca,
            asked,
            notes,
            inputs,
            None,
        )
    train_rows, train_labels, train_weights = _training_set(
        isolation.buckets, history, pool, asked, answers, options, seed
    )
    model = _fit(inputs[train_rows], train_labels, train_weights, options)
    probability = model.inplace_predict(inputs).astype(np.float64)
    out_of_fold = _out_of_fold(inputs, train_rows, train_labels, train_weights, asked, options)
    if options.stack:
        # Stacked with the unsupervised score: anomaly types the pool never showed the model
        # still rank high through the detectors that need no labels. (Choosing between the
        # model and the stack on the reviewed rows did worse: the pool's anomaly types are not
        # the held-out ones.)
        reference = np.sort(probability[fit_rows])
        w = options.model_weight
        out_of_fold = (
            w * np.searchsorted(reference, out_of_fold, side="right") / len(reference)
            + (1 - w) * unsupervised[asked]
        )
        probability = w * rank_scale(probability, fit_rows) + (1 - w) * unsupervised
    return DetectorResult(
        _best_smoothing(probability, out_of_fold, answers, asked, weights, fit_rows, options),
        baseline_if,
        baseline_pca,
        asked,
        notes,
        inputs,
        model,
    )


def _threshold(
    answers: NDArray[Any], scores: NDArray[Any], weights: NDArray[Any], fit_scores: NDArray[Any]
) -> float:
    if answers.any():
        return choose_threshold(answers, scores, weights)
    # No anomaly reviewed: flag what lies above every reviewed normal and above the share of
    # the history the Isolation Forest expects to be anomalous.
    return float(max(np.max(scores), np.quantile(fit_scores, 1 - NO_ANOMALY_FLAG_SHARE)))


def _best_smoothing(
    scores: NDArray[Any],
    asked_scores: NDArray[Any] | None,
    answers: NDArray[Any],
    asked: NDArray[Any],
    weights: NDArray[Any],
    fit_rows: NDArray[Any],
    options: DetectorOptions,
) -> Scored:
    """The causal smoothing window whose threshold does best on the reviewed rows.

    ``asked_scores`` are the reviewed rows' out-of-fold scores, or None when ``scores`` were
    fitted without labels.
    """
    best: tuple[float, Scored] | None = None
    for steps in options.smooth_steps:
        smooth = trailing_mean(scores, steps)
        if asked_scores is None:
            judged = smooth[asked]
        else:
            # out-of-fold scores on the reviewed rows, smoothed with their in-sample neighbours
            patched = scores.copy()
            patched[asked] = asked_scores
            judged = trailing_mean(patched, steps)[asked]
        threshold = _threshold(answers, judged, weights, smooth[fit_rows])
        flagged = judged >= threshold
        tp = float((weights * (flagged & (answers == 1))).sum())
        fp = float((weights * (flagged & (answers == 0))).sum())
        fn = float((weights * (~flagged & (answers == 1))).sum())
        f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
        if best is None or f1 > best[0]:
            best = (f1, Scored(smooth, threshold))
    assert best is not None
    return best[1]


def _training_set(
    buckets: NDArray[Any],
    history: NDArray[Any],
    pool: NDArray[Any],
    asked: NDArray[Any],
    answers: NDArray[Any],
    options: DetectorOptions,
    seed: int,
) -> tuple[NDArray[np.int64], NDArray[np.int8], NDArray[np.float64]]:
    rng = np.random.default_rng(seed)
    unlabelled = np.setdiff1d(np.concatenate([history, pool]), asked)
    normals = unlabelled[buckets[unlabelled] == Bucket.HIGH_NORMAL.value]
    if len(normals) > options.pseudo_normals:
        normals = np.sort(rng.choice(normals, options.pseudo_normals, replace=False))
    rows = np.concatenate([asked, normals])
    labels = np.concatenate([answers, np.zeros(len(normals), dtype=np.int8)])
    weights = np.concatenate(
        [np.ones(len(asked)), np.full(len(normals), options.pseudo_normal_weight)]
    )
    return rows, labels, weights


def _fit(
    inputs: NDArray[Any], labels: NDArray[Any], weights: NDArray[Any], options: DetectorOptions
) -> xgb.Booster:
    positives = float((weights * labels).sum())
    negatives = float((weights * (1 - labels)).sum())
    params = {**options.xgb_params, "scale_pos_weight": negatives / max(positives, 1e-9)}
    matrix = xgb.DMatrix(inputs, labels, weight=weights)
    return xgb.train(params, matrix, num_boost_round=options.xgb_rounds)


def _out_of_fold(
    inputs: NDArray[Any],
    train_rows: NDArray[Any],
    train_labels: NDArray[Any],
    train_weights: NDArray[Any],
    asked: NDArray[Any],
    options: DetectorOptions,
) -> NDArray[np.float64]:
    """Each reviewed row's probability from a model that did not see its time block."""
    edges = np.quantile(asked, np.linspace(0, 1, options.folds + 1))
    block = np.clip(np.searchsorted(edges, train_rows, side="right") - 1, 0, options.folds - 1)
    asked_block = np.clip(np.searchsorted(edges, asked, side="right") - 1, 0, options.folds - 1)
    # only reviewed rows are held out; pseudo-normals of the block stay in training
    is_asked = np.isin(train_rows, asked)
    result = np.zeros(len(asked))
    for fold in range(options.folds):
        held = is_asked & (block == fold)
        keep = ~held
        if train_labels[keep].sum() == 0:
            result[asked_block == fold] = 0.0
            continue
        model = _fit(inputs[train_rows[keep]], train_labels[keep], train_weights[keep], options)
        result[asked_block == fold] = model.inplace_predict(inputs[asked[asked_block == fold]])
    return result
