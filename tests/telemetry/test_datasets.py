"""Importers of SMD, ASD and NAB: what lands in the store must match the published files.

The slices under tests/data are cut from the published datasets (tests/data/README.md); the
test marked slow imports the full copies in shared/data when they are there.
"""

import csv
import gzip
import json
import math
import os
import pickle
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import polars as pl
import pytest
from numpy.typing import NDArray

from contracts.dataset import read_dataset_info
from contracts.labels import INCIDENTS_SCHEMA, POINT_LABELS_SCHEMA
from contracts.layout import INCIDENTS_PATH, POINT_LABELS_PATH, RAW_PREFIX, raw_partition_path
from contracts.store import ObjectStore
from contracts.telemetry import RAW_SCHEMA
from telemetry.datasets import (
    DatasetFormatError,
    ImportSummary,
    StoreNotEmptyError,
    import_dataset,
)
from telemetry.datasets.nab import list_nab_series
from telemetry.datasets.safe_pickle import load_numpy_array
from telemetry.datasets.smd import SMD_METRICS, read_smd
from telemetry.datasets.tidy import SYNTHETIC_EPOCH
from training.real_evaluation import entity_data
from training.real_evaluation.entity_data import load_entity
from vigil.processes import ServerProcess

SLICES = Path(__file__).resolve().parents[1] / "data"
SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
SMD_SLICE = SLICES / "smd" / "ServerMachineDataset"
SMD_MACHINE = "machine-1-2"
SMD_TRAIN_ROWS, SMD_TEST_ROWS = 1500, 1000

Imported = tuple[ObjectStore, ImportSummary]


def _store(path: Path) -> ObjectStore:
    return ObjectStore.from_uri(str(path))


def _raw_rows(store: ObjectStore) -> pl.DataFrame:
    keys = store.list_keys(RAW_PREFIX, ".parquet")
    return pl.concat([pl.DataFrame(store.read_table(key)) for key in keys])


def _labels(store: ObjectStore) -> pl.DataFrame:
    return pl.DataFrame(store.read_table(POINT_LABELS_PATH))


def _incidents(store: ObjectStore) -> pl.DataFrame:
    return pl.DataFrame(store.read_table(INCIDENTS_PATH))


def _python_floats(text: str) -> NDArray[Any]:
    """The published rows parsed by Python itself, independently of the importer."""
    return np.array([[float(v) for v in line.split(",")] for line in text.splitlines()])


def _copy_slice(name: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(SLICES / name, tmp_path / name))


@pytest.fixture(scope="module")
def smd_store(tmp_path_factory: pytest.TempPathFactory) -> Imported:
    store = _store(tmp_path_factory.mktemp("smd") / "store")
    return store, import_dataset("smd", SLICES / "smd", store)


@pytest.fixture(scope="module")
def asd_store(tmp_path_factory: pytest.TempPathFactory) -> Imported:
    store = _store(tmp_path_factory.mktemp("asd") / "store")
    return store, import_dataset("asd", SLICES / "asd", store)


@pytest.fixture(scope="module")
def nab_store(tmp_path_factory: pytest.TempPathFactory) -> Imported:
    store = _store(tmp_path_factory.mktemp("nab") / "store")
    return store, import_dataset("nab", SLICES / "nab", store)


# --- SMD ---------------------------------------------------------------------------------


def test_smd_rows_land_in_their_hour_partitions_with_the_raw_schema(smd_store: Imported) -> None:
    store, summary = smd_store
    keys = store.list_keys(RAW_PREFIX, ".parquet")
    minutes = SMD_TRAIN_ROWS + SMD_TEST_ROWS
    assert len(keys) == summary.partitions == math.ceil(minutes / 60)
    for key in keys:
        table = store.read_table(key)
        assert table.schema.equals(RAW_SCHEMA)
        rows = pl.DataFrame(table)
        hours = rows["timestamp"].dt.truncate("1h").unique()
        assert hours.len() == 1
        assert raw_partition_path(hours[0]) == key
        assert rows["kind"].unique().to_list() == ["metric"]
        assert not rows["parse_error"].any()
        assert rows.select("instance_id", "name", "timestamp").is_unique().all()
    assert summary.rows == minutes * len(SMD_METRICS)


def test_smd_values_round_trip_exactly_on_a_contiguous_minute_timeline(smd_store: Imported) -> None:
    store, _ = smd_store
    train = gzip.decompress((SMD_SLICE / "train" / f"{SMD_MACHINE}.txt.gz").read_bytes())
    test = (SMD_SLICE / "test" / f"{SMD_MACHINE}.txt").read_text()
    published = np.vstack([_python_floats(train.decode()), _python_floats(test)])

    rows = _raw_rows(store)
    assert rows["instance_id"].unique().to_list() == [SMD_MACHINE]
    assert rows["source"].unique().to_list() == ["ec2"]
    wide = rows.pivot(on="name", index="timestamp", values="value").sort("timestamp")
    expected_times = [SYNTHETIC_EPOCH + timedelta(minutes=i) for i in range(len(published))]
    assert wide["timestamp"].to_list() == expected_times
    assert np.array_equal(wide.select(SMD_METRICS).to_numpy(), published)


