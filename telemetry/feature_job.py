"""``vigil features``: raw telemetry of a UTC day → ``processed-logs/YYYY-MM-DD/features.parquet``.

For each day the job reads the day's hourly raw partitions plus the ``HISTORY_STEPS`` steps
before midnight, so that windows and lags crossing midnight see the previous day; only the
day's own rows are written. Features come from ``contracts.raw_window`` (the code the
online scorer runs too). Instances are processed in batches, each batch written as row groups of
consecutive whole hours (about ``ROW_GROUP_ROWS`` rows each), so that a reader of one time
window — the online scorer, every few minutes — skips the other row groups by their timestamp
statistics instead of decoding the whole day:

- engine ``polars``: the batches run one after the other in this process;
- engine ``dask``: the same function runs on each batch on a Dask cluster (the given client,
  or a LocalCluster started for the run). Instances are independent and the batches are
  written in order, so both engines write identical files.

The log-template features count the templates the dataset's catalogue names
(``DatasetInfo.log_templates``). The catalogue is recorded once: the first run that finds
templated log events counts them over the days it builds (``log_template_catalogue``) and
writes it into ``dataset.json``; every later run, and the online scorer, uses that one.

The file appears atomically (``ObjectStore.parquet_writer``): a reader sees the old file or
the complete new one. A raw partition that is not readable Parquet is quarantined
(``telemetry.quarantine``) and the day is built from the others; a day none of whose
partitions is readable gets no feature file.
"""

import logging
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal

import dask
import polars as pl
import pyarrow as pa
from distributed import Client, LocalCluster

from contracts.dataset import (
    DatasetInfo,
    LogTemplateCatalogue,
    read_dataset_info,
    write_dataset_info,
)
from contracts.features import (
    INSTANCE_ID,
    RAW_FEATURE_COLUMNS,
    TIMESTAMP,
    feature_columns,
    feature_schema,
    log_template_catalogue,
)
from contracts.layout import RAW_PREFIX, features_path
from contracts.raw_window import history_start, raw_partition_keys, window_features_from_raw
from contracts.store import ObjectStore
from contracts.telemetry import TEMPLATE_ID
from telemetry.quarantine import QuarantinedFile, read_or_quarantine

logger = logging.getLogger(__name__)

Engine = Literal["polars", "dask"]

# Instances per batch: bounds the memory of the features in flight (a whole 300-instance
# fleet-day of 16 metrics ran in 2.9 GB RSS) and is the unit of work sent to a Dask worker.
INSTANCES_PER_BATCH = 256
# Rows a row group of a feature file aims for: fewer would be mostly metadata (one chunk per
# column, 300+ columns), more would make a window read decode more hours than it needs.
ROW_GROUP_ROWS = 10_000
_RAW_KEY = re.compile(
    rf"^{RAW_PREFIX}/(\d{{4}})/(\d{{2}})/(\d{{2}})/\d{{2}}/data_\d{{10}}\.parquet$"
)


class RawPartitionsNotFoundError(FileNotFoundError):
    """The store holds no raw partition for a day that features were asked for."""


@dataclass(frozen=True)
class DayFeatures:
    """What the job wrote for one day."""

    day: date
    key: str
    rows: int
    instances: int
    raw_partitions: int


@dataclass(frozen=True)
class FeatureSummary:
    """What a run of the feature job wrote."""

    engine: Engine
    feature_columns: int
    days: tuple[DayFeatures, ...]
    quarantined: tuple[QuarantinedFile, ...] = ()

    @property
    def rows(self) -> int:
        return sum(day.rows for day in self.days)


def raw_days(store: ObjectStore) -> list[date]:
    """The UTC days with at least one raw partition, in order."""
    days = set()
    for key in store.list_keys(RAW_PREFIX, ".parquet"):
        if match := _RAW_KEY.match(key):
            days.add(date(*(int(part) for part in match.groups())))
    return sorted(days)


