"""The fleet simulator: telemetry a detector can learn from, laid out as the exporter writes it."""

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import boto3
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from pydantic import ValidationError

from contracts.dataset import DatasetInfo, read_dataset_info
from contracts.labels import INCIDENT_TYPES, INCIDENTS_SCHEMA
from contracts.layout import INCIDENTS_PATH, RAW_PREFIX, raw_partition_path
from contracts.store import ObjectStore
from contracts.telemetry import (
    FLEET_METRICS,
    METRIC_RANGES,
    RAW_SCHEMA_WITH_TEMPLATES,
    TEMPLATE_MINER_STATE_PATH,
)
from telemetry.cloudwatch_layout import CloudWatchLayout
from telemetry.logs.events import LogEventParser
from telemetry.logs.state import load_miner
from telemetry.logs.templates import LogTemplateMiner
from telemetry.simulator.cloudwatch_push import (
    MAX_LOG_BATCH_BYTES,
    MAX_LOG_EVENTS_PER_CALL,
    log_event_batches,
    push_to_cloudwatch,
)
from telemetry.simulator.config import SimulationConfig
from telemetry.simulator.simulation import simulate_fleet, simulated_incidents, write_simulation
from vigil.processes import ServerProcess

FRIDAY = datetime(2024, 1, 5, tzinfo=UTC)
SATURDAY = FRIDAY + timedelta(days=1)
INSTANCES = 12


def _incident_minutes(incidents: pl.DataFrame) -> pl.DataFrame:
    """One row per (instance, minute) inside an incident, with its type."""
    return (
        incidents.with_columns(minute=pl.datetime_ranges("start", "end", "1m"))
        .explode("minute")
        .with_columns(pl.col("minute").dt.cast_time_unit("ms"))
        .select("instance_id", "minute", "incident_type")
    )


def _labelled(rows: pl.DataFrame, incidents: pl.DataFrame) -> pl.DataFrame:
    """Rows with the minute they fall in and the incident type (null outside incidents)."""
    return rows.with_columns(minute=pl.col("timestamp").dt.truncate("1m")).join(
        _incident_minutes(incidents), on=["instance_id", "minute"], how="left"
    )


def _metrics(telemetry: pl.DataFrame) -> pl.DataFrame:
    """One row per (instance, minute), one column per metric."""
    return telemetry.filter(pl.col("kind") == "metric").pivot(
        on="name", index=["instance_id", "source", "timestamp"], values="value"
    )


def _logs(telemetry: pl.DataFrame) -> pl.DataFrame:
    return telemetry.filter(pl.col("kind") == "log")


class Simulated(NamedTuple):
    telemetry: pl.DataFrame
    metrics: pl.DataFrame  # one row per (instance, minute), one column per metric
    logs: pl.DataFrame  # log rows with their minute and incident type (null outside incidents)
    incidents: pl.DataFrame


@pytest.fixture(scope="module")
def fleet() -> Simulated:
    """Two days of a 12-instance fleet (a weekday and a weekend day) and its incidents."""
    config = SimulationConfig(instances=INSTANCES, start=FRIDAY, duration=timedelta(days=2), seed=7)
    telemetry = pl.from_arrow(pa.concat_tables(table for _, table in simulate_fleet(config)))
    incidents = pl.from_arrow(simulated_incidents(config))
    assert isinstance(telemetry, pl.DataFrame)
    assert isinstance(incidents, pl.DataFrame)
    logs = _labelled(telemetry.filter(pl.col("kind") == "log"), incidents)
    return Simulated(telemetry, _metrics(telemetry), logs, incidents)


def _small(**overrides: Any) -> SimulationConfig:
    settings: dict[str, Any] = {
        "instances": 3,
        "start": datetime(2024, 1, 1, 23, 15, tzinfo=UTC),
        "duration": timedelta(minutes=90),
        "seed": 1,
        "incident_rate": 0.1,
    }
    return SimulationConfig(**(settings | overrides))


# --- Layout and determinism --------------------------------------------------------------


