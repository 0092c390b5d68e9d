"""Load the store's feature rows and join their true labels (incidents, point labels)."""

from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import polars as pl
from numpy.typing import NDArray

from contracts.dataset import read_dataset_info
from contracts.features import ID_COLUMNS, INSTANCE_ID, TIMESTAMP, feature_columns
from contracts.layout import FEATURES_PREFIX, INCIDENTS_PATH, POINT_LABELS_PATH
from contracts.store import ObjectStore
from training.review_queue import row_id_expr

TRUE_LABEL = "true_label"
ROW_ID = "row_id"


class NoTrainingDataError(ValueError):
    """The store holds no feature rows to train on."""


class InsufficientLabelsError(ValueError):
    """The held-out test rows lack the true labels an honest evaluation needs."""


@dataclass(frozen=True)
class TrainingData:
    """Feature rows and their true labels, in (instance_id, timestamp) order."""

    rows: pl.DataFrame  # instance_id, timestamp, row_id, true_label (Int8, null = unknown)
    features: NDArray[Any]  # float32, one column per feature name
    feature_names: list[str]
    dataset: str
    metrics: list[str]


def join_labels(
    rows: pl.DataFrame, incidents: pl.DataFrame | None, points: pl.DataFrame | None
) -> pl.Series:
    """The true label of each feature row.

    A point label wins where one exists (its null means "unknown"); otherwise a row inside an
    incident of its instance (start and end inclusive) is 1; when an incident list exists the
    dataset is labelled, so every other row is 0; with neither, the label is null.

    Args:
        rows: instance_id and timestamp (UTC) per feature row.
        incidents: ``contracts.labels.INCIDENTS_SCHEMA`` rows, or None if the store has none.
        points: ``contracts.labels.POINT_LABELS_SCHEMA`` rows, or None.

    Returns:
        Int8 series named ``true_label``, aligned with ``rows``.

    Raises:
        ValueError: an incident ends before it starts, or a point is labelled twice.
    """
    keys = rows.select(
        INSTANCE_ID, pl.col(TIMESTAMP).cast(pl.Datetime("ms", "UTC"))
    ).with_row_index("__row")
    label = pl.lit(None, dtype=pl.Int8)
    if incidents is not None:
        inside = _inside_incidents(keys, incidents)
        label = pl.when(pl.Series(inside)).then(pl.lit(1, pl.Int8)).otherwise(pl.lit(0, pl.Int8))
    labelled = keys.with_columns(label.alias(TRUE_LABEL))
    if points is not None:
        points = points.select(
            INSTANCE_ID,
            pl.col(TIMESTAMP).cast(pl.Datetime("ms", "UTC")),
            pl.col("label").cast(pl.Int8).alias("__point"),
        )
        repeated = points.filter(pl.struct(INSTANCE_ID, TIMESTAMP).is_duplicated())
        if repeated.height:
            first = repeated.row(0, named=True)
            raise ValueError(
                f"point labels repeat {repeated.height} rows, e.g. {first[INSTANCE_ID]} at "
                f"{first[TIMESTAMP]}"
            )
        labelled = (
            labelled.join(
                points.with_columns(pl.lit(True).alias("__has_point")),
                on=[INSTANCE_ID, TIMESTAMP],
                how="left",
            )
            .with_columns(
                pl.when(pl.col("__has_point"))
                .then(pl.col("__point"))
                .otherwise(pl.col(TRUE_LABEL))
                .alias(TRUE_LABEL)
            )
            .sort("__row")
        )
    return labelled[TRUE_LABEL].cast(pl.Int8)


def _inside_incidents(keys: pl.DataFrame, incidents: pl.DataFrame) -> NDArray[Any]:
    """Whether each row lies in an incident of its instance (intervals merged, then as-of)."""
    spans = incidents.select(
        INSTANCE_ID,
        pl.col("start").cast(pl.Datetime("ms", "UTC")),
        pl.col("end").cast(pl.Datetime("ms", "UTC")),
    )
    if (backwards := spans.filter(pl.col("end") < pl.col("start"))).height:
        first = backwards.row(0, named=True)
        raise ValueError(f"incident on {first[INSTANCE_ID]} ends before it starts: {first}")
    # Overlapping incidents are merged so that the latest start before a row decides alone.
    merged = (
        spans.sort(INSTANCE_ID, "start")
        .with_columns(
            pl.col("end").cum_max().shift(1).over(INSTANCE_ID).alias("__reach"),
        )
        .with_columns(
            (pl.col("__reach").is_null() | (pl.col("start") > pl.col("__reach")))
            .cum_sum()
            .over(INSTANCE_ID)
            .alias("__group")
        )
        .group_by(INSTANCE_ID, "__group")
        .agg(pl.col("start").min(), pl.col("end").max())
        .sort("start")
    )
    matched = (
        keys.sort(TIMESTAMP)
        .join_asof(
            merged, left_on=TIMESTAMP, right_on="start", by=INSTANCE_ID, check_sortedness=False
        )
        .sort("__row")
    )
    return (matched["end"].is_not_null() & (matched[TIMESTAMP] <= matched["end"])).to_numpy()


