"""The feature contract: the ordered feature columns and the one function that computes them.

One module on purpose (about 870 lines): the column names, ``to_wide`` (which computes the
log-template features, since they need each template's own counts) and ``compute_features``
share the grid's constants and windows, and the online-equality argument below covers all of
them at once. Reading raw telemetry by time window lives apart, in ``contracts.raw_window``.

Training (``telemetry/feature_job.py``) and the online scorer (``serving/``) both call this module,
so a model always sees features computed by the same code (no train/serve skew):

- ``to_wide`` turns raw telemetry rows (``contracts.telemetry.RAW_SCHEMA``) into one row per
  (instance_id, step) on a regular grid: metric values averaged per step bucket, log events
  counted per level.
- ``compute_features`` turns that wide frame into the features, one row per (instance_id,
  timestamp), columns ``ID_COLUMNS + feature_columns(metrics)`` in that order.
- ``contracts.raw_window.window_features_from_raw`` runs both over a time window and its
  ``HISTORY_STEPS`` steps of history, for the batch job and the online scorer alike: the
  scorer's rows are bit-for-bit equal to the rows the batch job writes for the same timestamps.

Why that equality holds: every window statistic is a fixed-order combination of exactly the
values inside its window. Each window aggregate (sum, sum of squared deviations, min, max)
is merged from smaller ones in the same order for every row (one row + one row, 2 + 2, 4 + 1,
5 + 5, 10 + 5, 15 + 15, 30 + 30; Chan et al.'s pairwise formula for the deviations), so a
row's value depends only on its window. A running (add/subtract) rolling sum, as pandas or
polars use, carries rounding from rows that left the window long ago: a feature would then
depend on where the series started, and online rows would differ from batch rows in the last
bits.

Semantics, in steps of ``DatasetInfo.step_seconds``:

- Time features come from the UTC timestamp: ``hour_of_day``, ``day_of_week`` (0 = Monday),
  ``is_weekend``, ``is_business_hours`` (Monday to Friday, 09:00 to 17:59).
- Per metric (slug ``s = metric_slug(name)``): ``s`` (current value), ``s_{mean,std,min,max}_w``
  over the last w rows for w in ``WINDOWS``, ``s_lag_k`` and ``s_change_k = (s - s_lag_k) / k``
  for k in ``LAGS``, ``s_zscore_60 = (s - s_mean_60) / (s_std_60 + ZSCORE_EPS)``. Standard
  deviations are sample deviations (ddof = 1), as pandas computes them.
- ``s_sum_15`` for every metric in ``COUNTER_METRICS`` (bytes, requests, operations).
- Log counts per step (``LOG_COUNT_COLUMNS``), their 15-step sums and ``error_ratio_15`` =
  (errors + criticals) / max(log events, 1) over 15 steps. A dataset without logs gets zeros.
- Log-template features (``LOG_TEMPLATE_COLUMNS``), from the template id the exporter and the
  simulator mine for each log event (``telemetry.logs.events``); log rows without one (written
  before templates were mined) take no part in them, and a dataset without logs gets zeros:

  - ``log_template_{i}_sum_15`` for i = 1 .. ``LOG_TEMPLATE_SLOTS``: events of the i-th most
    frequent template of the dataset (``DatasetInfo.log_templates.top``, recorded once, so
    the columns and what they count stay fixed for a model) in the last 15 steps;
  - ``log_novel_templates_5``: templates that appeared in the last 5 steps and not in the 55
    steps before them, on this instance (a template silent for ``NOVELTY_GAP`` steps, or never
    seen, is new again);
  - ``log_rare_template_ratio_15``: the share of the last 15 steps' events whose template is
    rare in the dataset (outside ``log_templates.common``: below ``RARE_TEMPLATE_SHARE`` of the
    events the catalogue counted, or new since); 0 without events;
  - ``log_error_burst_5``: the largest burst of one error template (ERROR or CRITICAL events)
    against its own baseline: ``(c - l) / sqrt(l + 1)`` with c its events in the last 5 steps
    and l = b * 5 / 55 what its b events in the 55 steps before predict; 0 without a burst;
  - ``log_template_entropy_15``: the Shannon entropy (bits) of the templates of the last 15
    steps' events (0 for none or one template).

  All are counts, or fixed formulas of counts, inside the instance's last ``HISTORY_STEPS``
  steps: integer window sums are exact whatever the summation order, the entropy's terms are
  added one template after the other in template-id order, and a maximum is exact, so these
  columns hold the same online-equality as the others.
- No nulls: the first rows of an instance use the rows available (a partial window; the std
  of one row is 0); a lag that reaches before the first row is the first value, so the change
  on the first row is 0. A metric missing inside an instance's grid (a gap) is forward-filled
  from that instance's last value; before its first value, or when never seen, it is 0 (a row
  never uses a later value, so batch and online rows agree).
- Every feature is Float32 (``FEATURE_DTYPE``), what the models consume; computation is Float64.

Online equality needs the raw window to hold at least ``HISTORY_STEPS`` steps and every
metric a value at its first step (otherwise the online gap-fill has less history than the
batch one).
"""

import math
import re
from collections import Counter
from collections.abc import Sequence
from typing import NamedTuple

import polars as pl
import pyarrow as pa

from contracts.dataset import LogTemplateCatalogue
from contracts.telemetry import TEMPLATE_ID

