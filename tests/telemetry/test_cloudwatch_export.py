"""The CloudWatch exporter over the real boto3 wire protocol against a moto server.

moto behaviour these tests rely on or work around (moto 5.2, checked by hand):
- filter_log_events honours startTime/endTime (endTime inclusive, as in AWS), limit and
  nextToken; eventIds are unique per server process, as AWS's are.
- put_log_events rejects events older than 14 days (as AWS does): data is placed hours ago.
- get_metric_data never pages (no NextToken, MaxDatapoints ignored), so following NextToken is
  checked with botocore's Stubber instead; paging is exercised through small query batches.
- get_metric_data ignores the namespace when a query has dimensions, so every test publishes
  each (instance, metric) in one namespace only.
- list_metrics pages at 500 metrics.
"""

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.client import HTTPConnection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from botocore.client import BaseClient
from botocore.stub import ANY, Stubber

from contracts.layout import CHECKPOINT_PATH, EXPORT_LEASE_PATH, raw_partition_path
from contracts.lease import Lease, LeaseBusyError, LeaseLostError
from contracts.settings import Settings
from contracts.store import TMP_MARKER, ObjectStore
from contracts.telemetry import (
    RAW_SCHEMA,
    RAW_SCHEMA_WITH_TEMPLATES,
    TEMPLATE_FIELDS,
    TEMPLATE_MINER_STATE_PATH,
)
from telemetry.checkpoint import read_checkpoint
from telemetry.cloudwatch_export import export
from telemetry.cloudwatch_layout import CloudWatchLayout
from telemetry.cloudwatch_run import ExportConfig, ExportError, make_cloudwatch_clients
from telemetry.logs.events import LogEventParser
from telemetry.logs.state import load_miner
from telemetry.logs.templates import LogTemplateMiner
from vigil.processes import ServerProcess

LAYOUT = CloudWatchLayout(
    log_groups={"/test/ec2/system": "ec2", "/test/application": "app"},
    metric_namespaces={"Test/EC2": "ec2"},
    metric_names=["CPUUtilization", "MemoryUtilization"],
)
INSTANCES = ("i-0a1", "i-0b2", "i-0c3")
# Two whole hours that ended an hour ago: inside CloudWatch's 14-day window, past any lag.
START = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
END = START + timedelta(hours=2)
# Pages of a few rows so that every hour of every stream spans several pages.
SMALL_PAGES = ExportConfig(log_page_size=7, metric_queries_per_call=2, max_attempts=4)
RESUME = SMALL_PAGES.model_copy(update={"initial_lookback": END - START})

Row = tuple[Any, ...]


# --- publishing test telemetry ---------------------------------------------------------------


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _publish(
    logs: BaseClient,
    cloudwatch: BaseClient,
    *,
    start: datetime = START,
    minutes: int = 130,
    messages: dict[str, str] | None = None,
) -> set[Row]:
    """Put a log event every 6 minutes per instance and group and a datapoint every 2 minutes
    per series; returns the rows of [START, END) the export must produce (without event ids
    and template columns). ``messages`` replaces the message of the first event of each
    instance named in it."""
    expected: set[Row] = set()
    parser = LogEventParser(LogTemplateMiner())
    for group, source in LAYOUT.log_groups.items():
        logs.create_log_group(logGroupName=group)
        for instance in INSTANCES:
            logs.create_log_stream(logGroupName=group, logStreamName=instance)
            events = []
            for minute in range(0, minutes, 6):
                stamp = start + timedelta(minutes=minute)
                body = {"level": "INFO", "message": f"{source} {minute}", "metadata": {"m": minute}}
                text = json.dumps(body)
                if minute == 0 and messages and instance in messages:
                    text = messages[instance]
                events.append({"timestamp": _ms(stamp), "message": text})
                if START <= stamp < END:
                    event = parser.parse(text)
                    fields = (event.level, event.message, event.metadata, event.parse_error)
                    expected.add((stamp, instance, source, "log", None, None, *fields))
            logs.put_log_events(logGroupName=group, logStreamName=instance, logEvents=events)
    for namespace, source in LAYOUT.metric_namespaces.items():
        data = []
        for instance in INSTANCES:
            for name in LAYOUT.metric_names:
                for minute in range(0, minutes, 2):
                    stamp = start + timedelta(minutes=minute)
                    value = float(minute) + 0.5
                    data.append(
                        {
                            "MetricName": name,
                            "Dimensions": [{"Name": "InstanceId", "Value": instance}],
                            "Timestamp": stamp,
                            "Value": value,
                        }
                    )
                    if START <= stamp < END:
                        expected.add(
                            (
                                stamp,
                                instance,
                                source,
                                "metric",
                                name,
                                value,
                                None,
                                None,
                                None,
                                False,
                            )
                        )
        for offset in range(0, len(data), 1000):  # PutMetricData takes 1,000 datums a call
            cloudwatch.put_metric_data(Namespace=namespace, MetricData=data[offset : offset + 1000])
    return expected


