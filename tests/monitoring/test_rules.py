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
# Issue 18: the scorer's lag and skipped windows, the exporter and feature CronJobs.
HARDENING_ALERTS = {
    "ScorerLagging",
    "ScorerWindowsSkipped",
    "ExporterJobFailing",
    "FeatureJobFailing",
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


def test_every_alert_exists_and_is_unit_tested() -> None:
    names = {str(rule["alert"]) for rule in alert_rules()}
    assert names == SEED_ALERTS | HARDENING_ALERTS
    tested = {
        name
        for path in (PROMETHEUS / "tests").glob("*.yml")
        for name in re.findall(r"alertname: (\w+)", path.read_text())
    }
    assert tested == names


def _firing_tests(path: Path) -> dict[str, list[str]]:
    """alert name -> the eval times at which a test of ``path`` expects it to fire."""
    document = yaml.safe_load(path.read_text())
    times: dict[str, list[str]] = {}
    for test in document["tests"]:
        for case in test.get("alert_rule_test", []):
            if case.get("exp_alerts"):
                times.setdefault(case["alertname"], []).append(case["eval_time"])
    return times


def test_each_hardening_alert_is_tested_firing_and_quiet() -> None:
    path = PROMETHEUS / "tests" / "scorer-jobs.test.yml"
    firing = _firing_tests(path)
    assert set(firing) == HARDENING_ALERTS
    quiet = {
        case["alertname"]
        for test in yaml.safe_load(path.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if not case.get("exp_alerts")
    }
    assert quiet >= HARDENING_ALERTS


@pytest.mark.parametrize("cronjob", ["exporter", "features"])
def test_the_job_alerts_name_the_charts_cronjobs(cronjob: str) -> None:
    """The CronJobs are <release>-<component> (vigil.componentName); production's release is
    `vigil`, the name .github/workflows/retrain.yml uses for vigil-retrain too."""
    template = (PROMETHEUS.parents[1] / "helm/vigil/templates/jobs/cronjobs.yaml").read_text()
    assert f'"component" "{cronjob}"' in template
    assert 'name: {{ include "vigil.componentName" $ctx }}' in template
    rules = (PROMETHEUS / "rules" / "alerts.rules.yml").read_text()
    assert f'cronjob="vigil-{cronjob}"' in rules
    assert f'job_name=~"vigil-{cronjob}-[0-9]+"' in rules


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
