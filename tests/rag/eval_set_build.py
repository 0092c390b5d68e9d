"""Build ``rag/eval_set.json``, the small set of ``vigil rag evaluate``, from the simulator.

Run from the repository root (deterministic: the same simulation gives the same file):

    .venv/bin/python -m tests.rag.eval_set_build

A small fleet is simulated with ``telemetry.simulator.simulation``; for each of the six incident
types, ``PER_TYPE`` incidents are picked (round-robin over the type's variants: memory / CPU /
disk exhaustion, brute force / SQL injection / XSS) and each becomes the ``/explain`` request the
scorer would send at the incident's last minute:

- ``top_features``: the feature-contract columns (``contracts.features``) of that minute that
  deviate most from the instance's previous ``BASELINE`` of telemetry, by robust z-score, with
  the baseline median beside each value. The scorer sends TreeSHAP contributions; a deviation
  ranking needs no trained model, and names the same kind of evidence.
- ``log_lines``: the instance's last ``LOG_LINES`` log lines (every level) up to that minute,
  formatted as ``serving.scorer.explain_trigger.format_log_lines`` formats them.
- ``score`` is a fixed 0.95: the set is about explanations, not detection.

Each case expects the runbook of its incident type (``rag/runbooks/<type>.md``) among the
retrieved sections, and the analysis type that runbook declares (resource exhaustion: by the
resource — memory is "memory", CPU and disk are "performance").
"""

import json
from datetime import timedelta
from typing import Any

import numpy as np
import polars as pl

from contracts.features import TIME_FEATURES, compute_features, feature_columns, to_wide
from contracts.labels import INCIDENT_TYPES
from contracts.telemetry import FLEET_METRICS
from rag.evaluation import EVAL_SET_PATH
from telemetry.simulator.config import SimulationConfig
from telemetry.simulator.simulation import simulate_fleet, simulated_incidents

OUTPUT_PATH = EVAL_SET_PATH
CONFIG = SimulationConfig(instances=40, duration=timedelta(days=1), seed=11, incident_rate=0.05)
PER_TYPE = 4
BASELINE = timedelta(hours=2)
TOP_FEATURES = 6
MIN_DEVIATION = 3.0
LOG_LINES = 20
WINDOW = timedelta(minutes=5)

EXPECTED_ANALYSIS_TYPE = {
    "error_spike": "general",
    "latency_degradation": "performance",
    "security_threat": "security",
    "service_outage": "critical",
    "data_anomaly": "general",
}
RESOURCE_ANALYSIS_TYPE = {
    "MemoryUtilization": "memory",
    "CPUUtilization": "performance",
    "DiskUsedPercent": "performance",
}


def build_eval_set() -> dict[str, Any]:
    """The evaluation set document (see the module docstring)."""
    incidents = pl.DataFrame(simulated_incidents(CONFIG))
    earliest = CONFIG.start + BASELINE
    chosen = _choose(incidents.filter(pl.col("start") >= earliest))
    instances = chosen["instance_id"].unique().to_list()
    raw = pl.concat(
        [pl.DataFrame(table) for _, table in simulate_fleet(CONFIG)], how="vertical_relaxed"
    ).filter(pl.col("instance_id").is_in(instances))
    features = compute_features(to_wide(raw, FLEET_METRICS, 60), FLEET_METRICS)
    logs = raw.filter(pl.col("kind") == "log").sort("timestamp")
    sources = dict(raw.select("instance_id", "source").unique().iter_rows())
    cases = []
    for number, incident in enumerate(chosen.iter_rows(named=True), start=1):
        instance, start, end = incident["instance_id"], incident["start"], incident["end"]
        incident_type = incident["incident_type"]
        mine = features.filter(pl.col("instance_id") == instance)
        lines = logs.filter(
            (pl.col("instance_id") == instance)
            & (pl.col("timestamp") <= end + timedelta(minutes=1))
            & (pl.col("timestamp") > end - timedelta(minutes=30))
        ).tail(LOG_LINES)
        cases.append(
            {
                "id": f"{incident_type}-{number}",
                "incident_type": incident_type,
                "expected_runbook": f"{incident_type.replace('_', '-')}.md",
                "expected_analysis_type": _expected_type(incident),
                "request": {
                    "instance_id": instance,
                    "service": sources[instance],
                    "window_start": max(start, end - WINDOW + timedelta(minutes=1)).isoformat(),
                    "window_end": (end + timedelta(minutes=1)).isoformat(),
                    "score": 0.95,
                    "model": "xgboost_anomaly",
                    "top_features": _top_features(mine, start - BASELINE, start, end),
                    "log_lines": [
                        f"{row['timestamp']:%Y-%m-%dT%H:%M:%SZ} {row['level']} {row['message']}"
                        for row in lines.iter_rows(named=True)
                    ],
                },
            }
        )
    return {
        "description": (
            "Simulated anomalies of the six incident types, each with the runbook that should "
            "be retrieved and the expected analysis type."
        ),
        "generated_by": "python -m tests.rag.eval_set_build "
        f"(simulator seed {CONFIG.seed}, {CONFIG.instances} instances, 1 day)",
        "cases": cases,
    }


def _choose(incidents: pl.DataFrame) -> pl.DataFrame:
    """``PER_TYPE`` incidents of every type, round-robin over variants (their metric lists)."""
    picked = []
    for incident_type in INCIDENT_TYPES:
        of_type = incidents.filter(pl.col("incident_type") == incident_type).with_columns(
            variant=pl.col("metrics").list.join(",")
        )
        by_variant = [group for _, group in of_type.group_by("variant", maintain_order=True)]
        for i in range(PER_TYPE):
            group = by_variant[i % len(by_variant)]
            picked.append(group.row(i // len(by_variant), named=True))
    return pl.DataFrame(picked).drop("variant")


def _expected_type(incident: dict[str, Any]) -> str:
    if incident["incident_type"] == "resource_exhaustion":
        return RESOURCE_ANALYSIS_TYPE[incident["metrics"][0]]
    return EXPECTED_ANALYSIS_TYPE[incident["incident_type"]]


def _top_features(rows: pl.DataFrame, since: Any, start: Any, end: Any) -> list[dict[str, Any]]:
    """Features of the ``end`` row that deviate most from the rows in ``[since, start)``."""
    names = [c for c in feature_columns(FLEET_METRICS) if c not in TIME_FEATURES]
    history = rows.filter(pl.col("timestamp").is_between(since, start, closed="left"))
    reference = history.select(names).to_numpy().astype(np.float64)
    now = rows.filter(pl.col("timestamp") == end).select(names).to_numpy()[0].astype(np.float64)
    median = np.median(reference, axis=0)
    spread = 1.4826 * np.median(np.abs(reference - median), axis=0)
    spread = np.where(spread > 1e-9, spread, reference.std(axis=0))
    deviation = np.abs(now - median) / np.where(spread > 1e-9, spread, 1e-3)
    order = [j for j in np.argsort(-deviation) if deviation[j] >= MIN_DEVIATION]
    return [
        {"name": names[j], "value": round(float(now[j]), 4), "baseline": round(float(median[j]), 4)}
        for j in order[:TOP_FEATURES]
    ]


if __name__ == "__main__":
    OUTPUT_PATH.write_text(json.dumps(build_eval_set(), indent=1) + "\n")
    print(f"wrote {OUTPUT_PATH}")
