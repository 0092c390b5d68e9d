"""The raw window reader: the hourly partitions covering a window, and only its rows."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from contracts.features import HISTORY_STEPS
from contracts.layout import raw_partition_path
from contracts.raw_window import history_start, raw_partition_keys, read_raw_window
from contracts.store import ObjectStore
from contracts.telemetry import RAW_SCHEMA, RAW_SCHEMA_WITH_TEMPLATES, TEMPLATE_ID

HOUR = datetime(2026, 1, 5, 10, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def partition(hour: datetime, minutes: list[int], schema: pa.Schema) -> pa.Table:
    """One log row per minute of ``hour``, on instances i-0 and i-1 in turn."""
    rows = len(minutes)
    columns = {
        "timestamp": [hour + m * MINUTE for m in minutes],
        "instance_id": [f"i-{m % 2}" for m in minutes],
        "source": ["ec2"] * rows,
        "kind": ["log"] * rows,
        "level": ["INFO"] * rows,
        "message": [f"minute {m}" for m in minutes],
        "parse_error": [False] * rows,
    }
    if TEMPLATE_ID in schema.names:
        columns[TEMPLATE_ID] = [7] * rows
    return pa.table({f.name: columns.get(f.name, [None] * rows) for f in schema}, schema=schema)


@pytest.fixture
def store(tmp_path: Path) -> ObjectStore:
    """Hours 10 and 12 (with template ids) hold rows; hour 11 has no partition."""
    store = ObjectStore.from_uri(str(tmp_path / "store"))
    store.write_table(raw_partition_path(HOUR), partition(HOUR, [0, 30, 59], RAW_SCHEMA))
    later = HOUR + timedelta(hours=2)
    store.write_table(
        raw_partition_path(later), partition(later, [0, 1], RAW_SCHEMA_WITH_TEMPLATES)
    )
    return store


def test_keys_are_the_partitions_the_window_touches_in_time_order(store: ObjectStore) -> None:
    keys = raw_partition_keys(store, HOUR + 30 * MINUTE, HOUR + timedelta(hours=2, minutes=1))
    assert keys == [raw_partition_path(HOUR), raw_partition_path(HOUR + timedelta(hours=2))]
    # The end is exclusive: a window ending on the hour does not touch that hour.
    assert raw_partition_keys(store, HOUR, HOUR + timedelta(hours=2)) == [raw_partition_path(HOUR)]


def test_only_rows_inside_the_window_are_read(store: ObjectStore) -> None:
    start, end = HOUR + 30 * MINUTE, HOUR + timedelta(hours=2, minutes=1)
    table = read_raw_window(store, start, end)
    assert table.column("message").to_pylist() == ["minute 30", "minute 59", "minute 0"]
    # The older partition has no template columns: promoted as nulls.
    assert table.column(TEMPLATE_ID).to_pylist() == [None, None, 7]


def test_columns_and_a_row_filter_narrow_what_is_read(store: ObjectStore) -> None:
    end = HOUR + timedelta(hours=3)
    only_i1 = pc.field("instance_id") == "i-1"
    table = read_raw_window(store, HOUR, end, ["timestamp", "instance_id"], where=only_i1)
    assert table.column_names == ["timestamp", "instance_id"]
    assert table.column("timestamp").to_pylist() == [
        HOUR + 59 * MINUTE,
        HOUR + timedelta(hours=2, minutes=1),
    ]


def test_a_window_without_rows_is_an_empty_table(store: ObjectStore) -> None:
    assert (
        read_raw_window(store, HOUR + timedelta(hours=1), HOUR + timedelta(hours=2)).num_rows == 0
    )
    assert read_raw_window(store, HOUR + MINUTE, HOUR + 2 * MINUTE).num_rows == 0


def test_history_starts_history_steps_before_the_window() -> None:
    assert history_start(HOUR, step_seconds=60) == HOUR - HISTORY_STEPS * MINUTE
