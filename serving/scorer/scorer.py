"""The online scorer: every window, the window's feature rows → the A/B endpoint → metrics,
drift, the prediction log and, for confident anomalies, an explanation.

``Scorer.score_once(start, end)`` scores one window; ``serving.scorer.loop`` scores window
after window and follows MLflow's aliases; ``Scorer.feedback``
(``serving.scorer.feedback_recorder``) keeps the labels posted back. The metrics,
``/feedback`` and health routes are served by ``serving.scorer.app``.

Each instance's rows of a window go in one request, so an instance is scored by one arm per
window, and its window verdict (flagged if any row is) is what feedback is compared with.
"""

import itertools
import logging
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
import numpy as np
import polars as pl
from mlflow import MlflowClient
from numpy.typing import NDArray
from tritonclient.utils import InferenceServerException

from contracts.features import INSTANCE_ID, TIMESTAMP
from contracts.mlflow_registry import alias_holders, threshold_of
from contracts.serving import CHALLENGER
from contracts.settings import Settings
from contracts.store import ObjectStore, open_store
from serving.scorer.drift import DriftMonitor
from serving.scorer.explain_trigger import Anomaly, ExplanationDispatcher, IncidentTracker
from serving.scorer.feedback_recorder import FeedbackRecorder
from serving.scorer.inference import InferenceClient, assigned_model, choose_arm
from serving.scorer.metrics import ScorerMetrics
from serving.scorer.prediction_log import write_predictions
from serving.scorer.served_models import ServedModels, load_served_models
from serving.scorer.settings import ScorerSettings
from serving.scorer.window_features import read_window_features

logger = logging.getLogger(__name__)


class WindowNotScoredError(RuntimeError):
    """The inference endpoint answered none of a window's requests (it is down or
    unreachable, or serves model versions the aliases no longer hold while it rolls onto new
    ones); nothing of the window was recorded, so it can be scored again."""


@dataclass(frozen=True)
class WindowResult:
    """One scored window: its predictions (``PREDICTION_SCHEMA`` columns) and the instances
    whose anomaly was queued for explanation."""

    start: datetime
    end: datetime
    predictions: pl.DataFrame
    explained: list[str]


