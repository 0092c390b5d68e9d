"""``vigil import-dataset``: a published dataset into the object store as raw telemetry.

What lands in the store: metric rows of RAW_SCHEMA, one Parquet file per UTC hour at
``raw_partition_path``; point labels and incidents under ``labels/``; and ``dataset.json``
(DatasetInfo), written last, so a store that has it holds a complete import.

Quirks of the published files (missing values, repeated timestamps, gaps and irregular steps)
are imported by the rules of ``telemetry.datasets.tidy`` and counted in the ImportSummary.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Literal

import polars as pl
import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from contracts.dataset import DatasetInfo, write_dataset_info
from contracts.labels import INCIDENTS_SCHEMA, POINT_LABELS_SCHEMA
from contracts.layout import (
    DATASET_INFO_PATH,
    INCIDENTS_PATH,
    LABELS_PREFIX,
    POINT_LABELS_PATH,
    RAW_PREFIX,
    raw_partition_path,
)
from contracts.store import ObjectStore
from contracts.telemetry import RAW_SCHEMA
from telemetry.datasets.asd import list_asd_servers, read_asd
from telemetry.datasets.nab import list_nab_series, read_nab
from telemetry.datasets.published_files import DatasetFormatError
from telemetry.datasets.smd import list_smd_machines, read_smd
from telemetry.datasets.tidy import DatasetFrames

DatasetName = Literal["smd", "asd", "nab"]
PartitionProgress = Callable[[int, int], None]

_LISTERS: dict[str, Callable[[Path], list[str]]] = {
    "smd": list_smd_machines,
    "asd": list_asd_servers,
    "nab": list_nab_series,
}
_READERS: dict[str, Callable[[Path, list[str]], DatasetFrames]] = {
    "smd": read_smd,
    "asd": read_asd,
    "nab": read_nab,
}


class StoreNotEmptyError(ValueError):
    """The target store already holds telemetry or labels that an import would mix with."""


class ImportSummary(BaseModel):
    """What an import wrote, and how many quirks of the published files it met.

    ``missing_values``: values published empty or NaN, imported as gaps.
    ``repeated_timestamps``: rows merged into an earlier row of their series with the same
    timestamp (their mean is kept). ``irregular_steps``: intervals between consecutive rows of
    an entity other than ``step_seconds`` (gaps, or samples closer together).
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    entities: list[str]
    metrics: int
    rows: int
    partitions: int
    labelled_rows: int
    anomalous_rows: int
    anomaly_fraction: float
    incidents: int
    step_seconds: int
    missing_values: int
    repeated_timestamps: int
    irregular_steps: int


def import_dataset(
    name: DatasetName,
    source_path: Path,
    store: ObjectStore,
    entities: list[str] | None = None,
    on_partition: PartitionProgress | None = None,
) -> ImportSummary:
    """Read a published dataset and write it into an empty store.

    Args:
        name: smd, asd or nab.
        source_path: the dataset folder as published (for SMD, ``ServerMachineDataset`` or
            its parent).
        store: where to write; must hold no telemetry, labels or dataset.json yet.
        entities: the machines, servers or series to import (all of them when None).
        on_partition: called with (partitions written, partitions in all) after each hour.

    Returns:
        The entities, row counts, label figures and incident count written.

    Raises:
        ValueError: for an unknown dataset name or entity, or an empty entity list.
        DatasetFormatError: a file is missing or malformed (the message names it).
        pickle.UnpicklingError: an ASD pickle names a global other than NumPy's.
        StoreNotEmptyError: the store already holds data.
    """
    if name not in _READERS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(_READERS)}")
    selected = _select_entities(name, _LISTERS[name](source_path), entities, source_path)
    _require_empty(store)
    frames = _READERS[name](source_path, selected)
    rows, partitions = write_raw_partitions(store, frames, on_partition)
    labels = frames.telemetry.select("instance_id", "timestamp", "label", "split").sort(
        "instance_id", "timestamp"
    )
    store.write_table(POINT_LABELS_PATH, _as_schema(labels, POINT_LABELS_SCHEMA))
    store.write_table(INCIDENTS_PATH, _as_schema(frames.incidents, INCIDENTS_SCHEMA))
    write_dataset_info(
        store, DatasetInfo(name=name, step_seconds=frames.step_seconds, metrics=frames.metrics)
    )
    labelled = labels.height - labels["label"].null_count()
    anomalous = int(labels["label"].cast(pl.Int64).sum())
    return ImportSummary(
        name=name,
        entities=selected,
        metrics=len(frames.metrics),
        rows=rows,
        partitions=partitions,
        labelled_rows=labelled,
        anomalous_rows=anomalous,
        anomaly_fraction=anomalous / labelled if labelled else 0.0,
        incidents=frames.incidents.height,
        step_seconds=frames.step_seconds,
        missing_values=frames.missing_values,
        repeated_timestamps=frames.repeated_timestamps,
        irregular_steps=irregular_steps(frames.telemetry, frames.step_seconds),
    )


