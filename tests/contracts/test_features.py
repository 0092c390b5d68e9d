"""The feature contract: names, hand-checked values, isolation, and online == batch."""

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from contracts.dataset import LogTemplateCatalogue
from contracts.features import (
    BURST_BASELINE,
    BURST_WINDOW,
    ERROR_BURST,
    FEATURE_DTYPE,
    HISTORY_STEPS,
    ID_COLUMNS,
    LOG_TEMPLATE_COLUMNS,
    LOG_TEMPLATE_SLOTS,
    NOVEL_TEMPLATES,
    NOVELTY_GAP,
    NOVELTY_WINDOW,
    RARE_TEMPLATE_RATIO,
    TEMPLATE_ENTROPY,
    TEMPLATE_WINDOW,
    TOP_TEMPLATE_COLUMNS,
    compute_features,
    feature_columns,
    feature_schema,
    log_template_catalogue,
    metric_slug,
    to_wide,
)
from contracts.raw_window import window_features_from_raw
from contracts.telemetry import FLEET_METRICS, RAW_SCHEMA, RAW_SCHEMA_WITH_TEMPLATES

MONDAY = datetime(2026, 1, 5, tzinfo=UTC)
STEP = timedelta(minutes=1)


def wide_frame(columns: dict[str, list[float | None]], instance: str = "i-1") -> pl.DataFrame:
    """One instance's wide rows at 1-minute steps from Monday 00:00 UTC."""
    n = len(next(iter(columns.values())))
    return pl.DataFrame(
        {
            "instance_id": [instance] * n,
            "timestamp": [MONDAY + i * STEP for i in range(n)],
            **columns,
        },
        schema_overrides={"timestamp": pl.Datetime("ms", "UTC")},
    ).with_columns(pl.col(c).cast(pl.Float64) for c in columns)


def random_wide(instances: int, steps: int, metrics: list[str], seed: int = 0) -> pl.DataFrame:
    """Noisy metrics with a large offset (so rounding shows), a few gaps, and log counts."""
    rng = np.random.default_rng(seed)
    frames = []
    for index in range(instances):
        columns: dict[str, list[float | None]] = {}
        for metric in metrics:
            values = 1e6 + rng.normal(0, 50, steps)
            columns[metric] = [None if rng.random() < 0.02 else float(v) for v in values]
        columns["error_count"] = rng.poisson(0.3, steps).astype(float).tolist()
        columns["log_count"] = (np.asarray(columns["error_count"]) + 5).tolist()
        frames.append(wide_frame(columns, instance=f"i-{index}"))
    return pl.concat(frames)


def raw_rows(wide: pl.DataFrame, metrics: list[str]) -> pl.DataFrame:
    """Raw telemetry (RAW_SCHEMA) holding exactly the values of a wide frame."""
    metric_rows = (
        wide.unpivot(index=list(ID_COLUMNS), on=metrics, variable_name="name", value_name="value")
        .drop_nulls("value")
        .with_columns(kind=pl.lit("metric"), level=pl.lit(None, pl.String))
    )
    errors = wide.filter(pl.col("error_count") > 0).select(
        *ID_COLUMNS, pl.int_ranges(0, pl.col("error_count").cast(pl.Int64)).alias("n")
    )
    log_rows = errors.explode("n").select(
        *ID_COLUMNS,
        kind=pl.lit("log"),
        name=pl.lit(None, pl.String),
        value=pl.lit(None, pl.Float64),
        level=pl.lit("ERROR"),
    )
    rows = pl.concat([metric_rows.select(log_rows.columns), log_rows])
    return rows.with_columns(
        source=pl.lit("ec2"),
        message=pl.lit(None, pl.String),
        metadata=pl.lit(None, pl.String),
        event_id=pl.lit(None, pl.String),
        parse_error=pl.lit(False),
    ).select(RAW_SCHEMA.names)


def test_metric_slugs_are_snake_case():
    assert metric_slug("CPUUtilization") == "cpu_utilization"
    assert metric_slug("HTTPCode_5XX_Count") == "http_code_5xx_count"
    assert metric_slug("TCPConnections") == "tcp_connections"
    assert metric_slug("DiskReadOps") == "disk_read_ops"
    assert metric_slug("cpu_r") == "cpu_r"
    assert metric_slug("asd_metric_07") == "asd_metric_07"
    with pytest.raises(ValueError, match="no letter or digit"):
        metric_slug("--")


