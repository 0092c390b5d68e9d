"""The whole pipeline without MLflow: outputs, honest evaluation, behaviour, bad input, Dask."""

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from numpy.typing import NDArray

from contracts.dataset import DatasetInfo, write_dataset_info
from contracts.features import TIME_FEATURES, TIMESTAMP, compute_features, feature_columns
from contracts.labels import INCIDENTS_SCHEMA, POINT_LABELS_SCHEMA
from contracts.layout import INCIDENTS_PATH, POINT_LABELS_PATH, features_path
from contracts.store import ObjectStore
from tests.training.conftest import METRICS, START, fleet_frames, small_config, write_fleet_store
from training.models import SingleClassError, predict_proba
from training.pipeline import (
    InsufficientLabelsError,
    NoTrainingDataError,
    TrainingSummary,
    label_rows,
    load_training_data,
    run_training,
)
from training.registry import (
    REGISTERED_NAMES,
    RunDirectory,
    TrainedRun,
    load_detector,
    load_holdout,
    load_model,
    score_column,
)
from training.review_queue import load_reviews


@pytest.fixture(scope="module")
def trained(
    fleet_store: ObjectStore, tmp_path_factory: pytest.TempPathFactory
) -> tuple[TrainingSummary, RunDirectory]:
    run_path = tmp_path_factory.mktemp("run") / "run"
    return run_training(fleet_store, small_config(), None, run_path), RunDirectory(run_path)


def test_run_directory_holds_everything_registration_needs(
    trained: tuple[TrainingSummary, RunDirectory],
) -> None:
    summary, run_dir = trained
    for path in (
        run_dir.run_record,
        run_dir.summary,
        run_dir.config,
        run_dir.holdout,
        run_dir.model_path("xgboost"),
        run_dir.model_path("catboost"),
        run_dir.report_dir / "report.html",
        run_dir.report_dir / "roc.png",
        run_dir.report_dir / "xgboost_confusion.png",
    ):
        assert path.exists(), path
    inputs = load_detector(run_dir)
    assert inputs.feature_names == feature_columns(METRICS)
    assert json.loads(run_dir.features.read_text()) == inputs.input_names
    reference = json.loads(run_dir.reference.read_text())
    # Calendar columns say when a row is, not how the fleet behaves: no drift reference.
    assert set(reference["features"]) == set(feature_columns(METRICS)) - set(TIME_FEATURES)
    assert reference["rows"] == summary.split_sizes["train"] + summary.split_sizes["validation"]
    report = (run_dir.report_dir / "report.html").read_text()
    assert "isolation forest alone" in report
    assert "label budget" in report
    assert TrainingSummary.model_validate_json(run_dir.summary.read_text()) == summary


def test_summary_reports_labels_budget_and_timings(
    trained: tuple[TrainingSummary, RunDirectory],
) -> None:
    summary, _ = trained
    assert summary.rows == 3600
    assert summary.split_sizes == {
        "train": 2880,
        "validation": 360,
        "test": 360,
        "test_with_true_labels": 360,
    }
    mix = summary.label_mix
    assert mix.anomalies["original"] > 0
    # humans found anomalies, so every positive label is a human's; the detectors add normals
    assert mix.anomalies["unsupervised"] == 0
    assert mix.normals["unsupervised"] > 0
    assert mix.normals["review"] + mix.anomalies["review"] == summary.reviews["simulated"]
    assert mix.labelled + mix.unlabelled == 3240  # train + validation rows only
    budget = summary.label_budget
    assert 0 < budget.asked < budget.uncertain
    assert set(summary.stage_seconds) >= {"xgboost", "catboost", "evaluate on the test rows"}


