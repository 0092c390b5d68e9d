"""Training commands: train, register, review export / import."""

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console

from contracts.ports import MLFLOW_PORT
from training.config import DEFAULT_CONFIG_PATH, load_training_config
from vigil.commands.options import EntitiesOption, StoreOption, open_cli_store, split_entities

console = Console()
RUNS_PATH = Path(".vigil/runs")

TrackingUriOption = Annotated[
    str | None,
    typer.Option(
        envvar="MLFLOW_TRACKING_URI",
        help=f"MLflow tracking server, e.g. http://127.0.0.1:{MLFLOW_PORT} "
        "(default MLFLOW_TRACKING_URI).",
    ),
]
ConfigOption = Annotated[
    Path, typer.Option("--config", help="Training config YAML (keys left out keep defaults).")
]


def new_run_path() -> Path:
    """A fresh run directory under .vigil/runs/, named by the UTC time."""
    return RUNS_PATH / datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")


def train(
    config: ConfigOption = DEFAULT_CONFIG_PATH,
    tracking_uri: TrackingUriOption = None,
    run_dir: Annotated[
        Path | None, typer.Option(help="Where the run's models and report go (default new).")
    ] = None,
    since: Annotated[
        datetime | None,
        typer.Option(formats=["%Y-%m-%d"], help="First UTC day to train on (default: all)."),
    ] = None,
    days: Annotated[
        int | None,
        typer.Option(min=1, help="Train on the last N UTC days, today included (a retrain)."),
    ] = None,
    store: StoreOption = None,
) -> None:
    """Train the semi-supervised pipeline on the store's features and register it in MLflow."""
    from training.pipeline import run_training
    from vigil.training_summary import training_summary_table

    summary = run_training(
        open_cli_store(store),
        load_training_config(config),
        tracking_uri,
        run_dir or new_run_path(),
        console,
        first_training_day(since, days),
    )
    console.print(training_summary_table(summary))
    if tracking_uri is None:
        console.print(f"not registered (no tracking URI); run `vigil register {summary.run_dir}`")
    elif summary.registration_error is not None:
        console.print(f"[red]registration failed[/red]: {summary.registration_error}")
        raise typer.Exit(1)


def first_training_day(since: datetime | None, days: int | None) -> date | None:
    """``--since`` as a day, or the first of the last ``--days`` UTC days; None: every day."""
    if since is not None and days is not None:
        raise typer.BadParameter("give --since or --days, not both")
    if days is not None:
        return datetime.now(UTC).date() - timedelta(days=days - 1)
    return since.date() if since is not None else None


def register(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by `vigil train`.")],
    tracking_uri: TrackingUriOption = None,
    replace_on_feature_change: Annotated[
        bool, typer.Option(help="Let models on new features take the aliases without comparing.")
    ] = False,
) -> None:
    """Register a finished training run in MLflow (retry after MLflow was down)."""
    from training.registry import register_run

    if tracking_uri is None:
        raise typer.BadParameter("give --tracking-uri or set MLFLOW_TRACKING_URI")
    result = register_run(run_dir, tracking_uri, replace_on_feature_change)
    console.print(f"MLflow run {result.run_id}: {result.decision}")
    for name, version in result.versions.items():
        console.print(f"  {name} version {version}")
    for alias, holder in result.aliases.items():
        console.print(f"  @{alias} → {holder}")


review_app = typer.Typer(help="The active-learning review queue.", no_args_is_help=True)


@review_app.command("export")
def review_export(
    out: Annotated[Path, typer.Option(help="Folder for the CSV and Label Studio files.")],
    config: ConfigOption = DEFAULT_CONFIG_PATH,
    store: StoreOption = None,
) -> None:
    """Draw the review queue and write it as CSV and as a Label Studio import."""
    from training.review_export import export_review

    written = export_review(open_cli_store(store), load_training_config(config), out)
    budget = written.budget
    console.print(
        f"{budget.asked:,} rows to review of {budget.uncertain:,} uncertain "
        f"({budget.reduction:.0%} fewer labels); by reason: {budget.by_reason}"
    )
    console.print(f"CSV: {written.files.csv_path}")
    console.print(f"Label Studio tasks: {written.files.label_studio_tasks_path}")
    console.print(f"Label Studio config: {written.files.label_studio_config_path}")


@review_app.command("import")
def review_import(
    path: Annotated[Path, typer.Argument(help="Reviewed CSV or Label Studio JSON export.")],
    overwrite: Annotated[
        bool, typer.Option(help="Let new answers replace different earlier ones.")
    ] = False,
    store: StoreOption = None,
) -> None:
    """Check reviewed labels against the exported queue and save them for training."""
    from training.review_queue import import_reviews

    imported = import_reviews(open_cli_store(store), path, overwrite)
    console.print(
        f"imported {imported.reviews.height:,} reviewed labels; "
        f"{imported.unanswered:,} queue rows unanswered"
    )


def evaluate(
    dataset: Annotated[Literal["smd", "asd", "nab"], typer.Option(help="Which dataset.")],
    path: Annotated[Path, typer.Option(help="The dataset folder as published.")],
    entities: EntitiesOption = None,
    label_fraction: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Most labels the review queue may reveal.")
    ] = 0.02,
    work_dir: Annotated[
        Path | None, typer.Option(help="Keep each entity's store here and reuse it next time.")
    ] = None,
) -> None:
    """Run the honest protocol on a public dataset; one JSON document on stdout."""
    import json

    from training.real_evaluation import NothingEvaluatedError, evaluate_dataset

    chosen = split_entities(entities)
    progress = Console(stderr=True)
    try:
        document = evaluate_dataset(
            dataset,
            path,
            chosen,
            label_fraction,
            work_dir,
            lambda message: progress.print(message),
        )
    except NothingEvaluatedError as error:
        progress.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from error
    print(json.dumps(document, indent=2))