def test_smd_labels_align_row_by_row_with_test_label(smd_store: Imported) -> None:
    store, summary = smd_store
    published = [int(v) for v in (SMD_SLICE / "test_label" / f"{SMD_MACHINE}.txt").open()]
    labels = _labels(store).sort("timestamp")
    assert store.read_table(POINT_LABELS_PATH).schema.equals(POINT_LABELS_SCHEMA)

    train, test = labels[:SMD_TRAIN_ROWS], labels[SMD_TRAIN_ROWS:]
    assert train["split"].unique().to_list() == ["train"]
    assert train["label"].null_count() == SMD_TRAIN_ROWS  # SMD's train split is unlabelled
    assert test["split"].unique().to_list() == ["test"]
    assert test["label"].to_list() == published
    assert test["timestamp"][0] == SYNTHETIC_EPOCH + timedelta(minutes=SMD_TRAIN_ROWS)
    assert summary.labelled_rows == SMD_TEST_ROWS
    assert summary.anomaly_fraction == pytest.approx(sum(published) / len(published))


def test_smd_incidents_match_the_interpretation_segments(smd_store: Imported) -> None:
    store, summary = smd_store
    # Published: "29-88:9,10,11,13,15,18" and "886-891:18" (end one past the last row).
    test_start = SYNTHETIC_EPOCH + timedelta(minutes=SMD_TRAIN_ROWS)
    incidents = _incidents(store)
    assert store.read_table(INCIDENTS_PATH).schema.equals(INCIDENTS_SCHEMA)
    assert incidents.to_dicts() == [
        {
            "instance_id": SMD_MACHINE,
            "start": test_start + timedelta(minutes=29),
            "end": test_start + timedelta(minutes=87),
            "incident_type": "unknown",
            "metrics": ["disk_q", "disk_r", "disk_rb", "disk_u", "disk_wa", "so"],
        },
        {
            "instance_id": SMD_MACHINE,
            "start": test_start + timedelta(minutes=886),
            "end": test_start + timedelta(minutes=890),
            "incident_type": "unknown",
            "metrics": ["so"],
        },
    ]
    assert summary.incidents == 2


def test_smd_dataset_info_lists_the_38_published_metric_names(smd_store: Imported) -> None:
    store, _ = smd_store
    info = read_dataset_info(store)
    assert (info.name, info.step_seconds, len(info.metrics)) == ("smd", 60, 38)
    assert info.metrics[:3] == ["cpu_r", "load_1", "load_5"]
    assert info.metrics[-1] == "udp_snd_buf_errs"


def test_smd_gzip_and_plain_files_read_identically(tmp_path: Path) -> None:
    plain = _copy_slice("smd", tmp_path / "plain") / "ServerMachineDataset"
    gzipped = _copy_slice("smd", tmp_path / "gzipped") / "ServerMachineDataset"
    for path in list(plain.rglob("*.txt.gz")):
        path.with_suffix("").write_bytes(gzip.decompress(path.read_bytes()))
        path.unlink()
    for path in list(gzipped.rglob("*.txt")):
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(path.read_bytes()))
        path.unlink()

    from_plain, from_gzip = read_smd(plain, [SMD_MACHINE]), read_smd(gzipped, [SMD_MACHINE])
    assert from_plain.telemetry.height == SMD_TRAIN_ROWS + SMD_TEST_ROWS
    assert from_plain.telemetry.equals(from_gzip.telemetry)
    assert from_plain.incidents.equals(from_gzip.incidents)


