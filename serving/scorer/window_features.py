"""The feature rows of one scoring window, from the object store.

Two sources, the same rows: the feature job's files (``processed-logs/YYYY-MM-DD/
features.parquet``), or raw telemetry (``raw-logs/…``) turned into features here by
``contracts.raw_window`` — the very function the feature job runs, with the dataset's log
template catalogue it recorded, over the window plus the ``HISTORY_STEPS`` steps before it, so
every window statistic sees a full history.
"""

from datetime import datetime, timedelta
from typing import Literal

import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds

from contracts.dataset import read_dataset_info
from contracts.features import FEATURE_DTYPE, ID_COLUMNS, INSTANCE_ID, TIMESTAMP, TIMESTAMP_TYPE
from contracts.layout import features_path
from contracts.raw_window import history_start, read_raw_window, window_features_from_raw
from contracts.store import ObjectStore

FeatureSource = Literal["features", "raw"]


def read_window_features(
    store: ObjectStore,
    start: datetime,
    end: datetime,
    feature_names: list[str],
    source: FeatureSource = "features",
) -> pl.DataFrame:
    """Rows with ``start <= timestamp < end``: instance_id, timestamp, then ``feature_names``.

    Args:
        store: the object store.
        start: window start (timezone-aware).
        end: window end (timezone-aware), exclusive.
        feature_names: the models' input columns, in order.
        source: "features" reads the feature job's files, "raw" computes the rows from raw
            telemetry.

    Returns:
        The window's rows sorted by instance_id then timestamp; empty when none exist yet.

    Raises:
        ValueError: naive datetimes, or rows lacking a feature the models expect or holding
            one as a non-numeric type (the models' signature is float32 columns by name).
    """
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("window bounds must be timezone-aware")
    if source == "raw":
        table = _from_raw(store, start, end)
    else:
        table = _from_features(store, start, end, feature_names)
    frame = pl.DataFrame(pl.from_arrow(table)) if table.num_rows else pl.DataFrame()
    if frame.is_empty():
        schema: dict[str, pl.DataType] = {INSTANCE_ID: pl.String(), TIMESTAMP: TIMESTAMP_TYPE}
        schema.update({name: FEATURE_DTYPE() for name in feature_names})
        return pl.DataFrame(schema=schema)
    schema = frame.schema  # built on each access: once, not per feature
    if missing := [name for name in feature_names if name not in schema]:
        raise ValueError(
            f"the {source} rows lack {len(missing)} features the models expect, e.g. "
            f"{missing[:5]}: the models were trained on another feature set"
        )
    types = {name: schema[name] for name in feature_names}
    if wrong := {name: str(dtype) for name, dtype in types.items() if not dtype.is_numeric()}:
        shown = dict(list(wrong.items())[:5])
        raise ValueError(
            f"the {source} rows hold {len(wrong)} features as non-numeric types, e.g. {shown}: "
            "the models take float32 features"
        )
    return frame.select(*ID_COLUMNS, *feature_names).sort(*ID_COLUMNS)


def _days(start: datetime, end: datetime) -> list[datetime]:
    first = start.replace(hour=0, minute=0, second=0, microsecond=0)
    last = end - timedelta(milliseconds=1)
    days = []
    while first <= last:
        days.append(first)
        first += timedelta(days=1)
    return days


def _in_window(start: datetime, end: datetime) -> ds.Expression:
    column = ds.field(TIMESTAMP)
    return (column >= pa.scalar(start, pa.timestamp("ms", "UTC"))) & (
        column < pa.scalar(end, pa.timestamp("ms", "UTC"))
    )


def _from_features(
    store: ObjectStore, start: datetime, end: datetime, feature_names: list[str]
) -> pa.Table:
    paths = [
        store.path(features_path(day.date()))
        for day in _days(start, end)
        if store.exists(features_path(day.date()))
    ]
    if not paths:
        return pa.table({})
    dataset = ds.dataset(paths, format="parquet", filesystem=store.fs)
    # Read every column so a missing feature is reported by name, not as a scan error.
    present = set(dataset.schema.names)
    columns = [c for c in [*ID_COLUMNS, *feature_names] if c in present]
    return dataset.to_table(columns=columns, filter=_in_window(start, end))


def _from_raw(store: ObjectStore, start: datetime, end: datetime) -> pa.Table:
    info = read_dataset_info(store)
    raw = read_raw_window(store, history_start(start, info.step_seconds), end)
    if not raw.num_rows:
        return pa.table({})
    features = window_features_from_raw(
        raw, info.metrics, info.step_seconds, start, end, info.log_templates
    )
    return features.to_arrow()
