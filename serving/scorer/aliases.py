"""Which registered model version holds each serving alias in MLflow."""

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from contracts.serving import ALIASES, MODEL_NAMES


def alias_holders(client: MlflowClient) -> dict[str, tuple[str, int]]:
    """alias -> (registered model, version) for the serving aliases that are set, in
    ``ALIASES`` order; a registered model that does not exist yet holds none."""
    holders: dict[str, tuple[str, int]] = {}
    for name in MODEL_NAMES:
        try:
            aliases = client.get_registered_model(name).aliases
        except MlflowException as error:
            if error.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            continue
        for alias, version in aliases.items():
            if alias in ALIASES:
                holders[alias] = (name, int(version))
    return {alias: holders[alias] for alias in ALIASES if alias in holders}