def test_models_rank_above_the_isolation_forest_and_the_champion_passes_the_gates(
    trained: tuple[TrainingSummary, RunDirectory],
) -> None:
    summary, _ = trained
    isolation = summary.isolation_forest.pr_auc
    assert isolation is not None
    for evaluation in summary.evaluations.values():
        assert evaluation.metrics.pr_auc is not None
        assert evaluation.metrics.pr_auc > isolation, evaluation.kind
        assert evaluation.metrics.rows == 360
    champion = summary.evaluations["xgboost"]
    assert champion.passed_gates, champion.gate_failures
    assert champion.metrics.f1 > summary.isolation_forest.f1


def test_labelled_incidents_are_caught(trained: tuple[TrainingSummary, RunDirectory]) -> None:
    summary, _ = trained
    assert summary.evaluations["xgboost"].event_recall == pytest.approx(1.0)
    assert summary.evaluations["catboost"].event_recall == pytest.approx(1.0)


def test_threshold_is_chosen_on_reviewed_rows_and_travels_with_the_run(
    trained: tuple[TrainingSummary, RunDirectory],
) -> None:
    summary, run_dir = trained
    run = TrainedRun.model_validate_json(run_dir.run_record.read_text())
    assert run.threshold == summary.thresholds["xgboost"]
    for kind, evaluation in summary.evaluations.items():
        threshold = summary.thresholds[kind]
        assert 0.0 < threshold < 1.0
        assert evaluation.metrics.threshold == threshold
        assert run.metrics[f"{kind}.threshold"] == threshold
        # chosen on the human labels' out-of-fold scores, it keeps the gates passable
        assert evaluation.passed_gates, (kind, evaluation.gate_failures)


def _features_of(wide: pl.DataFrame) -> NDArray[np.float32]:
    return compute_features(wide, METRICS).select(feature_columns(METRICS)).to_numpy()


def test_an_injected_spike_scores_above_the_threshold(
    trained: tuple[TrainingSummary, RunDirectory],
) -> None:
    # A fleet the models never saw, without incidents; then one CPU + latency + error spike.
    wide, _ = fleet_frames(instances=1, minutes=120, seed=42, incidents_per_instance=0)
    spiked = wide.with_columns(
        pl.when(pl.int_range(pl.len()) >= 100)
        .then(pl.col(name) * factor + shift)
        .otherwise(pl.col(name))
        .alias(name)
        for name, factor, shift in (
            ("CPUUtilization", 1.0, 40.0),
            ("Latency", 3.0, 0.0),
            ("error_count", 1.0, 6.0),
        )
    )
    summary, run_dir = trained
    detector = load_detector(run_dir)
    for kind in ("xgboost", "catboost"):
        calm = _served_scores(run_dir, kind, _features_of(wide))[100:]
        spike = _served_scores(run_dir, kind, _features_of(spiked))[100:]
        assert (calm < summary.thresholds[kind]).all(), kind
        assert (spike[:5] >= summary.thresholds[kind]).all(), kind
    assert detector.feature_names == feature_columns(METRICS)


def _served_scores(run_dir: RunDirectory, kind: str, features: NDArray[Any]) -> NDArray[Any]:
    """The served score of feature rows: detector inputs → the model → the detector's score."""
    detector = load_detector(run_dir)
    inputs = detector.inputs(features)
    probabilities = predict_proba(load_model(run_dir, kind), inputs)
    return detector.score(REGISTERED_NAMES[kind], probabilities, inputs)


def test_row_order_does_not_change_scores(trained: tuple[TrainingSummary, RunDirectory]) -> None:
    _, run_dir = trained
    features, _ = load_holdout(run_dir, load_detector(run_dir).feature_names)
    order = np.random.default_rng(0).permutation(len(features))
    for kind in ("xgboost", "catboost"):
        assert np.array_equal(
            _served_scores(run_dir, kind, features[order]),
            _served_scores(run_dir, kind, features)[order],
        )


def test_saved_models_reproduce_the_test_scores(
    trained: tuple[TrainingSummary, RunDirectory],
) -> None:
    _, run_dir = trained
    holdout = pl.read_parquet(run_dir.holdout)
    features, _ = load_holdout(run_dir, load_detector(run_dir).feature_names)
    for kind in ("xgboost", "catboost"):
        expected = holdout[score_column(kind)].to_numpy()
        assert np.array_equal(_served_scores(run_dir, kind, features), expected)


