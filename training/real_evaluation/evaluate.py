"""``vigil evaluate``: Vigil, Isolation Forest alone and PCA on each entity of a public dataset."""

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from contracts.features import (
    ERROR_RATIO,
    LOG_COUNT_COLUMNS,
    SUM_WINDOW,
    SUMMED_LOG_COUNTS,
    TIME_FEATURES,
)
from training.datasets.asd import list_asd_servers
from training.datasets.importer import DatasetName
from training.datasets.nab import list_nab_series
from training.datasets.smd import list_smd_machines
from training.real_evaluation.detector import (
    DetectorOptions,
    DetectorResult,
    Scored,
    run_detector,
)
from training.real_evaluation.entity_data import EntitySeries, load_entity
from training.real_evaluation.protocol import (
    POOL_SHARE,
    EntitySplit,
    Reviewer,
    label_budget,
    split_entity,
)
from training.real_evaluation.scoring import mean_metrics, score_metrics

Progress = Callable[[str], None]

DEFAULT_LABEL_FRACTION = 0.02
_LISTERS: dict[str, Callable[[Path], list[str]]] = {
    "smd": list_smd_machines,
    "asd": list_asd_servers,
    "nab": list_nab_series,
}
# Calendar and log columns say when a row is, or that no logs exist (the public datasets have
# none); they describe no machine state, so the detectors leave them out.
_NOT_STATE = frozenset(
    (
        *TIME_FEATURES,
        *LOG_COUNT_COLUMNS,
        *(f"{column}_sum_{SUM_WINDOW}" for column in SUMMED_LOG_COUNTS),
        ERROR_RATIO,
    )
)


def evaluate_dataset(
    name: DatasetName,
    path: Path,
    entities: list[str] | None = None,
    label_fraction: float = DEFAULT_LABEL_FRACTION,
    work_dir: Path | None = None,
    progress: Progress | None = None,
    options: DetectorOptions | None = None,
) -> dict[str, Any]:
    """Run the honest protocol on every entity and return the ``vigil evaluate`` document.

    Args:
        name: smd, asd or nab.
        path: the dataset folder as published.
        entities: the entities to evaluate; None evaluates all of them.
        label_fraction: the most labels the review queue may reveal, as a share of the rows
            available for training.
        work_dir: where each entity's store (raw telemetry, features) is kept and reused by
            later runs; None uses a temporary folder removed afterwards.
        progress: called with a short message as each entity starts.
        options: detector switches (research); None runs the defaults.

    Returns:
        ``{"dataset", "label_fraction", "protocol", "entities": {entity: doc}, "overall": doc}``
        where each doc holds the metrics of Vigil, ``isolation_forest`` and ``baselines.pca``.

    Raises:
        ValueError: unknown dataset or entity, or a label fraction outside (0, 1].
        DatasetFormatError: the dataset's files are missing or malformed.
    """
    if not 0.0 < label_fraction <= 1.0:
        raise ValueError(f"label_fraction must lie in (0, 1], got {label_fraction}")
    selected = select_entities(name, path, entities)
    with tempfile.TemporaryDirectory(prefix="vigil-evaluate-") as scratch:
        root = work_dir or Path(scratch)
        documents = {}
        for number, entity in enumerate(selected, start=1):
            if progress is not None:
                progress(f"{name} {entity} ({number}/{len(selected)})")
            series = load_entity(name, path, entity, entity_store_path(root, name, entity))
            documents[entity] = evaluate_entity(series, label_fraction, options)
    return {
        "dataset": name,
        "label_fraction": label_fraction,
        "protocol": {
            "pool_share": POOL_SHARE,
            "held_out_share": 1.0 - POOL_SHARE,
            "point_adjusted": False,
            "threshold": "chosen on reviewed pool rows only",
        },
        "entities": documents,
        "overall": overall(list(documents.values())),
    }


def evaluate_entity(
    series: EntitySeries, label_fraction: float, options: DetectorOptions | None = None
) -> dict[str, Any]:
    """The protocol on one entity: Vigil, Isolation Forest alone and PCA, held-out metrics."""
    split, reviewer, result = fit_entity(series, label_fraction, options)
    held_out = split.held_out[series.labels[split.held_out] >= 0]
    truth = series.labels[held_out].astype(np.int8)

    def measured(scored: Scored) -> dict[str, Any]:
        return score_metrics(truth, scored.scores[held_out], scored.threshold)

    return {
        **measured(result.vigil),
        "labels_revealed": len(reviewer.revealed),
        "label_budget": reviewer.budget,
        "rows": {
            "history": len(split.history),
            "pool": len(split.pool),
            "held_out": len(held_out),
            "held_out_anomalies": int(truth.sum()),
        },
        "notes": result.notes,
        "isolation_forest": measured(result.isolation_forest),
        "baselines": {"pca": measured(result.pca)},
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


def detector_columns(feature_names: list[str]) -> NDArray[np.int64]:
    """Positions of the features that describe machine state (what the detectors use)."""
    return np.array([i for i, c in enumerate(feature_names) if c not in _NOT_STATE], dtype=np.int64)


def fit_entity(
    series: EntitySeries, label_fraction: float, options: DetectorOptions | None = None
) -> tuple[EntitySplit, Reviewer, DetectorResult]:
    """Split the entity, and fit and run the detector on what the protocol lets it see."""
    split = split_entity(series.published_train)
    budget = label_budget(split, label_fraction)
    reviewer = Reviewer(series.labels, split, budget)
    result = run_detector(
        series.features,
        series.metric_columns,
        detector_columns(series.feature_names),
        split.history,
        split.pool,
        reviewer,
        budget,
        options,
    )
    return split, reviewer, result


def overall(documents: list[dict[str, Any]]) -> dict[str, Any]:
    """Means over entities of every metric, for Vigil and each baseline."""
    return {
        **mean_metrics(documents),
        "labels_revealed": float(np.mean([d["labels_revealed"] for d in documents])),
        "isolation_forest": mean_metrics([d["isolation_forest"] for d in documents]),
        "baselines": {"pca": mean_metrics([d["baselines"]["pca"] for d in documents])},
    }
