"""Known problems, recognised in a template's text: a title, a likely cause, what to do.

A rule names a problem by phrases that mean it whatever the application (``deadlock``,
``Failed password``, ``OutOfMemoryError``); the first rule whose pattern matches a template
(case-insensitive) claims it, and the templates a rule claims make one finding. A template no
rule claims is still a finding when its level or its words say it is an error
(``findings.keyword_severity``), with the generic cause and actions below.
"""

import re
from dataclasses import dataclass, field

from contracts.log_analysis import Severity


@dataclass(frozen=True)
class Remedy:
    """A known problem.

    Attributes:
        rule: Stable id.
        pattern: What a template of it says (a regex, case-insensitive).
        title: The finding's title.
        severity: Its severity at least (a template's level or volume may raise it).
        cause: The likely cause.
        actions: What to do, most useful first.
    """

    rule: str
    pattern: str
    title: str
    severity: Severity
    cause: str
    actions: tuple[str, ...]
    compiled: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "compiled", re.compile(self.pattern, re.IGNORECASE))


REMEDIES = (
    # critical
    Remedy(
        "crash",
        r"kernel panic|\bpanic\b|segfault|segmentation fault|core dumped|fatal error",
        "Process crashes",
        "critical",
        "A process died on a fatal error (panic, segmentation fault): a bug, corrupted input "
        "or exhausted resources at the moment of the crash.",
        (
            "Collect the core dump or stack trace around the first crash line.",
            "Check what changed just before: deploy, configuration, input data.",
            "Keep the service up meanwhile: restart policy, roll back the last release.",
        ),
    ),
    Remedy(
        "corruption",
        r"\bcorrupt|data loss|checksum (mismatch|error|failed)|bad block",
        "Data corruption",
        "critical",
        "Stored data failed an integrity check: a faulty disk, an unclean shutdown or a bug in "
        "the writer.",
        (
            "Stop writes to the affected volume or table and take a snapshot.",
            "Check disk health (SMART, cloud volume status) and restore from the last good backup.",
        ),
    ),
    # memory
    Remedy(
        "oom_killer",
        r"oom-killer|oom_reaper|killed process|memory cgroup out of memory|invoked oom",
        "Processes killed by the OOM killer",
        "critical",
        "The host or container ran out of memory and the kernel killed the largest process.",
        (
            "Find the killed process and its memory at the time (the kernel lines list RSS).",
            "Raise the memory limit or move the workload to a larger instance.",
            "Look for a leak: memory of the process growing between restarts.",
        ),
    ),
    Remedy(
        "out_of_memory",
        r"outofmemoryerror|out of memory|java heap space|gc overhead limit|cannot allocate "
        r"memory|unable to create (a )?new native thread|memoryerror|bad_alloc",
        "Out of memory",
        "critical",
        "The process exhausted its heap or native memory: a leak, an oversized request or "
        "batch, or a heap limit too small for the load.",
        (
            "Take a heap dump on the next occurrence (-XX:+HeapDumpOnOutOfMemoryError) and "
            "look for the dominant objects.",
            "Raise the heap or container limit as a stopgap.",
            "Bound caches, batch and request sizes.",
        ),
    ),
    Remedy(
        "gc_pressure",
        r"full gc|gc pause|gc overhead|garbage collect|allocation failure|pause young",
        "Garbage-collection pressure",
        "high",
        "The heap is close to full, so collections run often and long: a leak or a heap too "
        "small for the live data.",
        (
            "Plot heap after GC over time: a rising floor means a leak.",
            "Size the heap for the live set plus headroom; check the GC settings.",
        ),
    ),
    Remedy(
        "memory_pressure",
        r"memory (usage|pressure) (high|critical|above|exceed)|low memory|swap(ping)? "
        r"(usage|high|full)|page allocation failure|memory usage at|heap usage",
        "Memory pressure",
        "medium",
        "Memory use is close to the limit; the next spike may end in an out-of-memory kill.",
        (
            "Check which process grows (RSS per process, container memory).",
            "Add memory headroom or shed load before the limit is hit.",
        ),
    ),
    # database
    Remedy(
        "db_connections",
        r"remaining connection slots|too many (connections|clients)|connection pool .*"
        r"(exhausted|timeout)|could not get (jdbc )?connection|connection is not available",
        "Database connections exhausted",
        "critical",
        "Clients hold or open more connections than the database allows: a pool sized too "
        "large for the number of instances, or connections leaked by slow transactions.",
        (
            "Count connections per client (pg_stat_activity, SHOW PROCESSLIST) and find the "
            "holder.",
            "Put a pooler (PgBouncer, RDS Proxy) in front; size pools to max_connections.",
            "Kill idle-in-transaction sessions; set idle timeouts.",
        ),
    ),
    Remedy(
        "db_unavailable",
        r"could not connect to (server|database)|connection to (the )?database .*failed|"
        r"database .*(unavailable|is down)|the database system is (starting up|shutting down|"
        r"in recovery mode)",
        "Database unavailable",
        "critical",
        "The database refused or dropped connections: down, restarting, failing over or in "
        "recovery.",
        (
            "Check the database's health and events (restart, failover, storage full).",
            "Make clients retry with backoff during a failover.",
        ),
    ),
    Remedy(
        "deadlock",
        r"deadlock",
        "Database deadlocks",
        "high",
        "Concurrent transactions lock the same rows in different orders.",
        (
            "Read the deadlock report for the two statements; take locks in one order.",
            "Keep transactions short; retry the transaction on a deadlock error.",
        ),
    ),
    Remedy(
        "query_timeout",
        r"statement timeout|canceling statement|lock wait timeout|query timeout|"
        r"query (exceeded|took)|slow query",
        "Slow or cancelled queries",
        "high",
        "Queries run longer than their timeout: missing indexes, lock waits, or an overloaded "
        "database.",
        (
            "Find the slow statements (pg_stat_statements, slow query log) and EXPLAIN them.",
            "Look for lock waits and long transactions at the same time.",
        ),
    ),
    Remedy(
        "constraint",
        r"duplicate key|unique constraint|violates .*constraint|foreign key constraint|"
        r"integrity constraint",
        "Constraint violations",
        "medium",
        "Writes conflict with a constraint: duplicate submissions, retries without "
        "idempotency, or a race between writers.",
        (
            "Make the write idempotent (upsert, idempotency key).",
            "Check whether retries resend committed writes.",
        ),
    ),
    Remedy(
        "replication",
        r"replication (lag|error|failed|stopped|broken)|replica .*(lag|behind|failed)|"
        r"standby .*(lag|behind|failed)",
        "Replication problems",
        "high",
        "A replica lags or stopped replicating: write load above its apply rate, network "
        "problems, or a conflicting query.",
        (
            "Check the replica lag and the replication thread's last error.",
            "Move heavy reads off the lagging replica until it catches up.",
        ),
    ),
    # security
    Remedy(
        "break_in",
        r"possible break-?in attempt|brute.?force",
        "Break-in attempts",
        "high",
        "Connections from hosts whose reverse DNS does not map back to their address, a common "
        "mark of scanners and compromised machines.",
        (
            "Treat the source addresses as hostile: block them at the firewall or security group.",
            "Check whether any of them ever logged in successfully.",
        ),
    ),
    Remedy(
        "too_many_auth",
        r"too many authentication failures|maximum authentication attempts|ignoring max retries",
        "Clients cut off after too many failed attempts",
        "high",
        "Clients keep trying after repeated failures, a sign of a password-guessing tool.",
        ("Block the addresses that hit the limit.", "Lower MaxAuthTries; add fail2ban."),
    ),
    Remedy(
        "auth_failures",
        r"failed password|failed none|failed publickey|authentication failures?\b|auth fail|"
        r"check pass; user unknown|authentication methods available|login failed|"
        r"failed login|invalid credentials|bad password",
        "Failed authentication attempts",
        "high",
        "Repeated failed logins from remote addresses: password guessing (brute force, "
        "credential stuffing), or a client with wrong credentials.",
        (
            "Block or rate-limit the source addresses (fail2ban, security group, WAF).",
            "Disable password authentication; allow keys or SSO only.",
            "Check whether any of the same sources later logged in successfully.",
        ),
    ),
    Remedy(
        "invalid_users",
        r"invalid user|illegal user|user unknown|unknown user|no such user",
        "Logins for users that do not exist",
        "medium",
        "Someone tries common account names (admin, test, oracle…): automated scanning.",
        (
            "Block the scanning addresses.",
            "Make sure no default or service account accepts interactive logins.",
        ),
    ),
    Remedy(
        "access_denied",
        r"permission denied|access denied|unauthori[sz]ed|\bforbidden\b|not authorized",
        "Denied access",
        "medium",
        "Requests without the required permission: expired or wrong credentials, a missing "
        "role, or probing.",
        (
            "Check which principal is denied and whether it should have access.",
            "If the callers are unknown, treat it as probing and block them.",
        ),
    ),
    Remedy(
        "injection",
        r"union select|' or '1'='1|<script|sql injection|\bxss\b|\.\./\.\./",
        "Injection or traversal attempts",
        "critical",
        "Requests carry SQL, script or path-traversal payloads: an attack on the application.",
        (
            "Block the sources; turn on WAF rules for the payload.",
            "Check whether any such request got a 2xx answer.",
        ),
    ),
    # network
    Remedy(
        "conn_refused",
        r"connection refused|econnrefused|no route to host|network is unreachable|"
        r"host (is )?unreachable",
        "Connections refused or unreachable",
        "high",
        "The peer is down, not listening, or blocked by a firewall or security group.",
        (
            "Check that the target service is up and listening on that port.",
            "Check security groups, network ACLs and routes between the hosts.",
        ),
    ),
    Remedy(
        "conn_reset",
        r"connection reset|econnreset|broken pipe|epipe|reset by peer|connection aborted",
        "Connections reset",
        "medium",
        "The peer or a middlebox closed connections abruptly: a crash, an idle timeout shorter "
        "than the client's keep-alive, or a load balancer draining.",
        (
            "Align keep-alive and idle timeouts between clients, load balancers and servers.",
            "Check whether the peer restarted at the same time.",
        ),
    ),
    Remedy(
        "dns",
        r"name resolution|nxdomain|could not resolve|unknown host|temporary failure in name|"
        r"dns (error|failure|timeout)",
        "DNS resolution failures",
        "high",
        "Names do not resolve: a resolver down or throttled, or a wrong name.",
        (
            "Check the resolver (and its throttling) from the failing host.",
            "Cache lookups; check the name in the configuration.",
        ),
    ),
    Remedy(
        "tls",
        r"(tls|ssl) .*(handshake|error|fail)|handshake (failed|failure|error)|certificate "
        r"(expired|verify failed|unknown)",
        "TLS handshake failures",
        "high",
        "TLS connections fail: an expired or untrusted certificate, or a protocol mismatch.",
        (
            "Check the certificate's expiry and chain on the server.",
            "Check the TLS versions and ciphers both sides allow.",
        ),
    ),
    Remedy(
        "upstream",
        r"upstream .*(error|failed|timed out|prematurely)|bad gateway|gateway timeout|"
        r"no healthy upstream|health check failed",
        "Upstream failures",
        "high",
        "A proxy or load balancer cannot get an answer from its backends.",
        (
            "Check the backends' health and capacity.",
            "Compare the proxy's timeouts with the backends' response times.",
        ),
    ),
    Remedy(
        "timeouts",
        r"timed out|timeout|etimedout|deadline exceeded",
        "Timeouts",
        "medium",
        "Calls wait longer than their timeout: a slow or overloaded peer, or packet loss.",
        (
            "Find which calls time out and the peer's latency at the time.",
            "Check timeouts and retries for retry storms.",
        ),
    ),
    # performance
    Remedy(
        "disk_full",
        r"no space left|disk (is )?full|filesystem .*full|is (9\d|100)% full|quota exceeded|"
        r"i/o error",
        "Disk full or I/O errors",
        "critical",
        "A volume is full or failing: writes fail until space is freed.",
        (
            "Free space (logs, temporary files) and grow the volume.",
            "Alert on disk usage before it is full.",
        ),
    ),
    Remedy(
        "saturation",
        r"queue (is )?(full|backlog)|rejected execution|(thread|worker) pool .*exhausted|"
        r"backpressure|throttl|rate limit(ed)?|too many requests",
        "Saturation and throttling",
        "high",
        "Work arrives faster than it is done: pools, queues or quotas are at their limit.",
        (
            "Scale out the saturated tier, or shed load.",
            "Look for a slow dependency holding workers.",
        ),
    ),
    Remedy(
        "slow",
        r"\bslow\b|exceed(s|ed)? (the )?(slo|threshold)|took too long|long-running",
        "Slow operations",
        "medium",
        "Operations exceed their expected duration: contention, a slow dependency or saturation.",
        (
            "Find the slowest operations and what they wait on.",
            "Correlate with CPU, I/O and dependency latency at the same time.",
        ),
    ),
    Remedy(
        "service_down",
        r"service unavailable|terminated unexpectedly|exited with (code|status) [1-9<]|"
        r"crashloop|back-off restarting|shutting down",
        "Service down or restarting",
        "high",
        "A service stopped or keeps restarting.",
        (
            "Read the last lines before each exit for the reason.",
            "Check the orchestrator's events (OOMKilled, failed probes).",
        ),
    ),
)

GENERIC_CAUSE = (
    "No known pattern explains this template: its example lines and the records around its "
    "first occurrence are the best lead."
)


def generic_actions(first_line: int) -> list[str]:
    """Actions for a template no rule knows."""
    return [
        f"Read the records around line {first_line}, where it first appears.",
        "Check for a deploy or configuration change just before its first occurrence.",
    ]


def find_remedy(text: str) -> Remedy | None:
    """The first rule whose pattern matches ``text`` (a template or a message), if any."""
    for remedy in REMEDIES:
        if remedy.compiled.search(text):
            return remedy
    return None
