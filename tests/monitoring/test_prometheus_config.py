"""The local Prometheus config scrapes each server on its default port (contracts/ports.py)."""

from pathlib import Path

import yaml

from contracts.ports import (
    ALERTMANAGER_PORT,
    EXPLAINER_PORT,
    PROMETHEUS_PORT,
    SCORER_PORT,
    TRITON_METRICS_PORT,
)

CONFIG_PATH = Path(__file__).resolve().parents[2] / "monitoring" / "prometheus" / "prometheus.yml"


def test_prometheus_config_targets_the_default_ports() -> None:
    config = yaml.safe_load(CONFIG_PATH.read_text())
    targets = {
        job["job_name"]: [t for c in job["static_configs"] for t in c["targets"]]
        for job in config["scrape_configs"]
    }
    assert targets == {
        "triton": [f"127.0.0.1:{TRITON_METRICS_PORT}"],
        "scorer": [f"127.0.0.1:{SCORER_PORT}"],
        "explainer": [f"127.0.0.1:{EXPLAINER_PORT}"],
        "prometheus": [f"127.0.0.1:{PROMETHEUS_PORT}"],
    }
    (alertmanager,) = config["alerting"]["alertmanagers"]
    assert alertmanager["static_configs"][0]["targets"] == [f"127.0.0.1:{ALERTMANAGER_PORT}"]
