"""Object-store layout shared by the exporter, the feature job, training and serving."""

from datetime import date, datetime

RAW_PREFIX = "raw-logs"
FEATURES_PREFIX = "processed-logs"
LABELS_PREFIX = "labels"
CHECKPOINT_PATH = f"{RAW_PREFIX}/_checkpoints/exporter.json"
# Held by the one exporter writing the raw partitions and the checkpoint (contracts.lease.Lease)
EXPORT_LEASE_PATH = f"{RAW_PREFIX}/_checkpoints/exporter.lease"
INCIDENTS_PATH = f"{LABELS_PREFIX}/incidents.parquet"
POINT_LABELS_PATH = f"{LABELS_PREFIX}/points.parquet"
DATASET_INFO_PATH = "dataset.json"
QUARANTINE_PREFIX = "quarantine"


def raw_partition_path(hour: datetime) -> str:
    """``raw-logs/YYYY/MM/DD/HH/data_YYYYMMDDHH.parquet`` for the UTC hour holding ``hour``."""
    return f"{RAW_PREFIX}/{hour:%Y/%m/%d/%H}/data_{hour:%Y%m%d%H}.parquet"


def features_path(day: date) -> str:
    """``processed-logs/YYYY-MM-DD/features.parquet`` for one UTC day."""
    return f"{FEATURES_PREFIX}/{day:%Y-%m-%d}/features.parquet"


def quality_report_path(data_path: str) -> str:
    """Where the validation report of a Parquet file is written: beside it."""
    return data_path.removesuffix(".parquet") + ".quality.json"


def quarantine_path(key: str) -> str:
    """Where an unreadable file is moved aside: ``quarantine/`` + its own key."""
    return f"{QUARANTINE_PREFIX}/{key}"
