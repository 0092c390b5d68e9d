"""The raw telemetry schema: one row per CloudWatch datapoint or log event (docs/architecture.md).

``RAW_SCHEMA`` holds the columns every raw partition has. The exporter and the simulator also
write ``TEMPLATE_FIELDS`` (``RAW_SCHEMA_WITH_TEMPLATES``): each log event's mined template id
and the component its parser found. The template columns are optional for readers: a partition
written before them (or by a dataset importer, which writes metrics only) reads as if they were
null, and ``with_template_columns`` gives an old table the new columns. They are kept out of
``RAW_SCHEMA`` itself so that writers and checks of metric-only partitions stay as they are.
"""

import pyarrow as pa

from contracts.layout import RAW_PREFIX

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

# What the log parser and the template miner add to a log row (null on metric rows, and on log
# rows of partitions written before templates were mined).
TEMPLATE_ID = "template_id"
COMPONENT = "component"
TEMPLATE_FIELDS = (
    pa.field(TEMPLATE_ID, pa.int64()),  # the miner's stable id (telemetry.logs.templates)
    pa.field(COMPONENT, pa.string()),  # logger, program or component named by the line
)
RAW_SCHEMA_WITH_TEMPLATES = pa.schema([*RAW_SCHEMA, *TEMPLATE_FIELDS])
# The template miner's state: one miner per store, so that a template keeps its id across
# exports, processes and the simulator (written by whoever holds the export lease).
TEMPLATE_MINER_STATE_PATH = f"{RAW_PREFIX}/_templates/miner.json"


def with_template_columns(table: pa.Table) -> pa.Table:
    """``table`` (``RAW_SCHEMA`` or ``RAW_SCHEMA_WITH_TEMPLATES``) in
    ``RAW_SCHEMA_WITH_TEMPLATES``: a partition written before templates gets null ones.

    Raises:
        ValueError: when the table has neither schema.
    """
    if table.schema.equals(RAW_SCHEMA_WITH_TEMPLATES):
        return table
    if not table.schema.equals(RAW_SCHEMA):
        raise ValueError(
            f"not a raw telemetry table (RAW_SCHEMA, with or without the template columns): "
            f"{table.schema}"
        )
    for field in TEMPLATE_FIELDS:
        table = table.append_column(field, pa.nulls(table.num_rows, field.type))
    return table


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
