"""Data validation: each rule rejects what it should, names it, and shows the offending rows."""

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandera.config
import polars as pl
import pyarrow as pa
import pytest

from contracts.layout import raw_partition_path
from contracts.store import ObjectStore
from contracts.telemetry import RAW_SCHEMA
from telemetry.validation import validate_features, validate_raw
from telemetry.validation_report import (
    DataValidationError,
    ValidationReport,
    ensure_valid,
    write_report,
)

T0 = datetime(2024, 3, 4, 10, 0, tzinfo=UTC)
RAW_DTYPES = pl.DataFrame(RAW_SCHEMA.empty_table()).schema


def metric_row(minute: int, name: str, value: float, instance: str = "i-1") -> dict[str, Any]:
    return {
        "timestamp": T0 + timedelta(minutes=minute),
        "instance_id": instance,
        "source": "ec2",
        "kind": "metric",
        "name": name,
        "value": value,
        "level": None,
        "message": None,
        "metadata": None,
        "event_id": f"AWS/EC2/{name}",
        "parse_error": False,
    }


def log_row(
    minute: int, event_id: str, level: str | None, parse_error: bool = False
) -> dict[str, Any]:
    return {
        "timestamp": T0 + timedelta(minutes=minute),
        "instance_id": "i-1",
        "source": "app",
        "kind": "log",
        "name": None,
        "value": None,
        "level": level,
        "message": "connection refused" if level else "{not json",
        "metadata": '{"port": 5432}' if level else None,
        "event_id": event_id,
        "parse_error": parse_error,
    }


def raw_rows() -> list[dict[str, Any]]:
    """Ten minutes of two metrics on two instances, with a few log events."""
    rows = [
        metric_row(minute, name, value, instance)
        for minute in range(10)
        for instance in ("i-1", "i-2")
        for name, value in (("CPUUtilization", 40.0 + minute), ("NetworkIn", 1e6 * minute))
    ]
    rows += [log_row(3, "e-1", "ERROR"), log_row(3, "e-2", "INFO"), log_row(5, "e-3", "WARN")]
    return rows


def raw_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=RAW_DTYPES)


def only_failure(report: ValidationReport) -> tuple[str, str | None]:
    failed = [(c.rule, c.column) for c in report.checks if not c.passed]
    assert len(failed) == 1, failed
    return failed[0]


def rejection(report: ValidationReport) -> str:
    with pytest.raises(DataValidationError) as caught:
        ensure_valid(report)
    return str(caught.value)


def test_clean_raw_batch_scores_100_and_passes() -> None:
    report = validate_raw(pa.Table.from_pylist(raw_rows(), schema=RAW_SCHEMA))

    assert report.dataset == "raw"
    assert report.rows == 43
    assert all(c.passed for c in report.checks)
    assert report.quality_score == 100.0
    assert report.parse_error_rows == 0
    ensure_valid(report)


def test_parse_error_rows_are_counted_not_rejected() -> None:
    # Malformed events are kept on purpose, with no level: legitimate, only counted.
    rows = [*raw_rows(), log_row(6, "e-4", None, parse_error=True), log_row(7, "e-5", None, True)]

    report = validate_raw(raw_frame(rows))

    assert report.parse_error_rows == 2
    assert report.quality_score == 100.0
    ensure_valid(report)


def test_missing_level_without_parse_error_is_rejected() -> None:
    rows = [*raw_rows(), log_row(6, "e-4", None, parse_error=False)]

    report = validate_raw(raw_frame(rows))

    assert only_failure(report) == ("required_on_log_rows", "level")
    message = rejection(report)
    assert "required_on_log_rows on column 'level': 1 of 44 rows" in message
    assert "'event_id': 'e-4'" in message


