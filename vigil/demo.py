"""``vigil demo``: the platform end to end on one machine, each step named and timed.

Steps: simulate a fleet with labelled incidents → push a recent slice to the AWS API emulator
and export it back through the real exporter (the production path) → build features → validate
them → train and register the champion / challenger in a local MLflow server → serve, explain,
replay and judge the arms → write the HTML report (``reports/demo.html``, also an artifact of
the training run in MLflow). Every step overwrites what an earlier run wrote, so running the
demo twice is safe.
"""

import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow.compute as pc
from rich.console import Console
from rich.table import Table

from contracts.settings import Settings
from contracts.store import ObjectStore
from serving.ab_config import load_ab_config
from serving.ab_report import ab_report_from_store, write_ab_report
from serving.served_models import load_served_models
from training.cloudwatch import export, make_cloudwatch_clients
from training.cloudwatch_layout import CloudWatchLayout
from training.config import DEFAULT_CONFIG_PATH, load_training_config
from training.feature_job import build_features
from training.pipeline import TrainingSummary, run_training
from training.quality_job import validate_store
from training.simulator import SimulationConfig, push_to_cloudwatch, write_simulation
from vigil.dashboard_check import wait_for_panel_data
from vigil.demo_replay import ReplayOutcome, send_feedback, wait_for_replay
from vigil.local_stack import (
    start_explainer,
    start_local_mlflow,
    start_prometheus,
    start_scorer,
    start_serving,
)
from vigil.processes import ServerProcess, start_moto
from vigil.report.collect import collect_report
from vigil.report.publish import log_report
from vigil.report.render import write_report
from vigil.stack import stop_stack

DEMO_CONFIG_PATH = DEFAULT_CONFIG_PATH.with_name("demo.yaml")


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
    config.logs_path.mkdir(parents=True, exist_ok=True)
    store = ObjectStore.from_uri(str(config.store_path))
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
    _export_round_trip(config, console, result)
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
    stop_stack(config.stack_path)  # a rerun replaces the previous run's stack
    try:
        _serve(config, console, result, store)
    except BaseException:
        stop_stack(config.stack_path)
        raise
    if config.once:
        stop_stack(config.stack_path)
    return result


def simulation_end(config: DemoConfig) -> date:
    """The day after the simulated range (the simulation starts at midnight)."""
    return (SimulationConfig().start + timedelta(days=config.days)).date()


def _serve(config: DemoConfig, console: Console, result: DemoResult, store: ObjectStore) -> None:
    """Train and register in MLflow, then serve the champion and challenger."""
    stack = config.stack_path
    logs = stack / "logs"
    mlflow = _start(console, result, "start MLflow", lambda: start_local_mlflow(stack), logs)
    result.tracking_uri = mlflow.url
    with _step(console, result, "train and register") as report:
        run_path = config.work_path / "runs" / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        training = run_training(
            store, load_training_config(DEMO_CONFIG_PATH), mlflow.url, run_path, console
        )
        result.training = training
        if training.registration_error:
            raise RuntimeError(training.registration_error)
        assert training.registration is not None
        report(training.registration.decision)
    with _step(console, result, "serve with Triton behind the A/B router", logs) as report:
        serving = start_serving(stack, mlflow.url)
        arms = ", ".join(f"@{m.alias} {m.name} v{m.version}" for m in serving.repository.models)
        report(f"{arms}; A/B endpoint {serving.router.url}/v2/models/anomaly/infer")
        result.router_url = serving.router.url
    with _step(
        console, result, "start the explainer (LLM server, runbook index, API)", logs
    ) as report:
        explainer = start_explainer(stack)
        report(f"{explainer.service.url}/explain, {explainer.indexed_chunks} runbook chunks")
    day_end = datetime.combine(simulation_end(config), datetime.min.time(), tzinfo=UTC)
    replay = (day_end - timedelta(days=1), day_end)
    scorer = _start(
        console,
        result,
        "start the scorer (replays the last day through the A/B router)",
        lambda: start_scorer(
            stack, str(config.store_path), mlflow.url, serving, replay, explainer.service.url
        ),
        logs,
    )
    with _step(console, result, "replay the last day and send ground-truth feedback") as report:
        wait_for_replay(scorer.url, replay[1])
        outcome = send_feedback(store, scorer.url, *replay, timedelta(minutes=5))
        result.replay = outcome
        report(
            f"{outcome.windows:,} instance-windows scored ({outcome.by_model}); "
            f"{outcome.flagged:,} flagged, precision {outcome.precision:.2f}, recall "
            f"{outcome.recall:.2f} against {outcome.true_anomalous:,} truly anomalous; "
            f"{outcome.feedback_sent:,} feedback labels sent (last 6 h)"
        )
    with _step(console, result, "A/B report") as report:
        weights = load_ab_config()
        ab = ab_report_from_store(
            store,
            load_served_models(mlflow.url),
            {"champion": weights.champion_weight, "challenger": weights.challenger_weight},
            *replay,
        )
        html_path = write_ab_report(ab, config.work_path / "reports")[1]
        report(f"{ab.decision}: {ab.reason} ({html_path})")
    targets = {
        "triton": [f"127.0.0.1:{serving.triton_ports.metrics}"],
        "scorer": [scorer.url.removeprefix("http://")],
        "explainer": [explainer.service.url.removeprefix("http://")],
    }
    prometheus = _start(
        console, result, "start Prometheus", lambda: start_prometheus(stack, targets), logs
    )
    result.prometheus_url = prometheus.url
    with _step(console, result, "check every dashboard panel query against Prometheus") as report:
        checked = wait_for_panel_data(prometheus.url)
        report(f"all {checked} panel queries of the 4 Grafana dashboards return data")
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
