"""``vigil``: thin Typer commands over functions the tests call directly."""

import os
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console

from vigil.commands import data, logs, rag, relay, serving, training
from vigil.commands.options import EntitiesOption, split_entities

app = typer.Typer(
    help="Vigil: anomaly detection for cloud fleets.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def quiet_mlflow_downloads() -> None:
    """Every command shows its own progress; MLflow's bar per artifact download only clutters it."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


app.command("simulate")(data.simulate)
app.command("export")(data.export_command)
app.command("import-dataset")(data.import_dataset_command)
app.command("features")(data.features)
app.command("validate")(data.validate)
app.command("train")(training.train)
app.command("register")(training.register)
app.command("evaluate")(training.evaluate)
app.command("relay")(relay.relay)
app.add_typer(training.review_app, name="review")
app.add_typer(serving.serving_app, name="serving")
app.add_typer(rag.rag_app, name="rag")
app.add_typer(logs.logs_app, name="logs")


DEFAULT_DEMO_PATH = Path(".vigil/demo")


@app.command()
def demo(
    work_dir: Annotated[
        Path, typer.Option(help="Where the demo writes (safe to rerun).")
    ] = DEFAULT_DEMO_PATH,
    instances: Annotated[
        int, typer.Option(min=1, help="Instances in the simulated fleet (no --dataset).")
    ] = 50,
    days: Annotated[
        int, typer.Option(min=1, help="Days of telemetry to simulate (no --dataset).")
    ] = 3,
    seed: Annotated[int, typer.Option(min=0, help="Simulation seed (no --dataset).")] = 0,
    dataset: Annotated[
        Literal["smd", "asd", "nab"] | None,
        typer.Option(help="Import this published dataset instead of simulating a fleet."),
    ] = None,
    path: Annotated[
        Path | None, typer.Option(help="The dataset's folder as published (with --dataset).")
    ] = None,
    entities: EntitiesOption = None,
    once: Annotated[
        bool, typer.Option(help="Stop every service at the end instead of leaving them running.")
    ] = False,
) -> None:
    """Run the platform end to end on this machine (on a simulated fleet, or on a published
    dataset with --dataset) and print what each step did."""
    from vigil.demo.run import DemoConfig, run_demo, summary_table

    if dataset is None and (path is not None or entities is not None):
        raise typer.BadParameter("--path and --entities need --dataset")
    if dataset is not None and path is None:
        raise typer.BadParameter(f"--dataset {dataset} needs --path, the dataset's folder")
    chosen = split_entities(entities)
    console = Console()
    config = DemoConfig(
        work_path=work_dir,
        instances=instances,
        days=days,
        seed=seed,
        once=once,
        # The fleet demo's page stays where the README shows it; a dataset's goes beside it.
        report_path=Path("reports") / ("demo.html" if dataset is None else f"demo-{dataset}.html"),
        dataset=dataset,
        dataset_path=path,
        entities=tuple(chosen) if chosen is not None else None,
    )
    result = run_demo(config, console)
    console.print(summary_table(result))
    rebuild = "".join(
        [
            f" --work-dir {work_dir}" if work_dir != DEFAULT_DEMO_PATH else "",
            f" --out {config.report_path}" if dataset is not None else "",
        ]
    )
    console.print(f"report: {result.report_path} (`vigil report{rebuild}` rebuilds it)")
    if once:
        console.print("every service was stopped (--once)")
    else:
        console.print(
            f"MLflow {result.tracking_uri} · A/B endpoint {result.router_url} · Prometheus "
            f"{result.prometheus_url} · `vigil status` lists every service, `vigil down` stops them"
        )


@app.command()
def report(
    work_dir: Annotated[Path, typer.Option(help="The demo's folder.")] = Path(".vigil/demo"),
    out: Annotated[Path, typer.Option(help="Where the HTML page is written.")] = Path(
        "reports/demo.html"
    ),
) -> None:
    """Rebuild the demo's HTML report from its folder (no rerun) and log it to MLflow."""
    from vigil.demo.report import rebuild_demo_report
    from vigil.demo.run import DemoConfig

    rebuilt = rebuild_demo_report(DemoConfig(work_path=work_dir, report_path=out))
    Console().print(f"wrote {rebuilt.path}; MLflow run {rebuilt.run_id}: {rebuilt.artifact}")


@app.command()
def status(
    work_dir: Annotated[Path, typer.Option(help="The demo's folder.")] = Path(".vigil/demo"),
) -> None:
    """List the local stack's services with their URL, PID and health."""
    from rich.table import Table

    from vigil.demo.run import DemoConfig
    from vigil.stack import stack_status

    statuses = stack_status(DemoConfig(work_path=work_dir).stack_path)
    if not statuses:
        Console().print("no service running (start them with `vigil demo`)")
        return
    table = Table("service", "url", "pid", "health", "log")
    for entry in statuses:
        health = "healthy" if entry.healthy else ("unhealthy" if entry.alive else "stopped")
        service = entry.service
        table.add_row(service.name, service.url, str(service.pid), health, service.log_path)
    Console().print(table)


@app.command()
def down(
    work_dir: Annotated[Path, typer.Option(help="The demo's folder.")] = Path(".vigil/demo"),
) -> None:
    """Stop every service the demo started, by its own PID."""
    from vigil.demo.run import DemoConfig
    from vigil.stack import stop_stack

    stopped = stop_stack(DemoConfig(work_path=work_dir).stack_path)
    Console().print(f"stopped {', '.join(stopped)}" if stopped else "nothing was running")


def run() -> None:
    """The console script: user errors become one line on stderr and exit status 1."""
    try:
        app()
    except Exception as error:
        if not isinstance(error, user_errors()):
            raise
        Console(stderr=True).print(f"[red]error:[/red] {error}")
        raise SystemExit(1) from error


def user_errors() -> tuple[type[Exception], ...]:
    """Errors a user can act on (bad input, unreachable services, rejected data; every
    ValueError of the parts names the problem): one clear message, no traceback.

    Imported only when an error happened, so the parts load only for the commands that use them.
    """
    from telemetry.cloudwatch_run import ExportError
    from training.registry import RegistrationError
    from vigil.demo.run import DemoStepError

    return (ValueError, OSError, ExportError, RegistrationError, DemoStepError)
