"""Loading feature rows and joining their true labels: incidents, point labels, bad input."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from contracts.features import TIMESTAMP
from tests.training.conftest import write_fleet_store
from training.data import NoTrainingDataError, join_labels, load_training_data, require_finite

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _rows(instance: str, minutes: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "instance_id": [instance] * minutes,
            "timestamp": [T0 + timedelta(minutes=m) for m in range(minutes)],
        }
    ).with_columns(pl.col("timestamp").cast(pl.Datetime("ms", "UTC")))


def _incidents(*spans: tuple[str, int, int]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "instance_id": [s[0] for s in spans],
            "start": [T0 + timedelta(minutes=s[1]) for s in spans],
            "end": [T0 + timedelta(minutes=s[2]) for s in spans],
        }
    )


def test_incidents_label_their_rows_inclusively_and_the_rest_normal() -> None:
    rows = pl.concat([_rows("a", 10), _rows("b", 10)])
    # Overlapping incidents on "a": the long one covers minute 7 even though the later short
    # one ended before it.
    labels = join_labels(rows, _incidents(("a", 2, 7), ("a", 3, 4), ("b", 9, 9)), None)
    assert labels.to_list() == [0, 0, 1, 1, 1, 1, 1, 1, 0, 0] + [0] * 9 + [1]


def test_point_labels_take_precedence_and_unlabelled_rows_stay_null() -> None:
    rows = _rows("a", 4)
    points = pl.DataFrame(
        {
            "instance_id": ["a", "a"],
            "timestamp": [T0, T0 + timedelta(minutes=1)],
            "label": [1, None],
            "split": ["test", "train"],
        },
        schema_overrides={"label": pl.Int8},
    )
    assert join_labels(rows, None, points).to_list() == [1, None, None, None]
    with_incident = join_labels(rows, _incidents(("a", 0, 1)), points)
    assert with_incident.to_list() == [1, None, 0, 0]
    assert join_labels(rows, None, None).to_list() == [None] * 4


def test_bad_label_files_are_refused() -> None:
    with pytest.raises(ValueError, match="ends before it starts"):
        join_labels(_rows("a", 3), _incidents(("a", 2, 1)), None)
    points = pl.DataFrame(
        {"instance_id": ["a", "a"], "timestamp": [T0, T0], "label": [1, 0], "split": ["t", "t"]}
    )
    with pytest.raises(ValueError, match="repeat"):
        join_labels(_rows("a", 3), None, points)


def test_non_finite_features_are_named() -> None:
    features = np.zeros((5, 3), dtype=np.float32)
    features[1, 2] = np.nan
    features[3, 2] = np.inf
    with pytest.raises(ValueError, match=r"c \(2 rows\)"):
        require_finite(features, ["a", "b", "c"])


def test_since_trains_on_the_days_from_it_on_and_names_the_newest_day_when_none(
    tmp_path: Path,
) -> None:
    store = write_fleet_store(tmp_path / "store")
    *_, last_key = sorted(store.list_keys("processed-logs", "features.parquet"))
    last = pl.DataFrame(store.read_table(last_key))
    newest = last[TIMESTAMP].min().date()
    everything = load_training_data(store).rows

    recent = load_training_data(store, since=newest).rows
    assert recent.height == last.height < everything.height
    assert recent[TIMESTAMP].min() == last[TIMESTAMP].min()
    later = newest + timedelta(days=1)
    with pytest.raises(NoTrainingDataError, match=f"from {later} on .*newest day is {newest}"):
        load_training_data(store, since=later)
