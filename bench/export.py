"""Benchmark: the CloudWatch exporter against raw boto3 paging of the same data.

Starts a moto server on a free loopback port and loads it with two hours of a 50-instance
fleet, then measures in the same run:

(a) raw: the API calls the exporter makes (filter_log_events pages per log group and hour,
    list_metrics per namespace, get_metric_data batches per namespace and hour), nothing written;
(b) ours: ``export()`` writing the raw Parquet partitions to a local temporary store.

Raw and ours alternate for three rounds and the best of each is kept. Prints rows/s of both,
the exporter's peak RSS and, as its last line, ``export_efficiency: X`` with X = ours / raw
throughput (target >= 0.8).

Run: ``.venv/bin/python -m bench.export``
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
from botocore.client import BaseClient

from contracts.settings import Settings
from contracts.store import ObjectStore
from telemetry.cloudwatch_export import export
from telemetry.cloudwatch_layout import CloudWatchLayout
from telemetry.cloudwatch_run import make_cloudwatch_clients

INSTANCES = 50
HOURS = 2
LOG_EVENTS_PER_MINUTE = 10  # per instance
# moto's get_metric_data scans every stored datapoint for every query and period, so the
# metric set is kept small enough for the whole script to finish in about two minutes.
METRICS = ["CPUUtilization", "MemoryUtilization"]
ROUNDS = 3  # raw and ours alternate; the best round of each is kept
LEVELS = ("INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR")


@contextmanager
def moto_server() -> Iterator[str]:
    """A moto server on a free loopback port, stopped on exit."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    moto = Path(sys.executable).parent / "moto_server"
    process = subprocess.Popen(
        [str(moto), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=2).close()
                break
            except urllib.error.HTTPError:
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def load_fleet(
    logs: BaseClient, cloudwatch: BaseClient, layout: CloudWatchLayout, start: datetime
) -> int:
    """Put the fleet's logs and metrics; instances are spread over the sources."""
    sources = list(layout.log_groups.values())
    rows = 0
    for group in layout.log_groups:
        logs.create_log_group(logGroupName=group)
    metric_data: dict[str, list[dict[str, object]]] = {ns: [] for ns in layout.metric_namespaces}
    for number in range(INSTANCES):
        instance = f"i-{number:017x}"
        source = sources[number % len(sources)]
        group = layout.log_group_for(source)
        logs.create_log_stream(logGroupName=group, logStreamName=instance)
        step = timedelta(minutes=1) / LOG_EVENTS_PER_MINUTE
        events = []
        for index in range(HOURS * 60 * LOG_EVENTS_PER_MINUTE):
            body = {
                "level": LEVELS[index % len(LEVELS)],
                "message": f"request {index} served in {index % 97} ms",
                "metadata": {"path": f"/api/v1/items/{index % 13}", "status": 200},
            }
            stamp = start + index * step
            events.append({"timestamp": int(stamp.timestamp() * 1000), "message": json.dumps(body)})
        for offset in range(0, len(events), 5000):
            batch = events[offset : offset + 5000]
            logs.put_log_events(logGroupName=group, logStreamName=instance, logEvents=batch)
        rows += len(events)
        namespace = layout.namespace_for(source)
        for name in layout.metric_names:
            for minute in range(HOURS * 60):
                metric_data[namespace].append(
                    {
                        "MetricName": name,
                        "Dimensions": [{"Name": layout.dimension, "Value": instance}],
                        "Timestamp": start + timedelta(minutes=minute),
                        "Value": float((number * 7 + minute) % 100),
                    }
                )
    for namespace, data in metric_data.items():
        for offset in range(0, len(data), 1000):
            batch = data[offset : offset + 1000]
            cloudwatch.put_metric_data(Namespace=namespace, MetricData=batch)
        rows += len(data)
    return rows


def raw_paging(
    logs: BaseClient,
    cloudwatch: BaseClient,
    layout: CloudWatchLayout,
    start: datetime,
    end: datetime,
) -> int:
    """The exporter's API calls with nothing done to the pages but counting their rows."""
    rows = 0
    series: dict[str, list[tuple[str, str]]] = {}
    for namespace in layout.metric_namespaces:
        found = set()
        pages = cloudwatch.get_paginator("list_metrics").paginate(
            Namespace=namespace, Dimensions=[{"Name": layout.dimension}]
        )
        for page in pages:
            for metric in page["Metrics"]:
                found.add((metric["Dimensions"][0]["Value"], metric["MetricName"]))
        series[namespace] = sorted(found)
    hour = start
    while hour < end:
        window = {"StartTime": hour, "EndTime": hour + timedelta(hours=1)}
        for group in layout.log_groups:
            pages = logs.get_paginator("filter_log_events").paginate(
                logGroupName=group,
                startTime=int(hour.timestamp() * 1000),
                endTime=int((hour + timedelta(hours=1)).timestamp() * 1000) - 1,
            )
            rows += sum(len(page["events"]) for page in pages)
        for namespace, pairs in series.items():
            for offset in range(0, len(pairs), 500):
                queries = [
                    {
                        "Id": f"q{index}",
                        "MetricStat": {
                            "Metric": {
                                "Namespace": namespace,
                                "MetricName": name,
                                "Dimensions": [{"Name": layout.dimension, "Value": instance}],
                            },
                            "Period": layout.period_seconds,
                            "Stat": "Average",
                        },
                    }
                    for index, (instance, name) in enumerate(pairs[offset : offset + 500])
                ]
                pages = cloudwatch.get_paginator("get_metric_data").paginate(
                    MetricDataQueries=queries, ScanBy="TimestampAscending", **window
                )
                for page in pages:
                    rows += sum(len(result["Values"]) for result in page["MetricDataResults"])
        hour += timedelta(hours=1)
    return rows


@contextmanager
def peak_rss() -> Iterator[Callable[[], int]]:
    """Samples this process's RSS every 10 ms; yields a function giving the peak in bytes."""
    process = psutil.Process()
    peak = {"bytes": process.memory_info().rss}
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.01):
            peak["bytes"] = max(peak["bytes"], process.memory_info().rss)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield lambda: peak["bytes"]
    finally:
        stop.set()
        thread.join()


