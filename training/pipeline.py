"""``vigil train`` (and, on each entity of a public dataset, ``vigil evaluate``): Vigil's one
detector, from the store's features to MLflow.

Stages, each a function of its own module (``data``, ``labelling``, ``models``, ``thresholds``,
``evaluation`` and ``gates``, ``run_directory``, ``registry``), reusable on its own; this module
only runs them in order:
load features and true labels → split (the test rows are held out from everything below) →
the detector (``contracts.detector``: robust scales, PCA, kNN reference, unsupervised
columns) and the Isolation Forest baseline fitted on the trainable rows → review queue within
a label budget, stratified by the unsupervised score (answered by imported reviews and,
optionally, a simulated reviewer) → labels: humans' anomalies and normals plus weighted
pseudo-normals → XGBoost and CatBoost on the same weighted rows → the served score (each
model's probability stacked with the unsupervised score) → thresholds from out-of-fold
scores of the human labels → evaluation against true labels on the test rows → run
directory on disk → MLflow registration with gates and aliases.
"""

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from distributed import Client
from numpy.typing import NDArray
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from contracts.detector import quantile, quantile_grid, stack
from contracts.features import INSTANCE_ID, TIMESTAMP
from contracts.store import ObjectStore
from training.config import TrainingConfig
from training.dask_cluster import dask_client
from training.data import TRUE_LABEL, TrainingData, load_training_data, require_test_labels
from training.evaluation import (
    ModelEvaluation,
    classification_metrics,
    event_recall,
    top_features,
)
from training.gates import gate_failures
from training.labelling import (
    FALLBACK_ANOMALY_SHARE,
    LabelledRows,
    Reviewer,
    label_rows,
    training_rows,
    weighted_training_set,
)
from training.models import (
    CATBOOST,
    XGBOOST,
    FittedModel,
    Split,
    fit_model,
    predict_proba,
)
from training.pseudo_labels import UNSUPERVISED
from training.registry import (
    REGISTERED_NAMES,
    FeatureSetMismatchError,
    RegistrationError,
    register_run,
)
from training.review_queue import load_reviews
from training.run_directory import RunDirectory, TrainingSummary, write_run_directory
from training.thresholds import (
    decision_threshold,
    fold_metrics,
    human_folds,
    model_weight,
    out_of_fold_scores,
    scored_log_loss,
)


class StageTimer:
    """Records how long each pipeline stage took and, if given one, drives a progress bar."""

    def __init__(self, progress: Progress | None = None, stages: int = 0) -> None:
        self.progress = progress
        self.task = progress.add_task("starting", total=stages) if progress else None
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        if self.progress is not None and self.task is not None:
            self.progress.update(self.task, description=name)
        started = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - started, 3)
        if self.progress is not None and self.task is not None:
            self.progress.advance(self.task)


def run_training(
    store: ObjectStore,
    config: TrainingConfig,
    tracking_uri: str | None,
    run_path: Path,
    console: Console | None = None,
    since: date | None = None,
) -> TrainingSummary:
    """``vigil train``: the whole pipeline, from the store's features to MLflow.

    Args:
        store: features, labels and imported reviews.
        config: the training config.
        tracking_uri: the MLflow server; None stops after writing the run directory.
        run_path: a new directory for the run's models, holdout, report and summary.
        console: where to show progress; None is silent.
        since: the first UTC day of features to train on; None: every day in the store.

    Returns:
        The summary. When registration fails (MLflow down, feature set changed),
        ``registration_error`` says why and ``register_run(run_path, ...)`` can be retried.

    Raises:
        NoTrainingDataError, InsufficientLabelsError, SingleClassError, ValueError: bad input;
            nothing was written.
    """
    stages = 8 + bool(tracking_uri)
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=console is None,
    )
    with progress:
        timer = StageTimer(progress, stages)
        with timer.stage("load features and labels"):
            data = load_training_data(store, since)
            reviews = load_reviews(store)
        if config.engine == "dask":
            with dask_client(config.dask) as client:
                summary, _ = train_and_write(data, config, reviews, run_path, client, timer)
        else:
            summary, _ = train_and_write(data, config, reviews, run_path, None, timer)
        if tracking_uri is not None:
            with timer.stage("register in MLflow"):
                try:
                    summary.registration = register_run(run_path, tracking_uri)
                except (RegistrationError, FeatureSetMismatchError) as error:
                    summary.registration_error = str(error)
            summary.stage_seconds = dict(timer.seconds)
            RunDirectory(run_path).summary.write_text(summary.model_dump_json(indent=2))
    return summary


