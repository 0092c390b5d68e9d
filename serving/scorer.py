"""The online scorer: every window, the window's feature rows → the A/B endpoint → metrics,
drift, the prediction log and, for confident anomalies, an explanation.

``Scorer.score_once(start, end)`` scores one window; ``replay`` scores a past range window
by window (as fast as it goes, or paced); ``run_periodically`` scores each window as it
closes. The metrics, ``/feedback`` and health routes are served by ``serving.scorer_app``.

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
from datetime import UTC, datetime, timedelta

import httpx
import numpy as np
import polars as pl
from numpy.typing import NDArray
from tritonclient.utils import InferenceServerException

from contracts.features import INSTANCE_ID, TIMESTAMP
from contracts.serving import CHALLENGER
from contracts.settings import Settings
from contracts.store import ObjectStore, open_store
from serving.drift import DriftMonitor
from serving.explain_trigger import Anomaly, ExplanationDispatcher, IncidentTracker
from serving.feedback import AccuracyTracker, FeedbackCreate, FeedbackPublic, window_verdict
from serving.inference import InferenceClient, assigned_model, choose_arm
from serving.metrics import ScorerMetrics
from serving.prediction_log import (
    predictions_key,
    read_window_predictions,
    write_feedback,
    write_predictions,
)
from serving.scorer_settings import ScorerSettings
from serving.served_models import ServedModels, load_served_models
from serving.window_features import read_window_features

logger = logging.getLogger(__name__)


class FeedbackError(ValueError):
    """Feedback that names no scored window; ``status`` is the HTTP status to answer and
    ``field`` the body field at fault, if one is."""

    def __init__(self, message: str, status: int, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.field = field


class WindowNotScoredError(RuntimeError):
    """The inference endpoint answered none of a window's requests (it is down or
    unreachable); nothing of the window was recorded, so it can be scored again."""


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
        span = timedelta(seconds=settings.anomaly_rate_seconds)
        self.drift = DriftMonitor(models.reference, span)
        self.incidents = IncidentTracker(settings.explain_threshold)
        self.accuracy = AccuracyTracker(settings.accuracy_window)
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
        self._lock = threading.Lock()  # one window at a time; feedback reads the metrics too
        for model in {arm.model for arm in models.arms.values()}:
            for result in ("0", "1"):
                self.metrics.predictions.labels(model=model, result=result)

    @property
    def window(self) -> timedelta:
        return timedelta(seconds=self.settings.window_seconds)

    def score_once(self, start: datetime, end: datetime | None = None) -> WindowResult:
        """Score the rows with ``start <= timestamp < end`` (default: one window long).

        Reads the rows, scores each instance's rows in one request, writes the window's
        predictions to the store, updates every metric and queues explanations. A request
        that fails is kept as an ``error`` row; a window none of whose requests was answered
        raises before anything is recorded, so scoring it again counts each row once.

        Raises:
            WindowNotScoredError: the endpoint answered none of the window's requests.
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

    def record_feedback(self, feedback: FeedbackCreate) -> FeedbackPublic:
        """Keep a label, compare it with the window's verdict and update ``model_accuracy``.

        Raises:
            FeedbackError: the window is not on the window grid (422) or the instance was
                not scored in it (404).
        """
        start = feedback.window_start.astimezone(UTC)
        if start.timestamp() % self.settings.window_seconds:
            raise FeedbackError(
                f"window_start {start.isoformat()} is not the start of a "
                f"{self.settings.window_seconds} s scoring window",
                422,
                "window_start",
            )
        verdict = window_verdict(read_window_predictions(self.store, start), feedback.instance_id)
        if verdict is None:
            raise FeedbackError(
                f"{feedback.instance_id} was not scored in the window starting {start.isoformat()}",
                404,
            )
        model, predicted = verdict
        row = {
            "instance_id": feedback.instance_id,
            "window_start": start,
            "label": feedback.label,
            "received_at": datetime.now(UTC),
        }
        write_feedback(self.store, pl.DataFrame([row]))
        correct = predicted == feedback.label
        with self._lock:
            self.metrics.accuracy.labels(model=model).set(self.accuracy.add(model, correct))
            outcome = "correct" if correct else "incorrect"
            self.metrics.feedback.labels(model=model, outcome=outcome).inc()
        return FeedbackPublic(
            instance_id=feedback.instance_id,
            window_start=start,
            label=feedback.label,
            model=model,
            predicted=predicted,
            correct=correct,
        )

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
        # What is logged and judged is the detector's served score of the model's answer.
        scores = self.models.scores(answer.model, answer.probabilities, rows)
        return answer.model, answer.version, scores, answer.latency_seconds, None

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


def build_scorer(settings: ScorerSettings, store_settings: Settings) -> Scorer:
    """A scorer for the models MLflow's aliases point at and the configured store."""
    return Scorer(settings, open_store(store_settings), load_served_models(settings.tracking_uri))


def window_start_of(moment: datetime, window: timedelta) -> datetime:
    """The start of the window holding ``moment`` (windows start at multiples of ``window``)."""
    seconds = window.total_seconds()
    return datetime.fromtimestamp(moment.timestamp() // seconds * seconds, UTC)


def replay(
    scorer: Scorer, start: datetime, end: datetime, pace_seconds: float = 0.0
) -> list[WindowResult]:
    """Score the windows from ``start``'s window up to ``end``, one after another.

    Args:
        scorer: the scorer.
        start: the first window is the one holding ``start``.
        end: windows starting before ``end`` are scored.
        pace_seconds: wall-clock seconds between windows (0: as fast as possible), to replay
            a past range at an accelerated pace.

    Raises:
        WindowNotScoredError: the endpoint answered none of a window's requests; the windows
            before it are scored, replay again from that one.
    """
    results = []
    window = window_start_of(start, scorer.window)
    while window < end:
        results.append(scorer.score_once(window))
        window += scorer.window
        if pace_seconds and window < end:
            time.sleep(pace_seconds)
    return results


def first_pending_window(scorer: Scorer, now: datetime) -> datetime:
    """Where the loop starts: right after the last window scored within the last
    ``catch_up_windows``, so windows that closed while the scorer was down (a restart, a
    deploy) are scored, oldest first; the open window when none of them was scored (a first
    start, or an outage longer than the catch-up, whose older windows ``replay`` can fill)."""
    current = window_start_of(now, scorer.window)
    for back in range(1, scorer.settings.catch_up_windows + 1):
        window = current - back * scorer.window
        if scorer.store.exists(predictions_key(window)):  # empty windows are written too
            return window + scorer.window
    return current


def run_periodically(scorer: Scorer, stop: threading.Event) -> None:
    """Score each window once it has closed, until ``stop`` is set, starting with the windows
    missed while down (``first_pending_window``); a failed window is logged and retried at the
    next tick (a second later), so an outage delays windows, never drops them."""
    pending = first_pending_window(scorer, datetime.now(UTC))
    if pending < window_start_of(datetime.now(UTC), scorer.window):
        logger.info("catching up on the windows from %s", pending.isoformat())
    while not stop.is_set():
        now = datetime.now(UTC)
        while pending + scorer.window <= now and not stop.is_set():
            try:
                scorer.score_once(pending)
            except WindowNotScoredError as error:
                logger.warning("%s; retrying", error)
                break
            except Exception:
                logger.exception("scoring the window starting %s failed", pending.isoformat())
                break
            pending += scorer.window
        wait = (pending + scorer.window - datetime.now(UTC)).total_seconds()
        stop.wait(max(wait, 1.0))
