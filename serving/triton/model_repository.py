"""The Triton model repository, built from the model versions MLflow's aliases point at.

For each alias (``champion``, ``challenger``) the registered model holding it is read from
MLflow with its flavour and signature, and written as a Triton model named after it::

    xgboost_anomaly/config.pbtxt         backend "fil", model_type xgboost_json
    xgboost_anomaly/<version>/xgboost.json
    catboost_anomaly/config.pbtxt        backend "onnxruntime"
    catboost_anomaly/<version>/model.onnx   CatBoost's ONNX export, ZipMap removed
    repository.json                      this build's summary (Triton loads folders only)

The champion may be either kind; the kind is the MLflow flavour, not the alias. The
destination is a local directory or ``s3://bucket/prefix`` (what Triton's
``--model-repository`` takes in production). Each model's artifact is written before its
config, and every write is atomic, so a Triton polling the repository never loads a config
whose version is not there yet.
"""

import json
import tempfile
from pathlib import Path
from typing import Literal

import mlflow.artifacts
import mlflow.catboost
import mlflow.xgboost
import xgboost as xgb
from mlflow import MlflowClient
from mlflow.models import Model
from pydantic import BaseModel, ConfigDict

from contracts.mlflow_registry import alias_holders
from contracts.serving import CHAMPION, MODEL_NAMES, REPOSITORY_SUMMARY
from contracts.store import ObjectStore
from serving.triton.config import (
    FIL_BACKEND,
    ONNXRUNTIME_BACKEND,
    BatchingOptions,
    model_config,
    to_pbtxt,
)
from serving.triton.onnx_export import catboost_to_onnx

Flavor = Literal["xgboost", "catboost"]
CONFIG_FILE = "config.pbtxt"
ARTIFACT_FILES: dict[Flavor, str] = {"xgboost": "xgboost.json", "catboost": "model.onnx"}
BACKENDS: dict[Flavor, str] = {"xgboost": FIL_BACKEND, "catboost": ONNXRUNTIME_BACKEND}
# FIL returns the positive-class probability of a binary classifier as one column.
FIL_PARAMETERS = {"model_type": "xgboost_json", "output_class": "true", "predict_proba": "true"}
BINARY_OBJECTIVE = "binary:logistic"


class RepositoryBuildError(RuntimeError):
    """The registry does not hold what a model repository needs; nothing was written."""


class ServedModel(BaseModel):
    """One model in the repository and the alias that put it there."""

    model_config = ConfigDict(extra="forbid")

    name: str
    version: int
    alias: str
    flavor: Flavor
    backend: str
    artifact: str  # key relative to the repository root


class RepositorySummary(BaseModel):
    """What a build wrote, and from where."""

    model_config = ConfigDict(extra="forbid")

    uri: str
    tracking_uri: str
    feature_names: list[str]
    models: list[ServedModel]

    def model_for(self, alias: str) -> ServedModel | None:
        return next((model for model in self.models if model.alias == alias), None)


