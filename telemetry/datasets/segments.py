"""Anomalous segments: runs of 1s in the labels, and the published files that explain them.

Published segments may overlap (ASD labels some incidents with two segments of different
types). The labels decide which rows are anomalous, so overlapping segments make one incident
over the union of their rows; it keeps every type, joined by ``TYPE_SEPARATOR`` in published
order (e.g. ``metric+temporal``; ``-`` is not used because ``metric-temporal`` is itself a
published type), and the metrics of every segment.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from numpy.typing import NDArray

from telemetry.datasets.published_files import DatasetFormatError
from telemetry.datasets.tidy import TIMESTAMP_TYPE

UNKNOWN_INCIDENT_TYPE = "unknown"
TYPE_SEPARATOR = "+"
INCIDENT_COLUMNS = pl.Schema(
    {
        "instance_id": pl.String(),
        "start": TIMESTAMP_TYPE,
        "end": TIMESTAMP_TYPE,
        "incident_type": pl.String(),
        "metrics": pl.List(pl.String),
    }
)
_INTERPRETATION_LINE = re.compile(r"(\d+)-(\d+):(\d+(?:,\d+)*)")


@dataclass(frozen=True)
class PublishedSegment:
    """A segment of test rows from an interpretation or anomaly-type file.

    ``end`` is kept as published: SMD's files mostly give one past the last anomalous row and
    ASD's the last row, so segments are matched to the labels by overlap, never by bounds.
    """

    start: int
    end: int
    metric_numbers: tuple[int, ...] = ()  # 1-based columns that explain the anomaly
    incident_type: str = UNKNOWN_INCIDENT_TYPE


def label_segments(labels: NDArray[Any]) -> NDArray[Any]:
    """(first, last) row of every run of 1s in ``labels``, inclusive, as a (k, 2) array."""
    edges = np.diff(np.concatenate(([0], labels.astype(np.int8), [0])))
    return np.column_stack((np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1))


def parse_interpretation(text: str, path: Path, metric_count: int) -> list[PublishedSegment]:
    """The lines ``start-end:d1,d2,...`` of an interpretation_label file.

    Raises:
        DatasetFormatError: on a malformed line, ``start > end`` or a metric number outside
            1..``metric_count``; the message names the file and the line.
    """
    segments = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        match = _INTERPRETATION_LINE.fullmatch(line.strip())
        if match is None:
            raise DatasetFormatError(f"{path} line {number}: expected 'start-end:d1,d2,...'")
        start, end = int(match[1]), int(match[2])
        metric_numbers = tuple(int(d) for d in match[3].split(","))
        if start > end:
            raise DatasetFormatError(f"{path} line {number}: start {start} is after end {end}")
        if not all(1 <= d <= metric_count for d in metric_numbers):
            raise DatasetFormatError(
                f"{path} line {number}: metric numbers must lie in 1..{metric_count}"
            )
        segments.append(PublishedSegment(start, end, metric_numbers))
    return segments


def build_incidents(
    *,
    instance_id: str,
    labels: NDArray[Any],
    test_timestamps: pl.Series,
    metrics: Sequence[str],
    published: Sequence[PublishedSegment],
    origin: str,
) -> pl.DataFrame:
    """One incident per run of anomalous test rows, explained by the published segments.

    The labels are the row-level truth, so they set each incident's bounds; the published
    segments overlapping it give its metrics and its types (each in published order, merged;
    see the module docstring).

    Args:
        instance_id: the entity.
        labels: one 0/1 per test row.
        test_timestamps: the timestamp of each test row.
        metrics: metric names, numbered from 1 in the published segments.
        published: interpretation and anomaly-type segments of this entity.
        origin: where ``published`` was read, for error messages.

    Raises:
        DatasetFormatError: when a published segment overlaps no anomalous row.
    """
    runs = label_segments(labels)
    bounds = np.array([(s.start, s.end) for s in published], dtype=np.int64).reshape(-1, 2)
    overlaps = (bounds[None, :, 0] <= runs[:, None, 1]) & (bounds[None, :, 1] >= runs[:, None, 0])
    orphans = np.flatnonzero(~overlaps.any(axis=0))
    if orphans.size:
        orphan = published[int(orphans[0])]
        raise DatasetFormatError(
            f"{origin}: segment {orphan.start}-{orphan.end} overlaps no anomalous row of the "
            "test labels"
        )
    explained_metrics: list[list[str] | None] = []
    incident_types: list[str] = []
    for hits in overlaps:
        matched = [published[i] for i in np.flatnonzero(hits)]
        numbers = dict.fromkeys(d for s in matched for d in s.metric_numbers)
        explained_metrics.append([metrics[d - 1] for d in numbers] if numbers else None)
        types = dict.fromkeys(
            s.incident_type for s in matched if s.incident_type != UNKNOWN_INCIDENT_TYPE
        )
        incident_types.append(TYPE_SEPARATOR.join(types) or UNKNOWN_INCIDENT_TYPE)
    return pl.DataFrame(
        {
            "instance_id": [instance_id] * len(runs),
            "start": test_timestamps.gather(runs[:, 0]),
            "end": test_timestamps.gather(runs[:, 1]),
            "incident_type": incident_types,
            "metrics": explained_metrics,
        },
        schema=INCIDENT_COLUMNS,
    )