def train_and_write(
    data: TrainingData,
    config: TrainingConfig,
    stored_reviews: pl.DataFrame,
    run_path: Path,
    client: Client | None = None,
    timer: StageTimer | None = None,
    split: Split | None = None,
    review_pool: NDArray[Any] | None = None,
    reviewer: Reviewer | None = None,
) -> tuple[TrainingSummary, LabelledRows]:
    """Phases 1-5 on loaded data, then the run directory that registration reads.

    Args:
        data: feature rows and true labels.
        config: the training config.
        stored_reviews: imported reviews (row_id, label); may be empty.
        run_path: the run directory to write.
        client: a Dask client (``dask`` engine) or None.
        timer: records stage timings (and drives the progress bar).
        split, review_pool, reviewer: see ``training.labelling.label_rows`` (``vigil evaluate``'s
            protocol).

    Returns:
        The summary (also written to ``summary.json``) and the labelled rows behind it.

    Raises:
        InsufficientLabelsError: the test rows hold no true anomaly or no true normal row.
        SingleClassError: the training labels hold a single class.
    """
    timer = timer or StageTimer()
    with timer.stage("unsupervised scores, review queue, pseudo-labels"):
        labelled = label_rows(data, config, stored_reviews, client, split, review_pool, reviewer)
        true_labels = data.rows[TRUE_LABEL].to_numpy(allow_copy=True).astype(np.float64)
        require_test_labels(true_labels[labelled.split.test], config.split.method)
    notes: list[str] = []
    if labelled.mix.anomalies[UNSUPERVISED]:
        notes.append(
            "no human-labelled anomaly among the trainable rows: the top "
            f"{FALLBACK_ANOMALY_SHARE:.0%} of unlabelled rows by unsupervised score stood in "
            f"as anomalies ({labelled.mix.anomalies[UNSUPERVISED]:,} rows)"
        )
    training_set, human_rows = weighted_training_set(labelled, config.labels.pseudo_normal_weight)
    names = labelled.detector.input_names
    with timer.stage("xgboost"):
        fitted = {XGBOOST: fit_model(XGBOOST, training_set, names, config, client, notes)}
    with timer.stage("catboost"):
        fitted[CATBOOST] = fit_model(CATBOOST, training_set, names, config, client, notes)
    with timer.stage("served scores, out-of-fold scores and thresholds"):
        fit_rows = np.sort(np.concatenate([labelled.split.train, labelled.split.validation]))
        human_positions = training_rows(labelled)[human_rows]
        folds = human_folds(
            data.rows[INSTANCE_ID].to_numpy()[human_positions],
            data.rows[TIMESTAMP].to_numpy()[human_positions],
            training_set.labels[human_rows],
            config.split.cv_folds,
        )
        human_truth = training_set.labels[human_rows]
        human_weight = labelled.human_weight[human_positions]
        human_unsupervised = labelled.unsupervised[human_positions]
        detector = labelled.detector
        out_of_fold, thresholds = {}, {}
        for kind, model in fitted.items():
            name = REGISTERED_NAMES[kind]
            fitted_probabilities = predict_proba(model.model, labelled.model_inputs[fit_rows])
            grid = quantile_grid(fitted_probabilities)
            oof = out_of_fold_scores(kind, training_set, human_rows, folds, names, config)
            fitted[kind] = replace(fitted[kind], validation_loss=scored_log_loss(human_truth, oof))
            weight = model_weight(
                quantile(grid, oof), human_unsupervised, human_truth, human_weight
            )
            detector = detector.with_model(name, grid, weight)
            out_of_fold[kind] = stack(quantile(grid, oof), human_unsupervised, weight)
            fitted_scores = stack(
                quantile(grid, fitted_probabilities), labelled.unsupervised[fit_rows], weight
            )
            thresholds[kind] = decision_threshold(
                human_truth, out_of_fold[kind], human_weight, fitted_scores, config
            )
        cross_validation = fold_metrics(human_truth, out_of_fold[XGBOOST], folds, thresholds)
    with timer.stage("evaluate on the test rows"):
        test = labelled.split.test
        test_true = true_labels[test]
        judged = test[~np.isnan(test_true)]
        truth = test_true[~np.isnan(test_true)].astype(np.int8)
        test_inputs = labelled.model_inputs[judged]
        scores = {
            kind: detector.score(
                REGISTERED_NAMES[kind], predict_proba(f.model, test_inputs), test_inputs
            )
            for kind, f in fitted.items()
        }
        instances = data.rows[INSTANCE_ID].to_numpy()[judged]
        evaluations = {
            kind: _evaluate(fitted[kind], truth, scores[kind], instances, thresholds[kind], config)
            for kind in fitted
        }
        # score < 0 is the forest's "anomaly"; flagging -score >= the smallest positive float
        # gives exactly that rule for the baseline.
        isolation_metrics = classification_metrics(
            truth, -labelled.isolation.scores[judged], float(np.nextafter(0.0, 1.0))
        )
    with timer.stage("write the run directory"):
        summary = TrainingSummary(
            run_dir=str(run_path),
            dataset=data.dataset,
            engine=config.engine,
            rows=data.rows.height,
            features=len(data.feature_names),
            split_sizes={
                "train": len(labelled.split.train),
                "validation": len(labelled.split.validation),
                "test": len(labelled.split.test),
                "test_with_true_labels": len(judged),
            },
            label_mix=labelled.mix,
            label_budget=labelled.budget,
            reviews={
                "imported": labelled.reviews_imported,
                "simulated": labelled.reviews_simulated,
            },
            isolation_forest=isolation_metrics,
            thresholds=thresholds,
            evaluations=evaluations,
            cross_validation=cross_validation,
            stage_seconds={},
            notes=notes,
        )
        write_run_directory(
            RunDirectory(run_path),
            data,
            labelled,
            detector,
            fitted,
            judged,
            truth,
            scores,
            config,
            summary,
        )
    summary.stage_seconds = dict(timer.seconds)
    RunDirectory(run_path).summary.write_text(summary.model_dump_json(indent=2))
    return summary, labelled


def _evaluate(
    fitted: FittedModel,
    truth: NDArray[Any],
    probabilities: NDArray[Any],
    instances: NDArray[Any],
    threshold: float,
    config: TrainingConfig,
) -> ModelEvaluation:
    metrics = classification_metrics(truth, probabilities, threshold)
    return ModelEvaluation(
        kind=fitted.kind,
        metrics=metrics,
        event_recall=event_recall(instances, truth, probabilities >= threshold),
        gate_failures=gate_failures(metrics, config.gates),
        train_loss=fitted.train_loss,
        validation_loss=fitted.validation_loss,
        loss_gap=fitted.loss_gap,
        iterations=fitted.iterations,
        trained_rows=fitted.trained_rows,
        fit_seconds=round(fitted.fit_seconds, 3),
        top_features=top_features(fitted.importance),
    )
