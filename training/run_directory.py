"""What a training run writes into its run directory, and the summary of what it did.

:func:`write_run_directory` leaves everything ``training.registry.register_run`` needs on disk
before any MLflow call, so a registration that fails can be retried from the directory alone.
"""

import json
from typing import Any

import numpy as np
import yaml
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict

from contracts.detector import FittedDetector
from contracts.features import TIME_FEATURES
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
from training.models import XGBOOST, FittedModel
from training.pseudo_labels import LabelMix
from training.registry import (
    RegistrationResult,
    RunDirectory,
    TrainedRun,
    reference_distributions,
    save_holdout,
    save_model,
)
from training.review_queue import LabelBudget


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
