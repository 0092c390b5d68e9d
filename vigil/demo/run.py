"""``vigil demo``: the platform end to end on one machine, each step named and timed.

Steps: simulate a fleet with labelled incidents → push a recent slice to the AWS API emulator
and export it back through the real exporter (the production path) → build features → validate
them → train and register the champion / challenger in a local MLflow server → serve, explain,
replay the last day of data and judge the arms → write the HTML report (``reports/demo.html``,
also an artifact of the training run in MLflow).

With a dataset (``DemoConfig.dataset``), a published labelled dataset is imported instead of
the simulation, and the export round trip (which pushes simulated fleet telemetry) is skipped
with its reason; every later step reads what the store holds (its ``dataset.json`` metric list,
its feature rows and its incidents), so it runs unchanged on any imported dataset.

Every run rebuilds the store from scratch (after stopping the previous run's stack, whose
scorer writes into it), so running the demo twice is safe; when the new data has other metrics
than the previous run's, the demo's MLflow registry is reset too, since models trained on the
old features cannot score the new ones.
"""

import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.compute as pc
from rich.console import Console
from rich.table import Table

from contracts.dataset import DatasetInfo, read_dataset_info
from contracts.features import TIMESTAMP
from contracts.layout import FEATURES_PREFIX
from contracts.serving import AB_MODEL, CHALLENGER, CHAMPION
from contracts.settings import Settings
from contracts.store import ObjectStore
from serving.router.ab_config import load_ab_config
from serving.scorer.ab_report import ab_report_from_store, write_ab_report
from serving.scorer.served_models import load_served_models
from serving.scorer.settings import ScorerSettings
from telemetry.cloudwatch_export import export
from telemetry.cloudwatch_layout import CloudWatchLayout
from telemetry.cloudwatch_run import make_cloudwatch_clients
from telemetry.datasets.importer import DatasetName, import_dataset
from telemetry.feature_job import build_features
from telemetry.simulator.cloudwatch_push import push_to_cloudwatch
from telemetry.simulator.config import SimulationConfig
from telemetry.simulator.simulation import write_simulation
from telemetry.validation_job import validate_store
from training.config import DEFAULT_CONFIG_PATH, SplitConfig, load_training_config
from training.models import split_rows
from training.pipeline import run_training
from training.run_directory import TrainingSummary
from vigil.dashboard_check import wait_for_panel_data
from vigil.demo.replay import (
    ReplayOutcome,
    replay_range,
    send_feedback,
    wait_for_explanations,
    wait_for_replay,
)
from vigil.local_stack import (
    start_alertmanager,
    start_explainer,
    start_local_mlflow,
    start_prometheus,
    start_scorer,
    start_serving,
)
from vigil.processes import ServerProcess, start_moto
from vigil.report.collect import EXPLANATION_CARDS, collect_report
from vigil.report.publish import log_report
from vigil.report.render import write_report
from vigil.stack import stop_stack
from vigil.training_summary import training_summary_table

DEMO_CONFIG_PATH = DEFAULT_CONFIG_PATH.with_name("demo.yaml")
# On an imported dataset: the same, with gates that real data can pass (see the file).
DEMO_DATASET_CONFIG_PATH = DEFAULT_CONFIG_PATH.with_name("demo-dataset.yaml")
# The scorer's window (the demo leaves VIGIL_SCORER_WINDOW_SECONDS at its default).
SCORER_WINDOW = timedelta(seconds=ScorerSettings.model_fields["window_seconds"].default)
# How long the demo lets the local LLM work through queued anomalies before the report:
# enough for the report's cards at its few seconds per answer, short of the 15-minute budget.
EXPLANATION_WAIT_SECONDS = 120.0


class DemoStepError(RuntimeError):
    """A demo step failed; the message names the step and the log to read."""


