"""``vigil evaluate``: Vigil's training pipeline, and label-free peers, on each entity of a
public dataset under the honest protocol (``protocol.py``).

Vigil here is exactly what ``vigil train`` builds (``training.pipeline.train_and_write``: the
same detector, queue, labels, models and thresholds), fitted on the entity's history and
review pool with the protocol's reviewer, and its run directory is one ``vigil register`` can
log to MLflow. Its held-out scores are the XGBoost champion candidate's served scores
(``contracts.detector``), what the scorer computes from Triton's answer. The CatBoost
challenger and the peers are scored on the same held-out rows; every peer's threshold is
chosen on the same reviewed rows, weighted the same way.
"""

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from numpy.typing import NDArray
from pyod.models.copod import COPOD
from pyod.models.ecod import ECOD
from sklearn.decomposition import PCA

from contracts.features import INSTANCE_ID, TIMESTAMP
from telemetry.datasets.asd import list_asd_servers
from telemetry.datasets.importer import DatasetName
from telemetry.datasets.nab import list_nab_series
from telemetry.datasets.smd import list_smd_machines
from training.config import TrainingConfig, load_training_config
from training.data import ROW_ID, TRUE_LABEL, InsufficientLabelsError, TrainingData
from training.evaluation import choose_threshold
from training.labelling import LabelledRows
from training.models import CATBOOST, XGBOOST, Split
from training.pipeline import train_and_write
from training.real_evaluation.entity_data import EntitySeries, load_entity
from training.real_evaluation.protocol import (
    POOL_SHARE,
    EntitySplit,
    Reviewer,
    label_budget,
    split_entity,
)
from training.real_evaluation.scoring import mean_metrics, score_metrics
from training.review_queue import REVIEWS_SCHEMA, row_id_expr
from training.run_directory import RunDirectory, score_column
from training.thresholds import NO_ANOMALY_FLAG_SHARE

Progress = Callable[[str], None]

DEFAULT_LABEL_FRACTION = 0.02
PEER_PCA_VARIANCE = 0.9
PEERS = ("isolation_forest", "pca", "deviation", "ecod", "copod", "unsupervised")
_LISTERS: dict[str, Callable[[Path], list[str]]] = {
    "smd": list_smd_machines,
    "asd": list_asd_servers,
    "nab": list_nab_series,
}


class NothingEvaluatedError(RuntimeError):
    """No entity of the dataset could be evaluated."""


@dataclass(frozen=True)
class FittedEntity:
    """One entity after the pipeline ran on it under the protocol."""

    split: EntitySplit
    reviewer: Reviewer
    labelled: LabelledRows
    run_dir: RunDirectory
    thresholds: dict[str, float]
    held_out: NDArray[np.int64]  # held-out rows with a label, in time order
    scores: dict[str, NDArray[np.float64]]  # per model kind, on ``held_out``


