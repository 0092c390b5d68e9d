"""Fleet simulator: CloudWatch-like metrics and logs of a fleet, with labelled incidents.

Every instance emits each metric of FLEET_METRICS once a minute (telemetry.simulator.metrics)
and log lines from per-source templates (telemetry.simulator.logs); incidents
(telemetry.simulator.incidents) change both and leave their own log signatures. The output is
the exporter's: raw telemetry partitioned by UTC hour and the incidents as ground truth beside
it; telemetry.simulator.cloudwatch_push sends the same telemetry to a CloudWatch API instead.

Log lines take the exporter's path into the raw rows (``telemetry.logs.events``): each message
is mined by the store's template miner, and the row carries its template id, as an exported
event does. A simulation starts a new miner (the ids follow from the seed) and leaves its state
at ``TEMPLATE_MINER_STATE_PATH``, where an exporter writing into the same store carries on.

Generation is vectorised per hour over the whole fleet, and deterministic: the same config
(seed included) gives byte-identical partitions.
"""

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field

from contracts.dataset import DatasetInfo, write_dataset_info
from contracts.labels import INCIDENT_TYPES, INCIDENTS_SCHEMA
from contracts.layout import INCIDENTS_PATH, raw_partition_path
from contracts.store import ObjectStore
from contracts.telemetry import (
    FLEET_METRICS,
    RAW_SCHEMA_WITH_TEMPLATES,
    TEMPLATE_MINER_STATE_PATH,
)
from telemetry.logs.events import mine_template_ids
from telemetry.logs.state import save_miner
from telemetry.logs.templates import LogTemplateMiner
from telemetry.simulator.config import (
    RNG_INITIAL_NOISE,
    RNG_LOGS,
    RNG_METRICS,
    SimulationConfig,
)
from telemetry.simulator.fleet import Fleet, plan_simulation
from telemetry.simulator.incidents import Incident, incidents_in_hour
from telemetry.simulator.logs import log_columns
from telemetry.simulator.metrics import (
    TRAFFIC_NOISE,
    NoiseState,
    apply_incidents,
    finish_metrics,
    metric_columns,
    normal_metrics,
)


class SimulationSummary(BaseModel):
    """What ``write_simulation`` wrote."""

    model_config = ConfigDict(extra="forbid")

    instances: int
    partitions: int
    metric_rows: int
    log_rows: int
    incidents_by_type: dict[str, int]
    anomalous_fraction: float = Field(description="share of instance-minutes inside incidents")


def partition_hours(config: SimulationConfig) -> list[datetime]:
    """The UTC hours the simulation writes a partition for, in order."""
    hour = config.start.replace(minute=0)
    hours = []
    while hour < config.end:
        hours.append(hour)
        hour += timedelta(hours=1)
    return hours


def simulate_fleet(
    config: SimulationConfig, miner: LogTemplateMiner | None = None
) -> Iterator[tuple[datetime, pa.Table]]:
    """Generate the fleet's telemetry one UTC hour at a time.

    Args:
        config: the fleet, the time span and the seed.
        miner: the template miner the log lines are mined by, in the order they are written
            (it keeps what it learns); None mines with a new one.

    Yields:
        Each hour (its first minute) and its rows in RAW_SCHEMA_WITH_TEMPLATES: every metric
        of every instance once a minute, then the log lines, per instance in time order.
    """
    miner = miner if miner is not None else LogTemplateMiner()
    fleet, incidents = plan_simulation(config)
    starts = [incident.start for incident in incidents]
    # The noise starts from its steady state, so the first hour is as noisy as the others.
    initial = np.random.default_rng([config.seed, RNG_INITIAL_NOISE])
    n, m = config.instances, len(FLEET_METRICS)
    state = NoiseState(
        traffic=initial.normal(0.0, TRAFFIC_NOISE, n), metrics=initial.standard_normal((n, m))
    )
    start_minute = int(config.start.timestamp()) // 60
    for position, hour in enumerate(partition_hours(config)):
        first = max(0, int((hour - config.start) / timedelta(minutes=1)))
        stop = min(config.minutes, first + 60 - (start_minute + first) % 60)
        since_start = np.arange(first, stop, dtype=np.int64)
        epoch_minutes = start_minute + since_start
        metrics_rng = np.random.default_rng([config.seed, RNG_METRICS, position])
        values, load = normal_metrics(fleet, epoch_minutes, since_start, state, metrics_rng)
        in_hour = incidents_in_hour(incidents, starts, first, stop, n)
        apply_incidents(in_hour, values, metrics_rng)
        finish_metrics(values)
        logs_rng = np.random.default_rng([config.seed, RNG_LOGS, position])
        logs = log_columns(fleet, config, hour, epoch_minutes, load, values, in_hour, logs_rng)
        logs["template_id"] = pa.array(
            mine_template_ids(logs["message"].to_pylist(), miner), pa.int64()
        )
        metrics = metric_columns(fleet, epoch_minutes, values)
        schema = RAW_SCHEMA_WITH_TEMPLATES
        yield (
            hour,
            pa.concat_tables(
                [pa.table(metrics, schema=schema), pa.table(logs, schema=schema)]
            ).combine_chunks(),
        )


