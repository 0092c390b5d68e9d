"""Push the simulated fleet to a CloudWatch API, laid out as the exporter reads it."""

import contextlib
import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict

from contracts.telemetry import SOURCES
from telemetry.cloudwatch_layout import CloudWatchLayout
from telemetry.simulator.config import SimulationConfig
from telemetry.simulator.fleet import Fleet, plan_simulation
from telemetry.simulator.simulation import simulate_fleet

# CloudWatch API limits (PutLogEvents, PutMetricData) and accepted timestamps.
MAX_LOG_EVENTS_PER_CALL = 10_000
MAX_LOG_BATCH_BYTES = 1_048_576
LOG_EVENT_OVERHEAD_BYTES = 26
MAX_METRIC_DATUMS_PER_CALL = 1_000
_OLDEST_ACCEPTED = timedelta(days=14)
_NEWEST_ACCEPTED = timedelta(hours=2)


class PushCounts(BaseModel):
    """What ``push_to_cloudwatch`` sent."""

    model_config = ConfigDict(extra="forbid")

    log_events: int
    metric_datums: int


class CloudWatchPushError(RuntimeError):
    """CloudWatch refused part of what the simulator sent."""


def log_event_batches(events: Sequence[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """Split one stream's events into PutLogEvents calls, in chronological order.

    A call holds at most 10,000 events and 1 MiB, counted as AWS does: each message's UTF-8
    size plus 26 bytes.

    Raises:
        ValueError: a single event is larger than a whole call may be.
    """
    batch: list[dict[str, Any]] = []
    batch_bytes = 0
    for event in sorted(events, key=lambda e: int(e["timestamp"])):
        size = len(str(event["message"]).encode()) + LOG_EVENT_OVERHEAD_BYTES
        if size > MAX_LOG_BATCH_BYTES:
            raise ValueError(f"log event at {event['timestamp']} is {size} bytes, over 1 MiB")
        if len(batch) == MAX_LOG_EVENTS_PER_CALL or batch_bytes + size > MAX_LOG_BATCH_BYTES:
            yield batch
            batch, batch_bytes = [], 0
        batch.append(event)
        batch_bytes += size
    if batch:
        yield batch


def _ensure_log_streams(logs_client: Any, layout: CloudWatchLayout, fleet: Fleet) -> None:
    already = logs_client.exceptions.ResourceAlreadyExistsException
    # Every group of the layout, even for sources this fleet lacks: the exporter reads them all.
    for group in layout.log_groups:
        with contextlib.suppress(already):
            logs_client.create_log_group(logGroupName=group)
    for instance_id, source in zip(fleet.instance_ids, fleet.sources, strict=True):
        with contextlib.suppress(already):
            logs_client.create_log_stream(
                logGroupName=layout.log_group_for(SOURCES[source]), logStreamName=instance_id
            )


def _push_logs(logs_client: Any, layout: CloudWatchLayout, table: pa.Table) -> int:
    logs = table.filter(pc.equal(table["kind"], "log"))
    timestamps = logs["timestamp"].cast(pa.int64()).to_pylist()
    columns = [
        logs[c].to_pylist() for c in ("instance_id", "source", "level", "message", "metadata")
    ]
    streams: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for ts, instance_id, source, level, message, metadata in zip(timestamps, *columns, strict=True):
        body = {"level": level, "message": message, "metadata": json.loads(metadata)}
        streams.setdefault((source, instance_id), []).append(
            {"timestamp": ts, "message": json.dumps(body, ensure_ascii=False)}
        )
    for (source, instance_id), events in streams.items():
        group = layout.log_group_for(source)
        for batch in log_event_batches(events):
            response = logs_client.put_log_events(
                logGroupName=group, logStreamName=instance_id, logEvents=batch
            )
            if rejected := response.get("rejectedLogEventsInfo"):
                raise CloudWatchPushError(f"{group}/{instance_id} rejected events: {rejected}")
    return int(logs.num_rows)


def _push_metrics(cloudwatch_client: Any, layout: CloudWatchLayout, table: pa.Table) -> int:
    wanted = pc.is_in(table["name"], pa.array(layout.metric_names, pa.string()))
    metrics = table.filter(pc.and_(pc.equal(table["kind"], "metric"), wanted))
    by_namespace: dict[str, list[dict[str, Any]]] = {}
    rows = zip(
        *(metrics[c].to_pylist() for c in ("timestamp", "instance_id", "source", "name", "value")),
        strict=True,
    )
    for timestamp, instance_id, source, name, value in rows:
        by_namespace.setdefault(layout.namespace_for(source), []).append(
            {
                "MetricName": name,
                "Dimensions": [{"Name": layout.dimension, "Value": instance_id}],
                "Timestamp": timestamp,
                "Value": value,
            }
        )
    for namespace, datums in by_namespace.items():
        for first in range(0, len(datums), MAX_METRIC_DATUMS_PER_CALL):
            cloudwatch_client.put_metric_data(
                Namespace=namespace, MetricData=datums[first : first + MAX_METRIC_DATUMS_PER_CALL]
            )
    return int(metrics.num_rows)


def push_to_cloudwatch(
    config: SimulationConfig,
    logs_client: Any,
    cloudwatch_client: Any,
    layout: CloudWatchLayout | None = None,
    now: datetime | None = None,
) -> PushCounts:
    """Send the simulated fleet to a CloudWatch API, laid out as the exporter reads it.

    Log groups and streams are created when missing. Logs go one stream per instance in
    chronological batches within PutLogEvents limits; metrics go per source namespace with
    dimension InstanceId, at most 1,000 datums per PutMetricData call.

    Args:
        config: what to simulate; CloudWatch only accepts the last 14 days up to 2 hours
            ahead, so ``start`` must be recent.
        logs_client: a boto3 ``logs`` client.
        cloudwatch_client: a boto3 ``cloudwatch`` client.
        layout: log groups, namespaces and metric names; the default layout when None.
        now: the current time, for the accepted-window check; the clock when None.

    Returns:
        How many log events and metric datums were sent.

    Raises:
        ValueError: the simulated span lies outside what CloudWatch accepts.
        CloudWatchPushError: CloudWatch rejected some events.
    """
    layout = layout or CloudWatchLayout()
    now = now or datetime.now(UTC)
    if config.start < now - _OLDEST_ACCEPTED or config.end > now + _NEWEST_ACCEPTED:
        raise ValueError(
            f"CloudWatch accepts data from {now - _OLDEST_ACCEPTED:%Y-%m-%d %H:%M} to "
            f"{now + _NEWEST_ACCEPTED:%Y-%m-%d %H:%M} UTC; the simulation spans "
            f"{config.start:%Y-%m-%d %H:%M} to {config.end:%Y-%m-%d %H:%M}: choose a recent start"
        )
    fleet, _ = plan_simulation(config)
    _ensure_log_streams(logs_client, layout, fleet)
    log_events = metric_datums = 0
    for _, table in simulate_fleet(config):
        log_events += _push_logs(logs_client, layout, table)
        metric_datums += _push_metrics(cloudwatch_client, layout, table)
    return PushCounts(log_events=log_events, metric_datums=metric_datums)
