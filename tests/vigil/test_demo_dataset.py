"""``vigil demo --dataset``: the demo's data steps and replay plan on an imported dataset.

The SMD slice in ``tests/data`` (machine-1-2: 1,500 unlabelled train minutes, then 1,000
labelled test minutes with two incidents) goes through the demo's own ``prepare_store`` and the
training it runs; the whole demo (servers, scorer) is left to ``vigil demo``. Nothing here names
an SMD metric: what must hold is read from the store's ``dataset.json``.
"""

from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest
from rich.console import Console

from contracts.dataset import read_dataset_info
from contracts.features import feature_columns
from contracts.layout import INCIDENTS_PATH, POINT_LABELS_PATH
from contracts.store import ObjectStore
from contracts.telemetry import FLEET_METRICS
from telemetry.datasets.tidy import SYNTHETIC_EPOCH
from tests.vigil.test_cli import vigil
from training.config import load_training_config
from training.pipeline import run_training
from vigil.demo.replay import FEEDBACK_LABELS, feedback_span, replay_range
from vigil.demo.run import (
    DEMO_DATASET_CONFIG_PATH,
    SCORER_WINDOW,
    DemoConfig,
    DemoResult,
    held_out_start,
    prepare_store,
)

SMD_SLICE = Path(__file__).resolve().parents[1] / "data" / "smd"
MACHINE = "machine-1-2"
SLICE_MINUTES = 2500  # 1,500 train + 1,000 test rows, one a minute


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[DemoConfig, DemoResult]:
    config = DemoConfig(
        work_path=tmp_path_factory.mktemp("demo-smd") / "demo",
        dataset="smd",
        dataset_path=SMD_SLICE,
        entities=(MACHINE,),
    )
    result = DemoResult()
    prepare_store(config, Console(quiet=True), result)
    return config, result


@pytest.mark.slow
def test_the_export_round_trip_is_listed_as_skipped_with_its_reason(
    prepared: tuple[DemoConfig, DemoResult],
) -> None:
    steps = {name: (seconds, outcome) for name, seconds, outcome in prepared[1].rows}
    assert list(steps) == [
        f"import smd from {SMD_SLICE}",
        "export from CloudWatch",
        "build features",
        "validate raw and features",
    ]
    seconds, outcome = steps["export from CloudWatch"]
    assert seconds == "–"
    assert outcome.startswith("skipped: ")
    assert "simulated fleet" in outcome
    assert "quality score raw 100.0 %, features 100.0 %" in steps["validate raw and features"][1]


@pytest.mark.slow
def test_the_store_holds_the_datasets_metrics_features_and_ground_truth(
    prepared: tuple[DemoConfig, DemoResult],
) -> None:
    store = ObjectStore.from_uri(str(prepared[0].store_path))
    info = read_dataset_info(store)
    assert info.name == "smd"
    assert set(info.metrics).isdisjoint(FLEET_METRICS)  # the features follow the store's list
    features = pl.concat(
        pl.DataFrame(store.read_table(key))
        for key in store.list_keys("processed-logs", "features.parquet")
    )
    assert features.columns[2:] == feature_columns(info.metrics)
    assert features.height == SLICE_MINUTES
    assert store.read_table(INCIDENTS_PATH).num_rows == 2
    assert store.exists(POINT_LABELS_PATH)


@pytest.mark.slow
def test_a_rerun_rebuilds_the_store_instead_of_refusing_to_import_into_it(
    prepared: tuple[DemoConfig, DemoResult],
) -> None:
    config = prepared[0]
    (config.store_path / "scorer" / "feedback").mkdir(parents=True)
    stale = config.store_path / "scorer" / "feedback" / "old.parquet"
    stale.write_bytes(b"from an earlier run")
    result = DemoResult()
    prepare_store(config, Console(quiet=True), result)
    assert not stale.exists()
    assert result.rows[0][0] == f"import smd from {SMD_SLICE}"


@pytest.mark.slow
def test_training_uses_the_datasets_features_and_the_replay_is_the_held_out_last_day(
    prepared: tuple[DemoConfig, DemoResult], tmp_path: Path
) -> None:
    store = ObjectStore.from_uri(str(prepared[0].store_path))
    demo = load_training_config(DEMO_DATASET_CONFIG_PATH)
    # The slice is 42 hours whose one earlier incident lies 9-15 hours before the end: a
    # validation part that reaches it, labelled with every known label, holds both classes.
    config = demo.model_copy(
        update={
            "labels": demo.labels.model_copy(update={"known_fraction": 1.0}),
            "split": demo.split.model_copy(update={"validation_fraction": 0.3}),
        }
    )
    summary = run_training(store, config, None, tmp_path / "run")
    names = feature_columns(read_dataset_info(store).metrics)
    assert summary.dataset == "smd"
    assert summary.features == len(names)
    evaluation = summary.evaluations["xgboost"]
    assert evaluation.metrics.rows == summary.split_sizes["test"]

    start, end = replay_range(store, SCORER_WINDOW)
    assert end == SYNTHETIC_EPOCH + timedelta(minutes=SLICE_MINUTES)  # where the data ends
    assert end - start == timedelta(days=1)
    assert start.timestamp() % SCORER_WINDOW.total_seconds() == 0
    # Both incidents of the slice (test rows 29-88 and 886-891) lie in the replayed day.
    incidents = pl.DataFrame(store.read_table(INCIDENTS_PATH))
    assert incidents.filter((pl.col("start") >= start) & (pl.col("end") < end)).height == 2

    test_start = held_out_start(store, config.split)
    assert test_start is not None
    assert start < test_start < end  # a day is more than the slice's held-out tenth


def test_feedback_covers_six_hours_of_the_fleet_and_a_whole_day_of_a_few_machines() -> None:
    day = timedelta(days=1)
    assert FEEDBACK_LABELS == 50 * 72  # the fleet demo's 50 instances × 6 h of windows
    assert feedback_span(50, SCORER_WINDOW, day) == timedelta(hours=6)
    assert feedback_span(6, SCORER_WINDOW, day) == day
    assert feedback_span(100_000, SCORER_WINDOW, day) == SCORER_WINDOW


@pytest.mark.slow
def test_demo_with_a_dataset_but_no_path_is_a_clear_error() -> None:
    result = vigil("demo", "--dataset", "smd")
    assert result.returncode != 0
    assert "--path" in result.stdout + result.stderr
