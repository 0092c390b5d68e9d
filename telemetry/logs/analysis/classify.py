"""Which analysis type fits a log: evidence from its templates, weighted by volume and level.

Every template votes for each type whose patterns (``TYPE_PATTERNS``, case-insensitive) match
its text, with weight ``log(1 + count)`` times its severity's weight (``SEVERITY_WEIGHT``): a
template a thousand times as frequent counts about seven times as much, so one chatty template
does not decide alone, and the errors of a log say more about what it is about than its
routine traffic does (a search service's ``query q=…`` lines do not make its out-of-memory
errors a database problem). Records at level CRITICAL also vote for ``critical`` (twice their
log count). The type with the most evidence wins when
it has at least ``MIN_SCORE``; otherwise the log is ``general``. The confidence is the
winner's share of all the evidence (for ``general``: how far the best type stayed below
``MIN_SCORE``).
"""

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

from contracts.explanation import AnalysisType

MIN_SCORE = 2.0
CRITICAL_LEVEL_WEIGHT = 2.0
SEVERITY_WEIGHT: dict[str | None, float] = {
    "critical": 3.0,
    "high": 2.0,
    "medium": 1.5,
    "low": 1.0,
    "info": 0.3,
    None: 0.3,
}

TYPE_PATTERNS: dict[AnalysisType, tuple[str, ...]] = {
    "critical": (
        r"\bfatal\b",
        r"\bpanic\b",
        r"segfault|segmentation fault|core dumped",
        r"service unavailable",
        r"\boutage\b",
        r"\bcrash",
        r"data (loss|corrupt)|\bcorrupt",
        r"unrecoverable",
        r"emergency",
        r"exited with (code|status) [1-9<]",
    ),
    "security": (
        r"failed password|failed none|failed publickey",
        r"authentication failure|auth fail|authentication methods",
        r"login failed|failed login|invalid credentials",
        r"invalid user|user unknown|unknown user|illegal user",
        r"break-in|brute.?force",
        r"unauthori[sz]ed|forbidden|permission denied|access denied",
        r"account .*locked",
        r"sql injection|union select|<script|\bxss\b",
        r"invalid token|expired token|\bjwt\b",
        r"\bsudo\b|\bpam_unix\b|\bsshd\b",
        r"firewall|iptables|\bwaf\b",
        r"exfiltration|privilege",
    ),
    "database": (
        r"\bsql\b|\bselect\b.*\bfrom\b|\binsert into\b|\bupdate\b.*\bset\b",
        r"deadlock",
        r"duplicate key|unique constraint|violates .*constraint",
        r"statement timeout|canceling statement|lock wait timeout",
        r"connection slots|too many (connections|clients)",
        r"\bdatabase\b|\bpostgres|\bmysql|mariadb|mongo|\bredis\b|sqlite|\boracle\b",
        r"\bquery\b|\bstatement\b",
        r"\btransaction\b|\brollback\b",
        r"replication|\breplica\b|standby",
        r"checkpoint|autovacuum|\bvacuum\b",
        r"\bjdbc\b|hikari|connection pool",
        r"relation .* does not exist|\btable\b",
    ),
    "memory": (
        r"out ?of ?memory|outofmemoryerror|\boom\b|oom-killer|oom_reaper",
        r"\bheap\b",
        r"memory (usage|pressure|leak|limit)|low memory|cannot allocate memory",
        r"\bgc\b|garbage collect|full gc|gc overhead",
        r"\bswap\b",
        r"killed process",
        r"page allocation failure|malloc|mmap",
        r"\brss\b|resident set",
    ),
    "network": (
        r"connection (refused|reset|timed out|closed|aborted)",
        r"upstream|bad gateway|gateway timeout",
        r"timed out",
        r"\bdns\b|name resolution|nxdomain|could not resolve|unknown host",
        r"unreachable|no route to host",
        r"packet loss|dropped packets|retransmi",
        r"health check failed",
        r"tls|ssl|handshake",
        r"\bsocket\b|econnrefused|econnreset|broken pipe|reset by peer",
        r"link (is )?down|interface .* down",
        r"disconnect",
    ),
    "performance": (
        r"\bslow\b",
        r"latency|response time",
        r"\bp9[59]\b",
        r"exceed(s|ed)? (the )?(slo|threshold|deadline)|deadline exceeded",
        r"cpu (usage|load|saturat|throttl)|load average|starved",
        r"throttl|rate limit",
        r"queue (full|depth|backlog)|backpressure",
        r"(thread|worker) pool",
        r"no space left|disk (full|usage)|is \d+% full",
        r"took \d+ ?ms|took <",
    ),
}
_COMPILED = {kind: re.compile("|".join(p), re.IGNORECASE) for kind, p in TYPE_PATTERNS.items()}


@dataclass(frozen=True)
class TemplateVote:
    """What the classifier needs of a template: its text, how many records it has, and its
    severity (``findings``; None for a template that is no problem)."""

    text: str
    count: int
    critical_count: int = 0
    severity: str | None = None


@dataclass(frozen=True)
class Classification:
    """The detected type, its confidence, and the evidence per type."""

    detected: AnalysisType
    confidence: float
    scores: dict[str, float]


def classify(templates: Iterable[TemplateVote]) -> Classification:
    """The analysis type of a log from its templates (see the module docstring).

    Args:
        templates: Every template of the log with its record counts.

    Returns:
        The type, its confidence in [0, 1], and the score of every type but ``general``.
    """
    scores: dict[str, float] = dict.fromkeys(TYPE_PATTERNS, 0.0)
    for template in templates:
        weight = math.log1p(template.count) * SEVERITY_WEIGHT[template.severity]
        for kind, pattern in _COMPILED.items():
            if pattern.search(template.text):
                scores[kind] += weight
        if template.critical_count:
            scores["critical"] += CRITICAL_LEVEL_WEIGHT * math.log1p(template.critical_count)
    rounded = {kind: round(score, 3) for kind, score in scores.items()}
    best = max(TYPE_PATTERNS, key=lambda kind: scores[kind])
    if scores[best] < MIN_SCORE:
        return Classification("general", round(1.0 - scores[best] / MIN_SCORE, 3), rounded)
    return Classification(best, round(scores[best] / sum(scores.values()), 3), rounded)
