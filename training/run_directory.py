"""A training run's directory: what the run writes into it (models, holdout, detector, drift
reference, summary) and how the registry and the evaluation read it back.

:func:`write_run_directory` leaves everything ``training.registry.register_run`` needs on disk
before any MLflow call, so a registration that fails can be retried from the directory alone.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import xgboost as xgb
import yaml
from catboost import CatBoostClassifier
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict

from contracts.detector import FittedDetector
from contracts.drift_reference import BINNING, bin_counts, inner_edges
from contracts.features import TIME_FEATURES
from contracts.serving import DETECTOR_ARTIFACT, REFERENCE_ARTIFACT, SUMMARY_ARTIFACT
from contracts.store import write_file_atomically
from training.config import TrainingConfig
from training.data import TrainingData
from training.evaluation import (
    ClassificationMetrics,
    ModelEvaluation,
    plot_confusion,
    plot_importance,
    plot_precision_recall,
    plot_roc,
    write_report,
)
from training.labelling import LabelledRows
from training.models import XGBOOST, FittedModel, Model
from training.pseudo_labels import LabelMix
from training.review_queue import LabelBudget

LABEL_COLUMN = "true_label"
REFERENCE_SAMPLE_ROWS = 100_000


class TrainedRun(BaseModel):
    """What a registration needs to know about a finished training run (``run.json``)."""

    model_config = ConfigDict(extra="forbid")

    experiment: str
    feature_names: list[str]
    threshold: float
    compare_metric: str
    evaluations: dict[str, ModelEvaluation]
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]


class RegistrationResult(BaseModel):
    """What registration did: the MLflow run, new versions, and where the aliases point."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    versions: dict[str, str]
    aliases: dict[str, str]
    decision: str


@dataclass(frozen=True)
class RunDirectory:
    """Paths inside a training run's directory."""

    path: Path

    @property
    def run_record(self) -> Path:
        return self.path / "run.json"

    @property
    def summary(self) -> Path:
        return self.path / SUMMARY_ARTIFACT

    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def features(self) -> Path:
        return self.path / "features.json"

    @property
    def reference(self) -> Path:
        return self.path / REFERENCE_ARTIFACT

    @property
    def detector(self) -> Path:
        return self.path / DETECTOR_ARTIFACT

    @property
    def report_dir(self) -> Path:
        return self.path / "report"

    @property
    def holdout(self) -> Path:
        return self.path / "holdout.parquet"

    @property
    def registration(self) -> Path:
        return self.path / "registration.json"

    @property
    def registration_attempt(self) -> Path:
        """The MLflow run an unfinished registration logged into, to resume rather than redo."""
        return self.path / "registration-attempt.json"

    def model_path(self, kind: str) -> Path:
        return self.path / "models" / ("xgboost.json" if kind == XGBOOST else "catboost.cbm")

    def save_registration(self, result: RegistrationResult) -> None:
        """Keep what registration did, atomically: a half-written file would be returned by
        every later ``register_run`` (or break it) instead of registering again."""
        write_file_atomically(self.registration, result.model_dump_json(indent=2).encode())

    def save_attempt(self, tracking_uri: str, run_id: str) -> None:
        """Record the MLflow run a registration logs into, atomically: a torn record would
        make every retry fail to read it, and the previous one must survive a failed write."""
        attempt = {"tracking_uri": tracking_uri, "run_id": run_id}
        write_file_atomically(self.registration_attempt, json.dumps(attempt).encode())