@pytest.mark.parametrize(
    ("column", "bad", "rule"),
    [
        ("source", "gcp", "allowed_values"),
        ("kind", "trace", "allowed_values"),
        ("level", "FATAL", "allowed_values"),
        ("instance_id", None, "not_null"),
        ("name", None, "required_on_metric_rows"),
        ("value", None, "required_on_metric_rows"),
        ("value", math.nan, "required_on_metric_rows"),
        ("value", 140.0, "in_range"),
        ("value", -1.0, "in_range"),
        ("value", math.inf, "in_range"),
    ],
)
def test_each_raw_value_rule_names_itself_the_column_and_the_row(
    column: str, bad: object, rule: str
) -> None:
    rows = raw_rows()
    target = 40 if column == "level" else 4  # row 40 is a log event, row 4 a CPU datapoint
    rows[target][column] = bad

    report = validate_raw(raw_frame(rows))

    assert only_failure(report) == (rule, column)
    failed = next(c for c in report.checks if not c.passed)
    assert failed.severity == "critical"
    assert failed.failed_rows == 1
    message = rejection(report)
    assert f"{rule} on column '{column}': 1 of {len(rows)} rows" in message
    assert f"'timestamp': '{rows[target]['timestamp'].isoformat()}'" in message


def test_unbounded_metric_only_needs_a_finite_value() -> None:
    rows = raw_rows()
    rows[1]["value"] = 5e12  # NetworkIn has no upper bound
    rows[3]["name"] = "QueueDepth"  # a metric without bounds in METRIC_RANGES
    rows[3]["value"] = -3.0

    ensure_valid(validate_raw(raw_frame(rows)))


def test_duplicate_metric_datapoint_is_rejected() -> None:
    rows = raw_rows()
    rows.append(dict(rows[4]))

    report = validate_raw(raw_frame(rows))

    failed = {(c.rule, c.column): c for c in report.checks if not c.passed}
    duplicate = failed[("unique_metric_datapoint", None)]
    assert duplicate.failed_rows == 2
    assert {row["name"] for row in duplicate.sample} == {"CPUUtilization"}
    assert "unique_metric_datapoint: 2 of 44 rows" in rejection(report)


def test_duplicate_log_event_is_rejected_but_equal_timestamps_are_not() -> None:
    # e-1 and e-2 share a timestamp (legitimate); a second e-3 is the same event twice.
    rows = [*raw_rows(), log_row(5, "e-3", "WARN")]

    report = validate_raw(raw_frame(rows))

    assert only_failure(report) == ("unique_log_event", None)
    assert "'event_id': 'e-3'" in rejection(report)


def test_metric_series_going_back_in_time_is_rejected() -> None:
    rows = raw_rows()
    rows[4], rows[8] = rows[8], rows[4]  # i-1 CPU at minutes 2 and 1 swapped

    report = validate_raw(raw_frame(rows))

    assert only_failure(report) == ("strictly_increasing", "timestamp")
    failed = next(c for c in report.checks if not c.passed)
    assert failed.sample[0]["timestamp"] == (T0 + timedelta(minutes=1)).isoformat()
    assert failed.sample[0]["name"] == "CPUUtilization"


def test_gap_in_a_metric_series_is_a_warning_only() -> None:
    rows = [r for r in raw_rows() if not (r["kind"] == "metric" and 1 <= r["timestamp"].minute < 9)]
    rows = [*rows, *(metric_row(40, "CPUUtilization", 50.0, i) for i in ("i-1", "i-2"))]

    report = validate_raw(raw_frame(rows), max_gap=timedelta(minutes=15))

    assert only_failure(report) == ("gap_within_limit", "timestamp")
    gap = next(c for c in report.checks if not c.passed)
    assert gap.severity == "warning"
    assert gap.failed_rows == 2
    ensure_valid(report)


