"""Deterministic findings on small logs written here: what each kind needs to fire, and the
evidence pointing at the right lines."""

from datetime import datetime, timedelta
from pathlib import Path

from contracts.log_analysis import SEVERITIES, Finding
from telemetry.logs.analysis.llm_pass import PreparedFile
from telemetry.logs.analysis.pipeline import AnalysisOptions, prepare_file

START = datetime(2026, 3, 2, 10, 0, 0)


def stamp(seconds: float) -> str:
    return (START + timedelta(seconds=seconds)).strftime("%Y-%m-%d %H:%M:%S,%f")[:-3]


def prepare(tmp_path: Path, lines: list[str]) -> PreparedFile:
    path = tmp_path / "app.log"
    path.write_text("\n".join(lines) + "\n")
    return prepare_file(path, "app.log", AnalysisOptions())


def by_kind(prepared: PreparedFile, kind: str) -> list[Finding]:
    return [finding for finding in prepared.analysis.findings if finding.kind == kind]


def steady_traffic(minutes: int, per_minute: int = 6) -> list[str]:
    return [
        f"{stamp(60 * m + 10 * i)} INFO  [worker-{i}] c.s.Api: GET /items/{m * 10 + i} 200 12ms"
        for m in range(minutes)
        for i in range(per_minute)
    ]


def test_error_templates_of_one_rule_make_one_finding_with_line_evidence(tmp_path: Path) -> None:
    lines = steady_traffic(10)
    lines[20] = f"{stamp(200)} ERROR [db] c.s.Repo: ERROR: deadlock detected"
    lines[40] = f"{stamp(400)} ERROR [db] c.s.Repo: deadlock detected while updating orders"
    prepared = prepare(tmp_path, lines)
    [finding] = [f for f in by_kind(prepared, "error_template") if f.title == "Database deadlocks"]
    assert finding.severity == "high"  # the rule's severity, and the ERROR level's
    assert finding.origin == "deterministic"
    assert sorted(e.first_line for e in finding.evidence) == [21, 41]
    assert {example.line for e in finding.evidence for example in e.examples} == {21, 41}
    assert "deadlock detected" in finding.evidence[0].examples[0].text
    assert finding.likely_cause
    assert finding.actions


def test_a_log_without_levels_gets_its_severities_from_words(tmp_path: Path) -> None:
    lines = [f"Mar  2 10:00:{i % 60:02d} host app[1]: job {i} done" for i in range(60)]
    lines[30] = "Mar  2 10:00:30 host app[1]: could not open spool file, giving up"
    prepared = prepare(tmp_path, lines)
    [finding] = by_kind(prepared, "error_template")
    assert finding.severity == "medium"
    assert finding.evidence[0].first_line == 31


def test_the_exception_of_a_multi_line_record_names_its_problem(tmp_path: Path) -> None:
    lines = steady_traffic(3)
    lines += [
        f"{stamp(200)} ERROR [worker-1] c.s.Api: request failed",
        "java.lang.OutOfMemoryError: Java heap space",
        "\tat java.util.Arrays.copyOf(Arrays.java:3537)",
    ]
    prepared = prepare(tmp_path, lines)
    assert prepared.analysis.input.continuation_lines == 2
    [finding] = by_kind(prepared, "error_template")
    assert (finding.title, finding.severity) == ("Out of memory", "critical")
    assert finding.evidence[0].first_line == 19


def test_an_error_burst_fires_where_it_happens_and_not_in_steady_errors(tmp_path: Path) -> None:
    steady = steady_traffic(30)
    # One error a minute all along: the log's normal rate.
    steady += [
        f"{stamp(60 * m + 30)} ERROR [job] c.s.Sync: sync failed, retrying" for m in range(30)
    ]
    assert by_kind(prepare(tmp_path, sorted(steady)), "burst") == []
    burst = [
        f"{stamp(20 * 60 + i)} ERROR [db] c.s.Repo: connection refused by db" for i in range(40)
    ]
    prepared = prepare(tmp_path, sorted(steady + burst))
    [finding] = by_kind(prepared, "burst")
    assert finding.severity == "high"
    assert "10:20" in finding.title
    lead = finding.evidence[0]
    assert lead.template is not None
    assert "connection refused" in lead.template
    assert lead.first_seen is not None
    assert lead.first_seen.strftime("%H:%M") == "10:20"


def test_rare_templates_are_one_finding_latest_first(tmp_path: Path) -> None:
    lines = steady_traffic(20)
    lines[30] = f"{stamp(300)} INFO  [admin] c.s.Admin: configuration reloaded by alice"
    lines[110] = f"{stamp(1100)} INFO  [admin] c.s.Admin: new administrator account created"
    prepared = prepare(tmp_path, lines)
    [finding] = by_kind(prepared, "rare_template")
    assert finding.severity == "low"  # one of them first appears in the last quarter
    assert [e.first_line for e in finding.evidence] == [111, 31]


def test_findings_are_ranked_by_severity_and_numbered(tmp_path: Path) -> None:
    lines = steady_traffic(10)
    lines[5] = f"{stamp(50)} WARN  [w] c.s.Api: slow request took 900 ms"
    lines[25] = f"{stamp(250)} ERROR [w] c.s.Api: No space left on device while writing /var/x"
    findings = prepare(tmp_path, lines).analysis.findings
    ranks = [SEVERITIES.index(finding.severity) for finding in findings]
    assert ranks == sorted(ranks)
    assert findings[0].title == "Disk full or I/O errors"
    assert [finding.id for finding in findings] == [f"D{n}" for n in range(1, len(findings) + 1)]
