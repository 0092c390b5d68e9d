"""The explanation trigger: once per incident, explain a confident anomaly off the hot path.

An incident is a run of consecutive windows in which an instance was flagged (any row at or
above its model's threshold). The first window of the run with a row above
``explain_threshold`` triggers one explanation; later windows of the same run do not. A
window without a flag ends the incident.

Triggered anomalies go into a bounded queue that one worker thread drains: it names the
metrics that explain the row (``contracts.attribution``: each metric's deviation from the
training rows, exact TreeSHAP of the XGBoost alias holder breaking ties), reads the
instance's recent log lines and the window's log evidence (``log_evidence``), posts
``contracts.explanation.ExplainRequest`` to ``POST /explain`` and keeps the answer in the
store (``serving.scorer.explanation_log``). Scoring only ever calls ``submit``, which never waits: a
full queue drops the anomaly, a slow or down explainer only delays the worker, and both are
counted.

Log evidence: the instance's raw log rows of the window and of ``log_history`` before it are
read as records (a row the exporter kept whole is parsed by ``telemetry.logs.detection``),
mined into templates (``telemetry.logs.templates``) and run through the log anomaly detector
(``telemetry.logs.anomalies``, 1-minute windows). Templates it flags inside the window as new
(never seen in the history read), spiking or part of an error burst become the evidence,
with their count, their usual count in a window as long, and example lines.
"""

import logging
import queue
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import numpy as np
import polars as pl
import pyarrow.compute as pc
import xgboost as xgb
from numpy.typing import NDArray
from pydantic import SecretStr

from contracts import attribution
from contracts.detector import FittedDetector
from contracts.explanation import (
    LOG_EVIDENCE_KINDS,
    MAX_EVIDENCE_EXAMPLES,
    MAX_LOG_EVIDENCE,
    MAX_LOG_LINE_CHARS,
    ExplainRequest,
    FeatureContribution,
    LogEvidence,
    LogEvidenceKind,
)
from contracts.raw_window import read_raw_window
from contracts.store import ObjectStore
from serving.scorer.explanation_log import write_explanation
from serving.scorer.metrics import ScorerMetrics
from telemetry.logs.anomalies import Alert, DetectorSettings, LogAnomalyDetector, WindowedRecord
from telemetry.logs.raw_rows import raw_log_records
from telemetry.logs.records import LogRecord
from telemetry.logs.templates import LogTemplateMiner

logger = logging.getLogger(__name__)

