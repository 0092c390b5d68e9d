"""CloudWatch Logs and metrics → raw telemetry Parquet, one hour partition at a time.

Runs every five minutes. A run exports ``[high-water mark, end)`` of every stream (a log group
or a metric namespace) hour by hour. Each touched hour partition is rebuilt as a new file: the
rows already there are copied, then every fetched page is appended as a row group, leaving out
rows whose key the hour already holds. The new file replaces the old one atomically, and only
then do the streams that completed the hour advance their high-water marks. A crash anywhere is
therefore followed by a rerun that refetches what was not checkpointed and drops what the
partition already has: no gap, no duplicate, never a half-written file.

One exporter writes at a time: a run holds the store's export lease (``contracts.store.Lease``
on ``EXPORT_LEASE_PATH``) from before it reads the checkpoint until after it writes it, and
renews it before each partition and checkpoint write. A second exporter (the CronJob and a
manual ``vigil export``) waits for it, then reads what the first wrote and adds only what is
missing; one that waits longer than ``lease_wait`` stops with a clear message and writes
nothing. A crashed exporter's lease is taken over once its ``lease_ttl`` has passed, or at
once when it died on the same machine (a killed ``vigil export`` rerun by hand).

Memory holds one page plus the keys of one hour, and only the keys of rows at or after the
earliest window start of that hour (the rows a refetch can repeat), so the usual five-minute run
keeps almost nothing.

Every log event is parsed and its template mined on the way in (``telemetry.logs.events``: the
path the simulator's logs take too): the rows carry the level, component and message the parser
found and the template id of the store's persistent miner (``TEMPLATE_MINER_STATE_PATH``). The
miner's state is saved before each partition replaces the old one, so an id written in a
partition is always known to the saved state: a rerun after a crash hands the same template the
same id and never gives a new template an id that a partition already uses for another.
Partitions written before templates were mined are rewritten with null template columns.
"""

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Literal

import boto3
import botocore.session
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from botocore.utils import parse_timestamp
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from contracts.layout import EXPORT_LEASE_PATH, raw_partition_path
from contracts.settings import Settings
from contracts.store import Lease, LeaseBusyError, ObjectStore
from contracts.telemetry import (
    RAW_SCHEMA,
    RAW_SCHEMA_WITH_TEMPLATES,
    TEMPLATE_MINER_STATE_PATH,
    with_template_columns,
)
from telemetry.checkpoint import (
    ExportCheckpoint,
    StreamFailure,
    read_checkpoint,
    write_checkpoint,
)
from telemetry.cloudwatch_layout import CloudWatchLayout
from telemetry.logs.events import LogEventParser, ParsedLogMessage, parse_log_message
from telemetry.logs.state import load_miner, save_miner

