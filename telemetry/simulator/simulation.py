"""Fleet simulator: CloudWatch-like metrics and logs of a fleet, with labelled incidents.

Every instance emits each metric of FLEET_METRICS once a minute, shaped by business hours,
weekends, its own baseline and noise, and a few benign routines (nightly database backups,
hourly cron jobs) that look a little like trouble. Logs have per-source
templates, INFO 70 % / DEBUG 15 % / WARN 10 % / ERROR 4 % / CRITICAL 1 %, and a JSON metadata
object. Incidents (telemetry.simulator.incidents) change both and leave their own log
signatures. The output is the exporter's: raw telemetry partitioned by UTC hour, the
incidents as ground truth beside it, and, in push mode, the same telemetry sent to a CloudWatch API.

Log lines take the exporter's path into the raw rows (``telemetry.logs.events``): each message
is mined by the store's template miner, and the row carries its template id, as an exported
event does. A simulation starts a new miner (the ids follow from the seed) and leaves its state
at ``TEMPLATE_MINER_STATE_PATH``, where an exporter writing into the same store carries on.

Generation is vectorised per hour over the whole fleet, and deterministic: the same config
(seed included) gives byte-identical partitions.
"""

import contextlib
import json
import string
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, field_validator

from contracts.dataset import DatasetInfo, write_dataset_info
from contracts.labels import INCIDENT_TYPES, INCIDENTS_SCHEMA
from contracts.layout import INCIDENTS_PATH, raw_partition_path
from contracts.store import ObjectStore
from contracts.telemetry import (
    FLEET_METRICS,
    LOG_LEVELS,
    METRIC_RANGES,
    RAW_SCHEMA,
    RAW_SCHEMA_WITH_TEMPLATES,
    SOURCES,
    TEMPLATE_MINER_STATE_PATH,
)
from telemetry.cloudwatch_layout import CloudWatchLayout
from telemetry.logs.events import mine_template_ids
from telemetry.logs.state import save_miner
from telemetry.logs.templates import LogTemplateMiner
from telemetry.simulator.incidents import (
    INCIDENT_KINDS,
    INCIDENT_SLOTS,
    METRIC_INDEX,
    Incident,
    LogTemplate,
    apply_incident,
    schedule_incidents,
)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

DEFAULT_START = datetime(2024, 1, 1, tzinfo=UTC)  # a Monday, 00:00 UTC
DEFAULT_SOURCE_WEIGHTS = {"ec2": 0.3, "app": 0.3, "rds": 0.15, "lambda": 0.15, "alb": 0.1}
NORMAL_LEVEL_PROBS = (0.15, 0.70, 0.10, 0.04, 0.01)  # over LOG_LEVELS: DEBUG INFO WARN ERROR CRIT

# Longest incident the schedule can produce (telemetry.simulator.incidents.DURATION_MINUTES).
_MAX_INCIDENT_MINUTES = 60
_MINUTES_PER_WEEK = 7 * 24 * 60
# Independent random streams: np.random.default_rng([seed, stream, ...]).
_RNG_PLAN, _RNG_INITIAL_NOISE, _RNG_METRICS, _RNG_LOGS = 0, 1, 2, 3


class SimulationConfig(BaseModel):
    """What fleet to simulate, for how long, and how often things go wrong."""

    model_config = ConfigDict(extra="forbid")

    instances: int = Field(default=50, ge=1, description="number of instances in the fleet")
    start: datetime = Field(
        default=DEFAULT_START, description="first minute (UTC; a naive time is taken as UTC)"
    )
    duration: timedelta = Field(default=timedelta(days=3), description="whole minutes, > 0")
    seed: int = Field(default=0, ge=0, description="same seed, same telemetry")
    incident_rate: float = Field(
        default=0.05, ge=0.0, lt=1.0, description="share of instance-minutes inside an incident"
    )
    logs_per_minute: float = Field(
        default=4.0, ge=0.0, description="average log lines per instance-minute in normal load"
    )
    incident_log_share: float = Field(
        default=1.0,
        ge=0.0,
        description="multiplier of the share of an instance's log lines its incident writes "
        "(capped at all of them); 0 leaves incidents without a log signature",
    )
    source_weights: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_SOURCE_WEIGHTS),
        description="relative share of each source (ec2, rds, lambda, alb, app) in the fleet",
    )

    @field_validator("start")
    @classmethod
    def _start_on_whole_minute(cls, start: datetime) -> datetime:
        start = start.replace(tzinfo=UTC) if start.tzinfo is None else start.astimezone(UTC)
        if start.second or start.microsecond:
            raise ValueError(f"start must fall on a whole minute, got {start.isoformat()}")
        return start

    @field_validator("duration")
    @classmethod
    def _positive_whole_minutes(cls, duration: timedelta) -> timedelta:
        if duration <= timedelta(0):
            raise ValueError(f"duration must be positive, got {duration}")
        if duration % timedelta(minutes=1):
            raise ValueError(f"duration must be a whole number of minutes, got {duration}")
        return duration

    @field_validator("source_weights")
    @classmethod
    def _known_sources(cls, weights: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(weights) - set(SOURCES))
        if unknown:
            raise ValueError(f"unknown sources {unknown}; known sources are {list(SOURCES)}")
        negative = sorted(source for source, weight in weights.items() if weight < 0)
        if negative:
            raise ValueError(f"source weights must be >= 0, negative for {negative}")
        if sum(weights.values()) <= 0:
            raise ValueError("at least one source weight must be positive")
        return weights

    @property
    def minutes(self) -> int:
        return int(self.duration / timedelta(minutes=1))

    @property
    def end(self) -> datetime:
        """The first minute after the simulation."""
        return self.start + self.duration