_RAW_LOG_COLUMNS = ["timestamp", "instance_id", "source", "kind", "level", "message", "parse_error"]
# "New" is never seen in the history read: with the detector's default (seen fewer than 10
# times) every warning of a few hours of one instance's history would be new.
EVIDENCE_DETECTOR = DetectorSettings(rare_below=1)
_SIGNAL_KINDS: dict[str, LogEvidenceKind] = {
    "new_template": "novel",
    "spike": "spike",
    "error_burst": "error_burst",
}
# Most telling first: the most severe level, then new before spiking before bursting.
_SEVERITY = {"CRITICAL": 4, "ERROR": 3, "WARN": 2, None: 1}
EXAMPLE_CHARS = 300


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
        log_evidence: int = 10,
        log_history: timedelta = timedelta(hours=6),
        api_key: SecretStr | None = None,
    ) -> None:
        self.url = url.rstrip("/") + "/explain"
        self.metrics = metrics
        self.detector = detector
        self.explainer = explainer
        self.store = store
        self.top_features = top_features
        self.log_lines = log_lines
        self.log_evidence = min(log_evidence, MAX_LOG_EVIDENCE)
        self.log_history = log_history
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
        """The /explain body: the metrics that explain the row, the instance's recent log
        lines and the window's log evidence."""
        start, end = anomaly.window_start, anomaly.window_end
        since = start - self.log_history if self.log_evidence else start
        rows = read_log_rows(self.store, anomaly.instance_id, since, end)
        in_window = [row for row in rows if row["timestamp"] >= start]
        evidence: list[LogEvidence] = []
        if self.log_evidence:
            try:
                evidence = log_evidence(rows, since, start, end, self.log_evidence)
            except Exception:  # evidence helps an explanation; it must never cost one
                logger.exception("log evidence of %s failed", anomaly.instance_id)
        return ExplainRequest(
            instance_id=anomaly.instance_id,
            window_start=start,
            window_end=end,
            score=min(max(anomaly.score, 0.0), 1.0),
            model=anomaly.model,
            top_features=self._top_features(anomaly.row),
            log_lines=format_log_lines(in_window, self.log_lines),
            log_evidence=evidence,
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


def read_log_rows(
    store: ObjectStore, instance_id: str, start: datetime, end: datetime
) -> list[dict[str, Any]]:
    """The instance's raw log rows in ``[start, end)``, in time order."""
    mine = (pc.field("instance_id") == instance_id) & (pc.field("kind") == "log")
    table = read_raw_window(store, start, end, _RAW_LOG_COLUMNS, where=mine)
    if not table.num_rows:
        return []
    rows: list[dict[str, Any]] = table.sort_by("timestamp").to_pylist()
    return rows


def format_log_lines(rows: Sequence[dict[str, Any]], limit: int) -> list[str]:
    """The last ``limit`` rows as ``TIMESTAMP LEVEL message`` lines (no level when the row has
    none), each cut to the contract's length."""
    lines = []
    for row in rows[-limit:] if limit else ():
        level = f" {row['level']}" if row["level"] else ""
        text = f"{row['timestamp']:%Y-%m-%dT%H:%M:%SZ}{level} {row['message']}"
        lines.append(text[:MAX_LOG_LINE_CHARS])
    return lines


def log_evidence(
    rows: Sequence[dict[str, Any]],
    since: datetime,
    start: datetime,
    end: datetime,
    limit: int,
    examples: int = 3,
) -> list[LogEvidence]:
    """The window's new, spiking and error-burst templates, most telling first.

    Args:
        rows: The instance's raw log rows in ``[since, end)``, in time order.
        since: Start of the history read before the window.
        start: The window's start.
        end: The window's end.
        limit: Most templates returned.
        examples: Most example lines per template.

    Returns:
        At most ``limit`` evidence items; none when nothing in the window stood out.
    """
    records = raw_log_records(rows)
    miner = LogTemplateMiner()
    detector = LogAnomalyDetector(EVIDENCE_DETECTOR)
    texts: dict[int, str] = {}
    template_ids: list[int] = []
    alerts: list[Alert] = []
    for record in records:
        template = miner.add(record.first_line)
        texts[template.template_id] = template.text  # the latest text is the most general
        template_ids.append(template.template_id)
        # The detector alerts at WARN and above; a line naming no level is judged as a warning.
        judged = record if record.level else record._replace(level="WARN")
        alerts += detector.observe(WindowedRecord(judged, template.template_id))
    alerts += detector.flush()

    def in_window(record: LogRecord) -> bool:
        return record.timestamp is not None and record.timestamp >= start

    kinds: dict[int, set[LogEvidenceKind]] = defaultdict(set)
    for alert in alerts:
        if in_window(records[alert.line - 1]):
            kinds[alert.template_id].update(
                _SIGNAL_KINDS[signal] for signal in alert.signals if signal in _SIGNAL_KINDS
            )
    before: Counter[int] = Counter()
    counts: Counter[int] = Counter()
    levels: dict[int, str | None] = {}
    lines: dict[int, list[str]] = defaultdict(list)
    for row, record, template_id in zip(rows, records, template_ids, strict=True):
        if not in_window(record):
            before[template_id] += 1
            continue
        counts[template_id] += 1
        if _SEVERITY.get(record.level, 0) > _SEVERITY.get(levels.get(template_id), 0):
            levels[template_id] = record.level
        line = str(row["message"] or "").partition("\n")[0][:EXAMPLE_CHARS]
        if len(lines[template_id]) < examples and line not in lines[template_id]:
            lines[template_id].append(line)
    scale = (end - start) / (start - since) if start > since else 0.0
    evidence = [
        LogEvidence(
            template=texts[template_id][:MAX_LOG_LINE_CHARS] or "<empty>",
            template_id=template_id,
            kind=next(kind for kind in LOG_EVIDENCE_KINDS if kind in flagged),
            level=levels.get(template_id),
            count=counts[template_id],
            baseline=round(before[template_id] * scale, 3),
            examples=lines[template_id][:MAX_EVIDENCE_EXAMPLES],
        )
        for template_id, flagged in kinds.items()
        if flagged
    ]
    evidence.sort(
        key=lambda item: (
            -_SEVERITY.get(item.level, 0),
            LOG_EVIDENCE_KINDS.index(item.kind),
            -item.count,
        )
    )
    return evidence[:limit]
