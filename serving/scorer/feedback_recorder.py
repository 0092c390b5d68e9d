"""Feedback labels (``POST /feedback`` and ``/feedback/batch``): each judged against its
window's verdict in the prediction log, stored in the feedback log, and counted in
``model_accuracy`` and ``model_feedback_total``; a request repeated with its idempotency key
gets the first answer back and stores nothing again.
"""

import threading
from datetime import UTC, date, datetime

import polars as pl

from contracts.store import ObjectStore
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
from serving.scorer.metrics import ScorerMetrics
from serving.scorer.prediction_log import read_window_predictions, write_feedback
from serving.scorer.settings import ScorerSettings


class FeedbackError(ValueError):
    """Feedback that names no scored window, or reuses an idempotency key for another request;
    ``status`` is the HTTP status to answer and ``field`` the body field at fault, if one is."""

    def __init__(self, message: str, status: int, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.field = field


class FeedbackRecorder:
    """Judges, stores and counts the labels posted to a scorer."""

    def __init__(
        self,
        settings: ScorerSettings,
        store: ObjectStore,
        metrics: ScorerMetrics,
        window_lock: threading.Lock,
    ) -> None:
        """``window_lock`` is the scorer's: the accuracy metrics are updated between windows."""
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self.accuracy = AccuracyTracker(settings.accuracy_window)
        self._window_lock = window_lock
        # Feedback requests one at a time: an idempotency key is looked up, the labels stored
        # and the answer kept as one step, so two copies of a request never both store.
        self._lock = threading.Lock()

    def record(
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
        with self._lock:
            if idempotency_key is not None:
                earlier = self._kept_answer("feedback", idempotency_key, fingerprint)
                if earlier is not None:
                    return FeedbackPublic.model_validate(earlier), True
            answer = self._judge(feedback, {})
            self._store_labels([(feedback, answer)])
            if idempotency_key is not None:
                write_idempotent_answer(self.store, idempotency_key, fingerprint, answer)
        return answer, False

    def record_batch(
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
        with self._lock:
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
        with self._window_lock:
            for _, answer in judged:
                model, correct = answer.model, answer.correct
                self.metrics.accuracy.labels(model=model).set(self.accuracy.add(model, correct))
                outcome = "correct" if correct else "incorrect"
                self.metrics.feedback.labels(model=model, outcome=outcome).inc()