def test_the_test_rows_never_feed_training(fleet_store: ObjectStore) -> None:
    data = load_training_data(fleet_store)
    config = small_config(labels={"known_fraction": 1.0})
    labelled = label_rows(data, config, load_reviews(fleet_store))
    test = labelled.labels[labelled.split.test]
    assert test["train_label"].null_count() == len(labelled.split.test)
    assert not set(labelled.queue["row_id"]) & set(data.rows["row_id"].gather(labelled.split.test))
    # With every label known, training labels on train/validation rows are the true ones.
    trainable = np.concatenate([labelled.split.train, labelled.split.validation])
    truth = data.rows["true_label"].gather(trainable)
    assert labelled.labels["train_label"].gather(trainable).equals(truth)


def test_since_trains_on_the_days_from_it_on_and_names_the_newest_day_when_none(
    tmp_path: Path,
) -> None:
    store = write_fleet_store(tmp_path / "store")
    *_, last_key = sorted(store.list_keys("processed-logs", "features.parquet"))
    last = pl.DataFrame(store.read_table(last_key))
    newest = last[TIMESTAMP].min().date()
    everything = load_training_data(store).rows

    recent = load_training_data(store, since=newest).rows
    assert recent.height == last.height < everything.height
    assert recent[TIMESTAMP].min() == last[TIMESTAMP].min()
    later = newest + timedelta(days=1)
    with pytest.raises(NoTrainingDataError, match=f"from {later} on .*newest day is {newest}"):
        load_training_data(store, since=later)


def test_only_true_labels_are_evaluated(tmp_path: Path) -> None:
    store = write_fleet_store(tmp_path / "store")
    data = load_training_data(store)
    # The dataset says nothing about 60 of the latest rows: they must not be judged at all.
    latest = data.rows.sort(TIMESTAMP, descending=True).head(60)
    store.write_table(
        POINT_LABELS_PATH,
        pa.Table.from_pylist(
            [
                {"instance_id": i, "timestamp": t, "label": None, "split": "test"}
                for i, t in latest.select("instance_id", TIMESTAMP).iter_rows()
            ],
            schema=POINT_LABELS_SCHEMA,
        ),
    )
    summary = run_training(store, small_config(), None, tmp_path / "run")
    assert summary.split_sizes["test_with_true_labels"] == 300
    assert summary.evaluations["xgboost"].metrics.rows == 300
    assert summary.isolation_forest.rows == 300