INSTANCE_ID = "instance_id"
TIMESTAMP = "timestamp"
ID_COLUMNS = (INSTANCE_ID, TIMESTAMP)
TIMESTAMP_TYPE = pl.Datetime("ms", "UTC")
FEATURE_DTYPE = pl.Float32

WINDOWS = (5, 15, 60)
LAGS = (1, 5, 15)
SUM_WINDOW = 15
ZSCORE_WINDOW = 60
ZSCORE_EPS = 1e-6
# Rows a feature row looks back over, itself included: the longest window.
HISTORY_STEPS = max(WINDOWS)

TIME_FEATURES = ("hour_of_day", "day_of_week", "is_weekend", "is_business_hours")
BUSINESS_HOURS = range(9, 18)

# Log counts per step: level-specific counts, then every event, then events whose message
# could not be parsed.
LEVEL_COUNT_COLUMNS = {
    "error_count": "ERROR",
    "warning_count": "WARN",
    "critical_count": "CRITICAL",
}
LOG_COUNT_COLUMNS = (*LEVEL_COUNT_COLUMNS, "log_count", "parse_error_count")
SUMMED_LOG_COUNTS = ("error_count", "warning_count", "critical_count", "log_count")
ERROR_RATIO = f"error_ratio_{SUM_WINDOW}"

# Log-template features (see the module docstring). None looks back further than
# HISTORY_STEPS, the history the scorer reads (tests/contracts/test_features.py checks it).
LOG_TEMPLATE_SLOTS = 8
TEMPLATE_WINDOW = SUM_WINDOW
NOVELTY_WINDOW = 5
NOVELTY_GAP = 55
BURST_WINDOW = 5
BURST_BASELINE = 55
RARE_TEMPLATE_SHARE = 0.002
ERROR_LEVELS = ("ERROR", "CRITICAL")
TOP_TEMPLATE_COLUMNS = tuple(
    f"log_template_{slot}_sum_{TEMPLATE_WINDOW}" for slot in range(1, LOG_TEMPLATE_SLOTS + 1)
)
NOVEL_TEMPLATES = f"log_novel_templates_{NOVELTY_WINDOW}"
RARE_TEMPLATE_RATIO = f"log_rare_template_ratio_{TEMPLATE_WINDOW}"
ERROR_BURST = f"log_error_burst_{BURST_WINDOW}"
TEMPLATE_ENTROPY = f"log_template_entropy_{TEMPLATE_WINDOW}"
LOG_TEMPLATE_COLUMNS = (
    *TOP_TEMPLATE_COLUMNS,
    NOVEL_TEMPLATES,
    RARE_TEMPLATE_RATIO,
    ERROR_BURST,
    TEMPLATE_ENTROPY,
)

# Metrics that count things per step, for which a sum over a window means something.
COUNTER_METRICS = frozenset(
    {
        "NetworkIn",
        "NetworkOut",
        "RequestCount",
        "HTTPCode_5XX_Count",
        "HTTPCode_4XX_Count",
        "DiskReadOps",
        "DiskWriteOps",
    }
)

# The raw telemetry columns the features are computed from (besides the optional template id).
RAW_FEATURE_COLUMNS = ("timestamp", "instance_id", "kind", "name", "value", "level", "parse_error")
_POS = "__pos"  # row number inside the instance, 0 at its first step
# Padding rows placed before each instance: more than any window or lag reaches back.
_PAD = HISTORY_STEPS
# Instances are computed in chunks of about this many rows, which keeps the intermediate
# columns small (memory stays bounded, and a fleet-day ran about twice as fast as in one
# piece). Instances are independent, so chunking changes no value.
_CHUNK_ROWS = 1 << 18
# What a padding row holds for each window aggregate: a value that changes nothing.
_NEUTRAL = {"sum": 0.0, "m2": 0.0, "min": math.inf, "max": -math.inf}


def metric_slug(name: str) -> str:
    """The snake_case name a metric's features start with.

    ``CPUUtilization`` -> ``cpu_utilization``, ``HTTPCode_5XX_Count`` -> ``http_code_5xx_count``,
    ``cpu_r`` -> ``cpu_r``.

    Raises:
        ValueError: when the name holds no letter or digit.
    """
    slug = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)  # HTTPCode -> HTTP_Code
    slug = re.sub(r"([a-z])([A-Z])", r"\1_\2", slug)  # cpuUtil -> cpu_Util
    slug = re.sub(r"(\d)([A-Z][a-z])", r"\1_\2", slug)  # Disk2Reads -> Disk2_Reads
    slug = re.sub(r"[^0-9a-zA-Z]+", "_", slug).strip("_").lower()
    if not slug:
        raise ValueError(f"metric name {name!r} has no letter or digit to name features by")
    return slug


def metric_feature_columns(metric: str) -> list[str]:
    """The 20 per-metric feature columns of ``metric``, in contract order."""
    s = metric_slug(metric)
    windowed = [f"{s}_{stat}_{w}" for w in WINDOWS for stat in ("mean", "std", "min", "max")]
    lags = [f"{s}_lag_{k}" for k in LAGS]
    changes = [f"{s}_change_{k}" for k in LAGS]
    return [s, *windowed, *lags, *changes, f"{s}_zscore_{ZSCORE_WINDOW}"]