@dataclass(frozen=True)
class DemoConfig:
    """What the demo runs on and where it writes."""

    work_path: Path = Path(".vigil/demo")
    instances: int = 50
    days: int = 3
    seed: int = 0
    export_instances: int = 5
    export_hours: int = 1
    once: bool = False  # stop every service at the end instead of leaving the stack running
    report_path: Path = Path("reports/demo.html")
    # A published dataset to import instead of simulating a fleet (instances, days, seed and
    # the export settings then do not apply), its folder as published, and the entities to
    # import (None: every one the folder holds).
    dataset: DatasetName | None = None
    dataset_path: Path | None = None
    entities: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.dataset is not None and self.dataset_path is None:
            raise ValueError(f"the {self.dataset} demo needs the dataset's folder (dataset_path)")

    @property
    def store_path(self) -> Path:
        return self.work_path / "store"

    @property
    def export_store_path(self) -> Path:
        return self.work_path / "cloudwatch-export"

    @property
    def logs_path(self) -> Path:
        return self.work_path / "logs"

    @property
    def stack_path(self) -> Path:
        return self.work_path / "stack"


@dataclass
class DemoResult:
    """What each step reported, for the summary."""

    rows: list[tuple[str, str, str]] = field(default_factory=list)  # step, seconds, outcome
    training: TrainingSummary | None = None
    tracking_uri: str | None = None
    router_url: str | None = None
    replay: ReplayOutcome | None = None
    prometheus_url: str | None = None
    report_path: Path | None = None


@contextmanager
def _step(
    console: Console, result: DemoResult, name: str, log: Path | None = None
) -> Iterator[Callable[[str], None]]:
    outcome = [""]
    started = time.perf_counter()
    console.print(f"[bold]→ {name}[/bold]")
    try:
        yield lambda text: outcome.__setitem__(0, text)
    except Exception as error:
        where = f"; log: {log}" if log else ""
        raise DemoStepError(f"demo step '{name}' failed: {error}{where}") from error
    seconds = time.perf_counter() - started
    result.rows.append((name, f"{seconds:.1f}", outcome[0]))
    console.print(f"[green]✓[/green] {name} ({seconds:.1f} s): {outcome[0]}")


def run_demo(config: DemoConfig, console: Console) -> DemoResult:
    """Run every step; servers the demo started are stopped at the end.

    Raises:
        DemoStepError: naming the failed step and, for a server, its log file.
    """
    result = DemoResult()
    store = prepare_store(config, console, result)
    try:
        _serve(config, console, result, store)
    except BaseException:
        stop_stack(config.stack_path)
        raise
    if config.once:
        stop_stack(config.stack_path)
    return result


def prepare_store(config: DemoConfig, console: Console, result: DemoResult) -> ObjectStore:
    """The data steps: a fresh store filled (simulated, or imported from the dataset), its
    features built and validated. Steps that do not apply are listed with their reason.

    Raises:
        DemoStepError: naming the failed step.
    """
    # The previous run's stack is stopped first: its scorer writes into the store rebuilt here.
    stop_stack(config.stack_path)
    previous = _previous_dataset(config.store_path)
    shutil.rmtree(config.store_path, ignore_errors=True)
    config.logs_path.mkdir(parents=True, exist_ok=True)
    store = ObjectStore.from_uri(str(config.store_path))
    if config.dataset is None or config.dataset_path is None:
        _simulate(config, console, result, store)
        _export_round_trip(config, console, result)
    else:
        _import(console, result, store, config.dataset, config.dataset_path, config.entities)
        _skip(
            console,
            result,
            "export from CloudWatch",
            "the round trip through the AWS API emulator pushes simulated fleet telemetry; "
            f"{config.dataset} is imported from its published files instead",
        )
    _reset_registry_if_metrics_changed(config, console, previous, read_dataset_info(store))
    with _step(console, result, "build features") as report:
        built = build_features(store)
        report(
            f"{built.rows:,} rows × {built.feature_columns} feature columns, {len(built.days)} days"
        )
    with _step(console, result, "validate raw and features") as report:
        quality = validate_store(store)
        quality.raise_if_rejected()
        report(
            f"{len(quality.files)} files, quality score raw {quality.quality_score('raw')} %, "
            f"features {quality.quality_score('features')} %"
        )
    return store


