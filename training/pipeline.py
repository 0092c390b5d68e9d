"""``vigil train`` (and, on each entity of a public dataset, ``vigil evaluate``): Vigil's one
detector, from the store's features to MLflow.

Stages (each a function of its own module, reusable on its own):
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

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import yaml
from distributed import Client, LocalCluster
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from sklearn.metrics import average_precision_score

from contracts.dataset import read_dataset_info
from contracts.detector import (
    MODEL_WEIGHTS,
    FittedDetector,
    fit_detector,
    quantile,
    quantile_grid,
    stack,
)
from contracts.features import ID_COLUMNS, INSTANCE_ID, TIME_FEATURES, TIMESTAMP, feature_columns
from contracts.layout import FEATURES_PREFIX, INCIDENTS_PATH, POINT_LABELS_PATH
from contracts.store import ObjectStore
from training.config import DaskConfig, TrainingConfig
from training.evaluation import (
    ClassificationMetrics,
    ModelEvaluation,
    choose_threshold,
    classification_metrics,
    event_recall,
    gate_failures,
    plot_confusion,
    plot_importance,
    plot_precision_recall,
    plot_roc,
    top_features,
    write_report,
)
from training.isolation import IsolationResult, run_isolation_forest
from training.models import (
    CATBOOST,
    XGBOOST,
    FittedModel,
    Split,
    TrainingSet,
    fit_catboost,
    fit_xgboost,
    predict_proba,
    split_rows,
    stratified_sample,
)
from training.pseudo_labels import (
    ORIGINAL,
    REVIEW,
    UNSUPERVISED,
    LabelMix,
    assign_pseudo_labels,
    label_mix,
    reveal_known_labels,
)
from training.registry import (
    REGISTERED_NAMES,
    FeatureSetMismatchError,
    RegistrationError,
    RegistrationResult,
    RunDirectory,
    TrainedRun,
    reference_distributions,
    register_run,
    save_holdout,
    save_model,
)
from training.review_queue import (
    LabelBudget,
    ReviewFiles,
    add_context,
    label_budget,
    load_reviews,
    row_id_expr,
    sample_review_queue,
    save_queue,
    simulate_reviews,
    write_review_files,
)

TRUE_LABEL = "true_label"
ROW_ID = "row_id"


# With no human-labelled anomaly, the share of unlabelled trainable rows, by unsupervised
# score, that stand in as anomalies (see _pseudo_labels), and the share of trainable rows a
# model flags (see decision_threshold).
FALLBACK_ANOMALY_SHARE = 0.01
NO_ANOMALY_FLAG_SHARE = 0.05
# Labelled anomalies of one instance closer than this belong to one incident (see _folds).
INCIDENT_GAP = np.timedelta64(1, "h")


class NoTrainingDataError(ValueError):
    """The store holds no feature rows to train on."""


class InsufficientLabelsError(ValueError):
    """The held-out test rows lack the true labels an honest evaluation needs."""


@dataclass(frozen=True)
class TrainingData:
    """Feature rows and their true labels, in (instance_id, timestamp) order."""

    rows: pl.DataFrame  # instance_id, timestamp, row_id, true_label (Int8, null = unknown)
    features: NDArray[Any]  # float32, one column per feature name
    feature_names: list[str]
    dataset: str
    metrics: list[str]


def join_labels(
    rows: pl.DataFrame, incidents: pl.DataFrame | None, points: pl.DataFrame | None
) -> pl.Series:
    """The true label of each feature row.

    A point label wins where one exists (its null means "unknown"); otherwise a row inside an
    incident of its instance (start and end inclusive) is 1; when an incident list exists the
    dataset is labelled, so every other row is 0; with neither, the label is null.

    Args:
        rows: instance_id and timestamp (UTC) per feature row.
        incidents: ``contracts.labels.INCIDENTS_SCHEMA`` rows, or None if the store has none.
        points: ``contracts.labels.POINT_LABELS_SCHEMA`` rows, or None.

    Returns:
        Int8 series named ``true_label``, aligned with ``rows``.

    Raises:
        ValueError: an incident ends before it starts, or a point is labelled twice.
    """
    keys = rows.select(
        INSTANCE_ID, pl.col(TIMESTAMP).cast(pl.Datetime("ms", "UTC"))
    ).with_row_index("__row")
    label = pl.lit(None, dtype=pl.Int8)
    if incidents is not None:
        inside = _inside_incidents(keys, incidents)
        label = pl.when(pl.Series(inside)).then(pl.lit(1, pl.Int8)).otherwise(pl.lit(0, pl.Int8))
    labelled = keys.with_columns(label.alias(TRUE_LABEL))
    if points is not None:
        points = points.select(
            INSTANCE_ID,
            pl.col(TIMESTAMP).cast(pl.Datetime("ms", "UTC")),
            pl.col("label").cast(pl.Int8).alias("__point"),
        )
        repeated = points.filter(pl.struct(INSTANCE_ID, TIMESTAMP).is_duplicated())
        if repeated.height:
            first = repeated.row(0, named=True)
            raise ValueError(
                f"point labels repeat {repeated.height} rows, e.g. {first[INSTANCE_ID]} at "
                f"{first[TIMESTAMP]}"
            )
        labelled = (
            labelled.join(
                points.with_columns(pl.lit(True).alias("__has_point")),
                on=[INSTANCE_ID, TIMESTAMP],
                how="left",
            )
            .with_columns(
                pl.when(pl.col("__has_point"))
                .then(pl.col("__point"))
                .otherwise(pl.col(TRUE_LABEL))
                .alias(TRUE_LABEL)
            )
            .sort("__row")
        )
    return labelled[TRUE_LABEL].cast(pl.Int8)


def _inside_incidents(keys: pl.DataFrame, incidents: pl.DataFrame) -> NDArray[Any]:
    """Whether each row lies in an incident of its instance (intervals merged, then as-of)."""
    spans = incidents.select(
        INSTANCE_ID,
        pl.col("start").cast(pl.Datetime("ms", "UTC")),
        pl.col("end").cast(pl.Datetime("ms", "UTC")),
    )
    if (backwards := spans.filter(pl.col("end") < pl.col("start"))).height:
        first = backwards.row(0, named=True)
        raise ValueError(f"incident on {first[INSTANCE_ID]} ends before it starts: {first}")
    # Overlapping incidents are merged so that the latest start before a row decides alone.
    merged = (
        spans.sort(INSTANCE_ID, "start")
        .with_columns(
            pl.col("end").cum_max().shift(1).over(INSTANCE_ID).alias("__reach"),
        )
        .with_columns(
            (pl.col("__reach").is_null() | (pl.col("start") > pl.col("__reach")))
            .cum_sum()
            .over(INSTANCE_ID)
            .alias("__group")
        )
        .group_by(INSTANCE_ID, "__group")
        .agg(pl.col("start").min(), pl.col("end").max())
        .sort("start")
    )
    matched = (
        keys.sort(TIMESTAMP)
        .join_asof(
            merged, left_on=TIMESTAMP, right_on="start", by=INSTANCE_ID, check_sortedness=False
        )
        .sort("__row")
    )
    return (matched["end"].is_not_null() & (matched[TIMESTAMP] <= matched["end"])).to_numpy()


def load_training_data(store: ObjectStore, since: date | None = None) -> TrainingData:
    """Every feature row in the store (of the days from ``since`` on, when given), with its
    true label.

    Args:
        store: holds ``processed-logs/*/features.parquet``, ``dataset.json`` and the labels.
        since: the first UTC day to train on; None: every day.

    Returns:
        Rows sorted by (instance_id, timestamp) and their float32 feature matrix.

    Raises:
        NoTrainingDataError: no feature file or no rows.
        ValueError: a file lacks contract columns, a row repeats, or a feature is NaN/inf.
    """
    info = read_dataset_info(store)
    names = feature_columns(info.metrics)
    keys = store.list_keys(FEATURES_PREFIX, "features.parquet")
    if not keys:
        raise NoTrainingDataError(
            f"no features under {store.uri}/{FEATURES_PREFIX}: run the feature job first"
        )
    if since is not None:
        newest = max(_feature_day(key) for key in keys)
        keys = [key for key in keys if _feature_day(key) >= since]
        if not keys:
            raise NoTrainingDataError(
                f"no features from {since} on under {store.uri}/{FEATURES_PREFIX} "
                f"(the newest day is {newest})"
            )
    tables = []
    for key in keys:
        present = set(store.parquet_file(key).schema_arrow.names)
        if missing := [c for c in (*ID_COLUMNS, *names) if c not in present]:
            raise ValueError(
                f"{key} lacks {len(missing)} contract column(s) for dataset {info.name!r}, "
                f"e.g. {missing[:5]}"
            )
        tables.append(pl.DataFrame(store.read_table(key, columns=[*ID_COLUMNS, *names])))
    frame = pl.concat(tables).sort(INSTANCE_ID, TIMESTAMP)
    if frame.height == 0:
        raise NoTrainingDataError(f"the feature files under {store.uri} hold no rows")
    if (repeated := frame.select(ID_COLUMNS).is_duplicated()).any():
        first = frame.filter(repeated).row(0, named=True)
        raise ValueError(
            f"feature rows repeat (instance_id, timestamp), e.g. {first[INSTANCE_ID]} at "
            f"{first[TIMESTAMP]}"
        )
    features = frame.select(names).to_numpy().astype(np.float32, copy=False)
    require_finite(features, names)
    rows = frame.select(ID_COLUMNS).with_columns(row_id_expr().alias(ROW_ID))
    incidents = _optional_table(store, INCIDENTS_PATH)
    points = _optional_table(store, POINT_LABELS_PATH)
    rows = rows.with_columns(join_labels(rows, incidents, points))
    return TrainingData(rows, np.ascontiguousarray(features), names, info.name, list(info.metrics))


def _feature_day(key: str) -> date:
    """The UTC day of a ``processed-logs/YYYY-MM-DD/features.parquet`` key."""
    return date.fromisoformat(key.removeprefix(f"{FEATURES_PREFIX}/").split("/")[0])


def require_finite(features: NDArray[Any], names: list[str]) -> None:
    """Raise ValueError naming the columns that hold NaN or infinite values."""
    finite = np.isfinite(features)
    if finite.all():
        return
    bad = (~finite).sum(axis=0)
    columns = [f"{names[j]} ({int(bad[j])} rows)" for j in np.flatnonzero(bad)]
    raise ValueError(
        f"features hold NaN or infinite values in {len(columns)} column(s): {columns[:10]}"
    )


def _optional_table(store: ObjectStore, key: str) -> pl.DataFrame | None:
    if not store.exists(key):
        return None
    return pl.from_arrow(store.read_table(key))  # type: ignore[return-value]


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


def rank_scale(scores: NDArray[Any], fit_rows: NDArray[Any]) -> NDArray[np.float64]:
    """Each score's empirical quantile among the ``fit_rows`` scores (0..1)."""
    reference = np.sort(scores[fit_rows])
    return np.asarray(np.searchsorted(reference, scores, side="right") / len(reference))


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


def require_test_labels(test_labels: NDArray[np.float64], method: str) -> None:
    """Raise InsufficientLabelsError unless the test rows hold true anomalies and normals.

    Args:
        test_labels: the test rows' true labels, NaN where unknown.
        method: the split method, for the message.
    """
    known = test_labels[~np.isnan(test_labels)]
    anomalies = int((known == 1).sum())
    if anomalies == 0 or anomalies == len(known):
        raise InsufficientLabelsError(
            f"the held-out test rows ({len(test_labels)} rows, split '{method}') hold "
            f"{len(known)} true labels of which {anomalies} anomalies; an honest evaluation "
            "needs both classes: add labelled incidents covering the latest data, or use "
            "split.method: stratified"
        )


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


@contextmanager
def dask_client(config: DaskConfig) -> Iterator[Client]:
    """A client to the configured scheduler, or to a LocalCluster started for the run."""
    if config.scheduler_address:
        with Client(config.scheduler_address) as client:
            yield client
        return
    with (
        LocalCluster(
            n_workers=config.local_workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


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
        console: where to show progress and the summary table; None is silent.
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
    if console is not None:
        console.print(summary_table(summary))
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
        split, review_pool, reviewer: see :func:`label_rows` (``vigil evaluate``'s protocol).

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
    training_set, human_rows = _training_set(labelled, config.labels.pseudo_normal_weight)
    names = labelled.detector.input_names
    with timer.stage("xgboost"):
        fitted = {XGBOOST: _fit(XGBOOST, training_set, names, config, client, notes)}
    with timer.stage("catboost"):
        fitted[CATBOOST] = _fit(CATBOOST, training_set, names, config, client, notes)
    with timer.stage("served scores, out-of-fold scores and thresholds"):
        fit_rows = np.sort(np.concatenate([labelled.split.train, labelled.split.validation]))
        human_positions = _rows_of(labelled)[human_rows]
        folds = _folds(
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
            fitted[kind] = replace(fitted[kind], validation_loss=_log_loss(human_truth, oof))
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
        cross_validation = _fold_metrics(human_truth, out_of_fold[XGBOOST], folds, thresholds)
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
        _write_run_directory(
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


def _rows_of(labelled: LabelledRows) -> NDArray[np.int64]:
    """Positions of the rows in the training set, in its order."""
    train_label = labelled.labels["train_label"].to_numpy(allow_copy=True).astype(np.float64)
    trainable = np.sort(np.concatenate([labelled.split.train, labelled.split.validation]))
    return np.asarray(trainable[~np.isnan(train_label[trainable])], dtype=np.int64)


def _training_set(
    labelled: LabelledRows, pseudo_normal_weight: float
) -> tuple[TrainingSet, NDArray[np.int64]]:
    """Every labelled trainable row with its weight (a human label 1, a pseudo-normal
    ``pseudo_normal_weight``), and which of them a human labelled."""
    rows = _rows_of(labelled)
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


def _folds(
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
        model = _fit(kind, kept, names, config, None, []).model
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


def _fold_metrics(
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


def _log_loss(labels: NDArray[Any], probabilities: NDArray[Any]) -> float:
    """Mean log loss of the scored rows (NaN when none was scored)."""
    scored = ~np.isnan(probabilities)
    if not scored.any():
        return float("nan")
    labels, probabilities = labels[scored], probabilities[scored]
    clipped = np.clip(probabilities, 1e-7, 1 - 1e-7)
    return float(-np.mean(labels * np.log(clipped) + (1 - labels) * np.log(1 - clipped)))


def _fit(
    kind: str,
    training_set: TrainingSet,
    names: list[str],
    config: TrainingConfig,
    client: Client | None,
    notes: list[str],
) -> FittedModel:
    if kind == XGBOOST:
        return fit_xgboost(training_set, names, config.xgboost, client, config.dask.chunk_rows)
    if client is not None and len(training_set.labels) > config.dask.catboost_sample_rows:
        sample = stratified_sample(
            training_set.labels, config.dask.catboost_sample_rows, config.split.random_state
        )
        notes.append(
            f"CatBoost trained on a stratified sample of {len(sample):,} of "
            f"{len(training_set.labels):,} labelled training rows (dask engine); XGBoost used "
            "them all"
        )
        training_set = training_set.subset(sample)
    return fit_catboost(training_set, names, config.catboost)


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


def _write_run_directory(
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


def _cross_validation_text(summary: TrainingSummary) -> str | None:
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
    cross_validation = _cross_validation_text(summary)
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


def summary_table(summary: TrainingSummary) -> Table:
    """The end-of-run table: test metrics per model, labels, budget, registration."""
    table = Table(title=f"vigil train — {summary.dataset} ({summary.rows:,} rows)")
    for column in ("model", "precision", "recall", "f1", "pr_auc", "event recall", "gates"):
        table.add_column(column)
    for kind, evaluation in summary.evaluations.items():
        m = evaluation.metrics
        table.add_row(
            kind,
            f"{m.precision:.3f}",
            f"{m.recall:.3f}",
            f"{m.f1:.3f}",
            "n/a" if m.pr_auc is None else f"{m.pr_auc:.3f}",
            "n/a" if evaluation.event_recall is None else f"{evaluation.event_recall:.3f}",
            "passed" if evaluation.passed_gates else "; ".join(evaluation.gate_failures),
        )
    base = summary.isolation_forest
    pr_auc = "n/a" if base.pr_auc is None else f"{base.pr_auc:.3f}"
    table.add_row(
        "isolation forest",
        f"{base.precision:.3f}",
        f"{base.recall:.3f}",
        f"{base.f1:.3f}",
        pr_auc,
        "",
        "",
    )
    budget = summary.label_budget
    cross_validation = _cross_validation_text(summary)
    table.caption = (
        f"labels asked {budget.asked:,} vs {budget.uncertain:,} uncertain "
        f"({budget.reduction:.0%} less); "
        + (f"cross-validation: {cross_validation}; " if cross_validation else "")
        + (
            f"registered: {summary.registration.decision}"
            if summary.registration
            else f"not registered: {summary.registration_error or 'no tracking URI'}"
        )
    )
    return table


@dataclass(frozen=True)
class ReviewExport:
    """What ``vigil review export`` wrote."""

    files: ReviewFiles
    budget: LabelBudget


def export_review(store: ObjectStore, config: TrainingConfig, out_dir: Path) -> ReviewExport:
    """``vigil review export``: draw the review queue and write it for reviewers.

    The queue is also kept in the store, so ``vigil review import`` can check answers
    against it.

    Args:
        store: features, labels and earlier reviews.
        config: the training config (forest, buckets, sampling fractions).
        out_dir: where the CSV and the Label Studio files go.
    """
    data = load_training_data(store)
    no_simulation = config.model_copy(
        update={"review": config.review.model_copy(update={"simulate_reviewer": False})}
    )
    labelled = label_rows(data, no_simulation, load_reviews(store))
    positions = labelled.queue.join(
        data.rows.select(ROW_ID).with_row_index("__position"),
        on=ROW_ID,
        how="left",
        maintain_order="left",
    )["__position"].to_numpy()
    queue = add_context(labelled.queue, data.features[positions], data.features, data.feature_names)
    save_queue(store, queue)
    return ReviewExport(write_review_files(queue, out_dir), labelled.budget)
