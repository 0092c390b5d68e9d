"""The scorer follows MLflow's aliases without a restart, against a real MLflow and a real
Triton: a new version of the champion's model is registered with another threshold and the
champion alias moved to it; the running scoring loop loads the new holders (version,
threshold, detector, drift reference, explainer) and, once Triton answers with the new
version, judges the window with the new threshold and shows the new version on /metrics.

Until Triton serves the new version (the retrain is still building the repository or rolling
Triton), the models in use go on judging what Triton answers: scoring never stops, and no
window is judged by one version's models with another version's answers.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mlflow import MlflowClient

from contracts.features import INSTANCE_ID, TIMESTAMP
from contracts.serving import CHAMPION, THRESHOLD_TAG
from contracts.store import ObjectStore
from serving.scorer.loop import window_start_of
from serving.scorer.prediction_log import predictions_key, read_window_predictions
from serving.scorer.scorer import Scorer, WindowNotScoredError
from serving.scorer.served_models import ServedModels, ServedModelsError, load_served_models
from serving.scorer.settings import ScorerSettings
from serving.triton.model_repository import build_repository
from serving.triton.server import TritonPorts
from tests.serving.conftest import BATCHING, SERVED_SCORE_ATOL, Predict, Registered
from tests.serving.scorer.test_loop import (
    INSTANCES,
    LOOP_SECONDS,
    LOOP_WINDOW,
    LiveFeatures,
    Samples,
    _first_tick,
    _scoring_app,
    _total,
    _wait_for,
    _window_scored,
)
from vigil.local_stack import start_triton
from vigil.processes import ServerProcess, free_port

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("triton")]


@pytest.fixture(scope="module")
def served(registered: Registered) -> ServedModels:
    """The alias holders as a scorer started before the retrain loaded them."""
    return load_served_models(registered.tracking_uri)


@contextmanager
def _champion_moved(
    registered: Registered, served: ServedModels, tags: dict[str, str]
) -> Iterator[int]:
    """A new version of the champion's model (same artifacts and run, ``tags`` over its own)
    holding the champion alias; yields its version. The alias goes back and the version is
    deleted after, so the session's registry is as it was."""
    client = MlflowClient(registered.tracking_uri)
    champion = served.champion
    old = client.get_model_version(champion.model, str(champion.version))
    assert old.source is not None
    kept = {k: v for k, v in old.tags.items() if k != THRESHOLD_TAG}
    new = client.create_model_version(
        champion.model,
        source=old.source,
        run_id=old.run_id,
        tags=kept | tags,
        # MLflow 3: the source is the logged model's models:/m-… URI, which must be named too
        # (the version read back carries no model_id).
        model_id=old.source.removeprefix("models:/"),
    )
    try:
        client.set_registered_model_alias(champion.model, CHAMPION, new.version)
        yield int(new.version)
    finally:
        client.set_registered_model_alias(champion.model, CHAMPION, str(champion.version))
        client.delete_model_version(champion.model, new.version)


def _new_threshold(served: ServedModels, scores: np.ndarray[Any, Any]) -> float:
    """A threshold that flips the verdict on some of ``scores``, away from the old one."""
    old = served.champion.threshold
    new = float(np.quantile(scores, 0.25 if old > np.median(scores) else 0.75))
    assert (scores >= old).sum() != (scores >= new).sum()
    return new


def _served_model(samples: Samples, alias: str) -> dict[str, str]:
    """The labels of ``scorer_served_model_info`` for ``alias`` (its value must be 1)."""
    infos = [
        dict(labels)
        for (name, labels), value in samples.items()
        if name == "scorer_served_model_info" and dict(labels)["alias"] == alias and value == 1
    ]
    assert len(infos) == 1, infos
    return infos[0]


