"""The A/B report on seeded predictions and feedback, and the promotion it leads to in a real
MLflow."""

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from mlflow import MlflowClient

from contracts.serving import CHALLENGER, CHAMPION
from contracts.store import ObjectStore
from serving.scorer.ab_report import ab_report_from_store, promote_challenger, write_ab_report
from serving.scorer.prediction_log import write_feedback, write_predictions
from serving.scorer.served_models import ServedModels, load_served_models
from tests.serving.conftest import Registered
from tests.training.conftest import START

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("triton")]

WINDOW = timedelta(minutes=5)
WINDOWS = 40
INSTANCES = 50
WEIGHTS = {CHAMPION: 70, CHALLENGER: 30}


@pytest.fixture(scope="module")
def served(registered: Registered) -> ServedModels:
    return load_served_models(registered.tracking_uri)


def _seed(
    store: ObjectStore, served: ServedModels, accuracy: dict[str, float], seed: int = 0
) -> None:
    """Predictions of INSTANCES instances over WINDOWS windows, each labelled.

    70 % of instances are on the champion. A verdict agrees with its label with the arm's
    ``accuracy``; 20 % of labels are anomalies; 1 % of the challenger's requests fail.
    """
    rng = np.random.default_rng(seed)
    champion, challenger = served.arms[CHAMPION].model, served.arms[CHALLENGER].model
    arm_of = {f"i-{i:03d}": champion if i < 0.7 * INSTANCES else challenger for i in range(50)}
    for w in range(WINDOWS):
        start = START + w * WINDOW
        labels = (rng.random(INSTANCES) < 0.2).astype(int)
        rows, feedback = [], []
        for (instance, model), label in zip(arm_of.items(), labels, strict=True):
            failed = model == challenger and rng.random() < 0.01
            right = rng.random() < accuracy[model]
            verdict = label if right else 1 - label
            for minute in range(5):
                rows.append(
                    {
                        "instance_id": instance,
                        "timestamp": start + timedelta(minutes=minute),
                        "window_start": start,
                        "model": model,
                        "model_version": 1,
                        "probability": None if failed else 0.9 if verdict else 0.1,
                        "result": None if failed else verdict if minute == 2 else 0,
                        "latency_seconds": float(rng.gamma(2.0, 0.002)),
                        "error": "unavailable" if failed else None,
                    }
                )
            feedback.append(
                {
                    "instance_id": instance,
                    "window_start": start,
                    "label": int(label),
                    "received_at": start + timedelta(hours=1),
                }
            )
        write_predictions(store, start, pl.DataFrame(rows, infer_schema_length=None))
        write_feedback(store, pl.DataFrame(feedback))


@pytest.fixture
def aliases_restored(registered: Registered) -> Iterator[MlflowClient]:
    client = MlflowClient(registered.tracking_uri)
    before = {
        alias: (model.name, version)
        for model in client.search_registered_models()
        for alias, version in model.aliases.items()
    }
    yield client
    for model in client.search_registered_models():
        for alias in model.aliases:
            client.delete_registered_model_alias(model.name, alias)
    for alias, (name, version) in before.items():
        client.set_registered_model_alias(name, alias, version)


def test_a_clearly_better_challenger_is_promoted(
    served: ServedModels, registered: Registered, aliases_restored: MlflowClient, tmp_path: Path
) -> None:
    store = ObjectStore.from_uri(str(tmp_path / "store"))
    champion, challenger = served.arms[CHAMPION].model, served.arms[CHALLENGER].model
    _seed(store, served, {champion: 0.80, challenger: 0.95})
    end = START + WINDOWS * WINDOW
    report = ab_report_from_store(store, served, WEIGHTS, START, end)

    arms = {arm.alias: arm for arm in report.arms}
    assert arms[CHAMPION].traffic_share == pytest.approx(0.7)
    assert arms[CHALLENGER].traffic_share == pytest.approx(0.3)
    assert arms[CHAMPION].requests == 35 * WINDOWS
    assert arms[CHAMPION].error_rate == 0
    assert 0 < arms[CHALLENGER].error_rate < 0.05
    assert arms[CHALLENGER].labelled == arms[CHALLENGER].requests - arms[CHALLENGER].errors
    assert arms[CHAMPION].accuracy == pytest.approx(0.80, abs=0.03)
    assert arms[CHALLENGER].accuracy == pytest.approx(0.95, abs=0.03)
    assert (arms[CHALLENGER].f1 or 0) > (arms[CHAMPION].f1 or 0)
    p50, p99 = arms[CHAMPION].latency_p50_ms, arms[CHAMPION].latency_p99_ms
    assert p50 is not None
    assert p99 is not None
    assert 0 < p50 < p99
    assert report.chi_square is not None
    assert report.chi_square.p_value < 0.05
    assert report.decision == "promote_challenger"
    assert report.traffic_after == {challenger: 70, champion: 30}
    assert report.aliases_after == {CHAMPION: challenger, CHALLENGER: champion}

    json_path, html_path = write_ab_report(report, tmp_path / "report")
    assert '"promote_challenger"' in json_path.read_text()
    page = html_path.read_text()
    assert "promote challenger" in page
    assert "<script" not in page
    assert "src=" not in page

    aliases = promote_challenger(registered.tracking_uri)
    after = load_served_models(registered.tracking_uri)
    assert after.arms[CHAMPION].model == challenger
    assert after.arms[CHALLENGER].model == champion
    assert aliases[CHAMPION] == f"{challenger}/{served.arms[CHALLENGER].version}"


def test_arms_that_perform_alike_keep_the_champion(served: ServedModels, tmp_path: Path) -> None:
    store = ObjectStore.from_uri(str(tmp_path / "store"))
    champion, challenger = served.arms[CHAMPION].model, served.arms[CHALLENGER].model
    _seed(store, served, {champion: 0.9, challenger: 0.9}, seed=1)
    report = ab_report_from_store(store, served, WEIGHTS, START, START + WINDOWS * WINDOW)
    assert report.chi_square is not None
    assert report.chi_square.p_value >= 0.05
    assert report.decision == "keep_champion"
    assert "no significant difference" in report.reason
    assert report.traffic_after == report.traffic_now == {champion: 70, challenger: 30}


def test_too_little_feedback_keeps_the_champion(served: ServedModels, tmp_path: Path) -> None:
    store = ObjectStore.from_uri(str(tmp_path / "store"))
    champion, challenger = served.arms[CHAMPION].model, served.arms[CHALLENGER].model
    _seed(store, served, {champion: 0.5, challenger: 1.0})
    one_window = ab_report_from_store(store, served, WEIGHTS, START, START + WINDOW)
    assert one_window.decision == "keep_champion"
    assert "too little feedback" in one_window.reason