def test_wrong_type_and_missing_column_are_rejected() -> None:
    frame = raw_frame(raw_rows()).with_columns(pl.col("value").cast(pl.String)).drop("event_id")

    report = validate_raw(frame)

    failed = {(c.rule, c.column): c for c in report.checks if not c.passed}
    assert failed[("dtype", "value")].failed_rows == len(frame)
    assert "found String" in (failed[("dtype", "value")].detail or "")
    assert ("column_present", "event_id") in failed
    message = rejection(report)
    assert "dtype on column 'value'" in message
    assert "column_present on column 'event_id'" in message


def test_every_violation_is_reported_in_one_run() -> None:
    rows = raw_rows()
    rows[0]["source"] = "gcp"
    rows[2]["value"] = 101.0
    rows.append(log_row(5, "e-3", "WARN"))

    report = validate_raw(raw_frame(rows))

    failed = {(c.rule, c.column) for c in report.checks if not c.passed}
    assert failed == {
        ("allowed_values", "source"),
        ("in_range", "value"),
        ("unique_log_event", None),
    }
    message = rejection(report)
    assert "allowed_values on column 'source'" in message
    assert "in_range on column 'value'" in message
    assert "unique_log_event" in message


def test_quality_score_is_the_share_of_passing_check_rows() -> None:
    rows = raw_rows()  # 43 rows
    rows[0]["value"] = 200.0  # 1 row fails in_range
    rows[2]["source"] = "gcp"  # 1 row fails allowed_values
    rows.append(log_row(5, "e-3", "WARN"))  # 2 rows fail unique_log_event

    report = validate_raw(raw_frame(rows))

    cells = len(report.checks) * 44
    expected = math.floor(1000 * (cells - 4) / cells) / 10
    assert sum(c.failed_rows for c in report.checks) == 4
    assert report.quality_score == expected < 100.0


# Feature tables -----------------------------------------------------------------------------

FEATURES = [
    "hour_of_day",
    "day_of_week",
    "is_weekend",
    "is_business_hours",
    "cpu_utilization",
    "cpu_utilization_mean_15",
    "cpu_utilization_std_15",
    "cpu_utilization_max_15",
    "cpu_utilization_lag_1",
    "cpu_utilization_change_1",
    "cpu_utilization_zscore_60",
    "network_in",
    "network_in_sum_15",
    "error_count",
    "error_count_sum_15",
    "error_ratio_15",
]


def feature_frame(minutes: int = 30, instances: tuple[str, ...] = ("i-1", "i-2")) -> pl.DataFrame:
    rng = np.random.default_rng(7)
    times = [T0 + timedelta(minutes=m) for m in range(minutes)]
    n = minutes * len(instances)
    cpu = rng.uniform(5, 95, n)
    return pl.DataFrame(
        {
            "instance_id": [i for i in instances for _ in times],
            "timestamp": times * len(instances),
            "hour_of_day": [float(t.hour) for t in times] * len(instances),
            "day_of_week": [float(t.weekday()) for t in times] * len(instances),
            "is_weekend": 0.0,
            "is_business_hours": 1.0,
            "cpu_utilization": cpu,
            "cpu_utilization_mean_15": cpu,
            "cpu_utilization_std_15": rng.uniform(0, 5, n),
            "cpu_utilization_max_15": cpu,
            "cpu_utilization_lag_1": cpu,
            "cpu_utilization_change_1": rng.normal(0, 3, n),
            "cpu_utilization_zscore_60": rng.normal(0, 1, n),
            "network_in": rng.uniform(0, 1e7, n),
            "network_in_sum_15": rng.uniform(0, 1e8, n),
            "error_count": rng.integers(0, 3, n).astype(float),
            "error_count_sum_15": rng.integers(0, 30, n).astype(float),
            "error_ratio_15": rng.uniform(0, 1, n),
            "label": 0,  # columns beyond the features are allowed
        }
    ).with_columns(pl.col("timestamp").dt.cast_time_unit("ms"))


