"""CloudWatch Logs and metrics → raw telemetry Parquet, one hour partition at a time.

Runs every five minutes. A run exports ``[high-water mark, end)`` of every stream (a log group
or a metric namespace) hour by hour. Each touched hour partition is rebuilt as a new file: the
rows already there are copied, then every fetched page is appended as a row group, leaving out
rows whose key the hour already holds. The new file replaces the old one atomically, and only
then do the streams that completed the hour advance their high-water marks. A crash anywhere is
therefore followed by a rerun that refetches what was not checkpointed and drops what the
partition already has: no gap, no duplicate, never a half-written file.

One exporter writes at a time: a run holds the store's export lease (``contracts.lease.Lease``
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

from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from botocore.client import BaseClient
from botocore.exceptions import BotoCoreError, ClientError

from contracts.layout import EXPORT_LEASE_PATH, raw_partition_path
from contracts.lease import Lease, LeaseBusyError
from contracts.store import ObjectStore
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
from telemetry.cloudwatch_fetch import (
    EPOCH,
    HourKeys,
    MetricQueryError,
    Stream,
    StreamFetcher,
    layout_streams,
)
from telemetry.cloudwatch_layout import CloudWatchLayout
from telemetry.cloudwatch_run import ExportConfig, ExportError, ExportSummary
from telemetry.logs.events import LogEventParser
from telemetry.logs.state import load_miner

_HOUR = timedelta(hours=1)
_KEY_COLUMNS = ["timestamp", "kind", "instance_id", "name", "event_id"]


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
    streams = layout_streams(layout)
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
    fetcher = StreamFetcher(*clients, layout, config, summary, LogEventParser(miner))
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

    def __exit__(self, *exc_info: Any) -> bool:
        return bool(self._stack.__exit__(*exc_info))

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


def _export_hour(
    store: ObjectStore,
    hour: datetime,
    windows: dict[Stream, tuple[datetime, datetime]],
    fetcher: StreamFetcher,
    summary: ExportSummary,
    lease: Lease,
) -> tuple[list[Stream], list[StreamFailure]]:
    """Fetch every window of one hour into its partition; the streams that completed it and
    the failures of the others. The partition is replaced only while this run still holds
    the lease (renewed right before), so an exporter that took over is never overwritten."""
    key = raw_partition_path(hour)
    keys = _read_hour_keys(store, key, since=min(start for start, _ in windows.values()))
    completed: list[Stream] = []
    failures: list[StreamFailure] = []
    with _PartitionWriter(store, key) as partition:
        for stream, (start, end) in windows.items():
            try:
                for table in fetcher.tables(stream, start, end, keys):
                    partition.write(table)
                    lease.renew_if_due()  # a LeaseLostError is no stream failure: it stops
            except (ClientError, BotoCoreError, MetricQueryError) as error:
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


def _read_hour_keys(store: ObjectStore, key: str, since: datetime) -> HourKeys:
    """Keys of the partition's rows at or after ``since``: only those can be fetched again."""
    keys = HourKeys()
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


def _advance(checkpoint: ExportCheckpoint, stream: str, start: datetime, end: datetime) -> None:
    """Move the mark to ``end`` unless that would skip data between the mark and ``start``."""
    mark = checkpoint.high_water_marks.get(stream)
    if mark is None or start <= mark < end:
        checkpoint.high_water_marks[stream] = end


def _mark_unmarked(checkpoint: ExportCheckpoint, streams: list["Stream"], start: datetime) -> bool:
    """Give the streams without a mark the mark ``start``; whether any had none."""
    unmarked = [s.key for s in streams if s.key not in checkpoint.high_water_marks]
    for key in unmarked:
        checkpoint.high_water_marks[key] = start
    return bool(unmarked)


def _origin(
    stream: Stream,
    start: datetime | None,
    checkpoint: ExportCheckpoint,
    end: datetime,
    config: ExportConfig,
) -> datetime:
    """Where the stream's export begins: ``start``, else its mark, else the initial lookback."""
    if start is not None:
        return start
    return checkpoint.high_water_marks.get(stream.key, end - config.initial_lookback)


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
    return moment - (moment - EPOCH) % step


def _whole_second(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)