def _simulate(config: DemoConfig, console: Console, result: DemoResult, store: ObjectStore) -> None:
    simulation = SimulationConfig(
        instances=config.instances, duration=timedelta(days=config.days), seed=config.seed
    )
    with _step(console, result, "simulate the fleet") as report:
        summary = write_simulation(store, simulation)
        incidents = sum(summary.incidents_by_type.values())
        report(
            f"{summary.instances} instances × {config.days} days: {summary.metric_rows:,} "
            f"metric rows, {summary.log_rows:,} log rows, {incidents} incidents of "
            f"{len(summary.incidents_by_type)} types ({summary.anomalous_fraction:.1%} of "
            "instance-minutes)"
        )


def _import(
    console: Console,
    result: DemoResult,
    store: ObjectStore,
    dataset: DatasetName,
    source_path: Path,
    entities: tuple[str, ...] | None,
) -> None:
    with _step(console, result, f"import {dataset} from {source_path}") as report:
        summary = import_dataset(
            dataset, source_path, store, list(entities) if entities is not None else None
        )
        report(
            f"{len(summary.entities)} entities ({', '.join(summary.entities)}) × "
            f"{summary.metrics} metrics: {summary.rows:,} metric rows in {summary.partitions} "
            f"hourly partitions; {summary.incidents} incidents, {summary.anomalous_rows:,} of "
            f"{summary.labelled_rows:,} labelled rows anomalous ({summary.anomaly_fraction:.1%})"
        )


def _skip(console: Console, result: DemoResult, name: str, reason: str) -> None:
    """A step that does not apply to this run: listed with its reason, never left out."""
    result.rows.append((name, "–", f"skipped: {reason}"))
    console.print(f"[yellow]–[/yellow] {name}: skipped ({reason})")


def _previous_dataset(store_path: Path) -> DatasetInfo | None:
    """What the previous run's store held (None when there was no store)."""
    if not store_path.exists():
        return None
    return read_dataset_info(ObjectStore.from_uri(str(store_path)))


def _reset_registry_if_metrics_changed(
    config: DemoConfig, console: Console, previous: DatasetInfo | None, current: DatasetInfo
) -> None:
    """Drop the demo's MLflow registry when the data's metrics changed: its alias holders
    take other features, so the new run could neither be compared with them nor served
    beside them."""
    registry = config.stack_path / "mlflow"
    if previous is None or previous.metrics == current.metrics or not registry.exists():
        return
    shutil.rmtree(registry)
    console.print(
        f"[yellow]MLflow registry reset[/yellow]: the previous demo ran on {previous.name!r} "
        f"({len(previous.metrics)} metrics), whose models cannot score {current.name!r} "
        f"({len(current.metrics)} metrics)"
    )


def held_out_start(store: ObjectStore, split: SplitConfig) -> datetime | None:
    """Where training's held-out test rows begin (a time split holds out the latest rows,
    computed by the training's own ``split_rows``); None for a stratified split."""
    if split.method != "time":
        return None
    keys = store.list_keys(FEATURES_PREFIX, "features.parquet")
    stamps = pl.concat([pl.DataFrame(store.read_table(key, columns=[TIMESTAMP])) for key in keys])
    values = stamps[TIMESTAMP].to_numpy()
    test = split_rows(values, np.zeros(len(values), dtype=np.int8), split).test
    first = stamps[TIMESTAMP].gather(test).min()
    assert isinstance(first, datetime)
    return first


def _held_out_text(start: datetime, end: datetime, test_start: datetime | None) -> str:
    if test_start is None:
        return "training split its rows at random (stratified), so the range overlaps them"
    if test_start <= start:
        return "the whole range lies in training's held-out test rows"
    unseen = max(end - test_start, timedelta(0))
    return (
        f"training's held-out test rows start at {test_start:%Y-%m-%d %H:%M}: the last "
        f"{unseen.total_seconds() / 3600:.1f} h of the range were never trained on"
    )