def test_fleet_metrics_give_353_features_in_contract_order():
    columns = feature_columns(FLEET_METRICS)
    # 4 time + 16 metrics x 20 + 7 counter sums + 10 log-level features + 12 log-template
    # features (8 template slots, novel, rare, burst, entropy): 341 before the templates.
    assert len(columns) == 353
    assert len(set(columns)) == len(columns)
    assert columns[:4] == ["hour_of_day", "day_of_week", "is_weekend", "is_business_hours"]
    assert columns[4:8] == [
        "cpu_utilization",
        "cpu_utilization_mean_5",
        "cpu_utilization_std_5",
        "cpu_utilization_min_5",
    ]
    assert "http_code_5xx_count_zscore_60" in columns
    assert "network_in_sum_15" in columns
    assert "network_out_sum_15" in columns
    assert "cpu_utilization_sum_15" not in columns  # not a counter
    assert columns[-13] == "error_ratio_15"
    assert columns[-12:] == [*LOG_TEMPLATE_COLUMNS]
    assert columns[-12:-4] == [f"log_template_{i}_sum_15" for i in range(1, 9)]


@pytest.mark.parametrize(
    ("metrics", "message"),
    [
        (["CPUUtilization", "cpu_utilization"], "same feature names"),
        (["cpu", "cpu"], "repeats a name"),
        (["cpu", "cpu_mean_5"], "clash"),
        ([], "at least one metric"),
    ],
)
def test_metric_lists_that_would_give_ambiguous_columns_are_rejected(metrics, message):
    with pytest.raises(ValueError, match=message):
        feature_columns(metrics)


def test_window_lag_change_and_zscore_values_match_hand_computation():
    cpu = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0]
    row = compute_features(wide_frame({"cpu": cpu}), ["cpu"]).to_dicts()
    # row 0: a window of one row, lags read the first value
    assert row[0]["cpu_mean_5"] == 1.0
    assert row[0]["cpu_std_5"] == 0.0
    assert row[0]["cpu_lag_1"] == 1.0
    assert row[0]["cpu_change_1"] == 0.0
    assert row[0]["cpu_zscore_60"] == 0.0
    # row 1: std of [1, 2] (ddof = 1)
    assert row[1]["cpu_std_5"] == pytest.approx(np.sqrt(0.5), rel=1e-6)
    # row 5: the 5-row window is [2, 4, 8, 16, 32]
    assert row[5]["cpu_mean_5"] == pytest.approx(12.4, rel=1e-6)
    assert row[5]["cpu_std_5"] == pytest.approx(np.std([2, 4, 8, 16, 32], ddof=1), rel=1e-6)
    assert (row[5]["cpu_min_5"], row[5]["cpu_max_5"]) == (2.0, 32.0)
    assert (row[5]["cpu_min_60"], row[5]["cpu_mean_60"]) == (1.0, pytest.approx(63 / 6))
    assert row[5]["cpu_lag_1"] == 16.0
    assert row[5]["cpu_lag_5"] == 1.0
    assert row[5]["cpu_lag_15"] == 1.0  # before the start: the first value
    assert row[5]["cpu_change_5"] == pytest.approx((32 - 1) / 5)
    assert row[5]["cpu_change_15"] == pytest.approx((32 - 1) / 15)
    mean, std = 63 / 6, np.std(cpu, ddof=1)
    assert row[5]["cpu_zscore_60"] == pytest.approx((32 - mean) / (std + 1e-6), rel=1e-6)


def test_counter_sums_and_log_features():
    wide = wide_frame(
        {
            "NetworkIn": [100.0] * 20,
            "error_count": [1.0] * 20,
            "critical_count": [1.0] * 20,
            "log_count": [4.0] * 20,
        }
    )
    last = compute_features(wide, ["NetworkIn"]).row(-1, named=True)
    assert last["network_in_sum_15"] == 1500.0
    assert last["error_count_sum_15"] == 15.0
    assert last["log_count_sum_15"] == 60.0
    assert last["warning_count"] == 0.0  # a log column the frame lacks is zero
    assert last["error_ratio_15"] == pytest.approx(0.5)
    # Intent: a dataset without template ids (SMD, ASD, NAB) gets zeros, not nulls.
    assert [last[c] for c in LOG_TEMPLATE_COLUMNS] == [0.0] * len(LOG_TEMPLATE_COLUMNS)


