"""The tidy frames every dataset reader returns: one wide row per (entity, timestamp).

Published files have quirks; every reader imports them by the same rules, and the import
summary counts each:

- Missing values: an empty cell or a NaN is a missing value. Its row is kept with its label,
  the metric is null there, no raw metric row is written for it, and the feature job treats
  it as any gap (forward-filled from the entity's last value, see contracts/features.py).
  Infinite values and text that is not a number are still refused: that is a broken file.
- Repeated timestamps (NAB): the rows of a series that share a timestamp become one row
  holding the mean of their values (missing ones left out), so that no value is preferred
  over another and an exact repeat changes nothing.
- Gaps and irregular steps (NAB): rows keep their published timestamps. The feature job lays
  them on the dataset's step grid: samples that share a step are averaged and a step without
  a sample is a gap, filled as above.
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import polars as pl
from numpy.typing import NDArray

from telemetry.datasets.published_files import DatasetFormatError

# SMD and ASD publish contiguous samples without timestamps. They are laid on a timeline that
# starts here, train rows first and test rows right after; a Monday at 00:00 UTC, so that
# day-of-week and business-hour features start on a day boundary.
SYNTHETIC_EPOCH = datetime(2026, 1, 5, tzinfo=UTC)
TIMESTAMP_TYPE = pl.Datetime("ms", "UTC")
TRAIN_SPLIT = "train"
TEST_SPLIT = "test"


@dataclass(frozen=True)
class DatasetFrames:
    """What a reader found in a published dataset.

    Attributes:
        name: smd, asd or nab.
        step_seconds: the sampling step of the series.
        metrics: metric names in the dataset's order.
        telemetry: one row per (instance_id, timestamp): timestamp, instance_id, source,
            split and label, then one Float64 column per metric, null where the entity does
            not publish that metric. ``label`` (Int8) is 0/1 on labelled rows and null on
            unlabelled ones; ``split`` is train or test.
        incidents: the anomalous segments, with the columns of INCIDENTS_SCHEMA.
        missing_values: (entity, timestamp, metric) values published empty or NaN, kept as
            gaps (see the module docstring).
        repeated_timestamps: rows merged into an earlier row of their series with the same
            timestamp (0 for datasets without timestamps).
    """

    name: str
    step_seconds: int
    metrics: list[str]
    telemetry: pl.DataFrame
    incidents: pl.DataFrame
    missing_values: int
    repeated_timestamps: int = 0


def split_series_frame(
    *,
    instance_id: str,
    source: str,
    metrics: list[str],
    train: NDArray[Any],
    test: NDArray[Any],
    test_labels: NDArray[Any],
    step_seconds: int,
) -> pl.DataFrame:
    """Train and test arrays of one entity as telemetry rows on the synthetic timeline.

    Args:
        instance_id: the entity, e.g. ``machine-1-2``.
        source: the telemetry source of the entity.
        metrics: one name per column of ``train`` and ``test``.
        train: (rows, metrics) samples without labels; NaN where a value is missing.
        test: (rows, metrics) samples that follow ``train`` directly.
        test_labels: one 0/1 per test row.
        step_seconds: time between two samples.

    Raises:
        DatasetFormatError: on a shape that does not match, an infinite value or a label
            other than 0/1; the message names the entity.
    """
    for split, values in ((TRAIN_SPLIT, train), (TEST_SPLIT, test)):
        _require_number_matrix(instance_id, split, values, len(metrics))
    labels = _checked_labels(instance_id, test_labels, len(test))
    n_train, n_test = len(train), len(test)
    offsets_ms = np.arange(n_train + n_test, dtype=np.int64) * (step_seconds * 1000)
    epoch_ms = int(SYNTHETIC_EPOCH.timestamp() * 1000)
    values = np.vstack([train, test]).astype(np.float64)
    return pl.DataFrame(
        [
            pl.from_epoch(pl.Series("timestamp", epoch_ms + offsets_ms), time_unit="ms")
            .dt.replace_time_zone("UTC")
            .cast(TIMESTAMP_TYPE),
            pl.repeat(instance_id, n_train + n_test, eager=True).alias("instance_id"),
            pl.repeat(source, n_train + n_test, eager=True).alias("source"),
            pl.concat(
                [
                    pl.repeat(TRAIN_SPLIT, n_train, eager=True),
                    pl.repeat(TEST_SPLIT, n_test, eager=True),
                ]
            ).alias("split"),
            pl.concat(
                [
                    pl.repeat(None, n_train, dtype=pl.Int8, eager=True),
                    pl.Series(labels, dtype=pl.Int8),
                ]
            ).alias("label"),
            *(pl.Series(name, values[:, i], nan_to_null=True) for i, name in enumerate(metrics)),
        ]
    )


def count_missing(telemetry: pl.DataFrame, metrics: list[str]) -> int:
    """The null values of ``metrics`` in a telemetry frame whose entities publish them all."""
    return int(telemetry.select(pl.sum_horizontal(pl.col(metrics).null_count())).item())


def _require_number_matrix(entity: str, split: str, values: NDArray[Any], columns: int) -> None:
    if values.ndim != 2 or values.shape[1] != columns:
        raise DatasetFormatError(
            f"{entity} {split}: expected a (rows, {columns}) array, got shape {values.shape}"
        )
    if values.dtype.kind not in "fiu":
        raise DatasetFormatError(f"{entity} {split}: expected numbers, got dtype {values.dtype}")
    bad_rows = np.flatnonzero(np.isinf(values).any(axis=1))
    if bad_rows.size:
        raise DatasetFormatError(
            f"{entity} {split}: row {int(bad_rows[0]) + 1} holds an infinite value "
            f"({bad_rows.size} such rows in all)"
        )


def _checked_labels(entity: str, labels: NDArray[Any], test_rows: int) -> NDArray[Any]:
    flat = labels.reshape(-1) if labels.ndim == 2 and labels.shape[1] == 1 else labels
    if flat.ndim != 1 or len(flat) != test_rows:
        raise DatasetFormatError(
            f"{entity}: test_label has shape {labels.shape}, expected one label per test row "
            f"({test_rows})"
        )
    if flat.dtype.kind not in "fiub" or not np.isin(flat, (0, 1)).all():
        raise DatasetFormatError(f"{entity}: test_label must hold only 0 and 1")
    return flat.astype(np.int8)
