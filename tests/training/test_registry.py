"""Registration against a real MLflow server: gates, aliases, reload by alias, retries."""

import json
import os
import shutil
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import mlflow
import mlflow.catboost
import mlflow.pyfunc
import mlflow.xgboost
import numpy as np
import pandas as pd
import polars as pl
import pytest
import xgboost as xgb
from mlflow import MlflowClient

from contracts.detector import FittedDetector
from contracts.features import TIME_FEATURES, feature_columns
from contracts.serving import REFERENCE_ARTIFACT, SUMMARY_ARTIFACT
from contracts.store import ObjectStore
from tests.training.conftest import METRICS, small_config, write_fleet_store
from training.models import predict_proba
from training.pipeline import run_training
from training.registry import RegistrationError, drop_duplicate_versions, register_run
from training.run_directory import (
    RunDirectory,
    TrainingSummary,
    load_detector,
    load_holdout,
    score_column,
)
from vigil.processes import free_port, start_mlflow

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("mlflow")]

NO_GATES = {"min_f1": 0.0, "min_precision": 0.0}
# Two-tree stumps: clearly worse than the default models on the same holdout.
WEAK = {
    "xgboost": {"max_depth": 1, "n_estimators": 2, "learning_rate": 0.05},
    "catboost": {"depth": 1, "iterations": 2, "learning_rate": 0.05},
    "gates": NO_GATES,
}


