"""``vigil logs analyze`` as a user runs it, without an LLM or with one that is down: the type,
windows within the token budget, findings with line evidence, every output format, and bad
input answered with a reason instead of a traceback."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from contracts.log_analysis import LogAnalysisReport
from telemetry.logs.analysis.pipeline import analyze_inputs
from telemetry.logs.analysis.settings import LogAnalysisSettings
from tests.telemetry.logs.conftest import SHARED_LOGHUB
from vigil.commands.logs import write_analysis
from vigil.processes import free_port

VIGIL = str(Path(sys.executable).parent / "vigil")
SAMPLES = Path(__file__).parent / "data" / "analysis"
OPENSSH_LOG = SHARED_LOGHUB / "OpenSSH" / "OpenSSH_2k.log"
needs_openssh = pytest.mark.skipif(
    not OPENSSH_LOG.is_file(), reason=f"the Loghub OpenSSH sample is not at {OPENSSH_LOG}"
)


def analyze(
    *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [VIGIL, "logs", "analyze", *args],
        input=stdin,
        capture_output=True,
        timeout=180,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        check=False,
    )


def report(*args: str) -> LogAnalysisReport:
    result = analyze(*args, "--format", "json")
    assert result.returncode == 0, result.stderr.decode()
    assert b"Traceback" not in result.stderr
    return LogAnalysisReport.model_validate_json(result.stdout)


def assert_line_evidence(path: Path, document: Any) -> None:
    """Every example line of every finding is the line of that number in the file."""
    lines = path.read_text().splitlines()
    for finding in document.findings:
        assert finding.evidence
        for evidence in finding.evidence:
            assert evidence.first_line <= evidence.last_line
            for example in evidence.examples:
                message = example.text.split(": ", 1)[-1].rstrip("…")[:40]
                assert message in lines[example.line - 1], (example, lines[example.line - 1])


@needs_openssh
def test_openssh_is_a_security_log_in_several_windows_with_line_evidence() -> None:
    [analysis] = report(str(OPENSSH_LOG), "--no-llm").files
    assert analysis.analysis_type.detected == "security"
    assert analysis.analysis_type.confidence > 0.6
    assert analysis.input.records == 2000
    limit = analysis.window_settings.max_tokens
    assert analysis.window_settings.tokenizer == "approximate"
    assert len(analysis.windows) >= 2
    assert all(0 < window.tokens <= limit for window in analysis.windows)
    assert [w.index for w in analysis.windows] == list(range(len(analysis.windows)))
    assert analysis.windows[-1].last_line == 2000
    assert any(window.overlap_records for window in analysis.windows[1:])
    titles = {finding.title: finding for finding in analysis.findings}
    failed = titles["Failed authentication attempts"]
    assert failed.severity == "high"
    assert sum(e.count for e in failed.evidence) > 1000
    assert "Break-in attempts" in titles
    bursts = [finding for finding in analysis.findings if finding.kind == "burst"]
    assert bursts
    # The attacker of the largest burst is named: one address sends almost all its records.
    assert "183.62.140.253 (9" in bursts[0].likely_cause
    assert {finding.severity for finding in analysis.findings} <= {"high", "medium", "info"}
    assert analysis.llm.used is False
    assert analysis.llm.error == "not asked (--no-llm)"
    assert_line_evidence(OPENSSH_LOG, analysis)


@pytest.mark.parametrize(
    ("sample", "kind", "expected"),
    [
        ("orders-db.log", "database", {"Database deadlocks", "Database connections exhausted"}),
        ("search-memory.log", "memory", {"Out of memory", "Garbage-collection pressure"}),
    ],
)
def test_database_and_memory_samples(sample: str, kind: str, expected: set[str]) -> None:
    path = SAMPLES / sample
    [analysis] = report(str(path), "--no-llm", "--window-tokens", "400").files
    assert analysis.analysis_type.detected == kind
    assert analysis.input.continuation_lines > 0  # stack traces joined to their record
    assert len(analysis.windows) >= 2
    assert all(window.tokens <= 400 for window in analysis.windows)
    assert expected <= {finding.title for finding in analysis.findings}
    severities = {finding.title: finding.severity for finding in analysis.findings}
    assert "critical" in severities.values()
    assert_line_evidence(path, analysis)


def test_an_unreachable_llm_is_reported_and_the_deterministic_findings_stay() -> None:
    down = f"http://127.0.0.1:{free_port()}/v1"
    path = SAMPLES / "orders-db.log"
    [analysis] = report(str(path), "--llm-url", down).files
    assert analysis.llm.used is False
    assert analysis.llm.error is not None
    assert analysis.llm.error.startswith("LLM unavailable:")
    assert down in analysis.llm.error
    assert analysis.window_settings.tokenizer == "approximate"
    assert analysis.window_settings.tokenizer_note is not None
    assert "unreachable" in analysis.window_settings.tokenizer_note
    assert not any(window.sent_to_llm for window in analysis.windows)
    assert analysis.findings
    assert {finding.origin for finding in analysis.findings} == {"deterministic"}
    text = analyze(str(path), "--llm-url", down)
    assert text.returncode == 0
    assert b"LLM: not used" in text.stdout
    assert b"LLM unavailable" in text.stdout


def test_forced_type_several_files_in_worker_processes_and_stdin() -> None:
    memory = (SAMPLES / "search-memory.log").read_bytes()
    result = analyze(
        str(SAMPLES / "orders-db.log"), "-", "--no-llm", "--type", "performance",
        "--format", "json", stdin=memory,
        # Small files are analysed in-process; this run makes them take the worker path.
        env={"VIGIL_LOGS_PARALLEL_MIN_BYTES": "0", "VIGIL_LOGS_WORKERS": "2"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    document = LogAnalysisReport.model_validate_json(result.stdout)
    assert [f.source for f in document.files] == [str(SAMPLES / "orders-db.log"), "<stdin>"]
    for analysis in document.files:
        assert analysis.analysis_type.requested == "performance"
        assert analysis.analysis_type.used == "performance"
    assert document.files[1].analysis_type.detected == "memory"


def test_bad_inputs_are_skipped_with_a_reason_and_no_traceback(tmp_path: Path) -> None:
    empty = tmp_path / "empty.log"
    empty.write_bytes(b"")
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(bytes(range(256)) * 64)
    missing = tmp_path / "missing.log"
    result = analyze(str(empty), str(garbage), str(missing), "--no-llm")
    assert result.returncode == 1
    stderr = result.stderr.decode()
    assert "Traceback" not in stderr
    assert "is empty" in stderr
    assert "looks binary" in stderr
    assert "no such file" in stderr
    assert "no input could be analysed" in stderr
    # With one good file the run succeeds and lists what it skipped.
    document = report(str(SAMPLES / "orders-db.log"), str(empty), str(missing), "--no-llm")
    assert len(document.files) == 1
    assert {item.source for item in document.skipped} == {str(empty), str(missing)}


def test_binary_lines_inside_a_text_log_are_counted_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "mixed.log"
    text = (SAMPLES / "orders-db.log").read_bytes()
    path.write_bytes(text + b"\x00\x01\x02\x03garbage\x00\x00\x00\n" + text)
    [analysis] = report(str(path), "--no-llm").files
    assert analysis.input.skipped_binary == 1
    assert analysis.findings


def test_csv_has_one_row_per_finding_and_html_is_self_contained(tmp_path: Path) -> None:
    path = SAMPLES / "orders-db.log"
    page = tmp_path / "report.html"
    result = analyze(str(path), "--no-llm", "--format", "html", "--out", str(page))
    assert result.returncode == 0, result.stderr.decode()
    html = page.read_text()
    assert "<svg" in html
    assert "Records per template and window" in html
    assert "Database deadlocks" in html
    assert "<script" not in html
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    # The other writers, called as the command calls them.
    document = analyze_inputs([str(path)], LogAnalysisSettings(), use_llm=False)
    write_analysis(document, "csv", tmp_path / "findings.csv")
    with (tmp_path / "findings.csv").open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert [row["id"] for row in rows] == [finding.id for finding in document.files[0].findings]
    assert {row["severity"] for row in rows} <= {"critical", "high", "medium", "low", "info"}
    assert all(row["example_lines"].startswith("L") for row in rows)
    write_analysis(document, "text", tmp_path / "report.txt")
    text = (tmp_path / "report.txt").read_text()
    assert "type database (detected" in text
    assert "Database deadlocks" in text


def test_json_output_follows_the_contract() -> None:
    result = analyze(str(SAMPLES / "search-memory.log"), "--no-llm", "--format", "json")
    document = json.loads(result.stdout)
    assert document["schema_version"] == 1
    analysis = document["files"][0]
    assert analysis["llm"] == {
        "used": False,
        "provider": None,
        "model": None,
        "base_url": None,
        "windows_sent": 0,
        "windows_answered": 0,
        "findings_added": 0,
        "findings_confirmed": 0,
        "findings_rejected": 0,
        "error": "not asked (--no-llm)",
        "rejections": [],
    }
    assert len(analysis["timeline"][0]["counts"]) == len(analysis["windows"])