def test_the_loop_reloads_moved_aliases_and_judges_the_next_window_with_the_new_threshold(
    registered: Registered,
    served: ServedModels,
    served_in_process: dict[str, Predict],
    tmp_path: Path,
) -> None:
    store = ObjectStore.from_uri(str(tmp_path / "live"))
    live = LiveFeatures(store, served.feature_names, registered.rows)
    model = served.champion.model
    first_rows = registered.rows[: INSTANCES * LOOP_SECONDS, : len(served.feature_names)]
    new_threshold = _new_threshold(served, served_in_process[model](first_rows))
    with _champion_moved(registered, served, {THRESHOLD_TAG: str(new_threshold)}) as version:
        # What the retrain does next: the Triton repository rebuilt from the aliases, Triton
        # restarted on it (here: a Triton of this test's own, serving the new version).
        repository = tmp_path / "repository"
        (tmp_path / "triton").mkdir()
        build_repository(registered.tracking_uri, str(repository), batching=BATCHING)
        ports = TritonPorts(http=free_port(), grpc=free_port(), metrics=free_port())
        triton = start_triton(repository, ports, tmp_path / "triton")
        settings = ScorerSettings(
            window_seconds=LOOP_SECONDS,
            tracking_uri=registered.tracking_uri,
            inference_url=f"127.0.0.1:{ports.grpc}",
            champion_weight=100,  # every instance on the champion: every row is judged by it
            alias_check_seconds=0.5,
            window_retry_seconds=0.2,
            # Nothing listens there: explanations fail, but the dispatcher's models are checked.
            explain_url=f"http://127.0.0.1:{free_port()}",
            explain_threshold=0.99,
        )
        scorer = Scorer(settings, store, served)  # started before the retrain
        assert scorer.models.champion.threshold != new_threshold
        try:
            with _scoring_app(scorer) as url:
                loaded = _wait_for(
                    url,
                    lambda s: _total(s, "scorer_model_reloads_total") >= 1,
                    "the moved alias loaded",
                )
                first_tick = _first_tick(url)
                # The next window to close after the load.
                start = max(window_start_of(datetime.now(UTC), LOOP_WINDOW), first_tick)
                live.add_window(start)
                samples = _window_scored(url, start)
        finally:
            triton.stop()

    # Loaded, waiting for an answer from the new version: the old holder still judged.
    assert _total(loaded, "scorer_models_pending") == 1
    assert _served_model(loaded, CHAMPION)["version"] == str(served.champion.version)
    # Triton answered with the new version: the new holder judged the window.
    assert _total(samples, "scorer_models_pending") == 0
    assert _served_model(samples, CHAMPION) == {
        "alias": CHAMPION,
        "model": model,
        "version": str(version),
    }
    threshold = (
        "scorer_served_model_threshold",
        frozenset({("alias", CHAMPION), ("model", model)}),
    )
    assert samples[threshold] == new_threshold
    assert samples[("scorer_model_reloads_total", frozenset({("outcome", "loaded")}))] == 1
    assert samples[("scorer_model_reloads_total", frozenset({("outcome", "failed")}))] == 0
    # Every part of the scorer follows the new holders.
    assert scorer.models.champion.version == version
    assert scorer.models.detector is not served.detector
    assert scorer.drift.expected.keys() == scorer.models.reference["features"].keys()
    assert scorer.dispatcher is not None
    assert scorer.dispatcher.detector is scorer.models.detector
    assert scorer.dispatcher.explainer is scorer.models.explainer

    rows = live.rows_of(start)
    predictions = read_window_predictions(store, start).sort(INSTANCE_ID, TIMESTAMP)
    assert predictions.select(INSTANCE_ID, TIMESTAMP).equals(rows.select(INSTANCE_ID, TIMESTAMP))
    assert predictions["error"].null_count() == predictions.height
    assert set(predictions["model"]) == {model}
    assert set(predictions["model_version"]) == {version}
    expected = served_in_process[model](rows.select(live.names).to_numpy().astype(np.float32))
    probability = predictions["probability"].to_numpy()
    np.testing.assert_allclose(probability, expected, rtol=1e-5, atol=SERVED_SCORE_ATOL)
    # Judged with the new threshold, and that differs from what the old one would say.
    margin = np.abs(probability - new_threshold) > SERVED_SCORE_ATOL
    result = predictions["result"].to_numpy().astype(bool)
    np.testing.assert_array_equal(result[margin], (probability >= new_threshold)[margin])
    assert (result != (probability >= served.champion.threshold)).any()


