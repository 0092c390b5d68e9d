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

# The fleet's metric set: CloudWatch's EC2 metrics plus what the CloudWatch agent and the
# services publish. The exporter asks for these by default and the feature contract is built
# from them; real datasets bring their own list (see contracts.dataset.DatasetInfo).
FLEET_METRICS = (
    "CPUUtilization",
    "MemoryUtilization",
    "NetworkIn",
    "NetworkOut",
    "DiskReadOps",
    "DiskWriteOps",
    "DiskUsedPercent",
    "SwapUsedPercent",
    "LoadAverage",
    "TCPConnections",
    "RequestCount",
    "Latency",
    "HTTPCode_5XX_Count",
    "HTTPCode_4XX_Count",
    "DatabaseConnections",
    "ThreadCount",
)

# Bounds a valid datapoint must lie in (inclusive); metrics not listed need only be finite.
METRIC_RANGES: dict[str, tuple[float, float]] = {
    "CPUUtilization": (0.0, 100.0),
    "MemoryUtilization": (0.0, 100.0),
    "DiskUsedPercent": (0.0, 100.0),
    "SwapUsedPercent": (0.0, 100.0),
    **{
        name: (0.0, float("inf"))
        for name in (
            "NetworkIn",
            "NetworkOut",
            "DiskReadOps",
            "DiskWriteOps",
            "LoadAverage",
            "TCPConnections",
            "RequestCount",
            "Latency",
            "HTTPCode_5XX_Count",
            "HTTPCode_4XX_Count",
            "DatabaseConnections",
            "ThreadCount",
        )
    },
}