def test_import_reports_progress_per_partition(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    summary = import_dataset(
        "smd", SLICES / "smd", _store(tmp_path), on_partition=lambda *c: calls.append(c)
    )
    assert calls == [(i, summary.partitions) for i in range(1, summary.partitions + 1)]


# --- ASD ---------------------------------------------------------------------------------


def _trusted_pickle(path: Path) -> NDArray[Any]:
    # The vendored slices are ours; the importer itself never calls pickle.load.
    return pickle.loads(path.read_bytes())  # type: ignore[no-any-return]


def test_asd_values_labels_and_five_minute_timeline_round_trip(asd_store: Imported) -> None:
    store, summary = asd_store
    processed = SLICES / "asd" / "processed"
    train = _trusted_pickle(processed / "omi-1_train.pkl")
    test = _trusted_pickle(processed / "omi-1_test.pkl")
    published_labels = _trusted_pickle(processed / "omi-1_test_label.pkl")

    rows = _raw_rows(store)
    assert rows["source"].unique().to_list() == ["app"]
    wide = rows.pivot(on="name", index="timestamp", values="value").sort("timestamp")
    names = [f"asd_metric_{i:02d}" for i in range(1, 20)]
    assert np.array_equal(wide.select(names).to_numpy(), np.vstack([train, test]))
    assert wide["timestamp"].diff().drop_nulls().unique().to_list() == [timedelta(minutes=5)]

    labels = _labels(store).sort("timestamp")
    assert labels.filter(pl.col("split") == "test")["label"].to_list() == [
        int(v) for v in published_labels
    ]
    assert labels.filter(pl.col("split") == "train")["label"].null_count() == len(train)
    info = read_dataset_info(store)
    assert (info.name, info.step_seconds, info.metrics) == ("asd", 300, names)
    assert summary.entities == ["omi-1"]


def test_asd_incidents_carry_the_published_anomaly_types_and_metrics(asd_store: Imported) -> None:
    store, _ = asd_store
    # Published: "58-72:5,6,...,19" (metric) and "174-185:7,9,...,18" (temporal), ends inclusive.
    test_start = SYNTHETIC_EPOCH + timedelta(minutes=5 * 600)
    incidents = _incidents(store)
    assert incidents["incident_type"].to_list() == ["metric", "temporal"]
    assert incidents["start"].to_list() == [
        test_start + timedelta(minutes=5 * 58),
        test_start + timedelta(minutes=5 * 174),
    ]
    assert incidents["end"].to_list() == [
        test_start + timedelta(minutes=5 * 72),
        test_start + timedelta(minutes=5 * 185),
    ]
    assert incidents["metrics"].to_list() == [
        [f"asd_metric_{i:02d}" for i in range(5, 20)],
        [f"asd_metric_{i:02d}" for i in (7, *range(9, 19))],
    ]


class _RunsShellCommand:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def test_restricted_unpickler_refuses_a_pickle_that_would_run_a_command(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    malicious = tmp_path / "malicious.pkl"
    malicious.write_bytes(pickle.dumps(_RunsShellCommand(marker)))
    with pytest.raises(pickle.UnpicklingError, match=r"system"):
        load_numpy_array(malicious)
    assert not marker.exists()


def test_asd_import_refuses_a_malicious_pickle_and_writes_nothing(tmp_path: Path) -> None:
    source = _copy_slice("asd", tmp_path)
    marker = tmp_path / "pwned"
    (source / "processed" / "omi-1_train.pkl").write_bytes(pickle.dumps(_RunsShellCommand(marker)))
    store = _store(tmp_path / "store")
    with pytest.raises(pickle.UnpicklingError, match=r"omi-1_train\.pkl"):
        import_dataset("asd", source, store)
    assert not marker.exists()
    assert store.list_keys("") == []


def test_restricted_unpickler_refuses_a_pickle_that_is_not_an_array(tmp_path: Path) -> None:
    path = tmp_path / "list.pkl"
    path.write_bytes(pickle.dumps([[0.5, 0.25]]))
    with pytest.raises(pickle.UnpicklingError, match="NumPy array"):
        load_numpy_array(path)


# --- NAB ---------------------------------------------------------------------------------

NAB_SERIES = {
    "ec2_cpu_utilization_24ae8d": ("CPUUtilization", "ec2"),
    "elb_request_count_8c0756": ("RequestCount", "alb"),
}


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _nab_windows() -> dict[str, list[tuple[datetime, datetime]]]:
    document = json.loads((SLICES / "nab" / "labels" / "combined_windows.json").read_text())
    return {
        Path(key).stem: [(_utc(start), _utc(end)) for start, end in windows]
        for key, windows in document.items()
    }


def test_nab_rows_round_trip_with_cloudwatch_names_and_sources(nab_store: Imported) -> None:
    store, summary = nab_store
    rows = _raw_rows(store)
    assert summary.entities == sorted(NAB_SERIES)
    for stem, (metric, source) in NAB_SERIES.items():
        with (SLICES / "nab" / "realAWSCloudwatch" / f"{stem}.csv").open() as published_file:
            published = [
                (_utc(r["timestamp"]), float(r["value"])) for r in csv.DictReader(published_file)
            ]
        mine = rows.filter(pl.col("instance_id") == stem).sort("timestamp")
        assert mine.select("name", "source").unique().rows() == [(metric, source)]
        assert list(zip(mine["timestamp"], mine["value"], strict=True)) == published
    info = read_dataset_info(store)
    assert (info.name, info.step_seconds, info.metrics) == (
        "nab",
        300,
        ["CPUUtilization", "RequestCount"],
    )


def test_nab_labels_mark_rows_inside_the_windows_as_test_anomalies(nab_store: Imported) -> None:
    store, summary = nab_store
    windows = _nab_windows()
    labels = _labels(store)
    assert labels["split"].unique().to_list() == ["test"]  # NAB publishes no train split
    for stem in NAB_SERIES:
        mine = labels.filter(pl.col("instance_id") == stem)
        expected = [
            int(any(start <= t <= end for start, end in windows[stem])) for t in mine["timestamp"]
        ]
        assert mine["label"].to_list() == expected
        assert 0 < sum(expected) < len(expected)
    assert summary.labelled_rows == labels.height


def test_nab_incidents_are_the_windows_explained_by_the_series_metric(nab_store: Imported) -> None:
    store, _ = nab_store
    incidents = _incidents(store).sort("instance_id")
    windows = _nab_windows()
    assert incidents.rows() == [
        (stem, *windows[stem][0], "unknown", [NAB_SERIES[stem][0]]) for stem in sorted(NAB_SERIES)
    ]


@pytest.mark.slow
def test_nab_import_into_s3_over_the_wire(aws_emulator: ServerProcess) -> None:
    boto3.client("s3", endpoint_url=aws_emulator.url).create_bucket(Bucket="vigil")
    store = ObjectStore.from_uri("s3://vigil/nab", endpoint_url=aws_emulator.url)
    summary = import_dataset("nab", SLICES / "nab", store, entities=["elb_request_count_8c0756"])
    keys = store.list_keys(RAW_PREFIX, ".parquet")
    assert len(keys) == summary.partitions
    assert sum(store.read_table(key).num_rows for key in keys) == summary.rows == 263
    assert read_dataset_info(store).metrics == ["RequestCount"]
    assert _incidents(store).height == 1


# --- bad input ---------------------------------------------------------------------------


def _replace_line(path: Path, number: int, line: str) -> None:
    lines = path.read_text().splitlines()
    lines[number] = line
    path.write_text("\n".join(lines) + "\n")


def test_missing_dataset_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(DatasetFormatError, match="not found"):
        import_dataset("smd", tmp_path / "nowhere", _store(tmp_path / "store"))


def test_missing_published_file_is_named(tmp_path: Path) -> None:
    source = _copy_slice("smd", tmp_path)
    (source / "ServerMachineDataset" / "test_label" / f"{SMD_MACHINE}.txt").unlink()
    with pytest.raises(DatasetFormatError, match=r"test_label/machine-1-2\.txt"):
        import_dataset("smd", source, _store(tmp_path / "store"))


def test_row_with_the_wrong_number_of_columns_is_refused(tmp_path: Path) -> None:
    source = _copy_slice("smd", tmp_path)
    test_file = source / "ServerMachineDataset" / "test" / f"{SMD_MACHINE}.txt"
    _replace_line(test_file, 10, ",".join(["0.5"] * 37))
    with pytest.raises(DatasetFormatError, match=r"machine-1-2\.txt: row 11"):
        import_dataset("smd", source, _store(tmp_path / "store"))


def test_file_with_the_wrong_number_of_columns_is_refused(tmp_path: Path) -> None:
    source = _copy_slice("smd", tmp_path)
    test_file = source / "ServerMachineDataset" / "test" / f"{SMD_MACHINE}.txt"
    test_file.write_text("\n".join(",".join(["0.5"] * 37) for _ in range(SMD_TEST_ROWS)))
    with pytest.raises(DatasetFormatError, match="expected 38 columns per row, found 37"):
        import_dataset("smd", source, _store(tmp_path / "store"))


def test_label_count_that_differs_from_the_test_rows_is_refused(tmp_path: Path) -> None:
    source = _copy_slice("smd", tmp_path)
    labels = source / "ServerMachineDataset" / "test_label" / f"{SMD_MACHINE}.txt"
    labels.write_text("".join(labels.read_text().splitlines(keepends=True)[:-1]))
    with pytest.raises(DatasetFormatError, match=r"one label per test row \(1000\)"):
        import_dataset("smd", source, _store(tmp_path / "store"))


def test_label_other_than_zero_or_one_is_refused(tmp_path: Path) -> None:
    source = _copy_slice("smd", tmp_path)
    labels = source / "ServerMachineDataset" / "test_label" / f"{SMD_MACHINE}.txt"
    _replace_line(labels, 3, "2")
    with pytest.raises(DatasetFormatError, match="only 0 and 1"):
        import_dataset("smd", source, _store(tmp_path / "store"))


def test_value_that_is_not_a_number_is_refused_with_its_row(tmp_path: Path) -> None:
    source = _copy_slice("smd", tmp_path)
    test_file = source / "ServerMachineDataset" / "test" / f"{SMD_MACHINE}.txt"
    _replace_line(test_file, 41, ",".join(["abc", *["0.5"] * 37]))
    with pytest.raises(DatasetFormatError, match=r"row 42 holds a non-numeric or infinite"):
        import_dataset("smd", source, _store(tmp_path / "store"))


def test_infinite_value_in_asd_is_refused_with_its_row(tmp_path: Path) -> None:
    source = _copy_slice("asd", tmp_path)
    train_path = source / "processed" / "omi-1_train.pkl"
    train = _trusted_pickle(train_path).copy()
    train[7, 3] = np.inf
    train_path.write_bytes(pickle.dumps(train, protocol=3))
    with pytest.raises(DatasetFormatError, match="omi-1 train: row 8 holds an infinite value"):
        import_dataset("asd", source, _store(tmp_path / "store"))


def test_malformed_nab_timestamp_is_refused_with_its_row(tmp_path: Path) -> None:
    source = _copy_slice("nab", tmp_path)
    series = source / "realAWSCloudwatch" / "elb_request_count_8c0756.csv"
    _replace_line(series, 5, "2014-04-12 06:19,42.0")
    with pytest.raises(DatasetFormatError, match="data row 5"):
        import_dataset("nab", source, _store(tmp_path / "store"))


def test_interpretation_segment_without_anomalous_rows_is_refused(tmp_path: Path) -> None:
    source = _copy_slice("smd", tmp_path)
    interpretation = source / "ServerMachineDataset" / "interpretation_label"
    (interpretation / f"{SMD_MACHINE}.txt").write_text("29-88:9\n300-310:1\n886-891:18\n")
    with pytest.raises(DatasetFormatError, match="segment 300-310 overlaps no anomalous row"):
        import_dataset("smd", source, _store(tmp_path / "store"))


def test_plain_and_gzip_copies_of_one_file_are_ambiguous(tmp_path: Path) -> None:
    source = _copy_slice("smd", tmp_path)
    train = source / "ServerMachineDataset" / "train" / f"{SMD_MACHINE}.txt"
    train.write_bytes(gzip.decompress(train.with_name(train.name + ".gz").read_bytes()))
    with pytest.raises(DatasetFormatError, match="keep one"):
        import_dataset("smd", source, _store(tmp_path / "store"))


def test_unknown_entity_is_refused_with_the_ones_available(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown smd entities \['machine-9-9'\].*machine-1-2"):
        import_dataset("smd", SLICES / "smd", _store(tmp_path), entities=["machine-9-9"])


def test_nab_window_without_rows_is_refused(tmp_path: Path) -> None:
    source = _copy_slice("nab", tmp_path)
    windows_path = source / "labels" / "combined_windows.json"
    windows = json.loads(windows_path.read_text())
    windows["realAWSCloudwatch/elb_request_count_8c0756.csv"].append(
        ["2015-01-01 00:00:00.000000", "2015-01-02 00:00:00.000000"]
    )
    windows_path.write_text(json.dumps(windows))
    with pytest.raises(DatasetFormatError, match="holds no row"):
        import_dataset("nab", source, _store(tmp_path / "store"))


def test_import_into_a_store_that_holds_data_is_refused(tmp_path: Path) -> None:
    store = _store(tmp_path)
    import_dataset("nab", SLICES / "nab", store)
    with pytest.raises(StoreNotEmptyError, match="already holds data"):
        import_dataset("nab", SLICES / "nab", store)


# --- published quirks, on small synthetic files in the published layouts -------------------

NAB_START = datetime(2014, 3, 3, tzinfo=UTC)
NAB_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
ASD_SERVER = "omi-9"
ASD_TEST_START = SYNTHETIC_EPOCH + timedelta(minutes=5 * 20)  # after 20 train rows

NabRows = list[tuple[datetime, str]]


def _steps(count: int, minutes: int = 5) -> list[datetime]:
    return [NAB_START + timedelta(minutes=minutes * i) for i in range(count)]


def _write_nab(
    root: Path,
    series: dict[str, NabRows],
    windows: dict[str, list[tuple[datetime, datetime]]] | None = None,
) -> Path:
    """NAB's layout: ``series`` and ``windows`` keyed "category/stem", as NAB keys its files."""
    for key, rows in series.items():
        path = root / f"{key}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = [f"{t.strftime(NAB_TIME_FORMAT)},{value}" for t, value in rows]
        path.write_text("\n".join(["timestamp,value", *lines]) + "\n")
    document = {
        f"{key}.csv": [
            [f"{a.strftime(NAB_TIME_FORMAT)}.000000", f"{b.strftime(NAB_TIME_FORMAT)}.000000"]
            for a, b in (windows or {}).get(key, [])
        ]
        for key in series
    }
    (root / "labels").mkdir(parents=True, exist_ok=True)
    (root / "labels" / "combined_windows.json").write_text(json.dumps(document))
    return root


def _write_asd(
    root: Path, train: NDArray[Any], test: NDArray[Any], labels: NDArray[Any], segments: str
) -> Path:
    """ASD's layout for one server; ``segments`` holds "start-end:metrics,type" lines."""
    processed, interpretation = root / "processed", root / "interpretation_label"
    processed.mkdir(parents=True)
    interpretation.mkdir()
    for part, array in (("train", train), ("test", test), ("test_label", labels)):
        (processed / f"{ASD_SERVER}_{part}.pkl").write_bytes(pickle.dumps(array, protocol=3))
    lines = [line.rsplit(",", 1) for line in segments.split()]
    (interpretation / f"{ASD_SERVER}.txt").write_text("\n".join(seg for seg, _ in lines))
    types = [f"{ASD_SERVER},{seg.split(':')[0]},{kind}" for seg, kind in lines]
    (interpretation / "anomaly_type.txt").write_text(
        "\n".join(["dataset,anomaly_segment,anomaly_type", *types]) + "\n"
    )
    return root


def _asd_arrays(anomalous: range) -> tuple[NDArray[Any], NDArray[Any], NDArray[Any]]:
    rng = np.random.default_rng(0)
    labels = np.zeros(40, dtype=np.int64)
    labels[anomalous] = 1
    return rng.random((20, 19)), rng.random((40, 19)), labels


def _smd_file(root: Path, folder: str, rows: list[str]) -> None:
    (root / folder).mkdir(parents=True, exist_ok=True)
    (root / folder / "machine-9-9.txt").write_text("\n".join(rows) + "\n")


def test_nab_repeated_timestamp_is_imported_once_as_the_mean_of_its_values(
    tmp_path: Path,
) -> None:
    # A CloudWatch export may repeat one timestamp many times with different values.
    times = _steps(12)
    rows = [(t, f"{i}.0") for i, t in enumerate(times)]
    rows[4:4] = [(times[3], "6.0"), (times[3], "9.0"), (times[7], "7.0")]
    key = "realAWSCloudwatch/ec2_cpu_utilization_000001"
    source = _write_nab(tmp_path / "nab", {key: rows}, {key: [(times[2], times[4])]})
    store = _store(tmp_path / "store")
    summary = import_dataset("nab", source, store)

    values = dict(_raw_rows(store).select("timestamp", "value").iter_rows())
    assert len(values) == summary.rows == 12
    assert values[times[3]] == 6.0  # mean of 3, 6 and 9
    assert values[times[7]] == 7.0  # an exact repeat changes nothing
    assert summary.repeated_timestamps == 3
    assert _labels(store)["label"].to_list() == [0, 0, 1, 1, 1, *[0] * 7]


def test_asd_overlapping_segments_of_two_types_make_one_incident_with_both(
    tmp_path: Path,
) -> None:
    train, test, labels = _asd_arrays(range(10, 26))
    segments = "10-20:1,2,metric 15-25:3,2,temporal"
    source = _write_asd(tmp_path / "asd", train, test, labels, segments)
    store = _store(tmp_path / "store")
    summary = import_dataset("asd", source, store)

    assert _incidents(store).to_dicts() == [
        {
            "instance_id": ASD_SERVER,
            "start": ASD_TEST_START + timedelta(minutes=5 * 10),
            "end": ASD_TEST_START + timedelta(minutes=5 * 25),
            "incident_type": "metric+temporal",
            "metrics": ["asd_metric_01", "asd_metric_02", "asd_metric_03"],
        }
    ]
    assert summary.anomalous_rows == 16


def test_smd_empty_and_nan_cells_are_imported_as_gaps_and_counted(tmp_path: Path) -> None:
    root = tmp_path / "ServerMachineDataset"
    row = ",".join(["0.5"] * 38)
    _smd_file(root, "train", [row, ",".join(["", *["0.5"] * 37]), row, row])
    _smd_file(root, "test", [row, row, ",".join(["0.5"] * 5 + ["nan"] + ["0.5"] * 32), row])
    _smd_file(root, "test_label", ["0", "1", "1", "0"])
    _smd_file(root, "interpretation_label", ["1-3:1,6"])
    store = _store(tmp_path / "store")
    summary = import_dataset("smd", tmp_path, store)

    rows = _raw_rows(store)
    assert summary.missing_values == 2
    assert summary.rows == rows.height == 8 * 38 - 2
    gaps = {
        (SYNTHETIC_EPOCH + timedelta(minutes=1), "cpu_r"),
        (SYNTHETIC_EPOCH + timedelta(minutes=6), "mem_u"),
    }
    assert not gaps & set(rows.select("timestamp", "name").iter_rows())
    assert _labels(store).sort("timestamp")["label"].to_list()[4:] == [0, 1, 1, 0]


def test_asd_nan_values_are_imported_as_gaps_and_counted(tmp_path: Path) -> None:
    train, test, labels = _asd_arrays(range(10, 20))
    train[2, 4] = test[5, 0] = np.nan
    source = _write_asd(tmp_path / "asd", train, test, labels, "10-20:1,metric")
    summary = import_dataset("asd", source, _store(tmp_path / "store"))
    assert summary.missing_values == 2
    assert summary.rows == 60 * 19 - 2
    assert summary.labelled_rows == 40


def test_nab_gaps_missing_values_and_irregular_steps_are_imported_and_counted(
    tmp_path: Path,
) -> None:
    times = _steps(12)
    rows = [(t, f"{i}.0") for i, t in enumerate(times)]
    rows[2], rows[4] = (times[2], ""), (times[4], "nan")
    off_step = times[9] + timedelta(minutes=2)
    rows = [*rows[:6], *rows[8:10], (off_step, "9.5"), *rows[10:]]  # steps 6 and 7 missing
    key = "realAWSCloudwatch/elb_request_count_000001"
    source = _write_nab(tmp_path / "nab", {key: rows}, {key: [(times[3], times[5])]})
    store = _store(tmp_path / "store")
    summary = import_dataset("nab", source, store)

    assert (summary.missing_values, summary.irregular_steps) == (2, 3)  # 15, 2 and 3 minutes
    assert summary.step_seconds == read_dataset_info(store).step_seconds == 300
    assert summary.rows == _raw_rows(store).height == 11 - 2
    labels = _labels(store).sort("timestamp")
    assert labels["timestamp"].to_list() == [t for t, _ in rows]
    assert labels["label"].to_list() == [0, 0, 0, 1, 1, 1, *[0] * 5]


NAB_CATEGORY_SERIES = {
    "realAWSCloudwatch/ec2_cpu_utilization_000001": ("CPUUtilization", "ec2"),
    "realAWSCloudwatch/grok_asg_anomaly": ("nab_value", "app"),
    "realKnownCause/nyc_taxi": ("nab_value", "app"),
    "realAdExchange/exchange-2_cpc_results": ("nab_value", "app"),
    "realTraffic/speed_6005": ("nab_value", "app"),
    "realTweets/Twitter_volume_AAPL": ("nab_value", "app"),
    "artificialNoAnomaly/art_flatline": ("nab_value", "app"),
    "artificialWithAnomaly/art_daily_jumpsup": ("nab_value", "app"),
}


def _every_category(root: Path) -> Path:
    series = {key: [(t, "1.5") for t in _steps(6)] for key in NAB_CATEGORY_SERIES}
    series["realKnownCause/nyc_taxi"] = [(t, "2.5") for t in _steps(6, minutes=30)]
    taxi_window = (NAB_START + timedelta(minutes=60), NAB_START + timedelta(minutes=90))
    return _write_nab(root, series, {"realKnownCause/nyc_taxi": [taxi_window]})


def test_nab_every_published_category_is_listed_and_imported(tmp_path: Path) -> None:
    source = _every_category(tmp_path / "nab")
    stems = sorted(key.split("/")[1] for key in NAB_CATEGORY_SERIES)
    assert list_nab_series(source) == stems

    store = _store(tmp_path / "store")
    summary = import_dataset("nab", source, store)
    assert summary.entities == stems
    sources = _raw_rows(store).select("instance_id", "name", "source").unique()
    assert sorted(sources.rows()) == sorted(
        (key.split("/")[1], *metric) for key, metric in NAB_CATEGORY_SERIES.items()
    )
    info = read_dataset_info(store)
    assert (info.metrics, info.step_seconds) == (["nab_value", "CPUUtilization"], 300)
    taxi = _labels(store).filter(pl.col("instance_id") == "nyc_taxi").sort("timestamp")
    assert taxi["label"].to_list() == [0, 0, 1, 1, 0, 0]
    assert summary.incidents == 1


def test_nab_series_imported_alone_keeps_its_own_step(tmp_path: Path) -> None:
    source = _every_category(tmp_path / "nab")
    summary = import_dataset("nab", source, _store(tmp_path / "store"), ["nyc_taxi"])
    assert (summary.step_seconds, summary.irregular_steps) == (1800, 0)


def test_nab_repository_layout_with_a_data_folder_is_read(tmp_path: Path) -> None:
    source = _every_category(tmp_path / "NAB")
    (source / "data").mkdir()
    for key in {key.split("/")[0] for key in NAB_CATEGORY_SERIES}:
        (source / key).rename(source / "data" / key)
    assert len(list_nab_series(source)) == len(NAB_CATEGORY_SERIES)
    summary = import_dataset("nab", source, _store(tmp_path / "store"), ["nyc_taxi"])
    assert summary.rows == 6


def test_nab_stem_published_in_two_categories_is_refused(tmp_path: Path) -> None:
    rows = [(t, "1.0") for t in _steps(3)]
    series = {"realKnownCause/nyc_taxi": rows, "realTraffic/nyc_taxi": rows}
    source = _write_nab(tmp_path / "nab", series)
    with pytest.raises(DatasetFormatError, match=r"nyc_taxi\.csv is in both realKnownCause/"):
        list_nab_series(source)


# --- entity stores (vigil evaluate's cache) ------------------------------------------------


def _entity_source(root: Path) -> Path:
    """A generic NAB series with a gap and a missing value, 2 days at 30-minute steps."""
    times = _steps(96, minutes=30)
    rows = [(t, f"{10 + i % 7}.0") for i, t in enumerate(times) if i not in (20, 21)]
    rows[30] = (rows[30][0], "")
    window = [(times[50], times[55])]
    return _write_nab(root, {"realKnownCause/nyc_taxi": rows}, {"realKnownCause/nyc_taxi": window})


def _crash(*args: object) -> None:
    raise RuntimeError("interrupted")


def _refuse(*args: object, **kwargs: object) -> None:
    raise AssertionError("a complete import or feature set was rebuilt")


def test_load_entity_rebuilds_a_store_an_aborted_import_left(tmp_path: Path) -> None:
    source = _entity_source(tmp_path / "nab")
    store_path = tmp_path / "work" / "nyc_taxi" / "store"
    with pytest.raises(RuntimeError, match="interrupted"):
        import_dataset("nab", source, _store(store_path), ["nyc_taxi"], on_partition=_crash)
    assert _store(store_path).list_keys(RAW_PREFIX)  # what the aborted run left

    series = load_entity("nab", source, "nyc_taxi", store_path)
    assert series.metrics == ["nab_value"]
    assert series.features.shape[0] == len(series.labels) == 96  # the gap is on the grid
    assert int(series.labels.sum()) == 6
    assert np.isfinite(series.features).all()


def test_load_entity_leaves_nothing_behind_when_a_run_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = _entity_source(tmp_path / "nab")
    store_path = tmp_path / "work" / "store"
    monkeypatch.setattr(entity_data, "build_features", _crash)
    with pytest.raises(RuntimeError, match="interrupted"):
        load_entity("nab", source, "nyc_taxi", store_path)
    assert list(store_path.parent.iterdir()) == []


def test_load_entity_reuses_a_complete_store_and_a_complete_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = _entity_source(tmp_path / "nab")
    store_path = tmp_path / "work" / "store"
    import_dataset("nab", source, _store(store_path), ["nyc_taxi"])
    raw_files = {p: p.stat().st_mtime_ns for p in (store_path / RAW_PREFIX).rglob("*")}
    monkeypatch.setattr(entity_data, "import_dataset", _refuse)
    first = load_entity("nab", source, "nyc_taxi", store_path)  # only the features are built
    assert {p: p.stat().st_mtime_ns for p in (store_path / RAW_PREFIX).rglob("*")} == raw_files

    every_file = {p: p.stat().st_mtime_ns for p in store_path.rglob("*")}
    monkeypatch.setattr(entity_data, "build_features", _refuse)
    second = load_entity("nab", source, "nyc_taxi", store_path)
    assert np.array_equal(first.features, second.features)
    assert {p: p.stat().st_mtime_ns for p in store_path.rglob("*")} == every_file


# --- the full published datasets ----------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason=f"the shared datasets are not at {SHARED_DATA}"
)
def test_full_datasets_import_with_their_published_facts(tmp_path: Path) -> None:
    smd_dir = SHARED_DATA / "smd" / "ServerMachineDataset"
    smd = import_dataset("smd", SHARED_DATA / "smd", _store(tmp_path / "smd"), [SMD_MACHINE])
    published = np.loadtxt(smd_dir / "test_label" / f"{SMD_MACHINE}.txt")
    test_text = gzip.decompress((smd_dir / "test" / f"{SMD_MACHINE}.txt.gz").read_bytes())
    test_rows = len(test_text.splitlines())
    assert len(published) == test_rows == smd.labelled_rows == 23_694
    assert smd.metrics == 38
    assert smd.anomaly_fraction == pytest.approx(published.mean())
    interpretation_lines = (smd_dir / "interpretation_label" / f"{SMD_MACHINE}.txt").read_text()
    assert smd.incidents == len(interpretation_lines.split())
    assert smd.rows == 2 * 23_694 * 38

    asd_store = _store(tmp_path / "asd")
    asd = import_dataset("asd", SHARED_DATA / "asd", asd_store)
    assert asd.entities == ["omi-1", "omi-2", "omi-3", "omi-4"]
    assert asd.rows == 4 * (8640 + 4320) * 19
    assert asd.labelled_rows == 4 * 4320
    types_file = (SHARED_DATA / "asd" / "interpretation_label" / "anomaly_type.txt").read_text()
    published_types = [line.split(",")[2] for line in types_file.split()[1:]]
    incidents = _incidents(asd_store)
    assert sorted(incidents["incident_type"]) == sorted(published_types)

    nab = import_dataset("nab", SHARED_DATA / "nab", _store(tmp_path / "nab"))
    windows = json.loads((SHARED_DATA / "nab" / "labels" / "combined_windows.json").read_text())
    assert len(nab.entities) == len(windows) == 9
    assert nab.incidents == sum(len(w) for w in windows.values())
    assert nab.anomalous_rows > 0