# --- reading what the exporter wrote ---------------------------------------------------------


def _table(store: ObjectStore) -> pa.Table:
    """Every row of every raw partition, which all have the schema with templates."""
    tables = [store.read_table(key) for key in store.list_keys("raw-logs", ".parquet")]
    table = pa.concat_tables(tables) if tables else RAW_SCHEMA_WITH_TEMPLATES.empty_table()
    assert table.schema.equals(RAW_SCHEMA_WITH_TEMPLATES)
    return table


def _rows(store: ObjectStore) -> list[Row]:
    """Every row of every raw partition, event id last, sorted: duplicates stay visible.
    The template columns are left out (the template tests read them)."""
    table = _table(store).select(RAW_SCHEMA.names)
    if not table.num_rows:
        return []
    columns = [name for name in table.column_names if name != "event_id"] + ["event_id"]
    return sorted(zip(*(table.column(c).to_pylist() for c in columns), strict=True), key=repr)


def _content(rows: list[Row]) -> set[Row]:
    return {row[:-1] for row in rows}


def _temporary_files(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if TMP_MARKER in path.name]


# --- a faulty network in front of moto -------------------------------------------------------


Reply = tuple[int, dict[str, str], bytes]


def throttled(operation: str) -> Reply:
    """How each service says "slow down" on the wire."""
    body = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"}).encode()
    if operation in ("GetMetricData", "ListMetrics"):
        # botocore lists CBOR first in CloudWatch's model but resolves it to awsJson1_0 (its own
        # protocol priority puts JSON first); CloudWatch, a former query service, names the
        # error code in the query-compatibility header.
        headers = {
            "Content-Type": "application/x-amz-json-1.0",
            "x-amzn-query-error": "Throttling;Sender",
        }
        return 400, headers, body
    return 400, {"Content-Type": "application/x-amz-json-1.1"}, body


def internal_failure() -> Reply:
    body = json.dumps({"__type": "InternalFailure", "message": "We are sorry"}).encode()
    return 500, {"Content-Type": "application/x-amz-json-1.1"}, body


