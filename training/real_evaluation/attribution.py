"""Which metrics explain each held-out incident of a public dataset, according to Vigil.

For ``vigil rag evaluate --dataset``. Each entity's detector is fitted exactly as ``vigil
evaluate`` fits it (``fit_entity``: same split, label budget and reviewer); then every labelled
incident among the held-out rows is explained as the scorer explains an anomaly, from the
incident's highest-scored row:

- **model**: the metrics ``contracts.attribution.rank_metrics`` names (each metric's window
  features' deviation from the fitted rows; exact TreeSHAP of the XGBoost model breaking
  ties), and the top features an ``/explain`` request carries.
- **deviation** (baseline): metrics by their mean absolute robust z-score of the current value
  over the incident's rows, what an engineer sorting by "most unusual metric" would name.
- **anomaly kind** (ASD publishes metric / temporal / metric-temporal, as defined by
  InterFusion): ``contracts.attribution.incident_kind``, a fixed rule never fitted.
"""

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import xgboost as xgb

from contracts import attribution
from contracts.layout import INCIDENTS_PATH
from contracts.serving import XGBOOST_MODEL
from contracts.store import ObjectStore
from telemetry.datasets.importer import DatasetName
from telemetry.datasets.segments import UNKNOWN_INCIDENT_TYPE, label_segments
from training.models import XGBOOST, predict_proba
from training.real_evaluation.entity_data import EntitySeries, load_entity
from training.real_evaluation.evaluate import (
    DEFAULT_LABEL_FRACTION,
    entity_run_path,
    entity_store_path,
    fit_entity,
    select_entities,
)
from training.run_directory import load_detector, load_model

TOP_FEATURES = 10


@dataclass(frozen=True)
class FeatureEvidence:
    """One feature's part in an incident, as an ``/explain`` request carries it."""

    name: str
    value: float  # at the incident's highest-scored row
    baseline: float  # median over the rows the detector was fitted on
    contribution: float  # mean positive TreeSHAP contribution over the incident's rows


@dataclass(frozen=True)
class IncidentAttribution:
    """One held-out incident: the published truth and what each ranking names."""

    start: datetime
    end: datetime
    rows: int  # held-out rows of the incident that were explained
    score: float  # the detector's highest score over those rows
    true_metrics: list[str]
    true_type: str  # the published type, or "unknown"
    model_ranking: list[str]  # metrics with positive evidence, strongest first
    deviation_ranking: list[str]  # every metric, most unusual first
    kind: str  # metric, temporal or metric-temporal
    top_features: list[FeatureEvidence]


@dataclass(frozen=True)
class EntityAttribution:
    """Every explained incident of one entity."""

    entity: str
    metrics: list[str]
    explained: str  # what was explained: "model"
    incidents: list[IncidentAttribution]
    without_truth: int  # held-out incidents the dataset gives no metrics for


