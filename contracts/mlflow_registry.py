"""Reading MLflow's model registry as training leaves it: the aliases of a registered model,
which version holds each serving alias, a version's threshold tag and a run's artefacts.

Training writes these and serving reads them back; both go through the functions here, each
with an ``MlflowClient`` (or tracking URI) of its own, never MLflow's process-wide URI.
"""

from pathlib import Path

import mlflow.artifacts
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from contracts.serving import ALIASES, MODEL_NAMES, THRESHOLD_TAG


def aliases_of(client: MlflowClient, name: str) -> dict[str, str]:
    """alias -> version of a registered model; empty when the model does not exist yet."""
    try:
        aliases = client.get_registered_model(name).aliases
    except MlflowException as error:
        if error.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        return {}
    return {alias: str(version) for alias, version in aliases.items()}


def alias_holders(client: MlflowClient) -> dict[str, tuple[str, int]]:
    """alias -> (registered model, version) for the serving aliases that are set, in
    ``ALIASES`` order; a registered model that does not exist yet holds none."""
    holders: dict[str, tuple[str, int]] = {}
    for name in MODEL_NAMES:
        for alias, version in aliases_of(client, name).items():
            if alias in ALIASES:
                holders[alias] = (name, int(version))
    return {alias: holders[alias] for alias in ALIASES if alias in holders}


def threshold_of(tags: dict[str, str]) -> float:
    """A model version's decision threshold, from its tags.

    Raises:
        KeyError: the version has no threshold tag.
        ValueError: the tag is not a number.
    """
    return float(tags[THRESHOLD_TAG])


def download_run_artifact(tracking_uri: str, run_id: str, name: str, target: Path) -> Path:
    """Download the artefact ``name`` a training run logged into ``target``; its local path.

    Raises:
        MlflowException, OSError: the run has no such artefact, or MLflow did not answer.
    """
    return Path(
        mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=name, dst_path=str(target), tracking_uri=tracking_uri
        )
    )
