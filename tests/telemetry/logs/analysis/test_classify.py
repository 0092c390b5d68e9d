"""Analysis-type detection, as behaviour: each type from the lines that mean it; routine
traffic never outvotes the errors; no signal means general."""

import pytest

from telemetry.logs.analysis.classify import TemplateVote, classify


@pytest.mark.parametrize(
    ("kind", "templates"),
    [
        ("security", ["Failed password for <*> from <IP> port <NUM> ssh2", "Invalid user <*>"]),
        ("database", ["ERROR: deadlock detected", "canceling statement due to statement timeout"]),
        ("memory", ["java.lang.OutOfMemoryError: Java heap space", "Full GC took <DURATION>"]),
        ("network", ["connect() failed: Connection refused", "upstream timed out"]),
        ("performance", ["slow request <PATH> took <NUM> ms", "worker pool exhausted"]),
        ("critical", ["kernel panic - not syncing", "segfault at <HEX> in libc"]),
    ],
)
def test_each_type_is_detected_from_its_error_templates(kind: str, templates: list[str]) -> None:
    votes = [TemplateVote(text, 20, severity="high") for text in templates]
    votes.append(TemplateVote("GET /api/items 200", 500))  # routine traffic
    result = classify(votes)
    assert result.detected == kind
    assert 0.5 <= result.confidence <= 1.0


def test_routine_traffic_does_not_outvote_the_errors() -> None:
    # A search service: "query" lines by the thousand, a few out-of-memory errors.
    votes = [
        TemplateVote("query q=<*> hits=<NUM> in <DURATION>", 5000),
        TemplateVote(
            "request failed\njava.lang.OutOfMemoryError: Java heap space", 12, 0, "critical"
        ),
        TemplateVote("Full GC took <DURATION>, heap usage <NUM>%", 30, 0, "high"),
    ]
    assert classify(votes).detected == "memory"


def test_critical_records_vote_for_critical() -> None:
    votes = [TemplateVote("component <*> stopped", 40, critical_count=40, severity="critical")]
    assert classify(votes).detected == "critical"


def test_a_log_without_signal_is_general_with_full_confidence() -> None:
    result = classify([TemplateVote("PacketResponder <NUM> for block <ID> terminating", 900)])
    assert result.detected == "general"
    assert result.confidence == 1.0
    assert set(result.scores) == {
        "critical",
        "security",
        "database",
        "memory",
        "network",
        "performance",
    }
