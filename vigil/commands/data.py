"""Data-plane commands: simulate, export, import-dataset, features, validate."""

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, overload

import typer
from rich.console import Console
from rich.table import Table

from contracts.store import ObjectStore
from vigil.commands.options import (
    EntitiesOption,
    StoreOption,
    open_cli_store,
    progress_bar,
    settings_for,
    split_entities,
)

if TYPE_CHECKING:
    from telemetry.validation_job import FileQuality, StoreQuality

console = Console()
# `vigil features` / `vigil validate` finished but moved unreadable input aside: a scheduler (the
# CronJob) must see that as a failure, distinct from a rejection (1) or a usage error (2).
QUARANTINE_EXIT_CODE = 3

InstancesOption = Annotated[int, typer.Option(min=1, help="Instances in the fleet.")]
HoursOption = Annotated[int, typer.Option(min=1, help="Hours of telemetry to simulate.")]
SeedOption = Annotated[int, typer.Option(min=0, help="Same seed, same telemetry.")]
RateOption = Annotated[
    float, typer.Option(min=0.0, max=0.99, help="Share of instance-minutes inside an incident.")
]
StartOption = Annotated[
    datetime | None,
    typer.Option(help="First minute, UTC (default 2024-01-01, or the last hours with --push)."),
]


@overload
def utc(moment: datetime) -> datetime: ...


@overload
def utc(moment: None) -> None: ...


