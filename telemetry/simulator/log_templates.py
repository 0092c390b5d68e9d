"""The normal log lines of each source and the catalogue of every template the simulator writes.

Normal templates are grouped by source and level (seed 004 §3); their ``{slot}`` fields are
filled from the vocabularies below, from the row itself, from the instance's metrics, or from
the incident's seed. The catalogue puts them together with the incident kinds' templates
(telemetry.simulator.incident_kinds), parsed once into text and slots.
"""

import string
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from contracts.telemetry import LOG_LEVELS, SOURCES
from telemetry.simulator.incident_kinds import INCIDENT_KINDS, LogTemplate
from telemetry.simulator.incidents import IntArray

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

CHOICES: dict[str, tuple[str, ...]] = {
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
INTEGERS: dict[str, tuple[int, int]] = {
    "pid": (1000, 65000),
    "port": (32768, 61000),
    "n": (2, 500),
    "bytes": (200, 5_000_000),
    "mb": (90, 500),
    "hit": (80, 99),
    "cpu": (0, 15),
}
# Slots that show a metric of the row's instance at the row's minute.
METRIC_SLOTS = {
    "mem": "MemoryUtilization",
    "cpu_pct": "CPUUtilization",
    "disk": "DiskUsedPercent",
    "swap": "SwapUsedPercent",
}
# Slots the row itself carries (shared with the metadata).
_ROW_SLOTS = ("rid", "user", "ip", "attacker_ip", "ms", "status", "target", "err_pct")
# Slots made up from the incident's seed: a deployed version and its build hash.
SEEDED_SLOTS = ("version", "build")


@dataclass(frozen=True)
class TemplateCatalogue:
    """Every log template, grouped by (source or incident kind, level), parsed into parts.

    ``onset[k]`` lists the (template, level) indices of the onset lines of INCIDENT_KINDS[k];
    their templates follow the groups.
    """

    parts: tuple[tuple[tuple[str, str | None], ...], ...]
    statuses: tuple[tuple[int, ...], ...]
    group_start: IntArray
    group_size: IntArray
    onset: tuple[tuple[tuple[int, int], ...], ...]


def incident_template_group(kind_index: IntArray, level: IntArray) -> IntArray:
    """The catalogue group of INCIDENT_KINDS[kind_index]'s lines at LOG_LEVELS[level]."""
    return (len(SOURCES) + kind_index) * len(LOG_LEVELS) + level


@lru_cache(maxsize=1)
def template_catalogue() -> TemplateCatalogue:
    """Every template, grouped and parsed; ValueError on an unknown slot or a missing level."""
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
    known = set(CHOICES) | set(INTEGERS) | set(METRIC_SLOTS) | set(_ROW_SLOTS)
    known |= set(SEEDED_SLOTS)
    parts = []
    for template in templates:
        parsed = tuple((text, slot) for text, slot, _, _ in string.Formatter().parse(template.text))
        if unknown := {slot for _, slot in parsed if slot is not None} - known:
            raise ValueError(f"template {template.text!r} uses unknown slots {unknown}")
        parts.append(parsed)
    sizes = np.array([len(group) for group in groups], dtype=np.int64)
    return TemplateCatalogue(
        parts=tuple(parts),
        statuses=tuple(template.statuses for template in templates),
        group_start=np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64),
        group_size=sizes,
        onset=tuple(onset),
    )


# --- The fleet -----------------------------------------------------------------------------
