"""``kinesis://STREAM``: CloudWatch Logs subscription records from a Kinesis stream.

A CloudWatch Logs subscription filter (``subscribe``; the chart runs it as a Job) delivers
each batch of log events as one Kinesis record: a gzipped JSON ``SubscriptionEnvelope``.
``DATA_MESSAGE`` records carry the events; ``CONTROL_MESSAGE`` records are CloudWatch's own
checks that the destination is reachable, and are counted and skipped; a record that is not
a gzipped envelope is counted and skipped too (it cannot block the shard).

Sharing a stream: each shard is read by one watcher at a time, the holder of the shard's
lease (``contracts.lease.Lease`` on the checkpoint store: created only if absent, taken over
only once expired, renewed while held). A watcher takes the free shards (at most
``kinesis_max_shards``) every ``kinesis_shard_refresh_s``; a watcher that dies leaves its
leases to expire, and another takes its shards over from their checkpoints.

Checkpoints: after a window has been emitted, the sequence number of the last record of each
shard that went into it is written beside the shard's lease (``commit``). A restarted watcher
(or the one that takes a shard over) reads from the record after it: nothing emitted is read
twice by one holder, and what was read into a window that was never emitted is read again
(at-least-once). A shard read to its end (after a reshard) is checkpointed as ended, and its
children are read once their parents have ended, as Kinesis orders them.
"""

import gzip
import logging
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict, ValidationError

from contracts.lease import Lease, LeaseBusyError, LeaseLostError
from contracts.log_watch import SubscriptionEnvelope, WatchSourceKind
from contracts.settings import Settings
from contracts.store import ObjectStore, encode_key_segment
from telemetry.logs.reading import ReadStats
from telemetry.logs.watch.metrics import WatchMetrics
from telemetry.logs.watch.settings import LogWatchSettings
from telemetry.logs.watch.sources import SourceLine

logger = logging.getLogger(__name__)

SCHEME = "kinesis://"
CHECKPOINT_PREFIX = "logs-watch/kinesis"
DEFAULT_FILTER_NAME = "vigil-logs-watch"
GZIP_MAGIC = b"\x1f\x8b"


class ShardCheckpoint(BaseModel):
    """What a shard's checkpoint object holds."""

    model_config = ConfigDict(extra="forbid")

    sequence_number: str | None
    shard_end: bool = False
    holder: str
    updated_at: datetime


def stream_name(source: str) -> str | None:
    """The stream of a ``kinesis://STREAM`` source (None for any other source)."""
    if not source.startswith(SCHEME):
        return None
    name = source.removeprefix(SCHEME).strip("/")
    if not name or "/" in name:
        raise ValueError(f"{source!r}: expected kinesis://STREAM (a stream name)")
    return name


def decode_record(data: bytes) -> SubscriptionEnvelope:
    """The subscription envelope of one Kinesis record's data.

    Args:
        data: The record's bytes (boto3 has already undone the API's base64).

    Returns:
        The envelope.

    Raises:
        ValueError: When the data is not a gzipped subscription envelope.
    """
    if not data.startswith(GZIP_MAGIC):
        raise ValueError("not gzip data (a CloudWatch Logs subscription record is gzipped)")
    try:
        document = gzip.decompress(data)
        return SubscriptionEnvelope.model_validate_json(document)
    except (OSError, EOFError, zlib.error, ValidationError) as error:
        raise ValueError(f"not a CloudWatch Logs subscription envelope: {error}") from error


def event_lines(envelope: SubscriptionEnvelope, first_number: int) -> list[SourceLine]:
    """The lines of a data message's events; an event's lines share its ordinal."""
    origin = f"{envelope.logGroup}/{envelope.logStream}"
    lines = []
    for offset, event in enumerate(envelope.logEvents):
        for text in event.message.rstrip("\r\n").split("\n"):
            lines.append(SourceLine(first_number + offset, text.rstrip("\r"), origin))
    return lines


