"""Generate the Grafana dashboards as JSON (``make dashboards``): four on the metrics of
docs/architecture.md and the Logs dashboard of ``vigil logs watch``.

Dashboards are code: this file is the source, ``dashboards/*.json`` is generated and committed,
and a test fails when the two drift apart. Panels read the recording rules of
``monitoring/prometheus/rules/recording.rules.yml`` where a quantile or ratio is involved, so a
dashboard and an alert never disagree about what "p95" means.
"""

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

DASHBOARDS_PATH = Path(__file__).resolve().parent / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
PANEL_WIDTH, PANEL_HEIGHT, COLUMNS = 12, 8, 2


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    title: str
    queries: tuple[Query, ...]
    unit: str = "short"
    kind: str = "timeseries"  # timeseries | stat | bargauge
    description: str = ""


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    panels: tuple[Panel, ...] = field(default_factory=tuple)


MODEL_PERFORMANCE = Dashboard(
    uid="vigil-model-performance",
    title="Vigil / Model Performance",
    description="Accuracy from feedback, prediction volume and latency of both served models.",
    panels=(
        Panel(
            "Accuracy from ground-truth feedback",
            (Query("model_accuracy", "{{model}}"),),
            unit="percentunit",
            description="Alert ModelAccuracyDegraded below 0.85 for 30 min.",
        ),
        Panel(
            "Predictions per second by result",
            (Query("model:model_prediction_total:rate5m", "{{model}} {{result}}"),),
            unit="reqps",
        ),
        Panel(
            "Scoring latency p50 / p95 / p99",
            (
                Query("model:model_latency_seconds:p50_5m", "p50 {{model}}"),
                Query("model:model_latency_seconds:p95_5m", "p95 {{model}}"),
                Query("model:model_latency_seconds:p99_5m", "p99 {{model}}"),
            ),
            unit="s",
            description="Alert HighLatency when p95 > 1 s for 5 min.",
        ),
        Panel(
            "Anomaly rate (rolling 1 h)",
            (Query("anomaly_rate", "anomaly rate"),),
            unit="percentunit",
            description="Alert AnomalyRateSpike above 10 % for 30 min (baseline 5 %).",
        ),
        Panel(
            "Triton inference requests per second",
            (Query("sum by (model) (rate(nv_inference_request_success[5m]))", "{{model}}"),),
            unit="reqps",
        ),
        Panel(
            "Triton failed-request ratio",
            (Query("model:nv_inference_request_failure:ratio_rate5m", "{{model}}"),),
            unit="percentunit",
            description="Alert HighErrorRate above 5 % for 10 min.",
        ),
    ),
)

DATA_DRIFT = Dashboard(
    uid="vigil-data-drift",
    title="Vigil / Data Drift",
    description="Feature drift of live traffic against the champion's training reference.",
    panels=(
        Panel(
            "Most drifted features (PSI)",
            (Query("topk(10, feature_drift_psi)", "{{feature}}"),),
            description="Alert DataDriftDetected when a feature's PSI > 0.3 for 1 h.",
        ),
        Panel(
            "Features above the PSI threshold (0.3)",
            (Query("count(feature_drift_psi > 0.3) or vector(0)", "features drifting"),),
            kind="stat",
        ),
        Panel(
            "Highest PSI now",
            (Query("max(feature_drift_psi)", "max PSI"),),
            kind="stat",
        ),
        Panel(
            "Most drifted features (KL divergence)",
            (Query("topk(10, feature_drift_kl_divergence)", "{{feature}}"),),
        ),
        Panel(
            "PSI distribution over features",
            (Query("sort_desc(feature_drift_psi)", "{{feature}}"),),
            kind="bargauge",
        ),
    ),
)

