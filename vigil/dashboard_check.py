"""Run every Grafana panel query of the committed dashboards against a live Prometheus."""

import json
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

DASHBOARDS_PATH = Path(__file__).resolve().parents[1] / "monitoring" / "grafana" / "dashboards"
# Fed by `vigil logs watch`, which the demo's stack does not run; its panels are checked against
# a live watcher in tests/telemetry/logs/watch.
WATCHER_DASHBOARD = "Vigil / Logs"


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    expr: str


def panel_queries(dashboards_path: Path = DASHBOARDS_PATH) -> list[PanelQuery]:
    """Every target of every panel of every dashboard JSON."""
    queries = []
    for path in sorted(dashboards_path.glob("*.json")):
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                queries.append(PanelQuery(dashboard["title"], panel["title"], target["expr"]))
    return queries


def stack_panel_queries() -> list[PanelQuery]:
    """The panel queries the demo's stack feeds (Triton, scorer, explainer, Prometheus rules)."""
    return [query for query in panel_queries() if query.dashboard != WATCHER_DASHBOARD]


def queries_without_data(prometheus_url: str, queries: list[PanelQuery]) -> list[str]:
    """The queries that fail to run or return no series, with the reason."""
    problems = []
    for query in queries:
        response = httpx.get(
            f"{prometheus_url}/api/v1/query", params={"query": query.expr}, timeout=10
        )
        body = response.json()
        where = f"{query.dashboard} / {query.panel}: {query.expr}"
        if body.get("status") != "success":
            problems.append(f"{where}: {body.get('error', response.status_code)}")
        elif not body["data"]["result"]:
            problems.append(f"{where}: no data")
    return problems


def wait_for_panel_data(prometheus_url: str, timeout: float = 180) -> int:
    """Wait until every panel query the stack feeds returns data (rates need two scrapes and a
    rule evaluation); returns how many queries were checked.

    Raises:
        RuntimeError: naming the queries still without data at the deadline.
    """
    queries = stack_panel_queries()
    deadline = time.monotonic() + timeout
    while True:
        problems = queries_without_data(prometheus_url, queries)
        if not problems:
            return len(queries)
        if time.monotonic() > deadline:
            raise RuntimeError("panel queries without data:\n" + "\n".join(problems))
        time.sleep(5)