@dataclass
class FaultyProxy:
    """An HTTP proxy on loopback in front of moto; ``fault`` may answer a request instead."""

    target: str
    fault: Callable[[str, bytes], Reply | None] = lambda operation, body: None
    requests: list[str] = field(default_factory=list)

    @contextmanager
    def serve(self) -> Iterator[str]:
        proxy = self
        host, port = urlsplit(self.target).netloc.split(":")

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                # both services speak awsJson here: the operation is named in X-Amz-Target
                operation = self.headers.get("X-Amz-Target", "").rpartition(".")[2]
                proxy.requests.append(operation)
                reply = proxy.fault(operation, body) or self._forward(body)
                status, headers, payload = reply
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _forward(self, body: bytes) -> Reply:
                connection = HTTPConnection(host, int(port), timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                connection.request("POST", self.path, body=body, headers=headers)
                response = connection.getresponse()
                payload = response.read()
                connection.close()
                skip = {"content-length", "transfer-encoding", "connection"}
                kept = {k: v for k, v in response.getheaders() if k.lower() not in skip}
                return response.status, kept, payload

            def log_message(self, format: str, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()
            server.server_close()
            thread.join()


def _first(count: int, operation: str, reply: Callable[[str], Reply]) -> Callable[..., Any]:
    """A fault answering the first ``count`` calls of ``operation`` with ``reply``."""
    seen = {"calls": 0}

    def fault(called: str, body: bytes) -> Reply | None:
        if called != operation or seen["calls"] >= count:
            return None
        seen["calls"] += 1
        return reply(called)

    return fault


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture
def clients(aws_emulator: ServerProcess) -> tuple[BaseClient, BaseClient]:
    return make_cloudwatch_clients(Settings(aws_endpoint_url=aws_emulator.url), SMALL_PAGES)


@pytest.fixture
def published(clients: tuple[BaseClient, BaseClient]) -> set[Row]:
    return _publish(*clients)


def _store(tmp_path: Path, name: str) -> ObjectStore:
    return ObjectStore.from_uri(str(tmp_path / name))


def _clean_run(tmp_path: Path, clients: tuple[BaseClient, BaseClient]) -> list[Row]:
    store = _store(tmp_path, "clean")
    export(store, *clients, LAYOUT, start=START, end=END, config=SMALL_PAGES)
    return _rows(store)


# --- argument checks (no network: they fail before any call) ----------------------------------


def _offline_clients() -> tuple[BaseClient, BaseClient]:
    return boto3.client("logs", region_name="us-east-1"), boto3.client(
        "cloudwatch", region_name="us-east-1"
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"end": datetime(2024, 1, 1)}, "no timezone"),
        ({"end": datetime.now(UTC) + timedelta(hours=1)}, "in the future"),
        ({"start": END, "end": START}, "not before end"),
    ],
)
def test_bad_window_is_refused(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        export(_store(tmp_path, "s"), *_offline_clients(), LAYOUT, **kwargs)


def test_period_that_straddles_hours_is_refused(tmp_path):
    layout = LAYOUT.model_copy(update={"period_seconds": 420})
    with pytest.raises(ValueError, match="must divide an hour"):
        export(_store(tmp_path, "s"), *_offline_clients(), layout, end=END)


def test_corrupt_checkpoint_is_refused_not_reset(tmp_path):
    # Intent: silently starting over from the lookback would leave a gap.
    store = _store(tmp_path, "s")
    store.write_bytes(CHECKPOINT_PATH, b'{"high_water_marks": {"logs:/x": "yesterday"}}')
    with pytest.raises(ValueError, match="not a valid exporter checkpoint"):
        export(store, *_offline_clients(), LAYOUT, end=END)


def test_metric_pages_follow_next_token(tmp_path):
    # moto never pages get_metric_data, so botocore's Stubber plays CloudWatch here.
    logs, cloudwatch = _offline_clients()
    layout = LAYOUT.model_copy(update={"log_groups": {}})
    end = START + timedelta(minutes=5)
    dimensions = [{"Name": "InstanceId", "Value": "i-1"}]
    series = {"Namespace": "Test/EC2", "MetricName": "CPUUtilization", "Dimensions": dimensions}
    query = {
        "MetricDataQueries": ANY,
        "StartTime": START,
        "EndTime": end,
        "ScanBy": "TimestampAscending",
    }

    def result(minute: int, value: float, status: str) -> dict[str, Any]:
        stamps = [START + timedelta(minutes=minute)]
        return {"Id": "q0", "Timestamps": stamps, "Values": [value], "StatusCode": status}

    store = _store(tmp_path, "s")
    with Stubber(cloudwatch) as stub:
        listed = {"Namespace": "Test/EC2", "Dimensions": [{"Name": "InstanceId"}]}
        stub.add_response("list_metrics", {"Metrics": [series]}, listed)
        first = {"MetricDataResults": [result(0, 10.0, "PartialData")], "NextToken": "page-2"}
        stub.add_response("get_metric_data", first, query)
        last = {"MetricDataResults": [result(1, 20.0, "Complete")]}
        stub.add_response("get_metric_data", last, query | {"NextToken": "page-2"})
        summary = export(store, logs, cloudwatch, layout, start=START, end=end)
        stub.assert_no_pending_responses()
    assert summary.metric_rows == 2
    assert [(row[0], row[5]) for row in _rows(store)] == [
        (START, 10.0),
        (START + timedelta(minutes=1), 20.0),
    ]


# --- over the wire ---------------------------------------------------------------------------


@pytest.mark.slow
def test_export_pages_through_logs_and_metrics(tmp_path, clients, published):
    store = _store(tmp_path, "store")
    progress: list[tuple[int, int]] = []
    summary = export(
        store,
        *clients,
        LAYOUT,
        start=START,
        end=END,
        config=SMALL_PAGES,
        progress=lambda done, total: progress.append((done, total)),
    )

    rows = _rows(store)
    assert _content(rows) == published
    assert len(rows) == len(published)
    logs = [row for row in rows if row[3] == "log"]
    assert len({row[-1] for row in logs}) == len(logs)  # one row per CloudWatch eventId
    assert {row[-1] for row in rows if row[3] == "metric"} == {
        "Test/EC2/CPUUtilization",
        "Test/EC2/MemoryUtilization",
    }
    # 30 log events per group-hour in pages of 7, 6 series per hour in calls of 2 queries
    assert summary.pages >= 2 * 2 * 5 + 2 * 3
    assert summary.log_rows + summary.metric_rows == len(published)
    assert summary.partitions_written == [
        raw_partition_path(START),
        raw_partition_path(START + timedelta(hours=1)),
    ]
    assert progress == [(1, 2), (2, 2)]
    checkpoint = read_checkpoint(store)
    assert set(checkpoint.high_water_marks.values()) == {END}
    assert checkpoint.failures == []

    # an explicit start re-exports (a backfill): nothing is written twice
    again = export(store, *clients, LAYOUT, start=START, end=END, config=SMALL_PAGES)
    assert (again.duplicate_rows, again.partitions_written) == (len(published), [])
    assert _rows(store) == rows


@pytest.mark.slow
def test_runs_every_few_minutes_add_up_to_one_run(tmp_path, clients, published):
    # Intent: the production cadence (a run every five minutes, the hour file rewritten each
    # time) ends with exactly the rows of one run over the whole range.
    store = _store(tmp_path, "store")
    ends = [START + timedelta(minutes=m, seconds=30) for m in (0, 7, 44, 61, 62, 95)] + [END]
    for end in ends:
        export(store, *clients, LAYOUT, end=end, config=RESUME)
    assert _rows(store) == _clean_run(tmp_path, clients)
    assert _content(_rows(store)) == published


@pytest.mark.slow
def test_list_metrics_pages_find_every_instance(tmp_path, clients):
    instances = [f"i-{number:04d}" for number in range(260)]  # 520 series: two pages of 500
    data = [
        {
            "MetricName": name,
            "Dimensions": [{"Name": "InstanceId", "Value": instance}],
            "Timestamp": START,
            "Value": 1.0,
        }
        for instance in instances
        for name in LAYOUT.metric_names
    ]
    logs, cloudwatch = clients
    for offset in range(0, len(data), 1000):
        cloudwatch.put_metric_data(Namespace="Test/EC2", MetricData=data[offset : offset + 1000])
    layout = LAYOUT.model_copy(update={"log_groups": {}})
    store = _store(tmp_path, "store")
    summary = export(store, logs, cloudwatch, layout, start=START, end=START + timedelta(minutes=2))
    assert summary.metric_rows == len(data)
    assert {row[1] for row in _rows(store)} == set(instances)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("event", "crash_at_call"),
    [
        ("after-call.cloudwatch-logs.FilterLogEvents", 3),  # first hour, first group
        ("after-call.cloudwatch-logs.FilterLogEvents", 18),  # second hour, second group
        ("after-call.cloudwatch.GetMetricData", 5),  # second hour, metrics
    ],
)
def test_crash_between_pages_then_rerun_has_no_gap_and_no_duplicate(
    tmp_path, clients, published, event, crash_at_call
):
    clean = _clean_run(tmp_path, clients)
    store = _store(tmp_path, "store")
    calls = {"n": 0}

    def crash(**_: object) -> None:
        calls["n"] += 1
        if calls["n"] == crash_at_call:
            raise KeyboardInterrupt("process killed between pages")

    for client in clients:
        client.meta.events.register(event, crash)
    with pytest.raises(KeyboardInterrupt):
        export(store, *clients, LAYOUT, start=START, end=END, config=SMALL_PAGES)
    for client in clients:
        client.meta.events.unregister(event, crash)
    assert _temporary_files(tmp_path / "store") == []
    partial = _rows(store)
    assert len(partial) < len(clean)

    export(store, *clients, LAYOUT, end=END, config=RESUME)
    assert _rows(store) == clean


