"""One entity of a public dataset, through Vigil's own data plane: import → features → rows.

Each entity is imported into a store of its own (``work_dir/<entity>/store``), so that its
features and models never see another entity. A store that already holds features from an
earlier run is reused as it is.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from numpy.typing import NDArray

from contracts.dataset import read_dataset_info
from contracts.features import INSTANCE_ID, TIMESTAMP, metric_slug
from contracts.layout import DATASET_INFO_PATH, FEATURES_PREFIX, POINT_LABELS_PATH
from contracts.store import ObjectStore
from training.datasets import import_dataset
from training.datasets.importer import DatasetName
from training.datasets.tidy import TRAIN_SPLIT
from training.feature_job import build_features
from training.pipeline import TRUE_LABEL, load_training_data


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
    """Import ``entity`` into the store at ``store_path`` (unless done before), build its
    features and read them back with the training pipeline's loader.

    Raises:
        ValueError, DatasetFormatError: from the importer (unknown entity, malformed files).
    """
    store = ObjectStore.from_uri(str(store_path))
    if not store.exists(DATASET_INFO_PATH):
        import_dataset(name, source_path, store, [entity])
    if not store.list_keys(FEATURES_PREFIX, "features.parquet"):
        build_features(store)
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
