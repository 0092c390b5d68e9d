"""Numenta Anomaly Benchmark in its published layout.

Every category folder NAB publishes (``NAB_CATEGORIES``: ``realAWSCloudwatch/``,
``realKnownCause/``, ...), directly under the dataset folder or under its ``data/`` as in
the NAB repository, holds ``*.csv`` series (``timestamp,value``, read as UTC), and
``labels/combined_windows.json`` holds the anomaly windows ``[start, end]`` of each series,
keyed ``category/file.csv``. NAB has no train/test split: every row is in split "test",
labelled 1 inside a window and 0 outside, and each window is an incident of type "unknown"
explained by the series' metric.

Naming: one entity per series, named by its file stem in every category (e.g.
``ec2_cpu_utilization_24ae8d``, ``nyc_taxi``). NAB's stems are unique across categories; a
layout where two categories hold the same stem is refused rather than guessed.

Metrics: a realAWSCloudwatch series named after a CloudWatch metric (``_METRIC_BY_STEM``)
holds that metric; any other series (another category, or e.g. ``grok_asg_anomaly``) holds
the generic metric ``nab_value`` from source ``app``, so that it still has feature columns.

Quirks, by the rules of tidy.py: an empty or NaN value is a missing value; rows repeating a
timestamp become one row with the mean of their values (NaN left out; an exact repeat, as
the DST-shifted hour of ec2_disk_write_bytes_1ef3de, changes nothing); gaps and irregular
steps are kept as published. The dataset's step is the smallest median interval between
consecutive rows among the imported series (300 s for realAWSCloudwatch), so a series
imported alone keeps its own step and none is coarsened when several are imported together.
A row whose timestamp is empty or malformed is refused.
"""

import json
import logging
from datetime import datetime
from pathlib import Path

import polars as pl

from telemetry.datasets.published_files import (
    DatasetFormatError,
    find_file,
    parse_numbers,
    read_bytes,
    read_text,
    require_dir,
    stems,
)
from telemetry.datasets.segments import INCIDENT_COLUMNS, UNKNOWN_INCIDENT_TYPE
from telemetry.datasets.tidy import TEST_SPLIT, TIMESTAMP_TYPE, DatasetFrames

logger = logging.getLogger(__name__)

NAB_STEP_SECONDS = 300  # the step of a dataset whose series have fewer than two rows
CLOUDWATCH_CATEGORY = "realAWSCloudwatch"
NAB_CATEGORIES = (
    "artificialNoAnomaly",
    "artificialWithAnomaly",
    CLOUDWATCH_CATEGORY,
    "realAdExchange",
    "realKnownCause",
    "realTraffic",
    "realTweets",
)
DATA_DIR = "data"
LABELS_DIR = "labels"
WINDOWS_FILE = "combined_windows.json"
CSV_SUFFIX = ".csv"
# Not "value": a metric column must not share a name with a column of RAW_SCHEMA.
GENERIC_METRIC = "nab_value"
GENERIC_SOURCE = "app"
# (stem prefix, stem suffix) -> (CloudWatch metric, source); NAB names files after them.
_METRIC_BY_STEM = (
    (("ec2_cpu_utilization_", ""), ("CPUUtilization", "ec2")),
    (("ec2_disk_write_bytes_", ""), ("DiskWriteBytes", "ec2")),
    (("ec2_network_in_", ""), ("NetworkIn", "ec2")),
    (("elb_request_count_", ""), ("RequestCount", "alb")),
    (("rds_cpu_utilization_", ""), ("CPUUtilization", "rds")),
    (("", "_NetworkIn"), ("NetworkIn", "ec2")),
)
_TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"
_WINDOW_FORMAT = "%Y-%m-%d %H:%M:%S%.f"


def list_nab_series(source_path: Path) -> list[str]:
    """The entities of every category, sorted, e.g. ``["ec2_cpu_utilization_24ae8d", ...]``.

    Raises:
        DatasetFormatError: no category folder exists, or two categories hold one stem.
    """
    return sorted(_series_categories(source_path))


def series_metric(category: str, stem: str) -> tuple[str, str]:
    """The (metric, source) a NAB series holds, from its category and file stem."""
    if category == CLOUDWATCH_CATEGORY:
        for (prefix, suffix), metric_and_source in _METRIC_BY_STEM:
            if stem.startswith(prefix) and stem.endswith(suffix):
                return metric_and_source
    return GENERIC_METRIC, GENERIC_SOURCE


