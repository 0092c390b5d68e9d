"""Data validation of raw telemetry and feature tables before they are used.

Every rule is a pandera check, validated lazily so that one run reports every failing rule:
rules about one column (types, missing values, ranges, timestamp order) are checks of that
column, rules about whole records (duplicate keys) are checks of the frame. Critical rules
reject the batch (``telemetry.validation_report.ensure_valid``); warnings are only reported.
"""

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Literal

import pandera.polars as pa
import polars as pl
import pyarrow
from pandera.api.polars.types import PolarsData
from pandera.config import ValidationDepth, config_context
from pandera.errors import SchemaError, SchemaErrors

from contracts.features import metric_slug
from contracts.telemetry import (
    KINDS,
    LOG_KEY,
    LOG_LEVELS,
    METRIC_KEY,
    METRIC_RANGES,
    RAW_SCHEMA,
    SOURCES,
)
from telemetry.validation_report import (
    CheckResult,
    JsonScalar,
    Severity,
    ValidationReport,
    quality_score,
)

SAMPLE_SIZE = 5
DEFAULT_MAX_GAP = timedelta(minutes=15)
FEATURE_KEY = ("instance_id", "timestamp")
TIME_FEATURES = ("hour_of_day", "day_of_week", "is_weekend", "is_business_hours")
LOG_COUNT_FEATURES = (
    "error_count",
    "warning_count",
    "critical_count",
    "log_count",
    "parse_error_count",
)

# A feature derived from a base column over a window or lag, e.g. ``cpu_utilization_mean_15``.
_DERIVED_FEATURE = re.compile(
    r"^(?P<base>.+)_(?P<stat>mean|std|min|max|lag|change|zscore|sum|ratio)_\d+$"
)
# Statistics that stay within the bounds of the metric they summarise.
_BOUNDED_STATS = (None, "mean", "min", "max", "lag")
_TIME_FEATURE_RANGES = {"hour_of_day": (0.0, 23.0), "day_of_week": (0.0, 6.0)}
_FLAG_FEATURES = ("is_weekend", "is_business_hours")
# Columns shown beside the offending value in a report's sample rows.
_RAW_CONTEXT = (
    "timestamp",
    "instance_id",
    "source",
    "kind",
    "name",
    "value",
    "level",
    "event_id",
    "parse_error",
)


@dataclass(frozen=True)
class _Plan:
    """The pandera schemas of one kind of dataset and how to report their failures."""

    schema: pa.DataFrameSchema
    warnings: frozenset[tuple[str | None, str]]
    context: tuple[str, ...]
    # Float columns whose every rule is one of these row expressions (besides the type):
    # screened in one pass, only those that fail go through pandera for the report.
    screened: dict[str, list[pl.Expr]] = field(default_factory=dict)


def validate_raw(
    table: pyarrow.Table | pl.DataFrame, *, max_gap: timedelta = DEFAULT_MAX_GAP
) -> ValidationReport:
    """Check one batch of raw telemetry against ``contracts.telemetry.RAW_SCHEMA``.

    Critical: every schema column present with its type; timestamp, instance_id, source, kind
    and parse_error never null; source, kind and level from their allowed sets; name and a
    non-NaN value on metric rows; a level on log rows unless the event is flagged
    ``parse_error`` (those events are kept on purpose and only counted); metric values finite
    and within ``METRIC_RANGES``; each (instance, metric) series strictly increasing in time
    in file order; no duplicate metric datapoint (``METRIC_KEY``) or log event (``LOG_KEY``).
    Warning: a gap longer than ``max_gap`` within an (instance, metric) series.

    Args:
        table: The batch, as read from a raw partition.
        max_gap: Longest gap between consecutive datapoints of a series before it is reported.

    Returns:
        The report; call ``ensure_valid`` on it to reject a batch with critical failures.
    """
    frame = table if isinstance(table, pl.DataFrame) else pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)  # a Table always converts to a DataFrame
    report = _validate(frame, "raw", _raw_plan(max_gap))
    if frame.schema.get("parse_error") == pl.Boolean:
        report.parse_error_rows = int(frame["parse_error"].sum())
    return report