def utc(moment: datetime | None) -> datetime | None:
    """Typer parses datetimes without a zone; every time on the command line is UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def simulate(
    instances: InstancesOption = 50,
    hours: HoursOption = 72,
    seed: SeedOption = 0,
    incident_rate: RateOption = 0.05,
    start: StartOption = None,
    push: Annotated[
        bool,
        typer.Option(help="Send to the CloudWatch API (VIGIL_AWS_ENDPOINT_URL) instead."),
    ] = False,
    store: StoreOption = None,
) -> None:
    """Simulate a fleet with labelled incidents into the raw store (or push it to CloudWatch)."""
    from telemetry.cloudwatch_run import make_cloudwatch_clients
    from telemetry.simulator.cloudwatch_push import push_to_cloudwatch
    from telemetry.simulator.config import SimulationConfig
    from telemetry.simulator.simulation import partition_hours, write_simulation

    duration = timedelta(hours=hours)
    if start is None and push:
        # CloudWatch keeps only recent data: end on the last whole minute.
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        start = now - duration
    fields = {} if start is None else {"start": utc(start)}
    config = SimulationConfig(
        instances=instances, duration=duration, seed=seed, incident_rate=incident_rate, **fields
    )
    if push:
        logs, cloudwatch = make_cloudwatch_clients(settings_for(store))
        counts = push_to_cloudwatch(config, logs, cloudwatch)
        console.print(
            f"pushed {counts.log_events:,} log events and {counts.metric_datums:,} metric "
            f"datums for {config.start:%Y-%m-%d %H:%M} to {config.end:%Y-%m-%d %H:%M} UTC"
        )
        return
    target = open_cli_store(store)
    with progress_bar(console) as progress:
        task = progress.add_task("simulate", total=len(partition_hours(config)))
        summary = write_simulation(target, config, lambda _key: progress.advance(task))
    table = Table("written", "value", title=f"fleet simulation → {target.uri}")
    table.add_row("instances", f"{summary.instances}")
    table.add_row("hour partitions", f"{summary.partitions}")
    table.add_row("metric rows", f"{summary.metric_rows:,}")
    table.add_row("log rows", f"{summary.log_rows:,}")
    table.add_row("anomalous instance-minutes", f"{summary.anomalous_fraction:.1%}")
    for incident_type, count in summary.incidents_by_type.items():
        table.add_row(f"incidents: {incident_type}", f"{count}")
    console.print(table)


def export_command(
    start: Annotated[
        datetime | None,
        typer.Option(help="Start of the window, UTC (default: each stream's checkpoint)."),
    ] = None,
    end: Annotated[
        datetime | None, typer.Option(help="End of the window, UTC (default: now − 5 min).")
    ] = None,
    store: StoreOption = None,
) -> None:
    """Export CloudWatch logs and metrics into raw hourly Parquet partitions (resumable)."""
    from telemetry.cloudwatch_export import export
    from telemetry.cloudwatch_layout import CloudWatchLayout
    from telemetry.cloudwatch_run import ExportConfig, make_cloudwatch_clients

    settings = settings_for(store)
    target = open_cli_store(store)
    config = ExportConfig()
    logs, cloudwatch = make_cloudwatch_clients(settings, config)
    with progress_bar(console) as progress:
        task = progress.add_task("export", total=None)

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        summary = export(
            target,
            logs,
            cloudwatch,
            CloudWatchLayout(),
            start=utc(start),
            end=utc(end),
            config=config,
            progress=advance,
        )
    console.print(
        f"exported {summary.metric_rows:,} metric rows and {summary.log_rows:,} log rows "
        f"({summary.malformed_log_rows:,} malformed, kept with parse_error) into "
        f"{len(summary.partitions_written)} partition(s) up to {summary.end:%Y-%m-%d %H:%M} UTC; "
        f"{summary.pages} pages, {summary.retries} retries, "
        f"{summary.duplicate_rows:,} rows already present"
    )


def import_dataset_command(
    name: Annotated[Literal["smd", "asd", "nab"], typer.Argument(help="Which dataset.")],
    path: Annotated[Path, typer.Option(help="The dataset folder as published.")],
    entities: EntitiesOption = None,
    store: StoreOption = None,
) -> None:
    """Import a public dataset (SMD, ASD, NAB) into an empty store, with its labels."""
    from telemetry.datasets.importer import import_dataset

    target = open_cli_store(store)
    chosen = split_entities(entities)
    with progress_bar(console) as progress:
        task = progress.add_task(f"import {name}", total=None)

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        summary = import_dataset(name, path, target, chosen, advance)
    console.print(
        f"imported {name}: {len(summary.entities)} entities, {summary.metrics} metrics, "
        f"{summary.rows:,} rows in {summary.partitions} partitions; "
        f"{summary.anomalous_rows:,} anomalous of {summary.labelled_rows:,} labelled rows "
        f"({summary.anomaly_fraction:.1%}), {summary.incidents} incidents"
    )


def features(
    day: Annotated[
        datetime | None, typer.Option(formats=["%Y-%m-%d"], help="UTC day (default: all).")
    ] = None,
    engine: Annotated[
        Literal["polars", "dask"], typer.Option(help="polars in process, or a Dask cluster.")
    ] = "polars",
    store: StoreOption = None,
) -> None:
    """Build the feature table of each day: processed-logs/YYYY-MM-DD/features.parquet.
    Exit 3 when an unreadable partition was quarantined (the days are built without it)."""
    from telemetry.feature_job import build_features

    target = open_cli_store(store)
    with console.status(f"building features with {engine}"):
        summary = build_features(target, day.date() if day else None, engine=engine)
    for written in summary.days:
        console.print(
            f"{written.key}: {written.rows:,} rows, {written.instances} instances, "
            f"{summary.feature_columns} feature columns"
        )
    for quarantined in summary.quarantined:
        console.print(f"[yellow]quarantined[/yellow] {quarantined}")
    exit_if_quarantined(len(summary.quarantined))


def exit_if_quarantined(count: int) -> None:
    """Say how many files were quarantined and exit with ``QUARANTINE_EXIT_CODE`` if any."""
    if count:
        console.print(f"[yellow]{count} file(s) quarantined[/yellow]: see quarantine/ in the store")
        raise typer.Exit(QUARANTINE_EXIT_CODE)


def validate(
    day: Annotated[
        datetime | None, typer.Option(formats=["%Y-%m-%d"], help="UTC day (default: all).")
    ] = None,
    store: StoreOption = None,
) -> None:
    """Validate raw partitions and features; reports go beside the data. Exit 1 if rejected,
    3 if an unreadable file was quarantined."""
    target = open_cli_store(store)
    quality = check_store(target, day.date() if day else None)
    if quality.rejected:
        for rejected in quality.rejected:
            console.print(f"[red]rejected[/red] {rejected.key}")
        quality.raise_if_rejected()
    exit_if_quarantined(len(quality.quarantined))


def check_store(store: ObjectStore, day: date | None) -> "StoreQuality":
    """Validate with a progress bar and print the quality scores."""
    from telemetry.validation_job import validate_store

    with progress_bar(console) as progress:
        task = progress.add_task("validate", total=None)

        def advance(_file: "FileQuality") -> None:
            progress.advance(task)

        quality = validate_store(store, day, advance)
    console.print(
        f"validated {len(quality.files)} files: quality score raw "
        f"{quality.quality_score('raw')} %, features {quality.quality_score('features')} %; "
        f"{len(quality.rejected)} rejected"
    )
    for quarantined in quality.quarantined:
        console.print(f"[yellow]quarantined[/yellow] {quarantined}")
    return quality
