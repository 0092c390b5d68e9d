"""The fleet's metrics: normal load, noise and benign routines, then the incidents on top.

Every instance reports each metric of FLEET_METRICS once a minute. Its level follows the
instance's load (business hours, weekends, fleet-wide traffic), with persistent noise carried
from one hour into the next, and a few benign routines (nightly database backups, hourly cron
jobs) that look a little like trouble.
"""

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from contracts.telemetry import FLEET_METRICS, METRIC_RANGES, RAW_SCHEMA, SOURCES
from telemetry.cloudwatch_layout import CloudWatchLayout
from telemetry.simulator.fleet import Fleet, load_shape, per_source
from telemetry.simulator.incidents import (
    METRIC_INDEX,
    FloatArray,
    HourIncidents,
    IntArray,
    apply_incident,
)

_SOURCE_INDEX = {source: i for i, source in enumerate(SOURCES)}

# Share of requests answered with a 4XX and a 5XX.
_RATE_4XX = per_source({"ec2": 0.015, "rds": 0.0005, "lambda": 0.004, "alb": 0.02, "app": 0.015})
_RATE_5XX = per_source({"ec2": 0.002, "rds": 0.0002, "lambda": 0.001, "alb": 0.0015, "app": 0.002})

_COUNT_METRICS = [
    METRIC_INDEX[m]
    for m in (
        "NetworkIn",
        "NetworkOut",
        "DiskReadOps",
        "DiskWriteOps",
        "TCPConnections",
        "RequestCount",
        "HTTPCode_5XX_Count",
        "HTTPCode_4XX_Count",
        "DatabaseConnections",
        "ThreadCount",
    )
]
_LOWER = np.array([METRIC_RANGES[m][0] for m in FLEET_METRICS])
_UPPER = np.array([METRIC_RANGES[m][1] for m in FLEET_METRICS])
_AR_PHI = 0.85  # minute-to-minute persistence of noise
TRAFFIC_NOISE = 0.08  # spread of the fleet-wide traffic around its daily shape, in log units


@dataclass
class NoiseState:
    """Noise at the last generated minute, carried from one hour into the next."""

    traffic: FloatArray  # (instances,)
    metrics: FloatArray  # (instances, metrics)