def _serve(config: DemoConfig, console: Console, result: DemoResult, store: ObjectStore) -> None:
    """Train and register in MLflow, then serve the champion and challenger."""
    stack = config.stack_path
    logs = stack / "logs"
    mlflow = _start(console, result, "start MLflow", lambda: start_local_mlflow(stack), logs)
    result.tracking_uri = mlflow.url
    training_config = load_training_config(
        DEMO_CONFIG_PATH if config.dataset is None else DEMO_DATASET_CONFIG_PATH
    )
    with _step(console, result, "train and register") as report:
        run_path = config.work_path / "runs" / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        training = run_training(store, training_config, mlflow.url, run_path, console)
        console.print(training_summary_table(training))
        result.training = training
        if training.registration_error:
            raise RuntimeError(training.registration_error)
        assert training.registration is not None
        report(training.registration.decision)
    with _step(console, result, "serve with Triton behind the A/B router", logs) as report:
        serving = start_serving(stack, mlflow.url)
        arms = ", ".join(f"@{m.alias} {m.name} v{m.version}" for m in serving.repository.models)
        report(f"{arms}; A/B endpoint {serving.router.url}/v2/models/{AB_MODEL}/infer")
        result.router_url = serving.router.url
    with _step(
        console, result, "start the explainer (LLM server, runbook index, API)", logs
    ) as report:
        explainer = start_explainer(stack)
        report(f"{explainer.service.url}/explain, {explainer.indexed_chunks} runbook chunks")
    replay = replay_range(store, SCORER_WINDOW)
    held_out = _held_out_text(*replay, held_out_start(store, training_config.split))
    scorer = _start(
        console,
        result,
        "start the scorer (replays the last day of data through the A/B router)",
        lambda: start_scorer(
            stack, str(config.store_path), mlflow.url, serving, replay, explainer.service.url
        ),
        logs,
    )
    with _step(console, result, "replay the last day and send ground-truth feedback") as report:
        wait_for_replay(scorer.url, replay[1])
        outcome = send_feedback(store, scorer.url, *replay, SCORER_WINDOW)
        result.replay = outcome
        report(
            f"{replay[0]:%Y-%m-%d %H:%M} to {replay[1]:%Y-%m-%d %H:%M} UTC ({held_out}): "
            f"{outcome.windows:,} instance-windows scored ({outcome.by_model}); "
            f"{outcome.flagged:,} flagged, precision {outcome.precision:.2f}, recall "
            f"{outcome.recall:.2f} against {outcome.true_anomalous:,} truly anomalous; "
            f"{outcome.feedback_sent:,} feedback labels sent (last "
            f"{outcome.feedback_span.total_seconds() / 3600:g} h)"
        )
    with _step(console, result, "A/B report") as report:
        weights = load_ab_config()
        ab = ab_report_from_store(
            store,
            load_served_models(mlflow.url),
            {CHAMPION: weights.champion_weight, CHALLENGER: weights.challenger_weight},
            *replay,
        )
        html_path = write_ab_report(ab, config.work_path / "reports")[1]
        report(f"{ab.decision}: {ab.reason} ({html_path})")
    targets = {
        "triton": [f"127.0.0.1:{serving.triton_ports.metrics}"],
        "scorer": [scorer.url.removeprefix("http://")],
        "explainer": [explainer.service.url.removeprefix("http://")],
    }
    alertmanager = _start(
        console, result, "start Alertmanager", lambda: start_alertmanager(stack), logs
    )
    alerts_to = alertmanager.url.removeprefix("http://")
    prometheus = _start(
        console,
        result,
        "start Prometheus",
        lambda: start_prometheus(stack, targets, alerts_to),
        logs,
    )
    result.prometheus_url = prometheus.url
    with _step(console, result, "check every dashboard panel query against Prometheus") as report:
        checked = wait_for_panel_data(prometheus.url)
        report(f"all {checked} panel queries of the 4 Grafana dashboards return data")
    with _step(console, result, "let the explainer catch up") as report:
        explained = wait_for_explanations(scorer.url, EXPLANATION_CARDS, EXPLANATION_WAIT_SECONDS)
        report(
            f"{explained.sent} explained, {explained.queued} still queued, "
            f"{explained.failed} failed, {explained.dropped} dropped (queue full)"
        )
    with _step(console, result, "write the report") as report:
        path = write_report(collect_report(store, mlflow.url, ab, *replay), config.report_path)
        artifact = log_report(path, mlflow.url, training.registration.run_id)
        result.report_path = path
        report(f"{path}; MLflow run {training.registration.run_id}: {artifact}")