def test_partitions_land_at_hour_paths_in_the_raw_schema(tmp_path: Path) -> None:
    store = ObjectStore.from_uri(str(tmp_path))
    summary = write_simulation(store, _small())

    # 23:15 .. 00:44 spans two UTC hours, across midnight.
    hours = [datetime(2024, 1, 1, 23, tzinfo=UTC), datetime(2024, 1, 2, 0, tzinfo=UTC)]
    assert store.list_keys(RAW_PREFIX, ".parquet") == [raw_partition_path(h) for h in hours]
    tables = [store.read_table(raw_partition_path(hour)) for hour in hours]
    assert all(table.schema.equals(RAW_SCHEMA_WITH_TEMPLATES) for table in tables)
    first_minutes = [pl.from_arrow(t)["timestamp"].min() for t in tables]  # type: ignore[index]
    assert first_minutes[0] == datetime(2024, 1, 1, 23, 15, tzinfo=UTC)
    assert first_minutes[1] == hours[1]

    assert summary.partitions == 2
    assert summary.metric_rows == 3 * 90 * len(FLEET_METRICS)
    assert summary.metric_rows + summary.log_rows == sum(t.num_rows for t in tables)
    assert read_dataset_info(store) == DatasetInfo(
        name="fleet", step_seconds=60, metrics=list(FLEET_METRICS)
    )
    incidents = store.read_table(INCIDENTS_PATH)
    assert incidents.schema.equals(INCIDENTS_SCHEMA)
    assert incidents.num_rows == sum(summary.incidents_by_type.values())


def test_same_seed_gives_identical_files_and_another_seed_differs(tmp_path: Path) -> None:
    stores = [ObjectStore.from_uri(str(tmp_path / name)) for name in ("a", "b", "c")]
    for store, seed in zip(stores, (1, 1, 2), strict=True):
        write_simulation(store, _small(seed=seed))
    keys = stores[0].list_keys("")
    assert keys == stores[1].list_keys("")
    assert all(stores[0].read_bytes(k) == stores[1].read_bytes(k) for k in keys)

    one, other = (
        s.read_table(raw_partition_path(datetime(2024, 1, 2, tzinfo=UTC))) for s in stores[1:]
    )
    assert not one.equals(other)
    assert set(one["instance_id"].to_pylist()).isdisjoint(other["instance_id"].to_pylist())


def test_instance_ids_look_like_ec2_ids() -> None:
    _, table = next(simulate_fleet(_small(instances=12)))
    ids = set(table["instance_id"].to_pylist())
    assert len(ids) == 12
    assert all(i.startswith("i-0") and len(i) == 19 and int(i[2:], 16) >= 0 for i in ids)


# --- Metrics -------------------------------------------------------------------------------


def test_every_instance_reports_every_metric_once_a_minute(
    fleet: Simulated,
) -> None:
    metrics = fleet.telemetry.filter(pl.col("kind") == "metric")
    assert metrics.height == INSTANCES * 2 * 24 * 60 * len(FLEET_METRICS)
    assert metrics.select("instance_id", "name", "timestamp").is_unique().all()
    assert set(metrics["name"].unique()) == set(FLEET_METRICS)
    assert (metrics["timestamp"].dt.second() == 0).all()


def test_metric_values_stay_inside_their_ranges(
    fleet: Simulated,
) -> None:
    wide = fleet.metrics
    for name in FLEET_METRICS:
        low, high = METRIC_RANGES[name]
        column = wide[name]
        assert column.null_count() == 0, name
        assert column.is_finite().all(), name
        assert low <= column.min(), name  # type: ignore[operator]
        assert column.max() <= high, name  # type: ignore[operator]


@pytest.mark.parametrize("source", ["ec2", "app"])
def test_servers_are_busier_in_business_hours_than_at_night(fleet: Simulated, source: str) -> None:
    friday = fleet.metrics.filter((pl.col("source") == source) & (pl.col("timestamp") < SATURDAY))
    hour = pl.col("timestamp").dt.hour()
    business = friday.filter(hour.is_between(10, 16))
    night = friday.filter(hour.is_between(0, 5))
    assert business["CPUUtilization"].mean() > 1.5 * night["CPUUtilization"].mean()  # type: ignore[operator]
    assert business["RequestCount"].mean() > 2.0 * night["RequestCount"].mean()  # type: ignore[operator]


def test_weekends_are_quieter_than_weekdays(
    fleet: Simulated,
) -> None:
    wide = fleet.metrics.filter(
        pl.col("source").is_in(["ec2", "app", "alb"])
        & pl.col("timestamp").dt.hour().is_between(10, 16)
    )
    weekday = wide.filter(pl.col("timestamp") < SATURDAY)["RequestCount"].mean()
    weekend = wide.filter(pl.col("timestamp") >= SATURDAY)["RequestCount"].mean()
    assert weekend < 0.75 * weekday  # type: ignore[operator]


