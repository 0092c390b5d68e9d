"""Numenta Anomaly Benchmark, realAWSCloudwatch, in its published layout.

``realAWSCloudwatch/*.csv`` (``timestamp,value``, 5-minute steps, read as UTC) and
``labels/combined_windows.json`` (anomaly windows ``[start, end]`` per file). One entity per
file, named by the file stem, with the one CloudWatch metric the file holds. NAB has no
train/test split: every row is in split "test", labelled 1 inside a window and 0 outside, and
each window is an incident of type "unknown" explained by that metric.
"""

import json
import logging
from datetime import datetime
from pathlib import Path

import polars as pl

from training.datasets.published_files import (
    DatasetFormatError,
    find_file,
    read_bytes,
    read_text,
    require_dir,
    stems,
)
from training.datasets.segments import INCIDENT_COLUMNS, UNKNOWN_INCIDENT_TYPE
from training.datasets.tidy import TEST_SPLIT, TIMESTAMP_TYPE, DatasetFrames

logger = logging.getLogger(__name__)

NAB_STEP_SECONDS = 300
NAB_SERIES_DIR = "realAWSCloudwatch"
LABELS_DIR = "labels"
WINDOWS_FILE = "combined_windows.json"
CSV_SUFFIX = ".csv"
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
    """The file stems of the series, e.g. ``["ec2_cpu_utilization_24ae8d", ...]``."""
    return stems(source_path / NAB_SERIES_DIR, CSV_SUFFIX)


def cloudwatch_metric(stem: str) -> tuple[str, str]:
    """The (CloudWatch metric, source) a NAB series holds, from its file stem.

    Raises:
        DatasetFormatError: for a series whose metric is not known.
    """
    for (prefix, suffix), metric_and_source in _METRIC_BY_STEM:
        if stem.startswith(prefix) and stem.endswith(suffix):
            return metric_and_source
    raise DatasetFormatError(
        f"{stem}{CSV_SUFFIX}: no CloudWatch metric is known for this series; "
        "leave it out with the entities argument"
    )


def read_nab(source_path: Path, series: list[str]) -> DatasetFrames:
    """Telemetry, window labels and incidents of ``series``.

    Rows repeated with the same timestamp and value are kept once (NAB's
    ec2_disk_write_bytes_1ef3de repeats a DST-shifted timestamp); a timestamp repeated with
    different values raises.

    Args:
        source_path: the folder holding ``realAWSCloudwatch/`` and ``labels/``.
        series: file stems as listed by list_nab_series.

    Raises:
        DatasetFormatError: a file is missing or malformed, a series has no entry in the
            windows file, or a window holds no row.
    """
    series_dir = require_dir(source_path / NAB_SERIES_DIR)
    windows_path = find_file(require_dir(source_path / LABELS_DIR), WINDOWS_FILE)
    windows = _parse_windows(read_text(windows_path), windows_path)
    telemetry, incidents, metrics = [], [], []
    for stem in series:
        metric, source = cloudwatch_metric(stem)
        key = f"{NAB_SERIES_DIR}/{stem}{CSV_SUFFIX}"
        if key not in windows:
            raise DatasetFormatError(f"{windows_path}: no entry for {key}")
        frame = _read_series(find_file(series_dir, f"{stem}{CSV_SUFFIX}"), metric)
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
    return DatasetFrames(
        name="nab",
        step_seconds=NAB_STEP_SECONDS,
        metrics=list(dict.fromkeys(metrics)),
        telemetry=pl.concat(telemetry, how="diagonal"),
        incidents=pl.DataFrame(incidents, schema=INCIDENT_COLUMNS, orient="row"),
    )


def _read_series(path: Path, metric: str) -> pl.DataFrame:
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
        pl.col("value").str.strip_chars().cast(pl.Float64, strict=False),
    )
    bad = frame.with_row_index("row").filter(
        pl.col("timestamp").is_null() | ~pl.col("value").is_finite().fill_null(False)
    )
    if not bad.is_empty():
        row = int(bad["row"][0])
        raise DatasetFormatError(
            f"{path}: data row {row + 1} {raw.row(row)} has a malformed timestamp or a "
            f"missing, non-numeric, NaN or infinite {metric} value"
        )
    unique = frame.unique(maintain_order=True)
    if unique["timestamp"].is_duplicated().any():
        stamp = unique.filter(pl.col("timestamp").is_duplicated())["timestamp"][0]
        raise DatasetFormatError(f"{path}: timestamp {stamp} appears with different values")
    if unique.height < frame.height:
        logger.warning(
            "%s: %d repeated rows (same timestamp and value) kept once",
            path,
            frame.height - unique.height,
        )
    return unique.sort("timestamp").cast({"timestamp": TIMESTAMP_TYPE})


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