def test_time_features_use_utc_calendar():
    times = [
        datetime(2026, 1, 5, 9, 0, tzinfo=UTC),  # Monday, opening
        datetime(2026, 1, 9, 17, 59, tzinfo=UTC),  # Friday, last business minute
        datetime(2026, 1, 9, 18, 0, tzinfo=UTC),  # Friday, closed
        datetime(2026, 1, 10, 10, 0, tzinfo=UTC),  # Saturday
    ]
    wide = pl.DataFrame(
        {"instance_id": [f"i-{i}" for i in range(4)], "timestamp": times, "cpu": [1.0] * 4},
        schema_overrides={"timestamp": pl.Datetime("ms", "UTC")},
    )
    rows = compute_features(wide, ["cpu"]).select(
        "hour_of_day", "day_of_week", "is_weekend", "is_business_hours"
    )
    assert rows.rows() == [(9, 0, 0, 1), (17, 4, 0, 1), (18, 4, 0, 0), (10, 5, 1, 0)]


def test_gaps_are_forward_filled_and_unseen_values_are_zero():
    wide = wide_frame({"cpu": [None, 5.0, None, None, 7.0], "mem": [None] * 5})
    features = compute_features(wide, ["cpu", "mem"])
    assert features["cpu"].to_list() == [0.0, 5.0, 5.0, 5.0, 7.0]
    assert features["mem_max_60"].to_list() == [0.0] * 5


def test_features_match_a_pandas_reference_per_instance():
    metrics = ["CPUUtilization", "NetworkIn"]
    wide = random_wide(instances=3, steps=150, metrics=metrics)
    ours = compute_features(wide, metrics).to_pandas()
    frame = wide.to_pandas()
    by = frame["instance_id"]
    for metric in metrics:
        s = metric_slug(metric)
        x = frame.groupby(by)[metric].ffill().fillna(0.0)
        for w in (5, 15, 60):
            rolling = x.groupby(by).rolling(w, min_periods=1)
            for stat in ("mean", "std", "min", "max"):
                expected = getattr(rolling, stat)().droplevel(0).fillna(0.0).sort_index()
                np.testing.assert_allclose(ours[f"{s}_{stat}_{w}"], expected, rtol=1e-6)
        lag = x.groupby(by).shift(15).fillna(x.groupby(by).transform("first"))
        np.testing.assert_allclose(ours[f"{s}_lag_15"], lag, rtol=1e-6)
    errors = frame.groupby(by)["error_count"].rolling(15, min_periods=1).sum().droplevel(0)
    np.testing.assert_allclose(ours["error_count_sum_15"], errors.sort_index(), rtol=1e-6)


def test_windows_never_mix_instances():
    # Intent: an instance's features must not depend on which other instances share the frame.
    metrics = ["CPUUtilization"]
    both = random_wide(instances=2, steps=90, metrics=metrics, seed=3)
    alone = compute_features(both.filter(pl.col("instance_id") == "i-1"), metrics)
    together = compute_features(both, metrics).filter(pl.col("instance_id") == "i-1")
    assert_frame_equal(alone, together, check_exact=True)


def test_output_has_contract_columns_float32_and_no_nulls():
    wide = random_wide(instances=2, steps=70, metrics=list(FLEET_METRICS[:3]))
    wide = wide.with_columns(pl.lit(None, pl.Float64).alias(FLEET_METRICS[3]))  # never seen
    features = compute_features(wide, FLEET_METRICS[:4])
    assert features.columns == [*ID_COLUMNS, *feature_columns(FLEET_METRICS[:4])]
    assert features.null_count().sum_horizontal().item() == 0
    assert all(features.schema[c] == FEATURE_DTYPE for c in feature_columns(FLEET_METRICS[:4]))
    assert feature_schema(FLEET_METRICS[:4]).names == features.columns


def test_full_fleet_metric_set_gives_over_300_columns():
    wide = random_wide(instances=1, steps=10, metrics=list(FLEET_METRICS))
    features = compute_features(wide, FLEET_METRICS)
    assert features.width - len(ID_COLUMNS) == 353
    assert features.null_count().sum_horizontal().item() == 0


