"""A short headless locust run through the A/B router against the real Triton."""

import json
from pathlib import Path

import pytest

from serving.loadtest.run import SUMMARY_FILE, LoadtestSummary, run_loadtest
from serving.router.nginx import RouterConfig
from vigil.processes import ServerProcess

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("triton")]


def test_a_short_load_test_succeeds_and_reports_each_arm(
    ab_router: ServerProcess, router_config: RouterConfig, tmp_path: Path
) -> None:
    summary = run_loadtest(ab_router.url, users=3, duration_s=10, out_dir=tmp_path)

    assert summary.total.requests > 0
    assert summary.success_rate == 1.0
    served = {router_config.champion_model, router_config.challenger_model}
    assert set(summary.arms) <= served  # every request was answered by a named arm
    assert sum(arm.requests for arm in summary.arms.values()) == summary.total.requests
    written = LoadtestSummary.model_validate(json.loads((tmp_path / SUMMARY_FILE).read_text()))
    assert written == summary
    assert Path(summary.stats_csv).is_file()