def test_until_triton_serves_the_moved_aliases_the_models_in_use_go_on_judging(
    registered: Registered,
    served: ServedModels,
    triton: ServerProcess,
    triton_ports: TritonPorts,
    tmp_path: Path,
) -> None:
    """The aliases moved; the session's Triton still serves the old version (the retrain has
    not rolled it): the new holders wait, the window is scored with the old ones."""
    store = ObjectStore.from_uri(str(tmp_path / "live"))
    live = LiveFeatures(store, served.feature_names, registered.rows)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    live.add_window(start)
    settings = ScorerSettings(
        window_seconds=LOOP_SECONDS,
        tracking_uri=registered.tracking_uri,
        inference_url=f"127.0.0.1:{triton_ports.grpc}",
        champion_weight=100,
    )
    scorer = Scorer(settings, store, served)
    try:
        with _champion_moved(registered, served, {THRESHOLD_TAG: "0.001"}):
            assert scorer.reload_if_aliases_moved() is True
            assert scorer.reload_if_aliases_moved() is False  # already loaded, pending
            result = scorer.score_once(start)
        registry = scorer.metrics.registry
        assert registry.get_sample_value("scorer_models_pending") == 1
        assert scorer.models is served
        # The alias went back before Triton rolled: nothing waits any more.
        assert scorer.reload_if_aliases_moved() is False
        assert registry.get_sample_value("scorer_models_pending") == 0
        assert scorer.models is served
    finally:
        scorer.close()
    predictions = result.predictions
    assert predictions.height == INSTANCES * LOOP_SECONDS
    assert predictions["error"].null_count() == predictions.height
    assert set(predictions["model_version"]) == {served.champion.version}
    probability = predictions["probability"].to_numpy()
    flagged = predictions["result"].to_numpy().astype(bool)
    margin = np.abs(probability - served.champion.threshold) > SERVED_SCORE_ATOL
    np.testing.assert_array_equal(
        flagged[margin], (probability >= served.champion.threshold)[margin]
    )
    assert not flagged.all()  # 0.001, the pending threshold, would flag every row


def test_a_threshold_changed_in_place_is_used_from_the_next_window(
    registered: Registered, served: ServedModels, tmp_path: Path
) -> None:
    """Same versions (Triton serves them already): the new threshold is used at once."""
    client = MlflowClient(registered.tracking_uri)
    champion = served.champion
    store = ObjectStore.from_uri(str(tmp_path / "store"))
    scorer = Scorer(ScorerSettings(tracking_uri=registered.tracking_uri), store, served)
    try:
        client.set_model_version_tag(champion.model, str(champion.version), THRESHOLD_TAG, "0.42")
        assert scorer.reload_if_aliases_moved() is True
        assert scorer.models.champion.threshold == 0.42
        assert scorer.models.champion.version == champion.version
        registry = scorer.metrics.registry
        assert registry.get_sample_value("scorer_models_pending") == 0
        labels = {"alias": CHAMPION, "model": champion.model}
        assert registry.get_sample_value("scorer_served_model_threshold", labels) == 0.42
    finally:
        client.set_model_version_tag(
            champion.model, str(champion.version), THRESHOLD_TAG, str(champion.threshold)
        )
        scorer.close()


def test_an_answer_from_a_version_the_aliases_no_longer_hold_is_not_judged(
    registered: Registered,
    served: ServedModels,
    triton: ServerProcess,
    triton_ports: TritonPorts,
    tmp_path: Path,
) -> None:
    """A scorer (re)started after the aliases moved, while Triton still serves the old
    version: it records nothing of the window and raises the retryable error (the loop tries
    again until Triton has rolled)."""
    store = ObjectStore.from_uri(str(tmp_path / "live"))
    live = LiveFeatures(store, served.feature_names, registered.rows)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    live.add_window(start)
    with _champion_moved(registered, served, {THRESHOLD_TAG: "0.5"}) as version:
        moved = load_served_models(registered.tracking_uri)
    assert moved.champion.version == version
    settings = ScorerSettings(
        window_seconds=LOOP_SECONDS,
        inference_url=f"127.0.0.1:{triton_ports.grpc}",
        champion_weight=100,
    )
    scorer = Scorer(settings, store, moved)
    try:
        with pytest.raises(WindowNotScoredError, match="has not rolled onto the aliases yet"):
            scorer.score_once(start)
    finally:
        scorer.close()
    assert not store.exists(predictions_key(start))
    assert scorer.metrics.registry.get_sample_value("scorer_last_window_end_timestamp_seconds") == 0


def test_a_new_holder_that_cannot_be_loaded_leaves_the_models_in_use(
    registered: Registered, served: ServedModels, tmp_path: Path
) -> None:
    store = ObjectStore.from_uri(str(tmp_path / "store"))
    settings = ScorerSettings(tracking_uri=registered.tracking_uri)
    scorer = Scorer(settings, store, served)
    try:
        assert scorer.reload_if_aliases_moved() is False  # nothing moved
        # A new champion without its threshold tag cannot be judged with.
        with (
            _champion_moved(registered, served, {}),
            pytest.raises(ServedModelsError, match=THRESHOLD_TAG),
        ):
            scorer.reload_if_aliases_moved()
        assert scorer.models is served
        info = scorer.metrics.registry.get_sample_value(
            "scorer_served_model_info",
            {
                "alias": CHAMPION,
                "model": served.champion.model,
                "version": str(served.champion.version),
            },
        )
        assert info == 1
    finally:
        scorer.close()