@pytest.fixture(scope="module")
def runs(fleet_store: ObjectStore, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Trained, unregistered run directories; tests register copies of them."""
    root = tmp_path_factory.mktemp("runs")
    # Weak and strong compare at the thresholds their own reviewed labels chose. The failing
    # run's fixed threshold of 0.5 sits far below the reviewed ones (~0.9 on this rank-based
    # served score), so its precision cannot reach the gates.
    configs = {
        "weak": small_config(**WEAK),
        "strong": small_config(gates=NO_GATES),
        "failing": small_config(threshold=0.5, gates={"min_f1": 0.99, "min_precision": 0.99}),
    }
    for name, config in configs.items():
        run_training(fleet_store, config, None, root / name)
    return {name: root / name for name in configs}


def _copy(run: Path, tmp_path: Path, name: str) -> Path:
    return Path(shutil.copytree(run, tmp_path / name))


def _experiments(client: MlflowClient) -> list[str]:
    return [experiment.experiment_id for experiment in client.search_experiments()]


def _aliases(client: MlflowClient) -> dict[str, str]:
    found = {}
    for name in ("xgboost_anomaly", "catboost_anomaly"):
        for alias, version in client.get_registered_model(name).aliases.items():
            found[alias] = f"{name}/{version}"
    return found


def test_aliases_move_only_to_better_models_that_pass_their_gates(
    runs: dict[str, Path], tracking_uri: str, tmp_path: Path
) -> None:
    client = MlflowClient(tracking_uri)
    weak = register_run(_copy(runs["weak"], tmp_path, "weak"), tracking_uri)
    # the first passing run takes both aliases, its two models as a pair
    assert set(weak.aliases) == {"champion", "challenger"}
    assert set(weak.aliases.values()) == {"catboost_anomaly/1", "xgboost_anomaly/1"}

    strong = register_run(_copy(runs["strong"], tmp_path, "strong"), tracking_uri)
    # the better run's pair replaces the weaker run's pair
    assert set(strong.aliases.values()) == {"xgboost_anomaly/2", "catboost_anomaly/2"}
    assert _aliases(client) == strong.aliases

    again = register_run(_copy(runs["weak"], tmp_path, "weak-again"), tracking_uri)
    assert again.versions == {"xgboost_anomaly": "3", "catboost_anomaly": "3"}
    assert again.aliases == strong.aliases
    assert "unchanged" in again.decision

    failing = register_run(_copy(runs["failing"], tmp_path, "failing"), tracking_uri)
    assert failing.aliases == strong.aliases
    tags = client.get_run(failing.run_id).data.tags
    assert tags["gates"] == "failed"
    version = client.get_model_version("xgboost_anomaly", failing.versions["xgboost_anomaly"])
    assert version.tags["gates"].startswith("failed: f1")
    assert _aliases(client) == strong.aliases


def test_champion_reloads_by_alias_and_reproduces_the_test_probabilities(
    runs: dict[str, Path], tracking_uri: str, tmp_path: Path
) -> None:
    run_path = _copy(runs["strong"], tmp_path, "strong")
    register_run(run_path, tracking_uri)
    detector = load_detector(RunDirectory(run_path))
    names = detector.input_names
    features, _ = load_holdout(RunDirectory(run_path), detector.feature_names)
    inputs = detector.inputs(features)
    holdout = pl.read_parquet(RunDirectory(run_path).holdout)

    client = MlflowClient(tracking_uri)
    for alias, holder in _aliases(client).items():
        name = holder.split("/")[0]
        kind = "xgboost" if name == "xgboost_anomaly" else "catboost"
        flavour = mlflow.xgboost if kind == "xgboost" else mlflow.catboost
        model = flavour.load_model(f"models:/{name}@{alias}")
        probabilities = predict_proba(model, inputs)
        expected = holdout[score_column(kind)].to_numpy()
        assert np.array_equal(detector.score(name, probabilities, inputs), expected), alias
        info = mlflow.models.get_model_info(f"models:/{name}@{alias}")
        assert info.signature.inputs.input_names() == names

    booster = mlflow.xgboost.load_model("models:/xgboost_anomaly/1")
    assert isinstance(booster, xgb.Booster)
    assert booster.feature_names == names
    frame = pl.DataFrame(inputs, schema=names, orient="row").to_pandas()
    served = mlflow.pyfunc.load_model("models:/xgboost_anomaly/1").predict(frame)
    assert np.array_equal(np.asarray(served), predict_proba(booster, inputs))


def test_run_logs_metrics_params_and_artifacts_for_the_scorer(
    runs: dict[str, Path], tracking_uri: str, tmp_path: Path
) -> None:
    run_path = _copy(runs["strong"], tmp_path, "strong")
    result = register_run(run_path, tracking_uri)
    client = MlflowClient(tracking_uri)
    run = client.get_run(result.run_id)
    summary = TrainingSummary.model_validate_json((run_path / SUMMARY_ARTIFACT).read_text())
    assert run.data.metrics["xgboost.f1"] == pytest.approx(
        summary.evaluations["xgboost"].metrics.f1
    )
    assert run.data.metrics["review.asked"] == summary.label_budget.asked
    assert run.data.params["xgboost.max_depth"] == "4"
    assert run.data.tags["dataset"] == "synthetic"
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == "vigil-anomaly-training"

    download = Path(
        mlflow.artifacts.download_artifacts(run_id=result.run_id, dst_path=str(tmp_path / "dl"))
    )
    detector = FittedDetector.load(download / "detector.npz")
    assert detector.feature_names == feature_columns(METRICS)
    assert json.loads((download / "features.json").read_text()) == detector.input_names
    reference = json.loads((download / REFERENCE_ARTIFACT).read_text())
    assert set(reference["features"]) == set(feature_columns(METRICS)) - set(TIME_FEATURES)
    assert (download / "report" / "report.html").exists()
    assert (download / "report" / "roc.png").exists()
    assert (download / "config.yaml").exists()


def test_registration_survives_mlflow_being_down(
    fleet_store: ObjectStore, tracking_uri: str, tmp_path: Path
) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    run_path = tmp_path / "run"
    summary = run_training(fleet_store, small_config(threshold=0.5, gates=NO_GATES), down, run_path)
    assert summary.registration is None
    assert summary.registration_error is not None
    assert "unreachable" in summary.registration_error
    assert f"vigil register {run_path}" in summary.registration_error
    assert RunDirectory(run_path).model_path("xgboost").exists()
    with pytest.raises(RegistrationError, match="unreachable"):
        register_run(run_path, down)

    result = register_run(run_path, tracking_uri)
    assert set(result.aliases.values()) == {"xgboost_anomaly/1", "catboost_anomaly/1"}
    # Registering the same directory again does not log a second run.
    assert register_run(run_path, tracking_uri) == result


def test_a_changed_feature_set_is_refused_unless_replacing(
    runs: dict[str, Path], tracking_uri: str, tmp_path: Path
) -> None:
    register_run(_copy(runs["strong"], tmp_path, "strong"), tracking_uri)
    # A fleet that reports CPU only: fewer features than the registered models expect.
    cpu_only = write_fleet_store(tmp_path / "store", metrics=["CPUUtilization"])
    run_path = tmp_path / "cpu-only"
    summary = run_training(cpu_only, small_config(gates=NO_GATES), tracking_uri, run_path)
    assert summary.registration is None
    assert summary.registration_error is not None
    assert "missing ['latency'" in summary.registration_error
    client = MlflowClient(tracking_uri)
    assert set(client.get_registered_model("xgboost_anomaly").aliases.values()) == {"1"}
    assert len(client.search_model_versions("name = 'xgboost_anomaly'")) == 1  # nothing logged

    result = register_run(run_path, tracking_uri, replace_on_feature_change=True)
    cpu_features = feature_columns(["CPUUtilization"])
    assert set(result.aliases.values()) == {"xgboost_anomaly/2", "catboost_anomaly/2"}
    for alias, holder in result.aliases.items():
        name = holder.split("/")[0]
        info = mlflow.models.get_model_info(f"models:/{name}@{alias}")
        assert info.signature.inputs.input_names()[: len(cpu_features)] == cpu_features


def test_a_version_duplicated_by_a_retried_create_is_dropped(
    runs: dict[str, Path], tracking_uri: str, tmp_path: Path
) -> None:
    """The state a lost ``create`` answer leaves behind: two versions from one run and source.
    Reconciling keeps the first, which the aliases point to, and deletes the other."""
    client = MlflowClient(tracking_uri)
    result = register_run(_copy(runs["strong"], tmp_path, "strong"), tracking_uri)
    first = client.get_model_version("xgboost_anomaly", "1")
    retried = client.create_model_version(
        "xgboost_anomaly",
        first.source,
        first.run_id,
        model_id=first.source.removeprefix("models:/"),
    )
    assert retried.version == "2"

    assert drop_duplicate_versions(client, "xgboost_anomaly", result.run_id) == "1"
    assert drop_duplicate_versions(client, "catboost_anomaly", result.run_id) == "1"

    remaining = client.search_model_versions("name = 'xgboost_anomaly'")
    assert [version.version for version in remaining] == ["1"]
    assert _aliases(client) == result.aliases


def test_mlflow_restarted_during_registration_loses_nothing(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    """Drill: MLflow is killed once the first model version exists and comes back on the same
    port; the registration resumes its own MLflow run, and every model is there once and usable."""
    root = tmp_path / "mlflow"
    root.mkdir()
    port = free_port()
    server = start_mlflow(root, tmp_path, detach=True, port=port)
    run_path = _copy(runs["strong"], tmp_path, "strong")
    client = MlflowClient(server.url)
    with ThreadPoolExecutor(1) as pool:
        registering = pool.submit(register_run, run_path, server.url)
        while not client.search_model_versions() and not registering.done():
            time.sleep(0.02)
        assert not registering.done(), "registration finished before the drill could kill MLflow"
        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait()
        restarted = start_mlflow(root, tmp_path, detach=True, port=port)
        try:
            result = registering.result(timeout=600)
            assert set(_aliases(client).values()) == {"xgboost_anomaly/1", "catboost_anomaly/1"}
            assert result.aliases == _aliases(client)
            for name in ("xgboost_anomaly", "catboost_anomaly"):
                assert len(client.search_model_versions(f"name = '{name}'")) == 1
            assert [
                run.info.run_id for run in client.search_runs(["0", *_experiments(client)])
            ] == [result.run_id]
            assert not RunDirectory(run_path).registration_attempt.exists()
            mlflow.set_tracking_uri(restarted.url)
            detector = load_detector(RunDirectory(run_path))
            rows, _ = load_holdout(RunDirectory(run_path), detector.feature_names)
            champion = mlflow.pyfunc.load_model("models:/xgboost_anomaly/1")
            frame = pd.DataFrame(detector.inputs(rows), columns=detector.input_names)
            assert len(champion.predict(frame))
            assert register_run(run_path, restarted.url) == result  # recorded, not redone
        finally:
            os.killpg(restarted.process.pid, signal.SIGTERM)
            restarted.process.wait()
