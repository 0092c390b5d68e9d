"""One detector: what ``vigil evaluate`` scores on held-out rows is what Vigil serves.

The protocol's run on the vendored SMD slice is registered in a fresh MLflow, the Triton
repository is built from its aliases and served by a real Triton; the held-out feature rows,
turned into model inputs by the scorer's own code (``ServedModels.model_inputs``), get the
probabilities ``vigil evaluate`` measured, and the served threshold is the one it used.
"""

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from contracts.serving import CATBOOST_MODEL, XGBOOST_MODEL
from serving.scorer.inference import InferenceClient
from serving.scorer.served_models import load_served_models
from serving.triton.model_repository import build_repository
from serving.triton.server import TritonPorts
from tests.serving.conftest import SERVED_SCORE_ATOL
from training.models import CATBOOST, XGBOOST
from training.real_evaluation.entity_data import load_entity
from training.real_evaluation.evaluate import FittedEntity, entity_store_path, fit_entity
from training.registry import register_run
from vigil.local_stack import start_triton
from vigil.processes import ServerProcess, free_port, start_mlflow

SLICES = Path(__file__).resolve().parents[1] / "data"
MACHINE = "machine-1-2"

pytestmark = pytest.mark.xdist_group("triton")


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> tuple[FittedEntity, np.ndarray]:
    root = tmp_path_factory.mktemp("evaluated")
    series = load_entity("smd", SLICES / "smd", MACHINE, entity_store_path(root, "smd", MACHINE))
    fitted = fit_entity(series, 0.02, root / "run")
    return fitted, series.features[fitted.held_out]


@pytest.fixture(scope="module")
def own_mlflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """An MLflow of this module's own: the session's registry is read live by other tests."""
    root = tmp_path_factory.mktemp("mlflow-evaluated")
    server = start_mlflow(root, root)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def served(
    evaluated: tuple[FittedEntity, np.ndarray],
    own_mlflow: ServerProcess,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, TritonPorts]]:
    fitted, _ = evaluated
    registration = register_run(fitted.run_dir.path, own_mlflow.url)
    assert registration.aliases, registration
    repository = tmp_path_factory.mktemp("evaluated-repo") / "repository"
    build_repository(own_mlflow.url, str(repository))
    ports = TritonPorts(http=free_port(), grpc=free_port(), metrics=free_port())
    triton = start_triton(repository, ports, tmp_path_factory.mktemp("evaluated-triton"))
    yield own_mlflow.url, ports
    triton.stop()


def test_served_models_return_the_scores_vigil_evaluate_measured(
    evaluated: tuple[FittedEntity, np.ndarray], served: tuple[str, TritonPorts]
) -> None:
    fitted, held_out_features = evaluated
    tracking_uri, ports = served
    models = load_served_models(tracking_uri)
    inputs = models.model_inputs(held_out_features)
    client = InferenceClient(f"127.0.0.1:{ports.grpc}", "grpc")
    for kind, model in ((XGBOOST, XGBOOST_MODEL), (CATBOOST, CATBOOST_MODEL)):
        answer = client.infer(model, inputs, MACHINE)
        served = models.scores(answer.model, answer.probabilities, inputs)
        np.testing.assert_allclose(served, fitted.scores[kind], rtol=0, atol=SERVED_SCORE_ATOL)
    thresholds = {arm.model: arm.threshold for arm in models.arms.values()}
    assert thresholds[XGBOOST_MODEL] == pytest.approx(fitted.thresholds[XGBOOST])
    # The evaluation found the slice's held-out incident with what is served.
    assert fitted.scores[XGBOOST].max() >= fitted.thresholds[XGBOOST]