def _start(
    console: Console,
    result: DemoResult,
    name: str,
    starter: Callable[[], ServerProcess],
    log: Path,
) -> ServerProcess:
    with _step(console, result, name, log) as report:
        server = starter()
        report(server.url)
    return server


def _export_round_trip(config: DemoConfig, console: Console, result: DemoResult) -> None:
    """Push a recent slice to the emulator's CloudWatch API and export it back to Parquet."""
    moto = _start(
        console,
        result,
        "start the AWS API emulator",
        lambda: start_moto(config.logs_path),
        config.logs_path / "moto.log",
    )
    try:
        with _step(
            console, result, "export from CloudWatch", config.logs_path / "moto.log"
        ) as report:
            now = datetime.now(UTC).replace(second=0, microsecond=0)
            start = now - timedelta(hours=config.export_hours + 1)
            window = SimulationConfig(
                instances=config.export_instances,
                start=start,
                duration=timedelta(hours=config.export_hours),
                seed=config.seed,
            )
            with _emulator_credentials():
                logs, cloudwatch = make_cloudwatch_clients(Settings(aws_endpoint_url=moto.url))
            pushed = push_to_cloudwatch(window, logs, cloudwatch, now=now)
            shutil.rmtree(config.export_store_path, ignore_errors=True)
            target = ObjectStore.from_uri(str(config.export_store_path))
            exported = export(
                target, logs, cloudwatch, CloudWatchLayout(), start=window.start, end=window.end
            )
            rows = _rows_by_kind(target)
            if rows != (pushed.metric_datums, pushed.log_events):
                raise RuntimeError(
                    f"pushed {pushed.metric_datums} datums and {pushed.log_events} log events, "
                    f"exported {rows[0]} and {rows[1]}"
                )
            report(
                f"{pushed.metric_datums:,} datums and {pushed.log_events:,} log events pushed, "
                f"all exported back in {exported.pages} pages to "
                f"{len(exported.partitions_written)} partition(s)"
            )
    finally:
        moto.stop()


@contextmanager
def _emulator_credentials() -> Iterator[None]:
    """Dummy keys for the emulator, so real ones from the environment never reach it."""
    names = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE")
    saved = {name: os.environ.pop(name, None) for name in names}
    os.environ.update({"AWS_ACCESS_KEY_ID": "emulator", "AWS_SECRET_ACCESS_KEY": "emulator"})
    try:
        yield
    finally:
        for name, value in saved.items():
            os.environ.pop(name, None)
            if value is not None:
                os.environ[name] = value


def _rows_by_kind(store: ObjectStore) -> tuple[int, int]:
    metric = log = 0
    for key in store.list_keys("raw-logs", ".parquet"):
        kinds = store.read_table(key, columns=["kind"])["kind"]
        logs = int(pc.sum(pc.equal(kinds, "log")).as_py() or 0)
        log += logs
        metric += len(kinds) - logs
    return metric, log


def summary_table(result: DemoResult) -> Table:
    """The steps, their time and outcome."""
    table = Table("step", "seconds", "outcome", title="vigil demo")
    for row in result.rows:
        table.add_row(*row)
    return table
