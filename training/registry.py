"""Phase 6: a run directory's registration in MLflow, with aliases.

Training writes everything a registration needs into a run directory first
(``training.run_directory``: models, holdout, metrics, report); :func:`register_run` then logs
it to MLflow. If MLflow is down, nothing is
lost: the directory stays and ``register_run`` can be called again later (``vigil register``).

Aliases follow the serving contract: ``champion`` and ``challenger`` name one version each,
on different registered models (``xgboost_anomaly`` and ``catboost_anomaly`` are separate
Triton models). A model that fails its gates never receives an alias; a model replaces the
holder of an alias only if it scores better on this run's holdout.
"""

import json
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import mlflow.catboost
import mlflow.xgboost
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException, RestException
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, DataType, Schema
from numpy.typing import NDArray
from requests.exceptions import RequestException

from contracts.detector import FittedDetector
from contracts.mlflow_registry import aliases_of, download_run_artifact, threshold_of
from contracts.serving import (
    ALIASES,
    CATBOOST_MODEL,
    CHALLENGER,
    CHAMPION,
    DETECTOR_ARTIFACT,
    THRESHOLD_TAG,
    XGBOOST_MODEL,
)
from training.evaluation import ModelEvaluation, classification_metrics
from training.gates import gate_verdict
from training.models import CATBOOST, XGBOOST, predict_proba
from training.run_directory import (
    RegistrationResult,
    RunDirectory,
    TrainedRun,
    load_detector,
    load_holdout,
    load_model,
)

REGISTERED_NAMES = {XGBOOST: XGBOOST_MODEL, CATBOOST: CATBOOST_MODEL}
OUTPUT_NAME = "anomaly_probability"
REGISTRATION_ATTEMPTS = 3
RECONNECT_SECONDS = 60.0


class RegistrationError(RuntimeError):
    """Registration did not complete; the run directory is intact and can be registered again."""


class FeatureSetMismatchError(ValueError):
    """The run's features differ from those a registered alias holder was trained on."""


def register_run(
    run_path: Path, tracking_uri: str, replace_on_feature_change: bool = False
) -> RegistrationResult:
    """Log a finished training run to MLflow, register its models and move the aliases.

    A connection that breaks midway (MLflow restarting) is waited out and the registration
    resumed, up to ``REGISTRATION_ATTEMPTS`` times. Safe to call again after a failure: a run
    that was registered returns its earlier result, an interrupted one resumes its MLflow run
    (recorded in the run directory) and registers only the models still missing.

    Args:
        run_path: the run directory written by training.
        tracking_uri: the MLflow tracking server (``http://host:port``) or another MLflow URI.
        replace_on_feature_change: when an alias holder was trained on other features, let
            the new models take the aliases without a comparison (instead of raising).

    Returns:
        The MLflow run id, the new version of each registered model, and the aliases.

    Raises:
        FeatureSetMismatchError: an alias holder expects other features; nothing was logged.
        RegistrationError: MLflow is unreachable, refused a request, or kept failing; the
            run directory is kept.
    """
    run_dir = RunDirectory(run_path)
    if run_dir.registration.exists():
        return RegistrationResult.model_validate_json(run_dir.registration.read_text())
    if not run_dir.run_record.exists():
        raise FileNotFoundError(f"{run_dir.run_record} is missing: not a training run directory")
    run = TrainedRun.model_validate_json(run_dir.run_record.read_text())
    retry = f"the models are kept in {run_path}; retry with `vigil register {run_path}`"
    unreachable = _unreachable(tracking_uri)
    if unreachable:
        raise RegistrationError(f"MLflow at {tracking_uri} is unreachable ({unreachable}); {retry}")
    for attempt in range(1, REGISTRATION_ATTEMPTS + 1):
        try:
            result = _register(run_dir, run, tracking_uri, replace_on_feature_change)
            break
        except RestException as error:  # MLflow answered and refused: retrying cannot help
            refused = f"MLflow refused the registration ({error}); {retry}"
            raise RegistrationError(refused) from error
        except (MlflowException, RequestException, OSError) as error:
            # The connection broke (MLflow restarting, a network blip): resume once it is back.
            if attempt == REGISTRATION_ATTEMPTS or not _back_up(tracking_uri):
                raise RegistrationError(
                    f"registration in MLflow failed ({error}); {retry}"
                ) from error
    run_dir.save_registration(result)
    run_dir.registration_attempt.unlink(missing_ok=True)
    return result


def _unreachable(tracking_uri: str) -> str | None:
    """Why an HTTP tracking server does not answer its health check, or None if it does."""
    if not tracking_uri.startswith(("http://", "https://")):
        return None
    try:
        with urllib.request.urlopen(f"{tracking_uri.rstrip('/')}/health", timeout=5):
            return None
    except urllib.error.HTTPError:
        return None  # it answers HTTP: it is up
    except OSError as error:
        return str(error)


