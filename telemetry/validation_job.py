"""``vigil validate``: check a store's raw partitions and feature tables, day by day.

Each file gets its validation report written beside it (``*.quality.json``). The job checks
every file before judging, so one run lists every rejected batch, not only the first. A file
that is not readable Parquet is quarantined (``telemetry.quarantine``) and listed, and the
others are checked.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import polars as pl
import pyarrow as pa

from contracts.dataset import read_dataset_info
from contracts.features import feature_columns
from contracts.layout import features_path, raw_partition_path
from contracts.store import ObjectStore
from telemetry.feature_job import RawPartitionsNotFoundError, raw_days
from telemetry.quarantine import QuarantinedFile, read_or_quarantine
from telemetry.validation import validate_features, validate_raw
from telemetry.validation_report import DataValidationError, ValidationReport, write_report


@dataclass(frozen=True)
class FileQuality:
    """The verdict on one file."""

    key: str
    report: ValidationReport

    @property
    def passed(self) -> bool:
        return not self.report.failed_critical


@dataclass(frozen=True)
class StoreQuality:
    """The verdict on every file checked, and the files quarantined as unreadable."""

    files: tuple[FileQuality, ...]
    quarantined: tuple[QuarantinedFile, ...] = ()

    @property
    def rejected(self) -> list[FileQuality]:
        return [f for f in self.files if not f.passed]

    def quality_score(self, dataset: str) -> float:
        """Row-weighted mean quality score of the files of one dataset (raw or features)."""
        reports = [f.report for f in self.files if f.report.dataset == dataset]
        rows = sum(r.rows for r in reports)
        if not rows:
            return 100.0
        return round(sum(r.quality_score * r.rows for r in reports) / rows, 1)

    def raise_if_rejected(self) -> None:
        """Raise RejectedFilesError when any file failed a critical check."""
        if self.rejected:
            raise RejectedFilesError(self.rejected)


class RejectedFilesError(ValueError):
    """Files broke critical rules; the message names each file, rule, column and sample rows."""

    def __init__(self, rejected: list[FileQuality]) -> None:
        self.rejected = rejected
        super().__init__("\n".join(f"{f.key}: {DataValidationError(f.report)}" for f in rejected))


def validate_store(
    store: ObjectStore,
    day: date | None = None,
    on_file: Callable[[FileQuality], None] | None = None,
) -> StoreQuality:
    """Validate the raw partitions and the feature table of one UTC day, or of every day.

    Args:
        store: holds ``raw-logs/``, ``processed-logs/`` and ``dataset.json``.
        day: the UTC day; None checks every day with raw telemetry.
        on_file: called with each file's verdict once its report is written (progress).

    Returns:
        Every file's report; ``raise_if_rejected`` turns critical failures into an error.

    Raises:
        RawPartitionsNotFoundError: there is no raw telemetry for the day (or at all).
    """
    days = [day] if day is not None else raw_days(store)
    if not days:
        raise RawPartitionsNotFoundError(f"no raw partitions under {store.uri}/raw-logs/")
    features = feature_columns(read_dataset_info(store).metrics)
    checked: list[FileQuality] = []
    quarantined: list[QuarantinedFile] = []

    def check(key: str, validate: Callable[[pa.Table], ValidationReport]) -> None:
        table = read_or_quarantine(store, key)
        if isinstance(table, QuarantinedFile):
            quarantined.append(table)
            return
        report = validate(table)
        write_report(store, key, report)
        checked.append(quality := FileQuality(key, report))
        if on_file is not None:
            on_file(quality)

    for current in days:
        midnight = datetime.combine(current, time(), tzinfo=UTC)
        hours = [raw_partition_path(midnight + timedelta(hours=h)) for h in range(24)]
        for key in (k for k in hours if store.exists(k)):
            check(key, validate_raw)
        key = features_path(current)
        if store.exists(key):
            check(key, lambda table: validate_features(pl.DataFrame(table), features))
    return StoreQuality(tuple(checked), tuple(quarantined))
