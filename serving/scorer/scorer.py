"""The online scorer: every window, the window's feature rows → the A/B endpoint → metrics,
drift, the prediction log and, for confident anomalies, an explanation.

``Scorer.score_once(start, end)`` scores one window; ``replay`` scores a past range window
by window (as fast as it goes, or paced); ``run_periodically`` scores each window as it
closes, and ``watch_aliases`` beside it follows MLflow's aliases. The metrics, ``/feedback``
and health routes are served by ``serving.scorer.app``.

Each instance's rows of a window go in one request, so an instance is scored by one arm per
window, and its window verdict (flagged if any row is) is what feedback is compared with.

A window that fails is tried again ``window_retry_seconds`` later. When the failure is the
outside world's (the inference endpoint or the object store does not answer) it is retried
until it passes: an outage delays windows, never drops them. When it is the window's own (a
corrupt feature file, rows that do not fit the models) it is retried ``window_max_attempts``
times, then skipped: recorded under ``scorer/skipped/``, logged, counted in
``scorer_windows_skipped_total``, and the loop moves on to the next window.
"""

import itertools
import json
import logging
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import httpx
import numpy as np
import polars as pl
from mlflow import MlflowClient
from numpy.typing import NDArray
from tritonclient.utils import InferenceServerException

from contracts.features import INSTANCE_ID, TIMESTAMP
from contracts.serving import CHALLENGER, THRESHOLD_TAG
from contracts.settings import Settings
from contracts.store import ObjectStore, open_store
from serving.scorer.aliases import alias_holders
from serving.scorer.drift import DriftMonitor
from serving.scorer.explain_trigger import Anomaly, ExplanationDispatcher, IncidentTracker
from serving.scorer.feedback import (
    AccuracyTracker,
    FeedbackAccepted,
    FeedbackBatchCreate,
    FeedbackBatchPublic,
    FeedbackCreate,
    FeedbackPublic,
    FeedbackRejected,
    FeedbackRoute,
    read_idempotent_answer,
    request_fingerprint,
    window_verdict,
    write_idempotent_answer,
)
from serving.scorer.inference import InferenceClient, assigned_model, choose_arm
from serving.scorer.metrics import ScorerMetrics
from serving.scorer.prediction_log import (
    PREDICTIONS_PREFIX,
    predictions_key,
    read_window_predictions,
    write_feedback,
    write_predictions,
)
from serving.scorer.served_models import ServedModels, load_served_models
from serving.scorer.settings import ScorerSettings
from serving.scorer.window_features import read_window_features

logger = logging.getLogger(__name__)

# One JSON record per window given up on: its bounds, the attempts and the last error.
SKIPPED_PREFIX = "scorer/skipped"


def skipped_key(window_start: datetime) -> str:
    return f"{SKIPPED_PREFIX}/{window_start:%Y-%m-%d}/window_{window_start:%H%M%S}.json"