def test_each_source_has_its_own_levels(
    fleet: Simulated,
) -> None:
    typical = fleet.metrics.group_by("source").agg(pl.col(FLEET_METRICS).median())
    by_source = {row["source"]: row for row in typical.iter_rows(named=True)}
    assert by_source["rds"]["DatabaseConnections"] > 3 * by_source["app"]["DatabaseConnections"]
    assert by_source["lambda"]["DiskWriteOps"] < 0.05 * by_source["ec2"]["DiskWriteOps"]
    assert by_source["alb"]["DiskReadOps"] == 0.0


# --- Logs ----------------------------------------------------------------------------------


def test_normal_operation_logs_the_seed_level_mix(
    fleet: Simulated,
) -> None:
    normal = fleet.logs.filter(pl.col("incident_type").is_null())
    assert normal.height > 50_000
    shares = normal["level"].value_counts(normalize=True)
    share = dict(zip(shares["level"], shares["proportion"], strict=True))
    seed_004 = {"INFO": 0.70, "DEBUG": 0.15, "WARN": 0.10, "ERROR": 0.04, "CRITICAL": 0.01}
    for level, expected in seed_004.items():
        assert share[level] == pytest.approx(expected, abs=0.02), level


def test_log_lines_carry_json_metadata_and_unique_event_ids(
    fleet: Simulated,
) -> None:
    logs = fleet.logs
    assert logs["event_id"].is_unique().all()
    assert not logs["parse_error"].any()
    assert (logs["message"].str.len_chars() > 10).all()
    for text in logs["metadata"].gather_every(97):
        metadata = json.loads(text)
        assert set(metadata) == {"request_id", "user", "status", "latency_ms", "client_ip"}
    assert logs.select(pl.col("timestamp").is_sorted().over("instance_id")).to_series().all()


def test_log_volume_follows_logs_per_minute() -> None:
    def lines(rate: float) -> int:
        config = SimulationConfig(
            instances=5, duration=timedelta(hours=24), logs_per_minute=rate, incident_rate=0.0
        )
        return sum(
            int(pc.sum(pc.equal(t["kind"], "log")).as_py()) for _, t in simulate_fleet(config)
        )

    few, many = lines(1.0), lines(6.0)
    assert many / few == pytest.approx(6.0, rel=0.1)
    assert 0.6 < few / (5 * 24 * 60) < 1.6  # a Monday: about the average rate


# --- Incidents -----------------------------------------------------------------------------


def test_incidents_cover_about_the_configured_rate(
    fleet: Simulated,
) -> None:
    incidents = fleet.incidents
    minutes = _incident_minutes(incidents)
    assert minutes.select("instance_id", "minute").is_unique().all()
    assert minutes.height / (INSTANCES * 2 * 24 * 60) == pytest.approx(0.05, abs=0.005)
    assert set(incidents["incident_type"]) == set(INCIDENT_TYPES)
    durations = (incidents["end"] - incidents["start"]).dt.total_minutes() + 1
    assert durations.min() >= 3  # type: ignore[operator]
    assert durations.max() <= 60  # type: ignore[operator]


