"""Fixtures for the training tests: a small labelled fleet, a run trained on it, an exported
review queue and a real MLflow server."""

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from mlflow import MlflowClient
from numpy.typing import NDArray

from contracts.dataset import DatasetInfo, write_dataset_info
from contracts.features import TIMESTAMP, compute_features
from contracts.labels import INCIDENTS_SCHEMA
from contracts.layout import INCIDENTS_PATH, features_path
from contracts.store import ObjectStore
from training.config import TrainingConfig
from training.models import predict_proba
from training.pipeline import run_training
from training.registry import REGISTERED_NAMES
from training.review_export import export_review
from training.run_directory import RunDirectory, TrainingSummary, load_detector, load_model
from vigil.processes import ServerProcess

METRICS = ["CPUUtilization", "Latency"]
START = datetime(2024, 1, 1, 20, 0, tzinfo=UTC)


def fleet_frames(
    instances: int = 6, minutes: int = 600, seed: int = 0, incidents_per_instance: int = 6
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A small fleet's wide telemetry and its incidents.

    Each instance has a slow CPU wave plus noise. Incidents last 5 to 15 minutes, one in each
    stretch of the period (so every split part holds some); during one, CPU jumps by 35
    points, latency triples and errors appear in the logs.
    """
    rng = np.random.default_rng(seed)
    wide, incidents = [], []
    step = np.arange(minutes)
    for index in range(instances):
        instance = f"i-{index:04d}"
        cpu = 30 + 10 * np.sin(step / 90 + index) + rng.normal(0, 2, minutes)
        latency = 120 + rng.normal(0, 8, minutes)
        errors = rng.poisson(0.2, minutes).astype(float)
        slots = np.arange(incidents_per_instance) + rng.uniform(0.1, 0.7, incidents_per_instance)
        for first in (slots * (minutes - 20) / incidents_per_instance).astype(int):
            length = int(rng.integers(5, 16))
            cpu[first : first + length] += 35
            latency[first : first + length] *= 3
            errors[first : first + length] += rng.poisson(6, length)
            incidents.append(
                {
                    "instance_id": instance,
                    "start": START + timedelta(minutes=int(first)),
                    "end": START + timedelta(minutes=int(first + length - 1)),
                    "incident_type": "resource_exhaustion",
                    "metrics": METRICS,
                }
            )
        wide.append(
            pl.DataFrame(
                {
                    "instance_id": instance,
                    TIMESTAMP: [START + timedelta(minutes=int(m)) for m in step],
                    "CPUUtilization": np.clip(cpu, 0, 100),
                    "Latency": latency,
                    "error_count": errors,
                    "log_count": errors + 4,
                }
            ).with_columns(pl.col(TIMESTAMP).cast(pl.Datetime("ms", "UTC")))
        )
    return pl.concat(wide), pl.DataFrame(incidents)


def write_fleet_store(root: Path, metrics: list[str] = METRICS) -> ObjectStore:
    """A store holding the fleet's features (one file per UTC day) and incidents."""
    store = ObjectStore.from_uri(str(root))
    wide, incidents = fleet_frames()
    write_dataset_info(store, DatasetInfo(name="synthetic", metrics=metrics))
    features = compute_features(wide, metrics)
    for (day,), part in features.group_by(pl.col(TIMESTAMP).dt.date()):
        assert isinstance(day, date)
        store.write_table(features_path(day), part.to_arrow())
    store.write_table(
        INCIDENTS_PATH, pa.Table.from_pylist(incidents.to_dicts(), schema=INCIDENTS_SCHEMA)
    )
    return store


@pytest.fixture(scope="session")
def fleet_store(tmp_path_factory: pytest.TempPathFactory) -> ObjectStore:
    """A read-only labelled fleet: 6 instances × 600 minutes, 36 incidents."""
    return write_fleet_store(tmp_path_factory.mktemp("fleet"))


SMALL: dict[str, dict[str, object]] = {
    "isolation_forest": {"n_estimators": 50},
    "labels": {"known_fraction": 0.3},
    "review": {"simulate_reviewer": True},  # the fixtures' stores hold the true labels
    "xgboost": {"n_estimators": 40},
    "catboost": {"iterations": 40},
    "gates": {"min_f1": 0.6, "min_precision": 0.6},
}


def small_config(**overrides: object) -> TrainingConfig:
    """The default config with small models, 30 % of labels known and easier gates.

    Each keyword is a top-level key: a dict updates that section, anything else replaces it.
    """
    document: dict[str, object] = {name: dict(values) for name, values in SMALL.items()}
    for key, value in overrides.items():
        section = document.get(key)
        if isinstance(value, dict) and isinstance(section, dict):
            section.update(value)
        else:
            document[key] = value
    return TrainingConfig.model_validate(document)


@pytest.fixture(scope="session")
def trained(
    fleet_store: ObjectStore, tmp_path_factory: pytest.TempPathFactory
) -> tuple[TrainingSummary, RunDirectory]:
    """One run of the pipeline on the fleet with ``small_config()``, without MLflow (read-only)."""
    run_path = tmp_path_factory.mktemp("run") / "run"
    return run_training(fleet_store, small_config(), None, run_path), RunDirectory(run_path)


def served_scores(run_dir: RunDirectory, kind: str, features: NDArray[Any]) -> NDArray[Any]:
    """The served score of feature rows: detector inputs → the model → the detector's score."""
    detector = load_detector(run_dir)
    inputs = detector.inputs(features)
    probabilities = predict_proba(load_model(run_dir, kind), inputs)
    return detector.score(REGISTERED_NAMES[kind], probabilities, inputs)


@pytest.fixture
def exported(tmp_path: Path) -> tuple[ObjectStore, Path]:
    """A fresh fleet store with a review queue exported to ``tmp_path / 'review'``."""
    store = write_fleet_store(tmp_path / "store")
    export_review(store, small_config(), tmp_path / "review")
    return store, tmp_path / "review"


@pytest.fixture
def tracking_uri(mlflow_server: ServerProcess) -> str:
    """The shared server's URI, with the registered models of earlier tests deleted."""
    client = MlflowClient(mlflow_server.url)
    for name in REGISTERED_NAMES.values():
        if client.search_registered_models(filter_string=f"name = '{name}'"):
            client.delete_registered_model(name)
    return mlflow_server.url