def test_clean_feature_table_scores_100_and_passes() -> None:
    report = validate_features(feature_frame(), FEATURES)

    assert report.dataset == "features"
    assert report.rows == 60
    assert report.parse_error_rows is None
    assert all(c.passed for c in report.checks)
    assert report.quality_score == 100.0
    ensure_valid(report)
    # Columns that pass are screened in one pass, yet every rule of every feature is reported.
    reported = {(c.column, c.rule) for c in report.checks}
    assert {(name, "finite") for name in FEATURES} <= reported
    assert {("hour_of_day", "in_range"), ("is_weekend", "allowed_values")} <= reported


@pytest.mark.parametrize(
    ("column", "bad", "rule"),
    [
        ("hour_of_day", 24.0, "in_range"),
        ("day_of_week", 7.0, "in_range"),
        ("is_weekend", 0.5, "allowed_values"),
        ("cpu_utilization", 100.5, "in_range"),
        ("cpu_utilization_mean_15", -0.1, "in_range"),
        ("cpu_utilization_max_15", 101.0, "in_range"),
        ("cpu_utilization_lag_1", 150.0, "in_range"),
        ("cpu_utilization_std_15", -1.0, "in_range"),
        ("network_in", -5.0, "in_range"),
        ("network_in_sum_15", -5.0, "in_range"),
        ("error_count", -1.0, "in_range"),
        ("error_ratio_15", 1.5, "in_range"),
        ("cpu_utilization", None, "finite"),
        ("cpu_utilization", math.nan, "finite"),
        ("error_count", math.inf, "finite"),
    ],
)
def test_each_feature_rule_names_itself_the_column_and_the_row(
    column: str, bad: float | None, rule: str
) -> None:
    frame = feature_frame().with_columns(
        pl.when(pl.int_range(pl.len()) == 37)
        .then(pl.lit(bad, dtype=pl.Float64))
        .otherwise(pl.col(column))
        .alias(column)
    )

    report = validate_features(frame, FEATURES)

    assert only_failure(report) == (rule, column)
    failed = next(c for c in report.checks if not c.passed)
    assert (failed.severity, failed.failed_rows) == ("critical", 1)
    assert failed.sample[0]["instance_id"] == "i-2"
    assert failed.sample[0]["timestamp"] == (T0 + timedelta(minutes=7)).isoformat()
    assert f"{rule} on column '{column}': 1 of 60 rows" in rejection(report)


def test_unbounded_derived_features_may_be_negative() -> None:
    frame = feature_frame().with_columns(
        cpu_utilization_change_1=pl.lit(-80.0), cpu_utilization_zscore_60=pl.lit(-6.0)
    )

    ensure_valid(validate_features(frame, FEATURES))


def test_missing_values_in_non_critical_features_only_warn() -> None:
    # Lags and windows are empty at the start of a series; that is expected.
    frame = feature_frame().with_columns(
        pl.when(pl.col("timestamp") == pl.col("timestamp").min())
        .then(None)
        .otherwise(pl.col("cpu_utilization_lag_1"))
        .alias("cpu_utilization_lag_1"),
        cpu_utilization_std_15=pl.lit(math.nan),
    )

    report = validate_features(frame, FEATURES)

    failed = {(c.rule, c.column): c for c in report.checks if not c.passed}
    assert set(failed) == {
        ("finite", "cpu_utilization_lag_1"),
        ("finite", "cpu_utilization_std_15"),
    }
    assert failed[("finite", "cpu_utilization_lag_1")].failed_rows == 2
    assert {c.severity for c in failed.values()} == {"warning"}
    assert report.quality_score < 100.0
    ensure_valid(report)


def test_critical_features_can_be_chosen() -> None:
    frame = feature_frame().with_columns(cpu_utilization_lag_1=pl.lit(None, dtype=pl.Float64))

    report = validate_features(frame, FEATURES, critical=["cpu_utilization_lag_1"])

    assert "finite on column 'cpu_utilization_lag_1': 60 of 60 rows" in rejection(report)