def validate_features(
    df: pl.DataFrame,
    feature_columns: Sequence[str],
    critical: Sequence[str] | None = None,
    *,
    max_gap: timedelta = DEFAULT_MAX_GAP,
) -> ValidationReport:
    """Check a feature table: one row per (instance_id, UTC timestamp), float feature columns.

    Critical: id columns present, typed and never null; one row per (instance_id, timestamp);
    each instance's timestamps strictly increasing in file order; every feature column
    present and float; critical features never null, NaN or infinite; values within bounds
    where they are known (hour 0–23, day 0–6, flags 0/1, counts and std ≥ 0, ratios 0–1,
    a metric's value, lags, mean, min and max within ``METRIC_RANGES``).
    Warning: null, NaN or infinite values in other features (e.g. lags at a series' start),
    gaps longer than ``max_gap`` within an instance's series.

    Args:
        df: The feature table.
        feature_columns: The model's feature columns (the id columns are not features).
        critical: Features that must always have a finite value. Defaults to the time
            features and every feature that is not a window, lag, change or ratio of another
            (the current metric values and log counts).
        max_gap: Longest gap between an instance's consecutive rows before it is reported.

    Returns:
        The report; call ``ensure_valid`` on it to reject a batch with critical failures.

    Raises:
        ValueError: If ``feature_columns`` is empty, repeats a name or names an id column,
            or ``critical`` names a column that is not a feature.
    """
    features = list(feature_columns)
    if not features:
        raise ValueError("feature_columns is empty")
    repeated = sorted({c for c in features if features.count(c) > 1})
    if repeated:
        raise ValueError(f"feature_columns repeats {repeated}")
    ids = sorted(set(features) & set(FEATURE_KEY))
    if ids:
        raise ValueError(f"feature_columns includes the id column(s) {ids}")
    if critical is None:
        critical = [c for c in features if c in TIME_FEATURES or not _DERIVED_FEATURE.match(c)]
    unknown = sorted(set(critical) - set(features))
    if unknown:
        raise ValueError(f"critical names columns that are not in feature_columns: {unknown}")
    return _validate(df, "features", _features_plan(features, set(critical), max_gap))


def _raw_plan(max_gap: timedelta) -> _Plan:
    is_metric = pl.col("kind").eq_missing("metric")
    is_log = pl.col("kind").eq_missing("log")
    value = pl.col("value")
    # Metrics without bounds in METRIC_RANGES need only be finite.
    lower = pl.col("name").replace_strict(
        {name: low for name, (low, _) in METRIC_RANGES.items()},
        default=-math.inf,
        return_dtype=pl.Float64,
    )
    upper = pl.col("name").replace_strict(
        {name: high for name, (_, high) in METRIC_RANGES.items()},
        default=math.inf,
        return_dtype=pl.Float64,
    )

    def allowed(column: str, values: Sequence[str]) -> pa.Check:
        return _check("allowed_values", pl.col(column).is_null() | pl.col(column).is_in(values))

    extra_checks = {
        "source": [allowed("source", SOURCES)],
        "kind": [allowed("kind", KINDS)],
        "level": [
            allowed("level", LOG_LEVELS),
            _check(
                "required_on_log_rows",
                ~is_log | pl.col("level").is_not_null() | pl.col("parse_error").eq_missing(True),
            ),
        ],
        "name": [_check("required_on_metric_rows", ~is_metric | pl.col("name").is_not_null())],
        "value": [
            _check("required_on_metric_rows", ~is_metric | (value.is_not_null() & ~value.is_nan())),
            _check(
                "in_range",
                ~is_metric
                | value.is_null()
                | value.is_nan()
                | (value.is_finite() & value.is_between(lower, upper)),
            ),
        ],
        "timestamp": _series_checks(("kind", "instance_id", "name"), ~is_metric, max_gap),
    }
    dtypes = pl.DataFrame(RAW_SCHEMA.empty_table()).schema
    columns = {
        field.name: pa.Column(
            dtypes[field.name],
            extra_checks.get(field.name, []),
            nullable=field.nullable,
        )
        for field in RAW_SCHEMA
    }
    records = [
        _check(
            "unique_metric_datapoint",
            ~is_metric | (pl.len().over("kind", *METRIC_KEY) == 1),
        ),
        _check(
            "unique_log_event",
            ~is_log | pl.col(LOG_KEY[0]).is_null() | (pl.len().over("kind", *LOG_KEY) == 1),
        ),
    ]
    return _Plan(
        schema=pa.DataFrameSchema(columns, checks=records),
        warnings=frozenset({("timestamp", "gap_within_limit")}),
        context=_RAW_CONTEXT,
    )