@pytest.mark.slow
def test_crash_after_partition_before_checkpoint_then_rerun_has_no_duplicate(
    tmp_path, clients, published
):
    checkpoint_writes = {"n": 0}

    class CheckpointCrash(ObjectStore):
        def write_bytes(self, key: str, data: bytes) -> None:
            if key == CHECKPOINT_PATH:
                checkpoint_writes["n"] += 1
                if checkpoint_writes["n"] == 2:  # the first keeps the start, before any hour
                    raise KeyboardInterrupt("process killed before the checkpoint")
            super().write_bytes(key, data)

    clean = _clean_run(tmp_path, clients)
    store = _store(tmp_path, "store")
    crashing = CheckpointCrash(store.fs, store.root, store.uri)
    with pytest.raises(KeyboardInterrupt):
        export(crashing, *clients, LAYOUT, start=START, end=END, config=SMALL_PAGES)
    assert store.list_keys("raw-logs", ".parquet") == [raw_partition_path(START)]

    # The default initial lookback (1 h) would start after START: the rerun resumes from
    # the start the killed run kept.
    summary = export(store, *clients, LAYOUT, end=END, config=SMALL_PAGES)
    assert summary.duplicate_rows > 0  # the first hour was fetched again and left out
    assert _rows(store) == clean


