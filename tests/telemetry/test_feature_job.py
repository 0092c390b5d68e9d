"""The feature job: raw hourly partitions of a day → that day's features file."""

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import boto3
import dask
import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from distributed import Client, LocalCluster
from polars.testing import assert_frame_equal

from contracts.dataset import DatasetInfo, read_dataset_info, write_dataset_info
from contracts.features import (
    LOG_TEMPLATE_COLUMNS,
    NOVEL_TEMPLATES,
    TOP_TEMPLATE_COLUMNS,
    compute_features,
    feature_columns,
    feature_schema,
    log_template_catalogue,
    to_wide,
)
from contracts.layout import features_path, raw_partition_path
from contracts.store import ObjectStore
from contracts.telemetry import RAW_SCHEMA, RAW_SCHEMA_WITH_TEMPLATES
from serving.scorer.window_features import read_window_features
from telemetry import feature_job
from telemetry.feature_job import RawPartitionsNotFoundError, build_features, raw_days
from vigil.processes import ServerProcess

METRICS = ["CPUUtilization", "NetworkIn"]
DAY_1, DAY_2 = date(2026, 3, 1), date(2026, 3, 2)
MIDNIGHT = datetime(2026, 3, 2, tzinfo=UTC)


def raw_telemetry(start: datetime, minutes: int, instances: int = 3, seed: int = 0) -> pl.DataFrame:
    """Raw rows (RAW_SCHEMA): every metric each minute, and a few ERROR/INFO log events."""
    rng = np.random.default_rng(seed)
    stamps = [start + timedelta(minutes=m) for m in range(minutes)]
    rows = []
    for index in range(instances):
        common = {"instance_id": f"i-{index:03d}", "source": "ec2", "parse_error": False}
        for metric in METRICS:
            values = 50 + 10 * rng.standard_normal(minutes) + index
            for at, value in zip(stamps, values, strict=True):
                rows.append({**common, "timestamp": at, "kind": "metric", "name": metric,
                             "value": float(value)})  # fmt: skip
        for at in stamps[:: 7 + index]:
            for level in ("ERROR", "INFO"):
                rows.append({**common, "timestamp": at, "kind": "log", "level": level})
    return pl.DataFrame(pa.Table.from_pylist(rows, schema=RAW_SCHEMA))


def write_raw(store: ObjectStore, raw: pl.DataFrame) -> None:
    """Raw rows as the exporter lays them out: one Parquet file per UTC hour."""
    for (hour,), part in raw.group_by(pl.col("timestamp").dt.truncate("1h")):
        assert isinstance(hour, datetime)
        table = pa.Table.from_pylist(part.to_dicts(), schema=RAW_SCHEMA)
        store.write_table(raw_partition_path(hour), table)