def _features_plan(features: list[str], critical: set[str], max_gap: timedelta) -> _Plan:
    metric_bounds = {metric_slug(name): bounds for name, bounds in METRIC_RANGES.items()}
    columns = {
        "instance_id": pa.Column(pl.String, nullable=False),
        "timestamp": pa.Column(
            None,
            [
                _dtype_check(
                    "Datetime UTC", lambda t: isinstance(t, pl.Datetime) and t.time_zone == "UTC"
                ),
                *_series_checks(("instance_id",), pl.lit(False), max_gap),
            ],
            nullable=False,
        ),
    }
    screened: dict[str, list[pl.Expr]] = {}
    for name in features:
        column = pl.col(name)
        rules = {"finite": column.is_finite()}
        bounds = _feature_bounds(name, metric_bounds)
        if name in _FLAG_FEATURES:
            rules["allowed_values"] = _missing(column) | column.is_in([0.0, 1.0])
        elif bounds is not None:
            rules["in_range"] = _missing(column) | column.is_between(*bounds)
        checks = [_dtype_check("float", _is_float)]
        checks += [_check(rule, passes) for rule, passes in rules.items()]
        columns[name] = pa.Column(None, checks, nullable=True)  # the finite rule covers nulls
        screened[name] = list(rules.values())
    warnings = {(name, "finite") for name in features if name not in critical}
    return _Plan(
        schema=pa.DataFrameSchema(
            columns, checks=[_check("unique_key", pl.len().over(*FEATURE_KEY) == 1)]
        ),
        warnings=frozenset({*warnings, ("timestamp", "gap_within_limit")}),
        context=FEATURE_KEY,
        screened=screened,
    )


def _series_checks(series: Sequence[str], exempt: pl.Expr, max_gap: timedelta) -> list[pa.Check]:
    """Timestamps strictly increasing, in file order, within each series, and gaps reported.

    Args:
        series: Columns identifying a series.
        exempt: Rows that belong to no series.
        max_gap: Longest step between consecutive rows before it is reported.
    """
    step = pl.col("timestamp").diff().over(*series)
    first = step.is_null()
    return [
        _check("strictly_increasing", exempt | first | (step > timedelta(0))),
        _check("gap_within_limit", exempt | first | (step <= max_gap)),
    ]


def _feature_bounds(
    column: str, metric_bounds: dict[str, tuple[float, float]]
) -> tuple[float, float] | None:
    """The inclusive bounds of a feature's values, where the feature name tells them.

    Args:
        column: The feature's name.
        metric_bounds: ``METRIC_RANGES`` keyed by the metrics' column names.
    """
    if column in _TIME_FEATURE_RANGES:
        return _TIME_FEATURE_RANGES[column]
    derived = _DERIVED_FEATURE.match(column)
    base, stat = (derived["base"], derived["stat"]) if derived else (column, None)
    if stat == "std":
        return (0.0, math.inf)
    if stat == "ratio":
        return (0.0, 1.0)
    if base in LOG_COUNT_FEATURES and stat in (None, "sum"):
        return (0.0, math.inf)
    if base not in metric_bounds:
        return None
    lower, upper = metric_bounds[base]
    if stat in _BOUNDED_STATS:
        return (lower, upper)
    if stat == "sum" and lower >= 0:
        return (0.0, math.inf)
    return None


def _missing(column: pl.Expr) -> pl.Expr:
    """Null or NaN: reported by the ``finite`` rule, so range rules let them pass."""
    return column.is_null() | column.is_nan()