def test_an_empty_store_is_a_clear_error(tmp_path: Path) -> None:
    store = ObjectStore.from_uri(str(tmp_path / "store"))
    with pytest.raises(NoTrainingDataError, match="run the feature job"):
        run_training(store, small_config(), None, tmp_path / "run")
    write_dataset_info(store, DatasetInfo(name="synthetic", metrics=METRICS))
    empty = compute_features(fleet_frames(instances=1, minutes=60)[0], METRICS).head(0)
    store.write_table(features_path(START.date()), empty.to_arrow())
    with pytest.raises(NoTrainingDataError, match="no rows"):
        run_training(store, small_config(), None, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_all_normal_labels_are_a_clear_error(tmp_path: Path) -> None:
    store = write_fleet_store(tmp_path / "store")
    store.write_table(INCIDENTS_PATH, INCIDENTS_SCHEMA.empty_table())
    with pytest.raises(InsufficientLabelsError, match="0 anomalies"):
        run_training(store, small_config(), None, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def _store_with_a_late_incident_only(path: Path) -> ObjectStore:
    store = write_fleet_store(path)
    # Only the test part (the latest 60 minutes) keeps an incident.
    late = {
        "start": START + timedelta(minutes=570),
        "end": START + timedelta(minutes=580),
        "incident_type": "service_outage",
        "metrics": METRICS,
    }
    instances = pl.DataFrame(store.read_table(INCIDENTS_PATH))["instance_id"].unique()
    store.write_table(
        INCIDENTS_PATH,
        pa.Table.from_pylist(
            [{"instance_id": i, **late} for i in instances], schema=INCIDENTS_SCHEMA
        ),
    )
    return store


def test_training_labels_of_a_single_class_are_a_clear_error(tmp_path: Path) -> None:
    store = _store_with_a_late_incident_only(tmp_path / "store")
    with pytest.raises(SingleClassError, match="training labels are all normal"):
        run_training(store, small_config(labels={"known_fraction": 1.0}), None, tmp_path / "run")


def test_without_a_human_anomaly_the_unsupervised_top_rows_stand_in(tmp_path: Path) -> None:
    store = _store_with_a_late_incident_only(tmp_path / "store")
    summary = run_training(
        store, small_config(labels={"known_fraction": 0.05}), None, tmp_path / "run"
    )
    mix = summary.label_mix
    assert mix.anomalies["original"] == mix.anomalies["review"] == 0
    # 1 % of the unlabelled trainable rows
    assert 0 < mix.anomalies["unsupervised"] <= 0.01 * 3240
    assert any("no human-labelled anomaly" in note for note in summary.notes)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_features_are_a_clear_error(tmp_path: Path, bad: float) -> None:
    store = write_fleet_store(tmp_path / "store")
    key = features_path(START.date())
    frame = pl.DataFrame(store.read_table(key))
    broken = frame.with_columns(
        pl.when(pl.int_range(pl.len()) == 3)
        .then(pl.lit(bad, pl.Float32))
        .otherwise(pl.col("latency_mean_15"))
        .alias("latency_mean_15")
    )
    store.write_table(key, broken.to_arrow())
    with pytest.raises(ValueError, match=r"latency_mean_15 \(1 rows\)"):
        run_training(store, small_config(), None, tmp_path / "run")


def test_features_missing_contract_columns_are_a_clear_error(tmp_path: Path) -> None:
    store = write_fleet_store(tmp_path / "store")
    key = features_path(START.date())
    store.write_table(key, store.read_table(key).drop_columns(["cpu_utilization_lag_5"]))
    with pytest.raises(ValueError, match="cpu_utilization_lag_5"):
        run_training(store, small_config(), None, tmp_path / "run")


def test_cross_validation_scores_folds_on_human_labels_only(
    fleet_store: ObjectStore, tmp_path: Path
) -> None:
    summary = run_training(fleet_store, small_config(split={"cv_folds": 3}), None, tmp_path / "run")
    folds = summary.cross_validation
    assert folds is not None
    assert len(folds) == 3
    judged = [fold for fold in folds if fold is not None]
    assert judged
    human = sum(
        summary.label_mix.anomalies[s] + summary.label_mix.normals[s]
        for s in ("original", "review")
    )
    assert sum(fold.rows for fold in judged) <= human


@pytest.mark.slow
def test_dask_engine_gives_the_same_quality(
    trained: tuple[TrainingSummary, RunDirectory], fleet_store: ObjectStore, tmp_path: Path
) -> None:
    local, _ = trained
    config = small_config(engine="dask", dask={"chunk_rows": 1000, "catboost_sample_rows": 1500})
    summary = run_training(fleet_store, config, None, tmp_path / "run")
    # Isolation Forest scoring is row by row: the same labels reach the models.
    assert summary.label_mix == local.label_mix
    for kind in ("xgboost", "catboost"):
        assert summary.evaluations[kind].metrics.f1 == pytest.approx(
            local.evaluations[kind].metrics.f1, abs=0.1
        )
        assert summary.evaluations[kind].passed_gates
    assert any("CatBoost trained on a stratified sample" in note for note in summary.notes)
    assert "stratified sample" in (tmp_path / "run" / "report" / "report.html").read_text()