def test_row_order_of_the_input_does_not_matter():
    wide = random_wide(instances=2, steps=40, metrics=["cpu"])
    shuffled = wide.sample(fraction=1.0, shuffle=True, seed=1)
    assert_frame_equal(compute_features(shuffled, ["cpu"]), compute_features(wide, ["cpu"]))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda w: w.drop("cpu"), r"lacks columns \['cpu'\]"),
        (lambda w: pl.concat([w, w.head(1)]), "repeats"),
        (lambda w: w.filter(pl.col("timestamp") != MONDAY + 3 * STEP), "regular grid"),
        (lambda w: w.with_columns(pl.col("cpu").cast(pl.String)), "not numeric"),
        (lambda w: w.with_columns(pl.col("timestamp").dt.replace_time_zone(None)), "timezone"),
    ],
)
def test_bad_wide_frames_are_rejected(change, message):
    wide = wide_frame({"cpu": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]})
    with pytest.raises(ValueError, match=message):
        compute_features(change(wide), ["cpu"])


def test_to_wide_averages_per_step_counts_logs_and_fills_the_grid():
    def metric(minute: float, name: str, value: float) -> dict[str, object]:
        return {"timestamp": MONDAY + minute * STEP, "kind": "metric", "name": name, "value": value}

    def log(minute: float, level: str, parse_error: bool = False) -> dict[str, object]:
        at = MONDAY + minute * STEP
        return {"timestamp": at, "kind": "log", "level": level, "parse_error": parse_error}

    rows = [
        metric(0, "cpu", 10.0),
        metric(0.5, "cpu", 20.0),  # same step: averaged
        metric(3, "cpu", 40.0),  # minutes 1 and 2 have no datapoint
        metric(3, "unlisted", 1.0),  # not a dataset metric: not a column
        log(1, "ERROR"),
        log(1.2, "ERROR"),
        log(1, "WARN"),
        log(2, "CRITICAL", parse_error=True),
        log(2, "INFO"),
    ]
    raw = pl.DataFrame(
        [{"instance_id": "i-1", "level": None, "parse_error": False, **r} for r in rows],
        schema_overrides={"timestamp": pl.Datetime("ms", "UTC")},
    )
    wide = to_wide(raw, ["cpu", "mem"], step_seconds=60)
    assert wide.schema["timestamp"] == pl.Datetime("ms", "UTC")
    assert wide["timestamp"].to_list() == [MONDAY + i * STEP for i in range(4)]
    assert wide["cpu"].to_list() == [15.0, None, None, 40.0]
    assert wide["mem"].to_list() == [None] * 4
    assert wide["error_count"].to_list() == [0, 2, 0, 0]
    assert wide["warning_count"].to_list() == [0, 1, 0, 0]
    assert wide["critical_count"].to_list() == [0, 0, 1, 0]
    assert wide["log_count"].to_list() == [0, 3, 2, 0]
    assert wide["parse_error_count"].to_list() == [0, 0, 1, 0]


def test_to_wide_rejects_bad_raw_rows():
    raw = raw_rows(random_wide(1, 5, ["cpu"]), ["cpu"])
    with pytest.raises(ValueError, match="lacks columns"):
        to_wide(raw.drop("kind"), ["cpu"], 60)
    with pytest.raises(ValueError, match="non-finite"):
        to_wide(raw.with_columns(pl.lit(float("nan")).alias("value")), ["cpu"], 60)
    with pytest.raises(ValueError, match="timezone"):
        to_wide(raw.with_columns(pl.col("timestamp").dt.replace_time_zone(None)), ["cpu"], 60)


def test_online_rows_equal_batch_rows_bit_for_bit():
    # Intent: no train/serve skew. The scorer sees only the last HISTORY_STEPS steps; its
    # features must equal the batch features of the same rows exactly, not approximately.
    metrics = ["CPUUtilization", "NetworkIn"]
    wide = random_wide(instances=3, steps=400, metrics=metrics, seed=5)
    wide = wide.with_columns(pl.col(m).forward_fill().over("instance_id") for m in metrics)
    raw = raw_rows(wide, metrics)
    batch = compute_features(to_wide(raw, metrics, 60), metrics)
    for now in (MONDAY + 150 * STEP, MONDAY + 399 * STEP):
        recent = raw.filter(pl.col("timestamp").is_between(now - (HISTORY_STEPS - 1) * STEP, now))
        online = window_features_from_raw(recent, metrics, 60, now, now + STEP)
        expected = batch.filter(pl.col("timestamp") == now)
        assert online.height == 3
        assert_frame_equal(online, expected, check_exact=True)


# --- log-template features --------------------------------------------------------------------