class SimulationSummary(BaseModel):
    """What ``write_simulation`` wrote."""

    model_config = ConfigDict(extra="forbid")

    instances: int
    partitions: int
    metric_rows: int
    log_rows: int
    incidents_by_type: dict[str, int]
    anomalous_fraction: float = Field(description="share of instance-minutes inside incidents")


class PushCounts(BaseModel):
    """What ``push_to_cloudwatch`` sent."""

    model_config = ConfigDict(extra="forbid")

    log_events: int
    metric_datums: int


class CloudWatchPushError(RuntimeError):
    """CloudWatch refused part of what the simulator sent."""


# --- How each source behaves -------------------------------------------------------------

_SOURCE_INDEX = {source: i for i, source in enumerate(SOURCES)}


# Level of each metric at full weekday business-hours load: percentages are the metric itself,
# counts and bytes are per minute, Latency is in milliseconds. A metric a source does not have
# (an ALB has no disk) is left out and reported as 0. Error counts are drawn from RequestCount
# with the rates further down.
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


def _per_source(values: dict[str, float]) -> FloatArray:
    return np.array([values[source] for source in SOURCES])


_RATE_4XX = _per_source({"ec2": 0.015, "rds": 0.0005, "lambda": 0.004, "alb": 0.02, "app": 0.015})
_RATE_5XX = _per_source({"ec2": 0.002, "rds": 0.0002, "lambda": 0.001, "alb": 0.0015, "app": 0.002})
# How much of the load follows business hours, and how much of it is left at weekends.
_DIURNAL_AMPLITUDE = _per_source({"ec2": 0.75, "rds": 0.55, "lambda": 0.85, "alb": 0.8, "app": 0.8})
_WEEKEND_FACTOR = _per_source({"ec2": 0.6, "rds": 0.75, "lambda": 0.5, "alb": 0.55, "app": 0.55})

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
_PERCENT_METRICS = [i for i, m in enumerate(FLEET_METRICS) if METRIC_RANGES[m][1] == 100.0]
_MAX_HEALTHY_PERCENT = 80.0
_LOWER = np.array([METRIC_RANGES[m][0] for m in FLEET_METRICS])
_UPPER = np.array([METRIC_RANGES[m][1] for m in FLEET_METRICS])
_AR_PHI = 0.85  # minute-to-minute persistence of noise
_TRAFFIC_NOISE = 0.08  # spread of the fleet-wide traffic around its daily shape, in log units