def read_nab(source_path: Path, series: list[str]) -> DatasetFrames:
    """Telemetry, window labels and incidents of ``series``.

    Args:
        source_path: the folder holding the category folders (or ``data/``) and ``labels/``.
        series: entities as listed by list_nab_series.

    Raises:
        DatasetFormatError: a file is missing or malformed, a series has no entry in the
            windows file, or a window holds no row.
    """
    categories = _series_categories(source_path)
    windows_path = find_file(require_dir(source_path / LABELS_DIR), WINDOWS_FILE)
    windows = _parse_windows(read_text(windows_path), windows_path)
    telemetry, incidents, metrics = [], [], []
    missing = repeated = 0
    for stem in series:
        category = categories[stem]
        metric, source = series_metric(category, stem)
        key = f"{category}/{stem}{CSV_SUFFIX}"
        if key not in windows:
            raise DatasetFormatError(f"{windows_path}: no entry for {key}")
        path = find_file(_series_root(source_path) / category, f"{stem}{CSV_SUFFIX}")
        frame, merged = _read_series(path)
        in_window = pl.lit(False)
        for start, end in windows[key]:
            in_window = in_window | pl.col("timestamp").is_between(start, end)
            inside = frame.filter(pl.col("timestamp").is_between(start, end))["timestamp"]
            if inside.is_empty():
                raise DatasetFormatError(
                    f"{windows_path}: window {start} to {end} of {key} holds no row"
                )
            incidents.append((stem, inside.min(), inside.max(), UNKNOWN_INCIDENT_TYPE, [metric]))
        telemetry.append(
            frame.select(
                "timestamp",
                pl.lit(stem).alias("instance_id"),
                pl.lit(source).alias("source"),
                pl.lit(TEST_SPLIT).alias("split"),
                in_window.cast(pl.Int8).alias("label"),
                pl.col("value").alias(metric),
            )
        )
        metrics.append(metric)
        missing += frame["value"].null_count()
        repeated += merged
    return DatasetFrames(
        name="nab",
        step_seconds=_step_seconds(telemetry),
        metrics=list(dict.fromkeys(metrics)),
        telemetry=pl.concat(telemetry, how="diagonal"),
        incidents=pl.DataFrame(incidents, schema=INCIDENT_COLUMNS, orient="row"),
        missing_values=missing,
        repeated_timestamps=repeated,
    )


def _series_root(source_path: Path) -> Path:
    """Where the category folders are: ``data/`` (the NAB repository) or the folder itself."""
    nested = source_path / DATA_DIR
    return require_dir(nested if nested.is_dir() else source_path)


def _series_categories(source_path: Path) -> dict[str, str]:
    """The category of each series, by stem."""
    root = _series_root(source_path)
    found = [c for c in NAB_CATEGORIES if (root / c).is_dir()]
    if not found:
        raise DatasetFormatError(
            f"no NAB category folder ({', '.join(NAB_CATEGORIES)}) found under {root}"
        )
    categories: dict[str, str] = {}
    for category in found:
        for stem in stems(root / category, CSV_SUFFIX):
            if stem in categories:
                raise DatasetFormatError(
                    f"{root}: {stem}{CSV_SUFFIX} is in both {categories[stem]}/ and "
                    f"{category}/; keep one"
                )
            categories[stem] = category
    return categories


def _read_series(path: Path) -> tuple[pl.DataFrame, int]:
    """The series with one row per timestamp (value null where missing), and how many rows
    repeating an earlier timestamp were merged into it (module docstring)."""
    try:
        raw = pl.read_csv(read_bytes(path), infer_schema=False)
    except pl.exceptions.PolarsError as exc:
        raise DatasetFormatError(f"{path}: not a timestamp,value CSV ({exc})") from exc
    if raw.columns != ["timestamp", "value"]:
        raise DatasetFormatError(
            f"{path}: expected the header 'timestamp,value', got {','.join(raw.columns)}"
        )
    frame = raw.select(
        pl.col("timestamp")
        .str.strptime(pl.Datetime("ms"), _TIMESTAMP_FORMAT, strict=False)
        .dt.replace_time_zone("UTC"),
        parse_numbers("value"),
    )
    bad = frame.with_row_index("row").filter(
        pl.col("timestamp").is_null() | pl.col("value").is_null()
    )
    if not bad.is_empty():
        row = int(bad["row"][0])
        raise DatasetFormatError(
            f"{path}: data row {row + 1} {raw.row(row)} has an empty or malformed timestamp, "
            "or a value that is not a number or is infinite"
        )
    merged = (
        frame.with_columns(pl.col("value").fill_nan(None))
        .group_by("timestamp")
        .agg(pl.col("value").mean())
        .sort("timestamp")
    )
    repeated = frame.height - merged.height
    if repeated:
        logger.warning("%s: %d rows repeat a timestamp; each kept as the mean", path, repeated)
    return merged.cast({"timestamp": TIMESTAMP_TYPE}), repeated


def _step_seconds(series: list[pl.DataFrame]) -> int:
    """The smallest median interval between consecutive rows among ``series`` (module
    docstring), in whole seconds."""
    medians = [
        frame.select(pl.col("timestamp").diff().dt.total_seconds().median()).item()
        for frame in series
        if frame.height > 1
    ]
    return max(1, round(float(min(medians)))) if medians else NAB_STEP_SECONDS


def _parse_windows(text: str, path: Path) -> dict[str, list[tuple[datetime, datetime]]]:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasetFormatError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(document, dict):
        raise DatasetFormatError(f"{path}: expected an object of file -> windows")
    windows: dict[str, list[tuple[datetime, datetime]]] = {}
    for key, pairs in document.items():
        if not isinstance(pairs, list) or not all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(t, str) for t in p)
            for p in pairs
        ):
            raise DatasetFormatError(f"{path}: {key}: expected a list of [start, end] strings")
        try:
            bounds = (
                pl.Series([t for pair in pairs for t in pair], dtype=pl.String)
                .str.strptime(pl.Datetime("ms"), _WINDOW_FORMAT)
                .dt.replace_time_zone("UTC")
                .to_list()
            )
        except pl.exceptions.PolarsError as exc:
            raise DatasetFormatError(f"{path}: {key}: malformed window timestamp ({exc})") from exc
        windows[key] = list(zip(bounds[0::2], bounds[1::2], strict=True))
    return windows