def templated_logs(instances: int, steps: int, seed: int = 0) -> pl.DataFrame:
    """Raw log rows with template ids: a skewed mix of 40 templates (30+ at ERROR), and bursts
    of never-seen error templates, so that every log-template feature moves."""
    rng = np.random.default_rng(seed)
    rows = []
    for index in range(instances):
        counts = rng.poisson(3.0, steps)
        step = np.repeat(np.arange(steps), counts)
        template = np.minimum(rng.zipf(1.6, len(step)), 40)
        for start in rng.choice(steps - 10, 3, replace=False):
            burst = np.arange(start, start + 10).repeat(5)
            step = np.concatenate([step, burst])
            template = np.concatenate([template, np.full(len(burst), 100 + start)])
        offset = rng.uniform(0, 59, len(step))
        rows.append(
            pl.DataFrame(
                {
                    "instance_id": f"i-{index}",
                    "timestamp": [
                        MONDAY + timedelta(minutes=int(m), seconds=float(o))
                        for m, o in zip(step, offset, strict=True)
                    ],
                    "template_id": template.astype(np.int64),
                }
            )
        )
    logs = pl.concat(rows).with_columns(pl.col("timestamp").cast(pl.Datetime("ms", "UTC")))
    return logs.with_columns(
        kind=pl.lit("log"),
        name=pl.lit(None, pl.String),
        value=pl.lit(None, pl.Float64),
        level=pl.when(pl.col("template_id") >= 30).then(pl.lit("ERROR")).otherwise(pl.lit("INFO")),
        source=pl.lit("app"),
        message=pl.lit(None, pl.String),
        metadata=pl.lit(None, pl.String),
        event_id=pl.lit(None, pl.String),
        parse_error=pl.lit(False),
        component=pl.lit(None, pl.String),
    ).select(RAW_SCHEMA_WITH_TEMPLATES.names)


def log_rows(events: list[tuple[float, int, str]]) -> pl.DataFrame:
    """One instance's log rows: (minute, template id, level) each."""
    return pl.DataFrame(
        [
            {
                "timestamp": MONDAY + minute * STEP,
                "instance_id": "i-1",
                "kind": "log",
                "name": None,
                "value": None,
                "level": level,
                "parse_error": False,
                "template_id": template,
            }
            for minute, template, level in events
        ],
        schema_overrides={"timestamp": pl.Datetime("ms", "UTC")},
    )


def test_log_template_features_look_back_no_further_than_the_scorer_reads():
    # Intent: online equality needs every window inside the HISTORY_STEPS the scorer reads.
    reach = (TEMPLATE_WINDOW, NOVELTY_WINDOW + NOVELTY_GAP, BURST_WINDOW + BURST_BASELINE)
    assert max(reach) <= HISTORY_STEPS


def test_log_template_features_match_hand_computation():
    events = [(m, 1, "INFO") for m in range(70)]  # one template, every minute
    events += [(3, 2, "ERROR"), (3.5, 2, "ERROR"), (4, 2, "ERROR"), (65, 2, "ERROR")]
    events += [(10, 3, "INFO")]
    catalogue = LogTemplateCatalogue(events=75, top=[1, 2], common=[1])
    wide = to_wide(log_rows(events), ["cpu"], 60, catalogue)
    row = {m: r for m, r in enumerate(compute_features(wide, ["cpu"]).to_dicts())}
    slot_1, slot_2 = TOP_TEMPLATE_COLUMNS[:2]
    assert (row[4][slot_1], row[4][slot_2], row[20][slot_1]) == (5.0, 3.0, 15.0)
    assert [row[m][c] for m in (0, 5) for c in TOP_TEMPLATE_COLUMNS[2:]] == [0.0] * 12
    # New: template 1 at minute 0, template 2 at 3, template 3 at 10; template 2 again at 65
    # after 61 silent minutes (more than NOVELTY_GAP).
    novel = [row[m][NOVEL_TEMPLATES] for m in (0, 3, 4, 5, 8, 10, 14, 15, 64, 65, 69)]
    assert novel == [1.0, 2.0, 2.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0]
    # Rare (outside `common`): minute 4 holds 5 events of template 1 and 3 of template 2.
    assert row[4][RARE_TEMPLATE_RATIO] == pytest.approx(3 / 8)
    assert (row[0][RARE_TEMPLATE_RATIO], row[30][RARE_TEMPLATE_RATIO]) == (0.0, 0.0)
    # Burst of template 2 at minute 8: 1 event in minutes 4-8, 2 in the 55 minutes before.
    expected = 2 * 5 / 55
    assert row[8][ERROR_BURST] == pytest.approx((1 - expected) / np.sqrt(expected + 1), rel=1e-6)
    assert (row[4][ERROR_BURST], row[9][ERROR_BURST], row[65][ERROR_BURST]) == (3.0, 0.0, 1.0)
    # Entropy in bits: minute 4 holds 5 and 3 events; one template alone gives 0.
    p = np.array([5, 3]) / 8
    assert row[4][TEMPLATE_ENTROPY] == pytest.approx(-(p * np.log2(p)).sum(), rel=1e-6)
    assert (row[0][TEMPLATE_ENTROPY], row[40][TEMPLATE_ENTROPY]) == (0.0, 0.0)