_HOUR = timedelta(hours=1)
_MILLISECOND = timedelta(milliseconds=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_STATISTIC = "Average"  # one datapoint per instance-minute: the mean of what was published
_KEY_COLUMNS = ["timestamp", "kind", "instance_id", "name", "event_id"]
# Re-exported: the exporter's message shape is read by telemetry.logs.events.
__all__ = ["ParsedLogMessage", "parse_log_message"]


class ExportConfig(BaseModel):
    """How far back a run looks, how big its pages are and how hard it retries."""

    model_config = ConfigDict(extra="forbid")

    settle_lag: timedelta = Field(
        default=timedelta(minutes=5),
        ge=timedelta(0),
        description="The default end is now minus this: CloudWatch takes late events for a while.",
    )
    initial_lookback: timedelta = Field(
        default=timedelta(hours=1),
        gt=timedelta(0),
        description="Where a stream without a checkpoint starts when no start is given.",
    )
    log_page_size: int | None = Field(
        default=None,
        ge=1,
        le=10_000,
        description="filter_log_events limit; None lets CloudWatch fill pages (10,000 or 1 MB).",
    )
    metric_queries_per_call: int = Field(
        default=500, ge=1, le=500, description="MetricDataQueries per get_metric_data call."
    )
    max_attempts: int = Field(
        default=8, ge=1, description="Attempts per API call, the first included (throttling, 5xx)."
    )
    retry_mode: Literal["standard", "adaptive"] = "standard"
    lease_ttl: timedelta = Field(
        default=timedelta(minutes=10),
        gt=timedelta(0),
        description="How long the export lease outlives its last renewal: a crashed "
        "exporter blocks the others this long.",
    )
    lease_wait: timedelta = Field(
        default=timedelta(minutes=5),
        ge=timedelta(0),
        description="How long a run waits for another exporter to finish before giving up.",
    )


class ExportSummary(BaseModel):
    """What one run did."""

    model_config = ConfigDict(extra="forbid")

    end: AwareDatetime
    metric_rows: int = 0
    log_rows: int = 0
    malformed_log_rows: int = Field(
        default=0, description="log rows kept with parse_error (no level could be read)"
    )
    log_templates: int = Field(default=0, description="templates the store's miner knows")
    duplicate_rows: int = Field(default=0, description="fetched rows the partition already held")
    partitions_written: list[str] = Field(default_factory=list)
    pages: int = Field(default=0, description="API responses read")
    retries: int = Field(default=0, description="API calls retried after throttling or 5xx")
    failures: list[StreamFailure] = Field(default_factory=list)


class ExportError(RuntimeError):
    """Some stream windows could not be fetched; they stay before the checkpoint."""

    def __init__(self, summary: ExportSummary) -> None:
        self.summary = summary
        windows = "; ".join(
            f"{f.stream} [{f.window_start:%Y-%m-%dT%H:%M:%SZ}, {f.window_end:%Y-%m-%dT%H:%M:%SZ})"
            f": {f.error}"
            for f in summary.failures
        )
        super().__init__(
            f"CloudWatch export failed for {len(summary.failures)} stream window(s), "
            f"left for the next run to retry: {windows}"
        )


def make_cloudwatch_clients(
    settings: Settings, config: ExportConfig | None = None
) -> tuple[BaseClient, BaseClient]:
    """boto3 clients for CloudWatch Logs and CloudWatch metrics that retry throttling and 5xx.

    Args:
        settings: region and endpoint override (an emulator in tests, None in AWS).
        config: retry mode and attempts; the defaults when None.

    Returns:
        The ``logs`` client and the ``cloudwatch`` client.
    """
    config = config or ExportConfig()
    boto_config = Config(
        region_name=settings.aws_region,
        retries={"total_max_attempts": config.max_attempts, "mode": config.retry_mode},
    )
    core = botocore.session.get_session()
    core.get_component("response_parser_factory").set_parser_defaults(
        timestamp_parser=_parse_timestamp_utc
    )
    session = boto3.session.Session(botocore_session=core)
    return (
        session.client("logs", endpoint_url=settings.aws_endpoint_url, config=boto_config),
        session.client("cloudwatch", endpoint_url=settings.aws_endpoint_url, config=boto_config),
    )


def export(
    store: ObjectStore,
    logs_client: BaseClient,
    cloudwatch_client: BaseClient,
    layout: CloudWatchLayout,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    config: ExportConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ExportSummary:
    """Export CloudWatch telemetry into the raw hour partitions of ``store``; safe to rerun.

    Every stream is exported from its high-water mark (or ``start``) to ``end``. Rows the
    partitions already hold are never written twice, so an explicit ``start`` before the
    checkpoint re-exports (backfills) without duplicating anything.

    Args:
        store: where ``raw-logs/`` and the checkpoint live (local directory or S3).
        logs_client: a boto3 ``logs`` client (see make_cloudwatch_clients).
        cloudwatch_client: a boto3 ``cloudwatch`` client.
        layout: log groups and metric namespaces to export, with their sources.
        start: where every stream starts; None resumes each from its checkpoint, or from
            ``end - config.initial_lookback`` when it has none.
        end: exclusive end, timezone-aware, not in the future; None means now minus the
            settle lag. Metric windows end at the last whole period before it.
        config: page sizes and lookback; the defaults when None.
        progress: called with (hours done, hours in the run) after each hour.

    Returns:
        Rows written per kind, partitions written, pages read, retries.

    Raises:
        ExportError: some stream windows kept failing; they are recorded in the checkpoint
            file, their streams' marks stay before them and the other streams went on.
        LeaseBusyError: another exporter kept the store's export lease for ``lease_wait``;
            nothing was written.
        LeaseLostError: this run stalled past ``lease_ttl`` and another exporter took over;
            it stopped before its next write (what it wrote before is consistent).
        ValueError: bad start or end, a period that does not divide an hour, or a partition
            or checkpoint that is not the exporter's.
    """
    config = config or ExportConfig()
    if 3600 % layout.period_seconds:
        raise ValueError(
            f"layout.period_seconds={layout.period_seconds} must divide an hour: "
            "partitions are hours and a period may not straddle two"
        )
    end = _resolve_end(end, config)
    if start is not None:
        start = _whole_second(_require_aware(start, "start"))
        if start >= end:
            raise ValueError(f"start {start.isoformat()} is not before end {end.isoformat()}")
    lease = Lease(store, EXPORT_LEASE_PATH, config.lease_ttl)
    try:
        lease.acquire(config.lease_wait)
    except LeaseBusyError as error:
        raise LeaseBusyError(
            f"another exporter is running ({error}); this run exported nothing and left the "
            "checkpoint as it was: a later run exports the same window"
        ) from error
    with lease:
        clients = (logs_client, cloudwatch_client)
        return _export_leased(store, clients, layout, lease, start, end, config, progress)


def _export_leased(
    store: ObjectStore,
    clients: tuple[BaseClient, BaseClient],
    layout: CloudWatchLayout,
    lease: Lease,
    start: datetime | None,
    end: datetime,
    config: ExportConfig,
    progress: Callable[[int, int], None] | None,
) -> ExportSummary:
    """The export itself, once the lease is held: everything read here was written by
    exporters that held it before."""
    checkpoint = read_checkpoint(store)
    streams = _streams(layout)
    origins = {stream: _origin(stream, start, checkpoint, end, config) for stream in streams}
    if start is not None and _mark_unmarked(checkpoint, streams, start):
        # Kept before any hour: a first run from an explicit start killed before it completed
        # an hour resumes from that start, not from the initial lookback.
        lease.renew()
        write_checkpoint(store, checkpoint)
    metric_end = _floor(end, timedelta(seconds=layout.period_seconds))
    stream_ends = {s: end if s.kind == "log" else metric_end for s in streams}
    hours = _hours(min(origins.values()), end)

    summary = ExportSummary(end=end)
    miner = load_miner(store, TEMPLATE_MINER_STATE_PATH)
    fetcher = _Fetcher(*clients, layout, config, summary, LogEventParser(miner))
    blocked: set[str] = set()
    for hours_done, hour in enumerate(hours, start=1):
        windows = {
            stream: (max(origins[stream], hour), min(hour + _HOUR, stream_ends[stream]))
            for stream in streams
            if stream.key not in blocked
        }
        windows = {stream: (a, b) for stream, (a, b) in windows.items() if a < b}
        if windows:
            completed, failures = _export_hour(store, hour, windows, fetcher, summary, lease)
            summary.log_templates = miner.template_count
            for stream in completed:
                _advance(checkpoint, stream.key, *windows[stream])
            blocked.update(failure.stream for failure in failures)
            summary.failures.extend(failures)
            checkpoint.failures = list(summary.failures)
            lease.renew()
            write_checkpoint(store, checkpoint)
        if progress is not None:
            progress(hours_done, len(hours))
    if summary.failures:
        raise ExportError(summary)
    return summary


class _MetricQueryError(RuntimeError):
    """get_metric_data answered a query with InternalError or Forbidden instead of data."""


@dataclass(frozen=True)
class _Stream:
    kind: Literal["log", "metric"]
    name: str  # log group or metric namespace
    source: str

    @property
    def key(self) -> str:
        return f"{'logs' if self.kind == 'log' else 'metrics'}:{self.name}"


@dataclass
class _HourKeys:
    """Keys of the rows an hour partition holds: what a refetch must not add again."""

    metric: set[tuple[str, str, int]] = field(default_factory=set)
    log: set[str] = field(default_factory=set)


class _PartitionWriter:
    """Rebuilds one hour partition, opened on the first new row: an hour with nothing new is
    left as it is (or absent), and a failure before the end leaves the old file in place."""

    def __init__(self, store: ObjectStore, key: str) -> None:
        self._store = store
        self._key = key
        self._stack = ExitStack()
        self._writer: pq.ParquetWriter | None = None

    def __enter__(self) -> "_PartitionWriter":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        return bool(self._stack.__exit__(exc_type, exc, traceback))

    @property
    def opened(self) -> bool:
        return self._writer is not None

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        if self._writer is None:
            self._writer = self._stack.enter_context(
                self._store.parquet_writer(self._key, RAW_SCHEMA_WITH_TEMPLATES)
            )
            if self._store.exists(self._key):
                with self._store.parquet_file(self._key) as existing:
                    for index in range(existing.num_row_groups):
                        group = existing.read_row_group(index)
                        self._writer.write_table(with_template_columns(group))
        self._writer.write_table(table)


class _Fetcher:
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
        self, stream: _Stream, start: datetime, end: datetime, keys: _HourKeys
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
        self, stream: _Stream, start_ms: int, end_ms: int, keys: _HourKeys
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
        keys: _HourKeys,
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
        self, stream: _Stream, start: datetime, end: datetime, keys: _HourKeys
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
        stream: _Stream,
        start_ms: int,
        end_ms: int,
        keys: _HourKeys,
    ) -> pa.Table:
        columns: dict[str, list[Any]] = {
            name: [] for name in ("timestamp", "instance_id", "name", "value", "event_id")
        }
        for result in results:
            instance, name = batch[int(result["Id"][1:])]
            if result.get("StatusCode") in ("InternalError", "Forbidden"):
                raise _MetricQueryError(
                    f"get_metric_data answered {result['StatusCode']} for {stream.name} "
                    f"{name} of {instance}: {result.get('Messages', [])}"
                )
            provenance = f"{stream.name}/{name}"
            for stamp, value in zip(result["Timestamps"], result["Values"], strict=True):
                timestamp = (stamp - _EPOCH) // _MILLISECOND
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


def _export_hour(
    store: ObjectStore,
    hour: datetime,
    windows: dict[_Stream, tuple[datetime, datetime]],
    fetcher: _Fetcher,
    summary: ExportSummary,
    lease: Lease,
) -> tuple[list[_Stream], list[StreamFailure]]:
    """Fetch every window of one hour into its partition; the streams that completed it and
    the failures of the others. The partition is replaced only while this run still holds
    the lease (renewed right before), so an exporter that took over is never overwritten."""
    key = raw_partition_path(hour)
    keys = _read_hour_keys(store, key, since=min(start for start, _ in windows.values()))
    completed: list[_Stream] = []
    failures: list[StreamFailure] = []
    with _PartitionWriter(store, key) as partition:
        for stream, (start, end) in windows.items():
            try:
                for table in fetcher.tables(stream, start, end, keys):
                    partition.write(table)
                    lease.renew_if_due()  # a LeaseLostError is no stream failure: it stops
            except (ClientError, BotoCoreError, _MetricQueryError) as error:
                fetcher.count_failed_call(error)
                failures.append(
                    StreamFailure(
                        stream=stream.key, window_start=start, window_end=end, error=str(error)
                    )
                )
            else:
                completed.append(stream)
        if partition.opened:
            fetcher.save_miner(store)
            lease.renew()  # raising here discards the new file: the old one stays
    if partition.opened:
        summary.partitions_written.append(key)
    return completed, failures


def _read_hour_keys(store: ObjectStore, key: str, since: datetime) -> _HourKeys:
    """Keys of the partition's rows at or after ``since``: only those can be fetched again."""
    keys = _HourKeys()
    if not store.exists(key):
        return keys
    with store.parquet_file(key) as parquet:
        schema = parquet.schema_arrow
        if not (schema.equals(RAW_SCHEMA_WITH_TEMPLATES) or schema.equals(RAW_SCHEMA)):
            raise ValueError(
                f"{store.uri}/{key} does not have the raw telemetry schema; "
                f"refusing to rewrite it (found {schema})"
            )
        threshold = pa.scalar(since, RAW_SCHEMA.field("timestamp").type)
        for batch in parquet.iter_batches(columns=_KEY_COLUMNS):
            recent = batch.filter(pc.greater_equal(batch.column("timestamp"), threshold))
            stamps = recent.column("timestamp").cast(pa.int64()).to_pylist()
            for kind, instance, name, event_id, timestamp in zip(
                recent.column("kind").to_pylist(),
                recent.column("instance_id").to_pylist(),
                recent.column("name").to_pylist(),
                recent.column("event_id").to_pylist(),
                stamps,
                strict=True,
            ):
                if kind == "metric":
                    keys.metric.add((instance, name, timestamp))
                else:
                    keys.log.add(event_id)
    return keys


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


def _parse_timestamp_utc(value: str | float) -> datetime:
    """botocore's timestamp parser, but in UTC: its default attaches a fresh tzlocal to every
    timestamp, and converting those costs more than the rest of a metric page's handling."""
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    parsed: datetime = parse_timestamp(value)
    return parsed.astimezone(UTC)


def _advance(checkpoint: ExportCheckpoint, stream: str, start: datetime, end: datetime) -> None:
    """Move the mark to ``end`` unless that would skip data between the mark and ``start``."""
    mark = checkpoint.high_water_marks.get(stream)
    if mark is None or start <= mark < end:
        checkpoint.high_water_marks[stream] = end


def _mark_unmarked(checkpoint: ExportCheckpoint, streams: list["_Stream"], start: datetime) -> bool:
    """Give the streams without a mark the mark ``start``; whether any had none."""
    unmarked = [s.key for s in streams if s.key not in checkpoint.high_water_marks]
    for key in unmarked:
        checkpoint.high_water_marks[key] = start
    return bool(unmarked)


def _origin(
    stream: _Stream,
    start: datetime | None,
    checkpoint: ExportCheckpoint,
    end: datetime,
    config: ExportConfig,
) -> datetime:
    """Where the stream's export begins: ``start``, else its mark, else the initial lookback."""
    if start is not None:
        return start
    return checkpoint.high_water_marks.get(stream.key, end - config.initial_lookback)


def _streams(layout: CloudWatchLayout) -> list[_Stream]:
    return [_Stream("log", group, source) for group, source in layout.log_groups.items()] + [
        _Stream("metric", namespace, source)
        for namespace, source in layout.metric_namespaces.items()
    ]


def _resolve_end(end: datetime | None, config: ExportConfig) -> datetime:
    now = datetime.now(UTC)
    if end is None:
        return _whole_second(now - config.settle_lag)
    end = _require_aware(end, "end")
    if end > now:
        raise ValueError(
            f"end {end.isoformat()} is in the future: the checkpoint would pass data "
            "that has not arrived yet"
        )
    return _whole_second(end)


def _require_aware(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} {moment.isoformat()} has no timezone; pass an aware UTC time")
    return moment.astimezone(UTC)


def _hours(first: datetime, end: datetime) -> list[datetime]:
    hours = []
    hour = _floor(first, _HOUR)
    while hour < end:
        hours.append(hour)
        hour += _HOUR
    return hours


def _floor(moment: datetime, step: timedelta) -> datetime:
    return moment - (moment - _EPOCH) % step


def _whole_second(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


def _ms(moment: datetime) -> int:
    return (moment - _EPOCH) // _MILLISECOND
