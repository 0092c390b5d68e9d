"""Analysis-type detection from top features and log lines (the seven types of
``contracts.explanation``)."""

import pytest

from contracts.explanation import FeatureContribution
from rag.analysis import detect_analysis_type

pytestmark = pytest.mark.xdist_group("rag")


def _features(*names: str) -> list[FeatureContribution]:
    return [FeatureContribution(name=n, value=1.0) for n in names]


@pytest.mark.parametrize(
    ("lines", "features", "expected"),
    [
        (
            [
                "ERROR:  canceling statement due to statement timeout",
                "database query failed: deadlock detected on orders",
            ],
            ["database_connections_mean_15"],
            "database",
        ),
        (
            [
                "java.lang.OutOfMemoryError: Java heap space in auth-svc",
                "Swap usage at 71%, memory pressure on auth-svc",
            ],
            ["memory_utilization_max_15", "swap_used_percent"],
            "memory",
        ),
        (
            [
                "Failed password for admin from 203.0.113.7 port 5311 ssh2",
                "Login failed for user_3 from 203.0.113.7: invalid credentials",
            ],
            ["http_code_4xx_count_sum_15"],
            "security",
        ),
        (
            [
                "Service Unavailable: 0 healthy targets in tg-web",
                "All connections to auth-svc failed; returning 503 to clients",
            ],
            ["request_count_change_1"],
            "critical",
        ),
        (
            [
                "Slow request GET /api/v1/search took 4100ms",
                "search-svc response time 2300ms exceeds SLO of 500ms",
            ],
            ["latency_mean_15", "thread_count"],
            "performance",
        ),
        (
            [
                "nginx: upstream timed out while reading response header from 10.0.0.4",
                "Health check failed for tg-api-2: connection refused",
            ],
            ["network_out_sum_15", "tcp_connections"],
            "network",
        ),
        (["order 12 created for user_4"], ["hour_of_day"], "general"),
        ([], [], "general"),
    ],
)
def test_detects_the_type_from_logs_and_features(
    lines: list[str], features: list[str], expected: str
) -> None:
    assert detect_analysis_type(_features(*features), lines) == expected


def test_top_features_decide_when_there_are_no_logs() -> None:
    assert detect_analysis_type(_features("memory_utilization_zscore_60", "latency"), []) == (
        "memory"
    )
    assert detect_analysis_type(_features("cpu_utilization_max_5"), []) == "performance"
