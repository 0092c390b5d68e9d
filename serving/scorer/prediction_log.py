"""What the scorer predicted and what it was told, kept in the object store.

- ``scorer/predictions/YYYY-MM-DD/window_HHMMSS.parquet``: one file per scored window, one
  row per scored feature row (``PREDICTION_SCHEMA``); failed requests are rows with an
  ``error`` and no probability.
- ``scorer/feedback/YYYY-MM-DD/HHMMSS_<uuid>.parquet``: one file per feedback request (a
  ground-truth label for one instance and window; ``FEEDBACK_SCHEMA``).

Both are read back by the scorer (feedback → the window's verdict) and by the A/B report.
Every write is atomic (``ObjectStore``), so a reader never sees half a window.
"""

import uuid
from datetime import datetime, timedelta

import polars as pl
import pyarrow as pa

from contracts.store import ObjectStore

PREDICTIONS_PREFIX = "scorer/predictions"
FEEDBACK_PREFIX = "scorer/feedback"

PREDICTION_SCHEMA = pa.schema(
    [
        pa.field("instance_id", pa.string(), nullable=False),
        pa.field("timestamp", pa.timestamp("ms", tz="UTC"), nullable=False),
        pa.field("window_start", pa.timestamp("ms", tz="UTC"), nullable=False),
        pa.field("model", pa.string(), nullable=False),  # the model that answered (or was asked)
        pa.field("model_version", pa.int64()),
        pa.field("probability", pa.float64()),
        pa.field("result", pa.int8()),  # 1 when probability >= the model's threshold
        pa.field("latency_seconds", pa.float64(), nullable=False),  # of the row's request
        pa.field("error", pa.string()),
    ]
)
FEEDBACK_SCHEMA = pa.schema(
    [
        pa.field("instance_id", pa.string(), nullable=False),
        pa.field("window_start", pa.timestamp("ms", tz="UTC"), nullable=False),
        pa.field("label", pa.int8(), nullable=False),
        pa.field("received_at", pa.timestamp("ms", tz="UTC"), nullable=False),
    ]
)


def predictions_key(window_start: datetime) -> str:
    return f"{PREDICTIONS_PREFIX}/{window_start:%Y-%m-%d}/window_{window_start:%H%M%S}.parquet"


def write_predictions(store: ObjectStore, window_start: datetime, rows: pl.DataFrame) -> None:
    """Keep one window's predictions (columns of ``PREDICTION_SCHEMA``)."""
    table = rows.select(PREDICTION_SCHEMA.names).to_arrow().cast(PREDICTION_SCHEMA)
    store.write_table(predictions_key(window_start), table)


def read_window_predictions(store: ObjectStore, window_start: datetime) -> pl.DataFrame:
    """One window's predictions; empty when that window was not scored."""
    key = predictions_key(window_start)
    if not store.exists(key):
        return _empty(PREDICTION_SCHEMA)
    return pl.DataFrame(pl.from_arrow(store.read_table(key)))


def read_predictions(store: ObjectStore, start: datetime, end: datetime) -> pl.DataFrame:
    """Predictions of the windows starting in ``[start, end)``."""
    return _read(store, PREDICTIONS_PREFIX, PREDICTION_SCHEMA, start, end)


def write_feedback(store: ObjectStore, rows: pl.DataFrame) -> None:
    """Keep feedback rows (columns of ``FEEDBACK_SCHEMA``) in one new file, under the first
    row's window day."""
    # safe=False: received_at may carry microseconds, kept to the millisecond.
    table = rows.select(FEEDBACK_SCHEMA.names).to_arrow().cast(FEEDBACK_SCHEMA, safe=False)
    first: datetime = rows["window_start"][0]
    key = f"{FEEDBACK_PREFIX}/{first:%Y-%m-%d}/{first:%H%M%S}_{uuid.uuid4().hex}.parquet"
    store.write_table(key, table)


def read_feedback(store: ObjectStore, start: datetime, end: datetime) -> pl.DataFrame:
    """Feedback on the windows starting in ``[start, end)``; the latest label per (instance,
    window) wins."""
    feedback = _read(store, FEEDBACK_PREFIX, FEEDBACK_SCHEMA, start, end)
    return (
        feedback.sort("received_at")
        .unique(["instance_id", "window_start"], keep="last")
        .sort("window_start", "instance_id")
    )


def _read(
    store: ObjectStore, prefix: str, schema: pa.Schema, start: datetime, end: datetime
) -> pl.DataFrame:
    keys = []
    day = start.replace(hour=0, minute=0, second=0, microsecond=0)
    while day < end:
        keys += store.list_keys(f"{prefix}/{day:%Y-%m-%d}/", ".parquet")
        day += timedelta(days=1)
    if not keys:
        return _empty(schema)
    frame = pl.concat([pl.DataFrame(pl.from_arrow(store.read_table(key))) for key in keys])
    return frame.filter((pl.col("window_start") >= start) & (pl.col("window_start") < end))


def _empty(schema: pa.Schema) -> pl.DataFrame:
    return pl.DataFrame(pl.from_arrow(schema.empty_table()))