def main() -> None:
    # moto accepts any credentials; these keep boto3 from looking for real ones
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench")
    layout = CloudWatchLayout(metric_names=METRICS)
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    end = start + timedelta(hours=HOURS)
    raw_seconds: list[float] = []
    our_seconds: list[float] = []
    peaks: list[tuple[int, int]] = []
    with moto_server() as url, tempfile.TemporaryDirectory() as scratch:
        logs, cloudwatch = make_cloudwatch_clients(Settings(aws_endpoint_url=url))
        began = time.perf_counter()
        loaded = load_fleet(logs, cloudwatch, layout, start)
        print(f"loaded {loaded} rows ({INSTANCES} instances x {HOURS} h) into moto", end=" ")
        print(f"in {time.perf_counter() - began:.1f} s")
        for round_number in range(ROUNDS):
            began = time.perf_counter()
            raw_rows = raw_paging(logs, cloudwatch, layout, start, end)
            raw_seconds.append(time.perf_counter() - began)

            store = ObjectStore.from_uri(str(Path(scratch) / f"round-{round_number}"))
            before = psutil.Process().memory_info().rss
            with peak_rss() as peak:
                began = time.perf_counter()
                summary = export(store, logs, cloudwatch, layout, start=start, end=end)
                our_seconds.append(time.perf_counter() - began)
                peaks.append((peak(), peak() - before))
            our_rows = summary.log_rows + summary.metric_rows
            if our_rows != raw_rows:
                raise SystemExit(f"export wrote {our_rows} rows but CloudWatch paged {raw_rows}")

    raw_rate = raw_rows / min(raw_seconds)
    our_rate = our_rows / min(our_seconds)
    peak_bytes = max(peak for peak, _ in peaks)
    growth = max(growth for _, growth in peaks)
    print(f"rows per run: {raw_rows}; best of {ROUNDS} rounds each")
    print(f"raw boto3 paging: {raw_rate:,.0f} rows/s ({_seconds(raw_seconds)})")
    print(f"export to Parquet: {our_rate:,.0f} rows/s ({_seconds(our_seconds)})")
    print(f"export peak RSS: {peak_bytes / 2**20:.0f} MiB", end=" ")
    print(f"(at most +{growth / 2**20:.0f} MiB in one run)")
    print(f"export_efficiency: {our_rate / raw_rate:.3f}")


def _seconds(runs: list[float]) -> str:
    return ", ".join(f"{seconds:.2f} s" for seconds in runs)


if __name__ == "__main__":
    main()