def build_repository(
    tracking_uri: str,
    destination: str,
    *,
    batching: BatchingOptions | None = None,
    endpoint_url: str | None = None,
    region: str = "us-east-1",
) -> RepositorySummary:
    """Write the Triton model repository for the models holding ``champion`` and ``challenger``.

    Args:
        tracking_uri: the MLflow tracking server (``http://host:port``) or another MLflow URI.
        destination: a local directory or ``s3://bucket/prefix``.
        batching: max batch size, dynamic batching delay and instance count of every model.
        endpoint_url: an S3 API endpoint other than AWS's (an emulator in tests).
        region: the S3 region.

    Returns:
        The models written (name, version, alias, flavour, artifact key) and their features.

    Raises:
        RepositoryBuildError: no model holds ``champion``, the models' features differ, or a
            model is of a kind Triton is not configured for here; nothing is written then.
    """
    batching = batching or BatchingOptions()
    client = MlflowClient(tracking_uri)
    holders = _alias_holders(client, tracking_uri)
    with tempfile.TemporaryDirectory(prefix="vigil-repo-") as tmp:
        exports = [
            _export(client, tracking_uri, alias, name, version, Path(tmp) / alias)
            for alias, (name, version) in holders.items()
        ]
    features = {tuple(export.features) for export in exports}
    if len(features) != 1:
        described = {f"{e.model.name}/{e.model.version}": len(e.features) for e in exports}
        raise RepositoryBuildError(
            f"the alias holders expect different features (feature counts {described}); "
            "the A/B router sends the same rows to both, so retrain and register both"
        )
    store = ObjectStore.from_uri(destination, endpoint_url=endpoint_url, region=region)
    feature_names = list(features.pop())
    for export in exports:
        model = export.model
        config = model_config(
            model.name,
            model.backend,
            model.version,
            len(feature_names),
            batching,
            ARTIFACT_FILES[model.flavor],
            FIL_PARAMETERS if model.flavor == "xgboost" else None,
        )
        store.write_bytes(model.artifact, export.artifact)
        store.write_bytes(f"{model.name}/{CONFIG_FILE}", to_pbtxt(config).encode())
    summary = RepositorySummary(
        uri=destination,
        tracking_uri=tracking_uri,
        feature_names=feature_names,
        models=[export.model for export in exports],
    )
    store.write_bytes(REPOSITORY_SUMMARY, summary.model_dump_json(indent=2).encode())
    return summary


def read_summary(store: ObjectStore) -> RepositorySummary:
    """The summary a build left at the repository root."""
    return RepositorySummary.model_validate_json(store.read_bytes(REPOSITORY_SUMMARY))


class _Export(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    model: ServedModel
    features: list[str]
    artifact: bytes


def _alias_holders(client: MlflowClient, tracking_uri: str) -> dict[str, tuple[str, int]]:
    """The serving alias holders; a champion is required."""
    holders = alias_holders(client)
    if CHAMPION not in holders:
        raise RepositoryBuildError(
            f"no model in {list(MODEL_NAMES)} holds the alias {CHAMPION!r} in MLflow at "
            f"{tracking_uri}; train and register models first"
        )
    return holders


def _export(
    client: MlflowClient, tracking_uri: str, alias: str, name: str, version: int, workdir: Path
) -> _Export:
    """Download one model version and turn it into its Triton artifact."""
    local = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=client.get_model_version_download_uri(name, str(version)),
            dst_path=str(workdir),
            tracking_uri=tracking_uri,
        )
    )
    logged = Model.load(str(local))
    label = f"{name}/{version} ({alias})"
    if logged.signature is None:
        raise RepositoryBuildError(f"{label} has no signature: its feature list is unknown")
    features = logged.signature.inputs.input_names()
    flavor: Flavor
    if "xgboost" in logged.flavors:
        flavor = "xgboost"
        artifact = _xgboost_json(mlflow.xgboost.load_model(str(local)), label)
    elif "catboost" in logged.flavors:
        flavor = "catboost"
        artifact = catboost_to_onnx(mlflow.catboost.load_model(str(local)))
    else:
        raise RepositoryBuildError(
            f"{label} has flavours {sorted(logged.flavors)}; serving knows xgboost and catboost"
        )
    served = ServedModel(
        name=name,
        version=version,
        alias=alias,
        flavor=flavor,
        backend=BACKENDS[flavor],
        artifact=f"{name}/{version}/{ARTIFACT_FILES[flavor]}",
    )
    return _Export(model=served, features=[str(f) for f in features], artifact=artifact)


def _xgboost_json(model: xgb.Booster | xgb.XGBModel, label: str) -> bytes:
    booster = model.get_booster() if isinstance(model, xgb.XGBModel) else model
    objective = json.loads(booster.save_config())["learner"]["objective"]["name"]
    if objective != BINARY_OBJECTIVE:
        raise RepositoryBuildError(
            f"{label} has objective {objective!r}; FIL serves its output as the anomaly "
            f"probability only for {BINARY_OBJECTIVE!r}"
        )
    return bytes(booster.save_raw(raw_format="json"))