def open_checkpoint_store(settings: Settings, watch: LogWatchSettings) -> tuple[ObjectStore, str]:
    """The store of shard leases and checkpoints, and the key prefix inside it."""
    if watch.kinesis_checkpoint_uri:
        store = ObjectStore.from_uri(
            watch.kinesis_checkpoint_uri,
            endpoint_url=settings.aws_endpoint_url,
            region=settings.aws_region,
        )
        return store, "kinesis"
    store = ObjectStore.from_uri(
        settings.store_uri, endpoint_url=settings.aws_endpoint_url, region=settings.aws_region
    )
    return store, CHECKPOINT_PREFIX


def kinesis_client(settings: Settings) -> Any:
    """A boto3 Kinesis client where the settings say AWS is (an emulator in tests)."""
    import boto3

    return boto3.session.Session().client(
        "kinesis", endpoint_url=settings.aws_endpoint_url, region_name=settings.aws_region
    )


@dataclass
class _Shard:
    """A shard this watcher holds."""

    shard_id: str
    lease: Lease
    iterator: str | None = None
    last_sequence: str | None = None  # of the last record read
    committed: str | None = None
    ended: bool = False  # read to its end (closed by a reshard)


class KinesisSource:
    """CloudWatch Logs events of a Kinesis stream (see the module docstring).

    Args:
        stream: The stream's name.
        client: A boto3 Kinesis client.
        store: Where shard leases and checkpoints live.
        prefix: Their key prefix in the store.
        settings: Lease, polling and start-position settings.
        holder: This watcher's name in the leases (default: host, pid and thread).
        metrics: Counters of records read, by outcome, and of shards held.
        clock: Monotonic seconds (a parameter for tests).
        sleep: How to wait (a parameter for tests).
    """

    kind: WatchSourceKind = "kinesis"

    def __init__(
        self,
        stream: str,
        client: Any,
        store: ObjectStore,
        prefix: str,
        settings: LogWatchSettings,
        *,
        holder: str | None = None,
        metrics: WatchMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.stream = stream
        self.name = f"{SCHEME}{stream}"
        self.stats = ReadStats()
        self.client = client
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self._root = f"{prefix}/{encode_key_segment(stream)}"
        self._holder = holder
        self._clock, self._sleep = clock, sleep
        self._shards: dict[str, _Shard] = {}
        self._next_refresh = 0.0
        self._events = 0
        self._lag = 0.0

    @property
    def exhausted(self) -> bool:
        return False

    @property
    def shards(self) -> list[str]:
        """Ids of the shards this watcher holds now."""
        return sorted(self._shards)

    def poll(self, timeout: float) -> list[SourceLine]:
        if self._clock() >= self._next_refresh:
            self._take_free_shards()
            self._next_refresh = self._clock() + self.settings.kinesis_shard_refresh_s
        self._renew()
        lines: list[SourceLine] = []
        lags = []
        for shard in list(self._shards.values()):
            read, lag = self._read(shard)
            lines += read
            if lag is not None:
                lags.append(lag)
        if lags:
            self._lag = max(lags)
        if not lines and timeout > 0:
            self._sleep(timeout)
        return lines

    def lag_seconds(self) -> float:
        """The largest MillisBehindLatest of the last reads, in seconds."""
        return self._lag

    def checkpoint(self) -> dict[str, tuple[str | None, bool]]:
        """Where each held shard has been read to (its last sequence number, and whether
        it ended): what ``commit`` writes once the window holding those records is out."""
        return {s.shard_id: (s.last_sequence, s.ended) for s in self._shards.values()}

    def commit(self, position: object = None) -> None:
        """Write the checkpoints of ``position`` (a ``checkpoint()``) for the shards still
        held; a shard whose lease was lost is left to its new holder, which reads again from
        the last checkpoint."""
        if not isinstance(position, dict):
            return
        for shard_id, (sequence, ended) in position.items():
            shard = self._shards.get(shard_id)
            if shard is None or (sequence == shard.committed and not ended):
                continue
            try:
                shard.lease.renew()
            except LeaseLostError as error:
                logger.warning("shard %s: %s", shard_id, error)
                self._drop(shard_id)
                continue
            self._write_checkpoint(shard_id, sequence, ended)
            shard.committed = sequence
            if ended:
                shard.lease.release()
                self._drop(shard_id)

    def close(self) -> None:
        """Give every lease back (the checkpoints stay)."""
        for shard in list(self._shards.values()):
            shard.lease.release()
        self._shards.clear()
        self._set_owned()

    # --- shards and leases ----------------------------------------------------------------

    def _take_free_shards(self) -> None:
        try:
            shards = self._list_shards()
        except (BotoCoreError, ClientError) as error:
            logger.warning("could not list the shards of %s: %s", self.stream, error)
            return
        ids = {shard["ShardId"] for shard in shards}
        ended: dict[str, bool] = {}

        def has_ended(shard_id: str) -> bool:
            if shard_id not in ended:
                checkpoint = self._read_checkpoint(shard_id)
                ended[shard_id] = checkpoint is not None and checkpoint.shard_end
            return ended[shard_id]

        limit = self.settings.kinesis_max_shards
        for shard in shards:
            shard_id = shard["ShardId"]
            if shard_id in self._shards:
                continue
            if limit and len(self._shards) >= limit:
                break
            parents = [
                parent
                for parent in (shard.get("ParentShardId"), shard.get("AdjacentParentShardId"))
                if parent and parent in ids
            ]
            if has_ended(shard_id) or not all(has_ended(parent) for parent in parents):
                continue
            lease = Lease(
                self.store,
                f"{self._root}/{encode_key_segment(shard_id)}/lease.json",
                timedelta(seconds=self.settings.kinesis_lease_ttl_s),
                **({"holder": self._holder} if self._holder else {}),
            )
            try:
                lease.acquire()
            except LeaseBusyError:
                continue
            # Read after taking the lease: the previous holder may have committed meanwhile.
            checkpoint = self._read_checkpoint(shard_id)
            if checkpoint is not None and checkpoint.shard_end:
                lease.release()
                continue
            held = _Shard(shard_id, lease)
            held.committed = held.last_sequence = checkpoint.sequence_number if checkpoint else None
            try:
                held.iterator = self._iterator(shard_id, held.last_sequence, bool(parents))
            except (BotoCoreError, ClientError) as error:
                logger.warning("shard %s: no iterator (%s)", shard_id, error)
                lease.release()
                continue
            self._shards[shard_id] = held
            logger.info("reading shard %s of %s from %s", shard_id, self.stream, held.committed)
        self._set_owned()

    def _list_shards(self) -> list[dict[str, Any]]:
        shards: list[dict[str, Any]] = []
        answer = self.client.list_shards(StreamName=self.stream)
        shards += answer["Shards"]
        while answer.get("NextToken"):
            answer = self.client.list_shards(NextToken=answer["NextToken"])
            shards += answer["Shards"]
        return shards

    def _iterator(self, shard_id: str, after: str | None, child: bool) -> str:
        if after is not None:
            answer = self.client.get_shard_iterator(
                StreamName=self.stream,
                ShardId=shard_id,
                ShardIteratorType="AFTER_SEQUENCE_NUMBER",
                StartingSequenceNumber=after,
            )
        else:
            # A child of ended shards continues them from its start, whatever LATEST says.
            position = "TRIM_HORIZON" if child else self.settings.kinesis_initial_position
            answer = self.client.get_shard_iterator(
                StreamName=self.stream, ShardId=shard_id, ShardIteratorType=position
            )
        return str(answer["ShardIterator"])

    def _renew(self) -> None:
        for shard in list(self._shards.values()):
            try:
                shard.lease.renew_if_due()
            except LeaseLostError as error:
                logger.warning("shard %s: %s", shard.shard_id, error)
                self._drop(shard.shard_id)

    def _drop(self, shard_id: str) -> None:
        self._shards.pop(shard_id, None)
        self._set_owned()

    def _set_owned(self) -> None:
        if self.metrics is not None:
            self.metrics.kinesis_shards.set(len(self._shards))

    # --- records --------------------------------------------------------------------------

    def _read(self, shard: _Shard) -> tuple[list[SourceLine], float | None]:
        if shard.ended or shard.iterator is None:
            return [], None
        try:
            answer = self.client.get_records(
                ShardIterator=shard.iterator, Limit=self.settings.kinesis_records_per_call
            )
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code == "ExpiredIteratorException":
                shard.iterator = self._iterator(shard.shard_id, shard.last_sequence, False)
            elif code != "ProvisionedThroughputExceededException":
                logger.warning("shard %s: %s", shard.shard_id, error)
            return [], None
        except BotoCoreError as error:
            logger.warning("shard %s: %s", shard.shard_id, error)
            return [], None
        lines: list[SourceLine] = []
        for record in answer.get("Records", []):
            shard.last_sequence = str(record["SequenceNumber"])
            lines += self._record_lines(bytes(record["Data"]))
        shard.iterator = answer.get("NextShardIterator")
        if shard.iterator is None:
            shard.ended = True
        behind = answer.get("MillisBehindLatest")
        return lines, None if behind is None else float(behind) / 1000.0

    def _record_lines(self, data: bytes) -> list[SourceLine]:
        try:
            envelope = decode_record(data)
        except ValueError as error:
            logger.warning("skipped a Kinesis record of %s: %s", self.stream, error)
            self._count("undecodable")
            return []
        if envelope.messageType == "CONTROL_MESSAGE":
            self._count("control")
            return []
        self._count("data")
        lines = event_lines(envelope, self._events + 1)
        self._events += len(envelope.logEvents)
        self.stats.lines += len(envelope.logEvents)
        return lines

    def _count(self, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.kinesis_records.labels(outcome=outcome).inc()

    # --- checkpoints ----------------------------------------------------------------------

    def _checkpoint_key(self, shard_id: str) -> str:
        return f"{self._root}/{encode_key_segment(shard_id)}/checkpoint.json"

    def _read_checkpoint(self, shard_id: str) -> ShardCheckpoint | None:
        key = self._checkpoint_key(shard_id)
        if not self.store.exists(key):
            return None
        try:
            return ShardCheckpoint.model_validate_json(self.store.read_bytes(key))
        except ValidationError as error:
            raise ValueError(
                f"{self.store.uri}/{key} is not a shard checkpoint: {error}"
            ) from error

    def _write_checkpoint(self, shard_id: str, sequence: str | None, ended: bool) -> None:
        checkpoint = ShardCheckpoint(
            sequence_number=sequence,
            shard_end=ended,
            holder=self._shards[shard_id].lease.holder,
            updated_at=datetime.now(UTC),
        )
        self.store.write_bytes(
            self._checkpoint_key(shard_id), checkpoint.model_dump_json().encode()
        )


def subscribe(
    logs: Any,
    kinesis: Any,
    *,
    log_groups: list[str],
    stream: str,
    role_arn: str,
    filter_name: str = DEFAULT_FILTER_NAME,
    filter_pattern: str = "",
    create_shards: int | None = None,
) -> str:
    """Deliver log groups' events to a Kinesis stream through a subscription filter.

    Idempotent: the stream is created only when ``create_shards`` is given and it does not
    exist, and a filter of the same name on a log group is replaced.

    Args:
        logs: A boto3 CloudWatch Logs client.
        kinesis: A boto3 Kinesis client.
        log_groups: The log groups to subscribe.
        stream: The stream's name.
        role_arn: The role CloudWatch Logs assumes to put records into the stream.
        filter_name: The subscription filter's name.
        filter_pattern: CloudWatch Logs filter pattern; empty: every event.
        create_shards: Create the stream with this many shards when it does not exist.

    Returns:
        The stream's ARN.
    """
    if create_shards is not None:
        try:
            kinesis.create_stream(StreamName=stream, ShardCount=create_shards)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ResourceInUseException":
                raise
        kinesis.get_waiter("stream_exists").wait(
            StreamName=stream, WaiterConfig={"Delay": 1, "MaxAttempts": 120}
        )
    arn = str(
        kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamARN"]
    )
    for group in log_groups:
        logs.put_subscription_filter(
            logGroupName=group,
            filterName=filter_name,
            filterPattern=filter_pattern,
            destinationArn=arn,
            roleArn=role_arn,
        )
    return arn
