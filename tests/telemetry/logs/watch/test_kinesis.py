"""``kinesis://STREAM`` against the AWS emulator (moto server over HTTP on loopback): events
reach the stream through a real CloudWatch Logs subscription filter as gzipped envelopes,
and watchers resume from their checkpoints and share the shards through leases."""

import gzip
import json
import time
from pathlib import Path
from typing import Any

import boto3
import pytest

from contracts.log_watch import SubscriptionEnvelope
from contracts.store import ObjectStore
from telemetry.logs.watch.kinesis import KinesisSource, decode_record, subscribe
from telemetry.logs.watch.settings import LogWatchSettings
from telemetry.logs.watch.sources import SourceLine
from telemetry.logs.watch.watcher import Watcher
from tests.telemetry.logs.watch.conftest import BURST_TEMPLATE, error_burst, normal_traffic
from vigil.processes import ServerProcess

pytestmark = pytest.mark.slow

STREAM = "fleet-logs"
GROUP = "/vigil/app"
ROLE = "arn:aws:iam::123456789012:role/cwl-to-kinesis"
SETTINGS = LogWatchSettings(kinesis_initial_position="TRIM_HORIZON", kinesis_shard_refresh_s=0.01)


@pytest.fixture
def aws(aws_emulator: ServerProcess) -> dict[str, Any]:
    """Clients on the emulator, a log group with two streams, subscribed to a 2-shard stream."""
    session = boto3.session.Session()
    clients = {
        name: session.client(name, endpoint_url=aws_emulator.url, region_name="us-east-1")
        for name in ("logs", "kinesis")
    }
    clients["logs"].create_log_group(logGroupName=GROUP)
    for stream in ("i-0001", "i-0002"):
        clients["logs"].create_log_stream(logGroupName=GROUP, logStreamName=stream)
    subscribe(
        clients["logs"],
        clients["kinesis"],
        log_groups=[GROUP],
        stream=STREAM,
        role_arn=ROLE,
        create_shards=2,
    )
    return clients


def put_events(aws: dict[str, Any], stream: str, text: str) -> None:
    now = int(time.time() * 1000)
    events = [{"timestamp": now + i, "message": line} for i, line in enumerate(text.splitlines())]
    for start in range(0, len(events), 10):  # several Kinesis records per call
        aws["logs"].put_log_events(
            logGroupName=GROUP, logStreamName=stream, logEvents=events[start : start + 10]
        )


def source(aws: dict[str, Any], store: ObjectStore, **kwargs: Any) -> KinesisSource:
    return KinesisSource(STREAM, aws["kinesis"], store, "watch", SETTINGS, **kwargs)


def read_all(*sources: KinesisSource, polls: int = 3) -> list[SourceLine]:
    """Poll until the sources give nothing ``polls`` times in a row."""
    lines: list[SourceLine] = []
    quiet = 0
    while quiet < polls:
        batch = [line for s in sources for line in s.poll(0)]
        lines += batch
        quiet = 0 if batch else quiet + 1
    return lines


