"""Every Prometheus metric of ``vigil logs watch`` (``vigil_log_*``).

The metrics live on a registry owned by each ``WatchMetrics``, not the process-wide one, so
two watchers in one process (tests) never add into each other. Labels are bounded: anomaly
kinds and outcomes are fixed lists, and the per-template gauge holds the top
``metrics_top_templates`` templates of the last window only (cleared at each window).
"""

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from contracts.log_watch import WATCH_ANOMALY_KINDS, LogWatchWindow
from telemetry.logs.reading import ReadStats

EXPLANATION_OUTCOMES = ("explained", "degraded", "unavailable")
KINESIS_OUTCOMES = ("data", "control", "undecodable")
SKIP_REASONS = ("too_long", "binary")
TEMPLATE_LABEL_CHARS = 120


class WatchMetrics:
    """The watcher's metrics on their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.lines = Counter(
            "vigil_log_lines_total", "Lines (Kinesis: log events) read from the source.", registry=r
        )
        self.skipped = Counter(
            "vigil_log_lines_skipped_total",
            "Lines skipped unparsed: too long, or binary.",
            ["reason"],
            registry=r,
        )
        self.records = Counter(
            "vigil_log_records_total", "Records parsed (stack traces joined).", registry=r
        )
        self.windows = Counter("vigil_log_windows_total", "Windows closed.", registry=r)
        self.anomalous_windows = Counter(
            "vigil_log_anomalous_windows_total", "Windows with at least one anomaly.", registry=r
        )
        self.anomalies = Counter(
            "vigil_log_anomalies_total",
            "Anomalies found, by kind (one per template flagged).",
            ["kind"],
            registry=r,
        )
        self.templates_known = Gauge(
            "vigil_log_templates_known", "Templates the miner knows.", registry=r
        )
        self.window_templates = Gauge(
            "vigil_log_window_templates", "Distinct templates in the last window.", registry=r
        )
        self.window_records = Gauge(
            "vigil_log_window_records", "Records in the last window.", registry=r
        )
        self.template_records = Gauge(
            "vigil_log_template_window_records",
            "Records of each of the last window's most frequent templates.",
            ["template_id", "template"],
            registry=r,
        )
        self.lag = Gauge(
            "vigil_log_lag_seconds",
            "How far behind its source the watcher is: Kinesis MillisBehindLatest, or the time "
            "since a file or standard input was last read to its end.",
            registry=r,
        )
        self.last_window = Gauge(
            "vigil_log_last_window_timestamp_seconds",
            "When the last window closed (Unix time).",
            registry=r,
        )
        self.explanations = Counter(
            "vigil_log_explanations_total",
            "Anomalous windows sent to the explainer, by outcome.",
            ["outcome"],
            registry=r,
        )
        self.kinesis_records = Counter(
            "vigil_log_kinesis_records_total",
            "Kinesis records read: data messages, control messages, undecodable (skipped).",
            ["outcome"],
            registry=r,
        )
        self.kinesis_shards = Gauge(
            "vigil_log_kinesis_shards_held",
            "Kinesis shards whose lease this watcher holds.",
            registry=r,
        )
        # Every label value exists from the start: a rate over a series that appears only
        # with its first increment misses that increment.
        for kind in WATCH_ANOMALY_KINDS:
            self.anomalies.labels(kind=kind)
        for outcome in EXPLANATION_OUTCOMES:
            self.explanations.labels(outcome=outcome)
        for outcome in KINESIS_OUTCOMES:
            self.kinesis_records.labels(outcome=outcome)
        for reason in SKIP_REASONS:
            self.skipped.labels(reason=reason)
        self._seen = (0, 0, 0)

    def observe_window(self, window: LogWatchWindow, top: int) -> None:
        """Count a closed window: records, anomalies, templates (the top ``top``)."""
        self.windows.inc()
        self.records.inc(window.records)
        if window.anomalies:
            self.anomalous_windows.inc()
        for anomaly in window.anomalies:
            self.anomalies.labels(kind=anomaly.kind).inc()
        self.templates_known.set(window.templates_known)
        self.window_templates.set(len(window.templates))
        self.window_records.set(window.records)
        self.template_records.clear()
        for template in window.templates[:top]:
            self.template_records.labels(
                template_id=str(template.template_id),
                template=template.template[:TEMPLATE_LABEL_CHARS],
            ).set(template.count)
        self.last_window.set(window.end.timestamp())

    def observe_reading(self, stats: ReadStats) -> None:
        """Count what the source's running totals say was read (and skipped) since the last
        call."""
        now = (stats.lines, stats.skipped_too_long, stats.skipped_binary)
        lines, too_long, binary = (max(0, a - b) for a, b in zip(now, self._seen, strict=True))
        self.lines.inc(lines)
        self.skipped.labels(reason="too_long").inc(too_long)
        self.skipped.labels(reason="binary").inc(binary)
        self._seen = now


def serve_metrics(metrics: WatchMetrics, port: int, host: str = "0.0.0.0") -> Callable[[], None]:
    """Serve ``/metrics`` on ``host:port`` on a thread; returns the function that stops it."""
    server, thread = start_http_server(port, addr=host, registry=metrics.registry)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return stop