def evaluate_dataset(
    name: DatasetName,
    path: Path,
    entities: list[str] | None = None,
    label_fraction: float = DEFAULT_LABEL_FRACTION,
    work_dir: Path | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run the honest protocol on every entity and return the ``vigil evaluate`` document.

    An entity that fails (a quirk of its files, too few rows) is reported under ``failed``
    with its error and the others are scored.

    Args:
        name: smd, asd or nab.
        path: the dataset folder as published.
        entities: the entities to evaluate; None evaluates all of them.
        label_fraction: the most labels the review queue may reveal, as a share of the rows
            available for training.
        work_dir: where each entity's store (raw telemetry, features) and training run are
            kept; stores are reused by later runs. None uses a temporary folder.
        progress: called with a short message as each entity starts.

    Returns:
        ``{"dataset", "label_fraction", "protocol", "entities": {entity: doc}, "failed":
        {entity: error}, "overall": doc}``; each doc holds Vigil's metrics at its top level,
        the challenger's under ``catboost`` and each peer's under its name.

    Raises:
        ValueError: unknown dataset or entity, or a label fraction outside (0, 1].
        NothingEvaluatedError: no entity could be evaluated.
    """
    if not 0.0 < label_fraction <= 1.0:
        raise ValueError(f"label_fraction must lie in (0, 1], got {label_fraction}")
    selected = select_entities(name, path, entities)
    documents: dict[str, dict[str, Any]] = {}
    failed: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="vigil-evaluate-") as scratch:
        root = work_dir or Path(scratch)
        for number, entity in enumerate(selected, start=1):
            if progress is not None:
                progress(f"{name} {entity} ({number}/{len(selected)})")
            try:
                series = load_entity(name, path, entity, entity_store_path(root, name, entity))
                documents[entity] = evaluate_entity(
                    series, label_fraction, entity_run_path(root, name, entity)
                )
            except Exception as error:
                failed[entity] = f"{type(error).__name__}: {error}"
                if progress is not None:
                    progress(f"{name} {entity} failed: {failed[entity]}")
    if not documents:
        raise NothingEvaluatedError(f"no {name} entity could be evaluated: {failed}")
    return {
        "dataset": name,
        "label_fraction": label_fraction,
        "protocol": {
            "pool_share": POOL_SHARE,
            "held_out_share": 1.0 - POOL_SHARE,
            "point_adjusted": False,
            "threshold": "chosen on reviewed pool rows only",
            "model": "xgboost (champion candidate of vigil train), served score",
        },
        "entities": documents,
        "failed": failed,
        "overall": overall(list(documents.values())),
    }


def evaluate_entity(series: EntitySeries, label_fraction: float, run_path: Path) -> dict[str, Any]:
    """The protocol on one entity: Vigil, its challenger and the peers on the held-out rows."""
    try:
        fitted = fit_entity(series, label_fraction, run_path)
    except InsufficientLabelsError as error:
        return _undefined(series, label_fraction, str(error))
    truth = series.labels[fitted.held_out].astype(np.int8)
    labelled = fitted.labelled

    def measured(scores: NDArray[Any], threshold: float) -> dict[str, Any]:
        return score_metrics(truth, scores, threshold)

    fit_rows = np.sort(np.concatenate([fitted.split.history, fitted.split.pool]))
    peers = peer_scores(labelled, series, fit_rows)
    reviewed, answers, weights = reviewed_rows(labelled, series)
    return {
        **measured(fitted.scores[XGBOOST], fitted.thresholds[XGBOOST]),
        "labels_revealed": len(fitted.reviewer.revealed),
        "label_budget": fitted.reviewer.budget,
        "anomalies_revealed": int(answers.sum()),
        "rows": {
            "history": len(fitted.split.history),
            "pool": len(fitted.split.pool),
            "held_out": len(fitted.held_out),
            "held_out_anomalies": int(truth.sum()),
        },
        "run_dir": str(fitted.run_dir.path),
        CATBOOST: measured(fitted.scores[CATBOOST], fitted.thresholds[CATBOOST]),
        **{
            peer: measured(
                scores[fitted.held_out],
                peer_threshold(scores, reviewed, answers, weights, fit_rows),
            )
            for peer, scores in peers.items()
        },
    }


def fit_entity(series: EntitySeries, label_fraction: float, run_path: Path) -> FittedEntity:
    """Split the entity and run ``vigil train``'s pipeline on what the protocol lets it see.

    Raises:
        InsufficientLabelsError: the held-out rows hold no anomaly (metrics undefined).
    """
    split = split_entity(series.published_train)
    budget = label_budget(split, label_fraction)
    reviewer = Reviewer(series.labels, split, budget)
    data = training_data(series)
    position = {row_id: i for i, row_id in enumerate(data.rows[ROW_ID].to_list())}

    def review(queue: pl.DataFrame) -> pl.DataFrame:
        asked = np.array([position[r] for r in queue[ROW_ID].to_list()], dtype=np.int64)
        return queue.select(ROW_ID).with_columns(label=pl.Series(reviewer(asked), dtype=pl.Int8))

    summary, labelled = train_and_write(
        data,
        evaluation_config(label_fraction),
        pl.DataFrame(schema=pl.Schema(REVIEWS_SCHEMA)),
        run_path,
        split=Split(split.history, split.pool, split.held_out),
        review_pool=split.pool,
        reviewer=review,
    )
    run_dir = RunDirectory(run_path)
    holdout = pl.read_parquet(run_dir.holdout)
    held_out = split.held_out[series.labels[split.held_out] >= 0]
    return FittedEntity(
        split=split,
        reviewer=reviewer,
        labelled=labelled,
        run_dir=run_dir,
        thresholds=summary.thresholds,
        held_out=held_out,
        scores={
            kind: holdout[score_column(kind)].to_numpy().astype(np.float64)
            for kind in (XGBOOST, CATBOOST)
        },
    )


def evaluation_config(label_fraction: float) -> TrainingConfig:
    """``vigil train``'s default config, with the protocol's labels: none known up front, the
    queue's budget ``label_fraction`` of the rows available for training, the threshold chosen
    on the reviewed rows. No gates: an evaluation measures, and its run, registered with
    ``vigil register``, serves exactly what was measured."""
    config = load_training_config()
    return config.model_copy(
        update={
            "threshold": "reviewed",
            "gates": config.gates.model_copy(update={"min_f1": 0.0, "min_precision": 0.0}),
            "labels": config.labels.model_copy(update={"known_fraction": 0.0}),
            "review": config.review.model_copy(
                update={"label_fraction": label_fraction, "simulate_reviewer": False}
            ),
        }
    )


def training_data(series: EntitySeries) -> TrainingData:
    """The entity's rows as the training pipeline reads them (label null where unknown)."""
    rows = (
        pl.DataFrame(
            {
                INSTANCE_ID: [series.entity] * len(series.labels),
                TIMESTAMP: pl.Series(series.timestamps).dt.replace_time_zone(str(UTC)),
                TRUE_LABEL: series.labels,
            }
        )
        .with_columns(
            pl.col(TIMESTAMP).cast(pl.Datetime("ms", "UTC")),
            pl.when(pl.col(TRUE_LABEL) >= 0).then(pl.col(TRUE_LABEL)).cast(pl.Int8),
        )
        .with_columns(row_id_expr().alias(ROW_ID))
        .select(INSTANCE_ID, TIMESTAMP, ROW_ID, TRUE_LABEL)
    )
    return TrainingData(rows, series.features, series.feature_names, "public", series.metrics)


def peer_scores(
    labelled: LabelledRows, series: EntitySeries, fit_rows: NDArray[Any]
) -> dict[str, NDArray[np.float64]]:
    """Label-free scores of every row (higher = more anomalous), each fitted on ``fit_rows``.

    What a user would try first, on the current metric values: the pipeline's Isolation
    Forest alone, a PCA reconstruction error (``PEER_PCA_VARIANCE`` of the variance), the
    largest robust z-score of a metric ("most unusual metric"), PyOD's ECOD and COPOD
    (parameter-free); and Vigil's own unsupervised score, the detector without its labels.
    """
    values = series.features[:, series.metric_columns].astype(np.float64)
    detector = labelled.detector
    position = {column: j for j, column in enumerate(detector.state_columns.tolist())}
    current = detector.robust_z(series.features)[:, [position[c] for c in series.metric_columns]]
    return {
        "isolation_forest": -labelled.isolation.scores.astype(np.float64),
        "pca": _pca_error(values, fit_rows),
        "deviation": np.abs(current).max(axis=1).astype(np.float64),
        "ecod": _pyod_scores(ECOD(), values, fit_rows),
        "copod": _pyod_scores(COPOD(), values, fit_rows),
        "unsupervised": labelled.unsupervised,
    }


def _pca_error(values: NDArray[Any], fit_rows: NDArray[Any]) -> NDArray[np.float64]:
    if values.shape[1] < 2:
        centred = values[:, 0] - values[fit_rows, 0].mean()
        return np.asarray(centred**2, dtype=np.float64)
    pca = PCA(n_components=PEER_PCA_VARIANCE, svd_solver="full").fit(values[fit_rows])
    rebuilt = pca.inverse_transform(pca.transform(values))
    return np.asarray(((values - rebuilt) ** 2).sum(axis=1), dtype=np.float64)


def _pyod_scores(detector: Any, values: NDArray[Any], fit_rows: NDArray[Any]) -> NDArray[Any]:
    detector.fit(values[fit_rows])
    return np.asarray(detector.decision_function(values), dtype=np.float64)


def reviewed_rows(
    labelled: LabelledRows, series: EntitySeries
) -> tuple[NDArray[np.int64], NDArray[np.int8], NDArray[np.float64]]:
    """The rows the queue revealed, their answers and their weights back to the pool."""
    rows = np.flatnonzero(labelled.human_weight > 0)
    return rows, np.maximum(series.labels[rows], 0).astype(np.int8), labelled.human_weight[rows]


def peer_threshold(
    scores: NDArray[Any],
    reviewed: NDArray[Any],
    answers: NDArray[Any],
    weights: NDArray[Any],
    fit_rows: NDArray[Any],
) -> float:
    """A peer's threshold: the best weighted F1 on the reviewed rows; without a reviewed
    anomaly, above every reviewed row and the top ``NO_ANOMALY_FLAG_SHARE`` of fitted rows."""
    if answers.any():
        return choose_threshold(answers, scores[reviewed], weights)
    top = float(np.quantile(scores[fit_rows], 1 - NO_ANOMALY_FLAG_SHARE))
    return max(float(np.max(scores[reviewed], initial=-np.inf)), top)


def _undefined(series: EntitySeries, label_fraction: float, why: str) -> dict[str, Any]:
    """An entity whose held-out rows hold no anomaly: every metric is undefined."""
    split = split_entity(series.published_train)
    empty = score_metrics(np.zeros(1, dtype=np.int8), np.zeros(1), 0.5)
    return {
        **empty,
        "labels_revealed": 0,
        "label_budget": label_budget(split, label_fraction),
        "anomalies_revealed": 0,
        "rows": {
            "history": len(split.history),
            "pool": len(split.pool),
            "held_out": len(split.held_out),
            "held_out_anomalies": 0,
        },
        "notes": [why],
        CATBOOST: empty,
        **dict.fromkeys(PEERS, empty),
    }


def select_entities(name: str, path: Path, entities: list[str] | None) -> list[str]:
    """The entities to evaluate: all of the dataset's, or the given ones after checking them.

    Raises:
        ValueError: unknown dataset or entity.
    """
    if name not in _LISTERS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(_LISTERS)}")
    available = _LISTERS[name](path)
    selected = available if entities is None else entities
    if unknown := [entity for entity in selected if entity not in available]:
        raise ValueError(f"unknown {name} entities {unknown}; {path} has {', '.join(available)}")
    return selected


def entity_store_path(work_path: Path, name: str, entity: str) -> Path:
    """Where an entity's store lives under a work folder (shared by every evaluation)."""
    return work_path / name / entity / "store"


def entity_run_path(work_path: Path, name: str, entity: str) -> Path:
    """Where an entity's training run is written (replaced by every evaluation)."""
    return work_path / name / entity / "run"


def overall(documents: list[dict[str, Any]]) -> dict[str, Any]:
    """Means over entities of every metric, for Vigil, its challenger and each peer."""
    return {
        **mean_metrics(documents),
        "labels_revealed": float(np.mean([d["labels_revealed"] for d in documents])),
        **{scorer: mean_metrics([d[scorer] for d in documents]) for scorer in (CATBOOST, *PEERS)},
    }
