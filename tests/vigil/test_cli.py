"""The ``vigil`` console script as a user runs it: real subprocesses, real stores, real emulator."""

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from contracts.layout import INCIDENTS_PATH, features_path, quality_report_path
from vigil.processes import ServerProcess

VIGIL = str(Path(sys.executable).parent / "vigil")
SLICES = Path(__file__).resolve().parents[1] / "data"
DAY = "2024-01-01"


def vigil(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [VIGIL, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
        check=False,
    )


def succeed(*args: str, env: dict[str, str] | None = None) -> str:
    result = vigil(*args, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def fleet_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three instances × 3 hours simulated, featurised and validated through the CLI."""
    store = tmp_path_factory.mktemp("cli") / "store"
    succeed("simulate", "--instances", "3", "--hours", "3", "--seed", "7", "--store", str(store))
    succeed("features", "--store", str(store))
    return store


def test_simulate_writes_hourly_partitions_and_ground_truth(fleet_store: Path) -> None:
    partitions = sorted(fleet_store.glob("raw-logs/2024/01/01/*/data_*.parquet"))
    assert [p.parent.name for p in partitions] == ["00", "01", "02"]
    table = pq.read_table(partitions[0])
    assert set(table["kind"].to_pylist()) == {"metric", "log"}
    assert len(table["instance_id"].unique()) == 3
    assert (fleet_store / INCIDENTS_PATH).exists()


def test_features_has_one_row_per_instance_minute(fleet_store: Path) -> None:
    frame = pl.read_parquet(fleet_store / features_path(datetime(2024, 1, 1).date()))
    assert frame.height == 3 * 180
    assert frame.width > 300
    assert frame.select("instance_id", "timestamp").is_duplicated().sum() == 0


def test_validate_writes_a_quality_report_beside_each_file(fleet_store: Path) -> None:
    out = succeed("validate", "--store", str(fleet_store))
    assert "quality score raw 100.0 %, features 100.0 %" in " ".join(out.split())
    key = features_path(datetime(2024, 1, 1).date())
    report = json.loads((fleet_store / quality_report_path(key)).read_text())
    assert report["dataset"] == "features"
    assert report["quality_score"] == 100.0


def test_validate_rejects_a_corrupted_feature_table_naming_rule_and_column(
    fleet_store: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    subprocess.run(["cp", "-r", str(fleet_store), str(store)], check=True)
    path = store / features_path(datetime(2024, 1, 1).date())
    frame = pl.read_parquet(path)
    frame = frame.with_columns(
        pl.when(pl.int_range(pl.len()) == 5)
        .then(None)
        .otherwise(pl.col("hour_of_day"))
        .alias("hour_of_day")
    )
    frame.write_parquet(path)

    result = vigil("validate", "--store", str(store))

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    message = " ".join(result.stderr.split())
    assert "features batch rejected" in message
    assert "finite on column 'hour_of_day': 1 of 540 rows" in message
    assert str(features_path(datetime(2024, 1, 1).date())) in message


def test_features_on_an_empty_store_is_a_clear_error(tmp_path: Path) -> None:
    result = vigil("features", "--store", str(tmp_path / "empty"))
    assert result.returncode == 1
    assert "no raw partitions" in result.stderr
    assert "Traceback" not in result.stderr


def test_import_dataset_refuses_to_mix_with_existing_data(fleet_store: Path) -> None:
    result = vigil(
        "import-dataset", "smd", "--path", str(SLICES / "smd"), "--store", str(fleet_store)
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "already holds" in result.stderr


def test_import_dataset_writes_telemetry_and_labels(tmp_path: Path) -> None:
    store = tmp_path / "smd"
    out = succeed("import-dataset", "nab", "--path", str(SLICES / "nab"), "--store", str(store))
    assert "imported nab" in out
    assert list(store.glob("raw-logs/**/*.parquet"))
    assert (store / "labels" / "points.parquet").exists()


def test_train_with_an_unknown_config_key_names_it(tmp_path: Path, fleet_store: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("xgboost:\n  max_dept: 4\n")
    result = vigil("train", "--config", str(config), "--store", str(fleet_store))
    assert result.returncode == 1
    assert "xgboost.max_dept" in result.stderr
    assert "Traceback" not in result.stderr


def test_train_days_names_the_newest_day_when_the_window_is_empty(fleet_store: Path) -> None:
    result = vigil("train", "--days", "7", "--store", str(fleet_store))  # data of 2024-01-01
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    message = " ".join(result.stderr.split())
    assert "newest day is 2024-01-01" in message
    both = vigil("train", "--days", "7", "--since", "2024-01-01", "--store", str(fleet_store))
    assert both.returncode == 2
    assert "--since or --days" in both.stderr


def test_register_a_missing_run_directory_is_a_clear_error(tmp_path: Path) -> None:
    result = vigil("register", str(tmp_path / "nope"), "--tracking-uri", "http://127.0.0.1:9")
    assert result.returncode == 1
    assert "not a training run directory" in result.stderr


@pytest.mark.e2e
def test_push_then_export_round_trips_every_row_and_reruns_add_nothing(
    aws_emulator: ServerProcess, tmp_path: Path
) -> None:
    env = {"VIGIL_AWS_ENDPOINT_URL": aws_emulator.url}
    start = (datetime.now(UTC) - timedelta(hours=2)).replace(second=0, microsecond=0)
    window = ["--start", f"{start:%Y-%m-%dT%H:%M:%S}"]
    succeed("simulate", "--push", "--instances", "2", "--hours", "1", *window, env=env)
    end = start + timedelta(hours=1)
    export = [*window, "--end", f"{end:%Y-%m-%dT%H:%M:%S}", "--store", str(tmp_path / "raw")]
    succeed("export", *export, env=env)
    first = pl.read_parquet(list((tmp_path / "raw").glob("raw-logs/**/*.parquet")))

    rerun = succeed("export", *export, env=env)

    again = pl.read_parquet(list((tmp_path / "raw").glob("raw-logs/**/*.parquet")))
    assert first.filter(pl.col("kind") == "metric").height == 2 * 60 * 16
    assert first.filter(pl.col("kind") == "log").height > 0
    assert again.height == first.height
    assert "0 metric rows and 0 log rows" in " ".join(rerun.split())


def test_evaluate_prints_one_json_document_with_every_scorer() -> None:
    out = succeed("evaluate", "--dataset", "nab", "--path", str(SLICES / "nab"))
    document = json.loads(out)
    overall = document["overall"]
    for scores in (overall, *(overall[name] for name in ("catboost", "isolation_forest", "pca"))):
        assert {"precision", "recall", "f1", "pr_auc", "pa_f1", "random_pa_f1", "best_f1"} <= set(
            scores
        )
    assert document["entities"]


def test_evaluate_rejects_an_unknown_dataset() -> None:
    result = vigil("evaluate", "--dataset", "kdd", "--path", str(SLICES))
    assert result.returncode == 2
    assert "kdd" in result.stderr


def _raw_rows(store: Path) -> pl.DataFrame:
    files = list(store.glob("raw-logs/**/*.parquet"))
    frame = pl.read_parquet(files) if files else pl.DataFrame()
    return frame.sort(frame.columns) if files else frame


def test_export_killed_mid_window_then_rerun_has_no_gap_or_duplicate(
    aws_emulator: ServerProcess, tmp_path: Path
) -> None:
    """Drill: SIGKILL the exporter once its first partition is written; the rerun completes
    the window with exactly the rows of an uninterrupted export."""
    env = {"VIGIL_AWS_ENDPOINT_URL": aws_emulator.url}
    start = (datetime.now(UTC) - timedelta(hours=4)).replace(minute=0, second=0, microsecond=0)
    window = ["--start", f"{start:%Y-%m-%dT%H:%M:%S}"]
    succeed("simulate", "--push", "--instances", "3", "--hours", "3", *window, env=env)
    end = ["--end", f"{start + timedelta(hours=3):%Y-%m-%dT%H:%M:%S}"]
    succeed("export", *window, *end, "--store", str(tmp_path / "clean"), env=env)
    clean = _raw_rows(tmp_path / "clean")

    killed = tmp_path / "killed"
    exporter = subprocess.Popen(
        [VIGIL, "export", *window, *end, "--store", str(killed)],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while not list(killed.glob("raw-logs/**/*.parquet")) and exporter.poll() is None:
        time.sleep(0.005)
    exporter.kill()
    assert exporter.wait() == -9, "the export finished before the drill could kill it"
    assert _raw_rows(killed).height < clean.height

    succeed("export", *end, "--store", str(killed), env=env)  # resumes from its checkpoint

    assert _raw_rows(killed).equals(clean)
