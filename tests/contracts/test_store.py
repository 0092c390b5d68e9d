"""The object store: same behaviour on a local directory and on S3 over the wire.

Both store kinds run every behavioural test: the local directory, and S3 on a moto server on
loopback (``aws_emulator``). Faults are real: a proxy in front of moto refusing one request of
a write, a kernel file-size limit cutting a local write short.
"""

import threading
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from contracts.store import (
    TMP_MARKER,
    ObjectStore,
    decode_key_segment,
    encode_key_segment,
    validate_key,
)
from tests.contracts.interrupted_writes import run_child
from tests.contracts.s3_proxy import S3Proxy
from tests.contracts.stores import BUCKET, all_files, s3_client
from vigil.processes import ServerProcess

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
        assert all_files(store) == []


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
    assert all_files(store) == ["models/champion"]
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
    assert all_files(store) == ["a/b/data.parquet", "a/c.json"]


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
    assert all_files(store) == ["data.parquet"]  # no temporary file left behind


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
    s3_client(aws_emulator).create_bucket(Bucket=BUCKET)
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
    assert all_files(direct) == ["data.parquet"]


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
    assert all_files(store) == ["data.json", "data.parquet"]


# --- conditional writes ----------------------------------------------------------------------


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
    assert all_files(store) == []