_T = LogTemplate
_OK, _CLIENT_ERROR, _SERVER_ERROR = (200, 200, 200, 201, 204, 304), (400, 401, 404, 429), (500, 502)
_NORMAL_TEMPLATES: dict[str, dict[str, tuple[LogTemplate, ...]]] = {
    "ec2": {
        "DEBUG": (
            _T("cloud-init: instance metadata refreshed in {ms}ms"),
            _T("dhclient[{pid}]: DHCPREQUEST on eth0 to {ip} port 67"),
        ),
        "INFO": (
            _T("systemd[1]: Started {service}.service"),
            _T("sshd[{pid}]: Accepted publickey for ec2-user from {ip} port {port} ssh2"),
            _T("CRON[{pid}]: (root) CMD (/usr/local/bin/{job})"),
            _T("amazon-ssm-agent: health ping succeeded in {ms}ms"),
            _T("nginx: {method} {path} {status} {bytes} {ms}ms", _OK),
        ),
        "WARN": (
            _T("kernel: CPU{cpu}: Core temperature above threshold, cpu clock throttled"),
            _T("systemd-journald[{pid}]: Suppressed {n} messages from {service}.service"),
            _T("nginx: {method} {path} {status} {bytes} {ms}ms", _CLIENT_ERROR),
        ),
        "ERROR": (
            _T("systemd[1]: {service}.service: Main process exited, status=1/FAILURE"),
            _T("nginx: upstream timed out while reading response header from {ip}", (504,)),
        ),
        "CRITICAL": (_T("kernel: EXT4-fs error (device nvme0n1p1): ext4_find_entry: bad block"),),
    },
    "rds": {
        "DEBUG": (
            _T("DEBUG:  StartTransactionCommand for user={user}"),
            _T('DEBUG:  autovacuum: processing table "{table}"'),
        ),
        "INFO": (
            _T("LOG:  duration: {ms} ms  statement: SELECT * FROM {table} WHERE id = $1"),
            _T("LOG:  connection authorized: user={user} database=prod"),
            _T("LOG:  checkpoint complete: wrote {n} buffers"),
            _T('LOG:  automatic vacuum of table "prod.public.{table}": index scans: 1'),
        ),
        "WARN": (
            _T("WARNING:  there is already a transaction in progress"),
            _T("LOG:  duration: {ms} ms  statement: UPDATE {table} SET status = $1 (slow query)"),
        ),
        "ERROR": (
            _T('ERROR:  duplicate key value violates unique constraint "{table}_pkey"'),
            _T("ERROR:  canceling statement due to statement timeout"),
        ),
        "CRITICAL": (_T("FATAL:  remaining connection slots are reserved for superusers"),),
    },
    "lambda": {
        "DEBUG": (_T("Loaded config for {function} from SSM in {ms}ms"),),
        "INFO": (
            _T("START RequestId: {rid} Version: $LATEST"),
            _T("END RequestId: {rid}"),
            _T(
                "REPORT RequestId: {rid} Duration: {ms} ms Memory Size: 512 MB "
                "Max Memory Used: {mb} MB"
            ),
            _T("{function}: processed {n} records from {queue}", (200,)),
        ),
        "WARN": (
            _T("{function}: cold start, init duration {ms} ms"),
            _T("{function}: retrying {service} call, attempt {n}"),
        ),
        "ERROR": (
            _T("[ERROR] KeyError: '{field}' in {function} handler", (500,)),
            _T(
                "{function}: write to {table} throttled: ProvisionedThroughputExceededException",
                (500,),
            ),
        ),
        "CRITICAL": (_T("RequestId: {rid} Error: Runtime exited with error: signal: killed"),),
    },
    "alb": {
        "DEBUG": (_T("health check {target} passed in {ms}ms"),),
        "INFO": (
            _T("{method} {path} {status} {ms}ms target={target} client={ip}", _OK),
            _T("{method} {path} {status} {ms}ms target={target} client={ip} tls=TLSv1.3", _OK),
        ),
        "WARN": (_T("{method} {path} {status} {ms}ms client={ip}", _CLIENT_ERROR),),
        "ERROR": (
            _T("{method} {path} {status} {ms}ms target={target} error=target_timeout", (502, 504)),
        ),
        "CRITICAL": (_T("target group {target_group}: only one healthy target left"),),
    },
    "app": {
        "DEBUG": (
            _T("GC pause (G1 Young Generation) {ms}ms"),
            _T("SQL: SELECT id, status FROM {table} WHERE user_id = ? ({ms}ms)"),
            _T("cache miss for key user:{n}"),
        ),
        "INFO": (
            _T("{method} {path} completed {status} in {ms}ms", _OK),
            _T("user {user} logged in from {ip}", (200,)),
            _T("order {n} created for user {user}", (201,)),
            _T("cache hit ratio {hit}% over the last minute"),
        ),
        "WARN": (
            _T("slow request {method} {path} took {ms}ms", (200,)),
            _T("retrying call to {service} (attempt {n}/3)"),
            _T("invalid token for user {user}: expired", (401,)),
        ),
        "ERROR": (
            _T("{method} {path} failed: {service} returned {status}", _SERVER_ERROR),
            _T("database query failed: deadlock detected on {table}", (500,)),
        ),
        "CRITICAL": (_T("connection pool exhausted: {n} active, 0 idle", (503,)),),
    },
}

_CHOICES: dict[str, tuple[str, ...]] = {
    "method": ("GET", "GET", "GET", "GET", "POST", "POST", "PUT", "DELETE"),
    "path": (
        "/api/v1/orders",
        "/api/v1/users/me",
        "/api/v1/cart",
        "/api/v1/products",
        "/api/v1/search",
        "/api/v1/checkout",
        "/api/v1/payments",
        "/api/v1/inventory",
        "/login",
        "/healthz",
    ),
    "table": ("orders", "users", "payments", "sessions", "inventory", "events", "audit_log"),
    "service": (
        "payments-api",
        "inventory-svc",
        "auth-svc",
        "search-svc",
        "redis-cache",
        "postgres-primary",
        "notification-svc",
    ),
    "target_group": ("tg-web", "tg-api", "tg-checkout"),
    "function": (
        "orders-processor",
        "thumbnail-resizer",
        "auth-authorizer",
        "events-consumer",
        "report-builder",
    ),
    "queue": ("orders-queue", "events-stream", "email-queue"),
    "field": ("customer_id", "created_at", "amount", "email", "order_id", "currency"),
    "bad_date": ("2024-13-45", "31/02/2024", "NaT", "0000-00-00"),
    "job": ("logrotate", "backup.sh", "cleanup_tmp", "metrics-push"),
    "exception": (
        "NullPointerException",
        "IllegalStateException",
        "ClassCastException",
        "ArrayIndexOutOfBoundsException",
        "ConcurrentModificationException",
        "NumberFormatException",
    ),
}
_INTEGERS: dict[str, tuple[int, int]] = {
    "pid": (1000, 65000),
    "port": (32768, 61000),
    "n": (2, 500),
    "bytes": (200, 5_000_000),
    "mb": (90, 500),
    "hit": (80, 99),
    "cpu": (0, 15),
}
# Slots that show a metric of the row's instance at the row's minute.
_METRIC_SLOTS = {
    "mem": "MemoryUtilization",
    "cpu_pct": "CPUUtilization",
    "disk": "DiskUsedPercent",
    "swap": "SwapUsedPercent",
}
# Slots the row itself carries (shared with the metadata).
_ROW_SLOTS = ("rid", "user", "ip", "attacker_ip", "ms", "status", "target", "err_pct")
# Slots made up from the incident's seed: a deployed version and its build hash.
_SEEDED_SLOTS = ("version", "build")


