"""Headless locust runs against the A/B endpoint, summarised per arm.

``run_loadtest`` runs ``locustfile.py`` in its own process (locust patches the standard
library with gevent, which must not happen in the caller), keeps locust's CSV files and
writes ``summary.json`` beside them.
"""

import csv
import subprocess
import sys
from pathlib import Path

from pydantic import BaseModel, ConfigDict

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
CSV_PREFIX = "loadtest"
SUMMARY_FILE = "summary.json"
# The locustfile names each request "infer <answering model>".
REQUEST_NAME = "infer"
AGGREGATED = "Aggregated"
# Seconds locust gets beyond the run to start, stop its users and write its files.
_GRACE_SECONDS = 120


class RequestStats(BaseModel):
    """Requests, failures and latencies (milliseconds) of one arm, or of all requests."""

    model_config = ConfigDict(extra="forbid")

    requests: int
    failures: int
    requests_per_second: float
    mean_ms: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float


class LoadtestSummary(BaseModel):
    """What one run measured: totals and the same figures for each answering model."""

    model_config = ConfigDict(extra="forbid")

    url: str
    users: int
    duration_s: int
    total: RequestStats
    arms: dict[str, RequestStats]  # by the model that answered ("unrouted": no header)
    success_rate: float
    stats_csv: str


def run_loadtest(
    url: str,
    users: int,
    duration_s: int,
    out_dir: Path,
    *,
    rows_per_request: int = 1,
    requests_per_client: int = 20,
) -> LoadtestSummary:
    """Run ``users`` clients against the A/B router at ``url`` for ``duration_s`` seconds.

    Args:
        url: the router's HTTP base URL (``http://host:port``).
        users: concurrent clients (all spawned in the first second).
        duration_s: seconds of load.
        out_dir: where locust's CSV files and ``summary.json`` go.
        rows_per_request: feature rows in each request.
        requests_per_client: requests after which a client comes back as a new one (new arm
            draw).

    Returns:
        Totals and per-arm figures, as written to ``out_dir/summary.json``.

    Raises:
        RuntimeError: locust failed to run (its output is in the message).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.executable,
        "-m",
        "locust",
        "--locustfile",
        str(LOCUSTFILE),
        "--headless",
        "--host",
        url,
        "--users",
        str(users),
        "--spawn-rate",
        str(users),
        "--run-time",
        f"{duration_s}s",
        "--stop-timeout",
        "10",
        "--csv",
        str(out_dir / CSV_PREFIX),
        "--only-summary",
        "--loglevel",
        "WARNING",
        # Failed requests are in the summary; the exit code says only whether locust ran.
        "--exit-code-on-error",
        "0",
        "--rows-per-request",
        str(rows_per_request),
        "--requests-per-client",
        str(requests_per_client),
    ]
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=duration_s + _GRACE_SECONDS
    )
    stats_csv = out_dir / f"{CSV_PREFIX}_stats.csv"
    if result.returncode != 0 or not stats_csv.is_file():
        output = (result.stdout + result.stderr)[-4000:]
        raise RuntimeError(f"locust exited with {result.returncode}:\n{output}")
    summary = summarise(stats_csv, url, users, duration_s)
    (out_dir / SUMMARY_FILE).write_text(summary.model_dump_json(indent=2))
    return summary


def summarise(stats_csv: Path, url: str, users: int, duration_s: int) -> LoadtestSummary:
    """A summary of locust's ``*_stats.csv``."""
    with stats_csv.open(newline="") as file:
        rows = {row["Name"]: row for row in csv.DictReader(file)}
    if AGGREGATED not in rows:
        raise ValueError(f"{stats_csv} has no {AGGREGATED!r} row")
    total = _stats(rows[AGGREGATED])
    prefix = f"{REQUEST_NAME} "
    arms = {
        name.removeprefix(prefix): _stats(row)
        for name, row in rows.items()
        if name.startswith(prefix)
    }
    success = 1 - total.failures / total.requests if total.requests else 0.0
    return LoadtestSummary(
        url=url,
        users=users,
        duration_s=duration_s,
        total=total,
        arms=arms,
        success_rate=success,
        stats_csv=str(stats_csv),
    )


def _stats(row: dict[str, str]) -> RequestStats:
    return RequestStats(
        requests=int(row["Request Count"]),
        failures=int(row["Failure Count"]),
        requests_per_second=float(row["Requests/s"]),
        mean_ms=float(row["Average Response Time"]),
        p50_ms=_percentile(row["50%"]),
        p95_ms=_percentile(row["95%"]),
        p99_ms=_percentile(row["99%"]),
        max_ms=float(row["Max Response Time"]),
    )


def _percentile(value: str) -> float | None:
    return None if value in ("", "N/A") else float(value)