def test_duplicate_instance_minute_is_rejected() -> None:
    frame = feature_frame()
    frame = pl.concat([frame, frame[45:46]])

    report = validate_features(frame, FEATURES)

    failed = {(c.rule, c.column): c for c in report.checks if not c.passed}
    assert failed[("unique_key", None)].failed_rows == 2
    assert failed[("unique_key", None)].sample[0] == {
        "instance_id": "i-2",
        "timestamp": (T0 + timedelta(minutes=15)).isoformat(),
    }
    assert "unique_key: 2 of 61 rows" in rejection(report)


def test_unsorted_instance_series_is_rejected_and_a_gap_warns() -> None:
    frame = feature_frame(minutes=30)
    swapped = frame[[0, 2, 1, *range(3, 30)]]
    gapped = frame[30:60].filter((pl.col("timestamp") - T0) >= timedelta(minutes=20))
    frame = pl.concat([swapped, frame[30:31], gapped])

    report = validate_features(frame, FEATURES)

    failed = {(c.rule, c.column): c for c in report.checks if not c.passed}
    assert set(failed) == {("strictly_increasing", "timestamp"), ("gap_within_limit", "timestamp")}
    order = failed[("strictly_increasing", "timestamp")]
    assert (order.failed_rows, order.sample[0]["instance_id"]) == (1, "i-1")
    assert order.sample[0]["timestamp"] == (T0 + timedelta(minutes=1)).isoformat()
    assert failed[("gap_within_limit", "timestamp")].severity == "warning"
    assert failed[("gap_within_limit", "timestamp")].sample[0]["instance_id"] == "i-2"
    message = rejection(report)
    assert "strictly_increasing on column 'timestamp'" in message
    assert "gap_within_limit" not in message


def test_wrong_feature_types_are_rejected() -> None:
    frame = feature_frame().with_columns(
        pl.col("error_count").cast(pl.Int64),
        pl.col("timestamp").dt.replace_time_zone(None),
    )

    report = validate_features(frame, FEATURES)

    failed = {(c.rule, c.column) for c in report.checks if not c.passed}
    assert {("dtype", "error_count"), ("dtype", "timestamp")} <= failed
    message = rejection(report)
    assert "dtype on column 'error_count': 60 of 60 rows (expected float, found Int64)" in message
    assert "dtype on column 'timestamp'" in message


def test_float32_features_are_accepted() -> None:
    frame = feature_frame().with_columns(pl.col(FEATURES).cast(pl.Float32))

    ensure_valid(validate_features(frame, FEATURES))


def test_missing_feature_column_is_rejected() -> None:
    report = validate_features(feature_frame().drop("network_in"), FEATURES)

    assert only_failure(report) == ("column_present", "network_in")
    assert "column_present on column 'network_in': 60 of 60 rows (column is missing)" in (
        rejection(report)
    )


@pytest.mark.parametrize(
    ("features", "critical", "error"),
    [
        ([], None, "feature_columns is empty"),
        (["hour_of_day", "hour_of_day"], None, "repeats"),
        (["timestamp", "hour_of_day"], None, "id column"),
        (["hour_of_day"], ["cpu_utilization"], "not in feature_columns"),
    ],
)
def test_bad_arguments_are_refused(
    features: list[str], critical: list[str] | None, error: str
) -> None:
    with pytest.raises(ValueError, match=error):
        validate_features(feature_frame(), features, critical)


def test_pandera_settings_cannot_switch_validation_off() -> None:
    # The same settings as PANDERA_VALIDATION_ENABLED=False (or a schema-only depth) in a
    # job's environment: a bad batch must still be caught.
    rows = raw_rows()
    rows[4]["value"] = 500.0

    for ambient in ({"validation_enabled": False}, {"validation_depth": "SCHEMA_ONLY"}):
        with pandera.config.config_context(**ambient):
            assert only_failure(validate_raw(raw_frame(rows))) == ("in_range", "value")


