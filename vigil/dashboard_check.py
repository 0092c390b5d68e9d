"""Run every Grafana panel query of the committed dashboards against a live Prometheus."""

import json
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

DASHBOARDS_PATH = Path(__file__).resolve().parents[1] / "monitoring" / "grafana" / "dashboards"


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
    """Wait until every panel query returns data (rates need two scrapes and a rule
    evaluation); returns how many queries were checked.

    Raises:
        RuntimeError: naming the queries still without data at the deadline.
    """
    queries = panel_queries()
    deadline = time.monotonic() + timeout
    while True:
        problems = queries_without_data(prometheus_url, queries)
        if not problems:
            return len(queries)
        if time.monotonic() > deadline:
            raise RuntimeError("panel queries without data:\n" + "\n".join(problems))
        time.sleep(5)