def feature_columns(metrics: Sequence[str]) -> list[str]:
    """The ordered feature columns for ``metrics``: the contract models and the scorer rely on.

    Time features, then 20 columns per metric in the given order, then ``{s}_sum_15`` of the
    counter metrics, then the log features: level counts, their sums and ratio, then
    ``LOG_TEMPLATE_COLUMNS`` (the same names for every dataset: what each template slot counts
    is recorded in ``DatasetInfo.log_templates``).

    Raises:
        ValueError: on an empty or repeated metric list, or on two names that would give the
            same feature column (e.g. ``CPUUtilization`` and ``cpu_utilization``).
    """
    if not metrics:
        raise ValueError("at least one metric is needed to compute features")
    if len(set(metrics)) != len(metrics):
        raise ValueError(f"metric list repeats a name: {sorted(_repeated(metrics))}")
    slugs = {metric: metric_slug(metric) for metric in metrics}
    if clashing := _repeated(list(slugs.values())):
        names = sorted(m for m, s in slugs.items() if s in clashing)
        raise ValueError(f"metrics {names} give the same feature names {sorted(clashing)}")
    columns = [
        *TIME_FEATURES,
        *(column for metric in metrics for column in metric_feature_columns(metric)),
        *(f"{slugs[m]}_sum_{SUM_WINDOW}" for m in metrics if m in COUNTER_METRICS),
        *LOG_COUNT_COLUMNS,
        *(f"{c}_sum_{SUM_WINDOW}" for c in SUMMED_LOG_COUNTS),
        ERROR_RATIO,
        *LOG_TEMPLATE_COLUMNS,
    ]
    if clashing := _repeated(columns):
        raise ValueError(f"metric names give feature columns that clash: {sorted(clashing)}")
    return columns


def feature_metrics(metrics: Sequence[str]) -> dict[str, str]:
    """Each feature column computed from a metric, mapped to that metric's name.

    Time and log features come from no metric and are left out.
    """
    owners = {column: metric for metric in metrics for column in metric_feature_columns(metric)}
    for metric in metrics:
        if metric in COUNTER_METRICS:
            owners[f"{metric_slug(metric)}_sum_{SUM_WINDOW}"] = metric
    return owners


def feature_schema(metrics: Sequence[str]) -> pa.Schema:
    """The Arrow schema of a features file: the id columns, then ``feature_columns(metrics)``."""
    return pa.schema(
        [
            pa.field(INSTANCE_ID, pa.string(), nullable=False),
            pa.field(TIMESTAMP, pa.timestamp("ms", tz="UTC"), nullable=False),
            *(pa.field(name, pa.float32(), nullable=False) for name in feature_columns(metrics)),
        ]
    )


def to_wide(
    raw: pl.DataFrame | pa.Table,
    metrics: Sequence[str],
    step_seconds: int,
    log_templates: LogTemplateCatalogue | None = None,
) -> pl.DataFrame:
    """Raw telemetry rows as one row per (instance_id, step) on a regular grid.

    Metric values are averaged per (instance, metric, step bucket); buckets are timestamps
    floored to a multiple of ``step_seconds`` since the epoch. Metric rows whose name is not
    in ``metrics`` are not part of the feature contract and are left out. Log rows are counted
    per step into ``LOG_COUNT_COLUMNS``. Each instance gets every step from its first to its
    last bucket; a step without a datapoint has a null metric value and zero log counts.

    The log-template features (``LOG_TEMPLATE_COLUMNS``) are computed here too, from the log
    rows' template ids: they need each template's own counts, which the wide frame does not
    keep (one column per template would have no bound). ``compute_features`` passes them on.

    Args:
        raw: rows with at least the columns timestamp, instance_id, kind, name, value, level
            and parse_error of ``RAW_SCHEMA``, in any order, and optionally ``template_id``
            (absent or null: the log row takes no part in the template features).
        metrics: the dataset's metrics; each becomes a Float64 column named as the metric.
        step_seconds: the grid step.
        log_templates: the dataset's template catalogue (``DatasetInfo.log_templates``);
            None leaves the template slots at zero and counts every template as rare.

    Returns:
        instance_id, timestamp (UTC, ms), one column per metric, the log counts (Int64), the
        log-template features (Float64), sorted by instance_id then timestamp.

    Raises:
        ValueError: on a missing column, a naive timestamp, a null key or a non-finite value.
    """
    frame = raw if isinstance(raw, pl.DataFrame) else pl.DataFrame(pl.from_arrow(raw))
    _require_columns(frame, RAW_FEATURE_COLUMNS, "raw telemetry")
    if step_seconds <= 0:
        raise ValueError(f"step_seconds must be positive, got {step_seconds}")
    step_ms = step_seconds * 1000
    template = pl.col(TEMPLATE_ID) if TEMPLATE_ID in frame.columns else pl.lit(None)
    frame = frame.select(
        *RAW_FEATURE_COLUMNS, template.cast(pl.Int64).alias(TEMPLATE_ID)
    ).with_columns(
        _utc_ms(frame, "raw telemetry").dt.epoch("ms").floordiv(step_ms).mul(step_ms).alias("step")
    )
    _require_no_nulls(frame, ("step", INSTANCE_ID, "kind"), "raw telemetry")

    metric_rows = frame.filter(
        (pl.col("kind") == "metric")
        & pl.col("name").is_in(list(metrics))
        & pl.col("value").is_not_null()
    )
    bad = metric_rows.filter(~pl.col("value").is_finite())
    if bad.height:
        first = bad.row(0, named=True)
        raise ValueError(
            f"raw telemetry has {bad.height} non-finite metric values, e.g. {first['name']}="
            f"{first['value']} on {first[INSTANCE_ID]} at {first[TIMESTAMP]}"
        )
    values = metric_rows.pivot(
        on="name",
        on_columns=list(metrics),
        index=[INSTANCE_ID, "step"],
        values="value",
        aggregate_function="mean",
    )
    logs = frame.filter(pl.col("kind") == "log")
    counts = logs.group_by(INSTANCE_ID, "step").agg(
        *((pl.col("level") == level).sum().alias(c) for c, level in LEVEL_COUNT_COLUMNS.items()),
        pl.len().alias("log_count"),
        pl.col("parse_error").fill_null(False).sum().alias("parse_error_count"),
    )
    grid = (
        pl.concat([values.select(INSTANCE_ID, "step"), counts.select(INSTANCE_ID, "step")])
        .group_by(INSTANCE_ID)
        .agg(pl.int_ranges(pl.col("step").min(), pl.col("step").max() + step_ms, step_ms).first())
        .explode("step")
    )
    templates = _template_features(logs, grid, log_templates, step_ms)
    return (
        grid.join(values, on=[INSTANCE_ID, "step"], how="left")
        .join(counts, on=[INSTANCE_ID, "step"], how="left")
        .join(templates, on=[INSTANCE_ID, "step"], how="left")
        .select(
            INSTANCE_ID,
            pl.col("step").cast(pl.Datetime("ms")).dt.replace_time_zone("UTC").alias(TIMESTAMP),
            *(pl.col(m).cast(pl.Float64) for m in metrics),
            *(pl.col(c).fill_null(0).cast(pl.Int64) for c in LOG_COUNT_COLUMNS),
            *(pl.col(c).fill_null(0.0).cast(pl.Float64) for c in LOG_TEMPLATE_COLUMNS),
        )
        .sort(INSTANCE_ID, TIMESTAMP)
    )


