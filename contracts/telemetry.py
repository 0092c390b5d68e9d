"""The raw telemetry schema: one row per CloudWatch datapoint or log event (DESIGN.md)."""

import pyarrow as pa

SOURCES = ("ec2", "rds", "lambda", "alb", "app")
KINDS = ("metric", "log")
LOG_LEVELS = ("DEBUG", "INFO", "WARN", "ERROR", "CRITICAL")

RAW_SCHEMA = pa.schema(
    [
        pa.field("timestamp", pa.timestamp("ms", tz="UTC"), nullable=False),
        pa.field("instance_id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        # metric rows
        pa.field("name", pa.string()),
        pa.field("value", pa.float64()),
        # log rows
        pa.field("level", pa.string()),
        pa.field("message", pa.string()),
        pa.field("metadata", pa.string()),  # JSON text, kept verbatim when it does not parse
        # provenance: CloudWatch eventId for logs, "<namespace>/<name>" for metrics
        pa.field("event_id", pa.string()),
        pa.field("parse_error", pa.bool_(), nullable=False),
    ]
)

# Columns that identify a row: a rerun that fetches the same datapoint or event must not
# add a second row. Log events are unique by CloudWatch eventId; metric datapoints by
# (instance, metric, timestamp).
METRIC_KEY = ("instance_id", "name", "timestamp")
LOG_KEY = ("event_id",)
