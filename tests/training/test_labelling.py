"""Phases 1-3 on every row: nothing of the held-out test rows reaches training."""

import numpy as np

from contracts.store import ObjectStore
from tests.training.conftest import small_config
from training.data import load_training_data
from training.labelling import label_rows
from training.review_queue import load_reviews


def test_the_test_rows_never_feed_training(fleet_store: ObjectStore) -> None:
    data = load_training_data(fleet_store)
    config = small_config(labels={"known_fraction": 1.0})
    labelled = label_rows(data, config, load_reviews(fleet_store))
    test = labelled.labels[labelled.split.test]
    assert test["train_label"].null_count() == len(labelled.split.test)
    assert not set(labelled.queue["row_id"]) & set(data.rows["row_id"].gather(labelled.split.test))
    # With every label known, training labels on train/validation rows are the true ones.
    trainable = np.concatenate([labelled.split.train, labelled.split.validation])
    truth = data.rows["true_label"].gather(trainable)
    assert labelled.labels["train_label"].gather(trainable).equals(truth)
