"""The whole pipeline without MLflow: the summary, honest evaluation, bad input, Dask.

The trained models' behaviour is tested in ``behaviour/``.
"""

from datetime import timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from contracts.dataset import DatasetInfo, write_dataset_info
from contracts.features import TIMESTAMP, compute_features
from contracts.labels import INCIDENTS_SCHEMA, POINT_LABELS_SCHEMA
from contracts.layout import INCIDENTS_PATH, POINT_LABELS_PATH, features_path
from contracts.store import ObjectStore
from tests.training.conftest import (
    METRICS,
    START,
    fleet_frames,
    served_scores,
    small_config,
    write_fleet_store,
)
from training.data import InsufficientLabelsError, NoTrainingDataError, load_training_data
from training.models import SingleClassError
from training.pipeline import run_training
from training.run_directory import (
    RunDirectory,
    TrainedRun,
    TrainingSummary,
    load_detector,
    load_holdout,
    score_column,
)


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


def test_saved_models_reproduce_the_test_scores(
    trained: tuple[TrainingSummary, RunDirectory],
) -> None:
    _, run_dir = trained
    holdout = pl.read_parquet(run_dir.holdout)
    features, _ = load_holdout(run_dir, load_detector(run_dir).feature_names)
    for kind in ("xgboost", "catboost"):
        expected = holdout[score_column(kind)].to_numpy()
        assert np.array_equal(served_scores(run_dir, kind, features), expected)


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
