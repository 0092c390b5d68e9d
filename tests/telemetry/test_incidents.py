"""The incident schedule and state machines: what the ground truth promises about the data."""

import itertools
import string

import numpy as np
import pytest

from contracts.labels import INCIDENT_TYPES
from contracts.telemetry import FLEET_METRICS, LOG_LEVELS
from telemetry.simulator.incident_kinds import (
    INCIDENT_KINDS,
    INCIDENT_SLOTS,
    RESOURCE_VARIANTS,
    IncidentKind,
)
from telemetry.simulator.incidents import (
    DURATION_MINUTES,
    INCIDENT_WEIGHTS,
    METRIC_INDEX,
    MIN_DURATION_MINUTES,
    FloatArray,
    Incident,
    apply_incident,
    schedule_incidents,
)

WEEK = 7 * 24 * 60


def _schedule(
    rate: float, instances: int = 200, minutes: int = WEEK, seed: int = 1
) -> list[Incident]:
    sources = ["ec2", "rds", "lambda", "alb", "app"] * (instances // 5)
    return schedule_incidents(np.random.default_rng(seed), sources, minutes, rate)


def _kind(incident_type: str, variant: str = "default") -> IncidentKind:
    return next(
        k for k in INCIDENT_KINDS if k.incident_type == incident_type and k.variant == variant
    )


def _baseline(minutes: int) -> FloatArray:
    """A steady, healthy instance: 1000 requests a minute, 1 % of them 4XX, 0.2 % 5XX."""
    values = np.zeros((minutes, len(FLEET_METRICS)))
    steady = {
        "CPUUtilization": 40.0,
        "MemoryUtilization": 55.0,
        "NetworkIn": 3e7,
        "NetworkOut": 5e7,
        "DiskReadOps": 200.0,
        "DiskWriteOps": 300.0,
        "DiskUsedPercent": 45.0,
        "SwapUsedPercent": 2.0,
        "LoadAverage": 1.5,
        "TCPConnections": 300.0,
        "RequestCount": 1000.0,
        "Latency": 100.0,
        "HTTPCode_5XX_Count": 2.0,
        "HTTPCode_4XX_Count": 10.0,
        "DatabaseConnections": 20.0,
        "ThreadCount": 200.0,
    }
    for name, value in steady.items():
        values[:, METRIC_INDEX[name]] = value
    return values


def _run(kind: IncidentKind, duration: int = 30, seed: int = 3) -> FloatArray:
    values = _baseline(duration)
    incident = Incident(instance=0, start=0, duration=duration, kind=kind, seed=seed)
    apply_incident(incident, values, np.arange(duration), np.random.default_rng(seed))
    return values


def test_types_are_drawn_with_the_seed_weights() -> None:
    incidents = _schedule(0.05)
    counts = {t: sum(i.kind.incident_type == t for i in incidents) for t in INCIDENT_TYPES}
    assert len(incidents) > 2000
    for incident_type, weight in INCIDENT_WEIGHTS.items():
        assert counts[incident_type] / len(incidents) == pytest.approx(weight, abs=0.03)


@pytest.mark.parametrize("rate", [0.01, 0.05, 0.3])
def test_incidents_cover_the_requested_share_of_instance_minutes(rate: float) -> None:
    incidents = _schedule(rate, instances=50, minutes=3 * 24 * 60)
    covered = sum(i.duration for i in incidents) / (50 * 3 * 24 * 60)
    assert covered == pytest.approx(rate, rel=0.02)


def test_no_rate_no_incidents() -> None:
    assert _schedule(0.0) == []


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5])
def test_rate_outside_zero_one_is_refused(rate: float) -> None:
    with pytest.raises(ValueError, match="incident rate"):
        _schedule(rate)


def test_incidents_are_separate_intervals_inside_the_window() -> None:
    minutes = 2 * 24 * 60
    incidents = _schedule(0.2, instances=20, minutes=minutes)
    by_instance: dict[int, list[Incident]] = {}
    for incident in incidents:
        by_instance.setdefault(incident.instance, []).append(incident)
        _low, high = DURATION_MINUTES[incident.kind.incident_type]
        assert MIN_DURATION_MINUTES <= incident.duration <= high
        assert 0 <= incident.start <= incident.end < minutes
    for items in by_instance.values():
        items.sort(key=lambda i: i.start)
        for before, after in itertools.pairwise(items):
            assert after.start > before.end + 1, "incidents must not overlap or touch"


def test_schedule_is_deterministic_under_its_seed() -> None:
    first = [(i.instance, i.start, i.duration, i.kind.variant) for i in _schedule(0.05, seed=9)]
    again = [(i.instance, i.start, i.duration, i.kind.variant) for i in _schedule(0.05, seed=9)]
    other = [(i.instance, i.start, i.duration, i.kind.variant) for i in _schedule(0.05, seed=10)]
    assert first == again
    assert first != other