def _back_up(tracking_uri: str) -> bool:
    """Whether the tracking server answers again within ``RECONNECT_SECONDS``."""
    deadline = time.monotonic() + RECONNECT_SECONDS
    while _unreachable(tracking_uri):
        if time.monotonic() > deadline:
            return False
        time.sleep(1.0)
    return True


@dataclass(frozen=True)
class Holder:
    """A model version that holds, or is a candidate for, an alias."""

    kind: str
    version: str
    score: float


def _register(
    run_dir: RunDirectory, run: TrainedRun, tracking_uri: str, replace_on_feature_change: bool
) -> RegistrationResult:
    # The flavours' load_model and log_model resolve models:/ URIs and runs through MLflow's
    # process-wide URI; the CLI process registers against one server, so setting it is safe.
    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri)
    feature_names = load_detector(run_dir).feature_names
    features, labels = load_holdout(run_dir, feature_names)
    current = _current_holders(
        client,
        tracking_uri,
        feature_names,
        features,
        labels,
        run.compare_metric,
        replace_on_feature_change,
    )
    mlflow.set_experiment(run.experiment)
    signature = ModelSignature(
        inputs=Schema([ColSpec(DataType.float, name) for name in run.feature_names]),
        outputs=Schema([ColSpec(DataType.float, OUTPUT_NAME)]),
    )
    versions: dict[str, str] = {}
    with mlflow.start_run(run_id=_unfinished_run(run_dir, client, tracking_uri)) as active:
        run_dir.save_attempt(tracking_uri, active.info.run_id)
        # Models first: MLflow 3 copies every metric already logged onto each logged model,
        # one request per metric, which doubled the registration time.
        for kind, evaluation in run.evaluations.items():
            name = REGISTERED_NAMES[kind]
            if not client.search_model_versions(_of_run(name, active.info.run_id)):
                _log_model(run_dir, kind, signature)
            versions[kind] = drop_duplicate_versions(client, name, active.info.run_id)
            client.set_model_version_tag(
                REGISTERED_NAMES[kind],
                versions[kind],
                THRESHOLD_TAG,
                str(evaluation.metrics.threshold),  # each model's own, chosen on validation
            )
            client.set_model_version_tag(
                REGISTERED_NAMES[kind], versions[kind], "gates", gate_verdict(evaluation)
            )
        mlflow.log_params(run.params)
        mlflow.log_metrics(run.metrics)
        mlflow.set_tags(run.tags)
        for path in (
            run_dir.config,
            run_dir.features,
            run_dir.summary,
            run_dir.reference,
            run_dir.detector,
        ):
            mlflow.log_artifact(str(path))
        mlflow.log_artifacts(str(run_dir.report_dir), artifact_path="report")
        candidates = [
            Holder(kind, versions[kind], _score(evaluation, run.compare_metric))
            for kind, evaluation in run.evaluations.items()
            if evaluation.passed_gates
        ]
        target, decision = decide_aliases(candidates, current)
        _apply_aliases(client, target)
        mlflow.set_tags(
            {
                "gates": "passed" if candidates else "failed",
                "promotion": decision,
                **{f"alias.{alias}": _label(holder) for alias, holder in target.items()},
            }
        )
    return RegistrationResult(
        run_id=active.info.run_id,
        versions={REGISTERED_NAMES[kind]: version for kind, version in versions.items()},
        aliases={alias: _label(holder) for alias, holder in target.items() if holder},
        decision=decision,
    )


def _label(holder: Holder | None) -> str:
    return f"{REGISTERED_NAMES[holder.kind]}/{holder.version}" if holder else "none"


def _score(evaluation: ModelEvaluation, metric: str) -> float:
    value = getattr(evaluation.metrics, metric)
    return float("-inf") if value is None else float(value)


def _log_model(run_dir: RunDirectory, kind: str, signature: ModelSignature) -> None:
    model = load_model(run_dir, kind)
    name = REGISTERED_NAMES[kind]
    if kind == XGBOOST:
        mlflow.xgboost.log_model(
            model,
            name=name,
            signature=signature,
            registered_model_name=name,
            model_format="json",
            pip_requirements=[_requirement("xgboost-cpu", "xgboost")],
        )
    else:
        mlflow.catboost.log_model(
            model,
            name=name,
            signature=signature,
            registered_model_name=name,
            pip_requirements=[_requirement("catboost")],
        )


def _unfinished_run(run_dir: RunDirectory, client: MlflowClient, tracking_uri: str) -> str | None:
    """The MLflow run of an interrupted registration on this server, if it still exists."""
    if not run_dir.registration_attempt.exists():
        return None
    attempt = json.loads(run_dir.registration_attempt.read_text())
    if attempt["tracking_uri"] != tracking_uri:
        return None
    try:
        return str(client.get_run(attempt["run_id"]).info.run_id)
    except RestException:  # deleted since: start afresh
        return None


def _of_run(name: str, run_id: str) -> str:
    return f"name = '{name}' and run_id = '{run_id}'"


