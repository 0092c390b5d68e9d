"""The explanation trigger: once per incident, explain a confident anomaly off the hot path.

An incident is a run of consecutive windows in which an instance was flagged (any row at or
above its model's threshold). The first window of the run with a row above
``explain_threshold`` triggers one explanation; later windows of the same run do not. A
window without a flag ends the incident.

Triggered anomalies go into a bounded queue that one worker thread drains: it names the
metrics that explain the row (``contracts.attribution``: each metric's deviation from the
training rows, exact TreeSHAP of the XGBoost alias holder breaking ties), reads the
instance's recent log lines, posts ``contracts.explanation.ExplainRequest`` to
``POST /explain`` and keeps the answer in the store (``serving.explanation_log``). Scoring
only ever calls ``submit``, which never waits: a full queue drops the anomaly, a slow or down
explainer only delays the worker, and both are counted.
"""

import logging
import queue
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
import numpy as np
import polars as pl
import pyarrow.compute as pc
import xgboost as xgb
from numpy.typing import NDArray
from pydantic import SecretStr

from contracts import attribution
from contracts.detector import FittedDetector
from contracts.explanation import MAX_LOG_LINE_CHARS, ExplainRequest, FeatureContribution
from contracts.layout import raw_partition_path
from contracts.store import ObjectStore
from serving.explanation_log import write_explanation
from serving.metrics import ScorerMetrics

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Anomaly:
    """A confident anomaly: the instance's most anomalous row of the window."""

    instance_id: str
    window_start: datetime
    window_end: datetime
    score: float
    model: str
    row: NDArray[np.float32]


@dataclass
class _Incident:
    start: datetime
    last_window_end: datetime
    explained: bool


class IncidentTracker:
    """Which instances are in an incident, and whether it has been explained."""

    def __init__(self, explain_threshold: float) -> None:
        self.explain_threshold = explain_threshold
        self._open: dict[str, _Incident] = {}

    def observe(
        self, window_start: datetime, window_end: datetime, verdicts: pl.DataFrame
    ) -> list[str]:
        """Update incidents with one window; return the instances to explain now.

        Args:
            window_start: the window's start.
            window_end: the window's end.
            verdicts: one row per scored instance: instance_id, flagged (bool), max_probability.
        """
        to_explain = []
        for instance, flagged, score in verdicts.select(
            "instance_id", "flagged", "max_probability"
        ).iter_rows():
            incident = self._open.get(instance)
            if not flagged:
                self._open.pop(instance, None)
                continue
            if incident is None or incident.last_window_end != window_start:
                incident = self._open[instance] = _Incident(window_start, window_end, False)
            incident.last_window_end = window_end
            if not incident.explained and score > self.explain_threshold:
                incident.explained = True
                to_explain.append(instance)
        return to_explain


