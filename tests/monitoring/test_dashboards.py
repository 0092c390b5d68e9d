"""Grafana dashboards: generated from code, committed, and every panel query valid PromQL."""

import importlib.util
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from vigil.dashboard_check import WATCHER_DASHBOARD, PanelQuery, panel_queries, queries_without_data
from vigil.processes import ServerProcess, free_port, start_server

GRAFANA = Path(__file__).resolve().parents[2] / "monitoring" / "grafana"
SEED_DASHBOARDS = {"Model Performance", "Data Drift", "A/B Testing", "LLM & RAG"}
# Beyond the seed: the dashboard of `vigil logs watch`.
DASHBOARDS = SEED_DASHBOARDS | {"Logs"}


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "generate_dashboards", GRAFANA / "generate_dashboards.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_dashboards_match_the_generator(tmp_path: Path) -> None:
    written = generator().write_all(tmp_path)
    committed = sorted((GRAFANA / "dashboards").glob("*.json"))
    assert [p.name for p in committed] == sorted(p.name for p in written)
    for path in written:
        assert (GRAFANA / "dashboards" / path.name).read_text() == path.read_text(), (
            f"{path.name} is stale: run `make dashboards`"
        )


def test_the_dashboards_exist_with_panels_on_a_grid() -> None:
    titles = set()
    for path in (GRAFANA / "dashboards").glob("*.json"):
        dashboard = json.loads(path.read_text())
        titles.add(dashboard["title"].removeprefix("Vigil / "))
        assert dashboard["panels"]
        positions = {(p["gridPos"]["x"], p["gridPos"]["y"]) for p in dashboard["panels"]}
        assert len(positions) == len(dashboard["panels"]), "panels overlap"
    assert titles == DASHBOARDS


def test_every_panel_query_is_valid_promql(tmp_path: Path) -> None:
    # promtool parses PromQL offline only inside rule files: one recording rule per query.
    rules = [
        {"record": f"panel:query_{index}", "expr": query.expr}
        for index, query in enumerate(panel_queries())
    ]
    path = tmp_path / "panels.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    result = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", ["dashboards/vigil.yml", "datasources/prometheus.yml"])
def test_provisioning_files_are_grafana_v1(name: str) -> None:
    document = yaml.safe_load((GRAFANA / "provisioning" / name).read_text())
    assert document["apiVersion"] == 1


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A real Prometheus scraping only itself."""
    root = tmp_path_factory.mktemp("prometheus")
    port = free_port()
    config = {
        "scrape_configs": [
            {"job_name": "self", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
        ]
    }
    (root / "prometheus.yml").write_text(yaml.safe_dump(config))
    argv = [
        "prometheus",
        f"--config.file={root / 'prometheus.yml'}",
        f"--storage.tsdb.path={root / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    server = start_server("prometheus", argv, f"http://127.0.0.1:{port}", "/-/ready", root)
    yield server
    server.stop()


def test_panel_check_reports_queries_that_fail_or_return_nothing(prometheus: ServerProcess) -> None:
    queries = [
        PanelQuery("d", "constant", "vector(1)"),
        PanelQuery("d", "absent", 'model_accuracy{model="none"}'),
        PanelQuery("d", "broken", "sum(rate(x[5m]"),
    ]
    problems = queries_without_data(prometheus.url, queries)
    assert len(problems) == 2
    assert problems[0].startswith("d / absent")
    assert problems[0].endswith("no data")
    assert problems[1].startswith("d / broken")


def test_the_logs_dashboard_reads_only_metrics_the_watcher_exports() -> None:
    """Every vigil_log_* name on the Logs dashboard is a metric of ``vigil logs watch``
    (a renamed metric would leave a panel empty without any query failing)."""
    import re

    from telemetry.logs.watch.metrics import WatchMetrics

    exported = {
        sample.name for family in WatchMetrics().registry.collect() for sample in family.samples
    } | {family.name for family in WatchMetrics().registry.collect()}
    logs = [q for q in panel_queries() if q.dashboard == WATCHER_DASHBOARD]
    assert len(logs) >= 8
    used = {name for q in logs for name in re.findall(r"vigil_log_[a-z_]+", q.expr)}
    assert used
    assert used <= exported, used - exported
