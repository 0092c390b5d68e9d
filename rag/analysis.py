"""Which analysis type (``contracts.explanation.ANALYSIS_TYPES``) fits an anomaly, from its top
features and its log lines."""

import re
from collections.abc import Sequence

from contracts.explanation import AnalysisType, FeatureContribution

# Signals per type: patterns matched against log lines (case-insensitive) and feature-name
# prefixes (metric slugs from contracts.features). "general" is what is left when nothing fits.
_LOG_PATTERNS: dict[AnalysisType, tuple[str, ...]] = {
    "critical": (
        r"\bfatal\b",
        r"service unavailable",
        r"0 healthy targets",
        r"all connections to .* failed",
        r"circuit breaker open",
        r"error budget exhausted",
        r"runtime exited with error",
        r"data may be corrupt",
        r"kernel panic",
    ),
    "security": (
        r"failed password",
        r"login failed",
        r"failed login",
        r"invalid credentials",
        r"account .* locked",
        r"unauthori[sz]ed",
        r"forbidden",
        r"sql injection|' or '1'='1|union select",
        r"xss|<script|onerror=",
        r"waf blocked",
        r"exfiltration",
        r"invalid token",
        r"brute.?force",
    ),
    "database": (
        r"\bsql\b",
        r"deadlock",
        r"duplicate key",
        r"statement timeout",
        r"connection slots",
        r"\bdatabase\b",
        r"\bquery\b",
        r"postgres|mysql|:5432|:3306",
        r"provisionedthroughputexceeded",
        r"transaction",
    ),
    "memory": (
        r"out ?of ?memory|outofmemoryerror|\boom\b",
        r"\bheap\b",
        r"memory (usage|pressure)",
        r"\bgc\b|garbage collect",
        r"\bswap\b",
        r"killed process",
    ),
    "network": (
        r"connection refused",
        r"connection reset|reset before headers",
        r"upstream connect error",
        r"timed out",
        r"\bdns\b|name resolution",
        r"unreachable",
        r"packet loss",
        r"health check failed",
        r"tls handshake",
    ),
    "performance": (
        r"\bslow\b",
        r"latency",
        r"p99",
        r"exceeds slo",
        r"exceeded deadline",
        r"cpu (usage|saturated)|starved of cpu",
        r"throttl",
        r"queue depth",
        r"worker pool exhausted",
        r"no space left|disk usage|is \d+% full",
    ),
}
_FEATURE_PREFIXES: dict[AnalysisType, tuple[str, ...]] = {
    "critical": ("critical_count",),
    "security": ("http_code_4xx_count",),
    "database": ("database_connections",),
    "memory": ("memory_utilization", "swap_used_percent"),
    "network": ("network_in", "network_out", "tcp_connections"),
    "performance": (
        "latency",
        "cpu_utilization",
        "load_average",
        "thread_count",
        "disk_used_percent",
        "disk_write_ops",
        "disk_read_ops",
    ),
}
_COMPILED = {t: re.compile("|".join(p), re.IGNORECASE) for t, p in _LOG_PATTERNS.items()}
# A critical line outweighs others: a down service is the first thing to say.
_CRITICAL_WEIGHT = 2.0


def detect_analysis_type(
    features: Sequence[FeatureContribution], log_lines: Sequence[str]
) -> AnalysisType:
    """The type with the most evidence: matching log lines, plus top features by rank.

    Each log line votes for every type whose patterns it matches; the i-th top feature adds
    ``1 / (i + 1)`` to the type its metric belongs to, scaled so features and logs weigh
    about the same. Ties go to the earlier type in the order critical, security, database,
    memory, network, performance.
    """
    scores: dict[AnalysisType, float] = dict.fromkeys(_LOG_PATTERNS, 0.0)
    for line in log_lines:
        for analysis_type, pattern in _COMPILED.items():
            if pattern.search(line):
                scores[analysis_type] += _CRITICAL_WEIGHT if analysis_type == "critical" else 1.0
    feature_weight = max(1.0, len(log_lines) / 4)
    for rank, feature in enumerate(features):
        for analysis_type, prefixes in _FEATURE_PREFIXES.items():
            if feature.name.startswith(prefixes):
                scores[analysis_type] += feature_weight / (rank + 1)
                break
    best = max(scores, key=lambda t: scores[t])
    return best if scores[best] > 0 else "general"