@dataclass(frozen=True)
class _Catalogue:
    """Every log template, grouped by (source or incident kind, level), parsed into parts.

    ``onset[k]`` lists the (template, level) indices of the onset lines of INCIDENT_KINDS[k];
    their templates follow the groups.
    """

    parts: tuple[tuple[tuple[str, str | None], ...], ...]
    statuses: tuple[tuple[int, ...], ...]
    group_start: IntArray
    group_size: IntArray
    onset: tuple[tuple[tuple[int, int], ...], ...]


def _incident_group(kind_index: IntArray, level: IntArray) -> IntArray:
    return (len(SOURCES) + kind_index) * len(LOG_LEVELS) + level


@lru_cache(maxsize=1)
def _catalogue() -> _Catalogue:
    groups: list[tuple[LogTemplate, ...]] = [
        _NORMAL_TEMPLATES[source].get(level, ()) for source in SOURCES for level in LOG_LEVELS
    ]
    for kind in INCIDENT_KINDS:
        groups.extend(kind.templates.get(level, ()) for level in LOG_LEVELS)
        needed = {LOG_LEVELS[i] for p in kind.phases for i, q in enumerate(p.level_probs) if q}
        if missing := needed - set(kind.templates):
            raise ValueError(f"{kind.incident_type}/{kind.variant} has no templates for {missing}")
    if any(not group for group in groups[: len(SOURCES) * len(LOG_LEVELS)]):
        raise ValueError("every source needs templates at every log level")
    templates = [template for group in groups for template in group]
    onset = []
    for kind in INCIDENT_KINDS:
        lines = []
        for level, template in kind.onset:
            lines.append((len(templates), LOG_LEVELS.index(level)))
            templates.append(template)
        onset.append(tuple(lines))
    known = set(_CHOICES) | set(_INTEGERS) | set(_METRIC_SLOTS) | set(_ROW_SLOTS)
    known |= set(_SEEDED_SLOTS)
    parts = []
    for template in templates:
        parsed = tuple((text, slot) for text, slot, _, _ in string.Formatter().parse(template.text))
        if unknown := {slot for _, slot in parsed if slot is not None} - known:
            raise ValueError(f"template {template.text!r} uses unknown slots {unknown}")
        parts.append(parsed)
    sizes = np.array([len(group) for group in groups], dtype=np.int64)
    return _Catalogue(
        parts=tuple(parts),
        statuses=tuple(template.statuses for template in templates),
        group_start=np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64),
        group_size=sizes,
        onset=tuple(onset),
    )


# --- The fleet -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Fleet:
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


