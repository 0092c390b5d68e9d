"""The object store: same behaviour on a local directory and on S3 over the wire.

Both store kinds run every behavioural test: the local directory, and S3 on a moto server on
loopback (``aws_emulator``). Faults are real: a proxy in front of moto refusing one request of
a write, a kernel file-size limit cutting a local write short.
"""

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from botocore.client import BaseClient

from contracts.store import (
    TMP_MARKER,
    Lease,
    LeaseBusyError,
    LeaseLostError,
    ObjectStore,
    decode_key_segment,
    encode_key_segment,
    validate_key,
)
from tests.contracts.interrupted_writes import REPOSITORY, run_child
from tests.contracts.s3_proxy import S3Proxy
from vigil.processes import ServerProcess

BUCKET = "vigil"
TRAVERSAL_KEYS = [
    "../x",
    "../../models/champion",
    "a/../../x",
    "a/..",
    "a/./b",
    "/etc/passwd",
    "a//b",
    "a/",
    "",
    "a\\..\\b",
    "a\x00b",
    "a\nb",
    "a\x7fb",
    f"a{TMP_MARKER}1",
    "x" * 256,
]


def _table(n: int) -> pa.Table:
    return pa.table({"x": list(range(n))})


def _parquet_bytes(n: int) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(_table(n), sink)
    return bytes(sink.getvalue())


def _s3(emulator: ServerProcess) -> BaseClient:
    return boto3.client("s3", endpoint_url=emulator.url, region_name="us-east-1")


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    """A local store, or an S3 store on a fresh moto server (prefix ``store`` of a bucket)."""
    if request.param == "local":
        return ObjectStore.from_uri(str(tmp_path / "store"))
    emulator: ServerProcess = request.getfixturevalue("aws_emulator")
    _s3(emulator).create_bucket(Bucket=BUCKET)
    return ObjectStore.from_uri(f"s3://{BUCKET}/store", endpoint_url=emulator.url)


def _everything(store: ObjectStore) -> list[str]:
    """Every file or object there is, temporary ones included, relative to the store's root
    for what is inside it and marked ``OUTSIDE:`` for anything beside it: what a write left."""
    if store.is_local:
        root = Path(store.root)
        found = [p for p in root.parent.rglob("*") if p.is_file()]
        return sorted(
            str(p.relative_to(root)) if p.is_relative_to(root) else f"OUTSIDE:{p}" for p in found
        )
    s3 = boto3.client("s3", endpoint_url=store.endpoint_url, region_name="us-east-1")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    keys = [k for k in keys if not k.endswith("/")]  # pyarrow's empty "dir/" markers
    prefix = store.root.split("/", 1)[1] + "/"
    return sorted(k.removeprefix(prefix) if k.startswith(prefix) else f"OUTSIDE:{k}" for k in keys)


# --- keys -------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", TRAVERSAL_KEYS)
@pytest.mark.parametrize("uri", ["local", "s3://vigil/store"])
def test_every_operation_refuses_an_unsafe_key(tmp_path: Path, uri: str, key: str) -> None:
    # Intent: one validator guards every entry point, before any request or file access (the
    # S3 endpoint here does not exist: reaching it would raise something else than ValueError).
    root = str(tmp_path / "store") if uri == "local" else uri
    store = ObjectStore.from_uri(root, endpoint_url="http://127.0.0.1:9")
    operations: list[Callable[[], object]] = [
        lambda: store.write_bytes(key, b"x"),
        lambda: store.read_bytes(key),
        lambda: store.exists(key),
        lambda: store.delete(key),
        lambda: store.write_table(key, _table(1)),
        lambda: store.read_table(key),
        lambda: store.move("ok.json", key),
        lambda: store.move(key, "ok.json"),
        lambda: store.create_exclusive(key, b"x"),
        lambda: store.path(key),
    ]
    if key not in ("", "a/"):  # listing the whole store ("") or under "a/" is fine
        operations.append(lambda: store.list_keys(key))
    for operation in operations:
        with pytest.raises(ValueError, match=r"invalid store (key|prefix)") as raised:
            operation()
        assert repr(key) in str(raised.value)  # the message names the key
    if uri == "local":
        assert _everything(store) == []


@pytest.mark.parametrize("key", ["a", "a/b.parquet", "raw-logs/2024/01/01/00/data.parquet"])
def test_ordinary_keys_are_valid(key: str) -> None:
    assert validate_key(key) == key


@pytest.mark.parametrize(
    "name",
    [
        "i-0abc123",
        "../../models/champion",
        "a/../../x",
        "..",
        ".",
        "a\\b",
        "100%",
        "%2E%2E",
        "x.tmp-1",
        "ünïcode ☃",
        "ctl\x00\x1f\x7f",
        "web-1.example.com",
    ],
)
def test_an_outside_name_becomes_one_safe_segment_reversibly(name: str) -> None:
    segment = encode_key_segment(name)
    assert "/" not in segment
    assert validate_key(segment) == segment
    assert validate_key(f"prefix/{segment}.json")
    assert decode_key_segment(segment) == name