class Scorer:
    """Scores windows; holds the rolling state behind the metrics."""

    def __init__(
        self,
        settings: ScorerSettings,
        store: ObjectStore,
        models: ServedModels,
        client: InferenceClient | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.models = models
        self.metrics = ScorerMetrics()
        self.client = client or InferenceClient(
            settings.inference_url, settings.inference_protocol, settings.inference_timeout_s
        )
        self.drift = DriftMonitor(models.reference, self._drift_span)
        self.incidents = IncidentTracker(settings.explain_threshold)
        self.dispatcher = (
            ExplanationDispatcher(
                settings.explain_url,
                self.metrics,
                models.detector,
                models.explainer,
                store,
                queue_size=settings.explain_queue_size,
                timeout_s=settings.explain_timeout_s,
                top_features=settings.explain_top_features,
                log_lines=settings.explain_log_lines,
                api_key=settings.explain_api_key,
            )
            if settings.explain_url
            else None
        )
        self._router = (
            httpx.Client(base_url=settings.ab_router_url, timeout=settings.inference_timeout_s)
            if settings.ab_router_url
            else None
        )
        self._rates: deque[tuple[datetime, int, int]] = deque()
        self._pool = ThreadPoolExecutor(settings.concurrency, thread_name_prefix="infer")
        # One window at a time, judged by one set of models; feedback reads the metrics too.
        self._lock = threading.Lock()
        self.feedback = FeedbackRecorder(settings, store, self.metrics, self._lock)
        # New alias holders loaded from MLflow, waiting for the inference side to serve them.
        self._pending: ServedModels | None = None
        self._publish_models()

    @property
    def window(self) -> timedelta:
        return timedelta(seconds=self.settings.window_seconds)

    @property
    def _drift_span(self) -> timedelta:
        return timedelta(seconds=self.settings.anomaly_rate_seconds)

    def use_models(self, models: ServedModels) -> None:
        """Judge the next windows with ``models`` (new alias holders): their versions and
        thresholds, their detector, their drift reference (the rolling drift restarts: the
        bins are the new reference's) and their explainer."""
        with self._lock:  # between two windows: a window is judged by one set of models
            self._switch_to(models)

    def offer_models(self, models: ServedModels) -> None:
        """New alias holders, loaded after an alias moved: used from the next window when the
        inference side already serves each of their versions (a threshold changed, the
        aliases swapped), else kept pending until an answer comes from a version only they
        hold (Triton rolled onto the retrain's repository; ``score_once``). Until then the
        models in use go on judging what Triton still serves, so a retrain never stops the
        scoring, and no window is judged by one run's models with another run's answers."""
        with self._lock:
            if _versions(models) <= _versions(self.models):
                self._switch_to(models)
            else:
                self._pending = models
                self.metrics.models_pending.set(1)
                logger.info(
                    "MLflow aliases moved to %s; judging with %s until the inference side "
                    "serves the new versions",
                    models.holders,
                    self.models.holders,
                )

    def reload_if_aliases_moved(self) -> bool:
        """Read MLflow's aliases and their thresholds; when they differ from the models in
        use (and from those already pending), load the new holders (scoring goes on
        meanwhile) and offer them (``offer_models``). True when new holders were loaded.

        Raises:
            MlflowException, ServedModelsError: MLflow did not answer, or does not hold what
                the new holders need; the models in use stay.
        """
        client = MlflowClient(self.settings.tracking_uri)
        state = {
            alias: (name, version, _threshold(client.get_model_version(name, str(version)).tags))
            for alias, (name, version) in alias_holders(client).items()
        }
        if state == _holder_state(self.models):
            with self._lock:  # moved back before Triton rolled: nothing is pending any more
                self._pending = None
                self.metrics.models_pending.set(0)
            return False
        if self._pending is not None and state == _holder_state(self._pending):
            return False
        logger.info("MLflow aliases or thresholds changed to %s: loading them", state)
        self.offer_models(load_served_models(self.settings.tracking_uri))
        return True

    def _switch_to(self, models: ServedModels) -> None:
        """Use ``models`` from now on; the caller holds ``_lock``."""
        self.models = models
        self._pending = None
        self.metrics.models_pending.set(0)
        self.drift = DriftMonitor(models.reference, self._drift_span)
        self.metrics.drift_psi.clear()
        self.metrics.drift_kl.clear()
        if self.dispatcher is not None:
            # Anomalies already queued are explained with these too (at most the queue).
            self.dispatcher.detector = models.detector
            self.dispatcher.explainer = models.explainer
        self._publish_models()
        logger.info("judging windows with %s", models.holders)

    def _publish_models(self) -> None:
        self.metrics.served_model.clear()
        self.metrics.served_threshold.clear()
        for alias, arm in self.models.arms.items():
            self.metrics.served_model.labels(
                alias=alias, model=arm.model, version=str(arm.version)
            ).set(1)
            self.metrics.served_threshold.labels(alias=alias, model=arm.model).set(arm.threshold)
            for result in ("0", "1"):
                self.metrics.predictions.labels(model=arm.model, result=result)

    def _rolled_onto_pending(self, predictions: pl.DataFrame) -> str | None:
        """The first (model, version) that answered the window and that only the pending
        holders hold, as ``model/version``; None when there is none. The caller holds
        ``_lock``."""
        if self._pending is None:
            return None
        new = _versions(self._pending) - _versions(self.models)
        answered = predictions.select("model", "model_version").unique().drop_nulls().rows()
        return next((f"{m}/{v}" for m, v in answered if (m, v) in new), None)

    def score_once(self, start: datetime, end: datetime | None = None) -> WindowResult:
        """Score the rows with ``start <= timestamp < end`` (default: one window long).

        Reads the rows, scores each instance's rows in one request, writes the window's
        predictions to the store, updates every metric and queues explanations. A request
        that fails is kept as an ``error`` row; a window none of whose requests was answered
        raises before anything is recorded, so scoring it again counts each row once.

        Raises:
            WindowNotScoredError: the endpoint answered none of the window's requests, or
                answered with the versions of pending alias holders (``offer_models``), which
                are used from now on: score the window again.
            ValueError: the window's rows do not fit the models (see ``read_window_features``).
        """
        end = end or start + self.window
        began = time.perf_counter()
        with self._lock:
            rows = read_window_features(
                self.store,
                start,
                end,
                self.models.feature_names,
                self.settings.features_source,
            )
            inputs = self.models.model_inputs(rows.select(self.models.feature_names).to_numpy())
            predictions = self._predict(rows, inputs, start)
            if (rolled := self._rolled_onto_pending(predictions)) is not None:
                # Triton serves the moved aliases now: their models judge from here on, and
                # this window (whose inputs the old detector made) is scored again with them.
                assert self._pending is not None
                self._switch_to(self._pending)
                raise WindowNotScoredError(
                    f"{rolled} answered the window starting {start.isoformat()}: the "
                    "inference side serves the moved aliases; scoring it again with them"
                )
            errors = predictions["error"].drop_nulls()
            if len(errors) and len(errors) == predictions.height:
                raise WindowNotScoredError(
                    f"no request of the window starting {start.isoformat()} was answered, "
                    f"e.g. {errors[0]}"
                )
            write_predictions(self.store, start, predictions)
            self._update_metrics(start, end, rows, predictions)
            explained = self._trigger_explanations(start, end, inputs, predictions)
        self.metrics.window_duration.observe(time.perf_counter() - began)
        self.metrics.last_window_end.set(end.timestamp())
        return WindowResult(start, end, predictions, explained)

    def close(self) -> None:
        if self.dispatcher is not None:
            self.dispatcher.close()
        self._pool.shutdown()
        self.client.close()
        if self._router is not None:
            self._router.close()

    def _arm_for(self, instance_id: str) -> str:
        """The model name to ask for: the router's, the router's assignment, or ours."""
        if self._router is not None:
            if self.settings.inference_protocol == "http":
                return self.settings.router_model
            return assigned_model(self._router, instance_id)
        challenger = self.models.arms.get(CHALLENGER)
        return choose_arm(
            instance_id,
            self.models.champion.model,
            challenger.model if challenger else None,
            self.settings.champion_weight,
        )

    def _predict(
        self, rows: pl.DataFrame, inputs: NDArray[np.float32], start: datetime
    ) -> pl.DataFrame:
        instances = rows[INSTANCE_ID].to_numpy()
        bounds = np.flatnonzero(np.r_[True, instances[1:] != instances[:-1], True])
        # No rows, no request: an empty window's bounds would be one group of no row.
        pairs = itertools.pairwise(bounds) if len(instances) else []
        groups = [(str(instances[a]), a, b) for a, b in pairs]
        answers = list(
            self._pool.map(lambda g: self._infer(g[0], inputs[g[1] : g[2]]), groups)
            if groups
            else []
        )
        columns: dict[str, list[object]] = {
            "model": [],
            "model_version": [],
            "probability": [],
            "result": [],
            "latency_seconds": [],
            "error": [],
        }
        for (_, a, b), answer in zip(groups, answers, strict=True):
            count = b - a
            model, version, probabilities, latency, error = answer
            threshold = self.models.threshold_of(model)
            columns["model"] += [model] * count
            columns["model_version"] += [version] * count
            columns["latency_seconds"] += [latency] * count
            columns["error"] += [error] * count
            if probabilities is None:
                columns["probability"] += [None] * count
                columns["result"] += [None] * count
            else:
                columns["probability"] += probabilities.tolist()
                columns["result"] += [int(p >= threshold) for p in probabilities]
        return pl.DataFrame(
            {
                INSTANCE_ID: rows[INSTANCE_ID],
                TIMESTAMP: rows[TIMESTAMP],
                "window_start": pl.Series([start] * rows.height, dtype=pl.Datetime("ms", "UTC")),
                **columns,
            },
            schema_overrides={
                "model": pl.String,
                "model_version": pl.Int64,
                "probability": pl.Float64,
                "result": pl.Int8,
                "latency_seconds": pl.Float64,
                "error": pl.String,
            },
        )

    def _infer(
        self, instance_id: str, rows: NDArray[np.float32]
    ) -> tuple[str, int | None, NDArray[np.float64] | None, float, str | None]:
        started = time.perf_counter()
        model = self.settings.router_model
        try:
            model = self._arm_for(instance_id)
            answer = self.client.infer(model, rows, instance_id)
        except (InferenceServerException, httpx.HTTPError) as error:
            self.metrics.inference_errors.labels(model=model).inc()
            logger.warning("scoring %s with %s failed: %s", instance_id, model, error)
            return model, None, None, time.perf_counter() - started, str(error)
        if (mismatch := self._not_held(answer.model, answer.version)) is not None:
            # Judged with another run's detector and threshold, the answer would be wrong:
            # the row waits (as for an endpoint that is down) until the serving side rolls.
            logger.warning("scoring %s: %s", instance_id, mismatch)
            return answer.model, answer.version, None, answer.latency_seconds, mismatch
        # What is logged and judged is the detector's served score of the model's answer.
        scores = self.models.scores(answer.model, answer.probabilities, rows)
        return answer.model, answer.version, scores, answer.latency_seconds, None

    def _not_held(self, model: str, version: int | None) -> str | None:
        """Why an answer by ``model``/``version`` cannot be judged: no alias holder is that
        model, or it is another version (Triton has not rolled onto moved aliases yet); None
        when it can."""
        arm = self.models.arm_of(model)
        if arm is None:
            return f"{model} answered, but it holds no serving alias in MLflow"
        if version is not None and version != arm.version:
            return (
                f"{model}/{version} answered, but {arm.alias} is {model}/{arm.version} in "
                "MLflow: the inference side has not rolled onto the aliases yet"
            )
        return None

    def _update_metrics(
        self, start: datetime, end: datetime, rows: pl.DataFrame, predictions: pl.DataFrame
    ) -> None:
        scored = predictions.filter(pl.col("result").is_not_null())
        for model, result, count in scored.group_by("model", "result").len().rows():
            self.metrics.predictions.labels(model=model, result=str(result)).inc(count)
        requests = (
            predictions.group_by(INSTANCE_ID)
            .agg(
                pl.col("model").first(), pl.col("latency_seconds").first(), pl.col("error").first()
            )
            .filter(pl.col("error").is_null())
        )
        for model, latency in requests.select("model", "latency_seconds").rows():
            self.metrics.latency.labels(model=model).observe(latency)
        self._rates.append((end, scored.height, int(scored["result"].sum() or 0)))
        while self._rates and self._rates[0][0] <= end - self.drift.span:
            self._rates.popleft()
        total = sum(rows_ for _, rows_, _ in self._rates)
        if total:
            self.metrics.anomaly_rate.set(sum(a for _, _, a in self._rates) / total)
        self.drift.add(end, rows)
        for feature, (psi, kl) in self.drift.drift().items():
            self.metrics.drift_psi.labels(feature=feature).set(psi)
            self.metrics.drift_kl.labels(feature=feature).set(kl)

    def _trigger_explanations(
        self,
        start: datetime,
        end: datetime,
        inputs: NDArray[np.float32],
        predictions: pl.DataFrame,
    ) -> list[str]:
        scored = predictions.with_row_index("row").filter(pl.col("result").is_not_null())
        verdicts = scored.group_by(INSTANCE_ID, maintain_order=True).agg(
            (pl.col("result").max() == 1).alias("flagged"),
            pl.col("probability").max().alias("max_probability"),
            pl.col("row").sort_by("probability").last(),
            pl.col("model").first(),
        )
        instances = self.incidents.observe(start, end, verdicts)
        if self.dispatcher is None or not instances:
            return instances
        chosen = verdicts.filter(pl.col(INSTANCE_ID).is_in(instances))
        for instance, score, row, model in chosen.select(
            INSTANCE_ID, "max_probability", "row", "model"
        ).iter_rows():
            self.dispatcher.submit(Anomaly(instance, start, end, score, model, inputs[row]))
        return instances


def _versions(models: ServedModels) -> set[tuple[str, int]]:
    """The (model, version) pairs ``models`` judge answers of."""
    return {(arm.model, arm.version) for arm in models.arms.values()}


def _holder_state(models: ServedModels) -> dict[str, tuple[str, int, float | None]]:
    """alias -> (model, version, threshold) of ``models``."""
    return {alias: (a.model, a.version, a.threshold) for alias, a in models.arms.items()}


def _threshold(tags: dict[str, str]) -> float | None:
    """A model version's threshold tag as a number; None when missing or not a number (the
    load then says why)."""
    try:
        return threshold_of(tags)
    except (KeyError, ValueError):
        return None


def build_scorer(settings: ScorerSettings, store_settings: Settings) -> Scorer:
    """A scorer for the models MLflow's aliases point at and the configured store."""
    return Scorer(settings, open_store(store_settings), load_served_models(settings.tracking_uri))