def test_resource_exhaustion_only_exhausts_what_the_source_has() -> None:
    incidents = _schedule(0.1, instances=100)
    sources = ["ec2", "rds", "lambda", "alb", "app"] * 20
    exhaustion = [i for i in incidents if i.kind.incident_type == "resource_exhaustion"]
    assert exhaustion
    for incident in exhaustion:
        assert incident.kind.variant in RESOURCE_VARIANTS[sources[incident.instance]]


def test_phases_advance_in_order_over_the_incident() -> None:
    incident = Incident(0, 0, 30, _kind("error_spike"), seed=1)
    phases = incident.phase_at(np.arange(30))
    assert phases[0] == 0
    assert phases[-1] == len(incident.kind.phases) - 1
    assert np.all(np.diff(phases) >= 0)
    assert [p.name for p in incident.kind.phases] == ["warning", "error", "critical"]


@pytest.mark.parametrize("kind", INCIDENT_KINDS, ids=lambda k: f"{k.incident_type}-{k.variant}")
def test_an_incident_changes_only_the_metrics_its_label_names(kind: IncidentKind) -> None:
    changed = np.any(_run(kind) != _baseline(30), axis=0)
    touched = {FLEET_METRICS[i] for i in np.flatnonzero(changed)}
    assert touched, "an incident must leave a trace in the metrics"
    assert touched <= set(kind.metrics)


@pytest.mark.parametrize("kind", INCIDENT_KINDS, ids=lambda k: f"{k.incident_type}-{k.variant}")
def test_every_level_an_incident_logs_at_has_templates(kind: IncidentKind) -> None:
    for phase in kind.phases:
        assert sum(phase.level_probs) == pytest.approx(1.0)
        for level, probability in zip(LOG_LEVELS, phase.level_probs, strict=True):
            if probability:
                assert kind.templates.get(level), f"{phase.name} logs {level} without templates"


@pytest.mark.parametrize("kind", INCIDENT_KINDS, ids=lambda k: f"{k.incident_type}-{k.variant}")
def test_onset_lines_have_a_level_and_name_what_the_incident_fixes(kind: IncidentKind) -> None:
    for level, template in kind.onset:
        assert level in LOG_LEVELS
        slots = {slot for _, slot, _, _ in string.Formatter().parse(template.text) if slot}
        # An onset line names the incident's own service, target, version...: the values
        # its other lines repeat, not values drawn per line.
        assert slots - {"target"} <= INCIDENT_SLOTS, template.text


def test_an_error_spike_follows_a_deployment_and_names_its_version() -> None:
    kind = _kind("error_spike")
    assert [template.text.split()[0] for _, template in kind.onset] == ["Deploying", "Deployment"]
    errors = [template.text for template in kind.templates["ERROR"]]
    assert any("{exception}" in text and "{version}" in text for text in errors)


def test_error_spike_escalates_server_errors() -> None:
    values = _run(_kind("error_spike"), duration=60)
    errors = values[:, METRIC_INDEX["HTTPCode_5XX_Count"]]
    assert errors[:20].mean() < errors[20:40].mean() < errors[40:].mean()
    assert errors[40:].mean() > 100  # ~30 % of 1000 requests


def test_latency_degradation_multiplies_latency_about_five_times() -> None:
    latency = _run(_kind("latency_degradation"), duration=30)[:, METRIC_INDEX["Latency"]]
    assert latency[-1] / 100.0 == pytest.approx(5.0, rel=0.15)
    assert latency[0] < latency[15] < latency[-1]


@pytest.mark.parametrize("variant", ["memory", "cpu", "disk"])
def test_resource_exhaustion_climbs_from_70_to_99_percent(variant: str) -> None:
    kind = _kind("resource_exhaustion", variant)
    used = _run(kind, duration=20)[:, METRIC_INDEX[kind.metrics[0]]]
    assert 70.0 <= used[0] < 72.0
    assert np.all(np.diff(used) > 0)
    assert 99.0 <= used[-1] <= 100.0


def test_service_outage_drops_requests_and_fails_most_of_the_rest() -> None:
    values = _run(_kind("service_outage"), duration=20)
    requests = values[:, METRIC_INDEX["RequestCount"]]
    failures = values[:, METRIC_INDEX["HTTPCode_5XX_Count"]]
    assert requests[10:].max() < 200  # from 1000
    assert np.all(failures[10:] >= 0.7 * np.rint(requests[10:]))


@pytest.mark.parametrize("variant", ["brute_force", "sql_injection", "xss"])
def test_security_threat_brings_bursts_of_client_errors(variant: str) -> None:
    values = _run(_kind("security_threat", variant), duration=20)
    rejected = values[:, METRIC_INDEX["HTTPCode_4XX_Count"]]
    assert rejected[10:].mean() > 20 * 10.0


def test_data_anomaly_reports_impossible_values() -> None:
    values = _run(_kind("data_anomaly"), duration=20)
    network_in = values[:, METRIC_INDEX["NetworkIn"]]
    assert np.any(network_in == 0.0)
    assert np.any(network_in > 5 * 3e7)
    assert len(np.unique(values[:, METRIC_INDEX["DiskWriteOps"]])) == 1
