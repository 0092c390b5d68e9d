"""Every Prometheus metric of the explanation service (names in docs/architecture.md, Metrics)."""

from prometheus_client import Counter, Gauge, Histogram

LLM_REQUEST_DURATION = Histogram(
    "llm_request_duration_seconds",
    "Time of one LLM chat completion, retries included.",
    buckets=(0.25, 0.5, 1, 2, 4, 8, 15, 30, 60),
)
LLM_TOKENS_GENERATED = Histogram(
    "llm_tokens_generated",
    "Completion tokens per LLM answer.",
    buckets=(16, 32, 64, 128, 256, 512, 1024),
)
QDRANT_SEARCH_LATENCY = Histogram(
    "qdrant_search_latency_ms",
    "Time of one Qdrant search in milliseconds.",
    buckets=(1, 2, 5, 10, 25, 50, 100, 200, 500, 1000),
)
QDRANT_COLLECTION_SIZE = Gauge("qdrant_collection_size", "Points in the knowledge collection.")
EMBEDDING_DURATION = Histogram(
    "embedding_generation_duration_ms",
    "Time to embed one batch of texts in milliseconds.",
    buckets=(5, 10, 25, 50, 100, 250, 500, 1000, 5000, 30000),
)
EXPLAIN_REQUESTS = Counter(
    "explain_requests_total",
    "POST /explain answers by outcome: ok, degraded (a fallback was used) or error.",
    ["outcome"],
)
for _outcome in ("ok", "degraded", "error"):
    EXPLAIN_REQUESTS.labels(outcome=_outcome)  # exported as 0 before the first request
