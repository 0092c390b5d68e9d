"""Prometheus rules: promtool's own checks and unit tests, and every alert has its runbook."""

import re
import subprocess
from pathlib import Path

import pytest
import yaml

PROMETHEUS = Path(__file__).resolve().parents[2] / "monitoring" / "prometheus"
RUNBOOKS = PROMETHEUS.parent / "runbooks"
RUNBOOK_URL = re.compile(
    r"^https://github\.com/[^/]+/[^/]+/blob/main/(monitoring/runbooks/.+\.md)$"
)
SEED_ALERTS = {
    "ModelAccuracyDegraded",
    "HighLatency",
    "DataDriftDetected",
    "HighErrorRate",
    "GPUMemoryHigh",
    "QdrantSearchLatencyHigh",
    "AnomalyRateSpike",
    "LLMResponseTimeSLAViolation",
}


def alert_rules() -> list[dict[str, object]]:
    document = yaml.safe_load((PROMETHEUS / "rules" / "alerts.rules.yml").read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["promtool", *args], capture_output=True, text=True, cwd=PROMETHEUS, check=False
    )


def test_rule_files_pass_promtool_check() -> None:
    result = promtool(
        "check", "rules", *sorted(str(p) for p in (PROMETHEUS / "rules").glob("*.yml"))
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_passes_its_unit_tests_on_both_sides_of_its_for_window() -> None:
    result = promtool(
        "test", "rules", *sorted(str(p) for p in (PROMETHEUS / "tests").glob("*.yml"))
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_seed_alerts_exist_and_each_is_unit_tested() -> None:
    names = {str(rule["alert"]) for rule in alert_rules()}
    assert names == SEED_ALERTS
    tested = set(
        re.findall(r"alertname: (\w+)", (PROMETHEUS / "tests" / "alerts.test.yml").read_text())
    )
    assert tested == SEED_ALERTS


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: str(rule["alert"]))
def test_alert_has_severity_summary_description_and_a_runbook_in_the_repo(
    rule: dict[str, object],
) -> None:
    labels, annotations = rule["labels"], rule["annotations"]
    assert isinstance(labels, dict)
    assert isinstance(annotations, dict)
    assert labels["severity"] in {"critical", "warning", "info"}
    assert annotations["summary"]
    assert annotations["description"]
    match = RUNBOOK_URL.match(str(annotations["runbook_url"]))
    assert match, annotations["runbook_url"]
    runbook = PROMETHEUS.parents[1] / match.group(1)
    assert runbook.is_file()
    assert str(rule["alert"]) in runbook.read_text().splitlines()[0]