def save_model(run_dir: RunDirectory, kind: str, model: Model) -> Path:
    """Write a trained model into the run directory (before any MLflow call)."""
    path = run_dir.model_path(kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save_model(str(path))
    return path


def load_model(run_dir: RunDirectory, kind: str) -> Model:
    """Read back a model written by :func:`save_model`."""
    path = str(run_dir.model_path(kind))
    if kind == XGBOOST:
        return xgb.Booster(model_file=path)
    return CatBoostClassifier().load_model(path)


def save_holdout(
    run_dir: RunDirectory,
    features: NDArray[Any],
    feature_names: list[str],
    true_labels: NDArray[Any],
    scores: dict[str, NDArray[Any]],
) -> None:
    """Keep the test rows' features, their true labels and each model's served score.

    Registration compares the new models with the alias holders on exactly these rows, and
    the stored scores let anyone check that a registered model reproduces them.
    """
    columns = {name: features[:, j] for j, name in enumerate(feature_names)}
    columns[LABEL_COLUMN] = true_labels.astype(np.int8)
    columns.update({score_column(kind): values for kind, values in scores.items()})
    pl.DataFrame(columns).write_parquet(run_dir.holdout)


def score_column(kind: str) -> str:
    """The holdout column of a model's served scores."""
    return f"{kind}_score"


def load_detector(run_dir: RunDirectory) -> FittedDetector:
    """The detector the run fitted: feature rows → its models' inputs → the served score."""
    return FittedDetector.load(run_dir.detector)


def load_holdout(
    run_dir: RunDirectory, feature_names: list[str]
) -> tuple[NDArray[Any], NDArray[Any]]:
    """The test rows' float32 features (in ``feature_names`` order) and true labels."""
    frame = pl.read_parquet(run_dir.holdout)
    features = frame.select(feature_names).to_numpy().astype(np.float32, copy=False)
    return features, frame[LABEL_COLUMN].to_numpy()


def reference_distributions(
    features: NDArray[Any], feature_names: list[str], bins: int, seed: int = 0
) -> dict[str, object]:
    """Per-feature quantile histograms of the training rows, for drift (PSI) when serving.

    Computed on a uniform sample of at most ``REFERENCE_SAMPLE_ROWS`` training rows (enough
    for bin shares to within about 0.3 percentage points). Edges are the feature's quantiles,
    repeated ones merged. A value goes to its bin by ``contracts.drift_reference``'s rule, as
    the scorer's values do: the outer bins are open-ended, so a serving-time value outside the
    training range still lands in a bin.

    Args:
        features: training rows.
        feature_names: column names.
        bins: number of quantile bins per feature.
        seed: seed of the sample.

    Returns:
        A JSON-ready document: ``{"rows", "binning", "features": {name: {"edges", "counts"}}}``
        where ``rows`` is the number of rows counted.
    """
    sample = features
    if len(features) > REFERENCE_SAMPLE_ROWS:
        rows = np.random.default_rng(seed).choice(len(features), REFERENCE_SAMPLE_ROWS, False)
        sample = features[np.sort(rows)]
    columns = np.ascontiguousarray(sample.T)  # one contiguous row per feature: faster quantiles
    quantiles = np.quantile(columns, np.linspace(0.0, 1.0, bins + 1), axis=1)
    histograms = {}
    for j, name in enumerate(feature_names):
        edges = np.unique(quantiles[:, j])
        if len(edges) == 1:
            edges = np.array([edges[0], edges[0]])
        counts = bin_counts(inner_edges(edges), columns[j])
        histograms[name] = {"edges": edges.tolist(), "counts": counts.tolist()}
    return {
        "rows": len(sample),
        "binning": BINNING,
        "features": histograms,
    }


class TrainingSummary(BaseModel):
    """What a training run did and measured (also ``summary.json`` in the run directory)."""

    model_config = ConfigDict(extra="forbid")

    run_dir: str
    dataset: str
    engine: str
    rows: int
    features: int
    split_sizes: dict[str, int]
    label_mix: LabelMix
    label_budget: LabelBudget
    reviews: dict[str, int]
    isolation_forest: ClassificationMetrics
    thresholds: dict[str, float]  # per model, chosen on validation (or the configured value)
    evaluations: dict[str, ModelEvaluation]
    cross_validation: list[ClassificationMetrics | None] | None
    stage_seconds: dict[str, float]
    notes: list[str]
    registration: RegistrationResult | None = None
    registration_error: str | None = None


def write_run_directory(
    run_dir: RunDirectory,
    data: TrainingData,
    labelled: LabelledRows,
    detector: FittedDetector,
    fitted: dict[str, FittedModel],
    judged: NDArray[Any],
    truth: NDArray[Any],
    scores: dict[str, NDArray[Any]],
    config: TrainingConfig,
    summary: TrainingSummary,
) -> None:
    """Everything registration reads: models, holdout, config, detector, drift reference,
    report and the run record (``summary.json`` is written by the pipeline last)."""
    run_dir.path.mkdir(parents=True, exist_ok=True)
    for kind, model in fitted.items():
        save_model(run_dir, kind, model.model)
    input_names = detector.input_names
    save_holdout(run_dir, data.features[judged], data.feature_names, truth, scores)
    run_dir.config.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    run_dir.features.write_text(json.dumps(input_names, indent=1))
    detector.save(run_dir.detector)
    drifting = [j for j, name in enumerate(data.feature_names) if name not in TIME_FEATURES]
    trainable = np.sort(np.concatenate([labelled.split.train, labelled.split.validation]))
    reference = reference_distributions(
        data.features[trainable][:, drifting],
        [data.feature_names[j] for j in drifting],
        config.reference_bins,
    )
    run_dir.reference.write_text(json.dumps(reference))
    run_dir.report_dir.mkdir(exist_ok=True)
    curves = {**scores, "isolation forest": -labelled.isolation.scores[judged]}
    report_dir = run_dir.report_dir
    plots = [
        plot_roc(truth, curves, report_dir / "roc.png"),
        plot_precision_recall(truth, curves, report_dir / "precision_recall.png"),
    ]
    for kind, evaluation in summary.evaluations.items():
        plots.append(plot_confusion(evaluation.metrics, kind, report_dir / f"{kind}_confusion.png"))
        plots.append(
            plot_importance(evaluation.top_features, kind, report_dir / f"{kind}_importance.png")
        )
    write_report(
        report_dir / "report.html",
        _overview(summary),
        list(summary.evaluations.values()),
        summary.isolation_forest,
        plots,
        summary.notes,
    )
    run_dir.run_record.write_text(
        TrainedRun(
            experiment=config.registration.experiment,
            feature_names=input_names,
            # The champion candidate's; each model's own is in its evaluation and metrics.
            threshold=summary.thresholds[XGBOOST],
            compare_metric=config.registration.compare_metric,
            evaluations=summary.evaluations,
            params=_flatten(config.model_dump(mode="json")),
            metrics=_run_metrics(summary),
            tags={"dataset": summary.dataset, "engine": summary.engine},
        ).model_dump_json(indent=2)
    )


def cross_validation_text(summary: TrainingSummary) -> str | None:
    """XGBoost's out-of-fold F1 over the folds, in words; None without cross-validation."""
    if summary.cross_validation is None:
        return None
    judged = [fold.f1 for fold in summary.cross_validation if fold is not None]
    if not judged:
        return "no fold held human labels of both classes"
    return (
        f"xgboost F1 {np.mean(judged):.3f} ± {np.std(judged):.3f} over {len(judged)} of "
        f"{len(summary.cross_validation)} folds (human labels only)"
    )


def _overview(summary: TrainingSummary) -> dict[str, str]:
    mix, budget = summary.label_mix, summary.label_budget
    cross_validation = cross_validation_text(summary)
    return {
        "dataset": f"{summary.dataset}: {summary.rows:,} rows × {summary.features} features",
        "split": ", ".join(f"{k} {v:,}" for k, v in summary.split_sizes.items()),
        "training labels": ", ".join(
            f"{source}: {mix.anomalies[source]:,} anomalies / {mix.normals[source]:,} normal"
            for source in mix.anomalies
        )
        + f"; unlabelled {mix.unlabelled:,}",
        "label budget": f"the queue asked for {budget.asked:,} labels instead of "
        f"{budget.uncertain:,} uncertain rows ({budget.reduction:.0%} less work)",
        "reviews": ", ".join(f"{k} {v:,}" for k, v in summary.reviews.items()),
        **({"cross-validation": cross_validation} if cross_validation else {}),
    }


def _flatten(document: dict[str, object], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in document.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = str(value)
    return flat


def _run_metrics(summary: TrainingSummary) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for name, evaluation in summary.evaluations.items():
        for metric, value in evaluation.metrics.model_dump().items():
            if value is not None:
                metrics[f"{name}.{metric}"] = float(value)
        metrics[f"{name}.loss_gap"] = evaluation.loss_gap
        if evaluation.event_recall is not None:
            metrics[f"{name}.event_recall"] = evaluation.event_recall
    for metric, value in summary.isolation_forest.model_dump().items():
        if value is not None:
            metrics[f"isolation_forest.{metric}"] = float(value)
    for source in summary.label_mix.anomalies:
        metrics[f"labels.{source}.anomalies"] = summary.label_mix.anomalies[source]
        metrics[f"labels.{source}.normals"] = summary.label_mix.normals[source]
    metrics["labels.unlabelled"] = summary.label_mix.unlabelled
    metrics["review.asked"] = summary.label_budget.asked
    metrics["review.uncertain"] = summary.label_budget.uncertain
    metrics["review.reduction"] = summary.label_budget.reduction
    folds = [fold.f1 for fold in summary.cross_validation or [] if fold is not None]
    if folds:
        metrics["cv.f1_mean"] = float(np.mean(folds))
        metrics["cv.f1_std"] = float(np.std(folds))
    return metrics
