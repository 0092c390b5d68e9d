"""The object store: same behaviour on a local directory and on S3 over the wire."""

import boto3
import pyarrow as pa
import pytest

from contracts.store import ObjectStore
from vigil.processes import ServerProcess


def _table(n: int) -> pa.Table:
    return pa.table({"x": list(range(n))})


def test_local_write_then_read_round_trips(tmp_path):
    store = ObjectStore.from_uri(str(tmp_path / "store"))
    store.write_table("a/b/data.parquet", _table(5))
    assert store.read_table("a/b/data.parquet").column("x").to_pylist() == [0, 1, 2, 3, 4]
    assert store.list_keys("a", ".parquet") == ["a/b/data.parquet"]


def test_failed_write_leaves_the_previous_file_intact(tmp_path):
    # Intent: a crash mid-write must never corrupt or remove what is already stored.
    store = ObjectStore.from_uri(str(tmp_path / "store"))
    store.write_table("data.parquet", _table(3))

    def crash_while_writing() -> None:
        with store.parquet_writer("data.parquet", _table(1).schema) as writer:
            writer.write_table(_table(100))
            raise RuntimeError("crash while writing")

    with pytest.raises(RuntimeError):
        crash_while_writing()
    assert store.read_table("data.parquet").num_rows == 3
    assert store.list_keys("", "") == ["data.parquet"]  # no temporary file left behind


@pytest.mark.slow
def test_s3_store_over_the_wire(aws_emulator: ServerProcess):
    s3 = boto3.client("s3", endpoint_url=aws_emulator.url, region_name="us-east-1")
    s3.create_bucket(Bucket="vigil")
    store = ObjectStore.from_uri("s3://vigil/prefix", endpoint_url=aws_emulator.url)
    store.write_table("raw-logs/x.parquet", _table(4))
    store.write_bytes("raw-logs/_checkpoints/c.json", b"{}")
    assert store.read_table("raw-logs/x.parquet").num_rows == 4
    assert store.read_bytes("raw-logs/_checkpoints/c.json") == b"{}"
    # pyarrow leaves empty "dir/" marker objects behind; only real objects matter
    objects = s3.list_objects_v2(Bucket="vigil")["Contents"]
    keys = [o["Key"] for o in objects if not o["Key"].endswith("/")]
    assert sorted(keys) == ["prefix/raw-logs/_checkpoints/c.json", "prefix/raw-logs/x.parquet"]
