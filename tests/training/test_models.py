"""The split into train, validation and test rows, and training labels of a single class."""

import numpy as np
import pytest

from training.config import SplitConfig
from training.models import SingleClassError, require_both_classes, split_rows


def test_time_split_puts_the_latest_minutes_in_test_without_straddling() -> None:
    timestamps = np.repeat(np.arange(100), 3).astype("datetime64[m]")  # 3 instances per minute
    split = split_rows(timestamps, np.zeros(300), SplitConfig())
    assert timestamps[split.train].max() < timestamps[split.validation].min()
    assert timestamps[split.validation].max() < timestamps[split.test].min()
    assert (len(split.train), len(split.validation), len(split.test)) == (240, 30, 30)


def test_stratified_split_keeps_each_class_share() -> None:
    strata = np.array([1] * 100 + [0] * 900)
    split = split_rows(
        np.zeros(1000).astype("datetime64[m]"), strata, SplitConfig(method="stratified")
    )
    for part in (split.train, split.validation, split.test):
        assert strata[part].mean() == pytest.approx(0.1)
    assert len(np.unique(np.concatenate([split.train, split.validation, split.test]))) == 1000


def test_a_split_with_an_empty_part_is_refused() -> None:
    with pytest.raises(ValueError, match="would be empty"):
        split_rows(np.zeros(50).astype("datetime64[m]"), np.zeros(50), SplitConfig())


def test_single_class_labels_are_refused() -> None:
    with pytest.raises(SingleClassError, match="all normal"):
        require_both_classes(np.zeros(10), "training")
    require_both_classes(np.array([0, 1]), "training")
