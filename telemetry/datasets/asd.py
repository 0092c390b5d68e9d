"""Application Server Dataset (NetManAIOps/InterFusion, KDD'21) in its published layout.

``processed/omi-N_{train,test,test_label}.pkl`` (pickled NumPy arrays, loaded with the
restricted unpickler), ``interpretation_label/omi-N.txt`` (``start-end:d1,d2,...``) and
``interpretation_label/anomaly_type.txt`` (``dataset,anomaly_segment,anomaly_type``). 19
metrics at 5-minute steps, no timestamps: train rows are laid on the synthetic timeline first
and test rows right after (see tidy.SYNTHETIC_EPOCH). A NaN in a pickle is a missing value,
imported as a gap (see tidy.py); overlapping segments of different types make one incident
that keeps both types (see segments.py).
"""

import csv
import io
from pathlib import Path

import polars as pl

from telemetry.datasets.published_files import (
    DatasetFormatError,
    find_file,
    read_text,
    require_dir,
    stems,
)
from telemetry.datasets.safe_pickle import load_numpy_array
from telemetry.datasets.segments import PublishedSegment, build_incidents, parse_interpretation
from telemetry.datasets.tidy import (
    TEST_SPLIT,
    DatasetFrames,
    count_missing,
    split_series_frame,
)

ASD_STEP_SECONDS = 300
ASD_SOURCE = "app"
ASD_TRAIN_SUFFIX = "_train.pkl"
ANOMALY_TYPES_FILE = "anomaly_type.txt"
# dataset-description.pdf says the metric names were removed to protect the data providers
# ("CPU-related, memory-related, network and virtual machine metrics"), so they are numbered.
ASD_METRICS = tuple(f"asd_metric_{number:02d}" for number in range(1, 20))


def list_asd_servers(source_path: Path) -> list[str]:
    """The servers with a train file, e.g. ``["omi-1", "omi-2"]``."""
    return stems(source_path / "processed", ASD_TRAIN_SUFFIX)


def read_asd(source_path: Path, servers: list[str]) -> DatasetFrames:
    """Telemetry, labels and incidents (with their published types) of ``servers``.

    Args:
        source_path: the folder holding ``processed/`` and ``interpretation_label/``.
        servers: server names as listed by list_asd_servers.

    Raises:
        DatasetFormatError: a file is missing or malformed, or the labels do not match the
            test rows.
        pickle.UnpicklingError: a pickle names a global other than NumPy's array machinery.
    """
    processed = require_dir(source_path / "processed")
    interpretation_dir = require_dir(source_path / "interpretation_label")
    types_path = find_file(interpretation_dir, ANOMALY_TYPES_FILE)
    types = _parse_anomaly_types(read_text(types_path), types_path)
    metrics = list(ASD_METRICS)
    telemetry, incidents = [], []
    for server in servers:
        labels = load_numpy_array(find_file(processed, f"{server}_test_label.pkl"))
        frame = split_series_frame(
            instance_id=server,
            source=ASD_SOURCE,
            metrics=metrics,
            train=load_numpy_array(find_file(processed, f"{server}_train.pkl")),
            test=load_numpy_array(find_file(processed, f"{server}_test.pkl")),
            test_labels=labels,
            step_seconds=ASD_STEP_SECONDS,
        )
        interpretation_path = find_file(interpretation_dir, f"{server}.txt")
        published = parse_interpretation(
            read_text(interpretation_path), interpretation_path, len(metrics)
        )
        telemetry.append(frame)
        incidents.append(
            build_incidents(
                instance_id=server,
                labels=labels.reshape(-1),
                test_timestamps=frame.filter(pl.col("split") == TEST_SPLIT)["timestamp"],
                metrics=metrics,
                published=[*published, *types.get(server, [])],
                origin=f"{interpretation_path} and {types_path}",
            )
        )
    combined = pl.concat(telemetry)
    return DatasetFrames(
        name="asd",
        step_seconds=ASD_STEP_SECONDS,
        metrics=metrics,
        telemetry=combined,
        incidents=pl.concat(incidents),
        missing_values=count_missing(combined, metrics),
    )


def _parse_anomaly_types(text: str, path: Path) -> dict[str, list[PublishedSegment]]:
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows or set(rows[0]) != {"dataset", "anomaly_segment", "anomaly_type"}:
        raise DatasetFormatError(
            f"{path}: expected a header 'dataset,anomaly_segment,anomaly_type' and rows"
        )
    types: dict[str, list[PublishedSegment]] = {}
    for number, row in enumerate(rows, start=2):
        start, dash, end = (row["anomaly_segment"] or "").partition("-")
        if not (dash and start.isdigit() and end.isdigit() and row["anomaly_type"]):
            raise DatasetFormatError(f"{path} line {number}: expected 'omi-N,start-end,type'")
        segment = PublishedSegment(int(start), int(end), incident_type=row["anomaly_type"])
        types.setdefault(row["dataset"], []).append(segment)
    return types
