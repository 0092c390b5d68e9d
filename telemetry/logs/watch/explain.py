"""An anomalous window explained by the explainer (``POST /explain``), off the watch loop.

The window becomes a ``contracts.explanation.ExplainRequest``: the source as the instance,
the window's bounds, a score from its most severe anomaly, and as log lines each anomaly
(kind, template, count against usual) followed by its example lines. The request carries
the API key (``contracts.auth.API_KEY_HEADER``) when one is configured. Requests run on one
worker thread, so a slow explainer delays only the emission of the windows it explains; an
explainer that is down, slow past the timeout, or refuses the request gives an
``unavailable`` explanation with the reason, never an error of the watcher.
"""

from concurrent.futures import Future, ThreadPoolExecutor

import httpx
from pydantic import SecretStr, ValidationError

from contracts.auth import API_KEY_HEADER
from contracts.explanation import (
    MAX_LOG_LINE_CHARS,
    MAX_LOG_LINES,
    ExplainRequest,
    ExplainResponse,
)
from contracts.log_analysis import SEVERITIES, Severity
from contracts.log_watch import WATCH_MODEL_NAME, LogWatchWindow, WatchExplanation
from telemetry.logs.watch.detector import most_severe
from telemetry.logs.watch.metrics import WatchMetrics

# The score of a window for the explainer (ExplainRequest.score is a probability): how sure
# the watcher is that the window is anomalous, by its most severe anomaly.
SEVERITY_SCORE: dict[Severity, float] = {
    "critical": 1.0,
    "high": 0.9,
    "medium": 0.7,
    "low": 0.5,
    "info": 0.3,
}
MAX_INSTANCE_CHARS = 128


def explain_request(window: LogWatchWindow) -> ExplainRequest:
    """The request that asks about ``window``'s anomalies."""
    lines: list[str] = []
    for anomaly in window.anomalies:
        lines.append(
            f"[{anomaly.kind} {anomaly.severity}] template {anomaly.template_id} "
            f"{anomaly.template!r}: {anomaly.detail}"
        )
        lines += [example.text for example in anomaly.examples]
    source = window.source if len(window.source) <= MAX_INSTANCE_CHARS else window.source[-128:]
    severity = most_severe(window.anomalies) or "info"
    return ExplainRequest(
        instance_id=source,
        window_start=window.start,
        window_end=window.end,
        score=SEVERITY_SCORE[severity],
        model=WATCH_MODEL_NAME,
        log_lines=[line[:MAX_LOG_LINE_CHARS] for line in lines[:MAX_LOG_LINES]],
    )


class WindowExplainer:
    """Explains anomalous windows on a worker thread.

    Args:
        url: The explainer's base URL.
        api_key: Its API key (None: no header).
        timeout_s: Seconds a request may take.
        min_severity: Windows with an anomaly at least this severe are explained.
        metrics: Counts explanations by outcome.
    """

    def __init__(
        self,
        url: str,
        api_key: SecretStr | None,
        timeout_s: float,
        min_severity: Severity = "high",
        metrics: WatchMetrics | None = None,
    ) -> None:
        self.url = url.rstrip("/") + "/explain"
        self.min_severity = min_severity
        self.metrics = metrics
        headers = {API_KEY_HEADER: api_key.get_secret_value()} if api_key else {}
        self._http = httpx.Client(timeout=timeout_s, headers=headers)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="watch-explain")

    def wants(self, window: LogWatchWindow) -> bool:
        """Whether the window has an anomaly severe enough to explain."""
        severity = most_severe(window.anomalies)
        return severity is not None and SEVERITIES.index(severity) <= SEVERITIES.index(
            self.min_severity
        )

    def submit(self, window: LogWatchWindow) -> "Future[WatchExplanation]":
        """Explain the window on the worker thread."""
        return self._pool.submit(self.explain, window)

    def explain(self, window: LogWatchWindow) -> WatchExplanation:
        """Ask the explainer about the window; an ``unavailable`` answer when it fails."""
        request = explain_request(window)
        try:
            response = self._http.post(self.url, json=request.model_dump(mode="json"))
            response.raise_for_status()
            answer = ExplainResponse.model_validate_json(response.content)
        except httpx.HTTPStatusError as error:
            status = error.response.status_code
            return self._count(
                WatchExplanation(status="unavailable", reason=f"the explainer answered {status}")
            )
        except httpx.HTTPError as error:
            return self._count(
                WatchExplanation(
                    status="unavailable",
                    reason=f"the explainer could not be reached ({type(error).__name__})",
                )
            )
        except ValidationError:
            return self._count(
                WatchExplanation(status="unavailable", reason="the explainer's answer is invalid")
            )
        return self._count(
            WatchExplanation(
                status="degraded" if answer.degraded else "explained",
                root_cause=answer.root_cause,
                impact=answer.impact,
                actions=answer.actions,
                reason=answer.degraded_reason,
            )
        )

    def close(self) -> None:
        """Wait for the requests in flight, then close the connection pool."""
        self._pool.shutdown(wait=True)
        self._http.close()

    def _count(self, explanation: WatchExplanation) -> WatchExplanation:
        if self.metrics is not None:
            self.metrics.explanations.labels(outcome=explanation.status).inc()
        return explanation