def _check(rule: str, passes: pl.Expr) -> pa.Check:
    """A pandera check named ``rule`` that fails the rows where ``passes`` is not true."""

    def run(data: PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(passes.fill_null(False))

    # Failing rows are counted from the check's boolean output; pandera's own failure cases,
    # one string per failing row, would cost seconds and gigabytes on a broken wide table.
    return pa.Check(run, name=rule, n_failure_cases=1)


def _dtype_check(expected: str, accepts: Callable[[pl.DataType], bool]) -> pa.Check:
    """A type check for a column whose accepted types pandera cannot name as one dtype."""

    def run(data: PolarsData) -> pl.LazyFrame:
        # One result per row, not a bare bool: pandera cannot merge a bool failure case with
        # the error text of the column's other checks, which break on a wrong type.
        accepted = accepts(data.lazyframe.collect_schema()[data.key])
        return data.lazyframe.select(pl.repeat(accepted, pl.len()))

    return pa.Check(run, name=f"dtype({expected})", n_failure_cases=1)


def _validate(
    frame: pl.DataFrame, dataset: Literal["raw", "features"], plan: _Plan
) -> ValidationReport:
    found = _failures(_unscreened(plan, frame), frame)
    planned = _planned_checks(plan.schema)
    results = [
        _result(frame, plan, key, found.get(key))
        for key in planned + [key for key in found if key not in planned]
    ]
    return ValidationReport(
        dataset=dataset,
        rows=frame.height,
        checks=results,
        quality_score=quality_score(results, frame.height),
    )


def _unscreened(plan: _Plan, frame: pl.DataFrame) -> pa.DataFrameSchema:
    """The plan's schema less the screened columns that pass every rule on every row.

    One polars pass decides for all of them: pandera runs each column's checks in passes of
    their own (about 4 s for a feature table of 774 columns), and a column that passes has
    nothing to report.
    """
    types = frame.schema
    floats = [name for name in plan.screened if name in types and _is_float(types[name])]
    if not floats:
        return plan.schema
    verdicts = frame.select(
        pl.all_horizontal([rule.fill_null(False) for rule in plan.screened[name]]).all().alias(name)
        for name in floats
    )
    return plan.schema.remove_columns(
        [name for name, ok in verdicts.row(0, named=True).items() if ok]
    )


def _is_float(dtype: pl.DataType) -> bool:
    return dtype.is_float()


@dataclass(frozen=True)
class _Failure:
    check: str
    failed_rows: int | None  # None: the whole column failed (absent, wrong type, check broke)
    first_rows: list[int]
    case: str


def _failures(
    schema: pa.DataFrameSchema, frame: pl.DataFrame
) -> dict[tuple[str | None, str], _Failure]:
    # Pinned here because PANDERA_VALIDATION_* environment variables could otherwise turn
    # validation off or down to schema-only, and the batch would pass unchecked.
    with config_context(validation_enabled=True, validation_depth=ValidationDepth.SCHEMA_AND_DATA):
        try:
            schema.validate(frame, lazy=True)
        except SchemaErrors as errors:
            return dict(_failure(error) for error in errors.schema_errors)
    return {}


def _failure(error: SchemaError) -> tuple[tuple[str | None, str], _Failure]:
    check = error.check if isinstance(error.check, str) else str(error.check.name)
    column: str | None
    if check == "column_in_dataframe":  # reported on the frame, with the name as the case
        column = str(error.failure_cases)
    else:
        column = error.schema.name if isinstance(error.schema, pa.Column) else None
    output = error.check_output
    if output is None:
        return (column, _rule_name(check)), _Failure(check, None, [], str(error.failure_cases))
    failing = output.to_series(0).not_().arg_true()
    first_rows = failing.head(SAMPLE_SIZE).to_list()
    return (column, _rule_name(check)), _Failure(check, len(failing), first_rows, "")


def _rule_name(check: str) -> str:
    if check.startswith("dtype("):
        return "dtype"
    return {"not_nullable": "not_null", "column_in_dataframe": "column_present"}.get(check, check)


def _planned_checks(schema: pa.DataFrameSchema) -> list[tuple[str | None, str]]:
    planned: list[tuple[str | None, str]] = []
    for name, column in schema.columns.items():
        planned.append((name, "column_present"))
        if column.dtype is not None:
            planned.append((name, "dtype"))
        if not column.nullable:
            planned.append((name, "not_null"))
        planned += [(name, _rule_name(check.name)) for check in column.checks]
    planned += [(None, _rule_name(check.name)) for check in schema.checks]
    return planned


def _result(
    frame: pl.DataFrame,
    plan: _Plan,
    key: tuple[str | None, str],
    failure: _Failure | None,
) -> CheckResult:
    column, rule = key
    severity: Severity = "warning" if key in plan.warnings else "critical"
    if failure is None:
        return CheckResult(
            rule=rule, column=column, severity=severity, passed=True, failed_rows=0, sample=[]
        )
    shown = [*plan.context, *([column] if column and column not in plan.context else [])]
    sample = frame[failure.first_rows].select(c for c in shown if c in frame.columns)
    return CheckResult(
        rule=rule,
        column=column,
        severity=severity,
        passed=False,
        failed_rows=frame.height if failure.failed_rows is None else failure.failed_rows,
        sample=[{k: _jsonable(v) for k, v in row.items()} for row in sample.to_dicts()],
        detail=_detail(frame, column, rule, failure),
    )


def _detail(frame: pl.DataFrame, column: str | None, rule: str, failure: _Failure) -> str | None:
    if rule == "column_present":
        return "column is missing"
    if rule == "dtype" and column is not None:
        expected = failure.check.removeprefix("dtype(").removesuffix(")").strip("'")
        return f"expected {expected}, found {frame.schema[column]}"
    if failure.failed_rows is None:
        first_line = failure.case.partition("\n")[0]
        return f"check could not run: {first_line[:300]}"
    return None


def _jsonable(value: object) -> JsonScalar:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)