def load_training_data(store: ObjectStore, since: date | None = None) -> TrainingData:
    """Every feature row in the store (of the days from ``since`` on, when given), with its
    true label.

    Args:
        store: holds ``processed-logs/*/features.parquet``, ``dataset.json`` and the labels.
        since: the first UTC day to train on; None: every day.

    Returns:
        Rows sorted by (instance_id, timestamp) and their float32 feature matrix.

    Raises:
        NoTrainingDataError: no feature file or no rows.
        ValueError: a file lacks contract columns, a row repeats, or a feature is NaN/inf.
    """
    info = read_dataset_info(store)
    names = feature_columns(info.metrics)
    keys = store.list_keys(FEATURES_PREFIX, "features.parquet")
    if not keys:
        raise NoTrainingDataError(
            f"no features under {store.uri}/{FEATURES_PREFIX}: run the feature job first"
        )
    if since is not None:
        newest = max(_feature_day(key) for key in keys)
        keys = [key for key in keys if _feature_day(key) >= since]
        if not keys:
            raise NoTrainingDataError(
                f"no features from {since} on under {store.uri}/{FEATURES_PREFIX} "
                f"(the newest day is {newest})"
            )
    tables = []
    for key in keys:
        present = set(store.parquet_file(key).schema_arrow.names)
        if missing := [c for c in (*ID_COLUMNS, *names) if c not in present]:
            raise ValueError(
                f"{key} lacks {len(missing)} contract column(s) for dataset {info.name!r}, "
                f"e.g. {missing[:5]}"
            )
        tables.append(pl.DataFrame(store.read_table(key, columns=[*ID_COLUMNS, *names])))
    frame = pl.concat(tables).sort(INSTANCE_ID, TIMESTAMP)
    if frame.height == 0:
        raise NoTrainingDataError(f"the feature files under {store.uri} hold no rows")
    if (repeated := frame.select(ID_COLUMNS).is_duplicated()).any():
        first = frame.filter(repeated).row(0, named=True)
        raise ValueError(
            f"feature rows repeat (instance_id, timestamp), e.g. {first[INSTANCE_ID]} at "
            f"{first[TIMESTAMP]}"
        )
    features = frame.select(names).to_numpy().astype(np.float32, copy=False)
    require_finite(features, names)
    rows = frame.select(ID_COLUMNS).with_columns(row_id_expr().alias(ROW_ID))
    incidents = _optional_table(store, INCIDENTS_PATH)
    points = _optional_table(store, POINT_LABELS_PATH)
    rows = rows.with_columns(join_labels(rows, incidents, points))
    return TrainingData(rows, np.ascontiguousarray(features), names, info.name, list(info.metrics))


def _feature_day(key: str) -> date:
    """The UTC day of a ``processed-logs/YYYY-MM-DD/features.parquet`` key."""
    return date.fromisoformat(key.removeprefix(f"{FEATURES_PREFIX}/").split("/")[0])


def require_finite(features: NDArray[Any], names: list[str]) -> None:
    """Raise ValueError naming the columns that hold NaN or infinite values."""
    finite = np.isfinite(features)
    if finite.all():
        return
    bad = (~finite).sum(axis=0)
    columns = [f"{names[j]} ({int(bad[j])} rows)" for j in np.flatnonzero(bad)]
    raise ValueError(
        f"features hold NaN or infinite values in {len(columns)} column(s): {columns[:10]}"
    )


def _optional_table(store: ObjectStore, key: str) -> pl.DataFrame | None:
    if not store.exists(key):
        return None
    return pl.from_arrow(store.read_table(key))  # type: ignore[return-value]


def require_test_labels(test_labels: NDArray[np.float64], method: str) -> None:
    """Raise InsufficientLabelsError unless the test rows hold true anomalies and normals.

    Args:
        test_labels: the test rows' true labels, NaN where unknown.
        method: the split method, for the message.
    """
    known = test_labels[~np.isnan(test_labels)]
    anomalies = int((known == 1).sum())
    if anomalies == 0 or anomalies == len(known):
        raise InsufficientLabelsError(
            f"the held-out test rows ({len(test_labels)} rows, split '{method}') hold "
            f"{len(known)} true labels of which {anomalies} anomalies; an honest evaluation "
            "needs both classes: add labelled incidents covering the latest data, or use "
            "split.method: stratified"
        )
