"""What the scorer needs from MLflow: the alias holders, their thresholds, the detector their
training run fitted (features → model inputs → served score), the reference feature
distributions of that run, and the XGBoost model that explains anomalies.

All read through an ``MlflowClient`` bound to the given tracking URI (never MLflow's
process-wide URI): at start-up, and again whenever the scorer sees an alias move
(``serving.scorer.loop.watch_aliases``).
"""

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow.artifacts
import mlflow.xgboost
import numpy as np
import xgboost as xgb
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import Model
from numpy.typing import NDArray

from contracts.detector import FittedDetector
from contracts.mlflow_registry import alias_holders, download_run_artifact, threshold_of
from contracts.serving import (
    ALIASES,
    CHAMPION,
    DETECTOR_ARTIFACT,
    MODEL_NAMES,
    REFERENCE_ARTIFACT,
    THRESHOLD_TAG,
    XGBOOST_MODEL,
)


class ServedModelsError(RuntimeError):
    """MLflow does not hold what the scorer needs."""


@dataclass(frozen=True)
class Arm:
    """One alias holder: the Triton model that answers for it and its decision threshold."""

    alias: str
    model: str
    version: int
    threshold: float
    run_id: str


@dataclass(frozen=True)
class ServedModels:
    """The arms by alias, the detector both read, the drift reference and the explainer.

    Both arms take the same inputs (the router may send a request to either), so they come
    from one training run (registration moves the aliases as a pair). ``explainer`` is the
    XGBoost alias holder, whose exact TreeSHAP contributions explain an anomaly; None when no
    XGBoost model holds an alias.
    """

    arms: dict[str, Arm]
    detector: FittedDetector
    reference: dict[str, Any]
    explainer: xgb.Booster | None

    @property
    def feature_names(self) -> list[str]:
        """The contract features a window's rows must hold."""
        return self.detector.feature_names

    def model_inputs(self, features: NDArray[Any]) -> NDArray[np.float32]:
        """What the models read for feature rows (``detector.input_names`` columns)."""
        return self.detector.inputs(features)

    def scores(
        self, model: str, probabilities: NDArray[Any], inputs: NDArray[Any]
    ) -> NDArray[np.float64]:
        """The served score of rows ``model`` answered with ``probabilities``."""
        return self.detector.score(model, probabilities, inputs)

    @property
    def champion(self) -> Arm:
        return self.arms[CHAMPION]

    def threshold_of(self, model: str) -> float:
        """The threshold of the arm served by ``model``; the champion's for an unknown name."""
        return (self.arm_of(model) or self.champion).threshold

    def arm_of(self, model: str) -> Arm | None:
        """The arm served by ``model``; None when no alias holder is that model."""
        return next((a for a in self.arms.values() if a.model == model), None)

    @property
    def holders(self) -> dict[str, tuple[str, int]]:
        """alias -> (registered model, version), as ``alias_holders`` reads them from MLflow."""
        return {alias: (arm.model, arm.version) for alias, arm in self.arms.items()}


def load_served_models(tracking_uri: str) -> ServedModels:
    """Read the alias holders and everything the scorer needs about them from MLflow.

    Raises:
        ServedModelsError: no model holds ``champion``, a holder has no threshold tag or
            signature, the holders expect different features, or the champion's run has no
            reference distributions.
    """
    client = MlflowClient(tracking_uri)
    arms: dict[str, Arm] = {}
    features: dict[str, list[str]] = {}
    for alias, (name, version) in alias_holders(client).items():
        details = client.get_model_version(name, str(version))
        if THRESHOLD_TAG not in details.tags:
            raise ServedModelsError(f"{name}/{version} has no {THRESHOLD_TAG!r} tag")
        if not details.run_id:
            raise ServedModelsError(f"{name}/{version} has no training run")
        arms[alias] = Arm(alias, name, int(version), threshold_of(details.tags), details.run_id)
    if CHAMPION not in arms:
        raise ServedModelsError(
            f"no model in {list(MODEL_NAMES)} holds {CHAMPION!r} in MLflow at {tracking_uri}"
        )
    with tempfile.TemporaryDirectory(prefix="vigil-scorer-") as tmp:
        local = {
            alias: _download_model(client, tracking_uri, arm, Path(tmp) / alias)
            for alias, arm in arms.items()
        }
        for alias, path in local.items():
            signature = Model.load(str(path)).signature
            if signature is None:
                raise ServedModelsError(f"{arms[alias].model} has no signature")
            features[alias] = [str(name) for name in signature.inputs.input_names()]
        if len({arm.run_id for arm in arms.values()}) != 1:
            raise ServedModelsError(
                "the alias holders come from different training runs, whose detectors differ; "
                "register one run's models as champion and challenger"
            )
        detector = _detector(tracking_uri, arms[CHAMPION], Path(tmp) / "detector")
        if any(names != detector.input_names for names in features.values()):
            raise ServedModelsError(
                f"{arms[CHAMPION].model}'s signature does not match its run's {DETECTOR_ARTIFACT}"
            )
        explainer = next(
            (
                _booster(mlflow.xgboost.load_model(str(local[alias])))
                for alias in ALIASES
                if alias in arms and arms[alias].model == XGBOOST_MODEL
            ),
            None,
        )
        reference = _reference(tracking_uri, arms[CHAMPION], Path(tmp) / "reference")
    return ServedModels(arms, detector, reference, explainer)


def _download_model(client: MlflowClient, tracking_uri: str, arm: Arm, target: Path) -> Path:
    return Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=client.get_model_version_download_uri(arm.model, str(arm.version)),
            dst_path=str(target),
            tracking_uri=tracking_uri,
        )
    )


def _booster(model: xgb.Booster | xgb.XGBModel) -> xgb.Booster:
    return model.get_booster() if isinstance(model, xgb.XGBModel) else model


def _reference(tracking_uri: str, champion: Arm, target: Path) -> dict[str, Any]:
    path = _run_artifact(
        tracking_uri, champion, REFERENCE_ARTIFACT, target, "drift cannot be measured"
    )
    reference: dict[str, Any] = json.loads(path.read_text())
    return reference


def _detector(tracking_uri: str, arm: Arm, target: Path) -> FittedDetector:
    path = _run_artifact(tracking_uri, arm, DETECTOR_ARTIFACT, target, "rows cannot be scored")
    return FittedDetector.load(path)


def _run_artifact(tracking_uri: str, arm: Arm, name: str, target: Path, consequence: str) -> Path:
    try:
        return download_run_artifact(tracking_uri, arm.run_id, name, target)
    except (MlflowException, OSError) as error:
        raise ServedModelsError(
            f"run {arm.run_id} of {arm.model}/{arm.version} has no {name}: {consequence} ({error})"
        ) from error