def _ar1(previous: FloatArray, innovations: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Persistent noise along axis 1 (minutes), continuing from ``previous``."""
    out = np.empty_like(innovations)
    for minute in range(innovations.shape[1]):
        previous = _AR_PHI * previous + innovations[:, minute]
        out[:, minute] = previous
    return out, previous


def normal_metrics(
    fleet: Fleet,
    epoch_minutes: IntArray,
    since_start: IntArray,
    state: NoiseState,
    rng: np.random.Generator,
) -> tuple[FloatArray, FloatArray]:
    """Normal metrics, shape (instances, minutes, metrics), and the load that drove them."""
    n, t, m = len(fleet.instance_ids), len(epoch_minutes), len(FLEET_METRICS)
    innovation_scale = np.sqrt(1.0 - _AR_PHI**2)
    traffic, state.traffic = _ar1(
        state.traffic, rng.normal(0.0, TRAFFIC_NOISE, (n, t)) * innovation_scale
    )
    load = load_shape(fleet.sources, fleet.shift_minutes, epoch_minutes)
    load = load * fleet.load_scale[:, None] * np.exp(traffic)
    innovations = rng.standard_t(4, (n, t, m)) / np.sqrt(2.0) * innovation_scale
    noise, state.metrics = _ar1(state.metrics, innovations)
    values = fleet.levels[:, None, :] * (fleet.idle + (1.0 - fleet.idle) * load[:, :, None])
    values = values * np.exp(fleet.noise_cv * noise)

    values[:, :, METRIC_INDEX["DiskUsedPercent"]] += fleet.disk_growth[:, None] * since_start / 1440
    requests = values[:, :, METRIC_INDEX["RequestCount"]]
    for metric, rates in (("HTTPCode_4XX_Count", _RATE_4XX), ("HTTPCode_5XX_Count", _RATE_5XX)):
        column = METRIC_INDEX[metric]
        expected = requests * rates[fleet.sources][:, None] * np.exp(0.3 * noise[:, :, column])
        values[:, :, column] = rng.poisson(expected)

    # Benign routines that resemble incidents: the nightly RDS backup reads the whole disk
    # and ships it out; hourly cron jobs on servers burn CPU for a few minutes.
    utc_minute_of_day = epoch_minutes % 1440
    backup = (fleet.sources == _SOURCE_INDEX["rds"])[:, None] & (
        (utc_minute_of_day >= 120) & (utc_minute_of_day < 165)
    )[None, :]
    values[:, :, METRIC_INDEX["DiskReadOps"]] *= np.where(backup, 4.0, 1.0)
    values[:, :, METRIC_INDEX["NetworkOut"]] *= np.where(backup, 2.5, 1.0)
    values[:, :, METRIC_INDEX["CPUUtilization"]] += np.where(backup, 12.0, 0.0)
    servers = np.isin(fleet.sources, [_SOURCE_INDEX["ec2"], _SOURCE_INDEX["app"]])
    cron = servers[:, None] & (epoch_minutes % 60 < 3)[None, :]
    values[:, :, METRIC_INDEX["CPUUtilization"]] += cron * rng.uniform(4.0, 12.0, (n, t))
    return values, load


def finish_metrics(values: FloatArray) -> None:
    """Round to what CloudWatch would report and keep every value inside METRIC_RANGES."""
    values[:, :, _COUNT_METRICS] = np.rint(values[:, :, _COUNT_METRICS])
    np.round(values, 2, out=values)
    np.clip(values, _LOWER, _UPPER, out=values)


def apply_incidents(hour: HourIncidents, values: FloatArray, rng: np.random.Generator) -> None:
    """Change the hour's metrics, shape (instances, minutes, metrics), by its incidents."""
    for position, incident in enumerate(hour.incidents):
        minutes = np.flatnonzero(hour.index[incident.instance] == position)
        view = values[incident.instance, minutes[0] : minutes[-1] + 1, :]
        apply_incident(incident, view, hour.offset[incident.instance, minutes], rng)


def metric_columns(
    fleet: Fleet, epoch_minutes: IntArray, values: FloatArray
) -> dict[str, pa.Array]:
    """The hour's metric rows (RAW_SCHEMA_WITH_TEMPLATES columns), per instance and minute."""
    n, t, m = values.shape
    total = n * t * m
    instance = np.repeat(np.arange(n), t * m)
    metric = np.tile(np.arange(m), n * t)
    layout = CloudWatchLayout()
    event_ids = [f"{layout.namespace_for(s)}/{name}" for s in SOURCES for name in FLEET_METRICS]
    return {
        "timestamp": pa.array(
            np.tile(np.repeat(epoch_minutes * 60_000, m), n), RAW_SCHEMA.field("timestamp").type
        ),
        "instance_id": pa.array(fleet.instance_ids, pa.string()).take(instance),
        "source": pa.array(SOURCES, pa.string()).take(fleet.sources[instance]),
        "kind": pa.repeat(pa.scalar("metric", pa.string()), total),
        "name": pa.array(FLEET_METRICS, pa.string()).take(metric),
        "value": pa.array(values.reshape(-1)),
        "level": pa.nulls(total, pa.string()),
        "message": pa.nulls(total, pa.string()),
        "metadata": pa.nulls(total, pa.string()),
        "event_id": pa.array(event_ids, pa.string()).take(fleet.sources[instance] * m + metric),
        "parse_error": pa.array(np.zeros(total, dtype=bool)),
        "template_id": pa.nulls(total, pa.int64()),
        "component": pa.nulls(total, pa.string()),
    }