def test_ordinary_instance_ids_keep_their_name() -> None:
    assert encode_key_segment("i-0abc123") == "i-0abc123"
    with pytest.raises(ValueError, match="empty name"):
        encode_key_segment("")


@pytest.mark.slow
def test_traversal_through_the_store_writes_nothing_anywhere(store: ObjectStore) -> None:
    store.write_bytes("models/champion", b"the champion")
    for key in TRAVERSAL_KEYS:
        with pytest.raises(ValueError, match="invalid store key"):
            store.write_bytes(key, b"overwritten")
    assert _everything(store) == ["models/champion"]
    assert store.read_bytes("models/champion") == b"the champion"


# --- atomic writes ----------------------------------------------------------------------------


@pytest.mark.slow
def test_round_trip_and_listing(store: ObjectStore) -> None:
    store.write_table("a/b/data.parquet", _table(5))
    store.write_bytes("a/c.json", b"{}")
    assert store.read_table("a/b/data.parquet").column("x").to_pylist() == [0, 1, 2, 3, 4]
    assert store.read_bytes("a/c.json") == b"{}"
    assert store.list_keys("a", ".parquet") == ["a/b/data.parquet"]
    assert store.list_keys("a/") == ["a/b/data.parquet", "a/c.json"]
    assert _everything(store) == ["a/b/data.parquet", "a/c.json"]


@pytest.mark.slow
def test_crash_while_producing_the_payload_keeps_the_previous_file(store: ObjectStore) -> None:
    # Intent: a crash mid-write must never corrupt or remove what is already stored.
    store.write_table("data.parquet", _table(3))

    def crash_while_writing() -> None:
        with store.parquet_writer("data.parquet", _table(1).schema) as writer:
            writer.write_table(_table(100))
            raise RuntimeError("crash while writing")

    with pytest.raises(RuntimeError):
        crash_while_writing()
    assert store.read_table("data.parquet").num_rows == 3
    assert _everything(store) == ["data.parquet"]  # no temporary file left behind