def test_the_subscription_delivers_gzipped_envelopes(aws: dict[str, Any]) -> None:
    filters = aws["logs"].describe_subscription_filters(logGroupName=GROUP)["subscriptionFilters"]
    assert [(f["filterName"], f["destinationArn"].split("/")[-1]) for f in filters] == [
        ("vigil-logs-watch", STREAM)
    ]
    put_events(aws, "i-0001", "hello\nworld")
    shards = aws["kinesis"].list_shards(StreamName=STREAM)["Shards"]
    data = []
    for shard in shards:
        iterator = aws["kinesis"].get_shard_iterator(
            StreamName=STREAM, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        data += [r["Data"] for r in aws["kinesis"].get_records(ShardIterator=iterator)["Records"]]
    (record,) = data
    assert record[:2] == b"\x1f\x8b"  # gzip, as AWS delivers it
    envelope = decode_record(record)
    assert isinstance(envelope, SubscriptionEnvelope)
    assert (envelope.messageType, envelope.logGroup, envelope.logStream) == (
        "DATA_MESSAGE",
        GROUP,
        "i-0001",
    )
    assert [e.message for e in envelope.logEvents] == ["hello", "world"]


def test_events_become_lines_and_control_or_broken_records_are_skipped(
    aws: dict[str, Any], tmp_path: Path
) -> None:
    control = {
        "messageType": "CONTROL_MESSAGE",
        "owner": "CloudwatchLogs",
        "logGroup": "",
        "logStream": "",
        "subscriptionFilters": [],
        "logEvents": [
            {
                "id": "",
                "timestamp": 1,
                "message": "CWL CONTROL MESSAGE: Checking health of destination Kinesis stream.",
            }
        ],
    }
    kinesis = aws["kinesis"]
    kinesis.put_record(
        StreamName=STREAM, PartitionKey="a", Data=gzip.compress(json.dumps(control).encode())
    )
    kinesis.put_record(StreamName=STREAM, PartitionKey="b", Data=b"not gzip at all")
    kinesis.put_record(StreamName=STREAM, PartitionKey="c", Data=gzip.compress(b"{broken"))
    put_events(aws, "i-0002", "line one\nline two\n  with a continuation")
    reader = source(aws, ObjectStore.from_uri(str(tmp_path / "checkpoints")))
    lines = read_all(reader)
    assert [line.text for line in lines] == ["line one", "line two", "  with a continuation"]
    assert {line.origin for line in lines} == {f"{GROUP}/i-0002"}
    assert sorted(reader.shards) == ["shardId-000000000000", "shardId-000000000001"]
    reader.close()


def test_a_restarted_watcher_resumes_after_its_checkpoint(
    aws: dict[str, Any], tmp_path: Path
) -> None:
    store = ObjectStore.from_uri(str(tmp_path / "checkpoints"))
    put_events(aws, "i-0001", "\n".join(f"batch one {i}" for i in range(30)))
    first = source(aws, store)
    lines = read_all(first)
    assert len(lines) == 30
    first.commit(first.checkpoint())
    # Read but never committed (the window holding them was not emitted): read again.
    put_events(aws, "i-0001", "\n".join(f"batch two {i}" for i in range(5)))
    assert len(read_all(first)) == 5
    first.close()
    checkpoints = store.list_keys("watch", suffix="checkpoint.json")
    assert checkpoints  # one per shard that held a record
    again = source(aws, store)
    assert sorted(line.text for line in read_all(again)) == sorted(
        f"batch two {i}" for i in range(5)
    )
    again.commit(again.checkpoint())
    again.close()
    third = source(aws, store)
    assert read_all(third) == []
    third.close()


def test_watchers_share_the_shards_through_leases(aws: dict[str, Any], tmp_path: Path) -> None:
    store = ObjectStore.from_uri(str(tmp_path / "checkpoints"))
    one_shard = SETTINGS.model_copy(update={"kinesis_max_shards": 1, "kinesis_lease_ttl_s": 2.0})
    a = KinesisSource(STREAM, aws["kinesis"], store, "watch", one_shard, holder="watcher-a")
    b = KinesisSource(STREAM, aws["kinesis"], store, "watch", one_shard, holder="watcher-b")
    put_events(aws, "i-0001", "\n".join(f"event {i}" for i in range(60)))
    lines = read_all(a, b)
    assert len(a.shards) == 1
    assert len(b.shards) == 1
    assert set(a.shards).isdisjoint(b.shards)
    # Every event read once, by one of the two.
    assert sorted(line.text for line in lines) == sorted(f"event {i}" for i in range(60))
    a.commit(a.checkpoint())
    b.commit(b.checkpoint())
    # b dies without giving its lease back; once it expires, a third watcher takes the shard
    # over from b's checkpoint.
    put_events(aws, "i-0002", "\n".join(f"late {i}" for i in range(40)))
    c = KinesisSource(STREAM, aws["kinesis"], store, "watch", one_shard, holder="watcher-c")
    assert c.poll(0) == []  # both shards are held
    late: list[SourceLine] = []
    deadline = time.monotonic() + 30
    while not c.shards and time.monotonic() < deadline:
        time.sleep(0.2)
        late += a.poll(0)  # a lives on: it renews its lease
        late += c.poll(0)
    assert c.shards == b.shards
    late += read_all(a, c)
    assert sorted(line.text for line in late) == sorted(f"late {i}" for i in range(40))
    a.close()
    c.close()


def test_a_watcher_reports_a_burst_from_the_stream(aws: dict[str, Any], tmp_path: Path) -> None:
    store = ObjectStore.from_uri(str(tmp_path / "checkpoints"))
    watcher = Watcher(source(aws, store), SETTINGS)

    def window(text: str) -> list[tuple[str, str]]:
        put_events(aws, "i-0001", text)
        watcher.feed(read_all(watcher.source))  # type: ignore[arg-type]
        closed = watcher.close_window()
        watcher.source.commit(watcher.source.checkpoint())
        return [(a.kind, a.template) for a in closed.anomalies]

    for seed in range(4):
        assert window(normal_traffic(seed)) == []
    found = window(normal_traffic(4) + error_burst(5))
    assert ("new_template", BURST_TEMPLATE) in found
    assert ("error_burst", BURST_TEMPLATE) in found
    watcher.source.close()


def test_the_commands_subscribe_and_watch_the_stream(
    aws_emulator: ServerProcess, tmp_path: Path
) -> None:
    import os
    import subprocess
    import sys

    from contracts.log_watch import LogWatchWindow

    vigil = str(Path(sys.executable).parent / "vigil")
    env = {
        **os.environ,
        "VIGIL_AWS_ENDPOINT_URL": aws_emulator.url,
        "VIGIL_LOGS_WATCH_KINESIS_INITIAL_POSITION": "TRIM_HORIZON",
        "VIGIL_LOGS_WATCH_KINESIS_CHECKPOINT_URI": str(tmp_path / "checkpoints"),
    }
    logs = boto3.session.Session().client(
        "logs", endpoint_url=aws_emulator.url, region_name="us-east-1"
    )
    logs.create_log_group(logGroupName=GROUP)
    logs.create_log_stream(logGroupName=GROUP, logStreamName="i-0001")
    subscribed = subprocess.run(
        [vigil, "logs", "subscribe", "--stream", STREAM, "--log-group", GROUP,
         "--role-arn", ROLE, "--create-shards", "1"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert subscribed.returncode == 0, subscribed.stderr
    put_events({"logs": logs}, "i-0001", normal_traffic(0))

    def watch() -> list[LogWatchWindow]:
        result = subprocess.run(
            [vigil, "logs", "watch", f"kinesis://{STREAM}", "--window", "1", "--format",
             "jsonl", "--max-windows", "2"],
            capture_output=True, text=True, env=env, timeout=120, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        return [LogWatchWindow.model_validate_json(line) for line in result.stdout.splitlines()]

    first = watch()
    assert sum(w.records for w in first) == 40
    assert first[0].source == f"kinesis://{STREAM}"
    assert first[0].source_kind == "kinesis"
    # Restarted: resumes after its checkpoint, so nothing is read twice.
    assert sum(w.records for w in watch()) == 0