@pytest.mark.slow
def test_throttling_is_retried_with_backoff(tmp_path, aws_emulator, published):
    proxy = FaultyProxy(aws_emulator.url)
    faults = [
        _first(1, "FilterLogEvents", throttled),
        _first(1, "ListMetrics", throttled),
        _first(1, "GetMetricData", throttled),
    ]
    proxy.fault = lambda operation, body: next(
        (reply for fault in faults if (reply := fault(operation, body))), None
    )
    store = _store(tmp_path, "store")
    with proxy.serve() as url:
        clients = make_cloudwatch_clients(Settings(aws_endpoint_url=url), SMALL_PAGES)
        summary = export(store, *clients, LAYOUT, start=START, end=END, config=SMALL_PAGES)
    assert summary.retries == 3
    assert len(proxy.requests) == summary.pages + summary.retries  # each page asked for once
    assert _content(_rows(store)) == published
    assert len(_rows(store)) == len(published)


@pytest.mark.slow
def test_stream_that_keeps_failing_is_reported_and_retried_next_run(
    tmp_path, aws_emulator, published
):
    broken = {"on": True}

    def fault(operation: str, body: bytes) -> Reply | None:
        # the group's first page goes through, every later one fails: rows of a failed window
        # are already in the partition when the rerun fetches the window again
        failing = b"/test/application" in body and b"nextToken" in body
        if broken["on"] and operation == "FilterLogEvents" and failing:
            return internal_failure()
        return None

    proxy = FaultyProxy(aws_emulator.url, fault)
    store = _store(tmp_path, "store")
    with proxy.serve() as url:
        clients = make_cloudwatch_clients(
            Settings(aws_endpoint_url=url), SMALL_PAGES.model_copy(update={"max_attempts": 2})
        )
        with pytest.raises(ExportError, match="logs:/test/application") as raised:
            export(store, *clients, LAYOUT, start=START, end=END, config=SMALL_PAGES)
        summary = raised.value.summary
        assert summary.retries >= 1
        checkpoint = read_checkpoint(store)
        assert [(f.stream, f.window_start, f.window_end) for f in checkpoint.failures] == [
            ("logs:/test/application", START, START + timedelta(hours=1))
        ]
        # It stays at the run's start: the rerun fetches the failed window again.
        assert checkpoint.high_water_marks["logs:/test/application"] == START
        assert checkpoint.high_water_marks["logs:/test/ec2/system"] == END
        content = _content(_rows(store))
        assert {row for row in published if row[2] == "ec2"} <= content  # the others went on
        assert len([row for row in content if row[2] == "app"]) == SMALL_PAGES.log_page_size

        broken["on"] = False
        rerun = export(store, *clients, LAYOUT, end=END, config=RESUME)
    assert rerun.duplicate_rows == SMALL_PAGES.log_page_size
    assert _content(_rows(store)) == published
    assert len(_rows(store)) == len(published)
    checkpoint = read_checkpoint(store)
    assert checkpoint.failures == []
    assert set(checkpoint.high_water_marks.values()) == {END}


