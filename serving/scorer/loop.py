"""The scoring loop around ``Scorer.score_once``: ``replay`` scores a past range window by
window (as fast as it goes, or paced); ``run_periodically`` scores each window as it closes,
starting with those missed while down, and ``watch_aliases`` beside it follows MLflow's
aliases.

A window that fails is tried again ``window_retry_seconds`` later. When the failure is the
outside world's (the inference endpoint or the object store does not answer) it is retried
until it passes: an outage delays windows, never drops them. When it is the window's own (a
corrupt feature file, rows that do not fit the models) it is retried ``window_max_attempts``
times, then skipped: recorded under ``scorer/skipped/``, logged, counted in
``scorer_windows_skipped_total``, and the loop moves on to the next window.
"""

import json
import logging
import threading
import time
from datetime import UTC, datetime, timedelta

from serving.scorer.prediction_log import PREDICTIONS_PREFIX, predictions_key
from serving.scorer.scorer import Scorer, WindowNotScoredError, WindowResult

logger = logging.getLogger(__name__)

# One JSON record per window given up on: its bounds, the attempts and the last error.
SKIPPED_PREFIX = "scorer/skipped"


def skipped_key(window_start: datetime) -> str:
    return f"{SKIPPED_PREFIX}/{window_start:%Y-%m-%d}/window_{window_start:%H%M%S}.json"


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
