"""The data summary: raw partitions, feature tables, incidents and validation reports.

Raw row counts come from Parquet footers and only the id columns of the feature tables are
read, so a store of millions of rows is summarised quickly.
"""

import json
from datetime import datetime

import polars as pl

from contracts.dataset import read_dataset_info
from contracts.features import ID_COLUMNS, INSTANCE_ID, TIMESTAMP
from contracts.labels import INCIDENTS_SCHEMA
from contracts.layout import FEATURES_PREFIX, INCIDENTS_PATH, RAW_PREFIX
from contracts.store import ObjectStore
from telemetry.validation_job import FileQuality, StoreQuality
from telemetry.validation_report import ValidationReport
from vigil.report.model import DataSummary, QualitySummary

QUALITY_SUFFIX = ".quality.json"


def summarize_store(store: ObjectStore, start: datetime, end: datetime) -> DataSummary:
    """What the store holds; incidents are also counted over ``[start, end)``."""
    info = read_dataset_info(store)
    raw_keys = [k for k in store.list_keys(RAW_PREFIX, ".parquet") if "/_" not in k]
    feature_keys = store.list_keys(FEATURES_PREFIX, "features.parquet")
    ids = pl.concat(
        [pl.DataFrame(store.read_table(k, columns=list(ID_COLUMNS))) for k in feature_keys]
        or [pl.DataFrame(schema={INSTANCE_ID: pl.String, TIMESTAMP: pl.Datetime("ms", "UTC")})]
    )
    columns = (
        len(store.parquet_file(feature_keys[0]).schema_arrow.names) - len(ID_COLUMNS)
        if feature_keys
        else 0
    )
    incidents = read_incidents(store)
    in_range = incidents.filter((pl.col("start") < end) & (pl.col("end") >= start))
    return DataSummary(
        dataset=info.name,
        metrics=len(info.metrics),
        raw_files=len(raw_keys),
        raw_rows=sum(store.parquet_file(k).metadata.num_rows for k in raw_keys),
        feature_files=len(feature_keys),
        feature_rows=ids.height,
        feature_columns=columns,
        instances=ids[INSTANCE_ID].n_unique(),
        first=ids[TIMESTAMP].min() if ids.height else None,  # type: ignore[arg-type]
        last=ids[TIMESTAMP].max() if ids.height else None,  # type: ignore[arg-type]
        incidents=incidents.height,
        incidents_by_type=dict(
            sorted(incidents.group_by("incident_type").len().iter_rows(), key=lambda r: -r[1])
        ),
        incidents_in_range=in_range.height,
        quality=_quality(store),
    )


def read_incidents(store: ObjectStore) -> pl.DataFrame:
    """instance_id, start, end (inclusive), incident_type; empty when the store has none."""
    columns = ["instance_id", "start", "end", "incident_type"]
    if not store.exists(INCIDENTS_PATH):
        return pl.DataFrame(pl.from_arrow(INCIDENTS_SCHEMA.empty_table().select(columns)))
    return pl.DataFrame(pl.from_arrow(store.read_table(INCIDENTS_PATH, columns)))


def _quality(store: ObjectStore) -> QualitySummary | None:
    """The validation reports beside the raw partitions and feature tables; None if none."""
    keys = [
        key
        for prefix in (RAW_PREFIX, FEATURES_PREFIX)
        for key in store.list_keys(prefix, QUALITY_SUFFIX)
    ]
    if not keys:
        return None
    files = tuple(
        FileQuality(key, ValidationReport.model_validate(json.loads(store.read_bytes(key))))
        for key in keys
    )
    quality = StoreQuality(files)
    datasets = {f.report.dataset for f in files}
    return QualitySummary(
        files=len(files),
        rejected=len(quality.rejected),
        warnings=sum(
            any(not c.passed and c.severity == "warning" for c in f.report.checks) for f in files
        ),
        score_raw=quality.quality_score("raw") if "raw" in datasets else None,
        score_features=quality.quality_score("features") if "features" in datasets else None,
    )