def write_raw_partitions(
    store: ObjectStore, frames: DatasetFrames, on_partition: PartitionProgress | None = None
) -> tuple[int, int]:
    """Write the telemetry as metric rows of RAW_SCHEMA, one Parquet file per UTC hour.

    Returns:
        (rows written, partitions written).
    """
    hours = frames.telemetry.with_columns(hour=pl.col("timestamp").dt.truncate("1h"))
    partitions = hours.partition_by("hour", as_dict=True, include_key=False)
    rows = 0
    for done, ((hour, *_), wide) in enumerate(sorted(partitions.items()), start=1):
        long = (
            wide.unpivot(
                index=["timestamp", "instance_id", "source"],
                on=frames.metrics,
                variable_name="name",
                value_name="value",
            )
            # Null only where an entity does not publish a metric (NAB); readers reject NaN.
            .drop_nulls("value")
            .sort("instance_id", "name", "timestamp")
            .select(
                "timestamp",
                "instance_id",
                "source",
                pl.lit("metric").alias("kind"),
                "name",
                "value",
                pl.lit(None, pl.String).alias("level"),
                pl.lit(None, pl.String).alias("message"),
                pl.lit(None, pl.String).alias("metadata"),
                # Provenance, as "<namespace>/<name>" for exported metrics: the dataset.
                pl.format("{}/{}", pl.lit(frames.name), pl.col("name")).alias("event_id"),
                pl.lit(False).alias("parse_error"),
            )
        )
        store.write_table(raw_partition_path(hour), _as_schema(long, RAW_SCHEMA))
        rows += long.height
        if on_partition is not None:
            on_partition(done, len(partitions))
    return rows, len(partitions)


def irregular_steps(telemetry: pl.DataFrame, step_seconds: int) -> int:
    """Intervals between consecutive rows of an entity that are not ``step_seconds`` long."""
    intervals = (
        telemetry.select("instance_id", "timestamp")
        .sort("instance_id", "timestamp")
        .select(pl.col("timestamp").diff().over("instance_id").dt.total_seconds())
        .to_series()
        .drop_nulls()
    )
    return int((intervals != step_seconds).sum())


def _as_schema(frame: pl.DataFrame, schema: pa.Schema) -> pa.Table:
    return pa.Table.from_batches(frame.to_arrow().cast(schema).to_batches(), schema=schema)


def _select_entities(
    name: str, available: list[str], requested: list[str] | None, source_path: Path
) -> list[str]:
    if not available:
        raise DatasetFormatError(f"no {name} entities found under {source_path}")
    if requested is None:
        return available
    if not requested:
        raise ValueError("entities is empty; pass None to import every entity")
    unknown = [entity for entity in requested if entity not in available]
    if unknown:
        raise ValueError(
            f"unknown {name} entities {unknown}; {source_path} has {', '.join(available)}"
        )
    return list(dict.fromkeys(requested))


def _require_empty(store: ObjectStore) -> None:
    held = [
        *store.list_keys(RAW_PREFIX)[:1],
        *store.list_keys(LABELS_PREFIX)[:1],
        *([DATASET_INFO_PATH] if store.exists(DATASET_INFO_PATH) else []),
    ]
    if held:
        raise StoreNotEmptyError(
            f"store {store.uri} already holds data ({held[0]}); import into an empty store"
        )