@pytest.mark.slow
def test_empty_window_advances_the_checkpoint_without_a_file(tmp_path, clients):
    logs, _ = clients
    for group in LAYOUT.log_groups:
        logs.create_log_group(logGroupName=group)
    store = _store(tmp_path, "store")
    summary = export(store, *clients, LAYOUT, start=START, end=END, config=SMALL_PAGES)
    assert (summary.log_rows, summary.metric_rows, summary.partitions_written) == (0, 0, [])
    assert store.list_keys("raw-logs", ".parquet") == []
    assert set(read_checkpoint(store).high_water_marks.values()) == {END}


@pytest.mark.slow
def test_events_in_any_format_are_parsed_and_only_levelless_ones_flagged(tmp_path, clients):
    # Intent: no more raw-only lines: an event in another format is parsed (its level,
    # component and message, its header stripped); only an event with no level to read keeps
    # its whole text and the flag, and every event gets a template.
    other = {
        "i-0a1": "segfault at 0000 ip 00007f",
        "i-0b2": '{"level": "NOTICE", "message": "odd level"}',
        "i-0c3": "<11>Jan  5 10:00:00 web1 sshd[4242]: error: could not load host key",
    }
    published = _publish(*clients, messages=other)
    store = _store(tmp_path, "store")
    summary = export(store, *clients, LAYOUT, start=START, end=END, config=SMALL_PAGES)
    rows = _rows(store)
    assert _content(rows) == published
    flagged = {(row[1], row[6], row[7]) for row in rows if row[9]}
    assert flagged == {("i-0a1", None, other["i-0a1"])}
    assert summary.malformed_log_rows == 2  # once in each log group
    logs = pl.from_arrow(_table(store)).filter(pl.col("kind") == "log")
    assert isinstance(logs, pl.DataFrame)
    syslog = logs.filter(pl.col("message") == "error: could not load host key")
    assert syslog.height == 2
    assert syslog.select("level", "component").unique().rows() == [("ERROR", "sshd")]
    assert logs.filter(pl.col("message") == "odd level")["level"].unique().to_list() == ["INFO"]
    assert logs["template_id"].null_count() == 0


@pytest.mark.slow
def test_template_ids_are_stable_across_runs_and_kept_in_the_store(tmp_path, clients, published):
    # Intent: the miner's state lives in the store, so a later run (another process) gives
    # the events of a template the id the first run gave it.
    store = _store(tmp_path, "store")
    middle = START + timedelta(hours=1)
    first = export(store, *clients, LAYOUT, start=START, end=middle, config=SMALL_PAGES)
    assert store.exists(TEMPLATE_MINER_STATE_PATH)
    assert first.log_templates == load_miner(store, TEMPLATE_MINER_STATE_PATH).template_count
    export(store, *clients, LAYOUT, start=middle, end=END, config=SMALL_PAGES)
    logs = pl.from_arrow(_table(store)).filter(pl.col("kind") == "log")
    assert isinstance(logs, pl.DataFrame)
    # The messages are "<source> <minute>": one template per log group, in both runs.
    per_source = logs.group_by("source").agg(
        pl.col("template_id").n_unique().alias("ids"),
        pl.col("template_id").first().alias("id"),
        (pl.col("timestamp") >= middle).n_unique().alias("runs"),
    )
    assert per_source["ids"].to_list() == [1, 1]
    assert per_source["runs"].to_list() == [2, 2]
    assert per_source["id"].n_unique() == 2