def test_resource_exhaustion_climbs_to_99_percent_by_its_end(
    fleet: Simulated,
) -> None:
    wide = fleet.metrics
    exhaustion = fleet.incidents.filter(pl.col("incident_type") == "resource_exhaustion")
    assert exhaustion.height >= 3
    for incident in exhaustion.iter_rows(named=True):
        resource = incident["metrics"][0]
        during = wide.filter(
            (pl.col("instance_id") == incident["instance_id"])
            & pl.col("timestamp").is_between(incident["start"], incident["end"])
        ).sort("timestamp")[resource]
        assert during[-1] >= 99.0, incident
        assert during[0] < during[len(during) // 2] < during[-1]


def test_error_spike_raises_the_error_and_critical_share(
    fleet: Simulated,
) -> None:
    logs = fleet.logs
    severe = pl.col("level").is_in(["ERROR", "CRITICAL"]).mean()
    normal = logs.filter(pl.col("incident_type").is_null()).select(severe).item()
    spike = logs.filter(pl.col("incident_type") == "error_spike").select(severe).item()
    assert normal == pytest.approx(0.05, abs=0.01)
    assert spike > 0.3


@pytest.mark.parametrize("incident_type", INCIDENT_TYPES)
def test_each_incident_shows_in_its_metrics_and_logs(fleet: Simulated, incident_type: str) -> None:
    """A detector has something to learn: the labelled metrics move, the logs turn worse."""
    wide = fleet.metrics
    moved = []
    for incident in fleet.incidents.filter(pl.col("incident_type") == incident_type).iter_rows(
        named=True
    ):
        mine = wide.filter(pl.col("instance_id") == incident["instance_id"])
        during = mine.filter(pl.col("timestamp").is_between(incident["start"], incident["end"]))
        before = mine.filter(
            pl.col("timestamp").is_between(
                incident["start"] - timedelta(minutes=30), incident["start"], closed="left"
            )
        )
        if before.height < 30:
            continue
        changes = [
            abs(during[m].mean() - before[m].mean()) / (before[m].mean() + 1.0)
            for m in incident["metrics"]
        ]
        moved.append(max(changes) > 0.25)
    assert len(moved) >= 3
    assert sum(moved) >= 0.8 * len(moved)

    logs = fleet.logs
    worse = pl.col("level").is_in(["WARN", "ERROR", "CRITICAL"]).mean()
    normal = logs.filter(pl.col("incident_type").is_null()).select(worse).item()
    during_incident = logs.filter(pl.col("incident_type") == incident_type).select(worse).item()
    assert during_incident > 1.8 * normal


def test_latency_degradation_ends_several_times_slower(
    fleet: Simulated,
) -> None:
    wide = fleet.metrics
    ratios = []
    for incident in fleet.incidents.filter(
        pl.col("incident_type") == "latency_degradation"
    ).iter_rows(named=True):
        mine = wide.filter(pl.col("instance_id") == incident["instance_id"])
        last = mine.filter(pl.col("timestamp") == incident["end"])["Latency"].item()
        typical = mine.filter(pl.col("timestamp") < incident["start"])["Latency"].tail(30).median()
        if typical:
            ratios.append(last / typical)
    assert ratios
    assert sorted(ratios)[len(ratios) // 2] > 3.0


def test_security_threat_logs_name_the_attack_and_the_attacker(
    fleet: Simulated,
) -> None:
    logs = fleet.logs.filter(pl.col("incident_type") == "security_threat")
    attack = logs.filter(
        pl.col("message").str.contains("(?i)injection|XSS|<script>|failed (login|password)")
    )
    assert attack.height > 0
    attackers = [json.loads(text)["client_ip"] for text in attack["metadata"]]
    assert all(ip.startswith("198.51.100.") for ip in attackers)


# --- Configuration -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"instances": 0}, "instances"),
        ({"duration": timedelta(0)}, "duration"),
        ({"duration": timedelta(seconds=90)}, "duration"),
        ({"incident_rate": 1.0}, "incident_rate"),
        ({"incident_rate": -0.01}, "incident_rate"),
        ({"logs_per_minute": -1.0}, "logs_per_minute"),
        ({"source_weights": {"ec2": 1.0, "mainframe": 1.0}}, "source_weights"),
        ({"source_weights": {"ec2": 0.0}}, "source_weights"),
        ({"start": datetime(2024, 1, 1, 0, 0, 30, tzinfo=UTC)}, "start"),
        ({"instance": 3}, "instance"),
    ],
)
def test_bad_config_is_refused_naming_the_field(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        SimulationConfig(**overrides)


def test_source_weights_choose_the_mix_and_naive_start_is_utc() -> None:
    config = SimulationConfig(
        instances=4, start=datetime(2024, 3, 1), duration=timedelta(minutes=5),
        source_weights={"rds": 1.0},
    )  # fmt: skip
    assert config.start == datetime(2024, 3, 1, tzinfo=UTC)
    _, table = next(simulate_fleet(config))
    assert set(table["source"].to_pylist()) == {"rds"}


# --- Push mode -----------------------------------------------------------------------------


def test_log_event_batches_respect_put_log_events_limits() -> None:
    small = [{"timestamp": 25_000 - i, "message": "x"} for i in range(25_000)]
    batches = list(log_event_batches(small))
    assert [len(b) for b in batches] == [MAX_LOG_EVENTS_PER_CALL] * 2 + [5_000]
    flat = [event["timestamp"] for batch in batches for event in batch]
    assert flat == sorted(flat)

    large = [{"timestamp": i, "message": "y" * 100_000} for i in range(25)]
    sizes = [sum(len(e["message"]) + 26 for e in b) for b in log_event_batches(large)]
    assert sum(len(b) for b in log_event_batches(large)) == 25
    assert all(size <= MAX_LOG_BATCH_BYTES for size in sizes)

    with pytest.raises(ValueError, match="over 1 MiB"):
        list(log_event_batches([{"timestamp": 0, "message": "z" * MAX_LOG_BATCH_BYTES}]))


def test_push_refuses_a_span_cloudwatch_would_reject() -> None:
    # Clients are built but never called: the check comes first.
    logs = boto3.client("logs", region_name="us-east-1", endpoint_url="http://127.0.0.1:9")
    cloudwatch = boto3.client(
        "cloudwatch", region_name="us-east-1", endpoint_url="http://127.0.0.1:9"
    )
    with pytest.raises(ValueError, match="recent start"):
        push_to_cloudwatch(
            SimulationConfig(), logs, cloudwatch, now=datetime(2025, 1, 1, tzinfo=UTC)
        )


@pytest.mark.slow
def test_push_round_trip_through_the_cloudwatch_api(aws_emulator: ServerProcess) -> None:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    config = SimulationConfig(
        instances=3, start=now - timedelta(hours=1), duration=timedelta(minutes=30), seed=5,
        incident_rate=0.2,
    )  # fmt: skip
    logs_client = boto3.client("logs", region_name="us-east-1", endpoint_url=aws_emulator.url)
    cloudwatch = boto3.client("cloudwatch", region_name="us-east-1", endpoint_url=aws_emulator.url)
    layout = CloudWatchLayout()

    counts = push_to_cloudwatch(config, logs_client, cloudwatch, layout)

    expected = pl.from_arrow(pa.concat_tables(t for _, t in simulate_fleet(config)))
    assert isinstance(expected, pl.DataFrame)
    expected_logs = _logs(expected)
    assert counts.log_events == expected_logs.height
    assert counts.metric_datums == 3 * 30 * len(FLEET_METRICS)

    pushed = []
    for source in expected["source"].unique():
        pages = logs_client.get_paginator("filter_log_events").paginate(
            logGroupName=layout.log_group_for(source)
        )
        for page in pages:
            for event in page["events"]:
                body = json.loads(event["message"])
                pushed.append(
                    (event["logStreamName"], event["timestamp"], body["level"], body["message"])
                )
    wanted = [
        (row["instance_id"], int(row["timestamp"].timestamp() * 1000), row["level"], row["message"])
        for row in expected_logs.iter_rows(named=True)
    ]
    assert sorted(pushed) == sorted(wanted)

    wide = _metrics(expected)
    queries, answers = [], {}
    for k, row in enumerate(wide.select("instance_id", "source").unique().iter_rows(named=True)):
        for j, name in enumerate(("CPUUtilization", "RequestCount", "Latency")):
            query_id = f"q{k}_{j}"
            answers[query_id] = (row["instance_id"], name)
            queries.append(
                {
                    "Id": query_id,
                    "MetricStat": {
                        "Metric": {
                            "Namespace": layout.namespace_for(row["source"]),
                            "MetricName": name,
                            "Dimensions": [{"Name": "InstanceId", "Value": row["instance_id"]}],
                        },
                        "Period": 60,
                        "Stat": "Average",
                    },
                }
            )
    result = cloudwatch.get_metric_data(
        MetricDataQueries=queries, StartTime=config.start, EndTime=config.end
    )
    for series in result["MetricDataResults"]:
        instance_id, name = answers[series["Id"]]
        got = dict(zip(series["Timestamps"], series["Values"], strict=True))
        mine = wide.filter(pl.col("instance_id") == instance_id)
        assert len(got) == 30
        want = dict(zip(mine["timestamp"], mine[name], strict=True))
        assert got == pytest.approx(want)


# --- Logs through the exporter's path, incident signatures ----------------------------------


def test_log_rows_hold_what_the_exporter_makes_of_the_pushed_events() -> None:
    # Intent: the simulator's logs take the exporter's path: each row equals what the exporter
    # parses and mines from the event the simulator would push (same order, a new miner).
    tables = [table for _, table in simulate_fleet(_small(incident_rate=0.3))]
    logs = _logs(pl.from_arrow(pa.concat_tables(tables)))  # type: ignore[arg-type]
    assert logs["template_id"].null_count() == 0
    assert logs["component"].null_count() == logs.height
    parser = LogEventParser(LogTemplateMiner())
    fields = ("level", "component", "message", "metadata", "parse_error", "template_id")
    for row in logs.iter_rows(named=True):
        body = {"level": row["level"], "message": row["message"]}
        text = json.dumps(body | {"metadata": json.loads(row["metadata"])}, ensure_ascii=False)
        assert tuple(parser.parse(text)) == tuple(row[name] for name in fields)


def test_a_simulation_leaves_its_template_miner_in_the_store(tmp_path: Path) -> None:
    store = ObjectStore.from_uri(str(tmp_path))
    write_simulation(store, _small())
    miner = load_miner(store, TEMPLATE_MINER_STATE_PATH)
    ids = pl.concat(
        pl.DataFrame(store.read_table(key)) for key in store.list_keys(RAW_PREFIX, ".parquet")
    )["template_id"].drop_nulls()
    assert ids.n_unique() > 20
    assert ids.max() <= miner.template_count
    # An exporter carrying on in this store gives a known template its id.
    known = "Out of memory: Killed process 4242 (payments-api) total-vm:812344kB"
    again = LogEventParser(miner).parse(json.dumps({"level": "CRITICAL", "message": known}))
    assert again.template_id <= miner.template_count


def _incident_logs(fleet: Simulated, incident: dict[str, Any]) -> pl.DataFrame:
    return fleet.logs.filter(
        (pl.col("instance_id") == incident["instance_id"])
        & pl.col("minute").is_between(incident["start"], incident["end"])
    )


def test_an_error_spike_is_a_bad_deployment_opened_by_its_version_lines(fleet: Simulated) -> None:
    spikes = fleet.incidents.filter(pl.col("incident_type") == "error_spike")
    checked = 0
    for incident in spikes.iter_rows(named=True):
        logs = _incident_logs(fleet, incident)
        first = logs.filter(pl.col("minute") == incident["start"]).head(2)["message"].to_list()
        if incident["start"] == FRIDAY:
            continue  # begun before the simulation: no onset lines
        assert first[0].startswith("Deploying "), first
        assert first[1].startswith("Deployment of "), first
        version = first[0].split()[2]
        unhandled = logs.filter(pl.col("message").str.starts_with("Unhandled "))["message"]
        # One broken code path: one exception, one endpoint, the deployed version.
        assert unhandled.str.replace(r" in \S+ \S+ ", " in ").n_unique() <= 1
        assert all(message.endswith(f"since {version}") for message in unhandled)
        checked += 1
    assert checked >= 3


@pytest.mark.parametrize(
    ("incident_type", "signature"),
    [
        ("resource_exhaustion", r"GC overhead|OutOfMemoryError|Out of memory|No space left|CPU"),
        ("service_outage", r"refused|Service Unavailable|returning 503|unhealthy|disconnect"),
        ("latency_degradation", r"(?i)slow request|exceeds SLO|deadline|Timeout"),
        ("security_threat", r"(?i)failed (login|password)|WAF blocked|Rejected input|locked"),
        ("data_anomaly", r"(?i)schema|malformed|Null value|Checksum|Failed to parse"),
        ("error_spike", r"Unhandled|Error rate|Circuit breaker|Error budget|Deploy"),
    ],
)
def test_each_incident_type_writes_its_own_log_signature(
    fleet: Simulated, incident_type: str, signature: str
) -> None:
    during = fleet.logs.filter(pl.col("incident_type") == incident_type)
    normal = fleet.logs.filter(pl.col("incident_type").is_null())
    assert during["message"].str.contains(signature).mean() > 0.15  # type: ignore[operator]
    # The signature's templates are the incident's own: rare in normal operation.
    incident_templates = set(
        during.filter(pl.col("message").str.contains(signature))["template_id"].to_list()
    )
    share = normal["template_id"].is_in(list(incident_templates)).mean()
    assert share < 0.02  # type: ignore[operator]


def test_incident_log_share_zero_leaves_the_metrics_and_no_log_signature() -> None:
    config = _small(incident_rate=0.3, duration=timedelta(hours=2))
    loud, quiet = (
        pl.from_arrow(
            pa.concat_tables(t for _, t in simulate_fleet(config.model_copy(update=update)))
        )
        for update in ({}, {"incident_log_share": 0.0})
    )
    assert isinstance(loud, pl.DataFrame)
    assert isinstance(quiet, pl.DataFrame)
    assert loud.filter(pl.col("kind") == "metric").equals(quiet.filter(pl.col("kind") == "metric"))
    incident_lines = (
        r"Deploying|Unhandled|Error rate|Out of memory|OutOfMemory|No space left|usage at|WAF"
        r"|exceeds SLO|deadline|Timeout after|Failed password|schema|Checksum|Null value|refused"
    )
    assert _logs(loud)["message"].str.contains(incident_lines).any()
    assert not _logs(quiet)["message"].str.contains(incident_lines).any()
