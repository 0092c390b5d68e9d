"""Every Prometheus metric of the online scorer (names in docs/architecture.md, Metrics).

The metrics live on a registry owned by each ``ScorerMetrics``, not the process-wide one: a
scorer's ``/metrics`` shows exactly its own counts, and two scorers in one process (tests,
the demo) never add into each other.
"""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Seed 003's buckets (0.1 … 5 s) with finer ones below: a Triton answer takes milliseconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
EXPLANATION_OUTCOMES = ("sent", "failed", "dropped")
FEEDBACK_OUTCOMES = ("correct", "incorrect")
# Why an attempt at a window failed: no inference answered (endpoint down), the object store
# did not answer, or an error of the window's own (retried window_max_attempts times, skipped).
WINDOW_FAILURE_REASONS = ("endpoint", "store", "window")
RELOAD_OUTCOMES = ("loaded", "failed")


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
        self.window_failures = Counter(
            "scorer_window_failures_total",
            "Failed attempts at scoring a window, by reason: endpoint (no inference request "
            "answered), store (the object store did not answer), window (an error of the "
            "window's own, e.g. a corrupt or mismatched feature file).",
            ["reason"],
            registry=r,
        )
        self.windows_skipped = Counter(
            "scorer_windows_skipped_total",
            "Windows given up after window_max_attempts attempts failed with an error of their "
            "own; each is recorded under scorer/skipped/ in the object store.",
            registry=r,
        )
        self.feedback_unauthorized = Counter(
            "scorer_feedback_unauthorized_total",
            "Feedback requests refused with 401: no API key, or a wrong one.",
            registry=r,
        )
        self.feedback_replays = Counter(
            "scorer_feedback_idempotent_replays_total",
            "Feedback requests answered from an earlier request with the same Idempotency-Key "
            "(nothing stored again).",
            registry=r,
        )
        self.served_model = Gauge(
            "scorer_served_model_info",
            "1 for each alias holder the scorer judges windows with (its version, from MLflow).",
            ["alias", "model", "version"],
            registry=r,
        )
        self.served_threshold = Gauge(
            "scorer_served_model_threshold",
            "Decision threshold of each alias holder the scorer judges windows with.",
            ["alias", "model"],
            registry=r,
        )
        self.models_pending = Gauge(
            "scorer_models_pending",
            "1 while the holders of moved MLflow aliases are loaded and wait for the inference "
            "side to serve their versions (the models in use go on judging until then).",
            registry=r,
        )
        self.model_reloads = Counter(
            "scorer_model_reloads_total",
            "Loads of new alias holders after an MLflow alias (or threshold) changed, by "
            "outcome: loaded (in use, or pending until served) or failed (the old ones stay).",
            ["outcome"],
            registry=r,
        )
        for outcome in EXPLANATION_OUTCOMES:
            self.explanations.labels(outcome=outcome)  # exported as 0 before the first one
        for reason in WINDOW_FAILURE_REASONS:
            self.window_failures.labels(reason=reason)
        for outcome in RELOAD_OUTCOMES:
            self.model_reloads.labels(outcome=outcome)
