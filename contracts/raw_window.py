"""Raw telemetry of a time window: the hourly raw partitions covering it, and its features.

Three readers take raw telemetry by time window: the feature job (a UTC day and the
``HISTORY_STEPS`` steps before it), the online scorer (a scoring window and its history) and
the explainer's log evidence (one instance's recent log lines). All of them find the window's
rows in the partitions ``raw_partition_keys`` lists, and the two that compute features compute
them by ``window_features_from_raw`` over the same history, so an online row equals the batch
row of the same (instance_id, timestamp).
"""

from collections.abc import Sequence
from datetime import datetime, timedelta

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from contracts.dataset import LogTemplateCatalogue
from contracts.features import HISTORY_STEPS, TIMESTAMP, compute_features, to_wide
from contracts.layout import raw_partition_path
from contracts.store import ObjectStore


def history_start(start: datetime, step_seconds: int) -> datetime:
    """Where the raw rows that the features of a window starting at ``start`` need begin:
    ``HISTORY_STEPS`` steps before it, so that every window statistic sees a full history."""
    return start - timedelta(seconds=HISTORY_STEPS * step_seconds)


def raw_partition_keys(store: ObjectStore, start: datetime, end: datetime) -> list[str]:
    """The keys of the raw partitions that hold rows of ``[start, end)``, in time order: one
    per hour the window touches, where the store has it."""
    keys = []
    hour = start.replace(minute=0, second=0, microsecond=0)
    while hour < end:
        if store.exists(key := raw_partition_path(hour)):
            keys.append(key)
        hour += timedelta(hours=1)
    return keys


def read_raw_window(
    store: ObjectStore,
    start: datetime,
    end: datetime,
    columns: Sequence[str] | None = None,
    where: pc.Expression | None = None,
) -> pa.Table:
    """The raw rows with ``start <= timestamp < end``, partition after partition.

    Args:
        store: the object store.
        start: window start (timezone-aware).
        end: window end (timezone-aware), exclusive.
        columns: the columns to read (timestamp among them); None reads every column.
        where: a further row filter, applied per partition (it keeps memory to the rows kept).

    Returns:
        The rows in partition order, each partition's in file order. Partitions written
        before templates were mined lack the template columns: they are promoted (null).
        A table without columns when the window has no row.
    """
    tables = []
    for key in raw_partition_keys(store, start, end):
        table = store.read_table(key, columns=None if columns is None else list(columns))
        stamps = table.column(TIMESTAMP)
        in_window = pc.and_(
            pc.greater_equal(stamps, pa.scalar(start, stamps.type)),
            pc.less(stamps, pa.scalar(end, stamps.type)),
        )
        table = table.filter(in_window)
        tables.append(table if where is None else table.filter(where))
    if not sum(table.num_rows for table in tables):
        return pa.table({})
    return pa.concat_tables(tables, promote_options="default")


def window_features_from_raw(
    raw: pl.DataFrame | pa.Table,
    metrics: Sequence[str],
    step_seconds: int,
    start: datetime,
    end: datetime,
    log_templates: LogTemplateCatalogue | None = None,
) -> pl.DataFrame:
    """The feature rows in ``[start, end)`` of raw telemetry that holds their history.

    Args:
        raw: raw rows of whole instances from ``history_start(start, step_seconds)`` (or
            earlier) on; the earlier rows shape the windows but are not returned.
        metrics: the dataset's metrics.
        step_seconds: the grid step.
        start: first timestamp returned.
        end: exclusive end.
        log_templates: the dataset's template catalogue (``DatasetInfo.log_templates``).

    Returns:
        ``ID_COLUMNS + feature_columns(metrics)``, sorted by instance_id then timestamp.
    """
    wide = to_wide(raw, metrics, step_seconds, log_templates)
    features = compute_features(wide, metrics)
    return features.filter(pl.col(TIMESTAMP).is_between(start, end, closed="left"))