def _incidents_table(config: SimulationConfig, fleet: Fleet, incidents: list[Incident]) -> pa.Table:
    ordered = sorted(incidents, key=lambda incident: (incident.instance, incident.start))
    return pa.table(
        {
            "instance_id": [fleet.instance_ids[i.instance] for i in ordered],
            "start": [config.start + timedelta(minutes=i.start) for i in ordered],
            "end": [config.start + timedelta(minutes=i.end) for i in ordered],
            "incident_type": [i.kind.incident_type for i in ordered],
            "metrics": [list(i.kind.metrics) for i in ordered],
        },
        schema=INCIDENTS_SCHEMA,
    )


def simulated_incidents(config: SimulationConfig) -> pa.Table:
    """The ground truth of ``simulate_fleet(config)`` in INCIDENTS_SCHEMA, by instance and start."""
    return _incidents_table(config, *plan_simulation(config))


def write_simulation(
    store: ObjectStore,
    config: SimulationConfig,
    on_partition: Callable[[str], None] | None = None,
) -> SimulationSummary:
    """Simulate the fleet into ``store``: hourly raw partitions, incidents, dataset info.

    Each partition is written atomically at ``raw_partition_path(hour)``, replacing any
    earlier one; the ground truth goes to INCIDENTS_PATH, the DatasetInfo to the root and the
    template miner's state to TEMPLATE_MINER_STATE_PATH (replacing an earlier one: the
    simulation's template ids are its own).

    Args:
        store: where to write.
        config: what to simulate.
        on_partition: called with each partition's key once it is in place (progress).

    Returns:
        Row counts, incidents per type and the share of anomalous instance-minutes.
    """
    metric_rows = log_rows = partitions = 0
    miner = LogTemplateMiner()
    for hour, table in simulate_fleet(config, miner):
        key = raw_partition_path(hour)
        store.write_table(key, table)
        logs = int(pc.sum(pc.equal(table["kind"], "log")).as_py() or 0)
        log_rows += logs
        metric_rows += table.num_rows - logs
        partitions += 1
        if on_partition is not None:
            on_partition(key)
    save_miner(miner, store, TEMPLATE_MINER_STATE_PATH)
    fleet, incidents = plan_simulation(config)
    store.write_table(INCIDENTS_PATH, _incidents_table(config, fleet, incidents))
    write_dataset_info(
        store, DatasetInfo(name="fleet", step_seconds=60, metrics=list(FLEET_METRICS))
    )
    types = [incident.kind.incident_type for incident in incidents]
    anomalous = sum(incident.duration for incident in incidents)
    return SimulationSummary(
        instances=config.instances,
        partitions=partitions,
        metric_rows=metric_rows,
        log_rows=log_rows,
        incidents_by_type={t: types.count(t) for t in INCIDENT_TYPES},
        anomalous_fraction=anomalous / (config.instances * config.minutes),
    )
