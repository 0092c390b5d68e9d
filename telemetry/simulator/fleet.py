"""The simulated fleet: which instances there are, how each source behaves, and the plan.

Each instance belongs to a source (ec2, rds, lambda, alb, app) and has its own level of
every metric at full load, its own load scale and its own day (roughly its time zone). The
plan is the fleet together with the incidents scheduled on it, both drawn from the seed.
"""

from dataclasses import dataclass

import numpy as np

from contracts.telemetry import FLEET_METRICS, METRIC_RANGES, SOURCES
from telemetry.simulator.config import RNG_PLAN, SimulationConfig
from telemetry.simulator.incidents import FloatArray, Incident, IntArray, schedule_incidents

_MINUTES_PER_WEEK = 7 * 24 * 60

# Level of each metric at full weekday business-hours load: percentages are the metric itself,
# counts and bytes are per minute, Latency is in milliseconds. A metric a source does not have
# (an ALB has no disk) is left out and reported as 0. Error counts are drawn from RequestCount
# with the rates in telemetry.simulator.metrics.
_LEVELS: dict[str, dict[str, float]] = {
    "ec2": {
        "CPUUtilization": 55, "MemoryUtilization": 60, "NetworkIn": 4e7, "NetworkOut": 6e7,
        "DiskReadOps": 300, "DiskWriteOps": 500, "DiskUsedPercent": 45, "SwapUsedPercent": 2,
        "LoadAverage": 2.2, "TCPConnections": 350, "RequestCount": 1200, "Latency": 90,
        "DatabaseConnections": 12, "ThreadCount": 260,
    },
    "rds": {
        "CPUUtilization": 45, "MemoryUtilization": 70, "NetworkIn": 2e7, "NetworkOut": 4e7,
        "DiskReadOps": 1500, "DiskWriteOps": 2500, "DiskUsedPercent": 55, "SwapUsedPercent": 1,
        "LoadAverage": 3.0, "TCPConnections": 250, "RequestCount": 8000, "Latency": 4,
        "DatabaseConnections": 150, "ThreadCount": 95,
    },
    "lambda": {
        "CPUUtilization": 35, "MemoryUtilization": 45, "NetworkIn": 2e6, "NetworkOut": 3e6,
        "DiskReadOps": 2, "DiskWriteOps": 4, "DiskUsedPercent": 20,
        "LoadAverage": 0.6, "TCPConnections": 40, "RequestCount": 400, "Latency": 250,
        "DatabaseConnections": 5, "ThreadCount": 8,
    },
    "alb": {
        "CPUUtilization": 25, "MemoryUtilization": 35, "NetworkIn": 1.5e8, "NetworkOut": 2.5e8,
        "DiskUsedPercent": 10, "LoadAverage": 0.4, "TCPConnections": 2500,
        "RequestCount": 6000, "Latency": 60, "ThreadCount": 40,
    },
    "app": {
        "CPUUtilization": 50, "MemoryUtilization": 62, "NetworkIn": 3e7, "NetworkOut": 5e7,
        "DiskReadOps": 150, "DiskWriteOps": 250, "DiskUsedPercent": 40, "SwapUsedPercent": 3,
        "LoadAverage": 2.0, "TCPConnections": 400, "RequestCount": 3000, "Latency": 120,
        "DatabaseConnections": 25, "ThreadCount": 180,
    },
}  # fmt: skip
# Per metric: the share of its level kept at zero load, and the spread of its noise.
_SHAPES: dict[str, tuple[float, float]] = {
    "CPUUtilization": (0.25, 0.08),
    "MemoryUtilization": (0.8, 0.03),
    "NetworkIn": (0.2, 0.1),
    "NetworkOut": (0.2, 0.1),
    "DiskReadOps": (0.3, 0.15),
    "DiskWriteOps": (0.3, 0.15),
    "DiskUsedPercent": (1.0, 0.002),
    "SwapUsedPercent": (0.7, 0.2),
    "LoadAverage": (0.2, 0.1),
    "TCPConnections": (0.2, 0.08),
    "RequestCount": (0.1, 0.08),
    "Latency": (0.6, 0.12),
    "HTTPCode_5XX_Count": (1.0, 0.3),
    "HTTPCode_4XX_Count": (1.0, 0.3),
    "DatabaseConnections": (0.35, 0.06),
    "ThreadCount": (0.7, 0.04),
}


def per_source(values: dict[str, float]) -> FloatArray:
    """One value per source, in SOURCES order."""
    return np.array([values[source] for source in SOURCES])


