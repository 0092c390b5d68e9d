"""A feature file that does not match the models' signature (their feature columns, by name,
as float32) is refused by the serving path: the scorer scores nothing of that window, sends
no inference request and says which features are wrong. Extra columns or another column
order are not a mismatch: features are taken by name, in the signature's order."""

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from contracts.dataset import DatasetInfo, write_dataset_info
from contracts.features import FEATURE_DTYPE, ID_COLUMNS, INSTANCE_ID, TIMESTAMP, feature_columns
from contracts.layout import features_path
from contracts.serving import XGBOOST_MODEL
from contracts.store import ObjectStore
from serving.scorer.prediction_log import predictions_key
from serving.scorer.window_features import read_window_features
from tests.serving.scorer_helpers import offline_scorer
from tests.telemetry.test_feature_job import raw_telemetry, write_raw

START = datetime(2024, 1, 1, 20, 0, tzinfo=UTC)
END = START + timedelta(minutes=5)
SIGNATURE = ["cpu_mean_5", "latency_mean_5", "error_count"]


def _features(**columns: pl.Series) -> pl.DataFrame:
    """Two instances × 5 minutes of the signature's features, with ``columns`` replacing or
    adding columns."""
    stamps = [START + timedelta(minutes=m) for m in range(5)]
    frame = pl.DataFrame(
        {
            INSTANCE_ID: ["i-001"] * 5 + ["i-002"] * 5,
            TIMESTAMP: pl.Series(stamps * 2, dtype=pl.Datetime("ms", "UTC")),
            **{
                name: pl.Series(np.arange(10) + i, dtype=FEATURE_DTYPE)
                for i, name in enumerate(SIGNATURE)
            },
        }
    )
    return frame.with_columns(**columns)


def _store_with(tmp_path_factory: pytest.TempPathFactory, frame: pl.DataFrame) -> ObjectStore:
    store = ObjectStore.from_uri(str(tmp_path_factory.mktemp("features")))
    store.write_table(features_path(START.date()), frame.to_arrow())
    return store


MISMATCHES = [
    pytest.param(
        _features().drop("latency_mean_5"),
        "lack 1 features the models expect, e.g. ['latency_mean_5']",
        id="missing-feature",
    ),
    pytest.param(
        _features(latency_mean_5=pl.Series(["12.5"] * 10)),
        "non-numeric types, e.g. {'latency_mean_5': 'String'}",
        id="string-feature",
    ),
    pytest.param(
        _features(error_count=pl.Series([True, False] * 5)),
        "non-numeric types, e.g. {'error_count': 'Boolean'}",
        id="boolean-feature",
    ),
]


@pytest.mark.parametrize(("frame", "named"), MISMATCHES)
def test_the_scorer_refuses_the_window_and_scores_nothing(
    tmp_path_factory: pytest.TempPathFactory, frame: pl.DataFrame, named: str
) -> None:
    store = _store_with(tmp_path_factory, frame)
    scorer = offline_scorer(store, SIGNATURE)
    try:
        with pytest.raises(ValueError, match="the models") as refused:
            scorer.score_once(START, END)
        registry = scorer.metrics.registry
    finally:
        scorer.close()
    assert named in str(refused.value)
    assert not store.exists(predictions_key(START))
    requests = registry.get_sample_value("model_latency_seconds_count", {"model": XGBOOST_MODEL})
    assert requests is None, "an inference request was made"
    for result in ("0", "1"):
        labels = {"model": XGBOOST_MODEL, "result": result}
        assert registry.get_sample_value("model_prediction_total", labels) == 0


def test_raw_telemetry_of_another_metric_set_is_refused(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """With ``features_source="raw"`` the scorer computes the features itself from the raw
    store's metrics; models trained on other metrics must not be fed them."""
    store = ObjectStore.from_uri(str(tmp_path_factory.mktemp("raw")))
    write_dataset_info(store, DatasetInfo(name="fleet", metrics=["CPUUtilization", "NetworkIn"]))
    write_raw(store, raw_telemetry(START - timedelta(hours=1), minutes=70))
    signature = feature_columns(["CPUUtilization", "Latency"])

    with pytest.raises(ValueError, match=r"lack \d+ features the models expect, e.g. \['latency"):
        read_window_features(store, START, END, signature, source="raw")
    # The same store, read for models of its own metrics, is fine.
    own = feature_columns(["CPUUtilization", "NetworkIn"])
    assert read_window_features(store, START, END, own, source="raw").height == 3 * 5


def test_extra_columns_and_another_order_are_not_a_mismatch(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    frame = _features(unused_feature=pl.Series([0.0] * 10)).select(
        *ID_COLUMNS, "unused_feature", *reversed(SIGNATURE)
    )
    store = _store_with(tmp_path_factory, frame)

    rows = read_window_features(store, START, END, SIGNATURE)

    assert rows.columns == [*ID_COLUMNS, *SIGNATURE]
    expected = _features().select(*ID_COLUMNS, *SIGNATURE)
    assert rows.equals(expected)