@pytest.mark.slow
def test_a_partition_written_before_templates_is_rewritten_with_null_template_ids(
    tmp_path, clients, published
):
    # Intent: old partitions still read and still take new rows: their rows keep null
    # template ids, the rows added beside them get theirs.
    store = _store(tmp_path, "store")
    export(store, *clients, LAYOUT, start=START, end=END, config=SMALL_PAGES)
    key = raw_partition_path(START)
    full = store.read_table(key)
    logs = pc.equal(full["kind"], "log")
    keep = pc.or_(pc.invert(logs), pc.less(full["timestamp"], START + timedelta(minutes=30)))
    old = full.filter(keep).drop_columns([f.name for f in TEMPLATE_FIELDS])
    store.write_table(key, old.cast(RAW_SCHEMA))

    again = export(store, *clients, LAYOUT, start=START, end=END, config=SMALL_PAGES)
    assert key in again.partitions_written
    rebuilt = pl.from_arrow(store.read_table(key))
    assert isinstance(rebuilt, pl.DataFrame)
    assert store.read_table(key).schema.equals(RAW_SCHEMA_WITH_TEMPLATES)
    rebuilt_logs = rebuilt.filter(pl.col("kind") == "log")
    early = rebuilt_logs["timestamp"] < START + timedelta(minutes=30)
    assert rebuilt_logs.filter(early)["template_id"].null_count() == early.sum()
    assert rebuilt_logs.filter(~early)["template_id"].null_count() == 0
    assert rebuilt.height == full.num_rows


@pytest.mark.slow
def test_export_to_s3_through_the_same_code_path(clients, published, aws_emulator):
    boto3.client("s3", endpoint_url=aws_emulator.url, region_name="us-east-1").create_bucket(
        Bucket="vigil"
    )
    store = ObjectStore.from_uri("s3://vigil/exports", endpoint_url=aws_emulator.url)
    export(store, *clients, LAYOUT, start=START, end=END, config=SMALL_PAGES)
    assert store.list_keys("raw-logs", ".parquet") == [
        raw_partition_path(START),
        raw_partition_path(START + timedelta(hours=1)),
    ]
    assert _content(_rows(store)) == published
    assert set(read_checkpoint(store).high_water_marks.values()) == {END}


# --- two exporters on one store ----------------------------------------------------------------


def _either_store(kind: str, tmp_path: Path, emulator: ServerProcess) -> ObjectStore:
    if kind == "local":
        return _store(tmp_path, "store")
    boto3.client("s3", endpoint_url=emulator.url, region_name="us-east-1").create_bucket(
        Bucket="vigil"
    )
    return ObjectStore.from_uri("s3://vigil/exports", endpoint_url=emulator.url)


