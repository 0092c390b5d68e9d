"""Fixtures for the serving tests: models trained and registered in a real MLflow, the Triton
model repository built from their aliases, and a real Triton serving that repository.

Every fixture here is session-scoped (one registration, one build, one server per test
worker); tests using them are in the ``triton`` xdist group so they share one worker.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow.catboost
import mlflow.xgboost
import numpy as np
import pytest
import xgboost as xgb
from mlflow import MlflowClient
from numpy.typing import NDArray

from contracts.detector import FittedDetector
from contracts.serving import CATBOOST_MODEL, XGBOOST_MODEL
from contracts.store import ObjectStore
from serving.router.nginx import RouterConfig
from serving.triton.config import BatchingOptions
from serving.triton.model_repository import RepositorySummary, build_repository
from serving.triton.server import TritonPorts
from tests.training.conftest import small_config, write_fleet_store
from training.pipeline import run_training
from training.registry import REGISTERED_NAMES
from training.run_directory import RunDirectory, load_detector, load_holdout
from vigil.local_stack import local_router_config, start_router, start_triton
from vigil.processes import ServerProcess, free_port

# A long batching window: concurrent test requests are sure to share a batch.
BATCHING = BatchingOptions(
    max_batch_size=1024, max_queue_delay_microseconds=20_000, instance_count=2
)
NO_GATES = {"min_f1": 0.0, "min_precision": 0.0}
# How far a served score computed from Triton's answer may sit from the same score computed in
# this process: CatBoost's ONNX twin differs from CatBoost in the last float32 bits of a
# probability (7.4e-8), and the score's quantile of that probability is steep where many
# trained rows share nearly one probability (measured: up to 3.2e-5).
SERVED_SCORE_ATOL = 1e-4

Predict = Callable[[NDArray[np.float32]], NDArray[np.float64]]


@dataclass(frozen=True)
class Registered:
    """Models registered in MLflow by one training run, and that run's holdout rows."""

    tracking_uri: str
    feature_names: list[str]  # the models' inputs (the detector's input_names)
    rows: NDArray[np.float32]  # holdout rows as model inputs
    detector: FittedDetector  # the run's: feature rows → model inputs → served score
    store: ObjectStore  # the fleet the models were trained on: features and incidents


@dataclass(frozen=True)
class Repository:
    path: Path
    summary: RepositorySummary


@pytest.fixture(scope="session")
def registered(
    mlflow_server: ServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Registered:
    """Both models trained on the small fleet and registered with aliases."""
    client = MlflowClient(mlflow_server.url)
    for name in REGISTERED_NAMES.values():
        if client.search_registered_models(filter_string=f"name = '{name}'"):
            client.delete_registered_model(name)
    root = tmp_path_factory.mktemp("serving-run")
    store = write_fleet_store(root / "fleet")
    run_path = root / "run"
    summary = run_training(store, small_config(gates=NO_GATES), mlflow_server.url, run_path)
    assert summary.registration is not None, summary.registration_error
    detector = load_detector(RunDirectory(run_path))
    features, _ = load_holdout(RunDirectory(run_path), detector.feature_names)
    return Registered(
        tracking_uri=mlflow_server.url,
        feature_names=detector.input_names,
        rows=detector.inputs(features),
        detector=detector,
        store=store,
    )


@pytest.fixture(scope="session")
def repository(registered: Registered, tmp_path_factory: pytest.TempPathFactory) -> Repository:
    path = tmp_path_factory.mktemp("serving") / "repository"
    summary = build_repository(registered.tracking_uri, str(path), batching=BATCHING)
    return Repository(path, summary)


@pytest.fixture(scope="session")
def in_process(registered: Registered, repository: Repository) -> dict[str, Predict]:
    """Each served model's probabilities computed in this process from MLflow's copy."""
    mlflow.set_tracking_uri(registered.tracking_uri)
    versions = {model.name: model.version for model in repository.summary.models}
    booster = mlflow.xgboost.load_model(f"models:/{XGBOOST_MODEL}/{versions[XGBOOST_MODEL]}")
    catboost = mlflow.catboost.load_model(f"models:/{CATBOOST_MODEL}/{versions[CATBOOST_MODEL]}")
    assert isinstance(booster, xgb.Booster)

    def predict_xgboost(rows: NDArray[np.float32]) -> NDArray[np.float64]:
        dmatrix = xgb.DMatrix(rows, feature_names=registered.feature_names)
        return np.asarray(booster.predict(dmatrix), np.float64)

    def predict_catboost(rows: NDArray[np.float32]) -> NDArray[np.float64]:
        return np.asarray(catboost.predict_proba(rows)[:, 1], np.float64)

    return {XGBOOST_MODEL: predict_xgboost, CATBOOST_MODEL: predict_catboost}


@pytest.fixture(scope="session")
def served_in_process(registered: Registered, in_process: dict[str, Predict]) -> dict[str, Predict]:
    """Each served model's served score of *feature* rows, computed in this process: the
    detector's inputs, the model's probability, the detector's score (what the scorer logs)."""
    detector = registered.detector

    def scorer(model: str) -> Predict:
        def score(features: NDArray[np.float32]) -> NDArray[np.float64]:
            inputs = detector.inputs(features)
            return detector.score(model, in_process[model](inputs), inputs)

        return score

    return {model: scorer(model) for model in in_process}


@pytest.fixture(scope="session")
def triton_ports() -> TritonPorts:
    return TritonPorts(http=free_port(), grpc=free_port(), metrics=free_port())


@pytest.fixture(scope="session")
def triton(
    repository: Repository, triton_ports: TritonPorts, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """The local Triton serving the repository; it answers once every model is loaded."""
    server = start_triton(repository.path, triton_ports, tmp_path_factory.mktemp("triton"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def router_config(repository: Repository, triton_ports: TritonPorts) -> RouterConfig:
    """The A/B router in front of the session's Triton, weighted by the chart's values."""
    return local_router_config(repository.summary, triton_ports)


@pytest.fixture(scope="session")
def ab_router(
    triton: ServerProcess, router_config: RouterConfig, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """nginx on loopback: HTTP A/B endpoint at its url, KServe gRPC on router_config.grpc_port."""
    prefix = tmp_path_factory.mktemp("router")
    server = start_router(router_config, prefix, prefix)
    yield server
    server.stop()