AB_TESTING = Dashboard(
    uid="vigil-ab-testing",
    title="Vigil / A/B Testing",
    description="Champion vs challenger: traffic share, accuracy, latency and errors per arm.",
    panels=(
        Panel(
            "Traffic share per arm",
            (Query("model:model_prediction_share:ratio_rate5m", "{{model}}"),),
            unit="percentunit",
        ),
        Panel(
            "Accuracy per arm",
            (Query("model_accuracy", "{{model}}"),),
            unit="percentunit",
        ),
        Panel(
            "p95 latency per arm",
            (Query("model:model_latency_seconds:p95_5m", "{{model}}"),),
            unit="s",
        ),
        Panel(
            "Anomalies flagged per arm (per second)",
            # The scorer labels result with the verdict: "1" anomalous, "0" normal.
            (Query('model:model_prediction_total:rate5m{result="1"}', "{{model}}"),),
            unit="reqps",
        ),
        Panel(
            "Failed-request ratio per arm",
            (Query("model:nv_inference_request_failure:ratio_rate5m", "{{model}}"),),
            unit="percentunit",
        ),
    ),
)

LLM_RAG = Dashboard(
    uid="vigil-llm-rag",
    title="Vigil / LLM & RAG",
    description="The explanation service: LLM time and tokens, Qdrant retrieval, embeddings.",
    panels=(
        Panel(
            "LLM request duration p50 / p95",
            (
                Query("job:llm_request_duration_seconds:p50_5m", "p50"),
                Query("job:llm_request_duration_seconds:p95_5m", "p95"),
            ),
            unit="s",
            description="Alert LLMResponseTimeSLAViolation when p95 > 20 s for 15 min.",
        ),
        Panel(
            "Tokens generated per second",
            # llm_tokens_generated is a histogram of tokens per answer: its _sum counts tokens.
            (Query("sum(rate(llm_tokens_generated_sum[5m]))", "tokens/s"),),
        ),
        Panel(
            "Qdrant search latency p95",
            (Query("job:qdrant_search_latency_ms:p95_5m", "p95"),),
            unit="ms",
            description="Alert QdrantSearchLatencyHigh when p95 > 200 ms for 10 min.",
        ),
        Panel(
            "Qdrant collection size",
            (Query("max(qdrant_collection_size)", "points"),),
            kind="stat",
        ),
        Panel(
            "Embedding time p95",
            (Query("job:embedding_generation_duration_ms:p95_5m", "p95"),),
            unit="ms",
        ),
        Panel(
            "Explanations by outcome (per second)",
            (Query("sum by (outcome) (rate(explain_requests_total[5m]))", "{{outcome}}"),),
            unit="reqps",
            description="ok, degraded (an LLM or Qdrant fallback answered) or error.",
        ),
        Panel(
            "Explanation requests from the scorer",
            (Query("sum by (outcome) (increase(explanation_requests_total[1h]))", "{{outcome}}"),),
            description="sent, failed, or dropped because the bounded queue was full.",
        ),
        Panel(
            "Explanation queue depth",
            (Query("max(explanation_queue_depth)", "queued"),),
            description="Anomalies waiting for the explainer: growing means the LLM is slower "
            "than the anomalies arrive, and the queue will start dropping.",
        ),
    ),
)

