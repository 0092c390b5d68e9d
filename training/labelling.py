"""Phases 1-3 on every row: split, unsupervised scores, the review queue, training labels.

The rows a human labelled (known labels and answered reviews) weigh 1 in training and are
weighted back to the trainable population when a threshold is chosen; pseudo-normals from the
unsupervised score fill in the rest.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
from distributed import Client
from numpy.typing import NDArray

from contracts.detector import FittedDetector, fit_detector
from contracts.features import TIMESTAMP
from training.config import TrainingConfig
from training.data import ROW_ID, TRUE_LABEL, TrainingData
from training.isolation import IsolationResult, run_isolation_forest
from training.models import Split, TrainingSet, split_rows
from training.pseudo_labels import (
    ORIGINAL,
    REVIEW,
    LabelMix,
    assign_pseudo_labels,
    label_mix,
    reveal_known_labels,
)
from training.review_queue import (
    LabelBudget,
    label_budget,
    sample_review_queue,
    simulate_reviews,
)

# With no human-labelled anomaly, the share of unlabelled trainable rows, by unsupervised
# score, that stand in as anomalies (see _pseudo_labels).
FALLBACK_ANOMALY_SHARE = 0.01


@dataclass(frozen=True)
class LabelledRows:
    """Phases 1-3 on every row: split, unsupervised scores, queue, training labels.

    ``human_weight`` is, per row, the inverse of the probability its human label had of being
    drawn (known labels: 1 / known fraction; queue rows: 1 / inclusion; imported reviews: 1),
    and 0 where no human labelled the row: weighted, the human labels estimate the whole
    trainable population, which is what a threshold is chosen on.
    """

    split: Split
    isolation: IsolationResult
    detector: FittedDetector  # fitted on the trainable rows; models not known yet
    model_inputs: NDArray[np.float32]  # detector.inputs(features), every row
    unsupervised: NDArray[np.float64]  # detector.unsupervised_score of every row, 0..1
    queue: pl.DataFrame
    budget: LabelBudget
    reviews_imported: int
    reviews_simulated: int
    labels: pl.DataFrame  # known_label, review_label, train_label, label_source per row
    mix: LabelMix
    human_weight: NDArray[np.float64]


# Answers the review queue: given the queue (row_id, instance_id, timestamp, ...), returns the
# answered rows' row_id and label (Int8).
Reviewer = Callable[[pl.DataFrame], pl.DataFrame]


def label_rows(
    data: TrainingData,
    config: TrainingConfig,
    stored_reviews: pl.DataFrame,
    client: Client | None = None,
    split: Split | None = None,
    review_pool: NDArray[Any] | None = None,
    reviewer: Reviewer | None = None,
) -> LabelledRows:
    """Split the rows, score them without labels, ask the queue, pseudo-label.

    Nothing in the test part influences training: the Isolation Forest and the detector
    inputs are fitted, known labels are revealed, the queue is drawn and reviews are applied
    on the trainable (train and validation) rows only.

    Args:
        data: the store's rows and true labels.
        config: the training config.
        stored_reviews: reviews imported with ``vigil review import`` (row_id, label).
        client: a Dask client for Isolation Forest scoring, or None.
        split: the parts to use instead of ``config.split`` (``vigil evaluate``'s protocol).
        review_pool: row positions the queue may ask about (default: every trainable row).
        reviewer: answers the queue instead of the simulated reviewer.
    """
    rows = data.rows
    true_labels = rows[TRUE_LABEL]
    if split is None:
        split = split_rows(
            rows[TIMESTAMP].to_numpy(), true_labels.fill_null(-1).to_numpy(), config.split
        )
    trainable = np.zeros(rows.height, dtype=bool)
    trainable[split.train] = trainable[split.validation] = True
    fit_rows = np.flatnonzero(trainable)
    isolation = run_isolation_forest(
        data.features,
        fit_rows,
        config.isolation_forest,
        config.confidence,
        client,
        config.dask.chunk_rows,
    )
    detector = fit_detector(
        data.features, data.feature_names, data.metrics, fit_rows, config.split.random_state
    )
    model_inputs = detector.inputs(data.features)
    unsupervised = detector.unsupervised_score(model_inputs)
    known = reveal_known_labels(
        true_labels, trainable, config.labels.known_fraction, config.labels.random_state
    )
    poolable = trainable.copy()
    if review_pool is not None:
        poolable &= np.isin(np.arange(rows.height), review_pool)
    scored = rows.with_columns(
        known,
        score=pl.Series(unsupervised),
        bucket=pl.Series(isolation.buckets, dtype=pl.String),
        trainable=pl.Series(trainable),
        poolable=pl.Series(poolable),
    )
    imported = scored.filter(pl.col("trainable")).join(
        stored_reviews.select(ROW_ID, pl.col("label").alias("review_label")), on=ROW_ID
    )
    candidates = scored.filter(
        pl.col("poolable")
        & pl.col("known_label").is_null()
        & ~pl.col(ROW_ID).is_in(imported[ROW_ID].implode())
    )
    budget = int(np.floor(config.review.label_fraction * len(fit_rows)))
    queue = sample_review_queue(candidates, config.review, budget)
    if reviewer is not None:
        simulated = reviewer(queue)
    elif config.review.simulate_reviewer:
        simulated = simulate_reviews(queue, rows.select(ROW_ID, pl.col(TRUE_LABEL).alias("label")))
    else:
        simulated = queue.head(0).select(ROW_ID).with_columns(label=pl.lit(0, pl.Int8))
    reviewed = pl.concat(
        [
            imported.select(ROW_ID, pl.col("review_label").cast(pl.Int8)),
            simulated.select(ROW_ID, pl.col("label").cast(pl.Int8).alias("review_label")),
        ]
    )
    scored = scored.join(reviewed, on=ROW_ID, how="left", maintain_order="left")
    pseudo = assign_pseudo_labels(
        scored["known_label"],
        scored["review_label"],
        pl.Series(_pseudo_labels(scored, config), nan_to_null=True).cast(pl.Int8),
    )
    labels = pl.concat([scored.select("known_label", "review_label"), pseudo], how="horizontal")
    return LabelledRows(
        split=split,
        isolation=isolation,
        detector=detector,
        model_inputs=model_inputs,
        unsupervised=unsupervised,
        queue=queue,
        budget=label_budget(candidates["bucket"], queue),
        reviews_imported=imported.height,
        reviews_simulated=simulated.height,
        labels=labels,
        mix=label_mix(pseudo.filter(pl.Series(trainable))),
        human_weight=_human_weight(scored, queue, config),
    )


def _pseudo_labels(scored: pl.DataFrame, config: TrainingConfig) -> NDArray[Any]:
    """The unsupervised detectors' label of each row (NaN where none).

    Normal: at most ``labels.pseudo_normal_rows`` unlabelled trainable rows, drawn at random
    among those whose unsupervised score is at or below its median (every detector finds
    them ordinary). When no human found an anomaly among the trainable rows, there is nothing
    to learn anomalies from: the top ``FALLBACK_ANOMALY_SHARE`` of unlabelled trainable rows
    by unsupervised score then stand in as anomalies, so a model exists and ranks rows as the
    unsupervised detectors do.
    """
    unlabelled = (
        scored.select(
            pl.col("trainable") & pl.col("known_label").is_null() & pl.col("review_label").is_null()
        )
        .to_series()
        .fill_null(False)
        .to_numpy()
    )
    score = scored["score"].to_numpy()
    trainable = scored["trainable"].to_numpy()
    labels = np.full(scored.height, np.nan)
    ordinary = np.flatnonzero(unlabelled & (score <= np.median(score[trainable])))
    rng = np.random.default_rng(config.labels.random_state)
    if len(ordinary) > config.labels.pseudo_normal_rows:
        ordinary = rng.choice(ordinary, config.labels.pseudo_normal_rows, replace=False)
    labels[ordinary] = 0
    human = scored.select(pl.coalesce("known_label", "review_label").fill_null(0)).to_series()
    if not (human.to_numpy() * trainable).any():
        candidates = np.flatnonzero(unlabelled)
        count = max(1, int(FALLBACK_ANOMALY_SHARE * len(candidates)))
        labels[candidates[np.argsort(-score[candidates], kind="stable")[:count]]] = 1
    return labels


def _human_weight(
    scored: pl.DataFrame, queue: pl.DataFrame, config: TrainingConfig
) -> NDArray[np.float64]:
    weight = np.zeros(scored.height)
    known = scored["known_label"].is_not_null().to_numpy()
    weight[known] = 1.0 / config.labels.known_fraction if config.labels.known_fraction else 1.0
    reviewed = scored["review_label"].is_not_null().to_numpy() & ~known
    inclusion = scored.join(
        queue.select(ROW_ID, "inclusion"), on=ROW_ID, how="left", maintain_order="left"
    )["inclusion"].to_numpy()
    # Imported reviews were not drawn by this run's queue: each stands for itself.
    weight[reviewed] = np.where(np.isnan(inclusion[reviewed]), 1.0, 1.0 / inclusion[reviewed])
    return weight


def training_rows(labelled: LabelledRows) -> NDArray[np.int64]:
    """Positions of the rows in the training set, in its order."""
    train_label = labelled.labels["train_label"].to_numpy(allow_copy=True).astype(np.float64)
    trainable = np.sort(np.concatenate([labelled.split.train, labelled.split.validation]))
    return np.asarray(trainable[~np.isnan(train_label[trainable])], dtype=np.int64)


def weighted_training_set(
    labelled: LabelledRows, pseudo_normal_weight: float
) -> tuple[TrainingSet, NDArray[np.int64]]:
    """Every labelled trainable row with its weight (a human label 1, a pseudo-normal
    ``pseudo_normal_weight``), and which of them a human labelled."""
    rows = training_rows(labelled)
    labels = labelled.labels[rows]
    human = labels["label_source"].is_in([ORIGINAL, REVIEW]).fill_null(False).to_numpy()
    weight = np.where(human, 1.0, pseudo_normal_weight)
    return (
        TrainingSet(
            labelled.model_inputs[rows],
            labels["train_label"].to_numpy().astype(np.int8),
            weight,
        ),
        np.flatnonzero(human),
    )