def log_template_catalogue(raw: pl.DataFrame | pa.Table) -> LogTemplateCatalogue | None:
    """The template catalogue of raw telemetry: its most frequent and its common templates.

    Args:
        raw: raw rows with kind and template_id (any other columns are ignored).

    Returns:
        ``top``: the ``LOG_TEMPLATE_SLOTS`` templates with the most log events (ties: the lower
        id first); ``common``: the templates with at least ``RARE_TEMPLATE_SHARE`` of them.
        None when no log row has a template id.
    """
    frame = raw if isinstance(raw, pl.DataFrame) else pl.DataFrame(pl.from_arrow(raw))
    if TEMPLATE_ID not in frame.columns:
        return None
    counts = (
        frame.filter((pl.col("kind") == "log") & pl.col(TEMPLATE_ID).is_not_null())
        .group_by(TEMPLATE_ID)
        .agg(pl.len().alias("events"))
        .sort(["events", TEMPLATE_ID], descending=[True, False])
    )
    events = int(counts["events"].sum())
    if not events:
        return None
    common = counts.filter(pl.col("events") >= RARE_TEMPLATE_SHARE * events)[TEMPLATE_ID]
    return LogTemplateCatalogue(
        events=events,
        top=counts[TEMPLATE_ID].head(LOG_TEMPLATE_SLOTS).to_list(),
        common=sorted(common.to_list()),
    )


