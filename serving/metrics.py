"""Every Prometheus metric of the online scorer (names from DESIGN.md / seed 003 §7).

The metrics live on a registry owned by each ``ScorerMetrics``, not the process-wide one: a
scorer's ``/metrics`` shows exactly its own counts, and two scorers in one process (tests,
the demo) never add into each other.
"""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Seed 003's buckets (0.1 … 5 s) with finer ones below: a Triton answer takes milliseconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
EXPLANATION_OUTCOMES = ("sent", "failed", "dropped")
FEEDBACK_OUTCOMES = ("correct", "incorrect")


class ScorerMetrics:
    """The scorer's metrics on their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.predictions = Counter(
            "model_prediction_total",
            "Scored feature rows by answering model and result (1 = at or above its threshold).",
            ["model", "result"],
            registry=r,
        )
        self.latency = Histogram(
            "model_latency_seconds",
            "Time of one inference request (one instance's rows of a window), client side.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.inference_errors = Counter(
            "model_inference_errors_total",
            "Inference requests that failed, by the model asked for.",
            ["model"],
            registry=r,
        )
        self.anomaly_rate = Gauge(
            "anomaly_rate", "Share of rows scored anomalous over the rolling hour.", registry=r
        )
        self.drift_psi = Gauge(
            "feature_drift_psi",
            "Population stability index of the rolling hour's rows against training.",
            ["feature"],
            registry=r,
        )
        self.drift_kl = Gauge(
            "feature_drift_kl_divergence",
            "KL divergence (serving ‖ training) of the rolling hour's rows, same bins as PSI.",
            ["feature"],
            registry=r,
        )
        self.accuracy = Gauge(
            "model_accuracy",
            "Share of the latest feedback labels the model's window verdict agreed with.",
            ["model"],
            registry=r,
        )
        self.feedback = Counter(
            "model_feedback_total",
            "Ground-truth labels received, by the model that scored the window and outcome.",
            ["model", "outcome"],
            registry=r,
        )
        self.explanations = Counter(
            "explanation_requests_total",
            "Explanation requests: sent, failed (explainer error or down) or dropped (queue full).",
            ["outcome"],
            registry=r,
        )
        self.explanation_queue = Gauge(
            "explanation_queue_depth",
            "Confident anomalies waiting for or being explained, not yet answered.",
            registry=r,
        )
        self.window_duration = Histogram(
            "scorer_window_duration_seconds",
            "Time to score one window: read, infer, metrics, log.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
            registry=r,
        )
        self.last_window_end = Gauge(
            "scorer_last_window_end_timestamp_seconds",
            "End of the latest window scored (data time, Unix seconds).",
            registry=r,
        )
        for outcome in EXPLANATION_OUTCOMES:
            self.explanations.labels(outcome=outcome)  # exported as 0 before the first one
