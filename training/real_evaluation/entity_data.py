"""One entity of a public dataset, through Vigil's own data plane: import → features → rows.

Each entity is imported into a store of its own (``work_dir/<entity>/store``), so that its
features and models never see another entity. The store is a cache: one that holds
``dataset.json`` and features is reused as it is. Any other is built in a temporary folder
beside it and renamed into place only when complete, so a run that aborts (a malformed file,
an interrupt) leaves nothing that a later run would mistake for a cache or refuse to import
into (only a killed process leaves its temporary ``.store-*`` folder, which nothing reads).
A store left incomplete by an earlier version is replaced; one whose import completed keeps
its import and only gets its features.
"""

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from numpy.typing import NDArray

from contracts.dataset import read_dataset_info
from contracts.features import INSTANCE_ID, TIMESTAMP, metric_slug
from contracts.layout import DATASET_INFO_PATH, FEATURES_PREFIX, POINT_LABELS_PATH
from contracts.store import ObjectStore
from telemetry.datasets import import_dataset
from telemetry.datasets.importer import DatasetName
from telemetry.datasets.tidy import TRAIN_SPLIT
from telemetry.feature_job import build_features
from training.data import TRUE_LABEL, load_training_data


@dataclass(frozen=True)
class EntitySeries:
    """One entity's feature rows in time order.

    Attributes:
        entity: the machine, server or series name.
        features: float32 matrix, one row per step, columns ``feature_names``.
        feature_names: the feature contract's columns for the entity's metrics.
        metrics: the dataset's metric names, in the order of ``metric_columns``.
        metric_columns: positions of the current-value column of each metric.
        labels: the true label per row: 0/1, -1 where the dataset gives none (SMD/ASD train).
        published_train: rows of the dataset's own (unlabelled) train split.
        timestamps: each row's time (UTC, naive ``datetime64[ms]``) on the importer's timeline.
    """

    entity: str
    features: NDArray[np.float32]
    feature_names: list[str]
    metrics: list[str]
    metric_columns: NDArray[np.int64]
    labels: NDArray[np.int8]
    published_train: NDArray[np.bool_]
    timestamps: NDArray[np.datetime64]


def load_entity(
    name: DatasetName, source_path: Path, entity: str, store_path: Path
) -> EntitySeries:
    """Import ``entity`` into the store at ``store_path`` and build its features (unless done
    before, see the module docstring), then read them back with the training pipeline's loader.

    Raises:
        ValueError, DatasetFormatError: from the importer (unknown entity, malformed files).
    """
    store = prepare_entity_store(name, source_path, entity, store_path)
    data = load_training_data(store)
    metrics = read_dataset_info(store).metrics
    splits = pl.DataFrame(
        store.read_table(POINT_LABELS_PATH, columns=[INSTANCE_ID, TIMESTAMP, "split"])
    )
    rows = data.rows.join(splits, on=[INSTANCE_ID, TIMESTAMP], how="left", maintain_order="left")
    index = {column: position for position, column in enumerate(data.feature_names)}
    return EntitySeries(
        entity=entity,
        features=data.features,
        feature_names=data.feature_names,
        metrics=list(metrics),
        metric_columns=np.array([index[metric_slug(m)] for m in metrics], dtype=np.int64),
        labels=rows[TRUE_LABEL].fill_null(-1).to_numpy().astype(np.int8),
        published_train=(rows["split"] == TRAIN_SPLIT).fill_null(False).to_numpy(),
        timestamps=rows[TIMESTAMP].dt.replace_time_zone(None).to_numpy(),
    )


def prepare_entity_store(
    name: DatasetName, source_path: Path, entity: str, store_path: Path
) -> ObjectStore:
    """The complete store of ``entity`` at ``store_path``, built only if it is not there yet.

    Raises:
        ValueError, DatasetFormatError: from the importer; ``store_path`` then holds no
            half-built store.
    """
    if _is_complete(store_path):
        return ObjectStore.from_uri(str(store_path))
    store_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{store_path.name}-", dir=store_path.parent) as tmp:
        partial_path = Path(tmp) / store_path.name
        if (store_path / DATASET_INFO_PATH).is_file():
            store_path.rename(partial_path)  # a complete import: only its features are missing
        partial = ObjectStore.from_uri(str(partial_path))
        if not partial.exists(DATASET_INFO_PATH):
            import_dataset(name, source_path, partial, [entity])
        build_features(partial)
        if store_path.exists():
            shutil.rmtree(store_path)  # what an aborted run left
        partial_path.rename(store_path)
    return ObjectStore.from_uri(str(store_path))


def _is_complete(store_path: Path) -> bool:
    """Whether the store holds an import (dataset.json is written last) and its features."""
    if not (store_path / DATASET_INFO_PATH).is_file():
        return False
    return bool(
        ObjectStore.from_uri(str(store_path)).list_keys(FEATURES_PREFIX, "features.parquet")
    )