def build_features(
    store: ObjectStore,
    day: date | None = None,
    *,
    engine: Engine = "polars",
    dask_client: Client | None = None,
) -> FeatureSummary:
    """Compute and write the features of one UTC day, or of every day with raw telemetry.

    Args:
        store: holds ``raw-logs/`` and (optionally) ``dataset.json``; features are written
            to ``processed-logs/YYYY-MM-DD/features.parquet``, replacing an earlier file.
        day: the UTC day; None builds every day present under ``raw-logs/``.
        engine: ``polars`` (in process) or ``dask`` (batches of instances on a cluster).
        dask_client: the cluster for ``engine="dask"``; None starts a LocalCluster for the run.

    Returns:
        What was written, per day.

    Raises:
        RawPartitionsNotFoundError: the day has no raw partition (or, with ``day=None``, the
            store has none at all).
        ValueError: on an unknown engine or bad raw telemetry (see ``contracts.features``).
    """
    if engine not in ("polars", "dask"):
        raise ValueError(f"engine must be 'polars' or 'dask', got {engine!r}")
    info = read_dataset_info(store)
    days = [day] if day is not None else raw_days(store)
    if not days:
        raise RawPartitionsNotFoundError(f"no raw partitions under {store.uri}/{RAW_PREFIX}/")
    quarantined: list[QuarantinedFile] = []
    if info.log_templates is None:
        info = _record_log_templates(store, info, days, quarantined)
    with _engine_client(engine, dask_client) as client:
        built = [_build_day(store, info, d, client, quarantined) for d in days]
    written = tuple(day_features for day_features in built if day_features is not None)
    return FeatureSummary(engine, len(feature_columns(info.metrics)), written, tuple(quarantined))


def batch_features(
    raw: pl.DataFrame,
    metrics: list[str],
    step_seconds: int,
    start: datetime,
    end: datetime,
    log_templates: LogTemplateCatalogue | None = None,
) -> pa.Table:
    """The features of the rows in [start, end) of a batch of whole instances.

    ``raw`` may hold earlier rows (the lookback); they shape the windows but are not returned.
    """
    features = window_features_from_raw(raw, metrics, step_seconds, start, end, log_templates)
    return features.to_arrow().cast(feature_schema(metrics))