class ExplanationDispatcher:
    """A bounded queue of anomalies and the worker thread that explains them."""

    def __init__(
        self,
        url: str,
        metrics: ScorerMetrics,
        detector: FittedDetector,
        explainer: xgb.Booster | None,
        store: ObjectStore,
        *,
        queue_size: int = 100,
        timeout_s: float = 60.0,
        top_features: int = 10,
        log_lines: int = 50,
        api_key: SecretStr | None = None,
    ) -> None:
        self.url = url.rstrip("/") + "/explain"
        self.metrics = metrics
        self.detector = detector
        self.explainer = explainer
        self.store = store
        self.top_features = top_features
        self.log_lines = log_lines
        headers = {"X-API-Key": api_key.get_secret_value()} if api_key else {}
        self._http = httpx.Client(timeout=timeout_s, headers=headers)
        self._queue: queue.Queue[Anomaly | None] = queue.Queue(maxsize=queue_size)
        # Queued and in the worker's hands: what the explainer still owes an answer for.
        metrics.explanation_queue.set_function(lambda: self._queue.unfinished_tasks)
        self._worker = threading.Thread(target=self._run, name="explanations", daemon=True)
        self._worker.start()

    def submit(self, anomaly: Anomaly) -> bool:
        """Queue an anomaly without waiting; False (and counted as dropped) when full."""
        try:
            self._queue.put_nowait(anomaly)
        except queue.Full:
            self.metrics.explanations.labels(outcome="dropped").inc()
            logger.warning("explanation queue full: %s dropped", anomaly.instance_id)
            return False
        return True

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every queued anomaly was handled; False on timeout."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Stop the worker after the anomaly in hand; what is still queued is not sent."""
        while True:
            try:
                self._queue.get_nowait()
                self._queue.task_done()
            except queue.Empty:
                break
        self._queue.put(None)
        self._worker.join(timeout)
        self._http.close()

    def request_for(self, anomaly: Anomaly) -> ExplainRequest:
        """The /explain body: top SHAP contributions and the instance's recent log lines."""
        return ExplainRequest(
            instance_id=anomaly.instance_id,
            window_start=anomaly.window_start,
            window_end=anomaly.window_end,
            score=min(max(anomaly.score, 0.0), 1.0),
            model=anomaly.model,
            top_features=self._top_features(anomaly.row),
            log_lines=recent_log_lines(
                self.store,
                anomaly.instance_id,
                anomaly.window_start,
                anomaly.window_end,
                self.log_lines,
            ),
        )

    def _run(self) -> None:
        while (anomaly := self._queue.get()) is not None:
            try:
                request = self.request_for(anomaly)
                response = self._http.post(
                    self.url,
                    content=request.model_dump_json(),
                    headers={"Content-Type": "application/json"},
                )
                response.raise_for_status()
                write_explanation(self.store, request, response.json())
                self.metrics.explanations.labels(outcome="sent").inc()
            except Exception as error:  # the worker must survive anything one anomaly causes
                self.metrics.explanations.labels(outcome="failed").inc()
                logger.warning("explanation of %s failed: %s", anomaly.instance_id, error)
            finally:
                self._queue.task_done()
        self._queue.task_done()

    def _top_features(self, row: NDArray[np.float32]) -> list[FeatureContribution]:
        """The metrics that explain the anomaly, each by its most unusual window feature
        (``contracts.attribution``: deviation from the training rows, TreeSHAP of the XGBoost
        model breaking ties)."""
        detector = self.detector
        if not detector.metrics:
            return []
        state = detector.state_columns
        contributions = None
        if self.explainer is not None:
            matrix = xgb.DMatrix(row.reshape(1, -1), feature_names=detector.input_names)
            contributions = self.explainer.predict(matrix, pred_contribs=True)[:, state]
        ranked = attribution.top_features(
            row[state].reshape(1, -1),
            [detector.feature_names[j] for j in state],
            detector.metrics,
            detector.median,
            detector.scale,
            contributions,
            self.top_features,
        )
        return [
            FeatureContribution(
                name=feature.name,
                value=feature.value,
                baseline=feature.baseline,
                contribution=feature.contribution,
            )
            for feature in ranked
            if np.isfinite(feature.value)
        ]


def recent_log_lines(
    store: ObjectStore, instance_id: str, start: datetime, end: datetime, limit: int
) -> list[str]:
    """The instance's last ``limit`` log messages in ``[start, end)`` from the raw store."""
    if limit == 0:
        return []
    lines: list[str] = []
    hour = start.replace(minute=0, second=0, microsecond=0)
    while hour < end:
        key = raw_partition_path(hour)
        if store.exists(key):
            table = store.read_table(
                key, columns=["timestamp", "instance_id", "kind", "level", "message"]
            )
            stamps = table.column("timestamp")
            keep = pc.and_(
                pc.and_(
                    pc.equal(table.column("instance_id"), instance_id),
                    pc.equal(table.column("kind"), "log"),
                ),
                pc.and_(
                    pc.greater_equal(stamps, start),
                    pc.less(stamps, end),
                ),
            )
            for row in table.filter(keep).sort_by("timestamp").to_pylist():
                text = f"{row['timestamp']:%Y-%m-%dT%H:%M:%SZ} {row['level']} {row['message']}"
                lines.append(text[:MAX_LOG_LINE_CHARS])
        hour += timedelta(hours=1)
    return lines[-limit:]