@pytest.mark.slow
@pytest.mark.parametrize("refused", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("kind", ["bytes", "parquet"])
def test_s3_write_cut_at_any_request_leaves_old_or_new_and_no_temporary_object(
    aws_emulator: ServerProcess, refused: int, kind: str
) -> None:
    # Intent: whichever request of a write fails (a part of a multipart upload, a copy to the
    # final name, ...), the key holds the whole previous or the whole new content, and no
    # ".tmp-" object is left behind for ever: S3 has no rename, so a write must not need one.
    # (A temporary object uploaded in three requests then copied: the fourth was the copy.)
    _s3(aws_emulator).create_bucket(Bucket=BUCKET)
    ObjectStore.from_uri(f"s3://{BUCKET}/store", endpoint_url=aws_emulator.url).write_table(
        "data.parquet", _table(3)
    )
    writes = {"n": 0}

    def fault(method: str, path: str) -> bool:
        if method in ("PUT", "POST", "DELETE"):
            writes["n"] += 1
            return writes["n"] == refused
        return False

    proxy = S3Proxy(aws_emulator.url, fault)
    with proxy.serve() as url:
        store = ObjectStore.from_uri(f"s3://{BUCKET}/store", endpoint_url=url)
        try:
            if kind == "bytes":
                store.write_bytes("data.parquet", _parquet_bytes(50))
            else:
                store.write_table("data.parquet", _table(50))
        except Exception:  # the refused request surfaces as the client's own error
            assert proxy.refused
        assert store.read_table("data.parquet").num_rows in (3, 50)
    direct = ObjectStore.from_uri(f"s3://{BUCKET}/store", endpoint_url=aws_emulator.url)
    assert _everything(direct) == ["data.parquet"]


def test_local_write_cut_short_by_the_disk_keeps_the_previous_file(tmp_path: Path) -> None:
    store = ObjectStore.from_uri(str(tmp_path / "store"))
    store.write_table("data.parquet", _table(3))
    store.write_bytes("data.json", b'{"old": true}')
    child = run_child(
        f"""
import pyarrow as pa
from contracts.store import ObjectStore
store = ObjectStore.from_uri({str(tmp_path / "store")!r})
limit_file_size(64)
failures = 0
for write in (
    lambda: store.write_table("data.parquet", pa.table({{"x": list(range(100_000))}})),
    lambda: store.write_bytes("data.json", b'{{"new": "' + b"x" * 10_000 + b'"}}'),
):
    try:
        write()
    except OSError as error:
        assert error.errno == 27, error  # EFBIG
        failures += 1
print(failures)
"""
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip() == "2"
    assert store.read_table("data.parquet").num_rows == 3
    assert store.read_bytes("data.json") == b'{"old": true}'
    assert _everything(store) == ["data.json", "data.parquet"]


# --- conditional writes and the lease ---------------------------------------------------------


def _race(count: int, attempt: Callable[[], object]) -> list[object]:
    """Run ``attempt`` in ``count`` threads released together; their results."""
    barrier = threading.Barrier(count)
    results: list[object] = [None] * count

    def run(index: int) -> None:
        barrier.wait()
        results[index] = attempt()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@pytest.mark.slow
def test_conditional_writes_let_exactly_one_racer_win(store: ObjectStore) -> None:
    created = _race(8, lambda: store.create_exclusive("lock", b"created"))
    assert sum(version is not None for version in created) == 1
    current = store.read_versioned("lock")
    assert current is not None
    assert current.data == b"created"

    swapped = _race(8, lambda: store.replace_if_version("lock", b"swapped", current.version))
    assert sum(version is not None for version in swapped) == 1
    latest = store.read_versioned("lock")
    assert latest is not None
    assert (latest.data, latest.version) == (b"swapped", next(v for v in swapped if v))

    assert not store.delete_if_version("lock", current.version)  # stale: left alone
    assert store.delete_if_version("lock", latest.version)
    assert store.read_versioned("lock") is None
    assert _everything(store) == []


@pytest.mark.slow
def test_lease_is_exclusive_taken_over_after_expiry_and_lost_by_a_stalled_holder(
    store: ObjectStore,
) -> None:
    first = Lease(store, "jobs/export.lease", timedelta(seconds=2), holder="first")
    first.acquire()
    with pytest.raises(LeaseBusyError, match="held by first"):
        Lease(store, "jobs/export.lease", timedelta(minutes=5), holder="second").acquire()

    # The first holder stalls past its ttl (as a crashed one would): the lease is taken over.
    second = Lease(store, "jobs/export.lease", timedelta(minutes=5), holder="second")
    second.acquire(wait=timedelta(seconds=10), poll_seconds=0.1)
    with pytest.raises(LeaseLostError, match="taken over"):
        first.renew()
    first.release()  # gives back nothing: the lease is the second holder's now
    with pytest.raises(LeaseBusyError, match="held by second"):
        Lease(store, "jobs/export.lease", timedelta(minutes=5), holder="third").acquire()

    second.renew()
    second.release()
    third = Lease(store, "jobs/export.lease", timedelta(minutes=5), holder="third")
    third.acquire()
    third.release()
    assert _everything(store) == []


@pytest.mark.slow
def test_lease_of_a_killed_holder_on_this_machine_is_taken_at_once(store: ObjectStore) -> None:
    # Intent: `kill -9` of a `vigil export`, then a rerun: the rerun must not wait out the
    # ttl (minutes) when the holder is known dead; a live holder keeps its lease.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"""
import time
from datetime import timedelta
from contracts.store import Lease, ObjectStore
store = ObjectStore.from_uri({store.uri!r}, endpoint_url={store.endpoint_url!r})
Lease(store, "jobs/export.lease", timedelta(minutes=10), holder="doomed").acquire()
print("held", flush=True)
time.sleep(120)
""",
        ],
        cwd=REPOSITORY,
        env={**os.environ, "PYTHONPATH": str(REPOSITORY)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LeaseBusyError, match="held by doomed"):
            Lease(store, "jobs/export.lease", timedelta(minutes=10)).acquire()
    finally:
        holder.kill()
        holder.wait()
    rerun = Lease(store, "jobs/export.lease", timedelta(minutes=10))
    rerun.acquire()  # no wait: the holder is dead
    rerun.release()


def test_lease_waits_for_its_holder_to_release(tmp_path: Path) -> None:
    store = ObjectStore.from_uri(str(tmp_path / "store"))
    holder = Lease(store, "export.lease", timedelta(minutes=5), holder="holder")
    holder.acquire()
    timer = threading.Timer(0.5, holder.release)
    timer.start()
    started = datetime.now(UTC)
    waiter = Lease(store, "export.lease", timedelta(minutes=5), holder="waiter")
    waiter.acquire(wait=timedelta(seconds=30), poll_seconds=0.05)
    timer.join()
    assert timedelta(seconds=0.4) < datetime.now(UTC) - started < timedelta(seconds=10)
    waiter.release()


def test_a_file_that_is_not_a_lease_is_refused_not_taken(tmp_path: Path) -> None:
    store = ObjectStore.from_uri(str(tmp_path / "store"))
    store.write_bytes("export.lease", b"garbage")
    with pytest.raises(ValueError, match="is not a lease"):
        Lease(store, "export.lease", timedelta(minutes=5)).acquire()
    assert store.read_bytes("export.lease") == b"garbage"