def drop_duplicate_versions(client: MlflowClient, name: str, run_id: str) -> str:
    """The run's first version of ``name``, after deleting any later version of the same run.

    MLflow's client retries a ``create`` whose answer was lost (the server died after it
    created the version): the retry makes a second version from the same run and source.
    Each registration logs one model per name, so every version of this run but the first
    is such a duplicate.
    """
    found = client.search_model_versions(_of_run(name, run_id))
    first, *duplicates = sorted(found, key=lambda found_version: int(found_version.version))
    for duplicate in duplicates:
        client.delete_model_version(name, duplicate.version)
    return str(first.version)


def _requirement(*distributions: str) -> str:
    """A pin for the first installed distribution (xgboost-cpu avoids the CUDA wheel)."""
    for distribution in distributions:
        try:
            return f"{distribution}=={metadata.version(distribution)}"
        except metadata.PackageNotFoundError:
            continue
    return distributions[-1]


def _current_holders(
    client: MlflowClient,
    tracking_uri: str,
    feature_names: list[str],
    features: NDArray[Any],
    labels: NDArray[Any],
    compare_metric: str,
    replace_on_feature_change: bool,
) -> dict[str, Holder]:
    """The current alias holders, each scored on this run's holdout rows through the detector
    its own run fitted, at its own threshold."""
    holders = {}
    for kind, name in REGISTERED_NAMES.items():
        for alias, version in aliases_of(client, name).items():
            if alias not in ALIASES:
                continue
            details = client.get_model_version(name, version)
            detector = _detector_of_run(details.run_id or "", tracking_uri)
            expected = detector.feature_names if detector else ["(no detector artifact)"]
            if detector is None or expected != feature_names:
                if replace_on_feature_change:
                    holders[alias] = Holder(kind, version, float("-inf"))
                    continue
                raise FeatureSetMismatchError(_mismatch(name, alias, expected, feature_names))
            uri = f"models:/{name}/{version}"
            model = (
                mlflow.xgboost.load_model(uri)
                if kind == XGBOOST
                else mlflow.catboost.load_model(uri)
            )
            inputs = detector.inputs(features)
            scores = detector.score(name, predict_proba(model, inputs), inputs)
            threshold = threshold_of(details.tags)
            metrics = classification_metrics(labels, scores, threshold)
            value = getattr(metrics, compare_metric)
            holders[alias] = Holder(kind, version, float("-inf") if value is None else float(value))
    return holders


def _detector_of_run(run_id: str, tracking_uri: str) -> FittedDetector | None:
    """The detector a registered model's training run logged; None for runs without one."""
    with tempfile.TemporaryDirectory(prefix="vigil-detector-") as scratch:
        try:
            path = download_run_artifact(tracking_uri, run_id, DETECTOR_ARTIFACT, Path(scratch))
        except (MlflowException, OSError):
            return None
        return FittedDetector.load(path)


def _mismatch(name: str, alias: str, expected: list[str], actual: list[str]) -> str:
    missing = [f for f in expected if f not in actual]
    extra = [f for f in actual if f not in expected]
    detail = (
        f"missing {missing[:5]}, new {extra[:5]}" if missing or extra else "same names, new order"
    )
    return (
        f"{name}@{alias} was trained on {len(expected)} features and this run on {len(actual)} "
        f"({detail}); the two cannot be compared on one holdout. Retry with "
        "replace_on_feature_change to let the new models take the aliases."
    )


def decide_aliases(
    candidates: list[Holder], current: dict[str, Holder]
) -> tuple[dict[str, Holder | None], str]:
    """Where ``champion`` and ``challenger`` should point after this run.

    Both arms read the inputs of one fitted detector (the A/B router may send a request to
    either), so the aliases move as a pair from one run: when this run's best model beats the
    champion, it becomes champion and the run's other model (if it passed its gates)
    challenger; otherwise nothing moves.

    Args:
        candidates: the run's new versions that passed their gates, with their holdout score.
        current: today's alias holders, scored on the same holdout.

    Returns:
        The target holder of each alias (None = remove it) and a sentence saying why.
    """
    target: dict[str, Holder | None] = {alias: current.get(alias) for alias in ALIASES}
    if not candidates:
        return target, "no new model passed its gates; aliases unchanged"
    ranked = sorted(candidates, key=lambda c: (-c.score, c.kind != XGBOOST))
    best, champion = ranked[0], current.get(CHAMPION)
    if champion is None or best.score > champion.score:
        target[CHAMPION] = best
        target[CHALLENGER] = ranked[1] if len(ranked) > 1 else None
        beaten = "no champion yet" if champion is None else f"beats {_label(champion)}"
        return target, f"{_label(best)} becomes champion ({beaten})"
    return target, f"champion {_label(champion)} is at least as good; aliases unchanged"


def _apply_aliases(client: MlflowClient, target: dict[str, Holder | None]) -> None:
    for alias, holder in target.items():
        for kind, name in REGISTERED_NAMES.items():
            if holder is not None and holder.kind == kind:
                client.set_registered_model_alias(name, alias, holder.version)
            elif alias in aliases_of(client, name):
                client.delete_registered_model_alias(name, alias)
