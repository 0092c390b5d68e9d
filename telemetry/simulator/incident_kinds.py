"""The incident kinds the fleet simulator injects: their phases, log templates and metrics.

An incident kind is one of the six incident types in one variant (resource exhaustion of
memory, a brute-force attack, ...). Each walks through the phases of seed 004 §4 in order,
and each phase shapes the instance's logs: how many lines it writes, what share come from the
incident's own templates, and at which levels. The templates are the incident's signature,
as an SRE would read it (see telemetry.simulator.incidents for when incidents happen and what
they do to the metrics).
"""

from dataclasses import dataclass, field

from contracts.labels import INCIDENT_TYPES

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