LOGS = Dashboard(
    uid="vigil-logs",
    title="Vigil / Logs",
    description="`vigil logs watch`: lines read, windows, log anomalies by kind, templates, lag.",
    panels=(
        Panel(
            "Log lines read per second",
            (Query("sum(rate(vigil_log_lines_total[5m]))", "lines/s"),),
            unit="short",
        ),
        Panel(
            "Log anomalies by kind (per window, 1 h)",
            (
                Query(
                    "sum by (kind) (increase(vigil_log_anomalies_total[1h]))",
                    "{{kind}}",
                ),
            ),
            description="new_template: never seen before; spike: far above its usual count; "
            "error_burst: more ERROR/CRITICAL records than the stream's history allows.",
        ),
        Panel(
            "Anomalous windows in the last hour",
            (Query("sum(increase(vigil_log_anomalous_windows_total[1h]))", "windows"),),
            kind="stat",
        ),
        Panel(
            "Templates known",
            (Query("max(vigil_log_templates_known)", "templates"),),
            kind="stat",
            description="Grows when new templates appear; a jump means a new kind of line.",
        ),
        Panel(
            "Most frequent templates in the last window",
            # The watcher exports only its top templates of the last window, so the label
            # set stays bounded; topk keeps the panel readable across several watchers.
            (Query("topk(10, vigil_log_template_window_records)", "{{template}}"),),
            kind="bargauge",
        ),
        Panel(
            "Watcher lag",
            (Query("max(vigil_log_lag_seconds)", "lag"),),
            unit="s",
            description="Kinesis MillisBehindLatest, or the time since a file was last read "
            "to its end: growing means the watcher cannot keep up.",
        ),
        Panel(
            "Seconds since the last window",
            # A watcher that stopped closing windows (stuck, or gone) shows here first.
            (Query("time() - max(vigil_log_last_window_timestamp_seconds)", "age"),),
            unit="s",
            kind="stat",
        ),
        Panel(
            "Lines skipped and Kinesis records by outcome (per second)",
            (
                Query("sum by (reason) (rate(vigil_log_lines_skipped_total[5m]))", "{{reason}}"),
                Query(
                    "sum by (outcome) (rate(vigil_log_kinesis_records_total[5m]))",
                    "kinesis {{outcome}}",
                ),
            ),
            description="Skipped lines were too long or binary; undecodable Kinesis records "
            "are not CloudWatch Logs subscription envelopes.",
        ),
        Panel(
            "Window explanations by outcome (1 h)",
            (
                Query(
                    "sum by (outcome) (increase(vigil_log_explanations_total[1h]))",
                    "{{outcome}}",
                ),
            ),
        ),
        Panel(
            "Kinesis shards held per watcher",
            (Query("vigil_log_kinesis_shards_held", "{{pod}}"),),
            description="Each shard is read by the holder of its lease.",
        ),
    ),
)

DASHBOARDS = (MODEL_PERFORMANCE, DATA_DRIFT, AB_TESTING, LLM_RAG, LOGS)


def panel_json(panel: Panel, index: int) -> dict[str, object]:
    """One Grafana panel, placed on a two-column grid."""
    return {
        "id": index + 1,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {
            "x": (index % COLUMNS) * PANEL_WIDTH,
            "y": (index // COLUMNS) * PANEL_HEIGHT,
            "w": PANEL_WIDTH,
            "h": PANEL_HEIGHT,
        },
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "options": {},
        "targets": [
            {
                "refId": chr(ord("A") + number),
                "datasource": DATASOURCE,
                "expr": query.expr,
                "legendFormat": query.legend,
            }
            for number, query in enumerate(panel.queries)
        ],
    }


def dashboard_json(dashboard: Dashboard) -> dict[str, object]:
    """The dashboard model Grafana provisions (schemaVersion 39)."""
    return {
        "uid": dashboard.uid,
        "title": dashboard.title,
        "description": dashboard.description,
        "tags": ["vigil"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                }
            ]
        },
        "annotations": {"list": []},
        "panels": [panel_json(panel, index) for index, panel in enumerate(dashboard.panels)],
    }


def render(dashboard: Dashboard) -> str:
    return json.dumps(dashboard_json(dashboard), indent=2, sort_keys=True) + "\n"


def write_all(target: Path = DASHBOARDS_PATH) -> list[Path]:
    """Write every dashboard as ``<uid>.json`` under ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for dashboard in DASHBOARDS:
        path = target / f"{dashboard.uid}.json"
        path.write_text(render(dashboard))
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write_all(Path(sys.argv[1]) if len(sys.argv) > 1 else DASHBOARDS_PATH):
        print(path)