# How much of the load follows business hours, and how much of it is left at weekends.
_DIURNAL_AMPLITUDE = per_source({"ec2": 0.75, "rds": 0.55, "lambda": 0.85, "alb": 0.8, "app": 0.8})
_WEEKEND_FACTOR = per_source({"ec2": 0.6, "rds": 0.75, "lambda": 0.5, "alb": 0.55, "app": 0.55})

_PERCENT_METRICS = [i for i, m in enumerate(FLEET_METRICS) if METRIC_RANGES[m][1] == 100.0]
_MAX_HEALTHY_PERCENT = 80.0


@dataclass(frozen=True)
class Fleet:
    """Every instance of the simulated fleet, as arrays in fleet order."""

    instance_ids: tuple[str, ...]
    sources: IntArray  # index into SOURCES per instance
    levels: FloatArray  # (instances, metrics) level at full load
    idle: FloatArray  # (metrics,) share of the level kept at zero load
    noise_cv: FloatArray  # (metrics,)
    load_scale: FloatArray  # (instances,)
    shift_minutes: IntArray  # (instances,) where each instance's day starts, roughly its zone
    disk_growth: FloatArray  # (instances,) DiskUsedPercent points per day
    log_norm: FloatArray  # (instances,) mean weekly load of the instance's source


def _source_counts(weights: dict[str, float], instances: int) -> IntArray:
    """Instances per source, proportional to the weights (largest remainder)."""
    share = np.array([weights.get(source, 0.0) for source in SOURCES])
    exact = share / share.sum() * instances
    counts: IntArray = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: instances - int(counts.sum())]] += 1
    return counts


def _instance_ids(rng: np.random.Generator, instances: int) -> tuple[str, ...]:
    ids: list[str] = []
    seen: set[str] = set()
    while len(ids) < instances:
        candidate = f"i-0{rng.bytes(8).hex()}"
        if candidate not in seen:
            seen.add(candidate)
            ids.append(candidate)
    return tuple(ids)


def load_shape(sources: IntArray, shift: IntArray, minutes: IntArray) -> FloatArray:
    """Expected load (about 1 at weekday business-hours peak) per instance and epoch minute."""
    local = minutes[None, :] + shift[:, None]
    hour = (local % 1440) / 60.0
    weekday = (local // 1440 + 3) % 7  # 1970-01-01 was a Thursday; Monday is 0
    business = 1.0 / (1.0 + np.exp(-(hour - 8.5) / 0.7)) / (1.0 + np.exp(-(18.0 - hour) / 0.9))
    amplitude = _DIURNAL_AMPLITUDE[sources][:, None]
    shape = (1.0 - amplitude) + amplitude * business
    return np.asarray(shape * np.where(weekday >= 5, _WEEKEND_FACTOR[sources][:, None], 1.0))


def _build_fleet(config: SimulationConfig, rng: np.random.Generator) -> Fleet:
    counts = _source_counts(config.source_weights, config.instances)
    sources = rng.permutation(np.repeat(np.arange(len(SOURCES), dtype=np.int64), counts))
    n = config.instances
    source_levels = np.array([[_LEVELS[s].get(m, 0.0) for m in FLEET_METRICS] for s in SOURCES])
    levels = source_levels[sources] * rng.lognormal(0.0, 0.2, (n, len(FLEET_METRICS)))
    # A healthy instance is not pinned near 100 %; only incidents take it there.
    levels[:, _PERCENT_METRICS] = np.minimum(levels[:, _PERCENT_METRICS], _MAX_HEALTHY_PERCENT)
    week = np.arange(_MINUTES_PER_WEEK, dtype=np.int64) + 4 * 1440  # epoch minute 5760: a Monday
    source_ids = np.arange(len(SOURCES), dtype=np.int64)
    weekly_mean = load_shape(source_ids, np.zeros_like(source_ids), week).mean(axis=1)
    return Fleet(
        instance_ids=_instance_ids(rng, n),
        sources=sources,
        levels=levels,
        idle=np.array([_SHAPES[m][0] for m in FLEET_METRICS]),
        noise_cv=np.array([_SHAPES[m][1] for m in FLEET_METRICS]),
        load_scale=rng.lognormal(0.0, 0.15, n),
        shift_minutes=rng.integers(-60, 61, n),
        disk_growth=rng.uniform(0.0, 1.5, n),
        log_norm=weekly_mean[sources],
    )


def plan_simulation(config: SimulationConfig) -> tuple[Fleet, list[Incident]]:
    """The fleet and its incidents (ordered by start), both drawn from the seed."""
    rng = np.random.default_rng([config.seed, RNG_PLAN])
    fleet = _build_fleet(config, rng)
    sources = [SOURCES[i] for i in fleet.sources]
    incidents = schedule_incidents(rng, sources, config.minutes, config.incident_rate)
    return fleet, sorted(incidents, key=lambda incident: incident.start)
