"""Fetching from CloudWatch: the pages of one stream window turned into raw telemetry rows.

A stream is a log group or a metric namespace of the layout. Log events come from
filter_log_events and are parsed and template-mined on the way in (``telemetry.logs.events``);
metrics come from get_metric_data, one datapoint per instance-minute. Rows an hour partition
already holds (its keys) are counted as duplicates and left out.
"""

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import pyarrow as pa
from botocore.client import BaseClient
from botocore.exceptions import ClientError

from contracts.store import ObjectStore
from contracts.telemetry import RAW_SCHEMA_WITH_TEMPLATES, TEMPLATE_MINER_STATE_PATH
from telemetry.cloudwatch_layout import CloudWatchLayout
from telemetry.cloudwatch_run import ExportConfig, ExportSummary
from telemetry.logs.events import LogEventParser
from telemetry.logs.state import save_miner

_MILLISECOND = timedelta(milliseconds=1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_STATISTIC = "Average"  # one datapoint per instance-minute: the mean of what was published


class MetricQueryError(RuntimeError):
    """get_metric_data answered a query with InternalError or Forbidden instead of data."""


@dataclass(frozen=True)
class Stream:
    """One log group or metric namespace of the layout, with the source it holds."""

    kind: Literal["log", "metric"]
    name: str  # log group or metric namespace
    source: str

    @property
    def key(self) -> str:
        return f"{'logs' if self.kind == 'log' else 'metrics'}:{self.name}"


@dataclass
class HourKeys:
    """Keys of the rows an hour partition holds: what a refetch must not add again."""

    metric: set[tuple[str, str, int]] = field(default_factory=set)
    log: set[str] = field(default_factory=set)


class StreamFetcher:
    """Pages of one stream window turned into raw rows; pages and retries go to the summary."""

    def __init__(
        self,
        logs_client: BaseClient,
        cloudwatch_client: BaseClient,
        layout: CloudWatchLayout,
        config: ExportConfig,
        summary: ExportSummary,
        events: LogEventParser,
    ) -> None:
        self._logs = logs_client
        self._cloudwatch = cloudwatch_client
        self._layout = layout
        self._config = config
        self._summary = summary
        self._events = events
        self._series: dict[str, list[tuple[str, str]]] = {}

    def save_miner(self, store: ObjectStore) -> None:
        """Save what the template miner learned, before a partition using it is committed."""
        save_miner(self._events.miner, store, TEMPLATE_MINER_STATE_PATH)

    def tables(
        self, stream: Stream, start: datetime, end: datetime, keys: HourKeys
    ) -> Iterator[pa.Table]:
        if stream.kind == "log":
            return self._log_tables(stream, _ms(start), _ms(end), keys)
        return self._metric_tables(stream, start, end, keys)

    def count_failed_call(self, error: Exception) -> None:
        if isinstance(error, ClientError):
            self._summary.retries += error.response.get("ResponseMetadata", {}).get(
                "RetryAttempts", 0
            )

    def _count(self, page: dict[str, Any]) -> None:
        self._summary.pages += 1
        self._summary.retries += page.get("ResponseMetadata", {}).get("RetryAttempts", 0)

    def _log_tables(
        self, stream: Stream, start_ms: int, end_ms: int, keys: HourKeys
    ) -> Iterator[pa.Table]:
        page_size = self._config.log_page_size
        pages = self._logs.get_paginator("filter_log_events").paginate(
            logGroupName=stream.name,
            startTime=start_ms,
            endTime=end_ms - 1,  # CloudWatch's endTime is inclusive
            PaginationConfig={"PageSize": page_size} if page_size else {},
        )
        for page in pages:
            self._count(page)
            yield self._log_table(page["events"], stream.source, start_ms, end_ms, keys)

    def _log_table(
        self,
        events: list[dict[str, Any]],
        source: str,
        start_ms: int,
        end_ms: int,
        keys: HourKeys,
    ) -> pa.Table:
        kept = []
        for event in events:
            if not start_ms <= event["timestamp"] < end_ms:
                continue
            if event["eventId"] in keys.log:
                self._summary.duplicate_rows += 1
                continue
            keys.log.add(event["eventId"])
            kept.append(event)
        columns: dict[str, list[Any]] = {
            "timestamp": [event["timestamp"] for event in kept],
            "instance_id": [event["logStreamName"] for event in kept],
            "event_id": [event["eventId"] for event in kept],
            **self._events.parse_all([event["message"] for event in kept]),
        }
        rows = len(kept)
        self._summary.log_rows += rows
        self._summary.malformed_log_rows += sum(columns["parse_error"])
        return _raw_table(rows, columns, {"source": source, "kind": "log"})

    def _metric_tables(
        self, stream: Stream, start: datetime, end: datetime, keys: HourKeys
    ) -> Iterator[pa.Table]:
        series = self._discover(stream.name)
        per_call = self._config.metric_queries_per_call
        paginator = self._cloudwatch.get_paginator("get_metric_data")
        for offset in range(0, len(series), per_call):
            batch = series[offset : offset + per_call]
            queries = [
                {
                    "Id": f"q{index}",
                    "MetricStat": {
                        "Metric": {
                            "Namespace": stream.name,
                            "MetricName": name,
                            "Dimensions": [{"Name": self._layout.dimension, "Value": instance}],
                        },
                        "Period": self._layout.period_seconds,
                        "Stat": _STATISTIC,
                    },
                }
                for index, (instance, name) in enumerate(batch)
            ]
            pages = paginator.paginate(
                MetricDataQueries=queries,
                StartTime=start,
                EndTime=end,
                ScanBy="TimestampAscending",
            )
            for page in pages:
                self._count(page)
                yield self._metric_table(
                    page["MetricDataResults"], batch, stream, _ms(start), _ms(end), keys
                )

    def _metric_table(
        self,
        results: list[dict[str, Any]],
        batch: list[tuple[str, str]],
        stream: Stream,
        start_ms: int,
        end_ms: int,
        keys: HourKeys,
    ) -> pa.Table:
        columns: dict[str, list[Any]] = {
            name: [] for name in ("timestamp", "instance_id", "name", "value", "event_id")
        }
        for result in results:
            instance, name = batch[int(result["Id"][1:])]
            if result.get("StatusCode") in ("InternalError", "Forbidden"):
                raise MetricQueryError(
                    f"get_metric_data answered {result['StatusCode']} for {stream.name} "
                    f"{name} of {instance}: {result.get('Messages', [])}"
                )
            provenance = f"{stream.name}/{name}"
            for stamp, value in zip(result["Timestamps"], result["Values"], strict=True):
                timestamp = (stamp - EPOCH) // _MILLISECOND
                if not start_ms <= timestamp < end_ms:
                    continue
                key = (instance, name, timestamp)
                if key in keys.metric:
                    self._summary.duplicate_rows += 1
                    continue
                keys.metric.add(key)
                columns["timestamp"].append(timestamp)
                columns["instance_id"].append(instance)
                columns["name"].append(name)
                columns["value"].append(value)
                columns["event_id"].append(provenance)
        rows = len(columns["timestamp"])
        self._summary.metric_rows += rows
        constants = {"source": stream.source, "kind": "metric", "parse_error": False}
        return _raw_table(rows, columns, constants)

    def _discover(self, namespace: str) -> list[tuple[str, str]]:
        """(instance, metric) series of the namespace with exactly the instance dimension."""
        if namespace not in self._series:
            wanted = set(self._layout.metric_names)
            dimension = self._layout.dimension
            series: set[tuple[str, str]] = set()
            pages = self._cloudwatch.get_paginator("list_metrics").paginate(
                Namespace=namespace, Dimensions=[{"Name": dimension}]
            )
            for page in pages:
                self._count(page)
                for metric in page["Metrics"]:
                    dimensions = metric.get("Dimensions", [])
                    if (
                        metric["MetricName"] in wanted
                        and len(dimensions) == 1
                        and dimensions[0]["Name"] == dimension
                    ):
                        series.add((dimensions[0]["Value"], metric["MetricName"]))
            self._series[namespace] = sorted(series)
        return self._series[namespace]


def _raw_table(rows: int, columns: dict[str, list[Any]], constants: dict[str, Any]) -> pa.Table:
    """A RAW_SCHEMA_WITH_TEMPLATES table from per-row columns and same-for-every-row values;
    the rest null."""
    arrays = []
    for f in RAW_SCHEMA_WITH_TEMPLATES:
        if f.name == "timestamp":  # from int64: building timestamps from ints is 15x slower
            arrays.append(pa.array(columns[f.name], pa.int64()).cast(f.type))
        elif f.name in columns:
            arrays.append(pa.array(columns[f.name], f.type))
        elif f.name in constants:
            arrays.append(pa.repeat(pa.scalar(constants[f.name], f.type), rows))
        else:
            arrays.append(pa.nulls(rows, f.type))
    return pa.Table.from_arrays(arrays, schema=RAW_SCHEMA_WITH_TEMPLATES)


def layout_streams(layout: CloudWatchLayout) -> list[Stream]:
    """Every log group, then every metric namespace, of the layout."""
    return [Stream("log", group, source) for group, source in layout.log_groups.items()] + [
        Stream("metric", namespace, source)
        for namespace, source in layout.metric_namespaces.items()
    ]


def _ms(moment: datetime) -> int:
    return (moment - EPOCH) // _MILLISECOND