def attribute_dataset(
    name: DatasetName,
    path: Path,
    entities: list[str] | None = None,
    label_fraction: float = DEFAULT_LABEL_FRACTION,
    work_dir: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[EntityAttribution]:
    """Attribute every labelled held-out incident of each entity (see the module docstring).

    Args:
        name: smd or asd (the datasets that publish interpretation labels).
        path: the dataset folder as published.
        entities: the entities to explain; None explains all of them.
        label_fraction: the review budget, as in ``vigil evaluate``.
        work_dir: where entity stores are kept and reused (the same layout as ``vigil
            evaluate``'s); None uses a temporary folder.
        progress: called with a short message as each entity starts.

    Raises:
        ValueError: unknown dataset or entity, or a dataset without interpretation labels.
        DatasetFormatError: the dataset's files are missing or malformed.
    """
    if name not in ("smd", "asd"):
        raise ValueError(f"{name} publishes no interpretation labels; use smd or asd")
    selected = select_entities(name, path, entities)
    attributions = []
    with tempfile.TemporaryDirectory(prefix="vigil-attribute-") as scratch:
        root = work_dir or Path(scratch)
        for number, entity in enumerate(selected, start=1):
            if progress is not None:
                progress(f"{name} {entity} ({number}/{len(selected)})")
            store_path = entity_store_path(root, name, entity)
            series = load_entity(name, path, entity, store_path)
            incidents = ObjectStore.from_uri(str(store_path)).read_table(INCIDENTS_PATH)
            attributions.append(
                attribute_entity(
                    series,
                    incidents.to_pylist(),
                    label_fraction,
                    entity_run_path(root, name, entity),
                )
            )
    return attributions


def attribute_entity(
    series: EntitySeries, incidents: list[dict[str, Any]], label_fraction: float, run_path: Path
) -> EntityAttribution:
    """Fit the entity's detector as ``vigil evaluate`` does and attribute its held-out incidents.

    Args:
        series: the entity's rows.
        incidents: its published incidents (rows of ``labels/incidents.parquet``).
        label_fraction: the review budget.
        run_path: where the entity's training run is written.
    """
    fitted = fit_entity(series, label_fraction, run_path)
    split, labelled = fitted.split, fitted.labelled
    detector = load_detector(fitted.run_dir)  # with the models' served-score weights
    model = load_model(fitted.run_dir, XGBOOST)
    assert isinstance(model, xgb.Booster)
    inputs = labelled.model_inputs
    scores = detector.score(XGBOOST_MODEL, predict_proba(model, inputs), inputs)
    state = detector.state_columns
    state_names = [series.feature_names[j] for j in state]
    position = {column: j for j, column in enumerate(state.tolist())}
    deviation = np.abs(
        detector.robust_z(series.features)[:, [position[c] for c in series.metric_columns]]
    )

    held = np.zeros(len(series.labels), dtype=bool)
    held[split.held_out] = True
    explained_incidents, without_truth = [], 0
    for first, last in label_segments((series.labels == 1).astype(np.int8)):
        rows = np.arange(first, last + 1)[held[first : last + 1]]
        if len(rows) == 0:
            continue
        truth = _incident_at(incidents, series.entity, series.timestamps[first])
        if truth is None or not truth["metrics"]:
            without_truth += 1
            continue
        # What the scorer explains: the incident's highest-scored row.
        peak = int(rows[np.argmax(scores[rows])])
        contributions = model.predict(
            xgb.DMatrix(inputs[[peak]], feature_names=detector.input_names), pred_contribs=True
        )[:, state]
        row = series.features[[peak]][:, state]
        reference = (row, state_names, series.metrics, detector.median, detector.scale)
        explained_incidents.append(
            IncidentAttribution(
                start=_datetime(series.timestamps[rows[0]]),
                end=_datetime(series.timestamps[rows[-1]]),
                rows=len(rows),
                score=float(np.clip(scores[peak], 0.0, 1.0)),
                true_metrics=list(truth["metrics"]),
                true_type=str(truth["incident_type"] or UNKNOWN_INCIDENT_TYPE),
                model_ranking=[m for m, _ in attribution.rank_metrics(*reference, contributions)],
                deviation_ranking=[
                    series.metrics[i] for i in np.argsort(-deviation[rows].mean(axis=0))
                ],
                kind=attribution.incident_kind(*reference),
                top_features=[
                    FeatureEvidence(
                        name=feature.name,
                        value=feature.value,
                        baseline=feature.baseline,
                        contribution=feature.contribution or 0.0,
                    )
                    for feature in attribution.top_features(*reference, contributions, TOP_FEATURES)
                ],
            )
        )
    return EntityAttribution(
        series.entity, list(series.metrics), "model", explained_incidents, without_truth
    )


def _incident_at(
    incidents: list[dict[str, Any]], entity: str, at: np.datetime64
) -> dict[str, Any] | None:
    moment = _datetime(at)
    for incident in incidents:
        if incident["instance_id"] == entity and incident["start"] <= moment <= incident["end"]:
            return incident
    return None


def _datetime(at: np.datetime64) -> datetime:
    """The UTC datetime of a row time (``datetime64``, naive UTC)."""
    value: datetime = at.astype("datetime64[ms]").astype(datetime)
    return value.replace(tzinfo=UTC)