def time_slices(table: pa.Table, day_start: datetime) -> list[pa.Table]:
    """A batch's rows of one day cut into slices of whole hours, about ``ROW_GROUP_ROWS`` rows
    each, in time order; within a slice the rows keep their order (instance, then time)."""
    if table.num_rows <= ROW_GROUP_ROWS:
        return [table]
    frame = pl.DataFrame(pl.from_arrow(table))
    hour = (pl.col(TIMESTAMP) - day_start).dt.total_hours()
    rows_per_hour = frame.height / frame.select(hour.n_unique()).item()
    hours = min(24, math.ceil(ROW_GROUP_ROWS / rows_per_hour))
    parts = frame.with_columns((hour // hours).alias("__slice")).partition_by(
        "__slice", include_key=False, as_dict=True, maintain_order=True
    )
    return [parts[key].to_arrow().cast(table.schema) for key in sorted(parts)]


@contextmanager
def _engine_client(engine: Engine, dask_client: Client | None) -> Iterator[Client | None]:
    if engine == "polars" or dask_client is not None:
        yield dask_client if engine == "dask" else None
        return
    # A scheduler named in Dask's config (DASK_SCHEDULER_ADDRESS, set by the Helm chart) is a
    # running cluster; without one the run gets its own LocalCluster.
    if address := dask.config.get("scheduler-address", None):
        with Client(address) as client:
            yield client
        return
    with (
        LocalCluster(processes=False, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        yield client


def _build_day(
    store: ObjectStore,
    info: DatasetInfo,
    day: date,
    client: Client | None,
    quarantined: list[QuarantinedFile],
) -> DayFeatures | None:
    start = datetime.combine(day, time(), tzinfo=UTC)
    end = start + timedelta(days=1)
    lookback = history_start(start, info.step_seconds)
    day_keys = raw_partition_keys(store, start, end)
    if not day_keys:
        raise RawPartitionsNotFoundError(
            f"no raw partitions for {day:%Y-%m-%d}: nothing under "
            f"{store.uri}/{RAW_PREFIX}/{day:%Y/%m/%d}/"
        )
    lookback_keys = raw_partition_keys(store, lookback, start)
    day_frames = _read_raw(store, day_keys, quarantined)
    if not day_frames:
        logger.warning("no readable raw partition for %s: no features written", day)
        return None
    frames = [*_read_raw(store, lookback_keys, quarantined), *day_frames]
    # Diagonal: partitions written before templates were mined have no template id.
    raw = pl.concat(frames, how="diagonal_relaxed").filter(
        pl.col(TIMESTAMP).is_between(lookback, end, closed="left")
    )
    schema = feature_schema(info.metrics)
    batches = _instance_batches(raw)
    args = (info.metrics, info.step_seconds, start, end, info.log_templates)
    key = features_path(day)
    rows, instances = 0, set()
    with store.parquet_writer(key, schema, use_dictionary=[INSTANCE_ID]) as writer:
        for table in _computed(batches, args, client):
            for part in time_slices(table, start):
                writer.write_table(part)
            rows += table.num_rows
            instances.update(table.column(INSTANCE_ID).unique().to_pylist())
    return DayFeatures(day, key, rows, len(instances), len(day_frames))


def _record_log_templates(
    store: ObjectStore, info: DatasetInfo, days: list[date], quarantined: list[QuarantinedFile]
) -> DatasetInfo:
    """The dataset info with the template catalogue of ``days``, written to the store; the
    info unchanged when those days hold no templated log event (no logs, or logs exported
    before templates were mined)."""
    keys = []
    for d in days:
        start = datetime.combine(d, time(), tzinfo=UTC)
        keys += raw_partition_keys(store, start, start + timedelta(days=1))
    tables = []
    for key in keys:
        if TEMPLATE_ID not in _raw_columns(store, key):
            continue
        table = read_or_quarantine(store, key, ["kind", TEMPLATE_ID])
        if isinstance(table, QuarantinedFile):
            quarantined.append(table)
        else:
            tables.append(table)
    catalogue = log_template_catalogue(pa.concat_tables(tables)) if tables else None
    if catalogue is None:
        return info
    recorded = info.model_copy(update={"log_templates": catalogue})
    write_dataset_info(store, recorded)
    logger.info(
        "recorded the log template catalogue: %d templates over %d events, top %s",
        len(catalogue.common),
        catalogue.events,
        catalogue.top,
    )
    return recorded


def _read_raw(
    store: ObjectStore, keys: list[str], quarantined: list[QuarantinedFile]
) -> list[pl.DataFrame]:
    """The readable partitions among ``keys``; the others are quarantined and listed.

    The template id is read where the partition has it (partitions written before templates
    were mined lack it).
    """
    frames = []
    for key in keys:
        table = read_or_quarantine(store, key, _raw_columns(store, key))
        if isinstance(table, QuarantinedFile):
            quarantined.append(table)
        else:
            frames.append(pl.DataFrame(table))
    return frames


def _raw_columns(store: ObjectStore, key: str) -> list[str]:
    """The columns to read from a raw partition: ``RAW_FEATURE_COLUMNS``, and the template id when
    the partition has one. A file whose footer does not read is left to ``read_or_quarantine``."""
    try:
        with store.parquet_file(key) as parquet:
            names = parquet.schema_arrow.names
    except (pa.ArrowInvalid, OSError):
        return list(RAW_FEATURE_COLUMNS)
    return (
        [*RAW_FEATURE_COLUMNS, TEMPLATE_ID] if TEMPLATE_ID in names else list(RAW_FEATURE_COLUMNS)
    )


def _instance_batches(raw: pl.DataFrame) -> list[pl.DataFrame]:
    """Raw rows split by instance into batches of ``INSTANCES_PER_BATCH``, in instance order."""
    instances = raw[INSTANCE_ID].unique().sort()
    batch_of = pl.Series(range(len(instances))) // INSTANCES_PER_BATCH
    batched = raw.with_columns(
        pl.col(INSTANCE_ID).replace_strict(instances, batch_of).alias("__batch")
    )
    parts = batched.partition_by("__batch", include_key=False, as_dict=True)
    return [parts[key] for key in sorted(parts)]


def _computed(
    batches: list[pl.DataFrame],
    args: tuple[list[str], int, datetime, datetime, LogTemplateCatalogue | None],
    client: Client | None,
) -> Iterator[pa.Table]:
    """Each batch's features, in batch order; on the cluster when there is a client."""
    if client is None:
        for raw in batches:
            yield batch_features(raw, *args)
        return
    metrics, step_seconds, start, end, log_templates = args
    futures = client.map(
        batch_features,
        client.scatter(batches),
        metrics=metrics,
        step_seconds=step_seconds,
        start=start,
        end=end,
        log_templates=log_templates,
        pure=False,
    )
    for future in futures:
        yield future.result()
        future.release()
