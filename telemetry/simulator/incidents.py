"""The six incident types the fleet simulator injects: when they happen and what they do.

Each type is a state machine: it walks through its phases in order
(error spike WARNING → ERROR → CRITICAL, latency slow → degraded → timeout, resource
exhaustion 70 → 80 → 90 → 99 %, ...) and each phase changes both the instance's metrics and
its logs: how many lines it writes, what share come from the incident, and at which levels.

The logs are the incident's signature, as an SRE would read it: its own templates (a memory
leak's GC and OOM lines, a full disk's "No space left on device", an outage's refused
connections and 503s, a saturated CPU's slow-request and starved-worker warnings, an attack's
failed logins or blocked payloads, a broken feed's schema errors), some opened by ``onset``
lines at the first minute (an error spike is a bad deployment: the rollout's version line,
then new exceptions). What stays fixed over one incident is drawn from its seed: the slots in
``INCIDENT_SLOTS`` (the failing service, endpoint, table, exception, the deployed version)
hold one value for all its lines, as one broken code path writes them, where normal lines
draw them per line.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from contracts.labels import INCIDENT_TYPES
from contracts.telemetry import FLEET_METRICS

# Seed 004 §4: how often each type is chosen when an incident starts.
INCIDENT_WEIGHTS: dict[str, float] = {
    "error_spike": 0.25,
    "latency_degradation": 0.20,
    "security_threat": 0.15,
    "resource_exhaustion": 0.15,
    "service_outage": 0.15,
    "data_anomaly": 0.10,
}

# Inclusive bounds in minutes; resource exhaustion needs time to climb, spikes are short.
DURATION_MINUTES: dict[str, tuple[int, int]] = {
    "error_spike": (5, 20),
    "latency_degradation": (10, 45),
    "security_threat": (5, 30),
    "resource_exhaustion": (12, 45),
    "service_outage": (5, 30),
    "data_anomaly": (5, 25),
}

# The last incident drawn may be cut to fit the budget, but never below this.
MIN_DURATION_MINUTES = 3

# Template slots an incident fills with one value, drawn from its seed, for all its lines.
INCIDENT_SLOTS = frozenset(
    {
        "service",
        "path",
        "method",
        "table",
        "target_group",
        "field",
        "function",
        "queue",
        "exception",
        "version",
        "build",
    }
)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

METRIC_INDEX = {name: i for i, name in enumerate(FLEET_METRICS)}


@dataclass(frozen=True)
class LogTemplate:
    """One kind of log line: text with ``{slot}`` fields and the HTTP statuses it may carry.

    Rows built from a template without statuses get ``"status": null`` in their metadata.
    """

    text: str
    statuses: tuple[int, ...] = ()


@dataclass(frozen=True)
class Phase:
    """One state of an incident's state machine and how it shapes the instance's logs."""

    name: str
    log_rate: float  # multiplier of the instance's normal log rate
    incident_share: float  # share of its log lines written by the incident's templates
    level_probs: tuple[float, float, float, float, float]  # over LOG_LEVELS


@dataclass(frozen=True)
class IncidentKind:
    """An incident type in one variant (e.g. resource exhaustion of memory).

    ``onset`` lines, (level, template), are logged once each, in order, at the incident's
    first minute, besides the phases' lines.
    """

    incident_type: str
    variant: str
    metrics: tuple[str, ...]
    phases: tuple[Phase, ...]
    templates: dict[str, tuple[LogTemplate, ...]] = field(hash=False)
    onset: tuple[tuple[str, LogTemplate], ...] = field(default=(), hash=False)


@dataclass(frozen=True)
class Incident:
    """One injected incident: minutes ``start`` .. ``end`` (inclusive) of one instance."""

    instance: int  # index into the fleet
    start: int  # minutes since the simulation start
    duration: int
    kind: IncidentKind
    seed: int  # drives what stays fixed over the incident (a stuck sensor value, an attacker)

    @property
    def end(self) -> int:
        return self.start + self.duration - 1

    def phase_at(self, offsets: IntArray) -> IntArray:
        """Index of the phase at each minute offset from the start (phases split it evenly)."""
        n_phases = len(self.kind.phases)
        return np.minimum(offsets * n_phases // self.duration, n_phases - 1)


def _levels(
    warn: float = 0.0, error: float = 0.0, critical: float = 0.0
) -> tuple[float, float, float, float, float]:
    return (0.0, 0.0, warn, error, critical)


_PHASES: dict[str, tuple[Phase, ...]] = {
    "error_spike": (
        Phase("warning", 1.5, 0.40, _levels(warn=0.7, error=0.3)),
        Phase("error", 2.5, 0.60, _levels(warn=0.2, error=0.7, critical=0.1)),
        Phase("critical", 3.5, 0.75, _levels(error=0.45, critical=0.55)),
    ),
    "latency_degradation": (
        Phase("slow", 1.1, 0.25, _levels(warn=0.9, error=0.1)),
        Phase("degraded", 1.3, 0.40, _levels(warn=0.5, error=0.5)),
        Phase("timeout", 1.5, 0.60, _levels(warn=0.2, error=0.6, critical=0.2)),
    ),
    "security_threat": (
        Phase("probing", 2.0, 0.40, _levels(warn=0.8, error=0.2)),
        Phase("attack", 4.0, 0.70, _levels(warn=0.5, error=0.4, critical=0.1)),
    ),
    "resource_exhaustion": (
        Phase("warning", 1.0, 0.15, _levels(warn=1.0)),
        Phase("high", 1.1, 0.25, _levels(warn=0.7, error=0.3)),
        Phase("critical", 1.2, 0.35, _levels(warn=0.3, error=0.6, critical=0.1)),
        Phase("exhausted", 1.3, 0.50, _levels(error=0.5, critical=0.5)),
    ),
    "service_outage": (
        Phase("failing", 1.5, 0.50, _levels(warn=0.3, error=0.6, critical=0.1)),
        Phase("down", 2.0, 0.75, _levels(error=0.6, critical=0.4)),
    ),
    "data_anomaly": (Phase("corrupt", 1.3, 0.40, _levels(warn=0.6, error=0.35, critical=0.05)),),
}

_T = LogTemplate
_SECURITY_TEMPLATES: dict[str, dict[str, tuple[LogTemplate, ...]]] = {
    "brute_force": {
        "WARN": (
            _T("Failed password for admin from {attacker_ip} port {port} ssh2"),
            _T("Login failed for user {user} from {attacker_ip}: invalid credentials", (401,)),
        ),
        "ERROR": (
            _T("{n} failed login attempts for {user} from {attacker_ip} in 60s", (401, 429)),
        ),
        "CRITICAL": (
            _T("Account {user} locked after {n} failed attempts from {attacker_ip}", (423,)),
        ),
    },
    "sql_injection": {
        "WARN": (
            _T("Suspicious query parameter from {attacker_ip} on {path}: id=1' OR '1'='1", (400,)),
        ),
        "ERROR": (
            _T(
                "WAF blocked SQL injection from {attacker_ip}: {path}?id=1;DROP TABLE {table}--",
                (403,),
            ),
            _T(
                "Syntax error in query built from user input: UNION SELECT password FROM users",
                (500,),
            ),
        ),
        "CRITICAL": (
            _T("Possible data exfiltration: {n} rows of {table} read via {path}", (200,)),
        ),
    },
    "xss": {
        "WARN": (
            _T("Rejected input containing <script> tag from {attacker_ip} on {path}", (400,)),
        ),
        "ERROR": (
            _T("WAF blocked XSS payload from {attacker_ip}: <img src=x onerror=alert(1)>", (403,)),
        ),
        "CRITICAL": (
            _T("Stored XSS payload found in {table}.comment submitted by {user}", (201,)),
        ),
    },
}

_RESOURCE_TEMPLATES: dict[str, dict[str, tuple[LogTemplate, ...]]] = {
    "memory": {
        "WARN": (
            _T("Memory usage at {mem}% on {service}"),
            _T("GC overhead rising: full GC took {ms}ms, heap {mem}% used"),
        ),
        "ERROR": (
            _T("java.lang.OutOfMemoryError: Java heap space in {service}", (500,)),
            _T("Swap usage at {swap}%, memory pressure on {service}"),
        ),
        "CRITICAL": (_T("Out of memory: Killed process {pid} ({service}) total-vm:{bytes}kB"),),
    },
    "cpu": {
        "WARN": (
            _T("CPU usage at {cpu_pct}% for the last 5 minutes"),
            _T("Slow request {method} {path} took {ms}ms: CPU at {cpu_pct}%", (200,)),
        ),
        "ERROR": (_T("Worker {pid} unresponsive: starved of CPU for {ms}ms (CPU {cpu_pct}%)"),),
        "CRITICAL": (_T("CPU saturated at {cpu_pct}%: shedding requests to {path}", (503,)),),
    },
    "disk": {
        "WARN": (_T("Disk usage at {disk}% on /dev/nvme0n1p1"),),
        "ERROR": (_T("Failed to write {table} segment: No space left on device (disk {disk}%)"),),
        "CRITICAL": (_T("Filesystem / is {disk}% full; writes are failing"),),
    },
}

_TEMPLATES: dict[str, dict[str, tuple[LogTemplate, ...]]] = {
    "error_spike": {
        "WARN": (
            _T("Error rate {err_pct}% above threshold on {service}"),
            _T("Retrying {service} call after {exception} (attempt {n}/3)"),
        ),
        "ERROR": (
            _T("Unhandled {exception} in {method} {path} since {version}", (500,)),
            _T("Request {method} {path} failed: {service} returned {status}", (500, 502)),
        ),
        "CRITICAL": (
            _T("Error budget exhausted: {err_pct}% of requests failing", (500,)),
            _T("Circuit breaker OPEN for {service} after {n} consecutive failures", (503,)),
        ),
    },
    "latency_degradation": {
        "WARN": (
            _T("Slow request {method} {path} took {ms}ms", (200,)),
            _T("{service} response time {ms}ms exceeds SLO of 500ms"),
        ),
        "ERROR": (
            _T("Upstream {service} degraded: p99 latency {ms}ms, queue depth {n}"),
            _T("Request {method} {path} exceeded deadline after {ms}ms", (504,)),
        ),
        "CRITICAL": (
            _T("Timeout after {ms}ms waiting for {service}; worker pool exhausted", (504,)),
        ),
    },
    "service_outage": {
        "WARN": (_T("Health check failed for {target}: connection refused"),),
        "ERROR": (
            _T("upstream connect error or disconnect/reset before headers: {service}", (503,)),
            _T("Connection to {service}:5432 refused", (503,)),
        ),
        "CRITICAL": (
            _T("Service Unavailable: 0 healthy targets in {target_group}", (503,)),
            _T("All connections to {service} failed; returning 503 to clients", (503,)),
        ),
    },
    "data_anomaly": {
        "WARN": (
            _T("Null value in required field '{field}' of record {n}"),
            _T("Schema mismatch in batch {n}: expected number for '{field}'"),
        ),
        "ERROR": (
            _T("Failed to parse payload from {service}: invalid date '{bad_date}'", (422,)),
            _T("Rejected {n} records with malformed '{field}' from {service}", (400,)),
        ),
        "CRITICAL": (_T("Checksum mismatch in {table} partition {n}; data may be corrupt"),),
    },
}
# Lines logged once at an incident's first minute (see IncidentKind).
_ONSETS: dict[str, tuple[tuple[str, LogTemplate], ...]] = {
    # A bad deployment: the rollout's version lines, then the new version's exceptions.
    "error_spike": (
        ("INFO", _T("Deploying {service} {version} (build {build}) to {target_group}")),
        ("INFO", _T("Deployment of {service} {version} finished: all targets healthy")),
    ),
    "service_outage": (
        ("WARN", _T("Target {target} of {target_group} marked unhealthy: connection refused")),
    ),
    "data_anomaly": (("INFO", _T("Upstream feed {queue} switched to schema {version}")),),
}

_RESOURCE_METRICS = {
    "memory": ("MemoryUtilization", "SwapUsedPercent"),
    "cpu": ("CPUUtilization", "LoadAverage"),
    "disk": ("DiskUsedPercent", "DiskWriteOps"),
}

_METRICS: dict[str, tuple[str, ...]] = {
    "error_spike": ("HTTPCode_5XX_Count", "Latency"),
    "latency_degradation": ("Latency", "TCPConnections", "ThreadCount", "LoadAverage"),
    "security_threat": ("HTTPCode_4XX_Count", "RequestCount", "NetworkIn", "CPUUtilization"),
    "service_outage": (
        "RequestCount",
        "HTTPCode_5XX_Count",
        "TCPConnections",
        "NetworkOut",
        "DatabaseConnections",
        "Latency",
        "CPUUtilization",
    ),
    "data_anomaly": ("NetworkIn", "NetworkOut", "DiskWriteOps"),
}

# Which resource can run out depends on what the instance is: a Lambda function only has
# memory to exhaust, an ALB no disk of its own.
RESOURCE_VARIANTS: dict[str, tuple[str, ...]] = {
    "ec2": ("memory", "cpu", "disk"),
    "rds": ("cpu", "memory", "disk"),
    "lambda": ("memory",),
    "alb": ("cpu", "memory"),
    "app": ("memory", "cpu", "disk"),
}


def _build_kinds() -> tuple[IncidentKind, ...]:
    kinds = []
    for incident_type in INCIDENT_TYPES:
        phases = _PHASES[incident_type]
        if incident_type == "security_threat":
            variants = {v: (_METRICS[incident_type], t) for v, t in _SECURITY_TEMPLATES.items()}
        elif incident_type == "resource_exhaustion":
            variants = {v: (_RESOURCE_METRICS[v], t) for v, t in _RESOURCE_TEMPLATES.items()}
        else:
            variants = {"default": (_METRICS[incident_type], _TEMPLATES[incident_type])}
        onset = _ONSETS.get(incident_type, ())
        for variant, (metrics, templates) in variants.items():
            kinds.append(IncidentKind(incident_type, variant, metrics, phases, templates, onset))
    return tuple(kinds)


INCIDENT_KINDS: tuple[IncidentKind, ...] = _build_kinds()


def _variants_for(incident_type: str, source: str) -> list[IncidentKind]:
    kinds = [k for k in INCIDENT_KINDS if k.incident_type == incident_type]
    if incident_type == "resource_exhaustion":
        kinds = [k for k in kinds if k.variant in RESOURCE_VARIANTS[source]]
    return kinds


def schedule_incidents(
    rng: np.random.Generator, sources: Sequence[str], n_minutes: int, rate: float
) -> list[Incident]:
    """Place incidents so that about ``rate`` of all instance-minutes are inside one.

    Types are drawn with INCIDENT_WEIGHTS and durations from DURATION_MINUTES until the
    fleet's budget of anomalous minutes is spent. Some instances are more incident-prone
    than others; incidents on one instance never overlap or touch (one normal minute at
    least between two), so every incident stays a separate labelled interval.

    Args:
        rng: the random stream to draw from.
        sources: the source of each instance, in fleet order.
        n_minutes: length of the simulation in minutes.
        rate: target share of anomalous instance-minutes, in [0, 1).

    Returns:
        The incidents, ordered by instance and start.
    """
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"incident rate must be in [0, 1), got {rate}")
    if n_minutes < 1 or not sources:
        raise ValueError("need at least one instance and one minute to schedule incidents")
    n_instances = len(sources)
    budget = round(rate * n_instances * n_minutes)
    if budget == 0:
        return []
    types, durations = _draw_durations(rng, budget, n_minutes)
    proneness = rng.gamma(2.0, 1.0, n_instances)
    instances = rng.choice(n_instances, size=len(types), p=proneness / proneness.sum())
    instances = _move_what_does_not_fit(rng, instances, durations, proneness, n_minutes)
    seeds = rng.integers(0, 2**31, len(types))
    choices = rng.random(len(types))

    incidents = []
    for instance in np.unique(instances[instances >= 0]):
        mine = np.flatnonzero(instances == instance)
        slack = n_minutes - int(durations[mine].sum()) - (len(mine) - 1)
        cuts = np.sort(rng.integers(0, slack + 1, size=len(mine)))
        gaps = np.diff(cuts, prepend=0)
        ends_before = np.cumsum(durations[mine] + 1) - (durations[mine] + 1)
        starts = np.cumsum(gaps) + ends_before
        for j, start in zip(mine, starts, strict=True):
            incident_type = _TYPES[types[j]]
            kinds = _variants_for(incident_type, sources[instance])
            kind = kinds[int(choices[j] * len(kinds))]
            incidents.append(
                Incident(int(instance), int(start), int(durations[j]), kind, int(seeds[j]))
            )
    return incidents


_TYPES = tuple(INCIDENT_WEIGHTS)


def _draw_durations(
    rng: np.random.Generator, budget: int, n_minutes: int
) -> tuple[IntArray, IntArray]:
    """Incident types and durations whose minutes add up to ``budget``."""
    weights = np.array([INCIDENT_WEIGHTS[t] for t in _TYPES])
    low = np.array([DURATION_MINUTES[t][0] for t in _TYPES])
    high = np.array([DURATION_MINUTES[t][1] for t in _TYPES])
    types: list[IntArray] = []
    durations: list[IntArray] = []
    drawn = 0
    while drawn < budget:
        size = (budget - drawn) // int(low.min()) + 1
        batch = rng.choice(len(_TYPES), size=size, p=weights)
        types.append(batch)
        durations.append(np.minimum(rng.integers(low[batch], high[batch] + 1), n_minutes))
        drawn += int(durations[-1].sum())
    all_types, all_durations = np.concatenate(types), np.concatenate(durations)
    count = int(np.searchsorted(np.cumsum(all_durations), budget)) + 1
    all_types, all_durations = all_types[:count], all_durations[:count]
    # The last one is cut to land on the budget, but stays a few minutes long.
    overshoot = int(all_durations.sum()) - budget
    all_durations[-1] = max(all_durations[-1] - overshoot, min(MIN_DURATION_MINUTES, n_minutes))
    return all_types, all_durations


def _move_what_does_not_fit(
    rng: np.random.Generator,
    instances: IntArray,
    durations: IntArray,
    proneness: FloatArray,
    n_minutes: int,
) -> IntArray:
    """Reassign incidents that overflow their instance's timeline; -1 where none has room.

    Each incident needs its minutes plus one separating minute (except the last on the
    instance). Only at high rates does anything overflow, so the loop below is short.
    """
    instances = instances.copy()
    order = np.argsort(instances, kind="stable")
    sorted_instances = instances[order]
    need = durations[order] + 1
    running = np.cumsum(need)
    group_start = np.flatnonzero(np.diff(sorted_instances, prepend=-1))
    sizes = np.diff(np.append(group_start, len(order)))
    before_group = np.repeat(running[group_start] - need[group_start], sizes)
    overflow = order[running - before_group - 1 > n_minutes]
    if len(overflow) == 0:
        return instances
    instances[overflow] = -1
    used = np.bincount(
        instances[instances >= 0], weights=durations[instances >= 0] + 1, minlength=len(proneness)
    )
    for j in overflow:
        free = n_minutes + 1 - used
        fits = proneness * (free >= durations[j] + 1)
        if fits.sum() == 0:
            continue
        instance = int(rng.choice(len(proneness), p=fits / fits.sum()))
        instances[j] = instance
        used[instance] += durations[j] + 1
    return instances


def apply_incident(
    incident: Incident, values: FloatArray, offsets: IntArray, rng: np.random.Generator
) -> None:
    """Change one instance's metrics over the incident's minutes, in place.

    Args:
        incident: the incident.
        values: the instance's metrics at those minutes, shape (minutes, len(FLEET_METRICS)),
            before rounding and clipping to METRIC_RANGES.
        offsets: minutes since the incident's start for each row of ``values``.
        rng: the random stream for minute-to-minute variation.
    """
    _EFFECTS[incident.kind.incident_type](incident, values, offsets, rng)


_CPU, _MEM, _DISK, _SWAP = (
    METRIC_INDEX[m]
    for m in ("CPUUtilization", "MemoryUtilization", "DiskUsedPercent", "SwapUsedPercent")
)
_NET_IN, _NET_OUT, _DISK_WRITE, _LOAD = (
    METRIC_INDEX[m] for m in ("NetworkIn", "NetworkOut", "DiskWriteOps", "LoadAverage")
)
_TCP, _REQUESTS, _LATENCY, _5XX, _4XX = (
    METRIC_INDEX[m]
    for m in (
        "TCPConnections",
        "RequestCount",
        "Latency",
        "HTTPCode_5XX_Count",
        "HTTPCode_4XX_Count",
    )
)
_DB_CONNECTIONS, _THREADS = METRIC_INDEX["DatabaseConnections"], METRIC_INDEX["ThreadCount"]


def _jitter(rng: np.random.Generator, n: int, spread: float) -> FloatArray:
    return rng.uniform(1.0 - spread, 1.0 + spread, n)


def _error_spike(
    incident: Incident, values: FloatArray, offsets: IntArray, rng: np.random.Generator
) -> None:
    phase = incident.phase_at(offsets)
    error_share = np.array([0.04, 0.12, 0.30])[phase] * _jitter(rng, len(offsets), 0.3)
    failures = rng.poisson(values[:, _REQUESTS] * error_share)
    values[:, _5XX] = np.maximum(values[:, _5XX], failures)
    values[:, _LATENCY] *= np.array([1.1, 1.25, 1.5])[phase]


def _latency_degradation(
    incident: Incident, values: FloatArray, offsets: IntArray, rng: np.random.Generator
) -> None:
    # Geometric ramp to ~5x: ~1.7x at the end of "slow", ~2.9x at the end of "degraded".
    multiplier = 5.0 ** ((offsets + 1) / incident.duration) * _jitter(rng, len(offsets), 0.1)
    values[:, _LATENCY] *= multiplier
    values[:, _TCP] *= 1 + 0.25 * (multiplier - 1)
    values[:, _THREADS] *= 1 + 0.15 * (multiplier - 1)
    values[:, _LOAD] *= 1 + 0.1 * (multiplier - 1)


def _security_threat(
    incident: Incident, values: FloatArray, offsets: IntArray, rng: np.random.Generator
) -> None:
    attacking = incident.phase_at(offsets) == 1
    n = len(offsets)
    extra_traffic = np.where(attacking, 1.6, 1.1) * _jitter(rng, n, 0.1)
    values[:, _REQUESTS] *= extra_traffic
    values[:, _NET_IN] *= extra_traffic
    rejected_share = np.where(attacking, 0.30, 0.06) * _jitter(rng, n, 0.3)
    values[:, _4XX] += rng.poisson(values[:, _REQUESTS] * rejected_share)
    values[:, _CPU] += np.where(attacking, 8.0, 2.0) * _jitter(rng, n, 0.5)


def _resource_exhaustion(
    incident: Incident, values: FloatArray, offsets: IntArray, rng: np.random.Generator
) -> None:
    # Climbs 70 → 80 → 90 → 99 % over the incident, through the phases' thresholds; the last
    # minute is always at 99 % or more.
    climb = offsets / max(incident.duration - 1, 1)
    target = np.minimum(70.0 + 29.0 * climb + rng.uniform(0.0, 0.9, len(offsets)), 100.0)
    variant = incident.kind.variant
    if variant == "memory":
        before = values[:, _MEM].copy()
        values[:, _MEM] = np.maximum(before, target)
        values[:, _SWAP] = np.maximum(values[:, _SWAP], (values[:, _MEM] - 70.0) * 1.5)
    elif variant == "cpu":
        before = np.maximum(values[:, _CPU], 1.0)
        values[:, _CPU] = np.maximum(values[:, _CPU], target)
        values[:, _LOAD] *= values[:, _CPU] / before
    else:
        values[:, _DISK] = np.maximum(values[:, _DISK], target)
        values[:, _DISK_WRITE] *= 1.0 + 1.5 * climb


def _service_outage(
    incident: Incident, values: FloatArray, offsets: IntArray, rng: np.random.Generator
) -> None:
    down = incident.phase_at(offsets) == 1
    n = len(offsets)
    reaching = np.where(down, 0.08, 0.45) * _jitter(rng, n, 0.3)
    values[:, _REQUESTS] *= reaching
    failed_share = np.minimum(np.where(down, 0.9, 0.5) * _jitter(rng, n, 0.1), 1.0)
    failures = rng.binomial(np.rint(values[:, _REQUESTS]).astype(np.int64), failed_share)
    values[:, _5XX] = np.maximum(values[:, _5XX], failures)
    values[:, _TCP] *= reaching
    values[:, _NET_OUT] *= reaching
    values[:, _DB_CONNECTIONS] *= np.where(down, 0.05, 0.5)
    values[:, _LATENCY] *= np.where(down, 4.0, 2.0)
    values[:, _CPU] *= np.where(down, 0.35, 0.7)


def _data_anomaly(
    incident: Incident, values: FloatArray, offsets: IntArray, rng: np.random.Generator
) -> None:
    # A broken collector: some minutes report zero traffic, others a wildly inflated count,
    # and the disk counter sticks at a sentinel for the whole incident.
    n = len(offsets)
    dropped = rng.random(n) < 0.5
    values[:, _NET_IN] = np.where(dropped, 0.0, values[:, _NET_IN] * rng.uniform(6.0, 12.0, n))
    values[:, _NET_OUT] = np.where(dropped, 0.0, values[:, _NET_OUT])
    values[:, _DISK_WRITE] = (0.0, 65535.0)[incident.seed % 2]


_Effect = Callable[[Incident, FloatArray, IntArray, np.random.Generator], None]
_EFFECTS: dict[str, _Effect] = {
    "error_spike": _error_spike,
    "latency_degradation": _latency_degradation,
    "security_threat": _security_threat,
    "resource_exhaustion": _resource_exhaustion,
    "service_outage": _service_outage,
    "data_anomaly": _data_anomaly,
}