def compute_features(wide: pl.DataFrame, metrics: Sequence[str]) -> pl.DataFrame:
    """The features of every row of a wide frame, windowed per instance.

    Args:
        wide: one row per (instance_id, timestamp) on a regular grid, e.g. from ``to_wide``
            or a dataset importer: instance_id, timestamp, one numeric column per metric
            (named as the metric; nulls are gaps) and optionally ``LOG_COUNT_COLUMNS`` and
            ``LOG_TEMPLATE_COLUMNS`` (absent means no logs: zeros). Row order does not matter.
        metrics: the dataset's metrics, in contract order.

    Returns:
        ``ID_COLUMNS + feature_columns(metrics)``, sorted by instance_id then timestamp.

    Raises:
        ValueError: on a missing or non-numeric metric column, a null or repeated
            (instance_id, timestamp), or timestamps that are not on one regular step grid.
    """
    columns = feature_columns(metrics)
    prepared = _prepared(wide, metrics)
    chunks = (
        prepared.with_row_index("__chunk")
        .with_columns((pl.col("__chunk").first() // _CHUNK_ROWS).over(INSTANCE_ID))
        .partition_by("__chunk", include_key=False)
    )
    features = [_chunk_features(chunk, metrics, columns) for chunk in chunks]
    return pl.concat(features) if features else _chunk_features(prepared, metrics, columns)


def _repeated(names: Sequence[str]) -> set[str]:
    return {name for name, times in Counter(names).items() if times > 1}


def _require_columns(frame: pl.DataFrame, columns: Sequence[str], what: str) -> None:
    present = set(frame.columns)
    if missing := [c for c in columns if c not in present]:
        raise ValueError(f"{what} lacks columns {missing}; it has {frame.columns}")


def _require_no_nulls(frame: pl.DataFrame, columns: Sequence[str], what: str) -> None:
    for column in columns:
        if nulls := frame[column].null_count():
            raise ValueError(f"{what} has {nulls} rows with a null {column}")


def _utc_ms(frame: pl.DataFrame, what: str) -> pl.Expr:
    dtype = frame.schema[TIMESTAMP]
    if not isinstance(dtype, pl.Datetime) or dtype.time_zone is None:
        raise ValueError(f"{what}: {TIMESTAMP} must be a timezone-aware datetime, got {dtype}")
    return pl.col(TIMESTAMP).dt.convert_time_zone("UTC").cast(TIMESTAMP_TYPE)


def _template_features(
    logs: pl.DataFrame,
    grid: pl.DataFrame,
    catalogue: LogTemplateCatalogue | None,
    step_ms: int,
) -> pl.DataFrame:
    """``LOG_TEMPLATE_COLUMNS`` per (instance_id, step) with a templated event in reach.

    Args:
        logs: log rows with instance_id, step (epoch ms of the step), template_id and level.
        grid: the (instance_id, step) rows of the wide frame.
        catalogue: the dataset's template catalogue, or None.
        step_ms: the grid step in milliseconds.

    Returns:
        instance_id, step and the features (Float64); steps missing here have zeros. Every
        value depends only on the instance's events in its last ``HISTORY_STEPS`` steps.
    """
    # Integer keys throughout (an instance's code, the step's number since the epoch): the
    # group-bys below run over millions of rows on a fleet-day.
    instances = logs.select(pl.col(INSTANCE_ID).unique()).with_row_index("__instance")
    occurrences = (
        logs.filter(pl.col(TEMPLATE_ID).is_not_null())
        .join(instances, on=INSTANCE_ID)
        .group_by("__instance", (pl.col("step") // step_ms).alias("__step"), TEMPLATE_ID)
        .agg(
            pl.len().cast(pl.Int64).alias("n"),
            pl.col("level").is_in(ERROR_LEVELS).sum().cast(pl.Int64).alias("errors"),
        )
    )
    keys = ["__instance", "__step"]
    window = _window_counts(occurrences, TEMPLATE_WINDOW)
    top = catalogue.top[:LOG_TEMPLATE_SLOTS] if catalogue is not None else []
    common = pl.Series(catalogue.common if catalogue is not None else [], dtype=pl.Int64)
    n, events = pl.col("n"), pl.col("__events")
    # The entropy's terms are added one template after the other in id order (a running sum
    # has one association), so it does not depend on which rows the frame held besides.
    entropy_term = (n / events) * (events / n).log(2)
    by_step = (
        window.with_columns(n.sum().over(keys).alias("__events"))
        .group_by(keys)
        .agg(
            events.first(),
            n.filter(~pl.col(TEMPLATE_ID).is_in(common.implode())).sum().alias("__rare"),
            *(
                n.filter(pl.col(TEMPLATE_ID) == template).sum().alias(column)
                for template, column in zip(top, TOP_TEMPLATE_COLUMNS, strict=False)
            ),
            entropy_term.sort_by(TEMPLATE_ID).cum_sum().last().alias(TEMPLATE_ENTROPY),
        )
    )

    # A template is new at its onset: its first event after NOVELTY_GAP silent steps, or ever.
    previous = pl.col("__step").shift(1).over("__instance", TEMPLATE_ID)
    onsets = (
        occurrences.select(*keys, TEMPLATE_ID)
        .sort("__instance", TEMPLATE_ID, "__step")
        .filter(previous.is_null() | (pl.col("__step") - previous > NOVELTY_GAP))
    )
    novel = (
        _spread(onsets.select(keys), NOVELTY_WINDOW)
        .group_by(keys)
        .agg(pl.len().alias(NOVEL_TEMPLATES))
    )

    # Each error template's events in the last BURST_WINDOW steps against the BURST_BASELINE
    # steps before them.
    recent = pl.col("__lag") < BURST_WINDOW
    per_template = (
        _spread(
            occurrences.filter(pl.col("errors") > 0).select(*keys, TEMPLATE_ID, "errors"),
            BURST_WINDOW + BURST_BASELINE,
        )
        .group_by(*keys, TEMPLATE_ID)
        .agg(
            pl.col("errors").filter(recent).sum().alias("__recent"),
            pl.col("errors").filter(~recent).sum().alias("__before"),
        )
        .filter(pl.col("__recent") > 0)
    )
    expected = pl.col("__before") * (BURST_WINDOW / BURST_BASELINE)
    score = (pl.col("__recent") - expected) / (expected + 1.0).sqrt()
    burst = per_template.group_by(keys).agg(score.max().clip(lower_bound=0.0).alias(ERROR_BURST))

    rare = pl.col("__rare") / pl.col("__events")
    return (
        by_step.join(novel, on=keys, how="left")
        .join(burst, on=keys, how="left")
        .join(instances, on="__instance")
        .with_columns((pl.col("__step") * step_ms).alias("step"))
        .join(grid, on=[INSTANCE_ID, "step"], how="semi")
        .select(
            INSTANCE_ID,
            "step",
            *(
                (pl.col(c) if c in by_step.columns else pl.lit(0))
                .fill_null(0)
                .cast(pl.Float64)
                .alias(c)
                for c in TOP_TEMPLATE_COLUMNS
            ),
            pl.col(NOVEL_TEMPLATES).fill_null(0).cast(pl.Float64),
            rare.cast(pl.Float64).alias(RARE_TEMPLATE_RATIO),
            pl.col(ERROR_BURST).fill_null(0.0).cast(pl.Float64),
            pl.col(TEMPLATE_ENTROPY).cast(pl.Float64),
        )
    )


def _spread(frame: pl.DataFrame, steps: int) -> pl.DataFrame:
    """Each row copied to the ``steps`` steps from its own ``__step`` on (the windows that
    hold it); ``__lag`` is how many steps later the copy is."""
    return (
        frame.with_columns(pl.int_ranges(0, steps, dtype=pl.Int64).alias("__lag"))
        .explode("__lag")
        .with_columns(pl.col("__step") + pl.col("__lag"))
    )


def _window_counts(occurrences: pl.DataFrame, steps: int) -> pl.DataFrame:
    """Each template's events in the last ``steps`` steps, at every step where it has some.

    A template's count changes only where an event enters the window (its step) or leaves it
    (``steps`` later): between two such changes it holds, so each constant stretch is written
    out once instead of copying every event to the ``steps`` windows that hold it. Sums of
    integers: exact whatever the order.

    Returns:
        __instance, __step, template_id and n (> 0).
    """
    by = ["__instance", TEMPLATE_ID]
    changes = (
        pl.concat(
            [
                occurrences.select(*by, "__step", pl.col("n")),
                occurrences.select(*by, pl.col("__step") + steps, -pl.col("n")),
            ]
        )
        .group_by(*by, "__step")
        .agg(pl.col("n").sum())
        .sort(*by, "__step")
    )
    return (
        changes.with_columns(
            pl.col("n").cum_sum().over(by),
            pl.col("__step").shift(-1).over(by).alias("__until"),
        )
        .filter(pl.col("n") > 0)
        .with_columns(pl.int_ranges("__step", "__until", dtype=pl.Int64).alias("__step"))
        .explode("__step")
        .select("__instance", "__step", TEMPLATE_ID, "n")
    )


def _value(name: str) -> str:
    return f"__value_{name}"


def _prepared(wide: pl.DataFrame, metrics: Sequence[str]) -> pl.DataFrame:
    """Validated and sorted; gaps filled; one Float64 column per metric and log count."""
    _require_columns(wide, [*ID_COLUMNS, *metrics], "wide frame")
    passed_on = (*LOG_COUNT_COLUMNS, *LOG_TEMPLATE_COLUMNS)
    reserved = [m for m in metrics if m in (*ID_COLUMNS, *passed_on)]
    if reserved:
        raise ValueError(f"metric names {reserved} clash with id or log feature columns")
    for column in [*metrics, *(c for c in passed_on if c in wide.columns)]:
        if not wide.schema[column].is_numeric():
            raise ValueError(f"wide frame column {column!r} is {wide.schema[column]}, not numeric")
    frame = wide.select(
        pl.col(INSTANCE_ID).cast(pl.String),
        _utc_ms(wide, "wide frame"),
        *(pl.col(m).cast(pl.Float64).alias(_value(m)) for m in metrics),
        *(
            (pl.col(c) if c in wide.columns else pl.lit(0)).cast(pl.Float64).alias(_value(c))
            for c in passed_on
        ),
    )
    _require_no_nulls(frame, ID_COLUMNS, "wide frame")
    frame = frame.sort(INSTANCE_ID, TIMESTAMP)
    steps = frame.select(
        pl.col(TIMESTAMP).diff().over(INSTANCE_ID).dt.total_milliseconds().alias("step_ms")
    )["step_ms"]
    if (steps == 0).any():
        duplicated = frame.filter(steps == 0).row(0, named=True)
        raise ValueError(
            f"wide frame repeats (instance_id, timestamp): {duplicated[INSTANCE_ID]} at "
            f"{duplicated[TIMESTAMP]}; aggregate the rows per step first (see to_wide)"
        )
    if steps.drop_nulls().n_unique() > 1:
        raise ValueError(
            f"wide frame is not on one regular grid: steps of "
            f"{sorted(steps.drop_nulls().unique().to_list())} ms between rows of an instance; "
            "build it with to_wide, which fills the gaps"
        )
    return frame.with_columns(
        pl.col(_value(m)).forward_fill().over(INSTANCE_ID).fill_null(0.0) for m in metrics
    )


def _padded(frame: pl.DataFrame) -> pl.DataFrame:
    """``_PAD`` copies of each instance's first row placed before it, and ``_POS``.

    With the padding, a row's window or lag never reaches into the previous instance, so
    windows are computed with plain shifts over the whole frame (no per-group kernels, no
    nulls: several times faster in polars than masked shifts). Padding rows have a negative
    ``_POS``; each aggregate treats them as its neutral element, and they are dropped at the end.
    """
    index = (
        frame.with_row_index("__row")
        .group_by(INSTANCE_ID, maintain_order=True)
        .agg(pl.col("__row").first().cast(pl.Int64).alias("__first"), pl.len().alias("__rows"))
        .select(
            pl.col("__first"),
            pl.int_ranges(-_PAD, pl.col("__rows"), dtype=pl.Int64).alias(_POS),
        )
        .explode(_POS)
    )
    rows = index.select(pl.max_horizontal(pl.col("__first") + pl.col(_POS), "__first"))
    return frame[rows.to_series()].with_columns(index[_POS])


def _chunk_features(
    prepared: pl.DataFrame, metrics: Sequence[str], columns: list[str]
) -> pl.DataFrame:
    """``compute_features`` of a prepared frame holding whole instances."""
    padded = _padded(prepared)
    is_real = padded[_POS] >= 0
    values = [_value(m) for m in metrics]
    logs = [_value(c) for c in SUMMED_LOG_COUNTS]
    aggregates = _window_aggregates(
        padded, [(values, ("sum", "m2", "min", "max"), WINDOWS), (logs, ("sum",), (SUM_WINDOW,))]
    )
    exprs = _time_features()
    for metric in metrics:
        exprs.update(_metric_features(metric))
    exprs.update(_log_features())
    features = pl.concat([padded, aggregates], how="horizontal").select(
        *ID_COLUMNS, *(exprs[name].cast(FEATURE_DTYPE).alias(name) for name in columns)
    )
    return features.filter(is_real)


def _time_features() -> dict[str, pl.Expr]:
    ts = pl.col(TIMESTAMP)
    day_of_week = ts.dt.weekday() - 1
    return {
        "hour_of_day": ts.dt.hour(),
        "day_of_week": day_of_week,
        "is_weekend": day_of_week >= 5,
        "is_business_hours": (day_of_week < 5) & ts.dt.hour().is_in(list(BUSINESS_HOURS)),
    }


def _metric_features(metric: str) -> dict[str, pl.Expr]:
    """The 20 feature columns of ``metric`` and its 15-step sum."""
    s, column = metric_slug(metric), _value(metric)
    x = pl.col(column)
    means = {w: pl.col(_block(column, "sum", w)) / pl.col(_count_name(w)) for w in WINDOWS}
    stds = {w: (pl.col(_block(column, "m2", w)) * pl.col(_dof_name(w))).sqrt() for w in WINDOWS}
    exprs = {s: x}
    for w in WINDOWS:
        exprs[f"{s}_mean_{w}"] = means[w]
        exprs[f"{s}_std_{w}"] = stds[w]
        exprs[f"{s}_min_{w}"] = pl.col(_block(column, "min", w))
        exprs[f"{s}_max_{w}"] = pl.col(_block(column, "max", w))
    # A padding row holds the instance's first value, so a lag reaching before the start reads it.
    lags = {k: x.shift(k, fill_value=0.0) for k in LAGS}
    exprs.update({f"{s}_lag_{k}": lag for k, lag in lags.items()})
    exprs.update({f"{s}_change_{k}": (x - lag) / k for k, lag in lags.items()})
    z = ZSCORE_WINDOW
    exprs[f"{s}_zscore_{z}"] = (x - means[z]) / (stds[z] + ZSCORE_EPS)
    exprs[f"{s}_sum_{SUM_WINDOW}"] = pl.col(_block(column, "sum", SUM_WINDOW))
    return exprs


def _log_features() -> dict[str, pl.Expr]:
    exprs = {name: pl.col(_value(name)) for name in (*LOG_COUNT_COLUMNS, *LOG_TEMPLATE_COLUMNS)}
    for name in SUMMED_LOG_COUNTS:
        exprs[f"{name}_sum_{SUM_WINDOW}"] = pl.col(_block(_value(name), "sum", SUM_WINDOW))
    sums = {name: exprs[f"{name}_sum_{SUM_WINDOW}"] for name in SUMMED_LOG_COUNTS}
    problems = sums["error_count"] + sums["critical_count"]
    exprs[ERROR_RATIO] = problems / pl.max_horizontal(sums["log_count"], 1.0)
    return exprs


class _Plan(NamedTuple):
    """How the aggregates of some columns over some windows are built, round by round."""

    columns: Sequence[str]
    aggs: Sequence[str]
    windows: Sequence[int]
    merges: dict[int, tuple[int, int]]
    rounds: list[list[int]]
    last_use: dict[int, int]


def _plan(columns: Sequence[str], aggs: Sequence[str], windows: Sequence[int]) -> _Plan:
    """Merges ``{rows: (a, b)}``: the aggregate of the last a + b rows merges the one of the
    last a rows with the one of the b rows before them.

    Each window is built from the largest one before it (a single row for the first) by
    doubling and adding, so (5, 15, 60) take seven merges: 1+1, 2+2, 4+1, 5+5, 10+5, 15+15,
    30+30. Rounds hold merges whose parts exist; ``last_use`` is the last round reading each
    part, after which it can go unless it is one of the windows.
    """
    merges: dict[int, tuple[int, int]] = {}

    def build(target: int, units: list[int]) -> None:
        unit = max(u for u in units if u <= target)
        rows = unit
        for bit in bin(target // unit)[3:]:
            merges.setdefault(2 * rows, (rows, rows))
            rows *= 2
            if bit == "1":
                merges.setdefault(rows + unit, (rows, unit))
                rows += unit
        if rest := target - rows:
            build(rest, units)
            merges.setdefault(target, (rows, rest))

    units = [1]
    for window in sorted(windows):
        build(window, units)
        units.append(window)
    rounds: list[list[int]] = []
    built = {1}
    while pending := sorted(set(merges) - built):
        rounds.append([rows for rows in pending if set(merges[rows]) <= built])
        built.update(rounds[-1])
    last_use: dict[int, int] = {}
    for index, ready in enumerate(rounds):
        for part in (part for rows in ready for part in merges[rows]):
            last_use[part] = max(last_use.get(part, 0), index)
    return _Plan(columns, aggs, windows, merges, rounds, last_use)


def _block(column: str, agg: str, rows: int) -> str:
    return f"{column}__{agg}{rows}"


def _count_name(rows: int, offset: int = 0) -> str:
    return f"__count{rows}@{offset}"


def _dof_name(rows: int) -> str:
    return f"__dof{rows}"


def _count(rows: int, offset: int = 0) -> pl.Expr:
    """Real (non-padding) rows in the block of ``rows`` rows ending ``offset`` rows back."""
    return (
        (pl.col(_POS) - offset + 1).clip(0, rows).cast(pl.Float64).alias(_count_name(rows, offset))
    )


def _window_aggregates(
    padded: pl.DataFrame, groups: Sequence[tuple[Sequence[str], Sequence[str], Sequence[int]]]
) -> pl.DataFrame:
    """Aggregates of the last w real rows, for each ``(columns, aggs, windows)`` group.

    ``aggs`` are among "sum", "m2" (sum of squared deviations from the mean), "min" and "max",
    in that order. Returns ``{column}__{agg}{w}`` per column, agg and window, plus
    ``__count{w}@0`` (rows in the window) and ``__dof{w}`` (1 / max(rows - 1, 1)) per window.

    Merges run in rounds, one eager step each (one lazy plan over every round made polars
    re-expand the shared intermediates, several times slower); a round computes the row
    counts its merges share once, and drops the aggregates no later round needs.
    """
    plans = [_plan(*group) for group in groups]
    is_padding = pl.col(_POS) < 0
    frame = padded.select(
        _POS,
        *(
            pl.when(is_padding).then(_NEUTRAL[agg]).otherwise(pl.col(c)).alias(_block(c, agg, 1))
            for plan in plans
            for c in plan.columns
            for agg in plan.aggs
            if agg != "m2"
        ),
    )
    for index in range(max(len(plan.rounds) for plan in plans)):
        steps = [
            (plan, rows)
            for plan in plans
            if index < len(plan.rounds)
            for rows in plan.rounds[index]
        ]
        counts = _merge_counts([plan.merges[rows] for plan, rows in steps if "m2" in plan.aggs])
        frame = frame.with_columns(counts).with_columns(
            expr
            for plan, rows in steps
            for c in plan.columns
            for expr in _merged(c, *plan.merges[rows], plan.aggs)
        )
        dead = [
            _block(c, agg, rows)
            for plan in plans
            for rows, last in plan.last_use.items()
            if last == index and rows not in plan.windows
            for c in plan.columns
            for agg in plan.aggs
            if _block(c, agg, rows) in frame.columns
        ]
        frame = frame.drop(*dead, *(e.meta.output_name() for e in counts))
    windows = sorted({w for plan in plans for w in plan.windows})
    return frame.with_columns(
        *(_count(w) for w in windows),
        *((1 / pl.col(_POS).clip(1, max(w - 1, 1))).alias(_dof_name(w)) for w in windows),
    ).drop(_POS)


def _merge_counts(merges: Sequence[tuple[int, int]]) -> list[pl.Expr]:
    """Row counts of the blocks merged, and 1 / (n_a n_b (n_a + n_b)) per merge (a, b)."""
    exprs: dict[str, pl.Expr] = {}
    for a, b in merges:
        n_a, n_b = _count(a), _count(b, a)
        exprs[_count_name(a)] = n_a
        exprs[_count_name(b, a)] = n_b
        clamp = [pl.max_horizontal(n, 1) for n in (n_a, n_b, n_a + n_b)]
        exprs[f"__scale{a}+{b}"] = 1 / (clamp[0] * clamp[1] * clamp[2])
    return [expr.alias(name) for name, expr in exprs.items()]


def _merged(column: str, a: int, b: int, aggs: Sequence[str]) -> list[pl.Expr]:
    """The aggregates of the last a + b rows from those of the last a and of the b before.

    Padding rows hold each aggregate's neutral element, so shifting a block of b rows back by
    a needs no mask. The sum of squared deviations uses Chan et al.'s pairwise update, written
    without dividing by a block's count (a block in the padding has none):
    m2 = m2_a + m2_b + (n_a sum_b - n_b sum_a)^2 / (n_a n_b (n_a + n_b)).
    """

    def part(agg: str, rows: int) -> pl.Expr:
        return pl.lit(0.0) if agg == "m2" and rows == 1 else pl.col(_block(column, agg, rows))

    merged = []
    for agg in aggs:
        before = part(agg, b).shift(a, fill_value=_NEUTRAL[agg])
        if agg == "sum":
            merged.append(part("sum", a) + before)
        elif agg == "min":
            merged.append(pl.min_horizontal(part("min", a), before))
        elif agg == "max":
            merged.append(pl.max_horizontal(part("max", a), before))
        else:
            sum_b = part("sum", b).shift(a, fill_value=0.0)
            spread = pl.col(_count_name(a)) * sum_b - pl.col(_count_name(b, a)) * part("sum", a)
            between = spread * spread * pl.col(f"__scale{a}+{b}")
            merged.append(part("m2", a) + before + between)
    return [expr.alias(_block(column, agg, a + b)) for expr, agg in zip(merged, aggs, strict=True)]
