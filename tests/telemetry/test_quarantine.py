"""Corrupt Parquet in the raw store: the feature job and the validation job move the file to
``quarantine/`` with its reason, say so, and carry on with the other files."""

import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import boto3
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from polars.testing import assert_frame_equal

from contracts.dataset import DatasetInfo, write_dataset_info
from contracts.layout import quality_report_path, quarantine_path, raw_partition_path
from contracts.store import ObjectStore
from telemetry.feature_job import build_features
from telemetry.quarantine import QuarantinedFile, read_or_quarantine
from telemetry.validation_job import validate_store
from tests.telemetry.test_feature_job import (
    DAY_1,
    DAY_2,
    METRICS,
    MIDNIGHT,
    raw_telemetry,
    read_features,
    write_raw,
)
from vigil.commands.data import QUARANTINE_EXIT_CODE
from vigil.processes import ServerProcess

BROKEN_KEY = raw_partition_path(MIDNIGHT + timedelta(hours=1))
NOT_PARQUET = b"timestamp,instance_id\n2026-03-02T01:00:00Z,i-000\n"


@pytest.fixture
def store(tmp_path: Path) -> ObjectStore:
    """Four hourly raw partitions, 3 instances: 22:00 and 23:00 of DAY_1, 00:00 and 01:00 of
    DAY_2."""
    store = ObjectStore.from_uri(str(tmp_path / "store"))
    write_dataset_info(store, DatasetInfo(name="fleet", metrics=METRICS))
    write_raw(store, raw_telemetry(MIDNIGHT - timedelta(hours=2), minutes=240))
    return store


def _not_parquet(data: bytes) -> bytes:
    return NOT_PARQUET


def _truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]  # an upload cut short: no footer


def _damaged_page(data: bytes) -> bytes:
    """64 bytes of the ``value`` column's first page zeroed: the footer still parses, the
    page does not."""
    column = pq.ParquetFile(pa.BufferReader(data)).metadata.row_group(0).column(5)
    assert column.path_in_schema == "value"
    start = column.data_page_offset + 16
    return data[:start] + b"\x00" * 64 + data[start + 64 :]


def _break(store: ObjectStore, key: str, damage: Callable[[bytes], bytes]) -> bytes:
    broken = damage(store.read_bytes(key))
    store.write_bytes(key, broken)
    return broken


@pytest.mark.parametrize("damage", [_not_parquet, _truncated, _damaged_page])
def test_feature_job_quarantines_the_file_and_builds_the_day_from_the_rest(
    store: ObjectStore, tmp_path: Path, damage: Callable[[bytes], bytes]
) -> None:
    # What the day's features must be: those of the same store without the broken hour.
    expected_store = ObjectStore.from_uri(str(tmp_path / "expected"))
    for key in store.list_keys(""):
        if key != BROKEN_KEY:
            expected_store.write_bytes(key, store.read_bytes(key))
    build_features(expected_store, DAY_2)
    broken = _break(store, BROKEN_KEY, damage)

    summary = build_features(store, DAY_2)

    [quarantined] = summary.quarantined
    assert quarantined.key == BROKEN_KEY
    assert quarantined.quarantine_key == quarantine_path(BROKEN_KEY)
    assert "moved to quarantine/raw-logs/2026/03/02/01/" in str(quarantined)
    assert not store.exists(BROKEN_KEY)
    assert store.read_bytes(quarantined.quarantine_key) == broken  # nothing lost
    reason = store.read_bytes(f"{quarantined.quarantine_key}.reason.txt").decode()
    assert reason.strip() == quarantined.reason
    assert quarantined.reason.startswith(("ArrowInvalid", "OSError"))
    [day] = summary.days
    assert day.raw_partitions == 1
    assert_frame_equal(read_features(store, DAY_2), read_features(expected_store, DAY_2))


def test_a_day_with_no_readable_partition_gets_no_features_and_the_others_are_built(
    store: ObjectStore,
) -> None:
    day_2_keys = [raw_partition_path(MIDNIGHT + timedelta(hours=h)) for h in (0, 1)]
    for key in day_2_keys:
        _break(store, key, _truncated)

    summary = build_features(store)

    assert [day.day for day in summary.days] == [DAY_1]
    assert [q.key for q in summary.quarantined] == day_2_keys
    assert read_features(store, DAY_1).height == 3 * 120


@pytest.mark.slow
def test_an_s3_store_quarantines_the_same_way(aws_emulator: ServerProcess) -> None:
    s3 = boto3.client("s3", endpoint_url=aws_emulator.url, region_name="us-east-1")
    s3.create_bucket(Bucket="vigil")
    store = ObjectStore.from_uri("s3://vigil/fleet", endpoint_url=aws_emulator.url)
    write_raw(store, raw_telemetry(MIDNIGHT, minutes=120, instances=2))
    store.write_bytes(BROKEN_KEY, NOT_PARQUET)

    summary = build_features(store, DAY_2)

    assert [q.key for q in summary.quarantined] == [BROKEN_KEY]
    assert not store.exists(BROKEN_KEY)
    assert store.read_bytes(quarantine_path(BROKEN_KEY)) == NOT_PARQUET
    assert summary.rows == 2 * 60


def test_validation_quarantines_the_file_and_checks_the_others(store: ObjectStore) -> None:
    _break(store, BROKEN_KEY, _not_parquet)

    quality = validate_store(store)

    assert [q.key for q in quality.quarantined] == [BROKEN_KEY]
    checked = [f.key for f in quality.files]
    assert BROKEN_KEY not in checked
    assert len(checked) == 3  # the other raw hours
    assert all(store.exists(quality_report_path(key)) for key in checked)
    quality.raise_if_rejected()  # the quarantined file is out of the batch, not a rejection


def test_readable_parquet_lacking_a_column_is_refused_not_quarantined(
    store: ObjectStore,
) -> None:
    table = store.read_table(BROKEN_KEY).drop_columns(["parse_error"])
    store.write_table(BROKEN_KEY, table)

    with pytest.raises(ValueError, match=r"lacks the columns \['parse_error'\]"):
        read_or_quarantine(store, BROKEN_KEY, ["timestamp", "parse_error"])
    assert store.exists(BROKEN_KEY)


def test_a_healthy_file_is_read_as_it_is(store: ObjectStore) -> None:
    table = read_or_quarantine(store, BROKEN_KEY, ["instance_id"])
    assert not isinstance(table, QuarantinedFile)
    assert table.column_names == ["instance_id"]
    assert pl.DataFrame(table).height == store.read_table(BROKEN_KEY).num_rows


def test_the_commands_say_what_was_quarantined(store: ObjectStore) -> None:
    vigil = str(Path(sys.executable).parent / "vigil")
    for command in ("validate", "features"):
        store.write_bytes(BROKEN_KEY, NOT_PARQUET)
        result = subprocess.run(
            [vigil, command, "--store", store.root],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        # Done, but not clean: a scheduler must see the quarantine (exit 3, not 0 nor 1).
        assert result.returncode == QUARANTINE_EXIT_CODE, result.stdout + result.stderr
        output = " ".join(result.stdout.split())
        assert "1 file(s) quarantined" in output
        assert f"quarantined {BROKEN_KEY} is not readable Parquet" in output, output
        assert "magic bytes not found" in output
        assert "the batch goes on without it" in output