def _load_shape(sources: IntArray, shift: IntArray, minutes: IntArray) -> FloatArray:
    """Expected load (about 1 at weekday business-hours peak) per instance and epoch minute."""
    local = minutes[None, :] + shift[:, None]
    hour = (local % 1440) / 60.0
    weekday = (local // 1440 + 3) % 7  # 1970-01-01 was a Thursday; Monday is 0
    business = 1.0 / (1.0 + np.exp(-(hour - 8.5) / 0.7)) / (1.0 + np.exp(-(18.0 - hour) / 0.9))
    amplitude = _DIURNAL_AMPLITUDE[sources][:, None]
    shape = (1.0 - amplitude) + amplitude * business
    return np.asarray(shape * np.where(weekday >= 5, _WEEKEND_FACTOR[sources][:, None], 1.0))


def _build_fleet(config: SimulationConfig, rng: np.random.Generator) -> _Fleet:
    counts = _source_counts(config.source_weights, config.instances)
    sources = rng.permutation(np.repeat(np.arange(len(SOURCES), dtype=np.int64), counts))
    n = config.instances
    source_levels = np.array([[_LEVELS[s].get(m, 0.0) for m in FLEET_METRICS] for s in SOURCES])
    levels = source_levels[sources] * rng.lognormal(0.0, 0.2, (n, len(FLEET_METRICS)))
    # A healthy instance is not pinned near 100 %; only incidents take it there.
    levels[:, _PERCENT_METRICS] = np.minimum(levels[:, _PERCENT_METRICS], _MAX_HEALTHY_PERCENT)
    week = np.arange(_MINUTES_PER_WEEK, dtype=np.int64) + 4 * 1440  # epoch minute 5760: a Monday
    source_ids = np.arange(len(SOURCES), dtype=np.int64)
    weekly_mean = _load_shape(source_ids, np.zeros_like(source_ids), week).mean(axis=1)
    return _Fleet(
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


def _plan(config: SimulationConfig) -> tuple[_Fleet, list[Incident]]:
    rng = np.random.default_rng([config.seed, _RNG_PLAN])
    fleet = _build_fleet(config, rng)
    sources = [SOURCES[i] for i in fleet.sources]
    incidents = schedule_incidents(rng, sources, config.minutes, config.incident_rate)
    return fleet, sorted(incidents, key=lambda incident: incident.start)


# --- Metrics -------------------------------------------------------------------------------


@dataclass
class _NoiseState:
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


def _metrics(
    fleet: _Fleet,
    epoch_minutes: IntArray,
    since_start: IntArray,
    state: _NoiseState,
    rng: np.random.Generator,
) -> tuple[FloatArray, FloatArray]:
    """Normal metrics, shape (instances, minutes, metrics), and the load that drove them."""
    n, t, m = len(fleet.instance_ids), len(epoch_minutes), len(FLEET_METRICS)
    innovation_scale = np.sqrt(1.0 - _AR_PHI**2)
    traffic, state.traffic = _ar1(
        state.traffic, rng.normal(0.0, _TRAFFIC_NOISE, (n, t)) * innovation_scale
    )
    load = _load_shape(fleet.sources, fleet.shift_minutes, epoch_minutes)
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


def _finish_metrics(values: FloatArray) -> None:
    """Round to what CloudWatch would report and keep every value inside METRIC_RANGES."""
    values[:, :, _COUNT_METRICS] = np.rint(values[:, :, _COUNT_METRICS])
    np.round(values, 2, out=values)
    np.clip(values, _LOWER, _UPPER, out=values)


# --- Incidents in one hour -----------------------------------------------------------------


@dataclass(frozen=True)
class _HourIncidents:
    """Which incident (if any) each instance-minute of an hour is in, and at what offset."""

    incidents: list[Incident]
    index: IntArray  # (instances, minutes), -1 outside incidents
    offset: IntArray  # (instances, minutes), minutes since the incident's start


def _incidents_in(
    incidents: list[Incident], starts: list[int], first: int, stop: int, instances: int
) -> _HourIncidents:
    low = int(np.searchsorted(starts, first - _MAX_INCIDENT_MINUTES, side="left"))
    high = int(np.searchsorted(starts, stop, side="left"))
    overlapping = [i for i in incidents[low:high] if i.end >= first]
    index = np.full((instances, stop - first), -1, dtype=np.int64)
    offset = np.zeros((instances, stop - first), dtype=np.int64)
    for position, incident in enumerate(overlapping):
        lo, hi = max(incident.start, first), min(incident.end + 1, stop)
        index[incident.instance, lo - first : hi - first] = position
        offset[incident.instance, lo - first : hi - first] = np.arange(lo, hi) - incident.start
    return _HourIncidents(overlapping, index, offset)


def _apply_incidents(hour: _HourIncidents, values: FloatArray, rng: np.random.Generator) -> None:
    for position, incident in enumerate(hour.incidents):
        minutes = np.flatnonzero(hour.index[incident.instance] == position)
        view = values[incident.instance, minutes[0] : minutes[-1] + 1, :]
        apply_incident(incident, view, hour.offset[incident.instance, minutes], rng)


# --- Logs ----------------------------------------------------------------------------------


def _strings(values: npt.ArrayLike) -> pa.Array:
    return pc.cast(pa.array(values), pa.string())


def _pick(vocabulary: Sequence[str], rng: np.random.Generator, size: int) -> pa.Array:
    return pa.array(vocabulary, pa.string()).take(rng.integers(0, len(vocabulary), size))


def _constant(text: str, size: int) -> pa.Array:
    return pa.array([text], pa.string()).take(np.zeros(size, dtype=np.int64))


@dataclass(frozen=True)
class _LogRows:
    """What each log row of an hour carries besides its text."""

    instance: IntArray
    minute: IntArray
    latency_ms: IntArray
    request_id: pa.Array
    user: IntArray
    client_ip: pa.Array
    attacker_ip: pa.Array
    incident_seed: IntArray  # the seed of the incident that wrote the row, -1 for normal rows


def _row_slot(
    slot: str, rows: _LogRows, idx: IntArray, status: IntArray, values: FloatArray
) -> pa.Array:
    """A slot whose value the log row carries or derives from its instance's metrics."""
    if slot == "rid":
        return rows.request_id.take(idx)
    if slot == "user":
        return pc.binary_join_element_wise("user_", _strings(rows.user[idx]), "")
    if slot == "ip":
        return rows.client_ip.take(idx)
    if slot == "attacker_ip":
        return rows.attacker_ip.take(idx)
    if slot == "ms":
        return _strings(rows.latency_ms[idx])
    if slot == "status":
        return _strings(status[idx])
    if slot == "err_pct":
        at = (rows.instance[idx], rows.minute[idx])
        requests = values[(*at, METRIC_INDEX["RequestCount"])]
        failures = values[(*at, METRIC_INDEX["HTTPCode_5XX_Count"])]
        return _strings(np.rint(100.0 * failures / np.maximum(requests, 1.0)).astype(np.int64))
    # "target": a backend of the load balancer, derived from the instance so it repeats.
    octet = rows.instance[idx] % 200 + 10
    return pc.binary_join_element_wise("10.0.1.", _strings(octet), ":8080", "")


def _seeded(seeds: IntArray, slot: str) -> IntArray:
    """A number per row that only depends on its incident's seed and the slot (a hash)."""
    salt = np.uint64(zlib.crc32(slot.encode()))
    mixed = (seeds.astype(np.uint64) + salt) * np.uint64(0x9E3779B97F4A7C15)
    return (mixed >> np.uint64(33)).astype(np.int64)


def _seeded_slot(slot: str, seeds: IntArray) -> pa.Array:
    """A version (``v2.14.3``) or build hash (``4f1c0a9``) made up from each row's seed."""
    h = _seeded(seeds, slot)
    if slot == "version":
        number = pc.binary_join_element_wise(
            _strings(1 + h % 4), _strings(h // 4 % 30), _strings(h // 120 % 10), "."
        )
        return pc.binary_join_element_wise("v", number, "").cast(pa.string())
    return pa.array([f"{value % 16**7:07x}" for value in h.tolist()], pa.string())


def _fill(
    parts: tuple[tuple[str, str | None], ...],
    rows: _LogRows,
    idx: IntArray,
    status: IntArray,
    values: FloatArray,
    rng: np.random.Generator,
) -> pa.Array:
    pieces: list[Any] = []
    for text, slot in parts:
        if text:
            pieces.append(text)
        if slot is None:
            continue
        if slot in _CHOICES:
            piece = _pick(_CHOICES[slot], rng, len(idx))
            seeds = rows.incident_seed[idx]
            if slot in INCIDENT_SLOTS and (seeds >= 0).any():
                # One broken code path: the incident's lines name one service, endpoint, ...
                fixed = pa.array(_CHOICES[slot], pa.string()).take(
                    _seeded(seeds, slot) % len(_CHOICES[slot])
                )
                piece = pc.if_else(pa.array(seeds >= 0), fixed, piece)
            pieces.append(piece)
        elif slot in _SEEDED_SLOTS:
            pieces.append(_seeded_slot(slot, rows.incident_seed[idx]))
        elif slot in _INTEGERS:
            low, high = _INTEGERS[slot]
            pieces.append(_strings(rng.integers(low, high + 1, len(idx))))
        elif slot in _METRIC_SLOTS:
            column = METRIC_INDEX[_METRIC_SLOTS[slot]]
            shown = np.rint(values[rows.instance[idx], rows.minute[idx], column]).astype(np.int64)
            pieces.append(_strings(shown))
        else:
            pieces.append(_row_slot(slot, rows, idx, status, values))
    if not any(isinstance(piece, pa.Array) for piece in pieces):
        return _constant("".join(pieces), len(idx))
    return pc.binary_join_element_wise(*pieces, "")


def _ips(rng: np.random.Generator, size: int) -> pa.Array:
    octets = [_strings(rng.integers(1, 255, size)) for _ in range(3)]
    return pc.binary_join_element_wise("10", *octets, ".")


@dataclass(frozen=True)
class _LogProfile:
    """How each instance-minute of an hour logs: volume, incident share, incident levels."""

    rate: FloatArray  # (instances, minutes) expected lines
    incident_share: FloatArray  # (instances, minutes)
    incident_levels: FloatArray  # (instances, minutes, levels) for the incident's own lines
    kind: IntArray  # (instances, minutes) index into INCIDENT_KINDS


def _log_profile(
    fleet: _Fleet, config: SimulationConfig, load: FloatArray, incidents: _HourIncidents
) -> _LogProfile:
    n, t = load.shape
    profile = _LogProfile(
        rate=config.logs_per_minute * load / fleet.log_norm[:, None],
        incident_share=np.zeros((n, t)),
        incident_levels=np.zeros((n, t, len(LOG_LEVELS))),
        kind=np.zeros((n, t), dtype=np.int64),
    )
    for position, incident in enumerate(incidents.incidents):
        mask = incidents.index == position
        phase = incident.phase_at(incidents.offset[mask])
        phases = incident.kind.phases
        profile.rate[mask] *= np.array([p.log_rate for p in phases])[phase]
        share = np.array([p.incident_share for p in phases])[phase] * config.incident_log_share
        profile.incident_share[mask] = np.minimum(share, 1.0)
        profile.incident_levels[mask] = np.array([p.level_probs for p in phases])[phase]
        profile.kind[mask] = INCIDENT_KINDS.index(incident.kind)
    return profile


def _render_messages(
    template: IntArray, rows: _LogRows, values: FloatArray, rng: np.random.Generator
) -> tuple[pa.Array, IntArray]:
    """Each row's message from its template, and its HTTP status (-1 where none)."""
    catalogue = _catalogue()
    total = len(template)
    status = np.full(total, -1, dtype=np.int64)
    by_template = np.argsort(template, kind="stable")
    bounds = np.searchsorted(template[by_template], np.arange(len(catalogue.parts) + 1))
    messages: list[pa.Array] = []
    for j in np.flatnonzero(np.diff(bounds)):
        idx = by_template[bounds[j] : bounds[j + 1]]
        if catalogue.statuses[j]:
            status[idx] = rng.choice(catalogue.statuses[j], len(idx))
        messages.append(_fill(catalogue.parts[j], rows, idx, status, values, rng))
    if not messages:
        return pa.array([], pa.string()), status
    inverse = np.empty(total, dtype=np.int64)
    inverse[by_template] = np.arange(total)
    return pa.concat_arrays(messages).take(inverse), status


def _metadata(
    rows: _LogRows,
    status: IntArray,
    corrupt: npt.NDArray[np.bool_],
    attacked: npt.NDArray[np.bool_],
) -> pa.Array:
    """The JSON metadata of each row, formatted as json.dumps would."""
    user = pc.binary_join_element_wise('"user_', _strings(rows.user), '"', "")
    return pc.binary_join_element_wise(
        '{"request_id": "',
        rows.request_id,
        '", "user": ',
        pc.if_else(pa.array(corrupt), "null", user),
        ', "status": ',
        pc.if_else(pa.array(status < 0), "null", _strings(status)),
        ', "latency_ms": ',
        pc.if_else(pa.array(corrupt), "null", _strings(rows.latency_ms)),
        ', "client_ip": "',
        pc.if_else(pa.array(attacked), rows.attacker_ip, rows.client_ip),
        '"}',
        "",
    )


def _logs(
    fleet: _Fleet,
    config: SimulationConfig,
    hour: datetime,
    epoch_minutes: IntArray,
    load: FloatArray,
    values: FloatArray,
    incidents: _HourIncidents,
    rng: np.random.Generator,
) -> dict[str, pa.Array]:
    """The hour's log rows (RAW_SCHEMA_WITH_TEMPLATES columns), per instance in time order."""
    t = load.shape[1]
    profile = _log_profile(fleet, config, load, incidents)
    cell = np.repeat(
        np.arange(profile.rate.size, dtype=np.int64), rng.poisson(profile.rate).ravel()
    )
    total = len(cell)
    offset_ms = rng.integers(0, 60_000, total)
    order = np.lexsort((offset_ms, cell))
    cell, offset_ms = cell[order], offset_ms[order]
    instance, minute = cell // t, cell % t

    in_incident = incidents.index[instance, minute] >= 0
    from_incident = in_incident & (rng.random(total) < profile.incident_share[instance, minute])
    probs = np.where(
        from_incident[:, None],
        profile.incident_levels[instance, minute],
        np.array(NORMAL_LEVEL_PROBS),
    )
    level = np.minimum((rng.random(total)[:, None] >= np.cumsum(probs, axis=1)).sum(axis=1), 4)
    source = fleet.sources[instance]
    group = np.where(
        from_incident,
        _incident_group(profile.kind[instance, minute], level),
        source * len(LOG_LEVELS) + level,
    )
    catalogue = _catalogue()
    pick = np.floor(rng.random(total) * catalogue.group_size[group]).astype(np.int64)
    template = catalogue.group_start[group] + pick
    row_incident = np.where(from_incident, incidents.index[instance, minute], -1)
    if config.incident_log_share > 0:
        onset = _onset_rows(incidents)
        if len(onset[0]):
            # The onset lines open their minute; appended, then everything back in time order.
            instance, minute, offset_ms, template, level, row_incident = (
                np.concatenate([old, new])
                for old, new in zip(
                    (instance, minute, offset_ms, template, level, row_incident),
                    onset,
                    strict=True,
                )
            )
            order = np.lexsort((offset_ms, minute, instance))
            instance, minute, offset_ms = instance[order], minute[order], offset_ms[order]
            template, level, row_incident = template[order], level[order], row_incident[order]
            total, source = len(instance), fleet.sources[instance]

    # Per-incident attributes get one extra entry at the end, read by normal rows (index -1).
    seeds = np.array([i.seed for i in incidents.incidents] + [-1], dtype=np.int64)
    types = np.array([i.kind.incident_type for i in incidents.incidents] + [""])[row_incident]
    latency = values[instance, minute, METRIC_INDEX["Latency"]] * rng.lognormal(0, 0.35, total)
    hex_ids = np.frombuffer(rng.bytes(8 * total).hex().encode(), dtype="S16")
    rows = _LogRows(
        instance=instance,
        minute=minute,
        latency_ms=np.maximum(np.rint(latency), 1).astype(np.int64),
        request_id=pc.binary_join_element_wise("req-", pa.array(hex_ids).cast(pa.string()), ""),
        user=rng.integers(1, 5000, total),
        client_ip=_ips(rng, total),
        attacker_ip=pc.binary_join_element_wise(
            "198.51.100.", _strings(np.maximum(seeds[row_incident], 0) % 250 + 2), ""
        ),
        incident_seed=seeds[row_incident],
    )
    message, status = _render_messages(template, rows, values, rng)
    # A corrupted feed nulls fields that should be set; an attacker's lines carry its address.
    metadata = _metadata(rows, status, types == "data_anomaly", types == "security_threat")
    timestamp_ms = epoch_minutes[minute] * 60_000 + offset_ms
    return {
        "timestamp": pa.array(timestamp_ms, RAW_SCHEMA.field("timestamp").type),
        "instance_id": pa.array(fleet.instance_ids, pa.string()).take(instance),
        "source": pa.array(SOURCES, pa.string()).take(source),
        "kind": _constant("log", total),
        "name": pa.nulls(total, pa.string()),
        "value": pa.nulls(total, pa.float64()),
        "level": pa.array(LOG_LEVELS, pa.string()).take(level),
        "message": message,
        "metadata": metadata,
        "event_id": pc.binary_join_element_wise(
            f"sim-{hour:%Y%m%d%H}-", pc.utf8_lpad(_strings(np.arange(total)), 7, "0"), ""
        ),
        "parse_error": pa.array(np.zeros(total, dtype=bool)),
        "template_id": pa.nulls(total, pa.int64()),  # mined in time order by simulate_fleet
        "component": pa.nulls(total, pa.string()),
    }


def _onset_rows(incidents: _HourIncidents) -> tuple[IntArray, ...]:
    """The onset lines of the incidents starting in the hour: instance, minute, offset (ms),
    template, level and incident position per line, in that order."""
    onset = _catalogue().onset
    lines: list[tuple[int, int, int, int, int, int]] = []
    for position, incident in enumerate(incidents.incidents):
        entries = onset[INCIDENT_KINDS.index(incident.kind)]
        mine = incidents.index[incident.instance] == position
        first = np.flatnonzero(mine & (incidents.offset[incident.instance] == 0))
        if not entries or not len(first):
            continue  # no onset lines, or it started in an earlier hour
        for order, (template, level) in enumerate(entries):
            lines.append((incident.instance, int(first[0]), order, template, level, position))
    if not lines:
        return tuple(np.zeros(0, dtype=np.int64) for _ in range(6))
    return tuple(np.array(column, dtype=np.int64) for column in zip(*lines, strict=True))


def _metric_columns(
    fleet: _Fleet, epoch_minutes: IntArray, values: FloatArray
) -> dict[str, pa.Array]:
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
        "kind": _constant("metric", total),
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


# --- Public API ----------------------------------------------------------------------------


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
    fleet, incidents = _plan(config)
    starts = [incident.start for incident in incidents]
    # The noise starts from its steady state, so the first hour is as noisy as the others.
    initial = np.random.default_rng([config.seed, _RNG_INITIAL_NOISE])
    n, m = config.instances, len(FLEET_METRICS)
    state = _NoiseState(
        traffic=initial.normal(0.0, _TRAFFIC_NOISE, n), metrics=initial.standard_normal((n, m))
    )
    start_minute = int(config.start.timestamp()) // 60
    for position, hour in enumerate(partition_hours(config)):
        first = max(0, int((hour - config.start) / timedelta(minutes=1)))
        stop = min(config.minutes, first + 60 - (start_minute + first) % 60)
        since_start = np.arange(first, stop, dtype=np.int64)
        epoch_minutes = start_minute + since_start
        metrics_rng = np.random.default_rng([config.seed, _RNG_METRICS, position])
        values, load = _metrics(fleet, epoch_minutes, since_start, state, metrics_rng)
        in_hour = _incidents_in(incidents, starts, first, stop, n)
        _apply_incidents(in_hour, values, metrics_rng)
        _finish_metrics(values)
        logs_rng = np.random.default_rng([config.seed, _RNG_LOGS, position])
        logs = _logs(fleet, config, hour, epoch_minutes, load, values, in_hour, logs_rng)
        logs["template_id"] = pa.array(
            mine_template_ids(logs["message"].to_pylist(), miner), pa.int64()
        )
        metrics = _metric_columns(fleet, epoch_minutes, values)
        schema = RAW_SCHEMA_WITH_TEMPLATES
        yield (
            hour,
            pa.concat_tables(
                [pa.table(metrics, schema=schema), pa.table(logs, schema=schema)]
            ).combine_chunks(),
        )


def _incidents_table(
    config: SimulationConfig, fleet: _Fleet, incidents: list[Incident]
) -> pa.Table:
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
    return _incidents_table(config, *_plan(config))


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
    fleet, incidents = _plan(config)
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


# CloudWatch API limits (PutLogEvents, PutMetricData) and accepted timestamps.
MAX_LOG_EVENTS_PER_CALL = 10_000
MAX_LOG_BATCH_BYTES = 1_048_576
LOG_EVENT_OVERHEAD_BYTES = 26
MAX_METRIC_DATUMS_PER_CALL = 1_000
_OLDEST_ACCEPTED = timedelta(days=14)
_NEWEST_ACCEPTED = timedelta(hours=2)


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


def _ensure_log_streams(logs_client: Any, layout: CloudWatchLayout, fleet: _Fleet) -> None:
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
    fleet, _ = _plan(config)
    _ensure_log_streams(logs_client, layout, fleet)
    log_events = metric_datums = 0
    for _, table in simulate_fleet(config):
        log_events += _push_logs(logs_client, layout, table)
        metric_datums += _push_metrics(cloudwatch_client, layout, table)
    return PushCounts(log_events=log_events, metric_datums=metric_datums)