def test_log_template_catalogue_names_the_most_frequent_and_the_common_templates():
    events = [(m % 60, 7, "INFO") for m in range(600)] + [(m, 3, "INFO") for m in range(300)]
    events += [(m, 9, "INFO") for m in range(300)] + [(0, 5, "ERROR")]
    catalogue = log_template_catalogue(log_rows(events))
    assert catalogue == LogTemplateCatalogue(events=1201, top=[7, 3, 9, 5], common=[3, 7, 9])
    assert log_template_catalogue(log_rows(events).drop("template_id")) is None
    no_ids = log_rows(events).with_columns(pl.lit(None, pl.Int64).alias("template_id"))
    assert log_template_catalogue(no_ids) is None
    many = [(0, t, "INFO") for t in range(1, 20) for _ in range(t)]
    most = log_template_catalogue(log_rows(many))
    assert most is not None
    assert most.top == list(range(19, 19 - LOG_TEMPLATE_SLOTS, -1))


def test_log_rows_without_template_ids_take_no_part_in_the_template_features():
    # Intent: partitions exported before templates were mined still read; their log rows are
    # counted per level but give no template.
    events = [(m, 1, "ERROR") for m in range(20)]
    old = log_rows(events).drop("template_id")
    wide = to_wide(old, ["cpu"], 60, LogTemplateCatalogue(events=20, top=[1], common=[1]))
    assert wide["error_count"].sum() == 20
    assert wide.select(LOG_TEMPLATE_COLUMNS).to_numpy().sum() == 0.0
    mixed = pl.concat([old, log_rows([(m, 1, "ERROR") for m in range(20, 25)])], how="diagonal")
    features = compute_features(to_wide(mixed, ["cpu"], 60), ["cpu"])
    assert features[TOP_TEMPLATE_COLUMNS[0]].to_list()[-1] == 0.0  # no catalogue: no slot
    assert features[RARE_TEMPLATE_RATIO].to_list()[-1] == 1.0  # and every template is rare
    assert features[NOVEL_TEMPLATES].to_list()[19:] == [0.0, 1.0, 1.0, 1.0, 1.0, 1.0]


def test_online_log_template_features_equal_batch_rows_bit_for_bit():
    # Intent: the template features keep the contract's online == batch equality, with bursts
    # of new error templates and the dataset's own catalogue, at several moments.
    metrics = ["CPUUtilization"]
    wide = random_wide(instances=3, steps=300, metrics=metrics, seed=8)
    wide = wide.with_columns(pl.col(m).forward_fill().over("instance_id") for m in metrics)
    # raw_rows' own ERROR rows have no template id: they mix with the templated ones.
    raw = pl.concat([raw_rows(wide, metrics), templated_logs(3, 300, seed=9)], how="diagonal")
    catalogue = log_template_catalogue(raw)
    assert catalogue is not None
    assert len(catalogue.top) == LOG_TEMPLATE_SLOTS
    batch = compute_features(to_wide(raw, metrics, 60, catalogue), metrics)
    moving = batch.select(LOG_TEMPLATE_COLUMNS).std().row(0)
    assert all(value > 0 for value in moving), "every template feature moves in this data"
    for minute in (60, 61, 137, 222, 299):
        now = MONDAY + minute * STEP
        first, end = now - (HISTORY_STEPS - 1) * STEP, now + STEP  # the steps' whole minutes
        recent = raw.filter((pl.col("timestamp") >= first) & (pl.col("timestamp") < end))
        online = window_features_from_raw(recent, metrics, 60, now, end, catalogue)
        assert_frame_equal(online, batch.filter(pl.col("timestamp") == now), check_exact=True)