class FeedbackError(ValueError):
    """Feedback that names no scored window, or reuses an idempotency key for another request;
    ``status`` is the HTTP status to answer and ``field`` the body field at fault, if one is."""

    def __init__(self, message: str, status: int, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.field = field


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
        # One window at a time, judged by one set of models; feedback reads the metrics too.
        self._lock = threading.Lock()
        # Feedback requests one at a time: an idempotency key is looked up, the labels stored
        # and the answer kept as one step, so two copies of a request never both store.
        self._feedback_lock = threading.Lock()
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

    def record_feedback(
        self, feedback: FeedbackCreate, idempotency_key: str | None = None
    ) -> tuple[FeedbackPublic, bool]:
        """Keep a label, compare it with the window's verdict and update ``model_accuracy``.

        Returns:
            What the scorer made of the label, and whether that is the kept answer to an
            earlier request with ``idempotency_key`` (then nothing was stored or counted).

        Raises:
            FeedbackError: the window is not on the window grid (422), the instance was not
                scored in it (404), or ``idempotency_key`` was used for another request (409).
        """
        fingerprint = request_fingerprint("feedback", [feedback])
        with self._feedback_lock:
            if idempotency_key is not None:
                earlier = self._kept_answer("feedback", idempotency_key, fingerprint)
                if earlier is not None:
                    return FeedbackPublic.model_validate(earlier), True
            answer = self._judge(feedback, {})
            self._store_labels([(feedback, answer)])
            if idempotency_key is not None:
                write_idempotent_answer(self.store, idempotency_key, fingerprint, answer)
        return answer, False

    def record_feedback_batch(
        self, batch: FeedbackBatchCreate, idempotency_key: str
    ) -> tuple[FeedbackBatchPublic, bool]:
        """Keep a batch's valid labels and report the others, item by item.

        A label that would be refused alone (its window is not a window start, the instance
        was not scored in it, or it repeats an earlier item's instance and window) is
        reported with that status and not stored; the others are stored together (one
        Parquet file per window day they cover) and counted as single labels are. A retry
        with the same key gets the first answer back and stores nothing.

        Returns:
            The answer, and whether it is the kept answer to an earlier request.

        Raises:
            FeedbackError: ``idempotency_key`` was used for another request (409).
        """
        fingerprint = request_fingerprint("feedback_batch", batch.labels)
        with self._feedback_lock:
            earlier = self._kept_answer("feedback_batch", idempotency_key, fingerprint)
            if earlier is not None:
                return FeedbackBatchPublic.model_validate(earlier), True
            verdicts: dict[datetime, pl.DataFrame] = {}  # one read per window of the batch
            first_of: dict[tuple[str, datetime], int] = {}
            judged: list[tuple[FeedbackCreate, FeedbackPublic]] = []
            accepted, rejected = [], []
            for index, label in enumerate(batch.labels):
                start = label.window_start.astimezone(UTC)
                try:
                    if (repeated := first_of.get((label.instance_id, start))) is not None:
                        raise FeedbackError(
                            f"repeats item {repeated} ({label.instance_id}, {start.isoformat()})",
                            422,
                        )
                    answer = self._judge(label, verdicts)
                except FeedbackError as error:
                    rejected.append(
                        FeedbackRejected(index=index, status=error.status, detail=str(error))
                    )
                    continue
                first_of[(label.instance_id, start)] = index
                judged.append((label, answer))
                accepted.append(FeedbackAccepted(index=index, **answer.model_dump()))
            self._store_labels(judged)
            public = FeedbackBatchPublic(
                idempotency_key=idempotency_key, accepted=accepted, rejected=rejected
            )
            write_idempotent_answer(self.store, idempotency_key, fingerprint, public)
        return public, False

    def _kept_answer(self, route: FeedbackRoute, key: str, fingerprint: str) -> object | None:
        kept = read_idempotent_answer(self.store, key)
        if kept is None:
            return None
        kept_fingerprint, answer = kept
        if kept_fingerprint != fingerprint:
            raise FeedbackError(
                f"idempotency key {key!r} was used for another request; use a new key "
                f"for this {route.replace('_', ' ')}",
                409,
            )
        self.metrics.feedback_replays.inc()
        return answer

    def _judge(
        self, feedback: FeedbackCreate, predictions: dict[datetime, pl.DataFrame]
    ) -> FeedbackPublic:
        """The window's verdict for a label, read from the prediction log (cached per window
        in ``predictions``); nothing is stored.

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
        if start not in predictions:
            predictions[start] = read_window_predictions(self.store, start)
        verdict = window_verdict(predictions[start], feedback.instance_id)
        if verdict is None:
            raise FeedbackError(
                f"{feedback.instance_id} was not scored in the window starting {start.isoformat()}",
                404,
            )
        model, predicted = verdict
        return FeedbackPublic(
            instance_id=feedback.instance_id,
            window_start=start,
            label=feedback.label,
            model=model,
            predicted=predicted,
            correct=predicted == feedback.label,
        )

    def _store_labels(self, judged: list[tuple[FeedbackCreate, FeedbackPublic]]) -> None:
        """Write labels (one file per window day: the feedback log is read day by day), then
        count them in ``model_accuracy`` and ``model_feedback_total``."""
        received = datetime.now(UTC)
        days: dict[date, list[dict[str, object]]] = {}
        for feedback, answer in judged:
            row = {
                "instance_id": feedback.instance_id,
                "window_start": answer.window_start,
                "label": feedback.label,
                "received_at": received,
            }
            days.setdefault(answer.window_start.date(), []).append(row)
        for rows in days.values():
            write_feedback(self.store, pl.DataFrame(rows))
        with self._lock:
            for _, answer in judged:
                model, correct = answer.model, answer.correct
                self.metrics.accuracy.labels(model=model).set(self.accuracy.add(model, correct))
                outcome = "correct" if correct else "incorrect"
                self.metrics.feedback.labels(model=model, outcome=outcome).inc()

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
        return float(tags[THRESHOLD_TAG])
    except (KeyError, ValueError):
        return None


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
    """Where the loop starts: right after the last window scored (or skipped) within the last
    ``catch_up_windows``, so windows that closed while the scorer was down (a restart, a
    deploy) are scored, oldest first; the open window when none of them was scored (a first
    start, or an outage longer than the catch-up, whose older windows ``replay`` can fill)."""
    current = window_start_of(now, scorer.window)
    for back in range(1, scorer.settings.catch_up_windows + 1):
        window = current - back * scorer.window
        # Empty windows are written too; a skipped window is not tried again after a restart.
        if scorer.store.exists(predictions_key(window)) or scorer.store.exists(skipped_key(window)):
            return window + scorer.window
    return current


def failure_reason(scorer: Scorer, error: Exception) -> str:
    """Whose failure a failed window is: ``endpoint`` (no inference request answered),
    ``store`` (the object store does not answer either) or ``window`` (an error of the
    window's own, e.g. a corrupt feature file: the store answers, the window's data fails)."""
    if isinstance(error, WindowNotScoredError):
        return "endpoint"
    try:
        scorer.store.exists(PREDICTIONS_PREFIX)
    except Exception:  # S3 unreachable, throttled, credentials expired…: not the window's fault
        return "store"
    return "window"


def skip_window(scorer: Scorer, start: datetime, error: Exception, attempts: int) -> None:
    """Give up on a window: record it under ``scorer/skipped/``, log it and count it."""
    end = start + scorer.window
    record = {
        "window_start": start.isoformat(),
        "window_end": end.isoformat(),
        "attempts": attempts,
        "error_type": type(error).__name__,
        "error": str(error),
        "skipped_at": datetime.now(UTC).isoformat(),
    }
    key = skipped_key(start)
    try:
        scorer.store.write_bytes(key, json.dumps(record, indent=2).encode())
    except Exception:  # the log line and the metric still say it
        logger.exception("could not record the skipped window at %s", key)
    scorer.metrics.windows_skipped.inc()
    logger.error(
        "skipped the window %s – %s after %d failed attempts (recorded at %s): %s: %s",
        start.isoformat(),
        end.isoformat(),
        attempts,
        key,
        type(error).__name__,
        error,
    )


def run_periodically(scorer: Scorer, stop: threading.Event) -> None:
    """Score each window once it has closed, until ``stop`` is set, starting with the windows
    missed while down (``first_pending_window``).

    A failed window is tried again ``window_retry_seconds`` later: without limit when the
    endpoint or the store is down (an outage delays windows, never drops them), at most
    ``window_max_attempts`` times when the error is the window's own; then it is skipped
    (``skip_window``) and the next window is scored.
    """
    settings = scorer.settings
    pending = None
    while pending is None:  # the store may be down at start: wait for it, never give up
        try:
            pending = first_pending_window(scorer, datetime.now(UTC))
        except Exception as error:
            scorer.metrics.window_failures.labels(reason="store").inc()
            logger.warning("finding the first window to score failed: %s; retrying", error)
            if stop.wait(settings.window_retry_seconds):
                return
    if pending < window_start_of(datetime.now(UTC), scorer.window):
        logger.info("catching up on the windows from %s", pending.isoformat())
    attempts = 0  # failed attempts at ``pending``
    while not stop.is_set():
        failed = False
        while pending + scorer.window <= datetime.now(UTC) and not stop.is_set():
            try:
                scorer.score_once(pending)
            except Exception as error:
                reason = failure_reason(scorer, error)
                scorer.metrics.window_failures.labels(reason=reason).inc()
                if reason != "window":
                    logger.warning("%s (%s unavailable); retrying", error, reason)
                    failed = True
                    break
                attempts += 1
                if attempts < settings.window_max_attempts:
                    logger.warning(
                        "scoring the window starting %s failed (attempt %d of %d)",
                        pending.isoformat(),
                        attempts,
                        settings.window_max_attempts,
                        exc_info=error,
                    )
                    failed = True
                    break
                skip_window(scorer, pending, error, attempts)
            attempts = 0
            pending += scorer.window
        if failed:
            wait = settings.window_retry_seconds
        else:
            wait = max((pending + scorer.window - datetime.now(UTC)).total_seconds(), 0.05)
        stop.wait(wait)


def watch_aliases(scorer: Scorer, stop: threading.Event) -> None:
    """Every ``alias_check_seconds`` until ``stop`` is set, reload the scorer's models when an
    MLflow alias moved (``Scorer.reload_if_aliases_moved``). A failure (MLflow down, a new
    holder without its threshold tag) is logged and counted; the models in use stay and the
    next check tries again. Runs in its own thread: a slow MLflow never holds a window up."""
    interval = scorer.settings.alias_check_seconds
    while not stop.wait(interval):
        try:
            if scorer.reload_if_aliases_moved():
                scorer.metrics.model_reloads.labels(outcome="loaded").inc()
        except Exception:
            scorer.metrics.model_reloads.labels(outcome="failed").inc()
            logger.exception(
                "reloading the served models from MLflow failed; keeping %s", scorer.models.holders
            )