@pytest.fixture
def store(tmp_path) -> ObjectStore:
    """Two days around a midnight: 22:00 on day 1 to 02:00 on day 2."""
    store = ObjectStore.from_uri(str(tmp_path / "store"))
    write_dataset_info(store, DatasetInfo(name="fleet", metrics=METRICS))
    write_raw(store, raw_telemetry(MIDNIGHT - timedelta(hours=2), minutes=240))
    return store


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two instances per batch, so three instances make more than one batch."""
    monkeypatch.setattr(feature_job, "INSTANCES_PER_BATCH", 2)


def read_features(store: ObjectStore, day: date) -> pl.DataFrame:
    return pl.DataFrame(store.read_table(features_path(day)))


def test_writes_the_days_rows_only_with_the_contract_schema(store, small_batches):
    summary = build_features(store, DAY_2)
    features = read_features(store, DAY_2)
    assert store.parquet_file(features_path(DAY_2)).schema_arrow.equals(feature_schema(METRICS))
    assert features.height == 3 * 120  # 00:00 to 01:59, three instances; no day-1 rows
    assert features["timestamp"].min() == MIDNIGHT
    assert features["instance_id"].unique().sort().to_list() == ["i-000", "i-001", "i-002"]
    assert (summary.rows, summary.days[0].instances, summary.days[0].raw_partitions) == (360, 3, 2)
    assert summary.feature_columns == len(features.columns) - 2


def test_windows_crossing_midnight_see_the_previous_day(store, small_batches):
    # Intent: a day file must not restart windows at 00:00; 00:05 has 55 rows of day 1 in its
    # 60-step window and must equal what one computation over both days gives.
    build_features(store, DAY_2)
    keys = store.list_keys("raw-logs", ".parquet")
    raw = pl.concat(pl.DataFrame(store.read_table(key)) for key in keys)
    whole = compute_features(to_wide(raw, METRICS, 60), METRICS)
    at = pl.col("timestamp") == MIDNIGHT + timedelta(minutes=5)
    assert_frame_equal(read_features(store, DAY_2).filter(at), whole.filter(at), check_exact=True)


def test_row_groups_hold_whole_hours_so_a_window_read_skips_the_others(
    store, small_batches, monkeypatch
):
    build_features(store, DAY_2)
    one_group_per_batch = read_features(store, DAY_2)
    monkeypatch.setattr(feature_job, "ROW_GROUP_ROWS", 100)
    build_features(store, DAY_2)

    metadata = store.parquet_file(features_path(DAY_2)).metadata
    column = metadata.schema.to_arrow_schema().get_field_index("timestamp")
    spans = []
    for index in range(metadata.num_row_groups):
        statistics = metadata.row_group(index).column(column).statistics
        spans.append((statistics.min.replace(tzinfo=UTC), statistics.max.replace(tzinfo=UTC)))
    hour = timedelta(hours=1)
    last_minute = timedelta(minutes=59)
    # Batch 1 (2 instances, 120 rows an hour): one row group per hour. Batch 2 (1 instance,
    # 60 rows an hour): two hours make its 100 rows.
    assert spans == [
        (MIDNIGHT, MIDNIGHT + last_minute),
        (MIDNIGHT + hour, MIDNIGHT + hour + last_minute),
        (MIDNIGHT, MIDNIGHT + hour + last_minute),
    ]
    in_file_order = read_features(store, DAY_2)
    increasing = in_file_order.group_by("instance_id").agg(pl.col("timestamp").diff().min() > 0)
    assert increasing["timestamp"].all()  # each instance's rows stay in time order
    keys = ["instance_id", "timestamp"]
    assert_frame_equal(in_file_order.sort(keys), one_group_per_batch.sort(keys))


def test_every_day_is_built_when_no_day_is_given(store):
    summary = build_features(store)
    assert [d.day for d in summary.days] == [DAY_1, DAY_2] == raw_days(store)
    assert read_features(store, DAY_1).height == 3 * 120
    assert summary.rows == 3 * 240


def test_a_day_without_raw_partitions_is_a_clear_error(store, tmp_path):
    with pytest.raises(RawPartitionsNotFoundError, match="2026-03-05"):
        build_features(store, date(2026, 3, 5))
    empty = ObjectStore.from_uri(str(tmp_path / "empty"))
    with pytest.raises(RawPartitionsNotFoundError, match="no raw partitions"):
        build_features(empty)


def test_unknown_engine_is_rejected(store):
    with pytest.raises(ValueError, match="engine"):
        build_features(store, DAY_2, engine="spark")  # type: ignore[arg-type]


@pytest.fixture
def dask_client() -> Iterator[Client]:
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def test_dask_engine_writes_the_same_file_as_polars(store, small_batches, dask_client):
    build_features(store, DAY_2, engine="polars")
    by_polars = store.read_table(features_path(DAY_2))
    summary = build_features(store, DAY_2, engine="dask", dask_client=dask_client)
    by_dask = store.read_table(features_path(DAY_2))
    assert summary.engine == "dask"
    assert by_dask.num_rows == 360
    assert by_dask.equals(by_polars)


@pytest.mark.slow
def test_features_of_an_s3_store(aws_emulator: ServerProcess):
    s3 = boto3.client("s3", endpoint_url=aws_emulator.url, region_name="us-east-1")
    s3.create_bucket(Bucket="vigil")
    store = ObjectStore.from_uri("s3://vigil/fleet", endpoint_url=aws_emulator.url)
    write_raw(store, raw_telemetry(MIDNIGHT, minutes=90, instances=2))
    summary = build_features(store, DAY_2)
    assert summary.rows == 2 * 90
    assert store.read_table(features_path(DAY_2)).num_rows == 2 * 90


def test_dask_engine_uses_the_scheduler_named_in_dask_config(store, small_batches, dask_client):
    """In the cluster DASK_SCHEDULER_ADDRESS names the running scheduler: the job must use it."""
    build_features(store, DAY_2, engine="polars")
    by_polars = store.read_table(features_path(DAY_2))
    address = dask_client.scheduler.address
    with dask.config.set({"scheduler-address": address}):
        build_features(store, DAY_2, engine="dask")
    prefixes = dask_client.run_on_scheduler(
        lambda dask_scheduler: list(dask_scheduler.task_prefixes)
    )
    assert "batch_features" in prefixes
    assert store.read_table(features_path(DAY_2)).equals(by_polars)


# --- log templates ---------------------------------------------------------------------------


def templated(raw: pl.DataFrame, seed: int = 0) -> pl.DataFrame:
    """``raw`` with a template id on each log row (skewed over 12 templates, errors apart)
    and a burst of a new error template on each instance at 00:30."""
    rng = np.random.default_rng(seed)
    logs = raw.filter(pl.col("kind") == "log")
    ids = np.minimum(rng.zipf(1.5, logs.height), 12) + np.where(logs["level"] == "ERROR", 20, 0)
    burst = (
        logs.filter(pl.col("level") == "ERROR")
        .group_by("instance_id")
        .agg(pl.col("source").first(), pl.col("parse_error").first())
        .join(pl.DataFrame({"n": list(range(6))}), how="cross")
        .select(
            "instance_id",
            "source",
            "parse_error",
            timestamp=pl.lit(MIDNIGHT + timedelta(minutes=30)) + pl.duration(seconds=pl.col("n")),
            kind=pl.lit("log"),
            level=pl.lit("ERROR"),
            template_id=pl.lit(99, pl.Int64),
        )
    )
    with_ids = logs.with_columns(pl.Series("template_id", ids.astype(np.int64)))
    table = pl.concat(
        [raw.filter(pl.col("kind") == "metric"), with_ids, burst], how="diagonal_relaxed"
    )
    return pl.DataFrame(pa.Table.from_pylist(table.to_dicts(), schema=RAW_SCHEMA_WITH_TEMPLATES))


@pytest.fixture
def templated_store(tmp_path) -> ObjectStore:
    """The store's two days with template ids, but the 22:00 hour written before templates
    were mined (no template columns)."""
    store = ObjectStore.from_uri(str(tmp_path / "templated"))
    write_dataset_info(store, DatasetInfo(name="fleet", metrics=METRICS))
    raw = templated(raw_telemetry(MIDNIGHT - timedelta(hours=2), minutes=240))
    for (hour,), part in raw.group_by(pl.col("timestamp").dt.truncate("1h")):
        assert isinstance(hour, datetime)
        table = pa.Table.from_pylist(part.to_dicts(), schema=RAW_SCHEMA_WITH_TEMPLATES)
        if hour == MIDNIGHT - timedelta(hours=2):
            table = table.select(RAW_SCHEMA.names).cast(RAW_SCHEMA)
        store.write_table(raw_partition_path(hour), table)
    return store


def test_the_log_template_catalogue_is_recorded_once(templated_store):
    # Intent: what each template slot counts is fixed by the first run that sees templates,
    # so a model's feature columns keep their meaning when later days change the mix.
    build_features(templated_store, DAY_1)
    catalogue = read_dataset_info(templated_store).log_templates
    day_1 = [
        pl.DataFrame(templated_store.read_table(raw_partition_path(MIDNIGHT - timedelta(hours=h))))
        for h in (1, 2)
    ]
    assert catalogue == log_template_catalogue(pl.concat(day_1, how="diagonal"))
    assert catalogue is not None
    assert len(catalogue.top) == 8
    build_features(templated_store)  # both days now: the catalogue stays
    assert read_dataset_info(templated_store).log_templates == catalogue
    features = read_features(templated_store, DAY_2)
    assert features[TOP_TEMPLATE_COLUMNS[0]].max() > 0  # type: ignore[operator]
    burst = features.filter(pl.col("timestamp") == MIDNIGHT + timedelta(minutes=30))
    assert burst[NOVEL_TEMPLATES].to_list() == [1.0, 1.0, 1.0]  # template 99 is new


def test_a_store_without_template_ids_records_no_catalogue_and_gets_zeros(store):
    build_features(store)
    assert read_dataset_info(store).log_templates is None
    features = read_features(store, DAY_2)
    assert features.select(LOG_TEMPLATE_COLUMNS).to_numpy().sum() == 0.0


def test_partitions_with_and_without_template_columns_build_one_day(templated_store):
    build_features(templated_store)
    day_1 = read_features(templated_store, DAY_1)
    untemplated = day_1.filter(pl.col("timestamp") < MIDNIGHT - timedelta(hours=1))
    assert untemplated.height == 3 * 60
    assert untemplated.select(LOG_TEMPLATE_COLUMNS).to_numpy().sum() == 0.0
    assert day_1.select(LOG_TEMPLATE_COLUMNS).to_numpy().sum() > 0.0


def test_online_window_reads_from_raw_equal_the_jobs_rows(templated_store):
    # Intent: the scorer's raw path (serving.scorer.window_features) and the feature job compute the
    # log-template features with the same catalogue and the same functions: equal rows.
    build_features(templated_store)
    names = feature_columns(METRICS)
    for start in (MIDNIGHT - timedelta(minutes=5), MIDNIGHT + timedelta(minutes=27)):
        end = start + timedelta(minutes=10)
        from_job = read_window_features(templated_store, start, end, names)
        from_raw = read_window_features(templated_store, start, end, names, "raw")
        assert from_job.height == 3 * 10
        assert_frame_equal(from_raw, from_job, check_exact=True)