def _run_in_thread(work: Callable[[], object]) -> tuple[threading.Thread, list[BaseException]]:
    """Start ``work`` in a thread; the list receives what it raised."""
    raised: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as error:
            raised.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, raised


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["local", "s3"])
def test_two_concurrent_exporters_over_the_same_hours_lose_nothing(
    tmp_path, aws_emulator, published, kind
):
    # Intent: the CronJob and a manual `vigil export` running at once both rebuild the same
    # hourly files and the same checkpoint. Each exporter here takes half of the streams, so a
    # file one of them replaced without the other's rows would show as missing rows. Both are
    # held after their first API call until the other has made one too (when they run side by
    # side, as before the lease): each has read the hour before either writes it.
    store = _either_store(kind, tmp_path, aws_emulator)
    halves = [
        LAYOUT.model_copy(update={"metric_namespaces": {}}),
        LAYOUT.model_copy(update={"log_groups": {}}),
    ]
    both_called = threading.Barrier(2)

    def exporter(layout: CloudWatchLayout) -> Callable[[], object]:
        clients = make_cloudwatch_clients(Settings(aws_endpoint_url=aws_emulator.url), SMALL_PAGES)
        first = {"call": True}

        def hold(**_: object) -> None:
            if first.pop("call", False):
                with contextlib.suppress(threading.BrokenBarrierError):
                    both_called.wait(timeout=3)  # alone (the other waits for the lease): go on

        for client in clients:
            client.meta.events.register("after-call", hold)
        return lambda: export(store, *clients, layout, start=START, end=END, config=SMALL_PAGES)

    runs = [_run_in_thread(exporter(layout)) for layout in halves]
    for thread, _ in runs:
        thread.join(timeout=120)
    assert [raised for _, raised in runs] == [[], []]

    rows = _rows(store)
    assert _content(rows) == published  # every row of both
    assert len(rows) == len(published)  # none twice
    checkpoint = read_checkpoint(store)
    assert len(checkpoint.high_water_marks) == len(LAYOUT.log_groups) + len(
        LAYOUT.metric_namespaces
    )
    assert set(checkpoint.high_water_marks.values()) == {END}
    assert not store.exists(EXPORT_LEASE_PATH)  # given back


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["local", "s3"])
def test_stalled_exporter_loses_its_lease_and_writes_nothing_more(
    tmp_path, aws_emulator, published, kind
):
    # Intent: an exporter that stalls past its lease ttl (a long GC pause, a frozen pod) is
    # taken over; when it wakes up it must not replace the hour files behind the new holder.
    store = _either_store(kind, tmp_path, aws_emulator)
    stalled_config = SMALL_PAGES.model_copy(update={"lease_ttl": timedelta(seconds=1)})
    stalled_clients = make_cloudwatch_clients(
        Settings(aws_endpoint_url=aws_emulator.url), SMALL_PAGES
    )
    running, taken_over = threading.Event(), threading.Event()

    def stall(**_: object) -> None:
        if not running.is_set():
            running.set()
            taken_over.wait(timeout=60)

    for client in stalled_clients:
        client.meta.events.register("after-call", stall)
    thread, raised = _run_in_thread(
        lambda: export(store, *stalled_clients, LAYOUT, start=START, end=END, config=stalled_config)
    )
    assert running.wait(timeout=30)
    waiting = SMALL_PAGES.model_copy(update={"lease_wait": timedelta(seconds=30)})
    summary = export(
        store,
        *make_cloudwatch_clients(Settings(aws_endpoint_url=aws_emulator.url), SMALL_PAGES),
        LAYOUT,
        start=START,
        end=END,
        config=waiting,
    )
    taken_over.set()
    thread.join(timeout=60)

    assert len(raised) == 1
    assert isinstance(raised[0], LeaseLostError)
    assert "taken over" in str(raised[0])
    assert summary.log_rows + summary.metric_rows == len(published)
    rows = _rows(store)
    assert _content(rows) == published
    assert len(rows) == len(published)


def test_exporter_that_cannot_get_the_lease_stops_with_a_clear_message(tmp_path):
    store = _store(tmp_path, "s")
    other = Lease(store, EXPORT_LEASE_PATH, timedelta(minutes=10), holder="cronjob-pod pid 7")
    other.acquire()
    config = SMALL_PAGES.model_copy(update={"lease_wait": timedelta(0)})
    with pytest.raises(LeaseBusyError) as raised:
        export(store, *_offline_clients(), LAYOUT, start=START, end=END, config=config)
    message = str(raised.value)
    assert "another exporter is running" in message
    assert "cronjob-pod pid 7" in message
    assert "exported nothing" in message
    assert isinstance(raised.value, OSError)  # the command line prints it without a traceback
    assert store.list_keys("raw-logs") == [EXPORT_LEASE_PATH]  # nothing written, not even marks
    other.release()


@pytest.mark.slow
def test_crashed_exporters_lease_is_taken_over_after_its_ttl(tmp_path, clients, published):
    store = _store(tmp_path, "store")
    # A lease whose holder died without giving it back (never released, never renewed).
    Lease(store, EXPORT_LEASE_PATH, timedelta(seconds=1), holder="crashed pid 1").acquire()
    config = SMALL_PAGES.model_copy(update={"lease_wait": timedelta(seconds=30)})
    export(store, *clients, LAYOUT, start=START, end=END, config=config)
    assert _content(_rows(store)) == published
    assert not store.exists(EXPORT_LEASE_PATH)