def test_report_is_written_beside_the_data_as_json(tmp_path: Path) -> None:
    store = ObjectStore.from_uri(str(tmp_path / "store"))
    data_key = raw_partition_path(T0)
    rows = raw_rows()
    rows[0]["value"] = math.inf
    report = validate_raw(raw_frame(rows))

    key = write_report(store, data_key, report)

    assert key == "raw-logs/2024/03/04/10/data_2024030410.quality.json"
    written = json.loads((tmp_path / "store" / key).read_text())
    assert written["dataset"] == "raw"
    assert written["quality_score"] == report.quality_score
    in_range = next(c for c in written["checks"] if c["rule"] == "in_range")
    assert in_range["sample"][0]["value"] == "Infinity"
    assert ValidationReport.model_validate_json(store.read_bytes(key)).checks[0] == report.checks[0]


# Realistic sizes ----------------------------------------------------------------------------


@pytest.mark.slow
def test_realistic_batches_validate_with_failures_reported() -> None:
    """200k raw rows and 200k feature rows x 300 columns; run to catch pathological slowness."""
    rng = np.random.default_rng(0)
    instances = [f"i-{k:04d}" for k in range(100)]
    minutes, metrics = 500, ("CPUUtilization", "MemoryUtilization", "NetworkIn", "Latency")
    stamps = pl.datetime_range(
        T0, T0 + timedelta(minutes=minutes - 1), "1m", time_unit="ms", time_zone="UTC", eager=True
    )
    raw = (
        pl.DataFrame({"timestamp": stamps})
        .join(pl.DataFrame({"instance_id": instances}), how="cross")
        .join(pl.DataFrame({"name": metrics}), how="cross")
        .with_columns(
            source=pl.lit("ec2"),
            kind=pl.lit("metric"),
            value=pl.lit(rng.uniform(0, 100, minutes * 100 * 4)),
            level=pl.lit(None, pl.String),
            message=pl.lit(None, pl.String),
            metadata=pl.lit(None, pl.String),
            event_id=pl.lit("AWS/EC2"),
            parse_error=pl.lit(False),
        )
        .select(RAW_SCHEMA.names)
    )
    raw = raw.with_columns(
        value=pl.when(pl.int_range(pl.len()) % 1000 == 0).then(-1.0).otherwise("value")
    )

    raw_report = validate_raw(raw)

    assert raw_report.rows == 50_000 * 4
    assert [(c.rule, c.failed_rows) for c in raw_report.checks if not c.passed] == [
        ("in_range", 200)
    ]

    rows = 200_000
    columns = {f"m{k}_{stat}_15": rng.random(rows) for k in range(100) for stat in ("mean", "max")}
    columns |= {f"m{k}_change_1": rng.normal(size=rows) for k in range(100)}
    features = pl.DataFrame(
        {
            "instance_id": np.repeat([f"i-{k}" for k in range(200)], rows // 200),
            "timestamp": pl.datetime_range(
                T0, T0 + timedelta(minutes=rows // 200 - 1), "1m", time_zone="UTC", eager=True
            ).to_list()
            * 200,
            **columns,
        }
    )
    # Every instance out of order (each row after the first of its series goes back in time),
    # and a third of the columns empty: tens of millions of failing cells to count.
    changes = [f"m{k}_change_1" for k in range(100)]
    features = features.with_columns(
        pl.col("timestamp").reverse(), *(pl.lit(math.nan).alias(c) for c in changes)
    )

    feature_report = validate_features(features, list(columns))

    failed = {(c.rule, c.column): c.failed_rows for c in feature_report.checks if not c.passed}
    assert failed == {
        ("strictly_increasing", "timestamp"): rows - 200,
        **{("finite", c): rows for c in changes},
    }
    assert len(feature_report.checks) == 3 * 300 + 9
